"""One trial of a study: the base setting with the trial's values, trained in this process on the
prepared training split and judged, epoch by epoch, on the validation split (never the test split:
SPLITS); each epoch's curve into the trial's MLflow run, and its validation metric to Optuna's pruner."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from pipeline.common.errors import PipelineError
from pipeline.common.stops import SafeStops
from pipeline.job import TrainJob
from pipeline.params.schema import Params, is_smoke_run, resolve
from pipeline.params.space import SearchEntry
from pipeline.train import build_compiled, load_split, training_subset

SPLITS = ("train", "val")  # all a trial reads: never the test split
SPLIT_FILES = tuple(f"{x}_{split}.npy" for split in SPLITS for x in "xy")  # as pipeline/preprocess.py names them

# The tests that stop a search mid-trial (Ctrl-C, SIGKILL, two workers at once) set this to a trial
# number: that trial and later ones hold after their first epoch until stopped, so that the stop
# finds them training however loaded the machine is. Unset: no hold.
HOLD_TRIALS_FROM_ENV = "PIPELINE_HOLD_TRIALS_FROM"


def hold_if_asked(number: int, stops: SafeStops) -> None:
    first = os.environ.get(HOLD_TRIALS_FROM_ENV)
    while first is not None and number >= int(first):
        stops.check()
        time.sleep(0.05)


def label(value) -> object:
    """Optuna's choices are scalars: a list (dropout) is chosen by its text."""
    return json.dumps(list(value)) if isinstance(value, (list, tuple)) else value


def sample(trial, entry: SearchEntry) -> dict[str, object]:
    """The trial's values, by setting key."""
    values = {}
    for key, dim in entry.space.items():
        if dim.choices is not None:
            labels = [label(choice) for choice in dim.choices]
            picked = trial.suggest_categorical(key, labels)
            values[key] = dim.choices[labels.index(picked)]
        elif isinstance(dim.low, int):
            values[key] = trial.suggest_int(key, dim.low, dim.high, log=dim.log)
        else:
            values[key] = trial.suggest_float(key, float(dim.low), float(dim.high), log=dim.log)
    return values


def trial_job(params: Params, entry: SearchEntry, name: str, values: dict, data: Path) -> TrainJob:
    """The trial as a training job: the base setting with the trial's values, at the trial's budget."""
    setting = replace(params.settings[entry.base], epochs=entry.epochs, subset=entry.subset, **values)
    own, train, model = resolve(setting, params.train, getattr(params.models, setting.dataset))
    return TrainJob(name, own, model, train, data / "rgb" if own.color == "rgb" else data, "", entry.seed)


class Data:
    """The prepared training and validation splits, loaded once per directory."""

    def __init__(self, directory: Path, dataset: str):
        self.directory, self.dataset, self.loaded = directory, dataset, {}

    def check(self, color_too: bool) -> None:
        for directory in (self.directory, self.directory / "rgb") if color_too else (self.directory,):
            missing = [file for file in SPLIT_FILES if not (directory / file).exists()]
            if missing:
                raise PipelineError(f"{directory}: no prepared {self.dataset} data ({missing[0]} is missing); "
                                    f"run: dvc repro preprocess@{self.dataset}")

    def splits(self, job: TrainJob):
        if job.data not in self.loaded:
            x_train, y_train = load_split(job.data, "train")
            subset = training_subset(len(y_train), job.train.subset, job.seed)
            if subset is not None:
                x_train, y_train = x_train[subset], y_train[subset]
            self.loaded[job.data] = (np.asarray(x_train), y_train, *map(np.asarray, load_split(job.data, "val")))
        return self.loaded[job.data]


# What a trial is scored on, by the entry's metric: val_loss is the validation split's cross-entropy
# alone. Keras' own val_loss adds the L2 penalty of the weights, which would favour a small `l2` for
# the penalty's sake, not for what the model predicts.
SCORED = {"val_accuracy": "val_accuracy", "val_loss": "val_cross_entropy"}


def epoch_reporter(trial, metric: str, epochs: int, mlflow, stops: SafeStops):
    """Keras callback: each epoch's metrics into the trial's MLflow run (step = epoch, 1-based), with
    val_cross_entropy (Keras' val_loss less the weights' penalty, constant while it evaluates), and
    its validation metric to Optuna; a trial the pruner calls behind stops after that epoch. Never
    after its last: a trial that trained to the end has its value, and the sampler learns from it.
    A training loss that is not finite is the trial's failure: `failure` says so, and it stops (the
    validation metric of diverged weights, about chance, is no score)."""
    import keras

    class EpochReporter(keras.callbacks.Callback):
        pruned = False
        value = math.nan
        failure = None

        def on_train_batch_end(self, batch, logs=None):
            stops.check()

        def on_test_batch_end(self, batch, logs=None):
            stops.check()

        def on_epoch_end(self, epoch, logs=None):
            stops.check()
            logs = {k: float(v) for k, v in (logs or {}).items()}
            if "val_loss" in logs:
                logs["val_cross_entropy"] = logs["val_loss"] - sum(float(loss) for loss in self.model.losses)
            mlflow.log_metrics(logs, step=epoch + 1, synchronous=True)
            if not math.isfinite(logs.get("loss", math.nan)):
                self.failure = f"the training loss went {logs.get('loss')} in epoch {epoch + 1}"
                self.model.stop_training = True
                return
            self.value = logs.get(SCORED[metric], math.nan)
            if math.isfinite(self.value):
                trial.report(self.value, epoch)
                if epoch == 0:
                    hold_if_asked(trial.number, stops)
                if epoch + 1 < epochs and trial.should_prune():
                    self.pruned = True
                    self.model.stop_training = True

    return EpochReporter()


def trainer(params: Params, entry: SearchEntry, name: str, data: Data, parent: str, experiment: str,
            stops: SafeStops, worker: int):
    """run_trial(trial) -> (Optuna's state for it, its value or None), for Study.tell. Each trial's
    run is a child of the study's run `parent`, also when another process (the driver) holds that run.
    Ctrl-C or SIGTERM: the trial is failed as interrupted and queued again with its values (it runs
    again on resume), and the interruption goes on."""
    import keras
    import mlflow
    from optuna.trial import TrialState

    from pipeline.provenance.record import record_provenance
    from pipeline.tracking.system_metrics import sample_every, sampling_seconds

    sample_every(sampling_seconds(None, is_smoke_run(entry.epochs, entry.subset)))

    def run_trial(trial) -> tuple[TrialState, float | None]:
        state, run = "failed", None
        try:
            values = sample(trial, entry)
            job = trial_job(params, entry, f"{name} trial {trial.number}", values, data.directory)
            shown = {key: label(value) for key, value in values.items()}
            run = mlflow.start_run(experiment_id=experiment, run_name=f"trial {trial.number}", nested=True,
                                   parent_run_id=parent, tags={"search": name, "kind": "trial",
                                                               "trial": str(trial.number), "worker": str(worker),
                                                               "state": "running"}, log_system_metrics=True)
            record_provenance(mlflow.MlflowClient(), run.info.run_id)
            trial.set_user_attr("mlflow_run", run.info.run_id)
            stops.check()
            mlflow.log_params({**shown, "epochs": entry.epochs, "subset": entry.subset, "seed": entry.seed,
                               "base": entry.base})
            keras.backend.clear_session()
            model, _, _ = build_compiled(job)
            x_train, y_train, x_val, y_val = data.splits(job)
            from pipeline.model.datasets import num_classes
            from pipeline.training.feed import array_batches

            classes, batch = num_classes(job.dataset), job.train.batch_size
            reporter = epoch_reporter(trial, entry.metric, entry.epochs, mlflow, stops)
            model.fit(array_batches(x_train, y_train, batch_size=batch, classes=classes, shuffle_seed=job.seed),
                      validation_data=array_batches(x_val, y_val, batch_size=batch, classes=classes),
                      epochs=entry.epochs, shuffle=False, verbose=0,
                      callbacks=[reporter, keras.callbacks.TerminateOnNaN()])
            if reporter.failure or not math.isfinite(reporter.value):
                reason = reporter.failure or f"its {entry.metric} was {reporter.value}"
                mlflow.set_tag("failure_reason", reason)
                trial.set_user_attr("failure_reason", reason)
                return TrialState.FAIL, None
            if reporter.pruned:
                state = "pruned"
                return TrialState.PRUNED, None
            state = "complete"  # its last epoch's metric is the trial's value
            return TrialState.COMPLETE, reporter.value
        except KeyboardInterrupt:
            state = "interrupted"  # run again on resume, with the same values
            trial.set_user_attr("interrupted", True)
            trial.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})  # all drawn by now
            trial.study.tell(trial, state=TrialState.FAIL)
            raise
        except Exception:
            trial.study.tell(trial, state=TrialState.FAIL)
            raise
        finally:
            if run is not None:
                mlflow.set_tag("state", state)
                mlflow.end_run("FINISHED" if state in ("complete", "pruned") else "KILLED" if state == "interrupted"
                               else "FAILED")

    return run_trial
