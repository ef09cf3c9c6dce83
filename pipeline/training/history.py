"""A training run's per-epoch history: one row per epoch, the CSV that DVC plots, the final numbers."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

HISTORY_FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds")


def history_row(epoch: int, logs: dict, seconds: float) -> dict[str, float]:
    """One epoch's row; an epoch cut short by TerminateOnNaN may lack validation numbers."""
    return {"epoch": epoch, **{k: float(logs.get(k, float("nan"))) for k in HISTORY_FIELDS[1:5]}, "seconds": seconds}


def history_csv(rows: list[dict[str, float]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


def read_history(path: Path) -> dict[str, np.ndarray]:
    """The CSV back, one array per column."""
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return {key: np.array([float(row[key]) for row in rows]) for key in rows[0]}


def final_metrics(rows: list[dict[str, float]]) -> dict[str, float]:
    """The report's columns for one setting: the last epoch's train/val loss and accuracy."""
    last = rows[-1]
    return {
        "train_loss": last["loss"], "train_accuracy": last["accuracy"],
        "val_loss": last["val_loss"], "val_accuracy": last["val_accuracy"],
        "epochs": len(rows),
    }


def seconds_per_epoch(rows: list[dict[str, float]]) -> float:
    """A timing, not a result: kept out of the metrics file (`dvc metrics diff` would show it
    beside the accuracies); the history CSV has each epoch's seconds."""
    return sum(r["seconds"] for r in rows) / len(rows)


def first_non_finite(rows: list[dict[str, float]]) -> int | None:
    for row in rows:
        if not all(math.isfinite(row[k]) for k in ("loss", "val_loss")):
            return row["epoch"]
    return None
