"""Building the report: every setting's results in, Markdown and comparison figures out.

Pure: no files, no TensorFlow, no tracking (`pipeline.report` reads the inputs and writes and
logs what comes out), so every table and line here is unit-tested on made-up results.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from pipeline.config import REPORT_EPOCHS, Setting, is_smoke_run, sweep_members
from pipeline.datasets import num_classes
from pipeline.plot import FIGURES
from pipeline.report_figures import l2_histograms_figure, test_accuracy_figure, val_curves_figure

DATASET_TITLES = {"mnist": "1. MNIST", "cifar10": "2. CIFAR-10 in grayscale"}
SWEEP_TITLES = {
    "kernel": ("Effect of the kernel size (strides 1)", "Kernel size"),
    "strides": ("Effect of the strides (kernel 5)", "Strides"),
    "l2": ("Effect of L2 regularization (kernel 3, strides 1)", "L2 regularization"),
}


@dataclass(frozen=True)
class Architecture:
    """A model as Keras' summary shows it (pipeline.models.summary_rows)."""

    rows: list[tuple[str, str, tuple, int]]
    trainable: int
    frozen: int


@dataclass(frozen=True)
class Result:
    """One setting's numbers, model and provenance."""

    name: str
    setting: Setting
    train: dict
    test: dict
    history: dict[str, np.ndarray]
    run_id: str
    data_md5: str
    architecture: Architecture
    kernels: list[tuple[str, np.ndarray]]  # (layer, kernel weights) of every conv and dense layer


@dataclass(frozen=True)
class Report:
    markdown: str
    figures: dict[str, Figure]  # file stem under the summary directory -> figure


def sweep_label(sweep: str, setting: Setting) -> str:
    """The report's way to name a setting in a sweep table: (3,3), (2,2), NO/YES."""
    if sweep == "kernel":
        return f"({setting.kernel},{setting.kernel})"
    if sweep == "strides":
        return f"({setting.strides},{setting.strides})"
    return f"YES ({setting.l2:g})" if setting.l2 > 0 else "NO"


def _epochs(count: int) -> str:
    return f"{count} epoch" if count == 1 else f"{count} epochs"


def _number(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def sweep_table(sweep: str, results: list[Result], homework: dict[str, list[float]]) -> str:
    """The report's table, ours first, then the homework's row values for the same setting."""
    header = (f"| {SWEEP_TITLES[sweep][1]} | Train loss | Train acc | Val acc | Test acc "
              "| HW2 train loss | HW2 train acc | HW2 val acc | HW2 test acc | setting |")
    lines = [header, "|" + "---|" * 10]
    for result in results:
        ours = [result.train["train_loss"], result.train["train_accuracy"], result.train["val_accuracy"],
                result.test["test_accuracy"]]
        theirs = homework.get(result.name, [None] * 4)
        cells = [sweep_label(sweep, result.setting), *map(_number, ours), *map(_number, theirs), f"`{result.name}`"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def best_line(sweep: str, results: list[Result]) -> str:
    best = max(results, key=lambda r: r.test["test_accuracy"])
    chance = 1 / num_classes(best.setting.dataset)
    return (f"Best test accuracy in this sweep: **{best.test['test_accuracy']:.2%}** "
            f"({SWEEP_TITLES[sweep][1]}: {sweep_label(sweep, best.setting)}; guessing scores {chance:.0%}).")


def unswept_table(results: list[Result]) -> str:
    """Settings that belong to no sweep, so that no table leaves them out."""
    lines = ["| setting | kernel | strides | L2 | Train loss | Train acc | Val acc | Test acc |", "|" + "---|" * 8]
    for r in results:
        numbers = [r.train["train_loss"], r.train["train_accuracy"], r.train["val_accuracy"], r.test["test_accuracy"]]
        lines.append(f"| `{r.name}` | {r.setting.kernel} | {r.setting.strides} | {r.setting.l2:g} | "
                     + " | ".join(map(_number, numbers)) + " |")
    return "\n".join(lines)


def architecture_table(architecture: Architecture) -> str:
    """Layer, output shape and parameter count, with totals, as Keras' summary prints them."""
    lines = ["| Layer (type) | Output Shape | Param # |", "|---|---|---:|"]
    lines += [f"| {name} ({kind}) | {shape} | {count:,} |" for name, kind, shape, count in architecture.rows]
    lines += ["", f"Total params: {architecture.trainable + architecture.frozen:,} · Trainable params: "
              f"{architecture.trainable:,} · Non-trainable params: {architecture.frozen:,}"]
    return "\n".join(lines)


def confused_pairs_table(results: list[Result]) -> str:
    lines = ["| setting | most confused pairs (test images mistaken either way) |", "|---|---|"]
    for result in results:
        pairs = ", ".join("{} ↔ {}: {}".format(*p["classes"], p["count"]) for p in result.test["most_confused"][:3])
        lines.append(f"| `{result.name}` | {pairs} |")
    return "\n".join(lines)


def _sweep_section(dataset: str, sweep: str, members: list[Result], homework: dict, figures: dict) -> list[str]:
    title, axis = f"{dataset} {sweep} sweep", SWEEP_TITLES[sweep][1]
    stem = f"{dataset}-{sweep}"
    labels = [sweep_label(sweep, r.setting) for r in members]
    curves = [(f"{axis} {label}", r.history["epoch"], r.history["val_accuracy"]) for label, r in zip(labels, members)]
    figures[f"{stem}-val"] = val_curves_figure(title, curves)
    figures[f"{stem}-test"] = test_accuracy_figure(title, axis, labels, [r.test["test_accuracy"] for r in members])
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
    for sweep in SWEEP_TITLES:
        members = [by_name[name] for name, _ in sweeps.get((dataset, sweep), [])]
        if members:
            lines += _sweep_section(dataset, sweep, members, homework, figures)
    unswept = [r for r in results if not r.setting.sweeps]
    if unswept:
        lines += ["", "### Settings in no sweep", "", unswept_table(unswept)]
    lines += ["", "### Most confused class pairs", "", confused_pairs_table(results), "", "### Figures per setting"]
    for result in results:
        lines += ["", f"<details><summary><code>{result.name}</code></summary>", ""]
        for figure_name, caption in FIGURES.items():
            lines += [f"**{caption}**", "", f"![{caption}](figures/{result.name}/{figure_name}.png)", ""]
        lines += ["</details>"]
    lines += ["", "### Architectures", ""]
    for result in results:
        lines += [f"<details><summary><code>{result.name}</code></summary>", "",
                  architecture_table(result.architecture), "", "</details>", ""]
    return lines


def build_report(results: dict[str, Result], epochs: int, subset: float, homework: dict) -> Report:
    """The whole report; `homework`: reports/homework_results.yaml as loaded."""
    figures: dict[str, Figure] = {}
    images = "" if subset == 1 else f" on {subset:.0%} of the training split"
    lines = [
        "# Deep Learning HW2 — regenerated",
        "",
        f"Regenerated by `dvc repro` from `params.yaml`: {len(results)} settings, {_epochs(epochs)} each{images} "
        f"(the homework: {REPORT_EPOCHS}). Homework numbers: {homework['source']}.",
    ]
    if is_smoke_run(epochs, subset):
        lines += ["", f"> **Smoke run: {_epochs(epochs)}{images}, not the homework's {REPORT_EPOCHS} epochs on all "
                  "of it.** These numbers only show that the pipeline works; they are not a reproduction of the "
                  "report."]
    settings = {name: r.setting for name, r in results.items()}
    for dataset in DATASET_TITLES:
        in_dataset = [r for r in results.values() if r.setting.dataset == dataset]
        if in_dataset:
            lines += _dataset_section(dataset, in_dataset, settings, homework["results"][dataset], figures)
    lines += ["", "## Provenance", "", "| setting | MLflow run id | prepared data md5 | epochs |", "|---|---|---|---|"]
    lines += [f"| `{r.name}` | `{r.run_id}` | `{r.data_md5}` | {r.train['epochs']} |" for r in results.values()]
    return Report("\n".join(lines) + "\n", figures)
