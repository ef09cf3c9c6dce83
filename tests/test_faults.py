"""Failures users meet: the tracking store unavailable, a full disk, concurrent writers."""

from __future__ import annotations

import errno
import subprocess
import sys
import time

import pytest

from pipeline.errors import PipelineError
from pipeline.outputs import atomic_file, write_json
from tests.conftest import REPO, free_port, project_env, train_command


def _train(repo, tmp_path, env):
    out = tmp_path / "out"
    command = train_command(repo, out)
    started = time.monotonic()
    result = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    return result, time.monotonic() - started, out


def _unwritable_sqlite(tmp_path) -> str:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the store's directory should be")
    return f"sqlite:///{blocker / 'mlflow.db'}"


@pytest.mark.parametrize("make_uri,problem", [
    (lambda tmp_path: f"http://127.0.0.1:{free_port()}", "tracking server {uri} is unreachable ("),
    (_unwritable_sqlite, "tracking store {uri} is not writable ("),
], ids=["server-down", "sqlite-unwritable"])
def test_unavailable_store_fails_fast_naming_the_uri(pipeline_run, tmp_path, make_uri, problem):
    repo, _, _ = pipeline_run
    uri = make_uri(tmp_path)
    result, seconds, out = _train(repo, tmp_path, project_env(MLFLOW_TRACKING_URI=uri))
    assert result.returncode == 1
    assert result.stderr.startswith("error: " + problem.format(uri=uri))
    assert result.stderr.count("\n") == 1 and seconds < 30 and not out.exists()


def test_disk_full_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    target.write_text('{"old": true}\n')

    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(type(target), "write_text", full_disk)
    with pytest.raises(PipelineError) as caught:
        write_json(target, {"new": True})
    assert str(caught.value) == f"{target}: cannot write (No space left on device); nothing was written there"
    monkeypatch.undo()
    assert target.read_text() == '{"old": true}\n'  # the previous complete file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary left over


def test_failure_inside_atomic_file_keeps_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_file(tmp_path / "model.keras") as tmp:
            tmp.write_bytes(b"half a model")
            raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []


WRITER = """
import sys, mlflow
mlflow.set_tracking_uri(sys.argv[1])
experiment = mlflow.get_experiment_by_name("mnist-cnn").experiment_id
with mlflow.start_run(experiment_id=experiment, run_name=sys.argv[2]):
    for step in range(1, 21):
        mlflow.log_metrics({"loss": 1.0 / step, "val_loss": 2.0 / step}, step=step)
"""


@pytest.mark.parametrize("attempt", range(3))
def test_four_concurrent_writers_lose_nothing(tmp_path, attempt):
    """The store is created first (as `python -m pipeline.tracking init` does before parallel
    work); then four processes log to it at once."""
    env = project_env(DVC_ROOT=str(tmp_path))
    subprocess.run([sys.executable, "-m", "pipeline.tracking", "init"], cwd=REPO, env=env, check=True,
                   capture_output=True)
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, uri, f"writer-{i}"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(4)]
    for writer in writers:
        _, stderr = writer.communicate(timeout=120)
        assert writer.returncode == 0, stderr
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("mnist-cnn").experiment_id])
    assert sorted(r.info.run_name for r in runs) == [f"writer-{i}" for i in range(4)]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == list(range(1, 21))
