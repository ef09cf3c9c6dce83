"""The project's one MLflow tracking store, and how every run in it ends.

Store: SQLite database `mlruns/mlflow.db` plus artifacts under `mlruns/artifacts/`, both at the
main repository root — also when a stage runs inside DVC's temporary experiment workspace
(.dvc/tmp/exps/...), where DVC sets DVC_ROOT to that root. MLFLOW_TRACKING_URI, when set, wins
(a team's tracking server, say).

    python -m pipeline.tracking init   # create the store (before parallel workers start)

`python -m pipeline.tracking.ui` (make ui) shows it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import sys
from pathlib import Path
from typing import Annotated
from urllib.parse import urlparse

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from pipeline.common import cli
from pipeline.common.errors import PipelineError, redact
from pipeline.common.state_files import read_json
from pipeline.tracking.relocate import relocate_store

EXPERIMENTS = {"mnist": "mnist-cnn", "cifar10": "cifar10-gray-cnn"}
REPORT_EXPERIMENT = "hw2-report"  # apart from the training runs: no empty rows in their metric charts

# `make sweep` queues each (setting, seed) as a DVC experiment named with this prefix: its runs are
# the workspace's own once gathered, unlike a user's `dvc exp run` that tries another value.
SWEEP_EXPERIMENT_PREFIX = "sweep-"

# A Dask sweep (pipeline/scaleout/cluster.py) names itself to its train stages here; their runs carry it
# as the tag `sweep`, by which the sweep closes the runs whose worker was lost.
SWEEP_TAG_ENV = "PIPELINE_SWEEP"


def rounded(metrics: dict[str, float]) -> dict[str, float]:
    """Metrics as MLflow should show them: 4 significant digits (its UI prints every digit it is
    given, 0.9856666922569275 for a validation accuracy known to 1/6000)."""
    return {name: float(f"{value:.4g}") for name, value in metrics.items()}


def quiet_mlflow() -> None:
    """No artifact progress bars (MLflow draws them per model logged or loaded) and no INFO lines
    (the input example it tries, say) on stderr; a user who sets MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR
    or MLFLOW_LOGGING_LEVEL keeps what they ask for."""
    import logging

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if "MLFLOW_LOGGING_LEVEL" not in os.environ:
        # MLflow read its level when first imported; this process may have imported it already
        os.environ["MLFLOW_LOGGING_LEVEL"] = "WARNING"
        logging.getLogger("mlflow").setLevel(logging.WARNING)


def project_root() -> Path:
    return Path(os.environ.get("DVC_ROOT") or ".").resolve()


def store_dir(root: Path) -> Path:
    return root / "mlruns"


def project_store_uri(root: Path) -> str:
    return f"sqlite:///{store_dir(root) / 'mlflow.db'}"


def tracking_uri(root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or project_store_uri(root)


def artifact_root(root: Path) -> str:
    return (store_dir(root) / "artifacts").as_uri()


class TrackingUnavailable(PipelineError):
    """The tracking server stopped answering mid-stage (MLflow had already retried): a reason to
    stop and resume later, not a failure of the training."""


AUTH_HINT = "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to an account on it"


def check_store(uri: str) -> None:
    """Fail fast, before any training, when the store cannot take writes (or, for a server that
    asks who you are, does not accept the credentials in the environment)."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        db = Path(parsed.path)
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
            with sqlite3.connect(db, timeout=30) as connection:
                connection.execute("BEGIN IMMEDIATE")  # takes the write lock: read-only fails here
                connection.rollback()
        except (OSError, sqlite3.Error) as exc:
            raise PipelineError(f"tracking store {redact(uri)} is not writable ({exc})") from None
    elif parsed.scheme in ("http", "https"):
        import requests

        try:
            requests.get(f"{uri.rstrip('/')}/health", timeout=10).raise_for_status()
        except requests.RequestException as exc:
            reason = str(exc).splitlines()[0]
            raise PipelineError(f"tracking server {redact(uri)} is unreachable ({reason})") from None
        user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
        answer = requests.get(f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search", params={"max_results": 1},
                              auth=(user, password) if user else None, timeout=10)
        if answer.status_code in (401, 403):
            given = "were refused" if user else "are not set"
            raise PipelineError(f"tracking server {redact(uri)} asks who you are and the credentials {given} "
                                f"(HTTP {answer.status_code}): {AUTH_HINT}")


def experiment_id(name: str, root: Path) -> str:
    """The experiment's id, creating it (with artifacts under mlruns/artifacts/) if new."""
    import mlflow

    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    # A server keeps its own artifact root. (Not MLFLOW_TRACKING_URI to tell: set_tracking_uri sets it.)
    own_store = mlflow.get_tracking_uri() == project_store_uri(root)
    location = f"{artifact_root(root)}/{name}" if own_store else None
    try:
        # the kind makes `mlflow ui` open these experiments on their training runs, not on the GenAI overview
        return mlflow.create_experiment(name, artifact_location=location,
                                        tags={"mlflow.experimentKind": "custom_model_development"})
    except mlflow.exceptions.MlflowException:
        # another worker created it between our lookup and our create
        return mlflow.get_experiment_by_name(name).experiment_id


def connect(root: Path) -> str:
    """Check the project store, point MLflow at it (its artifact paths into this folder), and
    create both experiments."""
    uri = tracking_uri(root)
    check_store(uri)
    if uri == project_store_uri(root) and (moved_from := relocate_store(
            store_dir(root), (*EXPERIMENTS.values(), REPORT_EXPERIMENT))):
        print(f"tracking store: artifact paths moved from {moved_from} to {root} (the project was moved "
              "or copied)", file=sys.stderr)
    import mlflow

    mlflow.set_tracking_uri(uri)
    for name in (*EXPERIMENTS.values(), REPORT_EXPERIMENT):
        experiment_id(name, root)
    return uri


@pydantic_dataclass(config=ConfigDict(extra="forbid"))
class _RunFile:
    run_id: Annotated[str, Field(pattern=r"^\w+$")]
    experiment: str


def run_id_of(run_file: Path) -> str:
    """The MLflow run a train stage wrote into its run file (evaluate, plot and report add to it)."""
    # The run file is a DVC output of its train stage: `dvc checkout` restores it from the cache.
    recover = f"restore it: dvc checkout {run_file} (or train again: dvc repro train@<setting>-<seed>)"
    return read_json(run_file, _RunFile, "the run file", recover).run_id


def train_stage_of(run_file: Path) -> str:
    """The train stage that writes `run_file` (runs/<setting>/seed<k>.json, as dvc.yaml names it)."""
    return f"train@{Path(run_file).parent.name}-{Path(run_file).stem.removeprefix('seed')}"


def missing_from_store(run_files) -> list[tuple[Path, str]]:
    """(run file, run id) of each recorded training run that the current store does not have: the
    store was reset, or the outputs came from a teammate's store (`dvc pull`)."""
    import mlflow

    client, missing = mlflow.MlflowClient(), []
    for run_file in run_files:
        run_id = run_id_of(run_file)
        try:
            gone = client.get_run(run_id).info.lifecycle_stage == "deleted"
        except mlflow.exceptions.MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":  # a server that fails is no missing run
                raise
            gone = True
        if gone:
            missing.append((Path(run_file), run_id))
    return missing


def missing_runs_error(missing: list[tuple[Path, str]]) -> PipelineError:
    """One line: which recorded runs the store lacks, and the two ways on."""
    (first, run_id), others = missing[0], len(missing) - 1
    which = f"{first}: run {run_id}" + (f" (and {others} more run file{'s' * (others > 1)})" if others else "")
    stages = " ".join(train_stage_of(run_file) for run_file, _ in missing)
    return PipelineError(f"{which} is not in the tracking store {redact(mlflow_uri())}: point MLFLOW_TRACKING_URI "
                         f"at the store that has it, or train again: dvc repro --force --downstream {stages}")


def mlflow_uri() -> str:
    import mlflow

    return mlflow.get_tracking_uri()


def recorded_run(run_file: Path) -> str:
    """The run id in a train stage's run file, for evaluate, plot and report to add to; a run that
    the store lacks stops the stage with one line (a new run in its place would hold the stage's
    results without the training's params, curves and model)."""
    missing = missing_from_store([run_file])
    if missing:
        raise missing_runs_error(missing)
    return run_id_of(run_file)


def failure_of(exc: BaseException) -> tuple[str, str]:
    """(status, reason) of a run that ended with `exc`."""
    if isinstance(exc, KeyboardInterrupt):
        return "KILLED", "terminated (SIGTERM)" if isinstance(exc, cli.Terminated) else "interrupted (Ctrl-C)"
    if isinstance(exc, PipelineError):
        return "FAILED", str(exc)
    return "FAILED", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


@contextlib.contextmanager
def run_outcome(run_id: str, ends_run: bool = True):
    """Record on the MLflow run `run_id` how the block ended; every stage that logs uses this.

    ends_run: the stage started the run (train, report), which ends FINISHED, or KILLED / FAILED
    with a `failure_reason` tag. Otherwise (evaluate and plot add results to a finished training
    run) its status and end time stay as training left them, and a failure shows only as the tag.
    Success removes a `failure_reason` left by an earlier attempt (a resumed training, say).
    """
    import mlflow

    client = mlflow.MlflowClient()
    try:
        yield
    except TrackingUnavailable:
        # Nothing can be recorded: the run stays RUNNING until `dvc repro` resumes it. No more
        # retries in this process either (MLflow's exit hook would wait minutes to end the run).
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
        raise
    except BaseException as exc:
        status, reason = failure_of(exc)
        client.set_tag(run_id, "failure_reason", reason)
        if ends_run:
            _end(client, run_id, status)
        raise
    if "failure_reason" in client.get_run(run_id).data.tags:
        client.delete_tag(run_id, "failure_reason")
    if ends_run:
        _end(client, run_id, "FINISHED")


def lost_server(exc: BaseException) -> bool:
    """Did MLflow give up on a tracking server that stopped answering (after its own retries)?"""
    import requests

    while exc is not None:
        if isinstance(exc, (requests.ConnectionError, requests.Timeout, requests.exceptions.RetryError)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@contextlib.contextmanager
def server_outage_stops(uri: str):
    """Turn a tracking server that stopped answering into one line naming it."""
    try:
        yield
    except Exception as exc:
        if lost_server(exc):
            raise TrackingUnavailable(
                f"tracking server {redact(uri)} stopped answering, also after MLflow's retries (about 4 "
                "minutes: MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR)") from None
        raise


def close_abandoned(client, experiment_id: str, setting: str, seed: int, keep: str | None) -> list[str]:
    """End, as KILLED, the RUNNING runs of this (setting, seed) whose process on this machine is
    gone (a SIGKILL, the OOM killer, a power cut): no run stays RUNNING forever. Runs started on
    another machine are left alone: their process may be alive there."""
    closed = []
    runs = client.search_runs([experiment_id], filter_string=f"tags.setting = '{setting}' and tags.seed = '{seed}' "
                              "and attributes.status = 'RUNNING'")
    for run in runs:
        tags = run.data.tags
        if run.info.run_id == keep or tags.get("host") != socket.gethostname() or _alive(int(tags.get("pid", 0))):
            continue
        client.set_tag(run.info.run_id, "failure_reason", "its process ended without ending the run (SIGKILL, "
                       "out of memory or power loss); closed by the next attempt")
        client.set_terminated(run.info.run_id, "KILLED")
        closed.append(run.info.run_id)
    return closed


def _alive(pid: int) -> bool:
    """A training process with this id runs on this machine."""
    try:
        return pid > 0 and b"pipeline.train" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _end(client, run_id: str, status: str) -> None:
    import mlflow

    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        mlflow.end_run(status)  # also pops it, so that MLflow's exit hook does not end it again
    else:
        client.set_terminated(run_id, status)
