"""The unit tests hold in every workspace the README leads to: `make test` right after `make quick`
(params.yaml resized, a store, timings and saved values left behind), and after the README's next
steps (the quick size committed as a baseline, a setting edited, a search's result written back,
`dvc exp run -S` re-formatting the file). params.yaml is the user's, in the working tree and in
their commits; the tests carry the values they assert on (tests/shipped_params.yaml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import PIPELINE_RUN_TIMEOUT, REPO, dvc, project_env, run, shipped_params_text

pytestmark = pytest.mark.e2e

# The inner suite's limit, inside this test's own (pytest-timeout's): a hang fails by its own message.
SUITE_SECONDS = 480


def _commit(copy: Path, message: str, *paths: str) -> None:
    run(["git", "add", *(paths or ["-A"])], copy)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], copy)


def _shipped_checkout(copy: Path) -> Path:
    """The code under test (the working tree's tracked files) with params.yaml as shipped, committed."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (REPO / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, copy / name)
    (copy / "params.yaml").write_text(shipped_params_text())
    run(["git", "init", "-q"], copy)
    _commit(copy, "as shipped")
    return copy


# What a finished run writes into the workspace besides params.yaml: its data, results, store,
# registry and timings (on a fresh clone all of it is untracked or, as reports/, beside tracked files).
LEFT_BY_A_RUN = ("data", "dvc.lock", "mlruns", "registry", ".dvc/tmp", "jobs", "metrics", "plots", "reports", "models",
                 "predictions", "runs", "views")


def _after_make_quick(copy: Path, finished: Path) -> None:
    """params.yaml at the quick size, and what a finished pipeline run (`finished`) left behind: its
    dvc.lock, tracking store, registry, timings and results."""
    run([sys.executable, "-m", "pipeline.params", "size", "quick"], copy)
    for name in LEFT_BY_A_RUN:
        if (finished / name).is_dir():
            shutil.copytree(finished / name, copy / name, dirs_exist_ok=True)
        elif (finished / name).is_file():
            shutil.copy2(finished / name, copy / name)
    for name in ("dvc.lock", "mlruns/mlflow.db", "registry", ".dvc/tmp/epoch-seconds.json"):
        assert (copy / name).exists(), f"a pipeline run no longer leaves {name}: this state lacks it"


def _after_the_readmes_next_steps(copy: Path, finished: Path) -> None:
    """make quick; the README's baseline commit of the quick size; its edit (l2: 0.01); a search's
    write-back; then `dvc exp run -S` (DVC's own rewrite of the file)."""
    from pipeline.params.load import load_search
    from pipeline.search.result import write_result

    _after_make_quick(copy, finished)
    _commit(copy, "results: quick baseline", "params.yaml", "dvc.lock", "metrics", "plots")
    params = copy / "params.yaml"
    text = params.read_text()
    edited = text.replace("mnist-k3-s1-l2:\n    dataset: mnist\n    kernel: 3\n    strides: 1\n    l2: 0.001",
                          "mnist-k3-s1-l2:\n    dataset: mnist\n    kernel: 3\n    strides: 1\n    l2: 0.01")
    assert edited != text, "the README's edit no longer applies to the shipped params.yaml"
    params.write_text(edited)
    _, entry = load_search(params, "mnist-k3")
    write_result(params, "mnist-k3", entry, {"learning_rate": 0.003, "l2": 0.0001, "batch_size": 64,
                                             "optimizer": "rmsprop", "kernel": 5, "dense_units": 300}, 7, 0.98)
    # DVC writes the value into params.yaml (re-formatting it), then runs the one stage named (a job
    # file: no training); whether that stage succeeds here does not matter, the file is the point.
    dvc(copy, "exp", "run", "--single-item", "-S", "settings.mnist-k3-s1-l2.l2=0.02", "job@mnist-k3-s1-l2",
        check=False)
    assert yaml.safe_load(params.read_text())["settings"]["mnist-k3-s1-l2"]["l2"] == 0.02, "DVC wrote no value"


@pytest.mark.timeout(PIPELINE_RUN_TIMEOUT + SUITE_SECONDS)  # may build `pipeline_run` first
@pytest.mark.parametrize("reach", [_after_make_quick, _after_the_readmes_next_steps], ids=lambda f: f.__name__[1:])
def test_the_unit_tests_pass_in_every_workspace_the_readme_leads_to(tmp_path, reach, pipeline_run):
    copy = _shipped_checkout(tmp_path / "hw2")
    reach(copy, finished=pipeline_run[0])
    assert (copy / "params.yaml").read_text() != shipped_params_text()
    env = project_env()
    env.pop("CI", None)  # here params.yaml is the user's: the test of the tests' copy skips, as for a user
    result = run([sys.executable, "-m", "pytest", "-m", "not e2e", "-q", "-x", "-p", "no:cacheprovider"], copy,
                 env=env, check=False, timeout=SUITE_SECONDS)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "params.yaml differs from tests/shipped_params.yaml" in result.stdout  # skipped, and said so
