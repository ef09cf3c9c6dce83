"""A second seed for every fixture setting: only the new runs train, and the report and MLflow
then compare and group settings over their seeds."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from tests.helpers import dvc, mlflow_client, seed_path, tiny_params

pytestmark = pytest.mark.e2e

SETTINGS = tuple(tiny_params()["settings"])


@pytest.fixture(scope="module")
def two_seeds(pipeline_run, tmp_path_factory):
    repo, env, _ = pipeline_run
    copy = tmp_path_factory.mktemp("seeds") / "project"
    shutil.copytree(repo, copy, symlinks=True)
    params = yaml.safe_load((copy / "params.yaml").read_text())
    params["seeds"] = [0, 1]
    (copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = json.loads(dvc(copy, "status", "--json", env=env).stdout)
    result = dvc(copy, "repro", env=env)
    return copy, status, result


def test_adding_a_seed_runs_only_the_new_stages(two_seeds):
    copy, status, result = two_seeds
    new = {f"{stage}@{name}-1" for stage in ("train", "evaluate") for name in SETTINGS}
    assert set(status) == new | {"report", "register"}, status
    ran = {line.split("'")[1] for line in result.stdout.splitlines() if line.startswith("Running stage")}
    assert ran == new | {"report", "register"}, ran


def test_the_report_gives_mean_std_and_welch_verdicts(two_seeds):
    copy, _, _ = two_seeds
    markdown = (copy / "reports" / "report.md").read_text()
    assert "Verdicts: Welch's t-test" in markdown and "2 seed(s) per setting" in markdown
    accuracies = [json.loads((copy / seed_path("metrics/eval", "mnist-k3-s1", seed)).read_text())["test_accuracy"]
                  for seed in (0, 1)]
    aggregates = json.loads((copy / "metrics" / "aggregates.json").read_text())["mnist-k3-s1"]
    assert aggregates["test_accuracy_n"] == 2
    assert aggregates["test_accuracy_mean"] == round(sum(accuracies) / 2, 6)


def test_mlflow_has_one_parent_per_setting_over_both_seeds(two_seeds):
    copy, _, _ = two_seeds
    client = mlflow_client(copy)
    experiments = [e.experiment_id for e in client.search_experiments()]
    parents = client.search_runs(experiments, filter_string="tags.kind = 'parent'")
    assert sorted(run.info.run_name for run in parents) == sorted(SETTINGS)  # the one-seed parents are gone
    for parent in parents:
        children = client.search_runs(experiments, filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        assert sorted(run.data.tags["seed"] for run in children) == ["0", "1"]
        assert parent.data.tags["seeds"] == "0,1" and parent.data.metrics["test_accuracy_n"] == 2
        assert all(run.data.tags["current"] == "true" for run in children)
