"""train stage: train one setting with one seed, as its job file says; one MLflow run, tracked per epoch.

Writes the Keras model (.keras), the run id (JSON: evaluate and plot add to the same run), the
final train/val metrics (a DVC metric) and the per-epoch history (CSV, a DVC plot).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.common import cli
from pipeline.common.errors import PipelineError
from pipeline.common.outputs import atomic_file, write_json, write_text
from pipeline.job import TrainJob, load_job, run_params
from pipeline.model.datasets import num_classes
from pipeline.model.runtime import load_tensorflow
from pipeline.tracking.artifacts import log_data_inputs, log_model
from pipeline.training.checkpoint import Resume, backup_dir, epoch_checkpoint, fingerprint
from pipeline.training.history import final_metrics, first_non_finite, history_csv, seconds_per_epoch
from pipeline.training.timings import EpochTiming, load_timings, machine_kind, record_timing, scaled_epoch_seconds


def training_images(count: int, share: float) -> int:
    """How many of `count` training images a run with `train.subset: share` trains on."""
    return count if share >= 1.0 else max(1, round(share * count))


def training_subset(count: int, share: float, seed: int) -> np.ndarray | None:
    """Sorted indices of a seeded random `share` of `count` training images; None for all."""
    if share >= 1.0:
        return None
    return np.sort(np.random.default_rng(seed).choice(count, size=training_images(count, share), replace=False))


def progress_note(name: str, epochs: int):
    """Keras callback: after the first epoch, one line on how long the rest will take."""
    import keras

    from pipeline.training.timings import duration

    class ProgressNote(keras.callbacks.Callback):
        noted = False

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            left = epochs - epoch - 1
            if not self.noted and left:
                seconds = time.perf_counter() - self.started
                print(f"{name}: epoch {epoch + 1} of {epochs} took {duration(seconds)} (the first also compiles); "
                      f"the other {left}: about {duration(seconds * left)}", file=sys.stderr, flush=True)
            self.noted = True

    return ProgressNote()


def load_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.load(directory / f"x_{split}.npy", mmap_mode="r")
    y = np.load(directory / f"y_{split}.npy")
    return x, y


@dataclass
class Trained:
    model: object  # the Keras model
    rows: list[dict]  # every finished epoch, also when stopped early on NaN
    arrays: tuple  # x_train, y_train, x_val, y_val as trained on
    replicas: int  # devices the strategy trained on
    precision: str  # train.precision as resolved on this machine


def build_compiled(job: TrainJob):
    """The setting's model, compiled under the runtime options of the train params; with the
    strategy it was built under and the precision it computes in."""
    from pipeline.model.network import build_model, compile_model
    from pipeline.model.runtime import configure_runtime

    strategy, precision = configure_runtime(job.train, job.seed)
    with strategy.scope():
        model = build_model(job.name, job.setting, job.model)
        return compile_model(model, job.train.learning_rate, job.train.optimizer, jit_compile=job.train.jit_compile,
                             steps_per_execution=job.train.steps_per_execution), strategy, precision


def fit(job: TrainJob, mlflow, run_id: str, resume: Resume) -> Trained:
    """Train, resuming from the last finished epoch if a backup exists.

    `mlflow` is the module, or anything with its `log_metrics` (the benchmark times it)."""
    import keras

    from pipeline.model.runtime import device_line
    from pipeline.training.feed import array_batches

    model, strategy, precision = build_compiled(job)
    print(f"{job.name} seed {job.seed}: {device_line(precision)}", file=sys.stderr, flush=True)
    x_train, y_train = load_split(job.data, "train")
    subset = training_subset(len(y_train), job.train.subset, job.seed)
    if subset is not None:
        x_train, y_train = x_train[subset], y_train[subset]
    x_val, y_val = load_split(job.data, "val")
    checkpoint = epoch_checkpoint(mlflow, run_id, resume)
    classes = num_classes(job.setting.dataset)
    # Both splits go into memory (they fit, for these datasets): batches read from the memory-mapped
    # files measured no faster on a 2-core CPU.
    batch = job.train.batch_size
    model.fit(
        array_batches(x_train, y_train, batch_size=batch, classes=classes, shuffle_seed=job.seed),
        validation_data=array_batches(x_val, y_val, batch_size=batch, classes=classes),
        epochs=job.train.epochs, shuffle=False,  # array_batches shuffles; Keras' flag would only warn
        callbacks=[checkpoint, keras.callbacks.TerminateOnNaN(), progress_note(f"{job.name} seed {job.seed}",
                                                                              job.train.epochs)],
        verbose=1 if sys.stdout.isatty() else 2,
    )
    return Trained(model, checkpoint.rows, (x_train, y_train, x_val, y_val), strategy.num_replicas_in_sync, precision)


def expected_seconds(job: TrainJob, root: Path) -> float | None:
    """How long this job's epochs should take, from its setting's last training on this machine
    (None where there was none): how often its system metrics are sampled."""
    timing = load_timings(root).get(job.name)
    if not timing or not timing.applies_to(machine_kind(), job.train):
        return None
    train_total, val_images = (len(np.load(job.data / f"y_{split}.npy", mmap_mode="r")) for split in ("train", "val"))
    return job.train.epochs * scaled_epoch_seconds(timing, training_images(train_total, job.train.subset), val_images)


def open_run(mlflow, job: TrainJob, resume: Resume, root: Path) -> str:
    """The run of this job: the interrupted one it resumes, with the steps it has in MLflow (the
    epochs saved but never logged are logged once Keras has restored: epoch_checkpoint), or a new
    one with its params. Either way it gets this process's provenance (what made it: code, machine,
    versions) and system metrics, and its id is saved at once, so that a SIGKILL even before the
    first epoch ends is resumed in the same run; runs of this (setting, seed) that a killed process
    left RUNNING are closed. The report later nests the run under one parent run per setting (tag
    mlflow.parentRunId)."""
    from pipeline.provenance.record import record_provenance
    from pipeline.tracking.outcome import close_abandoned
    from pipeline.tracking.system_metrics import sample_every, sampling_seconds

    sample_every(sampling_seconds(expected_seconds(job, root), job.train.smoke_run))
    if resume.run_id:
        print(f"{job.name} seed {job.seed}: resuming MLflow run {resume.run_id} after epoch {len(resume.rows)}",
              file=sys.stderr)
        run = mlflow.start_run(run_id=resume.run_id, log_system_metrics=True)
        history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss")
        resume.logged_steps = frozenset(metric.step for metric in history)
    else:
        run = start_run(mlflow, job, root)
    mlflow.set_tags({"host": socket.gethostname(), "pid": str(os.getpid())})
    record_provenance(mlflow.MlflowClient(), run.info.run_id)
    resume.save(run.info.run_id, list(resume.rows))
    close_abandoned(mlflow.MlflowClient(), run.info.experiment_id, job.name, job.seed, run.info.run_id)
    return run.info.run_id


def start_run(mlflow, job: TrainJob, root: Path):
    """A new run of this job, with its params and what identifies it."""
    from pipeline.tracking import store as tracking

    tags = {
        "setting": job.name,
        "seed": str(job.seed),
        "kind": "seed",
        "job": job.digest,
        "dataset": job.dataset,
        "data_md5": job.data_md5,
        "smoke_run": str(job.train.smoke_run).lower(),
    }
    name = f"{job.name} seed {job.seed}"
    experiment = tracking.experiment_id(tracking.EXPERIMENTS[job.dataset], root)
    trial = os.environ.get("DVC_EXP_NAME", "")
    if trial:
        tags["dvc_experiment"] = trial
    if trial and not trial.startswith(tracking.SWEEP_EXPERIMENT_PREFIX):
        # a `dvc exp run` trying another value: named as such, and a row under the setting's own
        # parent run, not a loose top-level row that looks like the workspace's run
        name += f" (dvc exp {trial})"
        parents = mlflow.MlflowClient().search_runs([experiment], filter_string=(
            f"tags.kind = 'parent' and tags.setting = '{job.name}' and tags.current = 'true'"))
        if parents:
            tags["mlflow.parentRunId"] = parents[0].info.run_id
    if os.environ.get(tracking.SWEEP_TAG_ENV):
        tags["sweep"] = os.environ[tracking.SWEEP_TAG_ENV]
    run = mlflow.start_run(experiment_id=experiment, run_name=name, tags=tags, log_system_metrics=True)
    mlflow.log_params(run_params(job))
    return run


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.train", description=__doc__)
    parser.add_argument("job", type=Path, help="the setting's job file (from its job stage)")
    parser.add_argument("seed", type=int, help="the run's seed: weights, shuffling, dropout, subset")
    parser.add_argument("model", type=Path, help="where the trained .keras model goes")
    parser.add_argument("run", type=Path, help="JSON with the MLflow run id")
    parser.add_argument("metrics", type=Path, help="JSON with the final train/val metrics")
    parser.add_argument("history", type=Path, help="CSV with per-epoch metrics")
    args = parser.parse_args(argv)
    job = load_job(args.job, args.seed)

    from pipeline.tracking import store as tracking
    from pipeline.tracking.outcome import run_outcome, server_outage_stops

    root = tracking.project_root()
    uri = tracking.connect(root)
    load_tensorflow()
    import mlflow
    import mlflow.tensorflow  # noqa: F401  (the flavor used by log_model)

    from pipeline.model.network import optimizer_name

    resume = Resume.load(backup_dir(root, job.name, job.seed), fingerprint(run_params(job), job.data_md5, uri))
    with server_outage_stops(uri):
        run_id = open_run(mlflow, job, resume, root)
    # The backup goes only once the run has ended: a kill before that reopens this run (every
    # epoch saved, none trained again) instead of starting a second one.
    with resume.kept_only_if_interrupted(), run_outcome(run_id), server_outage_stops(uri):
        trained = fit(job, mlflow, run_id, resume)
        model, rows, arrays = trained.model, trained.rows, trained.arrays
        mlflow.log_params({"optimizer": optimizer_name(model), "loss": model.loss, "replicas": trained.replicas,
                           "precision": trained.precision})
        nan_epoch = first_non_finite(rows)
        if nan_epoch is not None:
            raise PipelineError(f"setting {job.name} seed {job.seed}: loss became NaN/Inf in epoch {nan_epoch}; "
                                "training stopped (try a lower train.learning_rate)")
        log_data_inputs(mlflow, job.dataset, job.data, arrays)
        log_model(mlflow, model, f"{job.name}-seed{job.seed}", arrays[0], run_id,
                  mlflow.active_run().info.experiment_id)
        metrics = {**final_metrics(rows), "precision": trained.precision}
        with atomic_file(args.model) as tmp:
            model.save(tmp)
        write_text(args.history, history_csv(rows))
        write_json(args.metrics, metrics)
        write_json(args.run, {"run_id": run_id, "experiment": tracking.EXPERIMENTS[job.dataset]})
    resume.clear()
    epoch_seconds = [row["seconds"] for row in rows]
    record_timing(root, job.name, EpochTiming(machine_kind(), job.train.batch_size, len(arrays[1]), len(arrays[3]),
                                              statistics.median(epoch_seconds[1:] or epoch_seconds),
                                              job.train.precision))
    print(f"{job.name} seed {job.seed}: val_accuracy {metrics['val_accuracy']:.4f} after {metrics['epochs']} epochs "
          f"({seconds_per_epoch(rows):.1f} s/epoch); MLflow run {run_id}", file=sys.stderr)


if __name__ == "__main__":
    cli.run(main)
