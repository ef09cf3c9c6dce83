"""Failures users meet: the tracking store unavailable, a full disk."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys

import pytest

from pipeline.common.errors import PipelineError
from pipeline.common.outputs import atomic_dir, atomic_file, write_json
from tests.helpers import REPO, free_port, job_without_data, project_env, seconds_left, train_command


def _train(tmp_path, env):
    repo, out = job_without_data(tmp_path)
    result = subprocess.run(train_command(out), cwd=repo, env=env, capture_output=True, text=True,
                            timeout=seconds_left(120))
    return result, out


def _without_tensorflow(tmp_path, env: dict) -> dict:
    """env in which importing TensorFlow fails the process with its own message: a stage that
    checks its store first never gets there."""
    blocker = tmp_path / "no-tensorflow" / "tensorflow"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise SystemExit('tensorflow was imported before the store was checked')\n")
    return {**env, "PYTHONPATH": str(blocker.parent)}


def _unwritable_sqlite(tmp_path) -> str:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the store's directory should be")
    return f"sqlite:///{blocker / 'mlflow.db'}"


@pytest.mark.e2e
@pytest.mark.parametrize("make_uri,problem", [
    (lambda tmp_path: f"http://127.0.0.1:{free_port()}", "tracking server {uri} is unreachable ("),
    (_unwritable_sqlite, "tracking store {uri} is not writable ("),
], ids=["server-down", "sqlite-unwritable"])
def test_unavailable_store_fails_fast_naming_the_uri(tmp_path, make_uri, problem):
    """Checked before TensorFlow or the data load (so in seconds): a job file is all it takes."""
    uri = make_uri(tmp_path)
    result, out = _train(tmp_path, _without_tensorflow(tmp_path, project_env(MLFLOW_TRACKING_URI=uri)))
    assert result.returncode == 1
    assert result.stderr.startswith("error: " + problem.format(uri=uri)), result.stderr
    assert result.stderr.count("\n") == 1 and [p.name for p in out.iterdir()] == ["job.json"]


def test_a_store_whose_creation_is_stopped_leaves_nothing_and_the_next_run_makes_it_whole(tmp_path, monkeypatch):
    """A Ctrl-C in the first seconds of a project's first command (MLflow making its tables) must not
    leave a store that fails every later command."""
    import mlflow.store.db.utils

    from pipeline.tracking.store import check_store

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"

    def first_command():
        check_store(uri)
        return mlflow.MlflowClient(tracking_uri=uri).search_experiments()

    def stopped(engine):  # after MLflow's first tables, before its migrations
        raise KeyboardInterrupt

    monkeypatch.setattr(mlflow.store.db.utils, "_upgrade_db", stopped)
    with pytest.raises(KeyboardInterrupt):
        first_command()
    monkeypatch.undo()
    assert list((tmp_path / "mlruns").iterdir()) == []
    assert [e.name for e in first_command()] == ["Default"]


@pytest.mark.e2e
def test_four_commands_making_a_new_store_at_once_all_succeed_and_leave_one(tmp_path):
    """As DVC's queued experiments or a sweep's workers start on a fresh project: each makes MLflow's
    tables in a file of its own; the first one whole becomes the store, the others use it."""
    env = project_env(DVC_ROOT=str(tmp_path), PYTHONPATH=str(REPO))
    commands = [subprocess.Popen([sys.executable, "-m", "pipeline.tracking", "init"], cwd=tmp_path, env=env,
                                 stderr=subprocess.PIPE, text=True) for _ in range(4)]
    said = [command.communicate(timeout=seconds_left(120))[1] for command in commands]
    assert [command.returncode for command in commands] == [0] * 4, said
    assert [p.name for p in (tmp_path / "mlruns").iterdir()] == ["mlflow.db"]


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


def test_outputs_get_the_usual_permissions(tmp_path):
    """Not the 0600 / 0700 of the temporary names they are written under."""
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "report.json", {})
        with atomic_dir(tmp_path / "figures") as tmp:
            (tmp / "a.png").write_bytes(b"")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "report.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "figures").stat().st_mode) == 0o755


def test_a_killed_trainings_run_is_closed_by_the_next_attempt_and_no_other(tmp_path):
    """A RUNNING run whose training process on this machine is gone (SIGKILL, the OOM killer) and
    that no backup resumes ends KILLED with its reason; one whose process lives, one started on
    another machine and the run being resumed stay RUNNING."""
    import socket
    import sys

    from mlflow.tracking import MlflowClient

    from pipeline.tracking.outcome import close_abandoned

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("runs", artifact_location=str(tmp_path / "artifacts"))
    gone = subprocess.Popen(["true"])
    gone.wait()
    living = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "pipeline.train"])
    here = socket.gethostname()

    def running(host: str, pid: int) -> str:
        tags = {"setting": "mnist-k3-s1", "seed": "0", "host": host, "pid": str(pid)}
        return client.create_run(experiment, tags=tags).info.run_id

    killed, alive, elsewhere, resumed = (running(here, gone.pid), running(here, living.pid),
                                         running("another-machine", gone.pid), running(here, gone.pid))
    try:
        assert close_abandoned(client, experiment, "mnist-k3-s1", 0, keep=resumed) == [killed]
    finally:
        living.kill()
        living.wait()
    assert client.get_run(killed).info.status == "KILLED"
    assert "closed by the next attempt" in client.get_run(killed).data.tags["failure_reason"]
    assert [client.get_run(r).info.status for r in (alive, elsewhere, resumed)] == ["RUNNING"] * 3
