"""The project's one MLflow tracking store: where it is, and connecting to it (how a run ends:
outcome.py; the run a stage's run file names: run_files.py).

Store: SQLite database `mlruns/mlflow.db` plus artifacts under `mlruns/artifacts/`, both at the
main repository root — also when a stage runs inside DVC's temporary experiment workspace
(.dvc/tmp/exps/...), where DVC sets DVC_ROOT to that root. MLFLOW_TRACKING_URI, when set, wins
(a team's tracking server, say).

    python -m pipeline.tracking init   # check the store, and create it if new

`python -m pipeline.tracking.ui` (make ui) shows it.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path
from urllib.parse import urlparse

from pipeline.common.errors import PipelineError, redact
from pipeline.common.outputs import atomic_file
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
    asks who you are, does not accept the credentials in the environment). A SQLite store not there
    yet is made here, whole (create_sqlite_store)."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        db = Path(parsed.path[1:])  # as SQLAlchemy reads it: sqlite:///relative.db, sqlite:////absolute.db
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
            if not db.exists():
                create_sqlite_store(db, uri)
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


def create_sqlite_store(db: Path, uri: str) -> None:
    """MLflow's tables, made in a file of their own that then takes `db`'s place whole: a store half
    made (a Ctrl-C or a kill in its first seconds) would fail every later command. Of processes
    creating it at once, the first to finish wins and the others drop theirs."""
    import mlflow
    import sqlalchemy

    with atomic_file(db, keep_existing=True) as fresh:
        try:
            mlflow.MlflowClient(tracking_uri=f"sqlite:///{fresh}").search_experiments(max_results=1)
        except (sqlalchemy.exc.SQLAlchemyError, mlflow.exceptions.MlflowException) as exc:
            reason = str(exc).splitlines()[0]
            raise PipelineError(f"tracking store {redact(uri)} could not be created ({reason})") from None


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


def mlflow_uri() -> str:
    import mlflow

    return mlflow.get_tracking_uri()
