"""What the machine did during a run: MLflow's own system metrics (CPU and memory use, and each
GPU's where nvidia-ml-py finds one), sampled so that a run has about POINTS of them, whatever its
length: a 2-epoch quick run several, a 50-epoch run not thousands."""

from __future__ import annotations

import os

POINTS = 100
FASTEST_SECONDS, SLOWEST_SECONDS = 1.0, 60.0
# Where the run's length cannot be told beforehand (its first training on this machine).
UNKNOWN_LENGTH_SECONDS = {True: FASTEST_SECONDS, False: 10.0}  # smoke run: short; the homework's size: long
INTERVAL_ENV = "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"  # MLflow's own setting, which a user may have set


def sampling_seconds(expected_seconds: float | None, smoke: bool) -> float:
    """Seconds between two samples of a run expected to take `expected_seconds` (None: unknown)."""
    if expected_seconds is None:
        return UNKNOWN_LENGTH_SECONDS[smoke]
    return min(max(expected_seconds / POINTS, FASTEST_SECONDS), SLOWEST_SECONDS)


def sample_every(seconds: float) -> None:
    """The interval for the runs this process starts with log_system_metrics=True, unless the user
    chose one (MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL); the sampler's own INFO lines quieted."""
    import logging

    import mlflow

    if INTERVAL_ENV not in os.environ:
        mlflow.set_system_metrics_sampling_interval(seconds)
    if "MLFLOW_LOGGING_LEVEL" not in os.environ:  # its start and stop, and the GPU it did not find: INFO lines
        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
