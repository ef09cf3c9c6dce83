"""Pure helpers of the train stage and what counts as a smoke run."""

from __future__ import annotations

import dataclasses

import numpy as np

from pipeline.config import REPORT_EPOCHS, load_params
from pipeline.train import training_subset
from tests.helpers import REPO


def test_training_subset_is_a_seeded_sorted_share():
    picked = training_subset(1000, 0.2, seed=0)
    assert len(picked) == 200 and len(set(picked)) == 200
    assert np.all(np.diff(picked) > 0) and picked.max() < 1000
    np.testing.assert_array_equal(picked, training_subset(1000, 0.2, seed=0))
    assert not np.array_equal(picked, training_subset(1000, 0.2, seed=1))
    assert training_subset(1000, 1.0, seed=0) is None
    assert len(training_subset(3, 0.01, seed=0)) == 1


def test_smoke_run_means_fewer_epochs_or_images_than_the_report():
    train = load_params(REPO / "params.yaml").train
    assert not train.smoke_run  # the shipped values reproduce the report
    assert dataclasses.replace(train, epochs=REPORT_EPOCHS - 1).smoke_run
    assert dataclasses.replace(train, subset=0.5).smoke_run
