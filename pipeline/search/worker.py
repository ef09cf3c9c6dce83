"""The loop that runs a study's trials, in the driver's own process (`make search NAME=<entry>`) or
in each of its workers (`make search NAME=<entry> JOBS=N`: `python -m pipeline.search.worker`,
started by pipeline/search/study.py, never by hand), and on Dask workers (pipeline/search/cluster.py).

Trials are drawn until the entry's count is finished across all workers: finished plus running
reaching it, a worker stops. The driver holds the study's lock and its MLflow run; a worker's
trials are children of that run. A worker on the driver's machine ends with its driver: if the
driver dies (even by SIGKILL), the kernel sends the worker SIGTERM, and it stops at the next safe
point with its trial queued again, as after Ctrl-C. One on a Dask worker reaches the study through
the driver's gRPC proxy, and fails once the driver is gone.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import os
import signal
import sys
import time
from pathlib import Path

from pipeline.common import cli
from pipeline.common.stops import SafeStops
from pipeline.params.load import load_search
from pipeline.params.space import SearchEntry
from pipeline.search.storage import AskLock, counted, storage_path, taken, worker_study
from pipeline.search.trial import Data, trainer
from pipeline.training.timings import duration

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def progress(name: str, entry: SearchEntry, started: float, done_before: int):
    """note(study, trial): one line for a finished trial. Time left: the wall time per trial finished
    since this process started, by any worker, times the trials left."""
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


def next_trial(study, entry: SearchEntry, ask_lock):
    """A new trial (a queued one first), or None once those finished and those running in any worker
    make the entry's count. Workers on one machine check and ask under `ask_lock`: two at once would
    both take the last slot, or the same queued trial (Optuna takes one by a read and a write through
    SQLite, unlocked). Workers on other machines share no lock: one whose trial turns out to lie
    beyond the count (lower numbers take the slots) hands it back unrun, its values queued again."""
    from optuna.trial import TrialState

    with ask_lock:
        if taken(study) >= entry.trials:
            return None
        trial = study.ask()
    if taken(study, up_to=trial.number) <= entry.trials:
        return trial
    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
    queued = frozen.system_attrs.get("fixed_params")  # a queued trial: its values wait for the next start
    if queued:
        study.enqueue_trial(queued, user_attrs=dict(trial.user_attrs))
    trial.set_user_attr("handed_back", True)
    study.tell(trial, state=TrialState.FAIL)
    return None


def optimize(study, params, entry: SearchEntry, name: str, data: Data, parent: str, experiment: str,
             worker: int, stops: SafeStops, ask_lock) -> None:
    """Trials until the entry's count is finished, through Optuna's ask and tell."""
    run_trial = trainer(params, entry, name, data, parent, experiment, stops, worker)
    note = progress(name, entry, time.monotonic(), sum(counted(t) for t in study.get_trials(deepcopy=False)))
    while True:
        stops.check()
        trial = next_trial(study, entry, ask_lock)
        if trial is None:
            return
        state, value = run_trial(trial)
        note(study, study.tell(trial, value, state=state))
        gc.collect()  # each trial's graph and arrays: Keras keeps references until collected


def stop_with(driver: int) -> None:
    """SIGTERM to this process when the driver dies, also by SIGKILL (Linux's parent-death signal)."""
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed: a worker would outlive its driver")
    if os.getppid() != driver:  # it died before the signal was asked for
        raise cli.Terminated("the search's driver is gone")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.search.worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("entry")
    parser.add_argument("--params", type=Path, required=True)
    parser.add_argument("--study", required=True, help="the study's name in its storage (the driver's)")
    parser.add_argument("--parent", required=True, help="the study's MLflow run")
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--driver", type=int, help="the driver's process id, on the driver's machine")
    parser.add_argument("--storage", help="host:port of the driver's gRPC proxy to the study, on a Dask worker")
    args = parser.parse_args(argv)
    try:
        if args.driver is not None:
            stop_with(args.driver)
        params, entry = load_search(args.params, args.entry)
        from pipeline.tracking import store as tracking

        root = tracking.project_root()
        dataset = params.settings[entry.base].dataset
        tracking.connect(root)
        from pipeline.model.runtime import load_tensorflow

        path = storage_path(root, args.entry)
        study = worker_study(args.study, entry, path, args.worker, args.storage)
        load_tensorflow()
        # On other machines than the driver's there is no file to lock (see next_trial).
        ask_lock = contextlib.nullcontext() if args.storage else AskLock(path)
        with SafeStops().installed() as stops:
            optimize(study, params, entry, args.entry, Data(root / "data" / "prepared" / dataset, dataset),
                     args.parent, args.experiment, args.worker, stops, ask_lock)
    except KeyboardInterrupt:
        sys.exit(130)  # the driver says it, once for all its workers


if __name__ == "__main__":
    cli.run(main)
