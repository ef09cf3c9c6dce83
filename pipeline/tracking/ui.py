"""`make ui`: MLflow's UI on the project's tracking store, and a link to each experiment's runs.

    python -m pipeline.tracking.ui [--port 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from pipeline.common import cli
from pipeline.common.errors import PipelineError
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
    """`mlflow ui` on the project's store; where to look, printed once it answers. Ctrl-C or a
    SIGTERM stops it quietly: a server has no outputs to leave half-written."""
    import mlflow

    refuse_taken(port)
    connect(root)
    client = mlflow.MlflowClient()
    base = f"http://127.0.0.1:{port}"
    links = []
    for name in EXPERIMENTS.values():
        experiment = client.get_experiment_by_name(name)
        client.set_experiment_tag(experiment.experiment_id, f"mlflow.sharedViewState.{RUNS_VIEW_KEY}",
                                  json.dumps(RUNS_VIEW))
        links.append(f"{name}: {runs_page(base, experiment.experiment_id)}")
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri(root),
               "--host", "127.0.0.1", "--port", str(port)]
    # The server's job runner serves GenAI features only: fewer processes, no log noise. A session
    # of its own: mlflow ui runs its web server as a child, which a signal to the mlflow process
    # alone would leave holding the port.
    server = subprocess.Popen(command, env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                              start_new_session=True)
    try:
        if not answers(f"{base}/health", server):
            raise PipelineError(f"mlflow ui did not answer on {base} (exit {server.poll()}): its error is above")
        print("\n".join(links), file=sys.stderr, flush=True)
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait()


def refuse_taken(port: int) -> None:
    """A port something already listens on (an earlier `make ui`, another program) would answer our
    health check for a server not ours, and the links would open that."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: a closing socket is no owner
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise PipelineError(f"port {port}: {exc.strerror.lower()} (an earlier `make ui` still running, or another "
                                f"program): stop it, or use another port: make ui PORT={port + 1}") from None


def answers(url: str, server: subprocess.Popen, timeout: float = 300) -> bool:
    """Wait until `url` answers (the UI takes half a minute to start on a 2-core CPU), or the
    server has exited."""
    deadline = time.monotonic() + timeout
    while server.poll() is None and time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return True
        except OSError:
            time.sleep(0.5)
    return False


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.tracking.ui", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    sys.exit(ui(project_root(), args.port))


if __name__ == "__main__":
    cli.run(main)
