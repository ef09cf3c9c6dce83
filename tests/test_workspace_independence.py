"""The README's two commands in a row: `make test` after `make quick` (which rewrites params.yaml
and leaves a store, timings and saved values behind) runs the same unit tests and passes."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.helpers import REPO, project_env, run

pytestmark = pytest.mark.e2e


def test_the_unit_tests_pass_in_a_workspace_that_make_quick_has_changed(tmp_path):
    copy = tmp_path / "hw2"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (REPO / name).is_file():  # the working tree's version: what is about to be committed
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, copy / name)
    run(["git", "init", "-q"], copy)
    run(["git", "add", "-A"], copy)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "as shipped"], copy)
    run([sys.executable, "-m", "pipeline.params", "size", "quick"], copy)
    # what a quick run leaves behind besides params.yaml, at its state after a crash
    (copy / ".dvc" / "tmp").mkdir(parents=True, exist_ok=True)
    (copy / ".dvc" / "tmp" / "epoch-seconds.json").write_text("{not json")
    (copy / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    (copy / "mlruns" / "mlflow.db").write_bytes(b"not a database")
    result = run([sys.executable, "-m", "pytest", "-m", "not e2e", "-q", "-x", "-p", "no:cacheprovider"], copy,
                 env=project_env(), check=False, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:]
