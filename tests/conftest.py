"""Session fixtures: a tiny dataset mirror and one pipeline run on it, shared by every test."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.datasets import write_mirror
from tests.helpers import copy_project, dvc, project_env, tiny_params

# A suite started in the background by a non-interactive shell (`make test &`) inherits SIGINT
# ignored, and so would every stage it starts: the tests that press Ctrl-C on a `dvc repro` then
# fail for a reason that is not the code's. A Python handler is reset to the default in children.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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
