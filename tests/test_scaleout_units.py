"""The drivers of `make sweep` (DVC's queue) and of a Dask sweep, with DVC, git and the cluster
stood in for: the paths the end-to-end tests (tests/test_scaleout.py, tests/test_cluster.py) do not
take, a failed run and uncommitted code."""

from __future__ import annotations

import subprocess

import pytest

from pipeline.scaleout import cluster, cluster_setup, sweep
from tests.helpers import run_stage

STALE = [("mnist-k3-s1", 0), ("cifar10-k3-s1", 0)]


class FakeDvc:
    """`dvc` as the sweep calls it: records each command; the queue reports one run failed."""

    def __init__(self):
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, *args, check=True):
        self.calls.append(args)
        out = ""
        if args[:2] == ("queue", "status"):
            names = [call[call.index("-n") + 1] for call in self.calls if call[:2] == ("exp", "run")]
            out = "Task     Name    Created    Status\n" + "".join(
                f"abc{i}  {name}  10:00 AM  {'Failed' if 'cifar10' in name else 'Success'}\n"
                for i, name in enumerate(names))
        return subprocess.CompletedProcess(["dvc", *args], 0, out, "")


def test_a_sweep_with_a_failed_run_names_it_and_gathers_nothing(monkeypatch):
    fake, gathered = FakeDvc(), []
    monkeypatch.setattr(sweep, "load_params", lambda path: object())
    monkeypatch.setattr(sweep, "stale_after_shared_inputs", lambda params: (STALE, 100.0, "sweep: 2 settings"))
    monkeypatch.setattr(sweep, "dvc", fake)
    monkeypatch.setattr(sweep, "gather", lambda pull=False: gathered.append(pull))
    status, stderr = run_stage(sweep.main, ["--jobs", "2"])
    *progress, last = stderr.splitlines()
    assert status == 1 and progress == ["sweep: 2 settings; 2 at a time: about 50 s", "sweep: 2/2 done, 1 failed"]
    assert last.startswith("error: sweep: 1 of 2 runs failed (cifar10-k3-s1-0); `dvc queue logs sweep-<run>-")
    assert [call[:2] for call in fake.calls] == [("exp", "run"), ("exp", "run"), ("queue", "start"),
                                                 ("queue", "status")]
    assert not gathered  # no report from a sweep with holes


def test_a_sweep_without_failures_gathers_the_results(monkeypatch):
    fake, gathered = FakeDvc(), []
    monkeypatch.setattr(sweep, "load_params", lambda path: object())
    monkeypatch.setattr(sweep, "stale_after_shared_inputs", lambda params: (STALE[:1], 50.0, "sweep: 1 setting"))
    monkeypatch.setattr(sweep, "dvc", fake)
    monkeypatch.setattr(sweep, "gather", lambda pull=False: gathered.append(pull))
    assert run_stage(sweep.main, ["--jobs", "1"]) == (0, "sweep: 1 setting; 1 at a time: about 50 s\n"
                                                         "sweep: 1/1 done\n")
    assert gathered == [False]


def test_the_cluster_driver_refuses_code_the_workers_would_not_check_out(monkeypatch):
    monkeypatch.setattr(cluster, "load_params", lambda path: object())
    monkeypatch.setattr(cluster_setup, "shared_places", lambda: ("http://tracking:5000", "s3://remote"))
    monkeypatch.setattr(cluster_setup, "git", lambda *args: " M pipeline/train.py\n M params.yaml\n?? notes.txt\n"
                        if args[0] == "status" else pytest.fail(f"git {args} after the check"))
    monkeypatch.setattr(cluster, "stale_after_shared_inputs", lambda params: pytest.fail("went on to the sweep"))
    status, stderr = run_stage(cluster.main, ["--scheduler", "tcp://127.0.0.1:8786"])
    assert status == 1 and stderr == ("error: workers check out the last commit, which lacks your changes to "
                                      "pipeline/train.py: commit them first (params.yaml may stay uncommitted)\n")
