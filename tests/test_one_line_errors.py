"""Issue 32's cases, one each: inputs that ended in a traceback (or were used silently) now end in
one line on stderr that names the file or program at fault and how to recover, and a non-zero exit.
tests/test_fuzz_inputs.py holds the same for whole classes of broken input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline import job, preprocess, report
from pipeline.job import load_job
from pipeline.params import __main__ as params
from pipeline.preprocess import read_normalization
from pipeline.scaleout import cluster_setup, sweep
from pipeline.tracking.run_files import run_id_of
from pipeline.training.checkpoint import Resume
from pipeline.training.timings import EpochTiming, load_timings, record_timing, timings_file
from tests.helpers import REPO, assert_one_line_naming, run_stage, tiny_params

CLAIMS = REPO / "reports" / "claims.yaml"


@pytest.fixture
def params_file(tmp_path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    return path


def test_a_sweep_of_mnist_and_cifar10_settings_is_one_line(params_file):
    raw = yaml.safe_load(params_file.read_text())
    raw["sweeps"]["mnist-l2"]["settings"] = ["mnist-k3-s1", "cifar10-k3-s1"]
    params_file.write_text(yaml.safe_dump(raw))
    status, stderr = run_stage(params.main, ["check", "--params", str(params_file)])
    assert status == 1
    assert stderr == (f"error: {params_file}: sweeps.mnist-l2.settings: cifar10-k3-s1 trains on cifar10, mnist-k3-s1 "
                      "on mnist: a sweep compares settings of one dataset\n")


@pytest.mark.parametrize("text,problem", [
    ("not json", "not valid JSON (expected ident at line 1 column 2)"),
    ("{}", "setting: Field required"),
    ('{"setting": 3}', "setting: Input should be a valid string (got 3)"),
])
def test_a_job_file_that_is_no_job_is_one_line(tmp_path, text, problem):
    path = tmp_path / "job.json"
    path.write_text(text)
    status, stderr = run_stage(lambda argv: load_job(path, 0))
    assert_one_line_naming(path, status, stderr)
    assert f"the job file: {problem}" in stderr and "dvc repro job@" in stderr


def _lose_color(document):
    del document["values"]["color"]


def _empty_data(document):
    document["data"] = ""


@pytest.mark.parametrize("edit,problem", [(_lose_color, "values: Value error, missing key color"),  # not gray
                                          (_empty_data, "data: String should have at least 1 character")])  # not .
def test_a_job_file_value_that_a_default_would_replace_is_one_line(tmp_path, params_file, edit, problem):
    data = tmp_path / "prepared"
    (data / "rgb").mkdir(parents=True)
    np.save(data / "rgb" / "y_test.npy", np.zeros(2, dtype=np.uint8))
    path = tmp_path / "job.json"
    assert run_stage(job.main, ["cifar10-k3-s1-rgb", str(data), str(path), "--params", str(params_file)])[0] == 0
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))
    status, stderr = run_stage(lambda argv: load_job(path, 0))
    assert_one_line_naming(path, status, stderr)
    assert problem in stderr


def test_a_missing_data_directory_is_an_error_not_a_digest_of_nothing(tmp_path, params_file):
    out = tmp_path / "job.json"
    status, stderr = run_stage(job.main, ["mnist-k3-s1", "/nonexistent", str(out), "--params", str(params_file)])
    assert_one_line_naming("/nonexistent", status, stderr)
    assert "no prepared arrays" in stderr and "dvc repro preprocess@" in stderr
    assert not out.exists()


def test_a_corrupt_size_before_quick_is_one_line(tmp_path, params_file):
    saved = tmp_path / ".dvc" / "tmp" / "size-before-quick.json"
    saved.parent.mkdir(parents=True)
    saved.write_text('{"train.epochs": 50, "train.sub')
    status, stderr = run_stage(params.main, ["size", "full", "--params", str(params_file)])
    assert_one_line_naming(saved, status, stderr)
    assert "not valid JSON" in stderr and f"rm {saved}" in stderr


@pytest.mark.parametrize("text,problem", [
    ("{", "not valid JSON"),
    ('{"mnist-k3-s1": 41.5}', "mnist-k3-s1: Input should be an object (got 41.5)"),  # an older layout
    ('{"mnist-k3-s1": {"machine": "m", "batch_size": "128", "train_images": 1, "val_images": 1, "seconds": 2}}',
     "mnist-k3-s1.batch_size: Input should be a valid integer (got '128')"),
    ('{"mnist-k3-s1": {"machine": "m", "batch_size": 128, "train_images": 0, "val_images": 0, "seconds": 2}}',
     "mnist-k3-s1: a count or the seconds are out of range"),
])
def test_corrupt_epoch_times_are_one_line_for_the_estimate_and_replaced_by_a_training(tmp_path, text, problem):
    path = timings_file(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(text)
    status, stderr = run_stage(lambda argv: load_timings(tmp_path))
    assert_one_line_naming(path, status, stderr)
    assert f"the recorded epoch times: {problem}" in stderr and f"rm {path}" in stderr
    timing = EpochTiming("here", 32, 100, 10, 2.0, "auto")
    status, stderr = run_stage(lambda argv: record_timing(tmp_path, "mnist-k3-s1", timing))
    assert status == 0 and stderr.startswith(f"warning: {path}: ") and stderr.count("\n") == 1
    assert load_timings(tmp_path) == {"mnist-k3-s1": timing}


def test_dvc_not_on_path_is_one_line_for_the_estimate(tmp_path, params_file):
    """Outside the activated environment: python from it, but its bin/ (dvc) not on PATH."""
    result = subprocess.run([sys.executable, "-m", "pipeline.training.estimate", "--params", str(params_file)],
                            cwd=tmp_path, env={"PATH": str(tmp_path), "PYTHONPATH": str(REPO)}, capture_output=True,
                            text=True)
    assert result.returncode == 1
    assert result.stderr == ("error: dvc: no such program on PATH; activate the project's environment "
                             "(. .venv/bin/activate) or install it\n")


@pytest.mark.parametrize("call,program", [(lambda argv: sweep.dvc("queue", "status"), "dvc"),
                                          (lambda argv: cluster_setup.git("status"), "git")])
def test_a_missing_program_is_one_line_for_sweep_and_cluster(tmp_path, monkeypatch, call, program):
    monkeypatch.setenv("PATH", str(tmp_path))
    status, stderr = run_stage(call)
    assert_one_line_naming(program, status, stderr)
    assert ". .venv/bin/activate" in stderr


def test_a_missing_file_is_still_a_traceback_where_no_program_is_missing(tmp_path):
    """cli.run turns only subprocess's 'no such program' into a line: other bugs stay visible."""
    with pytest.raises(FileNotFoundError):
        run_stage(lambda argv: (tmp_path / "nosuch").read_text())


def test_report_without_the_homeworks_numbers_is_one_line(tmp_path, params_file):
    paths = [arg for name in ("jobs", "metrics", "history", "runs", "views", "predictions", "figures", "out", "html",
                              "summary", "aggregates", "records") for arg in (f"--{name}", str(tmp_path / name))]
    missing = tmp_path / "homework.yaml"
    status, stderr = run_stage(report.main, [*paths, "--homework", str(missing), "--claims", str(CLAIMS),
                                             "--params", str(params_file)])
    assert_one_line_naming(missing, status, stderr)
    assert "No such file or directory" in stderr and f"git checkout -- {missing}" in stderr


def test_report_with_a_claim_naming_no_setting_is_one_line_before_any_output(tmp_path, params_file):
    paths = [arg for name in ("jobs", "metrics", "history", "runs", "views", "predictions", "figures", "out", "html",
                              "summary", "aggregates", "records") for arg in (f"--{name}", str(tmp_path / name))]
    claims = tmp_path / "claims.yaml"
    claims.write_text(CLAIMS.read_text().replace("reference: mnist-k5-s1", "reference: mnist-k5-s9"))
    status, stderr = run_stage(report.main, [*paths, "--homework", str(REPO / "reports" / "homework_results.yaml"),
                                             "--claims", str(claims), "--params", str(params_file)])
    assert_one_line_naming(claims, status, stderr)
    assert "claims.mnist-strides.reference: no setting 'mnist-k5-s9'" in stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("dataset,content", [("mnist", None), ("cifar10", None), ("mnist", b"not an npz"),
                                             ("cifar10", b"not a tar.gz")])
def test_preprocess_of_a_missing_or_broken_archive_is_one_line(tmp_path, params_file, dataset, content):
    archive = tmp_path / "archive"
    if content is not None:
        archive.write_bytes(content)
    status, stderr = run_stage(preprocess.main, [dataset, str(archive), str(tmp_path / "out"),
                                                 str(tmp_path / "summary.json"), "--params", str(params_file)])
    assert_one_line_naming(archive, status, stderr)
    assert f"the download stage writes it: dvc repro download@{dataset}" in stderr


@pytest.mark.parametrize("text", ["", '{"run_id": "', '{"run_id": 7, "experiment": "hw2-mnist"}', "[]"])
def test_a_broken_run_file_is_one_line(tmp_path, text):
    path = tmp_path / "seed0.json"
    path.write_text(text)
    status, stderr = run_stage(lambda argv: run_id_of(path))
    assert_one_line_naming(path, status, stderr)
    assert f"dvc checkout {path}" in stderr


@pytest.mark.parametrize("text", ["", "{", '{"fingerprint": "f", "run_id": "r", "rows": [{"epoch": 2}]}',
                                  '{"fingerprint": "f", "run_id": null, "rows": []}'])
def test_a_broken_resume_state_is_one_line(tmp_path, text):
    directory = tmp_path / "train-backup" / "mnist-k3-s1" / "seed0"
    directory.mkdir(parents=True)
    (directory / "state.json").write_text(text)
    status, stderr = run_stage(lambda argv: Resume.load(directory, "f"))
    assert_one_line_naming(directory / "state.json", status, stderr)
    assert f"delete {directory}" in stderr and "dvc repro train@mnist-k3-s1-0" in stderr


def test_resume_state_epochs_out_of_order_are_one_line(tmp_path):
    directory = tmp_path / "seed0"
    directory.mkdir()
    row = {"loss": 1.0, "accuracy": 0.5, "val_loss": 1.0, "val_accuracy": 0.5, "seconds": 1.0}
    state = {"fingerprint": "f", "run_id": "r", "rows": [{"epoch": 2, **row}]}
    (directory / "state.json").write_text(json.dumps(state))
    status, stderr = run_stage(lambda argv: Resume.load(directory, "f"))
    assert_one_line_naming(directory / "state.json", status, stderr)
    assert "epochs [2] are not 1, 2, ..." in stderr


@pytest.mark.parametrize("text", ["", '{"method": "zscore"}', '{"method": "zscore", "source": "s", "mean": 0, '
                                  '"std": 0}'])
def test_a_broken_normalization_record_is_one_line(tmp_path, text):
    (tmp_path / "normalization.json").write_text(text)
    status, stderr = run_stage(lambda argv: read_normalization(tmp_path))
    assert_one_line_naming(tmp_path / "normalization.json", status, stderr)
    assert "dvc repro preprocess@" in stderr


def test_make_ui_on_a_port_another_program_listens_on_is_one_line(tmp_path, monkeypatch):
    """Else the health check would find the other server and the links would open it."""
    import socket

    from pipeline.tracking import ui

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        monkeypatch.chdir(tmp_path)  # no store: the port is checked before anything is opened
        status, stderr = run_stage(ui.main, ["--port", str(port)])
    assert status == 1 and stderr.count("\n") == 1, stderr
    assert stderr.startswith(f"error: port {port}: address already in use") and f"make ui PORT={port + 1}" in stderr
