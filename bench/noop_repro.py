"""The wall time of a `dvc repro` with every stage up to date: DVC's own fixed cost.

    python -m bench.noop_repro [--repeats 3]     # in a checkout where `dvc repro` has run
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from pipeline.common import cli
from pipeline.common.errors import PipelineError


def noop_repro_seconds(repo: Path, repeats: int) -> float:
    """Median wall time of `repeats` runs of `dvc repro` with every stage up to date."""
    dvc = shutil.which("dvc") or shutil.which("dvc", path=str(Path(sys.executable).parent))
    if dvc is None or not (repo / "dvc.lock").exists():
        raise PipelineError("no dvc, or the pipeline never ran here (no dvc.lock): nothing to time")
    if subprocess.run([dvc, "status", "--quiet"], cwd=repo, capture_output=True).returncode != 0:
        raise PipelineError("`dvc status` lists changed stages: run `dvc repro` first")
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([dvc, "repro"], cwd=repo, check=True, capture_output=True)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.noop_repro", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"no-op `dvc repro`: {noop_repro_seconds(Path.cwd(), args.repeats):.2f} s (median of {args.repeats})")


if __name__ == "__main__":
    cli.run(main)
