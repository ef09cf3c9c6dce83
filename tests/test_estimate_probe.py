"""The training-time estimate where no training has run here yet: a probe times a few steps of the
setting's model (pipeline/training/estimate.py), and the estimate scales it to the epochs.
`--confirm` and YES=1 are driven at a terminal by tests/test_first_hour_e2e.py."""

from __future__ import annotations

import dataclasses
import math

import pytest

from pipeline.params.load import parse_params
from pipeline.training import estimate as estimating
from tests.helpers import shipped_params


def _params(**train):
    params = parse_params(shipped_params(), "params.yaml")
    return dataclasses.replace(params, train=dataclasses.replace(params.train, **train))


def test_without_a_timing_each_setting_is_probed_once_and_scaled_to_its_steps_and_epochs(tmp_path, monkeypatch):
    probed = []
    monkeypatch.setattr(estimating, "probe_seconds_per_step", lambda params, name: probed.append(name) or 0.01)
    params = _params(batch_size=100, epochs=7, subset=1.0)
    rows = estimating.estimate(params, tmp_path, [("mnist-k3-s1", 0), ("mnist-k3-s1", 1), ("cifar10-k3-s1", 0)])
    assert probed == ["mnist-k3-s1", "cifar10-k3-s1"]  # once a setting, whatever its seeds
    train, val = estimating.split_sizes(tmp_path, "mnist", params.preprocess.val_fraction)
    epoch = 0.01 * math.ceil(train / 100) * (3 * train + val) / (3 * train)
    assert rows[0] == ("mnist-k3-s1", pytest.approx(7 * epoch), rows[0][2]) and rows[0][2].endswith("from a probe")
    assert rows[1][1] == rows[0][1]


def test_the_probe_times_training_steps_of_the_settings_model(monkeypatch):
    import keras

    steps = []
    real = keras.Model.train_on_batch

    def counted(model, x, y, *args, **kwargs):
        steps.append((model.input_shape, len(x)))
        return real(model, x, y, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "train_on_batch", counted)
    seconds = estimating.probe_seconds_per_step(_params(batch_size=4), "mnist-k3-s1")
    assert 0 < seconds < 60
    assert steps == [((None, 28, 28, 1), 4)] * (estimating.PROBE_STEPS + 1)  # one traces, the others are timed
