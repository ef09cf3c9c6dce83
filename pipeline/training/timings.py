"""How long an epoch took, kept per setting: the train stage records it, the estimate reads it."""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.common import cli
from pipeline.common.errors import PipelineError
from pipeline.common.outputs import write_json
from pipeline.common.state_files import read_json
from pipeline.params.schema import TrainConfig


@dataclass(frozen=True)
class EpochTiming:
    """One measured epoch: what it trained on and how long it took."""

    machine: str
    batch_size: int
    train_images: int
    val_images: int
    seconds: float
    precision: str = ""  # train.precision as params.yaml had it (records before it was kept: "")

    def applies_to(self, machine: str, train: TrainConfig) -> bool:
        """Whether this epoch's speed stands for training with `train` on `machine`."""
        return (self.machine, self.batch_size, self.precision) == (machine, train.batch_size, train.precision)


def machine_kind() -> str:
    """What an epoch's speed depends on, in one line (the machine kind its runs are tagged with)."""
    from pipeline.provenance.machine import this_machine

    return this_machine().kind


def scaled_epoch_seconds(timing: EpochTiming, train_images: int, val_images: int) -> float:
    """An epoch on other image counts: a training image costs about three forward passes
    (forward, and the gradients of activations and weights), a validation image one."""
    return timing.seconds * (3 * train_images + val_images) / (3 * timing.train_images + timing.val_images)


def timings_file(root: Path) -> Path:
    return root / ".dvc" / "tmp" / "epoch-seconds.json"


def load_timings(root: Path) -> dict[str, EpochTiming]:
    path = timings_file(root)
    if not path.exists():
        return {}
    recover = f"delete it (rm {path}): each setting's next training records its epoch time again"
    timings = read_json(path, dict[str, EpochTiming], "the recorded epoch times", recover)
    for name, timing in timings.items():
        if not (timing.batch_size > 0 and timing.train_images > 0 and timing.val_images >= 0
                and 0 < timing.seconds < math.inf):
            raise PipelineError(f"{path}: the recorded epoch times: {name}: a count or the seconds are out of "
                                f"range ({timing}); {recover}")
    return timings


def record_timing(root: Path, setting: str, timing: EpochTiming) -> None:
    """Keep a setting's latest epoch time (the train stage calls this once it has trained)."""
    try:
        kept = load_timings(root)
    except PipelineError as exc:  # never fail a finished training over a broken record of speeds
        print(cli.one_line(f"warning: {exc}; it now holds this training's record only"), file=sys.stderr)
        kept = {}
    records = {name: asdict(t) for name, t in kept.items()}
    records[setting] = asdict(timing)
    write_json(timings_file(root), records)


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
