"""Scaling out on existing engines: DVC's experiment queue, an MLflow tracking server, a DVC
remote, tf.distribute. Each drives the real programs on fixture data."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import (
    copy_project,
    dvc,
    free_port,
    http_service,
    job_file,
    keep_settings,
    mlflow_client,
    mlflow_server,
    project_env,
    run,
    seed_path,
    tiny_params,
    train_command,
)

pytestmark = pytest.mark.e2e

QUEUED = ("mnist-k3-s1", "mnist-k3-s1-l2")


@pytest.mark.timeout(900)  # a whole pipeline, two trainings side by side
def test_make_sweep_trains_each_run_once_with_two_workers_and_gathers_them(mirror, tmp_path):
    """`make sweep JOBS=2`: DVC's experiment queue with two workers, every run into the project's
    one store, then the results gathered from DVC's run cache (no training twice) and reported."""
    params = keep_settings(tiny_params(), QUEUED)
    repo = copy_project(tmp_path / "project", params)
    env = project_env(PIPELINE_DATA_MIRROR=str(mirror))
    result = run([sys.executable, "-m", "pipeline.scaleout.sweep", "--jobs", "2"], repo, env=env)
    assert "dvc repro will train 2 settings x 2 epochs" in result.stderr and "sweep: 2/2 done" in result.stderr
    assert "Running stage 'train@" not in result.stdout  # the gathering dvc repro trained nothing

    client = mlflow_client(repo)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string="tags.kind = 'seed'")
    assert sorted((r.data.tags["setting"], r.info.status) for r in runs) == [(name, "FINISHED") for name in QUEUED]
    assert all(r.data.tags["dvc_experiment"].startswith(f"sweep-{r.data.tags['setting']}-0-") for r in runs)
    for r in runs:
        assert [m.step for m in client.get_metric_history(r.info.run_id, "val_accuracy")] == [1, 2]
    assert not list((repo / ".dvc" / "tmp" / "exps").glob("**/mlruns/mlflow.db"))
    assert (repo / seed_path("models", QUEUED[0], suffix=".keras")).exists()
    assert "up to date" in dvc(repo, "status", env=env).stdout and (repo / "reports" / "report.md").exists()


def test_training_logs_to_a_tracking_server(pipeline_run, tmp_path):
    repo, _, _ = pipeline_run
    port = free_port()
    with http_service(mlflow_server(port, tmp_path), port, "mlflow server") as url:
        out = tmp_path / "out"
        job_file(repo, out)
        result = run(train_command(out), repo, env=project_env(MLFLOW_TRACKING_URI=url), check=False)
        assert result.returncode == 0, result.stderr[-3000:]
        run_id = json.loads((out / "run.json").read_text())["run_id"]

        import mlflow
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=url)
        finished = client.get_run(run_id)
        assert finished.info.status == "FINISHED" and finished.data.tags["setting"] == "mnist-k3-s1"
        assert [m.step for m in client.get_metric_history(run_id, "loss")] == [1, 2]
        mlflow.set_tracking_uri(url)
        [model] = mlflow.search_logged_models(experiment_ids=[finished.info.experiment_id],
                                              filter_string=f"source_run_id = '{run_id}'", output_format="list")
        files = {f.path for f in client.list_logged_model_artifacts(model.model_id)}
        assert "MLmodel" in files
        # artifacts went through the server into its own artifact root, not the project's
        assert list((tmp_path / "server-artifacts").rglob("MLmodel"))


def test_results_travel_through_a_dvc_remote(pipeline_run, tmp_path):
    repo, env, _ = pipeline_run
    remote = tmp_path / "remote"
    dvc(repo, "remote", "add", "--local", "shared", str(remote), env=env)
    try:
        dvc(repo, "push", "-r", "shared", env=env)
    finally:
        dvc(repo, "remote", "remove", "--local", "shared", env=env)
    # A teammate's checkout: the project's files and dvc.lock (from git), no data, no models.
    teammate = tmp_path / "teammate"
    left_behind = {"data", "jobs", "models", "runs", "predictions", "mlruns", ".dvc/cache", ".dvc/tmp",
                   "reports/figures", "reports/summary", "reports/report.html", "reports/report.md",
                   "registry"}
    shutil.copytree(repo, teammate, ignore=lambda folder, names: [
        n for n in names if (Path(folder) / n).relative_to(repo).as_posix() in left_behind])
    dvc(teammate, "remote", "add", "--local", "shared", str(remote), env=env)
    dvc(teammate, "pull", "-r", "shared", env=env)
    model = seed_path("models", "mnist-k3-s1", suffix=".keras")
    assert (teammate / model).read_bytes() == (repo / model).read_bytes()
    assert (teammate / "data" / "prepared" / "cifar10" / "x_train.npy").exists()
    # Everything is there but report.md and champions.json, not cached (cache: false) and so not pushed.
    status = json.loads(dvc(teammate, "status", "--json", env=env).stdout)
    assert status == {"report": [{"changed outs": {"reports/report.md": "deleted"}}],
                      "register": [{"changed outs": {"registry/champions.json": "deleted"}}]}, status


def test_mirrored_strategy_trains_on_the_one_cpu(pipeline_run, tmp_path):
    repo, _, _ = pipeline_run
    params = tiny_params()
    params["train"].update(distribute="mirrored", steps_per_execution=2)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    out = tmp_path / "out"
    store = f"sqlite:///{tmp_path / 'store.db'}"
    job_file(repo, out, params=params_file)
    result = run(train_command(out), repo,
                 env=project_env(MLFLOW_TRACKING_URI=store), check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    from mlflow.tracking import MlflowClient

    finished = MlflowClient(tracking_uri=store).get_run(json.loads((out / "run.json").read_text())["run_id"])
    assert finished.info.status == "FINISHED"
    # the strategy's own count of devices it trained on (one CPU here)
    assert finished.data.params["train.distribute"] == "mirrored" and finished.data.params["replicas"] == "1"
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2
