"""How long training will take, said before it starts: nobody should start a day of training by
accident.

    python -m pipeline.training.estimate [--confirm]   # what `dvc repro` would train now, and for how long

Per train stage that `dvc repro` would run (once the job stages have brought every setting's job
file up to date: see `stale_runs`), the seconds an epoch takes come from that setting's
last training on this machine (recorded by the train stage, scaled to the images it will train
on) or, where there is none, from a probe: a few training steps of its model on random images.
With --confirm, an estimate over an hour asks before going on (when a terminal can answer).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from pipeline.common import cli
from pipeline.common.errors import PipelineError
from pipeline.common.outputs import write_json
from pipeline.model.datasets import TRAINING_IMAGES
from pipeline.params.load import load_params
from pipeline.params.schema import Params, resolved
from pipeline.training.progress import PLAN_FILE, stage_seconds
from pipeline.training.timings import duration, load_timings, machine_kind, scaled_epoch_seconds

CONFIRM_ABOVE_SECONDS = 3600
PROBE_STEPS = 3


def stale_runs(root: Path, params: Params) -> list[tuple[str, int]]:
    """(setting, seed) of every train stage `dvc repro` would run now, in params.yaml's order.

    An edit of params.yaml reaches training through a setting's job file, so until the job
    stages have rewritten those files `dvc status` calls only them stale, not the training behind
    them. They run first here (cheap: no training; on a first run they also fetch and prepare the
    data): `dvc repro` then finds them done, and a "no" to the question leaves a consistent
    workspace, the job files and dvc.lock agreeing."""
    refreshed = subprocess.run(["dvc", "repro", "--quiet", "--glob", "job@*"], cwd=root)
    if refreshed.returncode != 0:
        raise PipelineError("dvc repro of the job stages failed (see above): nothing was trained")
    result = subprocess.run(["dvc", "status", "--json"], cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        raise PipelineError(f"dvc status failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
    stale = set(json.loads(result.stdout or "{}"))
    return [(name, seed) for name in params.settings for seed in params.seeds if f"train@{name}-{seed}" in stale]


def split_sizes(root: Path, dataset: str, val_fraction: float) -> tuple[int, int]:
    """Training and validation image counts of the prepared data or, before it is prepared, of
    the canonical training split less the validation share."""
    prepared = root / "data" / "prepared" / dataset
    if (prepared / "y_train.npy").exists():
        import numpy as np

        return len(np.load(prepared / "y_train.npy")), len(np.load(prepared / "y_val.npy"))
    val_images = round(TRAINING_IMAGES[dataset] * val_fraction)
    return TRAINING_IMAGES[dataset] - val_images, val_images


def probe_seconds_per_step(params: Params, setting: str) -> float:
    """Median time of a training step of the setting's model on one random batch."""
    import numpy as np

    from pipeline import train
    from pipeline.job import TrainJob
    from pipeline.model.datasets import input_shape, num_classes
    from pipeline.model.runtime import load_tensorflow

    load_tensorflow()
    own, train_values, model = resolved(params, setting)
    job = TrainJob(setting, own, model, train_values, data=Path(), data_md5="probe")
    model, _, _ = train.build_compiled(job)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((job.train.batch_size, *input_shape(job.dataset, job.setting.color)), dtype=np.float32)
    classes = num_classes(job.setting.dataset)
    y = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, len(x))]
    model.train_on_batch(x, y)  # traces the step
    seconds = []
    for _ in range(PROBE_STEPS):
        started = time.perf_counter()
        model.train_on_batch(x, y)
        seconds.append(time.perf_counter() - started)
    return sorted(seconds)[len(seconds) // 2]


def estimate(params: Params, root: Path, runs: list[tuple[str, int]]) -> list[tuple[str, float, str]]:
    """(setting, seconds for all its epochs, where the epoch time came from) per (setting, seed) run."""
    from pipeline.train import training_images

    timings, machine, probed = load_timings(root), machine_kind(), {}
    rows = []
    for name, _ in runs:
        setting, train, _ = resolved(params, name)
        train_total, val_images = split_sizes(root, setting.dataset, params.preprocess.val_fraction)
        train_images = training_images(train_total, train.subset)
        timing = timings.get(name)
        if timing and timing.applies_to(machine, train):
            epoch, source = scaled_epoch_seconds(timing, train_images, val_images), "its last training here"
        else:
            step = probed[name] = probed.get(name) or probe_seconds_per_step(params, name)
            steps = math.ceil(train_images / train.batch_size)
            epoch, source = step * steps * (3 * train_images + val_images) / (3 * train_images), "a probe"
        rows.append((name, train.epochs * epoch, f"{duration(epoch)}/epoch, from {source}"))
    return rows


def stages_seconds(runs: int, settings: int) -> float:
    """The stages' own seconds besides the epochs: per run its train and evaluate stages, per
    setting its plot, and the report and the register stage once."""
    return (runs * (stage_seconds("train", {}) + stage_seconds("evaluate", {})) + settings * stage_seconds("plot", {})
            + stage_seconds("report", {}) + stage_seconds("register", {}))


def summary(params: Params, rows: list[tuple[str, float, str]]) -> tuple[float, str]:
    names = {name for name, _, _ in rows}
    total = sum(seconds for _, seconds, _ in rows) + stages_seconds(len(rows), len(names))
    trains = [resolved(params, name)[1] for name in names]  # a setting may set its own epochs or subset
    epochs = span(t.epochs for t in trains)
    shares = span(round(t.subset * 100) for t in trains)
    share = "" if all(t.subset == 1 for t in trains) else f" on {shares} % of the images"
    what = f"{len(names)} setting{'s' * (len(names) != 1)}" if len(rows) == len(names) else \
        f"{len(rows)} runs of {len(names)} settings"
    return total, f"dvc repro will train {what} x {epochs} epochs{share}: about {duration(total)} on this machine"


def span(values) -> str:
    """`50`, or `4-50` where the values differ."""
    low, high = min(values := list(values)), max(values)
    return f"{low}" if low == high else f"{low}-{high}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.training.estimate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--confirm", action="store_true", help="ask before a run over an hour (YES=1 skips)")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    root = Path.cwd()
    stale = stale_runs(root, params)
    # before any training: the stages after training add to the recorded runs they keep (a run
    # that is trained again gets a new one)
    recorded = [path for name in params.settings for seed in params.seeds
                if (name, seed) not in stale and (path := Path("runs") / name / f"seed{seed}.json").exists()]
    if recorded:
        from pipeline.tracking import store as tracking
        from pipeline.tracking.run_files import missing_from_store, missing_runs_error

        tracking.connect(tracking.project_root())
        if missing := missing_from_store(recorded):
            raise missing_runs_error(missing)
    if not stale:
        write_json(root / PLAN_FILE, {})
        print("dvc repro: no setting needs training", file=sys.stderr)
        return
    rows = estimate(params, root, stale)
    write_json(root / PLAN_FILE, {f"train@{name}-{seed}": seconds
                                  for (name, seed), (_, seconds, _) in zip(stale, rows)})
    total, line = summary(params, rows)
    print(line, file=sys.stderr)
    for name in dict.fromkeys(name for name, _, _ in rows):  # per setting, its seeds' runs together
        runs = [(seconds, source) for setting, seconds, source in rows if setting == name]
        count = f"{len(runs)} runs x " if len(runs) > 1 else ""
        print(f"  {name}: {count}{duration(runs[0][0])} ({runs[0][1]})", file=sys.stderr)
    if args.confirm and total > CONFIRM_ABOVE_SECONDS and sys.stdin.isatty() and not os.environ.get("YES"):
        if input("Start it? [y/N] ").strip().lower() not in ("y", "yes"):
            raise PipelineError("not started (make quick trains every setting briefly; YES=1 skips this question)")


if __name__ == "__main__":
    cli.run(main)
