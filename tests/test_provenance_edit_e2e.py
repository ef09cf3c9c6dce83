"""An uncommitted edit, through the real `dvc repro`: in a copy of the shared pipeline run, a setting
retrained after a comment in the network carries a patch that `git apply` takes on the run's
commit, and its sweep, then mixing float32 and bf16, clean and edited code, says so beside its
verdict; runs made before provenance was tagged show as not recorded."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from pipeline.provenance.machine import this_machine
from pipeline.provenance.record import is_provenance_key
from tests.helpers import dvc, mlflow_client, seed_path
from tests.helpers import run as run_command

pytestmark = pytest.mark.e2e

MNIST = ("mnist-k3-s1", "mnist-k3-s1-l2")
COMMENT = "# tried: nothing yet, a comment\n"


def _run_id(repo, setting: str) -> str:
    return json.loads((repo / seed_path("runs", setting)).read_text())["run_id"]


@pytest.fixture(scope="module")
def edited(pipeline_run, tmp_path_factory):
    """A copy of the shared run in which the L2 setting alone trains again, after an uncommitted
    comment in the network and in bf16, beside its reference trained clean in float32: its report,
    then a report after the reference's provenance tags were removed (a run made before they were
    written)."""
    repo, env, _ = pipeline_run
    copy = tmp_path_factory.mktemp("provenance") / "project"
    shutil.copytree(repo, copy, symlinks=True)
    network = copy / "pipeline" / "model" / "network.py"
    network.write_text(COMMENT + network.read_text())
    params = yaml.safe_load((copy / "params.yaml").read_text())
    params["train"]["precision"] = "mixed_bfloat16"
    (copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc(copy, "repro", f"evaluate@{MNIST[1]}-0", env=env)  # its job file, training and evaluation only
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


def test_the_report_says_beside_the_verdict_that_precision_and_code_differ(edited):
    _, _, mixed, _ = edited
    row = next(line for line in mixed.splitlines() if f"| `{MNIST[1]}` |" in line and "YES" in line)
    assert "(runs also differ: bf16 vs float32; code differs: uncommitted edit)" in row
    provenance = mixed.split("## Provenance")[1]
    assert f"| `{MNIST[1]}` | 0 |" in provenance and "| mixed_bfloat16 |" in provenance and "| float32 |" in provenance
    assert "+ uncommitted edit" in provenance and this_machine().kind in provenance


def test_runs_without_provenance_tags_show_not_recorded(edited):
    _, _, _, without = edited
    assert f"| `{MNIST[0]}` | 0 |" in without and "| not recorded |" in without.split("## Provenance")[1]
    row = next(line for line in without.splitlines() if f"| `{MNIST[1]}` |" in line and "YES" in line)
    assert "(runs also differ: bf16 vs float32; provenance not recorded for 1 of 2 runs)" in row


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
