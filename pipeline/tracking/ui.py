"""`make ui`: MLflow's UI on the project's tracking store, and a link to each experiment's runs.

    python -m pipeline.tracking.ui [--port 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from pipeline.common import cli
from pipeline.tracking.store import EXPERIMENTS, connect, project_root, tracking_uri

# The runs table `make ui` links to: MLflow restores a view saved as an experiment tag
# (mlflow.sharedViewState.<key>) when the URL names the key, here with the columns that matter.
RUNS_VIEW_KEY = "hw2"
RUNS_VIEW = {"selectedColumns": ["tags.`current`", "params.`kernel`", "params.`strides`", "params.`l2`",
                                 "metrics.`val_accuracy`", "metrics.`test_accuracy`",
                                 "metrics.`test_accuracy_mean`", "metrics.`test_accuracy_std`"]}


def runs_page(base_url: str, experiment_id: str) -> str:
    """The experiment's runs table with RUNS_VIEW, in the UI's machine-learning mode (a fresh
    browser would open MLflow 3's GenAI overview instead)."""
    return (f"{base_url}/#/experiments/{experiment_id}/runs"
            f"?viewStateShareKey={RUNS_VIEW_KEY}&workflowType=machine_learning")


def ui(root, port: int) -> int:
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
    parser = argparse.ArgumentParser(prog="python -m pipeline.tracking.ui", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    sys.exit(ui(project_root(), args.port))


if __name__ == "__main__":
    cli.run(main)
