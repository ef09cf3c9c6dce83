"""`make search NAME=<entry> SCHEDULER=tcp://host:8786`: a study's trials on the workers of a Dask
cluster (the one `make sweep SCHEDULER=...` uses), JOBS of them at a time (default: one per worker).

The study stays on this machine (.dvc/tmp/search/<entry>.db, resumable as ever): while the search
runs, this process serves it to the workers over gRPC (Optuna's storage proxy). Each task, on
whatever worker takes it: a checkout of this commit with this params.yaml (pipeline/scaleout/cluster.py's
Checkout), the prepared data restored from the DVC remote, then `python -m pipeline.search.worker`
drawing trials until the entry's count is finished, logging each trial to the shared tracking
server as a child of the study's run. This process prints a line per finished trial, read from
the study.
"""

from __future__ import annotations

import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from pipeline.common.errors import PipelineError
from pipeline.params.space import SearchEntry
from pipeline.scaleout.cluster import Checkout, stage_error
from pipeline.scaleout.cluster_setup import Shared
from pipeline.scaleout.sweep import dvc
from pipeline.search.storage import counted


@dataclass(frozen=True)
class SearchTask:
    """One worker's share of a study: everything it needs travels with it."""

    entry: str
    worker: int
    dataset: str
    repository: str
    commit: str
    params_text: str
    remote_url: str
    tracking_uri: str
    storage: str  # host:port of the study's gRPC proxy
    study: str  # its name there
    parent: str  # the study's MLflow run
    experiment: str


def run_search_task(task: SearchTask) -> tuple[str, int, str]:
    """On a Dask worker: trials of the study until its count is finished. (worker address, exit
    status, the worker's last line of error output)."""
    with Checkout(f"search-{task.entry}-{task.worker}", task.repository, task.commit, task.params_text,
                  task.remote_url, {"MLFLOW_TRACKING_URI": task.tracking_uri}) as checkout:
        checkout.must(checkout.dvc, "repro", "--pull", f"preprocess@{task.dataset}")
        result = checkout.call(sys.executable, "-m", "pipeline.search.worker", task.entry, "--params", "params.yaml",
                               "--study", task.study, "--parent", task.parent, "--experiment", task.experiment,
                               "--worker", str(task.worker), "--storage", task.storage)
        error = stage_error(result.stderr) or (result.stderr.strip().splitlines() or [""])[-1]
        return checkout.address, result.returncode, error


class CallOnLoad:
    """Unpickled, it calls fn(*args) and becomes its result. Dask pickles a task by reference unless
    it comes from __main__, and the workers do not have this project on their path: the task
    travels as bytes pickled by value (cloudpickle), and cloudpickle.loads, which every worker has,
    runs it."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def address_towards(scheduler: str) -> str:
    """This machine's address on the network that reaches the scheduler: where workers find the study."""
    where = urlparse(scheduler)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((where.hostname or "127.0.0.1", where.port or 8786))  # picks the route; sends nothing
        return probe.getsockname()[0]


def serve_study(storage, host: str):
    """The study's storage behind Optuna's gRPC proxy on a free port of `host`: (server, "host:port")."""
    from concurrent.futures import ThreadPoolExecutor

    from optuna.storages._grpc.server import make_server

    with socket.socket() as probe:
        probe.bind((host, 0))
        port = probe.getsockname()[1]
    # One call at a time: Optuna takes a queued trial by a check and a write, which two workers'
    # calls served side by side could both pass.
    server = make_server(storage, host, port, ThreadPoolExecutor(max_workers=1))
    server.start()
    return server, f"{host}:{port}"


def run_on_cluster(scheduler: str, resources, jobs: int | None, shared: Shared, name: str, params_path: Path,
                   entry: SearchEntry, dataset: str, study, storage, parent: str, experiment: str, progress,
                   again: str) -> None:
    """Every trial left of the study on the cluster's workers; `progress(study, trial)` for each
    one finished, as it finishes. again: the command that resumes. A task that crashed (its machine
    lost, say) runs again elsewhere, twice at most; stopped here, no task is left to start."""
    import cloudpickle
    from distributed import Client, as_completed

    dvc("push", "--quiet", "--run-cache", "--with-deps", f"preprocess@{dataset}")  # the workers' data
    # Shipped by value: workers need the project's environment, not its code (see cluster.Checkout).
    for module in ("pipeline.search.cluster", "pipeline.scaleout.cluster"):
        cloudpickle.register_pickle_by_value(sys.modules[module])
    try:
        client = Client(scheduler, timeout="30s")
    except OSError as exc:
        raise PipelineError(f"no Dask scheduler answers at {scheduler} ({exc})") from None
    server, address = serve_study(storage, address_towards(scheduler))
    try:
        with client:
            count = jobs or max(len(client.scheduler_info()["workers"]), 1)
            print(f"{name}: {count} worker(s) of {scheduler} draw trials from the study at {address}",
                  file=sys.stderr, flush=True)
            tasks = [SearchTask(name, k, dataset, shared.repository, shared.commit,
                                params_path.read_text(encoding="utf-8"), shared.remote_url, shared.tracking_uri,
                                address, study.study_name, parent, experiment) for k in range(count)]
            futures = [client.submit(cloudpickle.loads, cloudpickle.dumps(CallOnLoad(run_search_task, task)),
                                     key=f"search-{name}-{task.worker}-{time.time_ns()}", resources=resources,
                                     retries=2, pure=False) for task in tasks]
            shown = {t.number for t in study.get_trials(deepcopy=False) if counted(t)}
            failures = []
            pending = as_completed(futures)
            try:
                while not pending.is_empty():
                    for future in pending.next_batch(block=False):
                        try:
                            address_of, status, error = future.result()
                        except Exception as exc:  # the checkout or the data on that worker, after the retries
                            address_of, status, error = "a worker", 1, f"{type(exc).__name__}: {exc}"
                        if status != 0:
                            failures.append(f"{address_of}: {error}")
                    for trial in study.get_trials(deepcopy=False):
                        if counted(trial) and trial.number not in shown:
                            shown.add(trial.number)
                            progress(study, trial)
                    time.sleep(1)
            finally:  # Ctrl-C: no task left to start (running ones stop when the study's server is gone)
                client.cancel(futures)
    finally:
        server.stop(grace=None)
    if failures:
        raise PipelineError(f"search {name}: a worker failed ({failures[0]}); finished trials are kept: "
                            f"`{again}` resumes the study")
    left = entry.trials - sum(counted(t) for t in study.get_trials(deepcopy=False))
    if left > 0:  # a worker lost mid-trial: its trial stays running until the next start
        raise PipelineError(f"search {name}: {left} trial(s) unfinished (a worker was lost): `{again}` resumes "
                            "the study")
