"""What made a run, without training: the code state of real git checkouts, the machine read from
made-up /proc/cpuinfo text, the tags a run gets in a real MLflow store, and what the report says
where the runs behind a verdict differ in more than the swept value."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from pipeline.provenance import code as code_module
from pipeline.provenance import record
from pipeline.provenance.__main__ import describe, usage_line
from pipeline.provenance.code import CodeState, code_state
from pipeline.provenance.machine import cpu_model, gpu_names, library_version
from pipeline.reporting.confounds import RunProvenance, code_cell, differences
from pipeline.reporting.results import Result, SeedResult
from pipeline.reporting.tables import provenance_table, sweep_table
from pipeline.tracking.system_metrics import sampling_seconds
from tests.helpers import REPO, run

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]


@pytest.fixture
def checkout(tmp_path):
    """A committed checkout shaped like the project's: code, params, docs."""
    repo = tmp_path / "project"
    (repo / "pipeline" / "model").mkdir(parents=True)
    (repo / "docs").mkdir()
    (repo / "pipeline" / "model" / "network.py").write_text("def build():\n    return 1\n")
    (repo / "pipeline" / "weights.bin").write_bytes(bytes(range(256)))
    (repo / "params.yaml").write_text("train:\n  epochs: 50\n")
    (repo / "docs" / "results.md").write_text("# Results\n")
    (repo / ".gitignore").write_text("/data/\n")
    run(["git", "init", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run([*GIT, "commit", "-qm", "init"], repo)
    return repo


def test_a_clean_checkout_is_its_commit(checkout):
    state = code_state(checkout)
    head = run(["git", "rev-parse", "HEAD"], checkout).stdout.strip()
    assert (state.commit, state.dirty, state.diff, state.identity) == (head, False, "", head)


def test_params_outputs_docs_and_stray_files_are_not_code(checkout):
    (checkout / "params.yaml").write_text("train:\n  epochs: 2\n")  # make quick's edit: a param, logged as such
    (checkout / "docs" / "results.md").write_text("# Results, edited\n")
    (checkout / "dvc.lock").write_text("schema: '2.0'\n")
    (checkout / "metrics").mkdir()
    (checkout / "metrics" / "aggregates.json").write_text("{}")
    (checkout / "my_digit.png").write_bytes(b"\x89PNG")
    (checkout / "data").mkdir()
    (checkout / "data" / "x.npy").write_bytes(b"ignored")
    assert code_state(checkout).dirty is False


def test_the_uncommitted_edit_is_a_patch_that_rebuilds_the_code_on_its_commit(checkout, tmp_path):
    network = checkout / "pipeline" / "model" / "network.py"
    network.write_text("# tried: a wider layer\ndef build():\n    return 2\n")
    (checkout / "pipeline" / "model" / "blocks.py").write_text("WIDTH = 64\n")  # new, not yet added to git
    (checkout / "pipeline" / "weights.bin").write_bytes(bytes(reversed(range(256))))
    (checkout / "params.yaml").write_text("train:\n  epochs: 2\n")
    state = code_state(checkout)
    assert state.dirty is True and "params.yaml" not in state.diff
    assert state.identity == f"{state.commit}+{state.digest[:12]}" and len(state.digest) == 64

    rebuilt = tmp_path / "rebuilt"
    run(["git", "clone", "-q", str(checkout), str(rebuilt)], tmp_path)
    run(["git", "checkout", "-q", state.commit], rebuilt)
    patch = tmp_path / "uncommitted.diff"
    patch.write_text(state.diff)
    run(["git", "apply", "--check", str(patch)], rebuilt)
    run(["git", "apply", str(patch)], rebuilt)
    for path in ("pipeline/model/network.py", "pipeline/model/blocks.py", "pipeline/weights.bin"):
        assert (rebuilt / path).read_bytes() == (checkout / path).read_bytes(), path


def test_two_different_edits_have_different_digests(checkout):
    network = checkout / "pipeline" / "model" / "network.py"
    network.write_text("def build():\n    return 2\n")
    first = code_state(checkout)
    network.write_text("def build():\n    return 3\n")
    second = code_state(checkout)
    assert first.commit == second.commit and first.digest != second.digest


def test_outside_a_checkout_or_without_git_it_says_so_and_never_raises(tmp_path, monkeypatch):
    assert code_state(tmp_path) == CodeState("unknown", None, "", "not a git checkout")
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert code_state(tmp_path).unknown_because == "git is not installed"
    tags = record.code_tags(code_state(tmp_path))
    assert (tags["git_commit"], tags["git_dirty"], tags["code_diff"]) == ("unknown", "unknown",
                                                                         "unknown: git is not installed")


def test_a_checkout_without_a_commit_yet(tmp_path):
    run(["git", "init", "-q"], tmp_path)
    assert code_state(tmp_path).unknown_because == "a git checkout without a commit yet"


def test_an_edit_over_the_cap_is_named_by_size_and_digest_not_logged(checkout, monkeypatch):
    (checkout / "pipeline" / "model" / "network.py").write_text("x = 1\n" * 500)
    state = code_state(checkout)
    assert state.logged_whole and record.code_tags(state)["code_diff"] == "code/uncommitted.diff"
    monkeypatch.setattr(record, "DIFF_CAP_BYTES", 100)
    monkeypatch.setattr(code_module, "DIFF_CAP_BYTES", 100)
    assert not state.logged_whole
    assert record.code_tags(state)["code_diff"].startswith("not logged: 0.0 MB, over the 0 MB cap (sha256 ")
    assert state.digest in record.code_tags(state)["code_diff"]


CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu avx512f amx_bf16 avx512_bf16

processor\t: 1
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Processor
"""


def test_the_cpu_is_named_with_its_family_and_model():
    assert cpu_model(CPUINFO) == "Intel(R) Xeon(R) Processor (family 6, model 143)"
    assert cpu_model("model name\t: AMD EPYC\n") == "AMD EPYC"
    assert cpu_model("") == "unknown"


def test_gpus_are_those_cuda_visible_devices_leaves():
    listing = "NVIDIA H100 80GB HBM3\nNVIDIA A100-SXM4-40GB\n"
    assert gpu_names(listing, None) == "NVIDIA H100 80GB HBM3, NVIDIA A100-SXM4-40GB"
    assert gpu_names(listing, "1") == "NVIDIA A100-SXM4-40GB"
    assert gpu_names(listing, "") == gpu_names(listing, "-1") == gpu_names("", None) == "none"


def test_a_library_that_is_not_there_is_said_so():
    assert library_version("no-such-distribution-here") == "not installed"
    assert library_version("numpy") == np.__version__


def test_reading_the_fingerprint_imports_no_tensorflow():
    probe = ("import sys; from pipeline.provenance.record import provenance_tags; tags = provenance_tags(); "
             "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'imported'; "
             "print(tags['version.tensorflow'], tags['machine'])")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == library_version("tensorflow")


def test_a_run_in_a_real_store_gets_the_tags_and_the_patch(checkout, tmp_path, monkeypatch):
    import mlflow

    (checkout / "pipeline" / "model" / "network.py").write_text("# a comment\ndef build():\n    return 1\n")
    edited = code_state(checkout)
    monkeypatch.setattr(record, "code_state", lambda: edited)
    monkeypatch.setenv("DVC_STAGE", "train@mnist-k3-s1-0")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'store.db'}")
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    record.record_provenance(client, run_id)
    record.record_provenance(client, run_id, prefix="evaluate.")
    tags = client.get_run(run_id).data.tags
    assert (tags["git_commit"], tags["git_dirty"], tags["code_diff"]) == (edited.commit, "true",
                                                                         "code/uncommitted.diff")
    assert tags["dvc_stage"] == tags["evaluate.dvc_stage"] == "train@mnist-k3-s1-0"
    assert tags["evaluate.code"] == tags["code"] == edited.identity
    assert tags["machine"] == tags["evaluate.machine"] and tags["machine.bf16"] in ("yes", "no")
    assert {f"version.{name}" for name in ("python", "tensorflow", "keras", "mlflow", "dvc", "numpy")} <= set(tags)
    for path in ("code/uncommitted.diff", "code/evaluate/uncommitted.diff"):
        logged = client.download_artifacts(run_id, path, str(tmp_path))
        assert open(logged).read() == edited.diff


def test_a_setting_s_parent_shares_what_its_seeds_agree_on():
    seeds = [{"machine": "A", "git_commit": "c1", "version.keras": "3"},
             {"machine": "B", "git_commit": "c1", "version.keras": "3", "setting": "x"},
             {"git_commit": "c1", "version.keras": "3"}]
    assert record.shared_provenance(seeds[:2]) == {"machine": record.DIFFERS, "git_commit": "c1", "version.keras": "3"}
    assert record.shared_provenance(seeds)["machine"] == record.NOT_RECORDED


def _provenance(precision="float32", commit="c1", edit="", machine="AMD EPYC x2, bf16 no, GPU none", data="d1"):
    tags = {"git_commit": commit, "code": f"{commit}+{edit}" if edit else commit, "data_md5": data,
            "machine": machine, "version.tensorflow": "2.21.0"}
    return RunProvenance.of(tags, precision)


def test_nothing_differs_between_runs_made_alike():
    assert differences([_provenance(), _provenance(), _provenance()]) == []


@pytest.mark.parametrize(("other", "said"), [
    (_provenance(precision="mixed_bfloat16"), "bf16 vs float32"),
    (_provenance(commit="c2"), "code differs: 2 commits"),
    (_provenance(edit="e1"), "code differs: uncommitted edit"),
    (_provenance(data="d2"), "data differs"),
    (_provenance(machine="Intel(R) Xeon(R) Processor x2, bf16 yes, GPU none"), "2 machine kinds"),
    (RunProvenance.of({"version.tensorflow": "2.20.0", "machine": "AMD EPYC x2, bf16 no, GPU none", "code": "c1",
                       "git_commit": "c1", "data_md5": "d1"}, "float32"), "library versions differ"),
    (RunProvenance.of({}, "float32"), "provenance not recorded for 1 of 3 runs"),
])
def test_each_difference_is_named(other, said):
    assert differences([_provenance(), _provenance(), other]) == [said]


def _result(name, kernel, seeds):
    """A one-setting result whose seeds' runs were made as `seeds` says: (accuracy, precision, tags)."""
    from pipeline.params.schema import Setting
    from pipeline.reporting.results import Architecture

    runs = [SeedResult(seed, {"train_loss": 0.1, "train_accuracy": 0.9, "val_accuracy": 0.9, "epochs": 50,
                              "precision": precision}, {"test_accuracy": accuracy},
                       {"epoch": np.array([1.0])}, np.arange(100) < round(100 * accuracy), f"{name}-{seed}", tags)
            for seed, (accuracy, precision, tags) in enumerate(seeds)]
    return Result(name, Setting(dataset="mnist", kernel=kernel, strides=1, l2=0.0), runs, [], 50, 1.0, "md5",
                  Architecture([], 0, 0), [], {"kernel": kernel, "strides": 1, "l2": 0.0})


def test_the_verdict_says_beside_it_what_else_differs_and_the_table_shows_the_fingerprint():
    zen3 = {"git_commit": "a" * 40, "code": "a" * 40, "machine": "AMD EPYC (family 25, model 1) x2, bf16 no, GPU none",
            "version.tensorflow": "2.21.0", "data_md5": "d"}
    spr = {**zen3, "machine": "Intel(R) Xeon(R) Processor (family 6, model 143) x2, bf16 yes, GPU none",
           "code": "a" * 40 + "+" + "b" * 12}
    k3 = _result("k3", 3, [(0.90, "float32", zen3), (0.91, "float32", zen3)])
    k5 = _result("k5", 5, [(0.80, "float32", zen3), (0.81, "mixed_bfloat16", spr)])
    _, _, reference, row = sweep_table("kernel", [k3, k5], {}).splitlines()
    assert "| reference |" in reference
    assert ("| worse (runs also differ: bf16 vs float32; code differs: uncommitted edit; 2 machine kinds) | `k5` |"
            in row)
    table = provenance_table([k3, k5])
    assert ("| `k5` | 1 | `k5-1` | `md5` | 50 | mixed_bfloat16 | `aaaaaaa` + uncommitted edit `bbbbbbbb` | Intel"
            in table)
    assert "not recorded" not in table


def test_old_runs_show_not_recorded_and_no_verdict_note():
    old = _result("k3", 3, [(0.9, "float32", {}), (0.91, "float32", {"git_commit": "c" * 40})])
    table = provenance_table([old])
    assert "| `k3` | 0 | `k3-0` | `md5` | 50 | float32 | not recorded | not recorded | not recorded |" in table
    assert "`ccccccc` (edits not recorded)" in table and 'show "not recorded"' in table
    assert code_cell(RunProvenance()) == "not recorded"
    assert differences([run.provenance for run in old.runs]) == []


@pytest.mark.parametrize(("expected", "at_least", "at_most"), [(20, 10, 30), (600, 50, 150), (2400, 50, 150),
                                                              (4 * 3600, 100, 400)])
def test_system_metrics_give_a_run_several_points_and_a_long_one_no_flood(expected, at_least, at_most):
    points = expected / sampling_seconds(expected, smoke=False)
    assert at_least <= points <= at_most


def test_a_run_of_unknown_length_is_sampled_every_second_when_short_by_design():
    assert sampling_seconds(None, smoke=True) == 1.0  # a 2-epoch quick run of ~20 s: ~20 points
    assert 20 * 60 / sampling_seconds(None, smoke=False) >= 50  # a full-size run of 20 min or more


def test_the_printed_provenance_quotes_the_tags_and_what_the_machine_did():
    from mlflow.entities import Run, RunData, RunInfo, RunTag

    tags = {"setting": "mnist-k3-s1", "seed": "0", "git_commit": "c" * 40, "git_dirty": "true",
            "code_diff": "code/uncommitted.diff", "machine": "AMD EPYC x2, bf16 no, GPU none", "host": "h",
            "version.keras": "3.15.1", "evaluate.code": "c" * 40, "evaluate.machine": "M2"}
    info = RunInfo("r1", "e", "u", "FINISHED", 1_000, 61_000, "active", run_name="mnist-k3-s1 seed 0")
    lines = describe(Run(info, RunData(tags=[RunTag(k, v) for k, v in tags.items()])),
                     {"system/cpu_utilization_percentage": [40.0, 100.0, 70.0],
                      "system/system_memory_usage_megabytes": [900.0, 1100.0, 1000.0]})
    assert lines[0] == "run       r1 (mnist-k3-s1 seed 0; FINISHED, 60 s)"
    assert lines[1] == f"code      {'c' * 40}, uncommitted edits: true; patch: code/uncommitted.diff"
    assert "versions  keras 3.15.1" in lines and f"evaluate  code {'c' * 40}, on M2" in lines
    assert "usage     CPU 70% mean, 100% peak; memory 1000 MB mean, 1100 MB peak (3 samples)" in lines
    assert usage_line({}) == "not recorded"
