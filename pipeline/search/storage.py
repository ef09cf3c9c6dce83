"""Where a study lives: .dvc/tmp/search/<entry>.db (Optuna's SQLite storage), one driver at a time
(a lock its workers inherit), and what a kill left behind repaired before the study goes on."""

from __future__ import annotations

import contextlib
import fcntl
import sys
from pathlib import Path

from pipeline.common.errors import PipelineError
from pipeline.params.schema import Params
from pipeline.params.space import SearchEntry
from pipeline.search.identity import identity, prepared_data_digest, study_name, why_new


def storage_path(root: Path, name: str) -> Path:
    return root / ".dvc" / "tmp" / "search" / f"{name}.db"


def values_of(trial) -> dict:
    """A stored trial's values: those it drew, and those it was queued with (an interrupted retry,
    or a trial queued by hand with Study.enqueue_trial) but had not drawn yet."""
    return {**trial.system_attrs.get("fixed_params", {}), **trial.params}


def counted(trial) -> bool:
    """A finished trial: complete, pruned, or failed on its own (not stopped by Ctrl-C or a kill,
    nor handed back unrun by pipeline.search.worker.next_trial)."""
    from optuna.trial import TrialState

    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.state == TrialState.FAIL and not trial.user_attrs.get("interrupted")
        and not trial.user_attrs.get("handed_back"))


def taken(study, up_to: int | None = None) -> int:
    """Trials finished or running (in any worker), of those numbered up to `up_to` if given."""
    from optuna.trial import TrialState

    return sum(counted(t) or t.state == TrialState.RUNNING for t in study.get_trials(deepcopy=False)
               if up_to is None or t.number <= up_to)


def recover(study, storage, client) -> list[int]:
    """After a kill: the trials left RUNNING (no process runs the study now: the lock) are failed as
    interrupted and queued again with their values; their MLflow runs end KILLED."""
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
        if run_id and run_exists(client, run_id):
            client.set_tag(run_id, "state", "interrupted")
            client.set_terminated(run_id, "KILLED")
        again.append(trial.number)
    return again


class AskLock:
    """An exclusive lock on a file beside the study, held by a worker while it checks the count and
    asks for a trial (pipeline.search.worker.next_trial); reusable."""

    def __init__(self, path: Path):
        self.path = path.with_suffix(".ask.lock")

    def __enter__(self):
        self.file = open(self.path, "a")
        fcntl.flock(self.file, fcntl.LOCK_EX)

    def __exit__(self, *exc_info):
        self.file.close()  # which releases the lock


@contextlib.contextmanager
def only_process(path: Path, name: str):
    """One driver per study: a second one would take the first one's running trials for killed ones.
    Yields the lock's file descriptor: the driver's workers inherit it, so that the lock is held
    until the last of them has exited, even if the driver was killed first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PipelineError(f"search {name}: another process runs this study ({path}); wait for it or "
                                "stop it") from None
        yield lock.fileno()


def open_study(name: str, entry: SearchEntry, params: Params, root: Path):
    """The driver's study (created if new), its storage and path. The study is named by its identity
    (pipeline.search.identity): a new one says in one line why the last one in the file is not
    continued. Its sampler has the entry's seed on a new study, and another one per trial the study
    holds: the same seed on every start would draw a resumed study's first random trials again."""
    import optuna

    path = storage_path(root, name)
    storage = sqlite_storage(path)
    parts = identity(entry, params, prepared_data_digest(root, params.settings[entry.base].dataset))
    named = study_name(name, parts)
    earlier = storage.get_all_studies()
    study = optuna.create_study(storage=storage, study_name=named, direction=entry.direction, pruner=pruner(entry),
                                load_if_exists=True)
    if all(other.study_name != named for other in earlier):
        study.set_user_attr("identity", parts)
        if earlier:
            last = max(earlier, key=lambda other: storage.get_study_id_from_name(other.study_name))
            print(why_new(name, parts, last), file=sys.stderr, flush=True)
    study.sampler = sampler(entry, 0, study)
    return study, storage, path


def worker_study(study: str, entry: SearchEntry, path: Path, worker: int, proxy: str | None):
    """The driver's study, by its name, for worker `worker`: through the SQLite file at `path` (a
    worker on the driver's machine), or the driver's gRPC proxy at host:port (one on another machine;
    one line if it cannot be reached). Each worker samples with a seed of its own: workers starting
    together with one seed would propose the same values."""
    import optuna

    if proxy:
        host, _, port = proxy.rpartition(":")
        storage = optuna.storages.GrpcStorageProxy(host=host, port=int(port))
        try:
            storage.wait_server_ready(timeout=60)
        except ConnectionError:
            raise PipelineError(f"the study's server at {proxy} (the driver's machine) does not answer: a "
                                "firewall between the workers and the driver?") from None
    else:
        storage = sqlite_storage(path)
    loaded = optuna.load_study(study_name=study, storage=storage, pruner=pruner(entry))
    loaded.sampler = sampler(entry, worker, loaded)
    return loaded


def sqlite_storage(path: Path):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # workers on one machine write to one SQLite file: wait for another's write, not fail on the lock
    return optuna.storages.RDBStorage(f"sqlite:///{path}", engine_kwargs={"connect_args": {"timeout": 60}})


def pruner(entry: SearchEntry):
    import optuna

    return (optuna.pruners.MedianPruner(n_startup_trials=entry.startup_trials) if entry.pruner == "median"
            else optuna.pruners.NopPruner())


def sampler(entry: SearchEntry, worker: int, study):
    import optuna

    return optuna.samplers.TPESampler(seed=entry.seed + worker + 1000 * len(study.get_trials(deepcopy=False)))


def run_exists(client, run_id: str) -> bool:
    import mlflow

    try:
        return client.get_run(run_id).info.lifecycle_stage == "active"
    except mlflow.exceptions.MlflowException:
        return False


