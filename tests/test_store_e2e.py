"""When the workspace and the tracking store part ways: a reset store, a checkout whose runs/ name
another store's runs, a project folder moved elsewhere."""

from __future__ import annotations

import json
import shutil
import sys
import urllib.request

import pytest

from tests.helpers import dvc, free_port, http_service, mlflow_client, run, seed_path

pytestmark = pytest.mark.e2e


def _copy(pipeline_run, dest, store: bool):
    repo, env, _ = pipeline_run
    shutil.copytree(repo, dest, symlinks=True, ignore=None if store else shutil.ignore_patterns("mlruns"))
    if not store:
        (dest / "mlruns").mkdir()
    return dest, env


def test_a_reset_store_stops_make_repro_and_any_stage_with_one_line_naming_the_run(pipeline_run, tmp_path):
    copy, env = _copy(pipeline_run, tmp_path / "project", store=False)
    run_id = json.loads((copy / seed_path("runs", "mnist-k3-s1")).read_text())["run_id"]
    way_out = "point MLFLOW_TRACKING_URI at the store that has it, or train again: dvc repro --force --downstream"

    # make repro's check, before any stage runs (a teammate's checkout whose runs are on a server they lack)
    estimate = run([sys.executable, "-m", "pipeline.training.estimate"], copy, env=env, check=False)
    assert estimate.returncode == 1 and "Traceback" not in estimate.stderr
    [line] = estimate.stderr.splitlines()[-1:]
    store = f"sqlite:///{copy / 'mlruns' / 'mlflow.db'}"
    assert line.startswith(f"error: runs/mnist-k3-s1/seed0.json: run {run_id} (and 3 more run files) is not in "
                           f"the tracking store {store}: {way_out} train@mnist-k3-s1-0")
    assert "Running stage" not in estimate.stdout + estimate.stderr

    # a stage that adds to the recorded run, re-run by an edit of its params
    params = copy / "params.yaml"
    params.write_text(params.read_text().replace("examples: 8", "examples: 6"))
    repro = dvc(copy, "repro", "plot@mnist-k3-s1", env=env, check=False)
    assert repro.returncode != 0 and "Traceback" not in repro.stderr
    assert f"error: runs/mnist-k3-s1/seed0.json: run {run_id} is not in the tracking store " in repro.stderr
    assert f"{way_out} train@mnist-k3-s1-0\n" in repro.stderr


def test_a_moved_project_keeps_its_artifacts_in_the_ui_and_its_models_loadable(pipeline_run, tmp_path):
    first, env = _copy(pipeline_run, tmp_path / "hw2", store=True)
    run([sys.executable, "-m", "pipeline.tracking", "init"], first, env=env)
    moved = first.rename(tmp_path / "hw2-old")  # nothing is left where the store's paths pointed
    init = run([sys.executable, "-m", "pipeline.tracking", "init"], moved, env=env)
    assert f"tracking store: artifact paths moved from {first} to {moved}" in init.stderr

    run_id = json.loads((moved / seed_path("runs", "mnist-k3-s1")).read_text())["run_id"]
    port = free_port()
    with http_service([sys.executable, "-m", "pipeline.tracking.ui", "--port", str(port)], port, "make ui", cwd=moved,
                      env=env) as url:
        listing = json.load(urllib.request.urlopen(
            f"{url}/ajax-api/2.0/mlflow/artifacts/list?run_uuid={run_id}&path=figures", timeout=30))
        assert "figures/learning_curves.png" in {entry["path"] for entry in listing["files"]}

    import mlflow

    client = mlflow_client(moved)
    [model] = client.search_logged_models([client.get_run(run_id).info.experiment_id],
                                          filter_string=f"source_run_id = '{run_id}'")
    assert model.artifact_location.startswith(moved.as_uri())
    mlflow.set_tracking_uri(f"sqlite:///{moved / 'mlruns' / 'mlflow.db'}")
    try:
        loaded = mlflow.pyfunc.load_model(f"models:/{model.model_id}")
    finally:
        mlflow.set_tracking_uri("")
    assert loaded.metadata.run_id == run_id
