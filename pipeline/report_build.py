"""Building the report: every setting's results in, Markdown and comparison figures out.

Pure: no files, no TensorFlow, no tracking (`pipeline.report` reads the inputs and writes and
logs what comes out), so every table and line here is unit-tested on made-up results.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from matplotlib.figure import Figure

from pipeline.config import REPORT_EPOCHS, Setting, is_smoke_run, sweep_members
from pipeline.datasets import num_classes
from pipeline.plot import FIGURES
from pipeline.report_figures import l2_histograms_figure, test_accuracy_figure, val_curves_figure
from pipeline.stats import Aggregate, Comparison, aggregate, mcnemar, welch

DATASET_TITLES = {"mnist": "1. MNIST", "cifar10": "2. CIFAR-10 in grayscale"}
SWEEP_TITLES = {
    "kernel": ("Effect of the kernel size (strides 1)", "Kernel size"),
    "strides": ("Effect of the strides (kernel 5)", "Strides"),
    "l2": ("Effect of L2 regularization (kernel 3, strides 1)", "L2 regularization"),
}
COLUMNS = (("train_loss", "Train loss"), ("train_accuracy", "Train acc"), ("val_accuracy", "Val acc"),
           ("test_accuracy", "Test acc"))


@dataclass(frozen=True)
class Architecture:
    """A model as Keras' summary shows it (pipeline.models.summary_rows)."""

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
    aggregates: dict[str, Aggregate] = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "aggregates", {column: aggregate([run.value(column) for run in self.runs])
                                                for column, _ in COLUMNS})

    @property
    def test(self) -> Aggregate:
        return self.aggregates["test_accuracy"]


@dataclass(frozen=True)
class Report:
    markdown: str
    figures: dict[str, Figure]  # file stem under the summary directory -> figure
    smoke: bool  # some setting trained less than the homework's size


def sweep_label(sweep: str, setting: Setting) -> str:
    """The homework's way to name a setting in a sweep table: (3,3), (2,2), NO/YES."""
    if sweep == "kernel":
        return f"({setting.kernel},{setting.kernel})"
    if sweep == "strides":
        return f"({setting.strides},{setting.strides})"
    return f"YES ({setting.l2:g})" if setting.l2 > 0 else "NO"


def compare(result: Result, reference: Result) -> Comparison | None:
    """The test that fits: Welch over seeds when both have two or more, else McNemar on the
    first seeds' predictions. None while either setting misses seeds."""
    if result.missing or reference.missing:
        return None
    if len(result.runs) > 1 and len(reference.runs) > 1:
        return welch([r.value("test_accuracy") for r in result.runs],
                     [r.value("test_accuracy") for r in reference.runs])
    return mcnemar(result.runs[0].correct, reference.runs[0].correct)


def _epochs(count: int) -> str:
    return f"{count} epoch" if count == 1 else f"{count} epochs"


def _number(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def _cell(summary: Aggregate) -> str:
    return _number(summary.mean) if summary.n == 1 else f"{summary.mean:.4f} ± {summary.std:.4f} ({summary.n})"


def _difference(comparison: Comparison | None) -> str:
    if comparison is None:
        return "–"
    return f"{comparison.difference * 100:+.2f} pp [{comparison.ci_low * 100:+.2f}, {comparison.ci_high * 100:+.2f}]"


def sweep_table(sweep: str, results: list[Result], homework: dict[str, list[float]]) -> str:
    """The homework's table, ours first (mean ± std (seeds) where there are several), then the
    homework's numbers for the same setting, then each row's test accuracy against the first."""
    reference = results[0]
    header = (f"| {SWEEP_TITLES[sweep][1]} | " + " | ".join(title for _, title in COLUMNS)
              + " | HW2 train loss | HW2 train acc | HW2 val acc | HW2 test acc "
              + f"| Δ test acc vs {sweep_label(sweep, reference.setting)} [95 % CI] | verdict | setting |")
    lines = [header, "|" + "---|" * 12]
    for result in results:
        ours = [_cell(result.aggregates[column]) for column, _ in COLUMNS]
        theirs = map(_number, homework.get(result.name, [None] * 4))
        comparison = None if result is reference else compare(result, reference)
        verdict = "reference" if result is reference else comparison.verdict if comparison else "seeds missing"
        missing = f" (seeds {', '.join(map(str, result.missing))} missing)" if result.missing else ""
        name = f"`{result.name}`{missing}"
        cells = [sweep_label(sweep, result.setting), *ours, *theirs, _difference(comparison), verdict, name]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def method_note(results: list[Result]) -> str:
    """Which test the verdicts used, and what it leaves out."""
    seeds = {len(r.runs) for r in results}
    if min(seeds) > 1:
        return ("Verdicts: Welch's t-test on the per-seed test accuracies (difference of the means, 95 % "
                "interval), p < 0.05 counts as better or worse. The seeds vary initialization, shuffling and "
                "dropout; the test set is the same for all.")
    return ("Verdicts: McNemar's exact test on the two models' predictions for the same test images (the "
            "difference counts the images only one of them gets right; 95 % interval), p < 0.05 counts as "
            "better or worse. One seed per setting: it says whether this pair of models differs on this test "
            "set, not whether the settings do — another seed may change the verdict. List more `seeds:` in "
            "params.yaml to measure that.")


def best_line(sweep: str, results: list[Result]) -> str:
    best = max(results, key=lambda r: r.test.mean)
    chance = 1 / num_classes(best.setting.dataset)
    mean = "mean " if best.test.n > 1 else ""
    return (f"Best {mean}test accuracy in this sweep: **{best.test.mean:.2%}** "
            f"({SWEEP_TITLES[sweep][1]}: {sweep_label(sweep, best.setting)}; guessing scores {chance:.0%}).")


def unswept_table(results: list[Result]) -> str:
    """Settings that belong to no sweep, so that no table leaves them out."""
    lines = ["| setting | kernel | strides | L2 | " + " | ".join(title for _, title in COLUMNS) + " |",
             "|" + "---|" * 8]
    for r in results:
        cells = [f"`{r.name}`", str(r.setting.kernel), str(r.setting.strides), f"{r.setting.l2:g}",
                 *(_cell(r.aggregates[column]) for column, _ in COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def architecture_table(architecture: Architecture) -> str:
    """Layer, output shape and parameter count, with totals, as Keras' summary prints them."""
    lines = ["| Layer (type) | Output Shape | Param # |", "|---|---|---:|"]
    lines += [f"| {name} ({kind}) | {shape} | {count:,} |" for name, kind, shape, count in architecture.rows]
    lines += ["", f"Total params: {architecture.trainable + architecture.frozen:,} · Trainable params: "
              f"{architecture.trainable:,} · Non-trainable params: {architecture.frozen:,}"]
    return "\n".join(lines)


def confused_pairs_table(results: list[Result]) -> str:
    lines = ["| setting | most confused pairs, first seed (test images mistaken either way) |", "|---|---|"]
    for result in results:
        pairs = result.runs[0].test["most_confused"][:3]
        lines.append(f"| `{result.name}` | " + ", ".join("{} ↔ {}: {}".format(*p["classes"], p["count"])
                                                         for p in pairs) + " |")
    return "\n".join(lines)


def mean_curve(result: Result, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(epochs, mean, std) of a per-epoch metric over the seeds, up to the shortest run."""
    length = min(len(run.history[column]) for run in result.runs)
    curves = np.stack([run.history[column][:length] for run in result.runs])
    return result.runs[0].history["epoch"][:length], curves.mean(axis=0), curves.std(axis=0)


def _sweep_section(dataset: str, sweep: str, members: list[Result], homework: dict, figures: dict) -> list[str]:
    title, axis = f"{dataset} {sweep} sweep", SWEEP_TITLES[sweep][1]
    stem = f"{dataset}-{sweep}"
    labels = [sweep_label(sweep, r.setting) for r in members]
    curves = [(f"{axis} {label}", *mean_curve(r, "val_accuracy")) for label, r in zip(labels, members)]
    figures[f"{stem}-val"] = val_curves_figure(title, curves)
    figures[f"{stem}-test"] = test_accuracy_figure(title, axis, labels, [r.test for r in members])
    lines = ["", f"### {SWEEP_TITLES[sweep][0]}", "", sweep_table(sweep, members, homework.get(sweep, {})),
             "", best_line(sweep, members), "",
             f"![validation accuracy per epoch](summary/{stem}-val.png)",
             f"![test accuracy](summary/{stem}-test.png)"]
    if sweep == "l2":
        figures[f"{stem}-weights"] = l2_histograms_figure(
            f"{dataset} L2 sweep", {label: r.kernels for label, r in zip(labels, members)})
        lines += [f"![weights with and without L2](summary/{stem}-weights.png)"]
    return lines


def _dataset_section(dataset: str, results: list[Result], settings: dict[str, Setting], homework: dict,
                     figures: dict) -> list[str]:
    by_name = {r.name: r for r in results}
    lines = ["", f"## {DATASET_TITLES[dataset]}", "", "### Architecture", "",
             f"Summary of `{results[0].name}` (every setting's is under *Architectures* below):", "",
             architecture_table(results[0].architecture)]
    sweeps = sweep_members(settings)
    swept = []
    for sweep in SWEEP_TITLES:
        members = [by_name[name] for name, _ in sweeps.get((dataset, sweep), [])]
        if members:
            lines += _sweep_section(dataset, sweep, members, homework, figures)
            swept += members
    if swept:
        lines += ["", method_note(swept)]
    unswept = [r for r in results if not r.setting.sweeps]
    if unswept:
        lines += ["", "### Settings in no sweep", "", unswept_table(unswept)]
    lines += ["", "### Most confused class pairs", "", confused_pairs_table(results), "", "### Figures per setting"]
    for result in results:
        lines += ["", f"<details><summary><code>{result.name}</code> (seed {result.runs[0].seed})</summary>", ""]
        for figure_name, caption in FIGURES.items():
            lines += [f"**{caption}**", "", f"![{caption}](figures/{result.name}/{figure_name}.png)", ""]
        lines += ["</details>"]
    lines += ["", "### Architectures", ""]
    for result in results:
        lines += [f"<details><summary><code>{result.name}</code></summary>", "",
                  architecture_table(result.architecture), "", "</details>", ""]
    return lines


def _size_line(results: list[Result]) -> tuple[str, bool]:
    """How long the settings trained, and whether that is a smoke run (any of them)."""
    sizes = sorted({(r.epochs, r.subset) for r in results})
    words = ", ".join(f"{_epochs(e)}" + ("" if s == 1 else f" on {s:.0%} of the training split") for e, s in sizes)
    return words, any(is_smoke_run(e, s) for e, s in sizes)


def build_report(results: dict[str, Result], homework: dict) -> Report:
    """The whole report; `homework`: reports/homework_results.yaml as loaded."""
    figures: dict[str, Figure] = {}
    size, smoke = _size_line(list(results.values()))
    seeds = sorted({len(r.runs) + len(r.missing) for r in results.values()})
    lines = [
        "# Deep Learning HW2 — regenerated",
        "",
        f"Regenerated by `dvc repro` from `params.yaml`: {len(results)} settings, {size} each, "
        f"{' or '.join(map(str, seeds))} seed(s) per setting (the homework: {REPORT_EPOCHS} epochs, one run). "
        f"Homework numbers: {homework['source']}.",
    ]
    if smoke:
        lines += ["", f"> **Smoke run: {size}, not the homework's {REPORT_EPOCHS} epochs on all of it.** "
                  "These numbers only show that the pipeline works; they are not a reproduction of the report."]
    missing = [f"`{r.name}` (seeds {', '.join(map(str, r.missing))})" for r in results.values() if r.missing]
    if missing:
        lines += ["", "> **Incomplete: no results yet for " + "; ".join(missing) + ".** Their rows average the "
                  "seeds that finished and get no verdict."]
    settings = {name: r.setting for name, r in results.items()}
    for dataset in DATASET_TITLES:
        in_dataset = [r for r in results.values() if r.setting.dataset == dataset]
        if in_dataset:
            lines += _dataset_section(dataset, in_dataset, settings, homework["results"][dataset], figures)
    lines += ["", "## Provenance", "", "| setting | seed | MLflow run id | prepared data md5 | epochs | precision |",
              "|---|---|---|---|---|---|"]
    lines += [f"| `{r.name}` | {run.seed} | `{run.run_id}` | `{r.data_md5}` | {run.train['epochs']} | "
              f"{run.train.get('precision', 'float32')} |" for r in results.values() for run in r.runs]
    return Report("\n".join(lines) + "\n", figures, smoke)


def aggregates(results: dict[str, Result]) -> dict[str, dict[str, float]]:
    """Per setting, mean / std / n / 95 % CI of each final metric (a DVC metric and the parent run's)."""
    return {name: {k: round(v, 6) for column, summary in r.aggregates.items()
                   for k, v in summary.as_metrics(column).items()} for name, r in results.items()}
