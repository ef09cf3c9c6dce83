"""The project's one MLflow tracking store, and the UI on it.

Store: SQLite database `mlruns/mlflow.db` plus artifacts under `mlruns/artifacts/`, both at the
main repository root — also when a stage runs inside DVC's temporary experiment workspace
(.dvc/tmp/exps/...), where DVC sets DVC_ROOT to that root. MLFLOW_TRACKING_URI, when set, wins
(a team's tracking server, say).

    python -m pipeline.tracking init   # create the store (before parallel workers start)
    python -m pipeline.tracking ui     # mlflow ui on this store; prints a link to each experiment's runs
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

from pipeline import cli
from pipeline.errors import PipelineError, redact

EXPERIMENTS = {"mnist": "mnist-cnn", "cifar10": "cifar10-gray-cnn"}
REPORT_EXPERIMENT = "hw2-report"  # apart from the training runs: no empty rows in their metric charts
# The runs table `make ui` links to: MLflow restores a view saved as an experiment tag
# (mlflow.sharedViewState.<key>) when the URL names the key, here with the columns that matter.
RUNS_VIEW_KEY = "hw2"
RUNS_VIEW = {"selectedColumns": ["tags.`current`", "params.`kernel`", "params.`strides`", "params.`l2`",
                                 "metrics.`val_accuracy`", "metrics.`test_accuracy`",
                                 "metrics.`test_accuracy_mean`", "metrics.`test_accuracy_std`"]}


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


def check_store(uri: str) -> None:
    """Fail fast, before any training, when the store cannot take writes."""
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
    """Check the project store, point MLflow at it, and create both experiments."""
    uri = tracking_uri(root)
    check_store(uri)
    import mlflow

    mlflow.set_tracking_uri(uri)
    for name in (*EXPERIMENTS.values(), REPORT_EXPERIMENT):
        experiment_id(name, root)
    return uri


def run_id_of(run_file: Path) -> str:
    """The MLflow run a train stage wrote into its run file (evaluate and plot add to it)."""
    return json.loads(Path(run_file).read_text(encoding="utf-8"))["run_id"]


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


def _end(client, run_id: str, status: str) -> None:
    import mlflow

    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        mlflow.end_run(status)  # also pops it, so that MLflow's exit hook does not end it again
    else:
        client.set_terminated(run_id, status)


def runs_page(base_url: str, experiment_id: str) -> str:
    """The experiment's runs table with RUNS_VIEW, in the UI's machine-learning mode (a fresh
    browser would open MLflow 3's GenAI overview instead)."""
    return (f"{base_url}/#/experiments/{experiment_id}/runs"
            f"?viewStateShareKey={RUNS_VIEW_KEY}&workflowType=machine_learning")


def ui(root: Path, port: int) -> int:
    """`mlflow ui` on the project's store, after printing where to look."""
    import mlflow

    connect(root)
    client = mlflow.MlflowClient()
    base = f"http://127.0.0.1:{port}"
    for name in EXPERIMENTS.values():
        experiment = client.get_experiment_by_name(name)
        client.set_experiment_tag(experiment.experiment_id, f"mlflow.sharedViewState.{RUNS_VIEW_KEY}",
                                  json.dumps(RUNS_VIEW))
        print(f"{name}: {runs_page(base, experiment.experiment_id)}", file=sys.stderr)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri(root),
               "--host", "127.0.0.1", "--port", str(port)]
    # the server's job runner serves GenAI features only: fewer processes, no log noise
    return subprocess.call(command, env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.tracking", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("init", "ui"))
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    root = project_root()
    if args.command == "init":
        print(f"tracking store ready: {connect(root)}", file=sys.stderr)
    else:
        sys.exit(ui(root, args.port))


if __name__ == "__main__":
    cli.run(main)
