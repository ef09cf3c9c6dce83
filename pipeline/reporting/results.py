"""One setting's results over its seeds, as the report sees them, and the statistics over them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.params.schema import Setting
from pipeline.reporting.confounds import RunProvenance, differences
from pipeline.reporting.stats import Aggregate, Comparison, aggregate, mcnemar, welch

COLUMNS = (("train_loss", "Train loss"), ("train_accuracy", "Train acc"), ("val_accuracy", "Val acc"),
           ("test_accuracy", "Test acc"))


@dataclass(frozen=True)
class Architecture:
    """A model as Keras' summary shows it (pipeline.model.network.summary_rows)."""

    rows: list[tuple[str, str, tuple, int]]
    trainable: int
    frozen: int


@dataclass(frozen=True)
class SeedResult:
    """One (setting, seed) run: its final numbers, curves, test predictions' correctness, run id."""

    seed: int
    train: dict
    test: dict
    history: dict[str, np.ndarray]
    correct: np.ndarray  # per test image: did the model get it right
    run_id: str
    tags: dict[str, str] = field(default_factory=dict)  # the run's MLflow tags

    @property
    def provenance(self) -> RunProvenance:
        return RunProvenance.of(self.tags, self.train.get("precision"))

    def value(self, column: str) -> float:
        return self.test[column] if column.startswith("test_") else self.train[column]


@dataclass(frozen=True)
class Result:
    """One setting over its seeds, with its first seed's model and its provenance."""

    name: str
    setting: Setting
    runs: list[SeedResult]  # the seeds that finished, in params.yaml's order
    missing: list[int]  # seeds params.yaml lists that have no results yet
    epochs: int
    subset: float
    data_md5: str
    architecture: Architecture
    kernels: list[tuple[str, np.ndarray]]  # (layer, kernel weights) of every conv and dense layer
    values: dict  # what it trains with, by key (config.setting_values): what its sweeps vary
    aggregates: dict[str, Aggregate] = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "aggregates", {column: aggregate([run.value(column) for run in self.runs])
                                                for column, _ in COLUMNS})

    @property
    def test(self) -> Aggregate:
        return self.aggregates["test_accuracy"]


def compare(result: Result, reference: Result) -> Comparison | None:
    """The test that fits: Welch over seeds when both have two or more, else McNemar on the
    first seeds' predictions. None while either setting misses seeds."""
    if result.missing or reference.missing:
        return None
    if len(result.runs) > 1 and len(reference.runs) > 1:
        return welch([r.value("test_accuracy") for r in result.runs],
                     [r.value("test_accuracy") for r in reference.runs])
    return mcnemar(result.runs[0].correct, reference.runs[0].correct)


def confounds(*results: Result) -> list[str]:
    """What differs between the runs of these settings besides the settings themselves."""
    groups: dict[tuple, list] = {}
    for result in results:  # the runs that should share their prepared data: a color setting's are its own
        groups.setdefault((result.setting.dataset, result.setting.color), []).extend(
            run.provenance for run in result.runs)
    return differences([run.provenance for result in results for run in result.runs], list(groups.values()))


def mean_curve(result: Result, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(epochs, mean, std) of a per-epoch metric over the seeds, up to the shortest run."""
    length = min(len(run.history[column]) for run in result.runs)
    curves = np.stack([run.history[column][:length] for run in result.runs])
    return result.runs[0].history["epoch"][:length], curves.mean(axis=0), curves.std(axis=0)


def aggregates(results: dict[str, Result]) -> dict[str, dict[str, float]]:
    """Per setting, mean / std / n / 95 % CI of each final metric (a DVC metric and the parent run's)."""
    return {name: {k: round(v, 6) for column, summary in r.aggregates.items()
                   for k, v in summary.as_metrics(column).items()} for name, r in results.items()}
