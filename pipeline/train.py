"""train stage: train one setting of params.yaml; one MLflow run, tracked per epoch.

Writes the Keras model (.keras), the run id (JSON: evaluate and plot add to the same run), the
final train/val metrics (a DVC metric) and the per-epoch history (CSV, a DVC plot).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline import cli
from pipeline.config import Cifar10ModelConfig, MnistModelConfig, Params, Setting, TrainConfig, load_params
from pipeline.errors import PipelineError
from pipeline.outputs import atomic_file, write_json, write_text

HISTORY_FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds")


@dataclass(frozen=True)
class TrainJob:
    name: str
    setting: Setting
    model: MnistModelConfig | Cifar10ModelConfig
    train: TrainConfig


def stage_params(params: Params, name: str) -> TrainJob:
    """The part of params.yaml this stage reads (dvc.yaml declares the same keys)."""
    setting = params.settings[name]
    return TrainJob(name, setting, getattr(params.models, setting.dataset), params.train)


def find_job(params: Params, name: str, path: Path) -> TrainJob:
    if name not in params.settings:
        known = ", ".join(params.settings)
        raise PipelineError(f"{path}: settings.{name}: no such setting (known: {known})")
    return stage_params(params, name)


def run_params(job: TrainJob) -> dict[str, object]:
    """Every effective hyperparameter, flat, as MLflow params."""
    flat: dict[str, object] = {"setting": job.name}
    flat.update({k: v for k, v in asdict(job.setting).items() if k != "sweeps"})
    flat.update({f"model.{k}": v for k, v in asdict(job.model).items()})
    flat.update({f"train.{k}": v for k, v in asdict(job.train).items()})
    flat.update(optimizer="adam", loss="categorical_crossentropy")
    return flat


def data_md5(directory: Path) -> str:
    """One digest over the prepared arrays (file names and contents), to tag runs with."""
    digest = hashlib.md5()
    for path in sorted(directory.glob("*.npy")):
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def git_commit(root: Path) -> str:
    """HEAD of the checkout, or 'unknown' outside one (or without git installed)."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    except OSError:
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def training_subset(count: int, share: float, seed: int) -> np.ndarray | None:
    """Sorted indices of a seeded random `share` of `count` training images; None for all."""
    if share >= 1.0:
        return None
    keep = max(1, round(share * count))
    return np.sort(np.random.default_rng(seed).choice(count, size=keep, replace=False))


def load_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.load(directory / f"x_{split}.npy", mmap_mode="r")
    y = np.load(directory / f"y_{split}.npy")
    return x, y


def history_csv(rows: list[dict[str, float]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


def final_metrics(rows: list[dict[str, float]]) -> dict[str, float]:
    """The report's columns for one setting: the last epoch's train/val loss and accuracy."""
    last = rows[-1]
    return {
        "train_loss": last["loss"], "train_accuracy": last["accuracy"],
        "val_loss": last["val_loss"], "val_accuracy": last["val_accuracy"],
        "epochs": len(rows),
        "seconds_per_epoch": round(sum(r["seconds"] for r in rows) / len(rows), 3),
    }


def first_non_finite(rows: list[dict[str, float]]) -> int | None:
    for row in rows:
        if not all(math.isfinite(row[k]) for k in ("loss", "val_loss")):
            return row["epoch"]
    return None


def history_row(epoch: int, logs: dict, seconds: float) -> dict[str, float]:
    """One epoch's row; an epoch cut short by TerminateOnNaN may lack validation numbers."""
    return {"epoch": epoch, **{k: float(logs.get(k, float("nan"))) for k in HISTORY_FIELDS[1:5]}, "seconds": seconds}


def make_epoch_checkpoint(mlflow, run_id: str, resume: "Resume"):
    """Keras callback that closes each epoch with one uninterruptible step: its metrics to MLflow
    (step = epoch, 1-based, synchronously), its history row and Keras' BackupAndRestore state,
    both saved where a resumed run finds them.

    Not mlflow.keras.MlflowCallback: it also logs validation_* metrics at step 0 on every
    evaluation (duplicate steps) and logs asynchronously, so a killed run can lose epochs.
    """
    import keras

    class EpochCheckpoint(keras.callbacks.BackupAndRestore):
        def __init__(self):
            # double_checkpoint: a SIGKILL (which cannot be deferred) mid-save leaves the previous one
            super().__init__(str(resume.directory / "keras"), double_checkpoint=True)
            self.rows = list(resume.rows)
            self.logging_seconds: list[float] = []  # per epoch, in MLflow (python -m pipeline.bench)

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            seconds = time.perf_counter() - self.started
            with cli.deferred_interrupts():
                del self.rows[epoch:]  # after a SIGKILL between the two saves, this epoch re-ran
                self.rows.append(history_row(epoch + 1, logs, seconds))
                logging_started = time.perf_counter()
                mlflow.log_metrics({**{k: float(v) for k, v in logs.items()}, "epoch_seconds": seconds},
                                   step=epoch + 1, run_id=run_id)
                self.logging_seconds.append(time.perf_counter() - logging_started)
                resume.save(run_id, self.rows)
                super().on_epoch_end(epoch, logs)

    return EpochCheckpoint()


@dataclass
class Resume:
    """Where an interrupted training run left off: its MLflow run and finished epochs.

    Lives in a directory that is no DVC output (DVC deletes those before a stage runs), beside
    Keras' BackupAndRestore files; used only while the job (params and data) is the same.
    """

    directory: Path
    fingerprint: str
    run_id: str | None = None
    rows: tuple = ()

    @classmethod
    def load(cls, directory: Path, fingerprint: str) -> Resume:
        state_file = directory / "state.json"
        if state_file.exists():
            state = json.loads(state_file.read_text(encoding="utf-8"))
            if state.get("fingerprint") == fingerprint:
                return cls(directory, fingerprint, state["run_id"], tuple(state["rows"]))
            shutil.rmtree(directory)  # a backup of another job: start over
        return cls(directory, fingerprint)

    def save(self, run_id: str, rows: list[dict]) -> None:
        write_json(self.directory / "state.json", {"fingerprint": self.fingerprint, "run_id": run_id, "rows": rows})

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def job_fingerprint(job: TrainJob, data_digest: str, tracking_uri: str) -> str:
    """Same hyperparameters, data and tracking store: only then may a backup be resumed."""
    return hashlib.md5(json.dumps([run_params(job), data_digest, tracking_uri], sort_keys=True).encode()).hexdigest()


def configure_runtime(train: TrainConfig):
    """Set TensorFlow's process-wide options from the train params; return the strategy that
    models must be built under (the default one unless `distribute: mirrored`)."""
    import keras
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        # settings run side by side on one GPU: each takes memory as it needs it, not all of it
        tf.config.experimental.set_memory_growth(gpu, True)
    keras.utils.set_random_seed(train.seed)
    if train.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy(train.precision)
    if train.distribute == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
        devices = ", ".join(strategy.extended.worker_devices)
        print(f"MirroredStrategy: {strategy.num_replicas_in_sync} replica(s) on {devices}", file=sys.stderr)
        return strategy
    return tf.distribute.get_strategy()


def build_compiled(job: TrainJob):
    from pipeline.models import build_model, compile_model

    strategy = configure_runtime(job.train)
    with strategy.scope():
        model = build_model(job.name, job.setting, job.model)
        return compile_model(model, job.train.learning_rate, jit_compile=job.train.jit_compile,
                             steps_per_execution=job.train.steps_per_execution)


def fit(job: TrainJob, data_dir: Path, mlflow, run_id: str, resume: Resume):
    """Train, resuming from the last finished epoch if a backup exists; return the model, the
    checkpoint callback (its `rows`: every epoch, also when stopped early on NaN) and the arrays."""
    import keras

    model = build_compiled(job)
    x_train, y_train = load_split(data_dir, "train")
    subset = training_subset(len(y_train), job.train.subset, job.train.seed)
    if subset is not None:
        x_train, y_train = x_train[subset], y_train[subset]
    x_val, y_val = load_split(data_dir, "val")
    checkpoint = make_epoch_checkpoint(mlflow, run_id, resume)
    # In-memory arrays: on this CPU a tf.data pipeline from the memory-mapped files measured the
    # same speed (python -m pipeline.bench), and both splits fit in memory for these datasets.
    model.fit(
        np.asarray(x_train), keras.utils.to_categorical(y_train, 10),
        validation_data=(np.asarray(x_val), keras.utils.to_categorical(y_val, 10)),
        epochs=job.train.epochs, batch_size=job.train.batch_size, shuffle=True,
        callbacks=[checkpoint, keras.callbacks.TerminateOnNaN()],
        verbose=1 if sys.stdout.isatty() else 2,
    )
    return model, checkpoint, (x_train, y_train, x_val, y_val)


def log_data_inputs(mlflow, dataset: str, arrays, data_dir: Path) -> None:
    """Record the training and validation data (MLflow digests the first rows of each)."""
    x_train, y_train, x_val, y_val = arrays
    for context, split, x, y in (("training", "train", x_train, y_train), ("validation", "val", x_val, y_val)):
        with warnings.catch_warnings():
            # a local path matches two registered local source types; either one is right
            warnings.filterwarnings("ignore", "The specified dataset source can be interpreted")
            data = mlflow.data.from_numpy(
                np.asarray(x), targets=y, name=f"{dataset}-{split}", source=str(data_dir / f"x_{split}.npy")
            )
        mlflow.log_input(data, context=context)


def log_model(mlflow, model, x_example: np.ndarray) -> None:
    from mlflow.models import infer_signature

    example = np.asarray(x_example[:2], dtype=np.float32)
    signature = infer_signature(example, model.predict(example, verbose=0))
    # mlflow.keras.log_model fails when given an input example (MLflow 3.17: it writes
    # input_example.json before creating the model directory, mlflow/mlflow#16183). The
    # TensorFlow flavor logs the same Keras 3 model (.keras) with signature and example, and
    # mlflow.pyfunc.load_model loads it.
    import keras
    import tensorflow as tf

    # Stated, not inferred: inference re-imports the model in a subprocess (~10 s a run).
    requirements = [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}", f"numpy=={np.__version__}"]
    keras.utils.disable_interactive_logging()  # MLflow predicts on the example: no progress bars
    try:
        mlflow.tensorflow.log_model(model, name="model", signature=signature, input_example=example,
                                    pip_requirements=requirements)
    finally:
        keras.utils.enable_interactive_logging()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.train", description=__doc__)
    parser.add_argument("setting", help="a key under `settings:` in params.yaml")
    parser.add_argument("data", type=Path, help="prepared data directory of the setting's dataset")
    parser.add_argument("model", type=Path, help="where the trained .keras model goes")
    parser.add_argument("run", type=Path, help="JSON with the MLflow run id")
    parser.add_argument("metrics", type=Path, help="JSON with the final train/val metrics")
    parser.add_argument("history", type=Path, help="CSV with per-epoch metrics")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    params = load_params(args.params)
    job = find_job(params, args.setting, args.params)

    from pipeline import tracking

    root = tracking.project_root()
    uri = tracking.connect(root)
    import mlflow
    import mlflow.tensorflow  # noqa: F401  (the flavor used by log_model)

    digest = data_md5(args.data)
    # Not a DVC output (DVC deletes those before the stage runs), so it survives a kill.
    resume = Resume.load(root / ".dvc" / "tmp" / "train-backup" / job.name, job_fingerprint(job, digest, uri))
    if resume.run_id:
        run = mlflow.start_run(run_id=resume.run_id)
        print(f"{job.name}: resuming MLflow run {resume.run_id} after epoch {len(resume.rows)}", file=sys.stderr)
    else:
        tags = {
            "setting": job.name,
            "dataset": job.setting.dataset,
            "sweeps": ",".join(job.setting.sweeps),
            "git_commit": git_commit(root),
            "dvc_stage": f"train@{job.name}",
            "data_md5": digest,
            "smoke_run": str(job.train.smoke_run).lower(),
        }
        if os.environ.get("DVC_EXP_NAME"):
            tags["dvc_experiment"] = os.environ["DVC_EXP_NAME"]
        experiment = tracking.experiment_id(tracking.EXPERIMENTS[job.setting.dataset], root)
        run = mlflow.start_run(experiment_id=experiment, run_name=job.name, tags=tags)
        mlflow.log_params(run_params(job))
    status = "FAILED"
    try:
        model, checkpoint, arrays = fit(job, args.data, mlflow, run.info.run_id, resume)
        rows = checkpoint.rows
        nan_epoch = first_non_finite(rows)
        if nan_epoch is not None:
            reason = f"loss became NaN/Inf in epoch {nan_epoch}"
            mlflow.set_tag("failure_reason", reason)
            raise PipelineError(f"setting {job.name}: {reason}; training stopped (try a lower train.learning_rate)")
        log_data_inputs(mlflow, job.setting.dataset, arrays, args.data)
        log_model(mlflow, model, arrays[0])
        metrics = final_metrics(rows)
        with atomic_file(args.model) as tmp:
            model.save(tmp)
        write_text(args.history, history_csv(rows))
        write_json(args.metrics, metrics)
        write_json(args.run, {"run_id": run.info.run_id, "experiment": tracking.EXPERIMENTS[job.setting.dataset]})
        resume.clear()
        status = "FINISHED"
        print(f"{job.name}: val_accuracy {metrics['val_accuracy']:.4f} after {metrics['epochs']} epochs "
              f"({metrics['seconds_per_epoch']:.1f} s/epoch); MLflow run {run.info.run_id}", file=sys.stderr)
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException as exc:
        resume.clear()  # only an interrupted run is resumed; a failed one starts over
        if not isinstance(exc, PipelineError):
            mlflow.set_tag("failure_reason", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        raise
    finally:
        mlflow.end_run(status)


if __name__ == "__main__":
    cli.run(main)
