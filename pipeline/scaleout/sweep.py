"""`make sweep JOBS=N`: every (setting, seed) that needs training, N at a time on this machine,
through DVC's experiment queue; then the workers' results are gathered (DVC's run cache: nothing
trains twice) and the report is written.

    python -m pipeline.scaleout.sweep [--jobs N]   # default: 4 per GPU nvidia-smi lists, else 1 per 8 CPU cores

Worth it where one training leaves the hardware idle: on a GPU box (four of these small models
share an H100 at nearly their solo speed each) or a CPU with many cores. On a 2-core CPU, one
training already takes both cores: use `make repro`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from pipeline.common import cli
from pipeline.common.errors import PipelineError
from pipeline.params.load import load_params
from pipeline.tracking.store import SWEEP_EXPERIMENT_PREFIX
from pipeline.training.estimate import estimate, stale_runs, summary
from pipeline.training.timings import duration

SETTINGS_PER_GPU = 4  # trainings that shared one H100 at nearly their solo speed (docs/performance.md, On a GPU)
TASK_STATES = ("Queued", "Running", "Success", "Failed")


def default_jobs() -> int:
    """Trainings at once: SETTINGS_PER_GPU per GPU, else one per 8 CPU cores (at least one)."""
    gpus = 0
    if shutil.which("nvidia-smi"):
        gpus = len(subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout.strip().splitlines())
    return gpus * SETTINGS_PER_GPU if gpus else max(1, (os.cpu_count() or 1) // 8)


def queue_states(status_text: str, names: set[str]) -> dict[str, str]:
    """Our tasks' states from `dvc queue status` (task, name, created, status per line)."""
    states = {}
    for line in status_text.splitlines():
        words = line.split()
        found = [w for w in words if w in names]
        state = next((w for w in words if w in TASK_STATES), None)
        if found and state:
            states[found[0]] = state
    return states


def dvc(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["dvc", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        said = (result.stderr + result.stdout).strip().splitlines() or ["(nothing said)"]
        raise PipelineError(f"dvc {' '.join(args[:2])} failed: {said[-1]}")
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.scaleout.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=0, help="trainings at once (default: see above)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    params = load_params(args.params)
    jobs = args.jobs or default_jobs()
    stale, total, line = stale_after_shared_inputs(params)
    if stale:
        print(f"{line}; {jobs} at a time: about {duration(total / jobs)}", file=sys.stderr)
        stamp = time.strftime("%H%M%S")  # names stay unique when the sweep runs again
        names = {f"{SWEEP_EXPERIMENT_PREFIX}{name}-{seed}-{stamp}": f"{name}-{seed}" for name, seed in stale}
        for task, run in names.items():
            dvc("exp", "run", "--queue", "-n", task, f"train@{run}", f"evaluate@{run}")
        dvc("queue", "start", "--jobs", str(jobs))
        failed = wait(names)
        if failed:
            raise PipelineError(f"sweep: {len(failed)} of {len(names)} runs failed ({', '.join(failed)}); "
                                f"`dvc queue logs sweep-<run>-{stamp}` shows why")
    gather()


def gather(pull: bool = False) -> None:
    """`dvc repro`: every stage the workers built is checked out of DVC's run cache (fetched from
    the default remote first with `pull`), nothing trains twice, and the report is written."""
    if subprocess.run(["dvc", "repro", *(["--pull"] if pull else [])]).returncode != 0:
        raise PipelineError("sweep: the last dvc repro (gathering the results, the report) failed: see above")


def stale_after_shared_inputs(params) -> tuple[list[tuple[str, int]], float, str]:
    """The tracking store (checked before the workers start: one it cannot write stops the sweep
    once, not every worker) and the shared inputs (every job@ stage, which `stale_runs` runs: the
    workers restore them from the run cache), built once here; then the (setting, seed) runs that
    need training, with the estimate of their time (seconds, and the line that says it)."""
    from pipeline.tracking import store as tracking

    tracking.connect(tracking.project_root())
    stale = stale_runs(Path.cwd(), params)
    if not stale:
        print("sweep: nothing to train", file=sys.stderr)
        return stale, 0.0, ""
    return stale, *summary(params, estimate(params, Path.cwd(), stale))


def wait(names: dict[str, str]) -> list[str]:
    """Show progress as tasks finish; the runs that failed."""
    shown = None
    while True:
        states = queue_states(dvc("queue", "status").stdout, set(names))
        done = [n for n, s in states.items() if s in ("Success", "Failed")]
        failed = [names[n] for n, s in states.items() if s == "Failed"]
        line = f"sweep: {len(done)}/{len(names)} done" + (f", {len(failed)} failed" if failed else "")
        if line != shown:
            print(line, file=sys.stderr, flush=True)
            shown = line
        if len(done) == len(names):
            return failed
        time.sleep(5)


if __name__ == "__main__":
    cli.run(main)
