"""How every run ends: FINISHED, or KILLED / FAILED with its reason, also on Ctrl-C, SIGTERM or a
tracking server that stopped answering; and the runs whose process died without ending them."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

from pipeline.common import cli
from pipeline.common.errors import PipelineError, redact
from pipeline.tracking.store import TrackingUnavailable


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
