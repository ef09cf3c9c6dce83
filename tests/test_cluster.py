"""A sweep spread over Dask workers (pipeline/scaleout/cluster.py): the rules it decides by, and one
cluster on loopback, two worker 'machines' in their own directories, a DVC remote and an
MLflow server, with one machine lost mid-training."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml

from pipeline.common.errors import PipelineError
from pipeline.scaleout.cluster import Task, stage_error
from pipeline.scaleout.cluster_setup import dirty_files, task_resources
from pipeline.training.checkpoint import HOLD_AFTER_FIRST_EPOCH_ENV
from tests.helpers import (
    copy_project,
    dask_cluster,
    dvc,
    free_port,
    http_service,
    keep_settings,
    mlflow_server,
    project_env,
    seconds_left,
    tiny_params,
)

SETTINGS = ("mnist-k3-s1", "mnist-k3-s1-l2")


def test_stage_error_is_the_stages_own_line():
    output = ("Running stage 'train@a-0':\n> python -m pipeline.train ...\n"
              "error: setting a seed 0: loss became NaN/Inf in epoch 1\n"
              "ERROR: failed to reproduce 'train@a-0': failed to run: python -m pipeline.train, exited with 1\n")
    assert stage_error(output) == "setting a seed 0: loss became NaN/Inf in epoch 1"
    assert stage_error("Traceback (most recent call last):\nSegmentation fault\n") is None


def test_task_resources():
    assert task_resources("GPU=0.25, MEM=4e9") == {"GPU": 0.25, "MEM": 4e9}
    assert task_resources(None) is None
    for bad in ("GPU", "GPU=many", "=1", "GPU=0"):
        with pytest.raises(PipelineError, match="--resources"):
            task_resources(bad)


def test_only_params_yaml_may_differ_from_the_commit():
    assert dirty_files(" M params.yaml\n?? notes.txt\n") == []
    assert dirty_files(" M pipeline/train.py\nM  dvc.yaml\n M params.yaml\n") == ["pipeline/train.py", "dvc.yaml"]


def test_a_task_builds_its_run_and_the_first_seed_plots():
    task = Task("mnist-k3-s1", 0, True, "repo", "abc", "", "remote", "http://server", "sweep")
    assert task.stages == ["train@mnist-k3-s1-0", "evaluate@mnist-k3-s1-0", "plot@mnist-k3-s1"]
    assert Task(**{**task.__dict__, "seed": 1, "first_seed": False}).stages == ["train@mnist-k3-s1-1",
                                                                                "evaluate@mnist-k3-s1-1"]


def lose_the_machine_that_trains(machines, workers, driver, release, timeout=240) -> int:
    """Once a worker's training has saved an epoch (and holds there), SIGKILL its whole process
    group (a machine lost mid-task), then release the trainings; the index of that machine."""
    timeout = seconds_left(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and driver.poll() is None:
        for index, machine in enumerate(machines):
            if list(machine.glob("**/checkouts/*/.dvc/tmp/train-backup/*/*/state.json")):
                os.killpg(workers[index].pid, signal.SIGKILL)
                release.touch()
                return index
        time.sleep(0.05)
    raise AssertionError(f"no worker saved an epoch in {timeout} s; the sweep said: {driver.communicate()[1][-3000:]}")


def sweep_runs(url: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, filter_string="tags.kind = 'seed'")


@pytest.mark.e2e
@pytest.mark.timeout(900)  # two sweeps on a cluster: the longest test
def test_a_sweep_over_two_dask_workers_survives_a_lost_machine(mirror, tmp_path):
    """Two settings on two workers, one worker's machine lost while it trains: its task runs again
    on the other, each setting ends with one FINISHED run in the server (the lost attempt
    KILLED), the gathering `dvc repro` trains nothing, `dvc status` is clean and the report
    lists both. Then a setting whose loss turns NaN fails the sweep at once, without retries."""
    params = keep_settings(tiny_params(), SETTINGS)
    params["train"]["epochs"] = 2
    repo = copy_project(tmp_path / "project", params)
    dvc(repo, "remote", "add", "--local", "-d", "shared", str(tmp_path / "remote"))
    port = free_port()
    # each training holds after its first epoch until `release` exists: the loss lands mid-training
    release = tmp_path / "release"
    with http_service(mlflow_server(port, tmp_path), port, "mlflow server") as url, \
            dask_cluster(tmp_path, workers=2, **{HOLD_AFTER_FIRST_EPOCH_ENV: str(release)}) as (scheduler, machines,
                                                                                               workers):
        env = project_env(MLFLOW_TRACKING_URI=url, PIPELINE_DATA_MIRROR=str(mirror))
        command = [sys.executable, "-m", "pipeline.scaleout.cluster", "--scheduler", scheduler, "--resources", "slot=1"]
        driver = subprocess.Popen(command, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            lost = lose_the_machine_that_trains(machines, workers, driver, release)
            stdout, stderr = driver.communicate(timeout=seconds_left(600))
        finally:
            if driver.poll() is None:
                driver.kill()
        assert driver.returncode == 0, stderr[-3000:]
        assert "sweep: 2/2 done" in stderr
        assert "on tcp://127.0.0.1" in stderr and "Running stage 'train@" not in stdout  # gathered, not trained

        runs = sweep_runs(url)
        assert sorted(r.data.tags["setting"] for r in runs if r.info.status == "FINISHED") == sorted(SETTINGS)
        killed = [r for r in runs if r.info.status != "FINISHED"]
        assert [r.info.status for r in killed] == ["KILLED"] and "failure_reason" in killed[0].data.tags
        assert len({r.data.tags["sweep"] for r in runs}) == 1
        assert not list(machines[1 - lost].glob("**/checkouts/*"))  # the surviving machine cleaned up after itself
        assert "up to date" in dvc(repo, "status", env=env).stdout
        report = (repo / "reports" / "report.md").read_text()
        assert all(name in report for name in SETTINGS)

        # A stage's own error (here a NaN loss; params.yaml edited, not committed) would fail again
        # anywhere: the first one ends the sweep, and the other setting never starts (one worker is
        # left). 1e38 overflows either setting's weights in its first step, in float32 and bf16
        # alike; at 1e30 mnist-k3-s1's loss stayed finite (about 1e30), so it could train to the end.
        params["train"]["learning_rate"] = 1e38
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        failed = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=seconds_left(600))
        assert failed.returncode == 1
        assert re.fullmatch(r"error: sweep: mnist-k3-s1(-l2)?-0 failed on tcp://127\.0\.0\.1:\d+: setting "
                            r"mnist-k3-s1(-l2)? seed 0: loss became NaN/Inf in epoch 1; .*",
                            failed.stderr.strip().splitlines()[-1]), failed.stderr[-2000:]
        attempts = [r for r in sweep_runs(url) if r.data.tags.get("sweep") != runs[0].data.tags["sweep"]]
        assert [r.info.status for r in attempts] == ["FAILED"]
