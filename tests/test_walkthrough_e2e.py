"""The README's walkthrough (tests/walkthrough.py: every marked block, verbatim, in a fresh clone,
on fixture data) as part of the suite: a README edit that breaks the user's path fails `make test`."""

from __future__ import annotations

import sys

import pytest

from tests.helpers import REPO, run

# It runs the pipeline several times over: 5 min alone on a 2-core CPU, 8 beside the other tests.
WALKTHROUGH_SECONDS = 1500

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(WALKTHROUGH_SECONDS)]


def test_the_readmes_walkthrough_runs_as_written():
    result = run([sys.executable, "-m", "tests.walkthrough"], REPO, check=False, timeout=WALKTHROUGH_SECONDS)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
