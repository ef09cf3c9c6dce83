"""Every run says what made it, through the real `dvc repro`: the shared pipeline run's runs carry
the machine, versions, their clean commit and system metrics (an edited one:
tests/test_provenance_edit_e2e.py)."""

from __future__ import annotations

import pytest

from pipeline.provenance.machine import this_machine
from pipeline.provenance.record import NOT_RECORDED, is_provenance_key
from tests.helpers import mlflow_client

pytestmark = pytest.mark.e2e

VERSIONS = {f"version.{name}" for name in ("python", "tensorflow", "keras", "mlflow", "dvc", "numpy")}


def _all_runs(client):
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_every_run_carries_the_machine_versions_and_its_clean_commit(pipeline_run):
    repo, _, _ = pipeline_run
    client = mlflow_client(repo)
    runs = _all_runs(client)
    assert {run.data.tags["kind"] for run in runs} == {"seed", "parent", "report"}
    for run in runs:
        tags = run.data.tags
        assert tags["machine"] == this_machine().kind, run.info.run_name
        assert VERSIONS <= set(tags) and tags["version.tensorflow"] != NOT_RECORDED
        assert (tags["git_dirty"], tags["code"], tags["code_diff"]) == (
            "false", tags["git_commit"], "none: the code is the commit's"), run.info.run_name
        assert len(tags["git_commit"]) == 40


def test_training_runs_record_system_metrics_and_what_evaluated_them(pipeline_run):
    repo, _, _ = pipeline_run
    client = mlflow_client(repo)
    for run in (run for run in _all_runs(client) if run.data.tags["kind"] == "seed"):
        cpu = client.get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")
        memory = client.get_metric_history(run.info.run_id, "system/system_memory_usage_megabytes")
        assert len(cpu) >= 3 and len(memory) == len(cpu), run.info.run_name  # a 2-epoch run: several points
        assert all(0 <= point.value <= 100 for point in cpu)
        tags = run.data.tags
        assert tags["dvc_stage"] == f"train@{tags['setting']}-0"
        assert tags["evaluate.dvc_stage"] == f"evaluate@{tags['setting']}-0"
        assert tags["evaluate.code"] == tags["code"] and tags["evaluate.machine"] == tags["machine"]
        assert tags["command"].split()[1:3] == ["-m", "pipeline.train"]


def test_a_registered_version_says_what_made_its_model(pipeline_run):
    repo, _, _ = pipeline_run
    client = mlflow_client(repo)
    version = client.get_model_version_by_alias("mnist-cnn", "smoke")
    trained = client.get_run(version.run_id).data.tags
    assert {key: value for key, value in version.tags.items() if is_provenance_key(key)} == {
        key: value for key, value in trained.items() if is_provenance_key(key)}
    assert version.tags["register.dvc_stage"] == "register" and version.tags["register.machine"] == trained["machine"]
