"""`dvc repro` with a line saying where the whole run is: before each stage it starts, the stage as
k of n and the time left, from the estimate and corrected by how long the finished stages took.

    python -m pipeline.training.progress   # what `make repro` runs after the estimate

DVC's own output passes through unchanged; the line is added after its `Running stage '...':`
line, one per stage (no bar redrawn: a log keeps every line). n counts the stages DVC's status
calls changed and every stage downstream of them. A stage is planned at its start-up (a process
that imports TensorFlow pays several seconds for it) plus, for a train stage, the seconds the
estimate gave its epochs (`python -m pipeline.training.estimate` records them in PLAN_FILE).
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipeline.common import cli
from pipeline.training.timings import duration

PLAN_FILE = Path(".dvc") / "tmp" / "estimate.json"  # train stage -> seconds of its epochs
RUNNING = re.compile(r"^Running stage '([^']+)':$")  # DVC's line as a stage starts
# A stage's own seconds besides its epochs: its process imports TensorFlow or not, builds, evaluates
# or draws, and DVC hashes and records it. Fitted to a `make quick` on a 2-core Sapphire Rapids
# (2026-12-04: 38 stages, 1087 s, 374 s of them epochs); the pace of the finished stages corrects
# them on other machines.
TENSORFLOW_STAGES = ("train", "evaluate", "register")
TENSORFLOW_STAGE_SECONDS = 18
OTHER_STAGE_SECONDS = 8


def stage_seconds(stage: str, epochs_seconds: dict[str, float]) -> float:
    """The planned seconds of one stage (`train@mnist-k3-s1-0`, `report`, ...)."""
    kind = stage.partition("@")[0]
    start = TENSORFLOW_STAGE_SECONDS if kind in TENSORFLOW_STAGES else OTHER_STAGE_SECONDS
    return start + epochs_seconds.get(stage, 0.0)


def stages_to_run(changed: set[str], depends_on: dict[str, set[str]]) -> set[str]:
    """The stages `dvc repro` will run: the changed ones and every stage that depends on one of
    them, however indirectly (its inputs are about to change)."""
    to_run, todo = set(), list(changed)
    dependents: dict[str, set[str]] = {}
    for stage, inputs in depends_on.items():
        for upstream in inputs:
            dependents.setdefault(upstream, set()).add(stage)
    while todo:
        stage = todo.pop()
        if stage not in to_run:
            to_run.add(stage)
            todo.extend(dependents.get(stage, ()))
    return to_run


def pipeline_plan() -> set[str]:
    """What `dvc repro` will run here, from DVC's own status and stage graph."""
    from dvc.repo import Repo

    with Repo() as repo:
        graph = repo.index.graph  # an edge from a stage to each stage whose outputs it reads
        depends_on = {stage.addressing: {upstream.addressing for upstream in graph.successors(stage)}
                      for stage in graph.nodes}
        return stages_to_run(set(repo.status()), depends_on)


def time_left(plan: list[float], done: int, elapsed: float) -> float:
    """Seconds left after `done` of the planned stages took `elapsed` in all: the rest of the plan,
    scaled by how the finished stages compared with theirs (a slower or busier machine than the
    estimate's, or a faster one)."""
    finished = sum(plan[:done])
    pace = elapsed / finished if done and finished > 0 else 1.0
    return sum(plan[done:]) * pace


def progress_line(stage: str, index: int, stages: int, elapsed: float, left: float) -> str:
    return (f"[stage {index} of {stages}: {stage}; {duration(elapsed)} so far, about {duration(left)} left]"
            if index > 1 else f"[stage 1 of {stages}: {stage}; about {duration(left)} in all]")


def read_plan(path: Path) -> dict[str, float]:
    """The estimate's seconds per train stage; none where no estimate was made (its stages are
    then planned at their start-up only, and the pace of the finished ones corrects the rest)."""
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in plan.items() if isinstance(v, (int, float))} if isinstance(plan, dict) else {}


def main(argv=None) -> None:
    argparse.ArgumentParser(prog="python -m pipeline.training.progress", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    stages = sorted(pipeline_plan())
    epochs_seconds = read_plan(PLAN_FILE)
    plan = {stage: stage_seconds(stage, epochs_seconds) for stage in stages}
    # Ctrl-C reaches DVC and its stage through the terminal's process group: this process waits for
    # them to stop (a handler, not SIG_IGN, which DVC would inherit), and passes on a SIGTERM sent to
    # it alone.
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    repro = subprocess.Popen(["dvc", "repro"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             bufsize=1)
    signal.signal(signal.SIGTERM, lambda signum, frame: repro.send_signal(signum))
    started, seen = time.monotonic(), []
    for line in repro.stdout:
        sys.stdout.write(line)
        match = RUNNING.match(line.strip())
        if match and stages:
            seen.append(match.group(1))
            ordered = [plan.get(stage, stage_seconds(stage, epochs_seconds)) for stage in seen[:-1]]
            ordered += [plan[stage] for stage in stages if stage not in seen[:-1]]
            elapsed = time.monotonic() - started
            left = time_left(ordered, len(seen) - 1, elapsed)
            print(progress_line(match.group(1), len(seen), max(len(stages), len(seen)), elapsed, left), flush=True)
        sys.stdout.flush()
    sys.exit(repro.wait())


if __name__ == "__main__":
    cli.run(main)
