"""Session fixtures: a tiny dataset mirror and one pipeline run on it, shared by every test."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from hypothesis import settings
from pytest_timeout import _get_item_settings

from tests.datasets import write_mirror
from tests.helpers import PIPELINE_RUN_TIMEOUT, copy_project, dvc, project_env, start_test_clock, tiny_params

# A suite started in the background by a non-interactive shell (`make test &`) inherits SIGINT
# ignored, and so would every stage it starts: the tests that press Ctrl-C on a `dvc repro` then
# fail for a reason that is not the code's. A Python handler is reset to the default in children.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Property-based tests (tests/test_fuzz_inputs.py). ci, the default: the same examples on every run
# (derandomize), about 20 s for all of them on a 2-core CPU, and no example database left in
# the checkout. long (HYPOTHESIS_PROFILE=long): many more, new ones each run; a failure it finds is
# printed with the @reproduce_failure line that replays it.
settings.register_profile("ci", max_examples=200, derandomize=True, deadline=None, database=None)
settings.register_profile("long", max_examples=3000, deadline=None, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def mirror(tmp_path_factory) -> Path:
    return write_mirror(tmp_path_factory.mktemp("mirror"))


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory, mirror):
    """One `dvc repro` of the whole pipeline on fixture data; tests inspect its results."""
    repo = copy_project(tmp_path_factory.mktemp("project"), tiny_params())
    env = project_env(PIPELINE_DATA_MIRROR=str(mirror))
    result = dvc(repo, "repro", env=env)
    return repo, env, result


# What `make test` (pytest -m "not whole": the unit tests and the shared pipeline run's end-to-end
# checks, ~15 minutes on a 2-core CPU) leaves to `make test-all`, the whole suite that CI runs, and why.
WHOLE_SUITE_ONLY = {
    "tests/test_walkthrough_e2e.py": "the README's every block in a fresh clone of its own",
    "tests/test_workspace_independence.py": "the unit tests twice more, in the workspaces the README leads to",
    "tests/test_first_hour_e2e.py": "a newcomer's first hour: make quick's estimate and a YES=1 run stopped",
    "tests/test_faults.py": "stages killed, stores made half, servers lost: a fault at a time",
    "tests/test_faults_sweep.py": "sweeps through tracking servers that stop, refuse or ask for a password",
    "tests/test_cluster.py": "Dask clusters of several worker processes, one of them lost",
    "tests/test_scaleout.py": "DVC's experiment queue training several runs at once",
    "tests/test_search.py": "searches of several trainings, killed, interrupted and resumed",
    "tests/test_seeds_e2e.py": "a second seed of every fixture setting",
    "tests/test_train_e2e.py": "the train stage interrupted, resumed, diverging and in DVC experiments",
    "tests/test_store_e2e.py": "stores moved and reset under a finished pipeline",
    "tests/test_provenance_edit_e2e.py": "a setting trained again after an edit, in bf16",
    "tests/test_ui_browser.py": "Chromium, which a fresh machine lacks (CI installs it)",
}


def pytest_collection_modifyitems(config, items):
    """The whole suite's own tests marked `whole` (WHOLE_SUITE_ONLY); the time limit of the tests
    that may build `pipeline_run`. Under pyproject.toml's
    `--dist loadscope` each test module runs on one worker, which builds its module fixtures once;
    each worker that runs a test using `pipeline_run` builds that once (a shared build would let
    tests on two workers write into one project at once)."""
    for item in items:
        if item.nodeid.split("::")[0] in WHOLE_SUITE_ONLY:
            item.add_marker(pytest.mark.whole)
        if "pipeline_run" in item.fixturenames and not item.get_closest_marker("timeout"):
            # whichever of them runs first on its worker also builds the fixture (a whole `dvc repro`)
            item.add_marker(pytest.mark.timeout(PIPELINE_RUN_TIMEOUT))
    # The longest modules first: a worker takes the next module when it is free, so a long one left
    # to the end would run alone while the other worker idles. A module's longest declared limit
    # stands for its length; the sort is stable, so tests keep their order within a module.
    longest: dict[str, float] = {}
    for item in items:
        module = item.nodeid.split("::")[0]
        longest[module] = max(longest.get(module, 0), _get_item_settings(item).timeout or 0)
    items.sort(key=lambda item: -longest[item.nodeid.split("::")[0]])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Each test's waits (`helpers.seconds_left`) end before its pytest-timeout limit, which counts
    from here: setup, call and teardown together."""
    # pytest-timeout's own reading of the limit (marker, --timeout, PYTEST_TIMEOUT, ini), so that the
    # two never disagree; private, and so checked: a rename fails every test at once, loudly.
    start_test_clock(_get_item_settings(item).timeout)
    yield
    start_test_clock(None)
