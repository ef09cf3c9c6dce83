"""Search a setting's neighbourhood: `python -m pipeline.search.study <entry>` (make search NAME=<entry>).

The entry `search.<entry>` of params.yaml (pipeline/params/space.py) names a base setting, the keys
to vary with their ranges or choices, the trials and each trial's budget. Optuna's TPE sampler
proposes each trial's values; the trial trains on the prepared training split (data/prepared/<dataset>)
and is judged on the validation split, epoch by epoch: a trial clearly behind the others at the
same epoch is pruned (Optuna's median pruner). The test split is never loaded: it judges the chosen
setting later, once (`dvc repro` and the report). Trials run in this process, or with --jobs N
(make search JOBS=N) in N worker processes side by side (pipeline/search/worker.py), for a GPU
box or a many-core CPU (on 2 cores expect little gain: one training uses both), or with
--scheduler (make search SCHEDULER=tcp://host:8786) on a Dask cluster's workers
(pipeline/search/cluster.py).

The study lives in .dvc/tmp/search/<entry>.db (Optuna's SQLite storage): stopped by Ctrl-C or a
kill, the same command resumes it; finished trials stay, an interrupted one runs again with its
values (pipeline/search/storage.py). More `trials` continue the study; any other change to the
entry starts a new one (its name carries a digest of the rest).

MLflow: experiment `search-<entry>`, one parent run per study and a nested run per trial (the
sampled values as params, per-epoch curves, tag `state` complete / pruned / failed / interrupted).
Once every trial has finished, the best trial is written into params.yaml as the setting
`<base>-searched` and the sweep `<entry>` comparing it with its base (both named by the entry's
`result:` if it has one; pipeline/search/result.py), unless it trains as the base does: `make repro`
trains it with every seed of `seeds:` at the size `train:` gives (the quick size after `make quick`),
and the report gives the verdict against the base on the test split. An entry whose result would
replace a setting or sweep it did not write is refused before any trial (pipeline/params/searched.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from pipeline.common import cli
from pipeline.common.errors import PipelineError
from pipeline.common.stops import SafeStops
from pipeline.params.load import load_search
from pipeline.params.schema import resolved
from pipeline.params.size import size_words
from pipeline.params.space import SearchEntry, result_names
from pipeline.provenance.record import record_provenance
from pipeline.scaleout.cluster_setup import scheduler_address, task_resources
from pipeline.search.result import write_result
from pipeline.search.storage import counted, only_process, open_study, recover, run_exists, storage_path
from pipeline.search.trial import Data, label
from pipeline.search.worker import optimize, progress


def best_values(study, entry: SearchEntry) -> dict[str, object]:
    """The best trial's values, by setting key (choices as written in the entry)."""
    values = {}
    for key, value in study.best_trial.params.items():
        dim = entry.space[key]
        values[key] = dim.choices[[label(c) for c in dim.choices].index(value)] if dim.choices is not None else value
    return values


def run_workers(name: str, params_path: Path, jobs: int, lock: int, study: str, parent: str, experiment: str,
                again: str) -> None:
    """The trials in `jobs` worker processes, each in a session of its own: Ctrl-C reaches this
    process only, which passes it on once. One worker failing stops the others. again: the command
    that resumes."""
    command = [sys.executable, "-m", "pipeline.search.worker", name, "--params", str(params_path), "--study", study,
               "--parent", parent, "--experiment", experiment, "--driver", str(os.getpid())]
    workers = [subprocess.Popen([*command, "--worker", str(k)], pass_fds=(lock,), start_new_session=True)
               for k in range(jobs)]
    stopping = False
    with SafeStops().installed() as stops:
        while any(worker.poll() is None for worker in workers):
            failed = any(worker.returncode not in (None, 0) for worker in workers)
            if (stops.signum is not None or failed) and not stopping:
                for worker in workers:
                    if worker.poll() is None:
                        worker.send_signal(stops.signum or signal.SIGTERM)
                stopping = True
            time.sleep(0.2)
        stops.check()
    failed = [f"{k} (exit {worker.returncode})" for k, worker in enumerate(workers) if worker.returncode != 0]
    if failed:
        raise PipelineError(f"search {name}: worker {', '.join(failed)} failed (its error is above); finished "
                            f"trials are kept: `{again}` resumes the study")


def resume_command(args) -> str:
    """The make command that runs this search again as it was started."""
    options = {"JOBS": args.jobs, "SCHEDULER": args.scheduler, "RESOURCES": args.resources}
    return " ".join([f"make search NAME={args.entry}", *(f"{k}={v}" for k, v in options.items() if v)])


def study_run(mlflow, study, entry: SearchEntry, name: str, experiment: str):
    """The study's MLflow run: the one it started with, or a new one for a new study (or a store
    emptied since). The count of trials is a tag, as raising it continues the study."""
    client = mlflow.MlflowClient()
    parent = study.user_attrs.get("mlflow_run")
    if parent and run_exists(client, parent):
        run = mlflow.start_run(run_id=parent)
    else:
        run = mlflow.start_run(experiment_id=experiment, run_name=f"study {study.study_name}",
                               tags={"search": name, "kind": "study", "study": study.study_name})
        mlflow.log_params({"base": entry.base, "epochs": entry.epochs, "subset": entry.subset, "metric": entry.metric,
                           "seed": entry.seed,
                           "space": json.dumps({k: asdict(v) for k, v in entry.space.items()}, default=list)})
        study.set_user_attr("mlflow_run", run.info.run_id)
    mlflow.set_tag("trials", str(entry.trials))
    record_provenance(client, run.info.run_id)
    return run


def search(args) -> None:
    if args.jobs is not None and args.jobs < 1:
        raise PipelineError(f"--jobs {args.jobs}: trials side by side must be 1 or more (make search JOBS=N)")
    resources = task_resources(args.resources)
    scheduler = scheduler_address(args.scheduler) if args.scheduler else None
    jobs = args.jobs or 1
    params, entry = load_search(args.params, args.entry)
    name, dataset = args.entry, params.settings[entry.base].dataset
    shared = None
    if args.scheduler:
        from pipeline.scaleout.cluster_setup import shared_with_workers
        from pipeline.search.cluster import run_on_cluster

        shared = shared_with_workers()

    from pipeline.tracking import store as tracking
    from pipeline.tracking.outcome import run_outcome

    root = tracking.project_root()
    data = Data(root / "data" / "prepared" / dataset, dataset)
    data.check(color_too=resolved(params, entry.base)[0].color == "rgb" or "color" in entry.space)
    tracking.connect(root)
    if jobs == 1 and not args.scheduler:
        from pipeline.model.runtime import load_tensorflow

        load_tensorflow()
    import mlflow

    with only_process(storage_path(root, name), name) as lock:
        study, storage, path = open_study(name, entry, params, root)
        again = recover(study, storage, mlflow.MlflowClient())
        done = sum(counted(t) for t in study.get_trials(deepcopy=False))
        experiment = tracking.experiment_id(f"search-{name}", root)
        run = study_run(mlflow, study, entry, name, experiment)
        resumed = f"; trial(s) {', '.join(map(str, again))} interrupted, run again" if again else ""
        side_by_side = f"; {jobs} side by side" if jobs > 1 and not args.scheduler and done < entry.trials else ""
        print(f"{name}: study {study.study_name} in {path}: {done} of {entry.trials} trials finished{resumed}"
              f"{side_by_side}", file=sys.stderr, flush=True)
        with run_outcome(run.info.run_id):
            if done >= entry.trials:
                pass  # finished: the result is written again
            elif scheduler:
                run_on_cluster(scheduler, resources, args.jobs, shared, name, args.params, entry, dataset,
                               study, storage, run.info.run_id, experiment,
                               progress(name, entry, time.monotonic(), done), resume_command(args))
            elif jobs > 1:
                run_workers(name, args.params, jobs, lock, study.study_name, run.info.run_id, experiment,
                            resume_command(args))
            else:  # the study's lock keeps other processes out: no lock to ask under
                with SafeStops().installed() as stops:
                    optimize(study, params, entry, name, data, run.info.run_id, experiment, 0, stops,
                             contextlib.nullcontext())
            try:
                best = study.best_trial
            except ValueError:
                raise PipelineError(f"search {name}: no trial completed (all pruned or failed): widen the space or "
                                    "raise the per-trial epochs") from None
            mlflow.set_tags({"best_trial": str(best.number), "best_run": best.user_attrs.get("mlflow_run", "")})
            mlflow.log_metric(f"best_{entry.metric}", best.value)
            written = write_result(args.params, name, entry, best_values(study, entry), best.number, best.value)
    found = f"{name}: best trial {best.number} ({entry.metric} {best.value:.4f})"
    if written is None:
        print(f"{found} trains as its base {entry.base} does: nothing written to {args.params} (a result this search "
              "wrote there earlier stays as it was)", file=sys.stderr)
        return
    setting, sweep = written
    size = size_words(resolved(load_search(args.params, args.entry)[0], setting)[1])
    print(f"{found} written to {args.params} as setting {setting} and sweep {result_names(name, entry)[1]} (vary: "
          f"{sweep}); `make repro` trains it {size} with every seed, the report judges it against its base on "
          "the test split", file=sys.stderr)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.search.study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("entry", help="a key under `search:` in params.yaml")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--jobs", type=int, help="trials side by side, each in a worker process (default: 1; "
                                                 "with --scheduler, one per Dask worker)")
    parser.add_argument("--scheduler", help="a Dask scheduler, e.g. tcp://10.0.0.5:8786: the trials on its workers")
    parser.add_argument("--resources", help="what one worker's share takes of a Dask worker, e.g. GPU=1")
    args = parser.parse_args(argv)
    try:
        search(args)
    except KeyboardInterrupt as exc:  # a search writes no stage outputs: say how to go on instead
        what = "terminated" if isinstance(exc, cli.Terminated) else "interrupted"
        print(f"error: {what}; finished trials are kept: `{resume_command(args)}` resumes the study", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    cli.run(main)
