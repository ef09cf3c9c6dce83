"""What a Dask sweep (pipeline/scaleout/cluster.py) or search (pipeline/search/cluster.py) needs before
it submits a task, checked on the driver in one line each: the resources a task takes, a commit the
workers can check out, and the one tracking server and DVC remote they all reach. Only drivers
import this module: the task side Dask ships to the workers stays in pipeline/scaleout/cluster.py.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from pipeline.common.errors import PipelineError
from pipeline.scaleout.sweep import dvc


def scheduler_address(text: str) -> str:
    """A Dask scheduler's address as Dask's client reads it: without a protocol, its default one
    (`10.0.0.5:8786` is tcp://10.0.0.5:8786). A sweep and a search read it alike, and a search
    finds the host its workers reach it from in it."""
    from distributed.comm.addressing import normalize_address

    return normalize_address(text)


def task_resources(text: str | None) -> dict[str, float] | None:
    """`GPU=0.25,MEM=4e9` as Dask worker resources (what one task takes of a worker's)."""
    if not text:
        return None
    resources = {}
    for item in text.split(","):
        name, _, amount = item.partition("=")
        try:
            resources[name.strip()] = float(amount)
        except ValueError:
            raise PipelineError(f"--resources: `{item}` is not NAME=AMOUNT (e.g. GPU=0.25)") from None
        if not name.strip() or resources[name.strip()] <= 0:
            raise PipelineError(f"--resources: `{item}` needs a name and an amount above 0")
    return resources


def dirty_files(status_porcelain: str) -> list[str]:
    """Tracked files changed since the commit, but params.yaml (which travels with each task):
    workers check out the commit, so other changes would not reach them."""
    changed = [line[3:] for line in status_porcelain.splitlines() if line[:2].strip() and not line.startswith("??")]
    return [path for path in changed if path != "params.yaml"]


def shared_places() -> tuple[str, str]:
    """The tracking server and the DVC remote every worker must reach, or a one-line error."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if urlparse(uri).scheme not in ("http", "https", "databricks"):
        raise PipelineError("work spread over a cluster logs to one tracking server that every worker reaches: set "
                            "MLFLOW_TRACKING_URI=http://<server>:5000 (the project's own store is a file here)")
    default = dvc("remote", "default", check=False).stdout.strip()
    if not default:
        raise PipelineError("work spread over a cluster moves data and models through a DVC remote every worker "
                            "reaches: dvc remote add -d storage s3://<bucket>/<path>")
    return uri, dvc("config", f"remote.{default}.url").stdout.strip()  # a local path comes absolute


def git(*args: str) -> str:
    result = subprocess.run(["git", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise PipelineError(f"git {args[0]} failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
    return result.stdout.rstrip()  # porcelain lines start with a space


@dataclass(frozen=True)
class Shared:
    """What every worker reaches: the tracking server, the DVC remote, the code's repository and commit."""

    tracking_uri: str
    remote_url: str
    repository: str
    commit: str


def shared_with_workers(repository: str | None = None) -> Shared:
    """Checked before anything starts, each in one line: the server and remote every worker
    reaches, and a commit that holds the code as it is here. repository: where workers `git clone`
    from (default: the `origin` remote, else this checkout's path)."""
    tracking_uri, remote_url = shared_places()
    dirty = dirty_files(git("status", "--porcelain"))
    if dirty:
        raise PipelineError(f"workers check out the last commit, which lacks your changes to {', '.join(dirty)}: "
                            "commit them first (params.yaml may stay uncommitted)")
    repository = repository or git("config", "--default", "", "--get", "remote.origin.url") or str(Path.cwd())
    return Shared(tracking_uri, remote_url, repository, git("rev-parse", "HEAD"))
