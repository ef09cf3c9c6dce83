"""Training through the real `dvc repro` on fixture data, tracked in the project's MLflow store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess

import numpy as np
import pytest
import yaml

from pipeline.training.checkpoint import HOLD_AFTER_FIRST_EPOCH_ENV
from tests.helpers import (
    VENV_BIN,
    dvc,
    job_file,
    mlflow_client,
    params_file,
    reap,
    runs_by_setting,
    seed_path,
    store_env,
    tiny_params,
    train_command,
    wait_for_epochs,
)
from tests.helpers import run as run_command

pytestmark = pytest.mark.e2e

SETTINGS = tuple(tiny_params()["settings"])
EPOCHS = tiny_params()["train"]["epochs"]


def test_one_finished_run_per_setting_with_epoch_metrics(pipeline_run):
    repo, _, _ = pipeline_run
    runs = runs_by_setting(repo)
    assert sorted(runs) == sorted(SETTINGS)
    client = mlflow_client(repo)
    for name, run in runs.items():
        assert run.info.status == "FINISHED"
        assert run.info.run_name == f"{name} seed 0"
        experiment = client.get_experiment(run.info.experiment_id).name
        assert experiment == ("mnist-cnn" if name.startswith("mnist") else "cifar10-gray-cnn")
        for metric in ("loss", "accuracy", "val_loss", "val_accuracy"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, metric)]
            assert steps == list(range(1, EPOCHS + 1)), (name, metric, steps)
        params = run.data.params
        assert params["kernel"] == "3" and params["train.epochs"] == str(EPOCHS) and params["seed"] == "0"
        assert params["train.learning_rate"] == "0.001" and params["train.batch_size"] == "32"
        tags = run.data.tags
        assert tags["dvc_stage"] == f"train@{name}-0"
        in_sweeps = [sweep for sweep, value in tiny_params()["sweeps"].items() if name in value["settings"]]
        assert tags["sweeps"] == ",".join(in_sweeps)
        assert len(tags["git_commit"]) == 40 and len(tags["data_md5"]) == 32
        contexts = {i.tags[0].value for i in run.inputs.dataset_inputs}
        assert contexts == {"training", "validation"}
        run_file = json.loads((repo / seed_path("runs", name)).read_text())
        assert run_file["run_id"] == run.info.run_id and tags["current"] == "true"


def test_logged_model_loads_and_predicts(pipeline_run):
    import mlflow

    repo, _, _ = pipeline_run
    run = runs_by_setting(repo)["mnist-k3-s1"]
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlruns' / 'mlflow.db'}")
    [logged] = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id],
                                           filter_string=f"source_run_id = '{run.info.run_id}'", output_format="list")
    model = mlflow.pyfunc.load_model(logged.model_uri)
    x = np.load(repo / "data" / "prepared" / "mnist" / "x_test.npy")[:5]
    predictions = np.asarray(model.predict(x))
    assert predictions.shape == (5, 10)
    np.testing.assert_allclose(predictions.sum(axis=1), 1, rtol=1e-4)
    assert model.metadata.signature is not None and model.metadata.saved_input_example_info is not None


def test_metrics_and_history_outputs(pipeline_run):
    repo, env, _ = pipeline_run
    shown = json.loads(dvc(repo, "metrics", "show", "--json", env=env).stdout)
    files = next(iter(shown.values()))["data"]
    for name in SETTINGS:
        metrics = files[seed_path("metrics/train", name).as_posix()]["data"]
        assert set(metrics) >= {"train_loss", "train_accuracy", "val_loss", "val_accuracy"}
        history = (repo / seed_path("plots/history", name, suffix=".csv")).read_text().splitlines()
        assert history[0] == "epoch,loss,accuracy,val_loss,val_accuracy,seconds"
        assert len(history) == EPOCHS + 1
    # the fixture's class pattern is easy: two epochs must learn it
    assert files["metrics/train/mnist-k3-s1/seed0.json"]["data"]["val_accuracy"] > 0.5


@pytest.fixture(scope="module")
def edited_copy(pipeline_run, tmp_path_factory):
    """A copy of the finished project with one setting's value changed, re-run."""
    repo, env, _ = pipeline_run
    copy = tmp_path_factory.mktemp("edited") / "project"
    shutil.copytree(repo, copy, symlinks=True)
    params = yaml.safe_load((copy / "params.yaml").read_text())
    params["settings"]["mnist-k3-s1-l2"]["l2"] = 0.01
    (copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = dvc(copy, "status", env=env).stdout
    result = dvc(copy, "repro", env=env)
    return copy, status, result


def test_editing_one_setting_retrains_only_it(edited_copy):
    copy, status, result = edited_copy
    # DVC names the stages whose own inputs changed: the setting's job (whose new file then
    # invalidates its trainings), the report and the register step (both read every setting)
    assert [line for line in status.splitlines() if not line.startswith("\t")] == ["job@mnist-k3-s1-l2:", "report:",
                                                                                   "register:"]
    ran = [line.split("'")[1] for line in result.stdout.splitlines() if line.startswith("Running stage")]
    assert [stage for stage in ran if stage.startswith("train@")] == ["train@mnist-k3-s1-l2-0"], ran
    assert not any(stage.startswith(("download@", "preprocess@")) for stage in ran)
    client = mlflow_client(copy)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string="tags.setting = 'mnist-k3-s1-l2' and tags.kind = 'seed'")
    assert len(runs) == 2
    # the run the workspace's outputs now come from is the setting's current one
    current = json.loads((copy / seed_path("runs", "mnist-k3-s1-l2")).read_text())["run_id"]
    assert {r.info.run_id: r.data.tags.get("current") for r in runs} == {
        r.info.run_id: ("true" if r.info.run_id == current else None) for r in runs}


def test_a_shared_edit_retrains_only_the_settings_that_use_the_shared_value(pipeline_run, tmp_path):
    """train.learning_rate halved, while the MNIST settings now set their own (the old shared value;
    both, as their l2 sweep may vary l2 only): every job is re-resolved, and every setting's training
    is out of date but those two, whose job files stay the same. Only the job stages run: which
    trainings DVC would run next is what `dvc status` says once the job files are rewritten."""
    repo, env, _ = pipeline_run
    copy = tmp_path / "project"
    shutil.copytree(repo, copy, symlinks=True)
    params = yaml.safe_load((copy / "params.yaml").read_text())
    own = [name for name in SETTINGS if name.startswith("mnist")]
    for name in own:
        params["settings"][name]["learning_rate"] = params["train"]["learning_rate"]
    params["train"]["learning_rate"] /= 2
    (copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    def out_of_date() -> set[str]:
        status = dvc(copy, "status", env=env).stdout
        return {line[:-1] for line in status.splitlines() if line.endswith(":") and not line.startswith("\t")}

    assert out_of_date() == {*(f"job@{name}" for name in SETTINGS), "report", "register"}
    ran = [line.split("'")[1] for line in dvc(copy, "repro", "--glob", "job@*", env=env).stdout.splitlines()
           if line.startswith("Running stage")]
    assert sorted(ran) == sorted(f"job@{name}" for name in SETTINGS)
    assert {stage for stage in out_of_date() if stage.startswith("train@")} == {
        f"train@{name}-0" for name in SETTINGS if name not in own}
    job = json.loads((copy / "jobs" / "cifar10-k3-s1.json").read_text())
    assert job["train"]["learning_rate"] == params["train"]["learning_rate"]


def test_nan_loss_ends_run_failed(pipeline_run, tmp_path):
    repo, _, _ = pipeline_run
    # One image of extreme values overflows the activations of its batch to NaN in the first
    # epoch, as a diverging run does (on real MNIST, learning_rate 1e6 does it at batch 3).
    data = tmp_path / "nan-data"
    shutil.copytree(repo / "data" / "prepared" / "mnist", data)
    x_train = np.load(data / "x_train.npy")
    x_train[0] = 1e30
    np.save(data / "x_train.npy", x_train)
    out = tmp_path / "out"
    job_file(repo, out, params=params_file(tmp_path, epochs=3), data=data)
    result = subprocess.run(train_command(out), cwd=repo, env=store_env(tmp_path), capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1].startswith(
        "error: setting mnist-k3-s1 seed 0: loss became NaN/Inf in epoch 1")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'store.db'}")
    [run] = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"].startswith("setting mnist-k3-s1 seed 0: loss became NaN/Inf in epoch 1")
    assert [p.name for p in out.iterdir()] == ["job.json"]  # no output of the train stage


def test_terminated_run_ends_killed_and_writes_nothing(pipeline_run, tmp_path):
    """SIGTERM (a scheduler or `kill`); SIGINT arrives through `dvc repro` in the test below."""
    repo, _, _ = pipeline_run
    out = tmp_path / "out"
    job_file(repo, out, params=params_file(tmp_path, epochs=500))
    cmd = train_command(out)
    env = store_env(tmp_path)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'store.db'}")
    process = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run = wait_for_epochs(client, process, 1)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        reap(process)
    assert process.returncode == 130, stderr
    done = len(client.get_metric_history(run.info.run_id, "loss"))
    assert stderr.splitlines()[-1] == ("error: terminated; outputs of this stage were not written; "
                                       f"`dvc repro` resumes the training after epoch {done}")
    killed = client.get_run(run.info.run_id)
    assert killed.info.status == "KILLED" and killed.data.tags["failure_reason"] == "terminated (SIGTERM)"
    assert [p.name for p in out.iterdir()] == ["job.json"]  # no output of the train stage


def test_temp_workspace_experiment_logs_to_the_main_store(pipeline_run, tmp_path):
    """`dvc exp run --temp` runs stages under .dvc/tmp/exps/; their runs must land in the
    project's own store (resolved through DVC_ROOT), tagged and named with the experiment's name,
    under the setting's own parent run (not a loose row that looks like the workspace's run)."""
    repo, env, _ = pipeline_run
    copy = tmp_path / "project"
    shutil.copytree(repo, copy, symlinks=True)
    run_command(["git", "add", "-A"], copy)  # DVC's temporary workspace starts from the last commit
    run_command(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "results"], copy)
    dvc(copy, "exp", "run", "--temp", "-n", "stronger-l2", "-S", "settings.mnist-k3-s1-l2.l2=0.02",
        "train@mnist-k3-s1-l2-0", "evaluate@mnist-k3-s1-l2-0", env=env)
    assert not list((copy / ".dvc" / "tmp" / "exps").glob("**/mlruns/mlflow.db"))
    client = mlflow_client(copy)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string="tags.dvc_experiment = 'stronger-l2'")
    assert [(r.data.tags["setting"], r.data.params["l2"], r.info.status) for r in runs] == [
        ("mnist-k3-s1-l2", "0.02", "FINISHED")]
    [parent] = client.search_runs([runs[0].info.experiment_id], filter_string=(
        "tags.kind = 'parent' and tags.setting = 'mnist-k3-s1-l2' and tags.current = 'true'"))
    assert runs[0].info.run_name == "mnist-k3-s1-l2 seed 0 (dvc exp stronger-l2)"
    assert runs[0].data.tags["mlflow.parentRunId"] == parent.info.run_id and "test_accuracy" in runs[0].data.metrics


EPOCHS_TO_INTERRUPT = 3


def test_interrupted_dvc_repro_resumes_and_completes_the_stage(pipeline_run, tmp_path):
    """Ctrl-C on `dvc repro` mid-training (SIGINT to its process group, as a terminal sends it):
    no output of the stage is left for DVC to trust, and the next `dvc repro` continues the same
    MLflow run from the last finished epoch, without duplicate steps."""
    repo, env, _ = pipeline_run
    copy = tmp_path / "project"
    shutil.copytree(repo, copy, symlinks=True)
    params = yaml.safe_load((copy / "params.yaml").read_text())
    params["train"].update(epochs=EPOCHS_TO_INTERRUPT, batch_size=4)
    (copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    client = mlflow_client(copy)
    before = {r.info.run_id for r in client.search_runs([e.experiment_id for e in client.search_experiments()])}
    stage = "train@mnist-k3-s1-0"
    # the training holds after its first epoch (no release file): the Ctrl-C lands mid-training
    held = {**env, HOLD_AFTER_FIRST_EPOCH_ENV: str(tmp_path / "never")}
    process = subprocess.Popen([str(VENV_BIN / "dvc"), "repro", stage], cwd=copy, env=held, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        run_id = wait_for_epochs(client, process, 1, exclude=before).info.run_id
        os.killpg(process.pid, signal.SIGINT)
        process.communicate(timeout=60)
    finally:
        reap(process)
    assert process.returncode != 0
    killed = client.get_run(run_id)
    assert killed.info.status == "KILLED" and killed.data.tags["failure_reason"] == "interrupted (Ctrl-C)"
    done = len(client.get_metric_history(run_id, "loss"))
    assert done == 1
    assert not (copy / seed_path("models", "mnist-k3-s1", suffix=".keras")).exists()
    assert not (copy / seed_path("runs", "mnist-k3-s1")).exists()
    assert stage in dvc(copy, "status", stage, env=env).stdout

    resumed = dvc(copy, "repro", stage, env=env)
    assert f"mnist-k3-s1 seed 0: resuming MLflow run {run_id} after epoch {done}" in resumed.stderr
    finished = client.get_run(run_id)
    assert finished.info.status == "FINISHED" and "failure_reason" not in finished.data.tags
    for metric in ("loss", "val_accuracy"):
        assert [m.step for m in client.get_metric_history(run_id, metric)] == list(range(1, EPOCHS_TO_INTERRUPT + 1))
    assert json.loads((copy / seed_path("runs", "mnist-k3-s1")).read_text())["run_id"] == run_id
    history = (copy / seed_path("plots/history", "mnist-k3-s1", suffix=".csv")).read_text().splitlines()
    assert len(history) == EPOCHS_TO_INTERRUPT + 1
    assert "up to date" in dvc(copy, "status", stage, env=env).stdout
    assert not (copy / ".dvc" / "tmp" / "train-backup" / "mnist-k3-s1" / "seed0").exists()
