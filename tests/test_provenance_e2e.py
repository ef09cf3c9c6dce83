"""Every run says what made it, through the real `dvc repro`: the shared pipeline run's runs carry
the machine, versions and system metrics; in a copy, an uncommitted edit of the network retrains
with a patch that `git apply` takes on the run's commit, and a sweep that mixes float32 and bf16
says so beside its verdict."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from pipeline.provenance.machine import this_machine
from pipeline.provenance.record import NOT_RECORDED, is_provenance_key
from tests.helpers import dvc, keep_settings, mlflow_client, seed_path
from tests.helpers import run as run_command

pytestmark = pytest.mark.e2e

MNIST = ("mnist-k3-s1", "mnist-k3-s1-l2")
COMMENT = "# tried: nothing yet, a comment\n"
VERSIONS = {f"version.{name}" for name in ("python", "tensorflow", "keras", "mlflow", "dvc", "numpy")}


def _all_runs(client):
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def _run_id(repo, setting: str) -> str:
    return json.loads((repo / seed_path("runs", setting)).read_text())["run_id"]


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


@pytest.fixture(scope="module")
def edited(pipeline_run, tmp_path_factory):
    """A copy cut to the MNIST L2 sweep, retrained after an uncommitted comment in the network, then
    the L2 setting alone trained again in bf16; its report, then a report after the reference's
    provenance tags were removed (a run made before they were written)."""
    repo, env, _ = pipeline_run
    copy = tmp_path_factory.mktemp("provenance") / "project"
    shutil.copytree(repo, copy, symlinks=True)
    params = keep_settings(yaml.safe_load((copy / "params.yaml").read_text()), MNIST)
    (copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    network = copy / "pipeline" / "model" / "network.py"
    network.write_text(COMMENT + network.read_text())
    dvc(copy, "repro", env=env)
    params["train"]["precision"] = "mixed_bfloat16"
    (copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc(copy, "repro", f"evaluate@{MNIST[1]}-0", env=env)
    dvc(copy, "repro", "--single-item", "report", env=env)
    mixed = (copy / "reports" / "report.md").read_text()

    client = mlflow_client(copy)
    reference = _run_id(copy, MNIST[0])
    for key in [key for key in client.get_run(reference).data.tags if is_provenance_key(key)]:
        client.delete_tag(reference, key)
    dvc(copy, "repro", "--single-item", "--force", "report", env=env)
    return copy, env, mixed, (copy / "reports" / "report.md").read_text()


def test_retrained_runs_carry_the_edit_as_a_patch_that_rebuilds_the_code(edited, tmp_path):
    copy, _, _, _ = edited
    client = mlflow_client(copy)
    tags = client.get_run(_run_id(copy, MNIST[1])).data.tags
    assert (tags["git_dirty"], tags["code_diff"]) == ("true", "code/uncommitted.diff")
    patch = client.download_artifacts(_run_id(copy, MNIST[1]), "code/uncommitted.diff", str(tmp_path))
    assert "params.yaml" not in open(patch).read()  # the precision is a param, not code
    rebuilt = tmp_path / "rebuilt"
    run_command(["git", "clone", "-q", str(copy), str(rebuilt)], tmp_path)
    run_command(["git", "checkout", "-q", tags["git_commit"]], rebuilt)
    run_command(["git", "apply", "--check", patch], rebuilt)
    run_command(["git", "apply", patch], rebuilt)
    network = "pipeline/model/network.py"
    assert (rebuilt / network).read_text() == (copy / network).read_text()
    assert (rebuilt / network).read_text().startswith(COMMENT)


def test_the_report_says_beside_the_verdict_that_precisions_differ(edited):
    _, _, mixed, _ = edited
    row = next(line for line in mixed.splitlines() if f"| `{MNIST[1]}` |" in line and "YES" in line)
    assert "(runs also differ: bf16 vs float32)" in row
    provenance = mixed.split("## Provenance")[1]
    assert f"| `{MNIST[1]}` | 0 |" in provenance and "| mixed_bfloat16 |" in provenance and "| float32 |" in provenance
    assert "+ uncommitted edit" in provenance and this_machine().kind in provenance


def test_runs_without_provenance_tags_show_not_recorded(edited):
    _, _, _, without = edited
    assert f"| `{MNIST[0]}` | 0 |" in without and "| not recorded |" in without.split("## Provenance")[1]
    row = next(line for line in without.splitlines() if f"| `{MNIST[1]}` |" in line and "YES" in line)
    assert "bf16 vs float32; provenance not recorded for 1 of 2 runs" in row


def test_one_runs_provenance_printed_to_quote(edited):
    copy, env, _, _ = edited
    printed = subprocess.run([sys.executable, "-m", "pipeline.provenance", _run_id(copy, MNIST[1])], cwd=copy, env=env,
                             capture_output=True, text=True, timeout=120)
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert lines[0].startswith(f"run       {_run_id(copy, MNIST[1])} ({MNIST[1]} seed 0; FINISHED, ")
    assert "uncommitted edits: true; patch: code/uncommitted.diff" in lines[1]
    assert f"machine   {this_machine().kind} (host " in printed.stdout
    assert "precision mixed_bfloat16;" in printed.stdout and "usage     CPU " in printed.stdout
    unknown = subprocess.run([sys.executable, "-m", "pipeline.provenance", "0" * 32], cwd=copy, env=env,
                             capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 1 and unknown.stderr.startswith(f"error: run {'0' * 32}: not in the tracking store")
    assert len(unknown.stderr.strip().splitlines()) == 1
