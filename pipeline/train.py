"""train stage: train one setting of params.yaml; one MLflow run, tracked per epoch.

Writes the Keras model (.keras), the run id (JSON: evaluate and plot add to the same run), the
final train/val metrics (a DVC metric) and the per-epoch history (CSV, a DVC plot).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline import cli
from pipeline.checkpoint import Resume, backup_dir, epoch_checkpoint, fingerprint
from pipeline.config import Cifar10ModelConfig, MnistModelConfig, Params, Setting, TrainConfig, load_params
from pipeline.datasets import num_classes
from pipeline.errors import PipelineError
from pipeline.estimate import EpochTiming, record_timing, this_machine
from pipeline.history import final_metrics, first_non_finite, history_csv
from pipeline.outputs import atomic_file, write_json, write_text
from pipeline.provenance import data_md5, git_commit
from pipeline.runtime import load_tensorflow


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


def run_params(job: TrainJob) -> dict[str, object]:
    """Every hyperparameter of params.yaml that the job uses, flat, as MLflow params."""
    flat: dict[str, object] = {"setting": job.name}
    flat.update({k: v for k, v in asdict(job.setting).items() if k != "sweeps"})
    flat.update({f"model.{k}": v for k, v in asdict(job.model).items()})
    flat.update({f"train.{k}": v for k, v in asdict(job.train).items()})
    return flat


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

    from pipeline.estimate import duration

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


def build_compiled(job: TrainJob):
    """The setting's model, compiled under the runtime options of the train params."""
    from pipeline.models import build_model, compile_model
    from pipeline.runtime import configure_runtime

    strategy = configure_runtime(job.train)
    with strategy.scope():
        model = build_model(job.name, job.setting, job.model)
        return compile_model(model, job.train.learning_rate, jit_compile=job.train.jit_compile,
                             steps_per_execution=job.train.steps_per_execution), strategy


def fit(job: TrainJob, data_dir: Path, mlflow, run_id: str, resume: Resume):
    """Train, resuming from the last finished epoch if a backup exists; return the model, the
    rows of every finished epoch (also when stopped early on NaN), the arrays and the strategy.

    `mlflow` is the module, or anything with its `log_metrics` (the benchmark times it)."""
    import keras

    model, strategy = build_compiled(job)
    x_train, y_train = load_split(data_dir, "train")
    subset = training_subset(len(y_train), job.train.subset, job.train.seed)
    if subset is not None:
        x_train, y_train = x_train[subset], y_train[subset]
    x_val, y_val = load_split(data_dir, "val")
    checkpoint = epoch_checkpoint(mlflow, run_id, resume)
    classes = num_classes(job.setting.dataset)
    # In-memory arrays: on this CPU a tf.data pipeline from the memory-mapped files measured the
    # same speed (python -m bench), and both splits fit in memory for these datasets.
    model.fit(
        np.asarray(x_train), keras.utils.to_categorical(y_train, classes),
        validation_data=(np.asarray(x_val), keras.utils.to_categorical(y_val, classes)),
        epochs=job.train.epochs, batch_size=job.train.batch_size, shuffle=True,
        callbacks=[checkpoint, keras.callbacks.TerminateOnNaN(), progress_note(job.name, job.train.epochs)],
        verbose=1 if sys.stdout.isatty() else 2,
    )
    return model, checkpoint.rows, (x_train, y_train, x_val, y_val), strategy


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


def start_run(mlflow, job: TrainJob, resume: Resume, root: Path, digest: str):
    """The interrupted run this job resumes, or a new one with its params and provenance tags."""
    from pipeline import tracking

    if resume.run_id:
        print(f"{job.name}: resuming MLflow run {resume.run_id} after epoch {len(resume.rows)}", file=sys.stderr)
        return mlflow.start_run(run_id=resume.run_id)
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
    return run


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
    job = stage_params(load_params(args.params, setting=args.setting), args.setting)

    from pipeline import tracking

    root = tracking.project_root()
    uri = tracking.connect(root)
    load_tensorflow()
    import mlflow
    import mlflow.tensorflow  # noqa: F401  (the flavor used by log_model)

    from pipeline.models import optimizer_name

    digest = data_md5(args.data)
    resume = Resume.load(backup_dir(root, job.name), fingerprint(run_params(job), digest, uri))
    run_id = start_run(mlflow, job, resume, root, digest).info.run_id
    with tracking.run_outcome(run_id), resume.kept_only_if_interrupted():
        model, rows, arrays, strategy = fit(job, args.data, mlflow, run_id, resume)
        mlflow.log_params({"optimizer": optimizer_name(model), "loss": model.loss,
                           "replicas": strategy.num_replicas_in_sync})
        nan_epoch = first_non_finite(rows)
        if nan_epoch is not None:
            raise PipelineError(f"setting {job.name}: loss became NaN/Inf in epoch {nan_epoch}; training stopped "
                                "(try a lower train.learning_rate)")
        log_data_inputs(mlflow, job.setting.dataset, arrays, args.data)
        log_model(mlflow, model, arrays[0])
        metrics = final_metrics(rows)
        with atomic_file(args.model) as tmp:
            model.save(tmp)
        write_text(args.history, history_csv(rows))
        write_json(args.metrics, metrics)
        write_json(args.run, {"run_id": run_id, "experiment": tracking.EXPERIMENTS[job.setting.dataset]})
        resume.clear()
    epoch_seconds = [row["seconds"] for row in rows]
    record_timing(root, job.name, EpochTiming(this_machine(), job.train.batch_size, len(arrays[1]), len(arrays[3]),
                                              statistics.median(epoch_seconds[1:] or epoch_seconds)))
    print(f"{job.name}: val_accuracy {metrics['val_accuracy']:.4f} after {metrics['epochs']} epochs "
          f"({metrics['seconds_per_epoch']:.1f} s/epoch); MLflow run {run_id}", file=sys.stderr)


if __name__ == "__main__":
    cli.run(main)
