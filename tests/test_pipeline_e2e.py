"""The real `dvc repro` on fixture data, run once per session (see conftest.pipeline_run)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers import dvc

pytestmark = pytest.mark.e2e


def test_prepared_arrays(pipeline_run):
    repo, _, _ = pipeline_run
    for dataset, side in (("mnist", 28), ("cifar10", 32)):
        prepared = repo / "data" / "prepared" / dataset
        x_train = np.load(prepared / "x_train.npy", mmap_mode="r")
        y_val = np.load(prepared / "y_val.npy")
        assert x_train.dtype == np.float32 and x_train.shape[1:] == (side, side, 1)
        assert abs(float(x_train.mean())) < 1e-3 and abs(float(x_train.std()) - 1) < 1e-3
        summary = json.loads((repo / "metrics" / "preprocess" / f"{dataset}.json").read_text())
        assert summary["val"]["class_counts"] == np.bincount(y_val, minlength=10).tolist()
        assert summary["train"]["shape"] == list(x_train.shape)
    # CIFAR-10 also in color, z-scored per channel, for settings with `color: rgb`
    rgb = np.load(repo / "data" / "prepared" / "cifar10" / "rgb" / "x_train.npy")
    assert rgb.shape[1:] == (32, 32, 3)
    np.testing.assert_allclose(rgb.mean(axis=(0, 1, 2)), 0, atol=1e-3)
    np.testing.assert_allclose(rgb.std(axis=(0, 1, 2)), 1, atol=1e-3)
    job = json.loads((repo / "jobs" / "cifar10-k3-s1-rgb.json").read_text())
    assert job["data"] == "data/prepared/cifar10/rgb" and job["values"]["color"] == "rgb"


def test_second_repro_runs_nothing(pipeline_run):
    repo, env, _ = pipeline_run
    status = dvc(repo, "status", env=env)
    assert "up to date" in status.stdout, status.stdout
    again = dvc(repo, "repro", env=env)
    assert "Running stage" not in again.stdout, again.stdout
