"""Faults in the middle of a sweep: hard kills, a tracking server that goes away or asks who you
are, two `dvc repro` at once. Each drives the real programs on fixture data."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time

import pytest
import yaml

from pipeline.training.checkpoint import HOLD_AFTER_FIRST_EPOCH_ENV
from tests.helpers import (
    VENV_BIN,
    dvc,
    free_port,
    http_service,
    job_file,
    job_without_data,
    mlflow_client,
    mlflow_server,
    params_file,
    project_env,
    reap,
    run,
    seconds_left,
    stop_service,
    tethered,
    tiny_params,
    train_command,
    wait_for_epochs,
    wait_until_healthy,
)

pytestmark = pytest.mark.e2e

SETTINGS = tuple(tiny_params()["settings"])[:2]
CHAOS_EPOCHS = 3


def _fresh_copy(pipeline_run, directory, **train) -> tuple:
    """The session's finished project with an empty tracking store and some train values changed."""
    repo, env, _ = pipeline_run
    copy = directory / "project"
    shutil.copytree(repo, copy, symlinks=True, ignore=shutil.ignore_patterns("mlruns"))
    (copy / "mlruns").mkdir()
    params = yaml.safe_load((copy / "params.yaml").read_text())
    params["train"].update(train)
    (copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run([str(VENV_BIN / "python"), "-m", "pipeline.tracking", "init"], copy, env=env)
    return copy, env


def _train_pids(project) -> list[int]:
    """Python processes of train stages running in this project (not in another checkout on the
    machine). Not the `sh -c` that DVC may start them under (dash does not exec its last command):
    killing that shell would leave the training running on as an orphan."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            if (entry.isdigit() and b"\0-m\0pipeline.train\0" in open(f"/proc/{entry}/cmdline", "rb").read()
                    and os.path.realpath(f"/proc/{entry}/cwd") == os.path.realpath(project)):
                pids.append(int(entry))
        except OSError:
            pass
    return pids


def _epochs_saved(copy) -> int:
    """Epochs the train stages have saved so far (their resumption state)."""
    total = 0
    for state in (copy / ".dvc" / "tmp" / "train-backup").glob("*/*/state.json"):
        try:
            total += len(json.loads(state.read_text())["rows"])
        except (OSError, ValueError):
            pass  # being replaced right now
    return total


def test_sigkill_at_random_moments_leaves_one_finished_run_per_setting(pipeline_run, tmp_path):
    """The OOM killer or a closed laptop lid: SIGKILL, which no handler sees, sent to the running
    train stage through the real `dvc repro`: right after an epoch's state was saved (before its
    metrics reach MLflow), at a seeded random moment once it runs, and after a save again; `dvc
    repro` again after each kill, until it completes. Every kill waits on an event (a train
    process, a saved epoch), not on a guess of how long TensorFlow takes to start; each kill/save
    interleaving one by one is tests/test_checkpoint.py's."""
    copy, env = _fresh_copy(pipeline_run, tmp_path, epochs=CHAOS_EPOCHS)
    targets = [f"train@{name}-0" for name in SETTINGS]
    rng = random.Random(17)
    plan = ["after a save", "at random", "after a save"]
    kills = []
    for _attempt in range(len(plan) + 3):
        process = subprocess.Popen([str(VENV_BIN / "dvc"), "repro", *targets], cwd=copy, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            if len(kills) < len(plan):
                when = plan[len(kills)]
                saved, started, delay = _epochs_saved(copy), None, rng.uniform(0, 3)
                while process.poll() is None:
                    now_saved, pids = _epochs_saved(copy), _train_pids(copy)
                    if pids and started is None:
                        started = time.monotonic()
                    hit = now_saved > saved if when == "after a save" else (
                        started is not None and time.monotonic() > started + delay)
                    saved = now_saved
                    if pids and hit:
                        os.kill(pids[0], signal.SIGKILL)
                        kills.append(when)
                        break
                    time.sleep(0.01)
            output = process.communicate(timeout=seconds_left(600))[0]
        finally:
            reap(process)
        if process.returncode == 0:
            break
    assert kills == plan, kills
    assert process.returncode == 0, output[-3000:]

    client = mlflow_client(copy)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, filter_string="tags.kind = 'seed'")
    assert not [r.info.run_id for r in runs if r.info.status == "RUNNING"]
    assert all("failure_reason" in r.data.tags for r in runs if r.info.status == "KILLED")
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert sorted(r.data.tags["setting"] for r in finished) == sorted(SETTINGS)
    for run_info in finished:
        for metric in ("loss", "val_accuracy", "epoch_seconds"):
            steps = [m.step for m in client.get_metric_history(run_info.info.run_id, metric)]
            assert sorted(steps) == list(range(1, CHAOS_EPOCHS + 1)), (run_info.data.tags["setting"], metric, steps)
    status = dvc(copy, "status", *targets, env=env).stdout
    assert "up to date" in status, status
    leftovers = [p for p in copy.rglob("*") if ".tmp" in p.name and ".dvc" not in p.parts]
    assert not leftovers and not list((copy / ".dvc" / "tmp" / "train-backup").glob("*/*"))


def _serve(port, store):
    """An MLflow server on `port` with its store in `store`, and a client of it; stop it with stop_service."""
    from mlflow.tracking import MlflowClient

    server = tethered(mlflow_server(port, store), env=project_env(), stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, server, "mlflow server")
    except AssertionError:
        stop_service(server)
        raise
    return server, MlflowClient(tracking_uri=url)


def _rows_saved(repo, setting: str, seed: int = 0) -> int:
    """Epochs this (setting, seed)'s train stage has saved to resume from (its backup's state)."""
    try:
        return len(json.loads((repo / ".dvc" / "tmp" / "train-backup" / setting / f"seed{seed}" / "state.json")
                              .read_text())["rows"])
    except (OSError, ValueError):
        return 0


def _wait_for_rows(repo, setting: str, rows: int, process, timeout: float = 120) -> None:
    """Until the training has saved `rows` epochs to resume from: an event, not a sleep."""
    timeout = seconds_left(timeout)
    deadline = time.monotonic() + timeout
    while _rows_saved(repo, setting) < rows:
        if process.poll() is not None:
            said = "".join(filter(None, process.communicate()))[-3000:]
            raise AssertionError(f"the training ended before saving epoch {rows}: {said}")
        assert time.monotonic() < deadline, f"the training saved no epoch {rows} in {timeout:.0f} s"
        time.sleep(0.05)


def _held(env: dict, tmp_path) -> tuple[dict, object]:
    """env with the training held after its first epoch, and the file whose creation releases it."""
    release = tmp_path / "release"
    return {**env, HOLD_AFTER_FIRST_EPOCH_ENV: str(release)}, release


def test_training_rides_out_a_tracking_server_restart(pipeline_run, tmp_path):
    """The lab's server restarts between epochs 1 and 2: epoch 2 is saved while it is away and its
    metrics are logged into the gap, where MLflow's retries carry them over it; the run ends
    FINISHED with every epoch once."""
    repo, _, _ = pipeline_run
    port, out = free_port(), tmp_path / "out"
    job_file(repo, out, params=params_file(tmp_path, epochs=5, batch_size=2))
    server, client = _serve(port, tmp_path)
    env, release = _held(project_env(MLFLOW_TRACKING_URI=client.tracking_uri), tmp_path)
    process = subprocess.Popen(train_command(out), cwd=repo, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        run_id = wait_for_epochs(client, process, 1).info.run_id  # and held there
        stop_service(server)
        release.touch()
        _wait_for_rows(repo, "mnist-k3-s1", 2, process)  # saved with the server away: logged into the gap
        server, client = _serve(port, tmp_path)
        _, stderr = process.communicate(timeout=seconds_left(240))
        assert process.returncode == 0, stderr[-3000:]
        assert client.get_run(run_id).info.status == "FINISHED"
        for metric in ("loss", "val_accuracy"):
            assert [m.step for m in client.get_metric_history(run_id, metric)] == [1, 2, 3, 4, 5]
    finally:
        reap(process)
        stop_service(server)


STOP_SECONDS = 120  # MLflow's 2 retries here take seconds; a loaded machine may add a minute


def test_a_server_that_stays_away_stops_the_stage_and_the_next_run_resumes(pipeline_run, tmp_path):
    """Past MLflow's retries (few here) the stage stops with one line naming the server; once the
    server is back, the stage resumes the same run after the last saved epoch."""
    repo, _, _ = pipeline_run
    port, out = free_port(), tmp_path / "out"
    job_file(repo, out, params=params_file(tmp_path, epochs=4, batch_size=2))
    server, client = _serve(port, tmp_path)
    uri = client.tracking_uri
    env = project_env(MLFLOW_TRACKING_URI=uri, MLFLOW_HTTP_REQUEST_MAX_RETRIES="2",
                      MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="1")
    held, release = _held(env, tmp_path)
    process = subprocess.Popen(train_command(out), cwd=repo, env=held, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        run_id = wait_for_epochs(client, process, 1).info.run_id  # and held there
        stop_service(server)
        release.touch()
        bound = seconds_left(STOP_SECONDS)
        try:
            _, stderr = process.communicate(timeout=bound)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the stage went on for {bound:.0f} s after its server went away")
        assert process.returncode == 1
        last = stderr.splitlines()[-1]
        assert last.startswith(f"error: tracking server {uri} stopped answering, also after MLflow's retries")
        assert last.endswith("`dvc repro` resumes the training after epoch 2"), last  # saved, then not logged
        server, client = _serve(port, tmp_path)
        again = subprocess.run(train_command(out), cwd=repo, env=env, capture_output=True, text=True,
                               timeout=seconds_left(240))
        assert again.returncode == 0, again.stderr[-3000:]
        assert f"resuming MLflow run {run_id}" in again.stderr
        assert client.get_run(run_id).info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(run_id, "loss")] == [1, 2, 3, 4]
    finally:
        reap(process)
        stop_service(server)


PASSWORD = "s3cret-Pass-77"


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """The README's team server with MLflow's basic authentication, an admin account only."""
    store = tmp_path_factory.mktemp("auth-server")
    port = free_port()
    env = project_env(MLFLOW_AUTH_ADMIN_PASSWORD=PASSWORD, MLFLOW_FLASK_SERVER_SECRET_KEY="test-only-key")
    with http_service(mlflow_server(port, store, "--app-name", "basic-auth"), port, "the basic-auth server",
                      cwd=store, env=env) as url:
        yield url


@pytest.mark.parametrize("credentials,words", [
    ({}, "the credentials are not set (HTTP 401)"),
    ({"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": "wrong"},
     "the credentials were refused (HTTP 401)"),
], ids=["none", "wrong"])
def test_a_server_that_asks_who_you_are_stops_the_stage_before_training(tmp_path, auth_server, credentials, words):
    repo, out = job_without_data(tmp_path)
    result = subprocess.run(train_command(out), cwd=repo, capture_output=True, text=True, timeout=seconds_left(120),
                            env=project_env(MLFLOW_TRACKING_URI=auth_server, **credentials))
    assert result.returncode == 1
    assert result.stderr == (f"error: tracking server {auth_server} asks who you are and {words}: set "
                             "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to an account on it\n")
    assert [p.name for p in out.iterdir()] == ["job.json"]


def test_with_credentials_the_run_is_logged_and_the_password_nowhere(pipeline_run, tmp_path, auth_server):
    repo, _, _ = pipeline_run
    out = tmp_path / "out"
    job_file(repo, out)
    credentials = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": PASSWORD}
    result = subprocess.run(train_command(out), cwd=repo, capture_output=True, text=True, timeout=seconds_left(300),
                            env=project_env(MLFLOW_TRACKING_URI=auth_server, **credentials))
    assert result.returncode == 0, result.stderr[-3000:]
    from mlflow.tracking import MlflowClient

    os.environ.update(credentials)
    try:
        finished = MlflowClient(tracking_uri=auth_server).get_run(json.loads((out / "run.json").read_text())["run_id"])
    finally:
        for key in credentials:
            del os.environ[key]
    assert finished.info.status == "FINISHED"
    recorded = json.dumps([finished.data.params, finished.data.tags]) + result.stdout + result.stderr
    assert PASSWORD not in recorded


def test_a_second_dvc_repro_in_the_same_workspace_gets_dvcs_lock_message(pipeline_run, tmp_path):
    copy, env = _fresh_copy(pipeline_run, tmp_path, epochs=3)  # not the session run's 2: the setting trains again
    held, _ = _held(env, tmp_path)  # never released: the first `dvc repro` trains until stopped
    first = subprocess.Popen([str(VENV_BIN / "dvc"), "repro", "train@mnist-k3-s1-0"], cwd=copy, env=held,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        _wait_for_rows(copy, "mnist-k3-s1", 1, first)  # past its job stage, training
        lock_before = (copy / "dvc.lock").read_text()
        second = dvc(copy, "repro", env=env, check=False)
        assert second.returncode != 0
        # DVC's read-write lock on the paths the first one works on names it
        assert f"is busy, it is being blocked by:\n  (PID {first.pid}): " in second.stderr, second.stderr
        assert "Running stage" not in second.stdout
    finally:
        os.killpg(first.pid, signal.SIGINT)  # a graceful stop, which may take a while on a loaded machine
        try:
            first.communicate(timeout=120)
        finally:
            reap(first)
    assert (copy / "dvc.lock").read_text() == lock_before
