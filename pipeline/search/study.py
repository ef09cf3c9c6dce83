"""Search a setting's neighbourhood: `python -m pipeline.search.study <entry>` (make search NAME=<entry>).

The entry `search.<entry>` of params.yaml (pipeline/params/space.py) names a base setting, the keys
to vary with their ranges or choices, the trials and each trial's budget. Optuna's TPE sampler
proposes each trial's values; the trial trains in this process on the prepared training split
(data/prepared/<dataset>) and is judged on the validation split, epoch by epoch: a trial clearly
behind the others at the same epoch is pruned (Optuna's median pruner). The test split is never
loaded: it judges the chosen setting later, once (`dvc repro` and the report).

The study lives in .dvc/tmp/search/<entry>.db (Optuna's SQLite storage): stopped by Ctrl-C or a
kill, the same command resumes it; finished trials stay, an interrupted one runs again with its
values. An entry whose values change starts a new study (its name carries their digest).

MLflow: experiment `search-<entry>`, one parent run per study and a nested run per trial (the
sampled values as params, per-epoch curves, tag `state` complete / pruned / failed / interrupted).
Once every trial has finished, the best trial is written into params.yaml as the setting
`<base>-searched` and the sweep `<entry>` comparing it with its base: `dvc repro` trains it at full
size with every seed of `seeds:`, and the report gives the verdict against the base on the test split.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import math
import os
import signal
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from pipeline.common import cli
from pipeline.common.errors import PipelineError
from pipeline.job import TrainJob
from pipeline.params.load import load_search
from pipeline.params.schema import Params, resolve, resolved, setting_values
from pipeline.params.space import SearchEntry
from pipeline.search.result import write_result
from pipeline.train import build_compiled, load_split, training_subset
from pipeline.training.timings import duration

SPLITS = ("train", "val")  # all a trial reads: never the test split


def storage_path(root: Path, name: str) -> Path:
    return root / ".dvc" / "tmp" / "search" / f"{name}.db"


def study_name(name: str, entry: SearchEntry, params: Params) -> str:
    """The entry's name and a digest of what its trials train: a changed entry is a new study."""
    what = {"entry": asdict(entry), "base": setting_values(*resolved(params, entry.base))}
    return f"{name}-{hashlib.md5(json.dumps(what, sort_keys=True, default=list).encode()).hexdigest()[:8]}"


def _label(value) -> object:
    """Optuna's choices are scalars: a list (dropout) is chosen by its text."""
    return json.dumps(list(value)) if isinstance(value, (list, tuple)) else value


def sample(trial, entry: SearchEntry) -> dict[str, object]:
    """The trial's values, by setting key."""
    values = {}
    for key, dim in entry.space.items():
        if dim.choices is not None:
            labels = [_label(choice) for choice in dim.choices]
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
            files = [f"{x}_{split}.npy" for split in SPLITS for x in "xy"]
            missing = [file for file in files if not (directory / file).exists()]
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


class SafeStops:
    """Ctrl-C and SIGTERM, acted on at the next safe point (a batch's end, a trial's start) rather
    than wherever Python happens to be: a KeyboardInterrupt raised inside a garbage-collection
    callback of SQLAlchemy or TensorFlow is printed and dropped, and the study would train on."""

    def __init__(self):
        self.signum = None

    @contextlib.contextmanager
    def installed(self):
        def note(signum, frame):
            self.signum = signum

        previous = {signum: signal.signal(signum, note) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def check(self) -> None:
        if self.signum == signal.SIGTERM:
            raise cli.Terminated(f"received signal {self.signum}")
        if self.signum is not None:
            raise KeyboardInterrupt()


def epoch_reporter(trial, metric: str, mlflow, stops: SafeStops):
    """Keras callback: each epoch's metrics into the trial's MLflow run (step = epoch, 1-based) and
    its validation metric to Optuna; a trial the pruner calls behind stops after that epoch."""
    import keras

    class EpochReporter(keras.callbacks.Callback):
        pruned = False
        value = math.nan

        def on_train_batch_end(self, batch, logs=None):
            stops.check()

        def on_test_batch_end(self, batch, logs=None):
            stops.check()

        def on_epoch_end(self, epoch, logs=None):
            stops.check()
            logs = {k: float(v) for k, v in (logs or {}).items()}
            mlflow.log_metrics(logs, step=epoch + 1, synchronous=True)
            self.value = logs.get(metric, math.nan)
            if math.isfinite(self.value):
                trial.report(self.value, epoch)
                if trial.should_prune():
                    self.pruned = True
                    self.model.stop_training = True

    return EpochReporter()


def objective(params: Params, entry: SearchEntry, name: str, data: Data, parent: str, experiment: str,
              stops: SafeStops):
    import keras
    import mlflow
    import optuna

    def run_trial(trial) -> float:
        values = sample(trial, entry)
        job = trial_job(params, entry, f"{name} trial {trial.number}", values, data.directory)
        shown = {key: _label(value) for key, value in values.items()}
        run = mlflow.start_run(experiment_id=experiment, run_name=f"trial {trial.number}", nested=True,
                               tags={"search": name, "kind": "trial", "trial": str(trial.number), "state": "running"})
        trial.set_user_attr("mlflow_run", run.info.run_id)
        state = "failed"
        try:
            stops.check()
            mlflow.log_params({**shown, "epochs": entry.epochs, "subset": entry.subset, "seed": entry.seed,
                               "base": entry.base})
            keras.backend.clear_session()
            model, _, _ = build_compiled(job)
            x_train, y_train, x_val, y_val = data.splits(job)
            from pipeline.model.datasets import num_classes
            from pipeline.training.feed import array_batches

            classes, batch = num_classes(job.dataset), job.train.batch_size
            reporter = epoch_reporter(trial, entry.metric, mlflow, stops)
            model.fit(array_batches(x_train, y_train, batch_size=batch, classes=classes, shuffle_seed=job.seed),
                      validation_data=array_batches(x_val, y_val, batch_size=batch, classes=classes),
                      epochs=entry.epochs, shuffle=False, verbose=0,
                      callbacks=[reporter, keras.callbacks.TerminateOnNaN()])
            if reporter.pruned:
                state = "pruned"
                raise optuna.TrialPruned()
            if math.isfinite(reporter.value):
                state = "complete"  # its last epoch's metric is the trial's value
            return reporter.value  # NaN: Optuna records the trial as failed
        except KeyboardInterrupt:
            state = "interrupted"  # run again on resume, with the same values
            trial.set_user_attr("interrupted", True)
            trial.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})  # all drawn by now
            raise
        finally:
            mlflow.set_tag("state", state)
            mlflow.end_run("FINISHED" if state in ("complete", "pruned") else "KILLED" if state == "interrupted"
                           else "FAILED")

    return run_trial


def values_of(trial) -> dict:
    """A stored trial's values: those it drew, and those it was queued with (an interrupted retry,
    or a trial queued by hand with Study.enqueue_trial) but had not drawn yet."""
    return {**trial.system_attrs.get("fixed_params", {}), **trial.params}


def counted(trial) -> bool:
    """A finished trial: complete, pruned, or failed on its own (not stopped by Ctrl-C or a kill)."""
    from optuna.trial import TrialState

    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.state == TrialState.FAIL and not trial.user_attrs.get("interrupted"))


def recover(study, storage, client) -> list[int]:
    """After a kill: the trials left RUNNING (only this process runs the study: the lock) are
    failed as interrupted and queued again with their values; their MLflow runs end KILLED."""
    from optuna.trial import TrialState

    again = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        queued = trial.user_attrs.get("interrupted")  # by Ctrl-C, which queued it already
        storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        values = values_of(trial)
        if not queued and values:  # none: killed before its values were drawn, nothing to repeat
            study.enqueue_trial(values, user_attrs={"retry_of": trial.number})
        run_id = trial.user_attrs.get("mlflow_run")
        if run_id and _exists(client, run_id):
            client.set_tag(run_id, "state", "interrupted")
            client.set_terminated(run_id, "KILLED")
        again.append(trial.number)
    return again


def progress(name: str, entry: SearchEntry, started: float, done_before: int):
    """optimize's callback: one line per finished trial."""
    from optuna.trial import TrialState

    def note(study, trial) -> None:
        finished = [t for t in study.get_trials(deepcopy=False) if counted(t)]
        left = max(entry.trials - len(finished), 0)
        here = len(finished) - done_before
        per_trial = (time.monotonic() - started) / here if here > 0 else 0.0
        value = "" if trial.value is None else f" ({entry.metric} {trial.value:.4f})"
        if trial.state == TrialState.PRUNED and trial.intermediate_values:
            step = max(trial.intermediate_values)
            value = f" after epoch {step + 1} ({entry.metric} {trial.intermediate_values[step]:.4f})"
        try:
            best = f"best so far {study.best_value:.4f} (trial {study.best_trial.number})"
        except ValueError:
            best = "no trial complete yet"
        print(f"{name}: trial {trial.number} {trial.state.name.lower()}{value}; {best}; {left} trial(s) left, "
              f"about {duration(per_trial * left)}", file=sys.stderr, flush=True)

    return note


@contextlib.contextmanager
def only_process(path: Path, name: str):
    """One process per study: a second one would take the first one's running trial for a killed one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PipelineError(f"search {name}: another process runs this study ({path}); wait for it or "
                                "stop it") from None
        yield


def open_study(name: str, entry: SearchEntry, params: Params, root: Path):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = storage_path(root, name)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=entry.startup_trials) if entry.pruner == "median"
              else optuna.pruners.NopPruner())
    storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
    return optuna.create_study(storage=storage, study_name=study_name(name, entry, params),
                               direction=entry.direction, sampler=optuna.samplers.TPESampler(seed=entry.seed),
                               pruner=pruner, load_if_exists=True), storage, path


def _exists(client, run_id: str) -> bool:
    import mlflow

    try:
        return client.get_run(run_id).info.lifecycle_stage == "active"
    except mlflow.exceptions.MlflowException:
        return False


def best_values(study, entry: SearchEntry) -> dict[str, object]:
    """The best trial's values, by setting key (choices as written in the entry)."""
    values = {}
    for key, value in study.best_trial.params.items():
        dim = entry.space[key]
        values[key] = dim.choices[[_label(c) for c in dim.choices].index(value)] if dim.choices is not None else value
    return values


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.search.study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("entry", help="a key under `search:` in params.yaml")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    params, entry = load_search(args.params, args.entry)
    name, dataset = args.entry, params.settings[entry.base].dataset

    from pipeline.tracking import store as tracking

    root = tracking.project_root()
    data = Data(root / "data" / "prepared" / dataset, dataset)
    data.check(color_too=resolved(params, entry.base)[0].color == "rgb" or "color" in entry.space)
    tracking.connect(root)
    from pipeline.model.runtime import load_tensorflow

    load_tensorflow()
    import mlflow

    with only_process(storage_path(root, name), name):
        study, storage, path = open_study(name, entry, params, root)
        client = mlflow.MlflowClient()
        again = recover(study, storage, client)
        done = sum(counted(t) for t in study.get_trials(deepcopy=False))
        experiment = tracking.experiment_id(f"search-{name}", root)
        parent = study.user_attrs.get("mlflow_run")
        if parent and _exists(client, parent):
            run = mlflow.start_run(run_id=parent)
        else:  # a new study, or its run's store was emptied: a new parent run
            run = mlflow.start_run(experiment_id=experiment, run_name=f"study {study.study_name}",
                                   tags={"search": name, "kind": "study", "study": study.study_name})
            mlflow.log_params({"base": entry.base, "trials": entry.trials, "epochs": entry.epochs,
                               "subset": entry.subset, "metric": entry.metric, "seed": entry.seed,
                               "space": json.dumps({k: asdict(v) for k, v in entry.space.items()}, default=list)})
            study.set_user_attr("mlflow_run", run.info.run_id)
        left = entry.trials - done
        resumed = f"; trial(s) {', '.join(map(str, again))} interrupted, run again" if again else ""
        print(f"{name}: study {study.study_name} in {path}: {done} of {entry.trials} trials finished{resumed}",
              file=sys.stderr, flush=True)
        with tracking.run_outcome(run.info.run_id):
            if left > 0:
                try:
                    with SafeStops().installed() as stops:
                        study.optimize(objective(params, entry, name, data, run.info.run_id, experiment, stops),
                                       n_trials=left, gc_after_trial=True,
                                       callbacks=[progress(name, entry, time.monotonic(), done)])
                        stops.check()
                except KeyboardInterrupt as exc:
                    exc.add_note(f"finished trials are kept: `make search NAME={name}` resumes the study")
                    raise
            try:
                best = study.best_trial
            except ValueError:
                raise PipelineError(f"search {name}: no trial completed (all pruned or failed): widen the space or "
                                    "raise the per-trial epochs") from None
            mlflow.set_tags({"best_trial": str(best.number), "best_run": best.user_attrs.get("mlflow_run", "")})
            mlflow.log_metric(f"best_{entry.metric}", best.value)
            setting, sweep = write_result(args.params, name, entry, best_values(study, entry), best.number, best.value)
    print(f"{name}: best trial {best.number} ({entry.metric} {best.value:.4f}) written to {args.params} as setting "
          f"{setting} and sweep {name} (vary: {sweep}); `dvc repro` trains it at full size with every seed, the "
          "report judges it against its base on the test split", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    cli.run(main)
