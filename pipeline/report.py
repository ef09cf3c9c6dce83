"""report stage: one HW2-style report over every setting, in Markdown and self-contained HTML.

For each dataset and sweep, the report's table (setting | Train loss | Train acc | Val acc |
Test acc) with the seed report's numbers beside ours, comparison figures, the most confused class
pairs, each setting's figures and architecture summary, and where every number came from. The
report and its figures are also logged to MLflow, one summary run per experiment.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pipeline import cli
from pipeline.config import Params, Setting, load_params, sweep_members
from pipeline.outputs import atomic_dir, atomic_file, write_text
from pipeline.plot import read_history

DATASET_TITLES = {"mnist": "1. MNIST", "cifar10": "2. CIFAR-10 in grayscale"}
SWEEP_TITLES = {
    "kernel": ("Effect of the kernel size (strides 1)", "Kernel size"),
    "strides": ("Effect of the strides (kernel 5)", "Strides"),
    "l2": ("Effect of L2 regularization (kernel 3, strides 1)", "L2 regularization"),
}
SETTING_FIGURES = (
    ("learning_curves", "Learning curves"),
    ("examples", "Correctly and wrongly classified test images"),
    ("feature_maps", "Feature maps"),
    ("weights", "Weight and bias histograms"),
    ("confusion", "Confusion matrix"),
)


@dataclass(frozen=True)
class ReportJob:
    settings: dict[str, Setting]
    epochs: int
    subset: float


def stage_params(params: Params, item: str = "") -> ReportJob:
    """The part of params.yaml this stage reads (dvc.yaml declares the same keys)."""
    return ReportJob(params.settings, params.train.epochs, params.train.subset)


@dataclass(frozen=True)
class Result:
    """One setting's numbers and their provenance."""

    name: str
    setting: Setting
    train: dict
    test: dict
    history: dict[str, np.ndarray]
    run_id: str
    data_md5: str


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


def sweep_table(sweep: str, results: list[Result], seed: dict[str, list[float]]) -> str:
    """The report's table, ours first, then the seed report's row values for the same setting."""
    header = (f"| {SWEEP_TITLES[sweep][1]} | Train loss | Train acc | Val acc | Test acc "
              "| Seed train loss | Seed train acc | Seed val acc | Seed test acc | setting |")
    lines = [header, "|" + "---|" * 10]
    for result in results:
        ours = [result.train["train_loss"], result.train["train_accuracy"], result.train["val_accuracy"],
                result.test["test_accuracy"]]
        theirs = seed.get(result.name, [None] * 4)
        cells = [sweep_label(sweep, result.setting), *map(_number, ours), *map(_number, theirs), f"`{result.name}`"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def best_line(sweep: str, results: list[Result]) -> str:
    best = max(results, key=lambda r: r.test["test_accuracy"])
    return (f"Best test accuracy in this sweep: **{best.test['test_accuracy']:.2%}** "
            f"({SWEEP_TITLES[sweep][1]}: {sweep_label(sweep, best.setting)}).")


def val_curves_figure(title: str, sweep: str, results: list[Result]) -> Figure:
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.subplots()
    for result in results:
        axes.plot(result.history["epoch"], result.history["val_accuracy"], marker="o",
                  label=f"{SWEEP_TITLES[sweep][1]} {sweep_label(sweep, result.setting)}")
    axes.set(xlabel="epoch", ylabel="validation accuracy", title=f"{title}: validation accuracy per epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
    axes.legend()
    return figure


def test_accuracy_figure(title: str, sweep: str, results: list[Result]) -> Figure:
    figure = Figure(figsize=(6, 3.8), layout="constrained")
    axes = figure.subplots()
    labels = [sweep_label(sweep, r.setting) for r in results]
    values = [r.test["test_accuracy"] for r in results]
    bars = axes.bar(labels, values, color="tab:blue")
    axes.bar_label(bars, labels=[f"{v:.2%}" for v in values])
    low = min(values)
    axes.set_ylim(max(0.0, low - (1 - low) * 0.5 - 0.01), 1.0)
    axes.set(xlabel=SWEEP_TITLES[sweep][1], ylabel="test accuracy", title=f"{title}: test accuracy")
    return figure


def l2_histograms_figure(title: str, weights: dict[str, list[tuple[str, np.ndarray]]], labels: dict[str, str]) -> Figure:
    """Overlaid kernel-weight histograms per layer, one colour per setting (report 1-4 / 2-4)."""
    layer_names = [name for name, _ in next(iter(weights.values()))]
    columns = min(3, len(layer_names))
    rows = -(-len(layer_names) // columns)
    figure = Figure(figsize=(4 * columns, 2.8 * rows + 0.5), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False).ravel()
    for index, layer in enumerate(layer_names):
        axes = grid[index]
        for setting, layers in weights.items():
            values = dict(layers)[layer].ravel()
            axes.hist(values, bins=80, alpha=0.55, density=True, label=f"L2 {labels[setting]} (std {values.std():.3g})")
        axes.set_title(layer, fontsize=10)
        axes.set_xlabel("weight value")
        axes.legend(fontsize=7)
    for axes in grid[len(layer_names):]:
        axes.axis("off")
    figure.suptitle(f"{title}: kernel weights with and without L2 (density)")
    return figure


def architecture_table(model) -> str:
    """Layer, output shape and parameter count, with totals, as Keras' summary prints them."""
    lines = ["| Layer (type) | Output Shape | Param # |", "|---|---|---:|"]
    for layer in model.layers:
        shape = tuple(layer.output.shape)
        lines.append(f"| {layer.name} ({type(layer).__name__}) | {shape} | {layer.count_params():,} |")
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    frozen = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    lines.append("")
    lines.append(f"Total params: {trainable + frozen:,} · Trainable params: {trainable:,} · "
                 f"Non-trainable params: {frozen:,}")
    return "\n".join(lines)


def confused_pairs_table(results: list[Result]) -> str:
    lines = ["| setting | most confused pairs (test images mistaken either way) |", "|---|---|"]
    for result in results:
        pairs = ", ".join(f"{a} ↔ {b}: {p['count']}" for p in result.test["most_confused"][:3] for a, b in [p["classes"]])
        lines.append(f"| `{result.name}` | {pairs} |")
    return "\n".join(lines)


def embed_images(html: str, base: Path) -> str:
    """Inline every <img src="relative.png"> as a data URI: the HTML stands alone."""
    def inline(match: re.Match) -> str:
        data = base64.b64encode((base / match.group(2)).read_bytes()).decode("ascii")
        return f'{match.group(1)}data:image/png;base64,{data}"'

    return re.sub(r'(<img src=")([^"]+\.png)"', inline, html)


HTML_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>HW2 report (regenerated)</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}}
table{{border-collapse:collapse;margin:1em 0;font-size:0.92em}}th,td{{border:1px solid #ccc;padding:3px 8px}}
th{{background:#f3f3f3}}img{{max-width:100%}}code{{background:#f6f6f6;padding:0 3px}}</style>
</head><body>
{body}
</body></html>
"""


def to_html(markdown: str, base: Path) -> str:
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)
    return embed_images(HTML_PAGE.format(body=body), base)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--metrics", type=Path, required=True, help="metrics/train and metrics/eval")
    parser.add_argument("--history", type=Path, required=True)
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--figures", type=Path, required=True, help="per-setting figures")
    parser.add_argument("--seed", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="Markdown report (written)")
    parser.add_argument("--html", type=Path, required=True, help="HTML report (written)")
    parser.add_argument("--summary", type=Path, required=True, help="comparison figures (written)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    job = stage_params(load_params(args.params))
    seed = yaml.safe_load(args.seed.read_text(encoding="utf-8"))

    import keras
    import mlflow

    from pipeline import tracking

    root = tracking.project_root()
    tracking.connect(root)
    client = mlflow.tracking.MlflowClient()

    results: dict[str, Result] = {}
    for name, setting in job.settings.items():
        run_id = json.loads((args.runs / f"{name}.json").read_text(encoding="utf-8"))["run_id"]
        results[name] = Result(
            name, setting,
            json.loads((args.metrics / "train" / f"{name}.json").read_text(encoding="utf-8")),
            json.loads((args.metrics / "eval" / f"{name}.json").read_text(encoding="utf-8")),
            read_history(args.history / f"{name}.csv"),
            run_id, client.get_run(run_id).data.tags.get("data_md5", "unknown"),
        )
    models = {name: keras.models.load_model(args.models / f"{name}.keras") for name in job.settings}
    sweeps = sweep_members(job.settings)

    figures: dict[str, Figure] = {}
    smoke = job.epochs < seed["epochs"] or job.subset < 1
    images = "" if job.subset == 1 else f" on {job.subset:.0%} of the training split"
    lines = [
        "# Deep Learning HW2 — regenerated",
        "",
        f"Regenerated by `dvc repro` from `params.yaml`: {len(results)} settings, {_epochs(job.epochs)} each{images} "
        f"(the seed report: {seed['epochs']}). Seed numbers: {seed['source']}.",
    ]
    if smoke:
        lines += ["", f"> **Smoke run: {_epochs(job.epochs)}{images}, not the report's {seed['epochs']} epochs on all "
                  "of it.** These numbers only show that the pipeline works; they are not a reproduction of the report."]
    for dataset, heading in DATASET_TITLES.items():
        in_dataset = [r for r in results.values() if r.setting.dataset == dataset]
        if not in_dataset:
            continue
        lines += ["", f"## {heading}", "", "### Architecture", "",
                  f"Summary of `{in_dataset[0].name}` (every setting's is under *Architectures* below):", "",
                  architecture_table(models[in_dataset[0].name])]
        for sweep in SWEEP_TITLES:
            members = [results[name] for name, _ in sweeps.get((dataset, sweep), [])]
            if not members:
                continue
            stem = f"{dataset}-{sweep}"
            figures[f"{stem}-val"] = val_curves_figure(f"{dataset} {sweep} sweep", sweep, members)
            figures[f"{stem}-test"] = test_accuracy_figure(f"{dataset} {sweep} sweep", sweep, members)
            lines += ["", f"### {SWEEP_TITLES[sweep][0]}", "", sweep_table(sweep, members, seed["results"][dataset].get(sweep, {})),
                      "", best_line(sweep, members), "",
                      f"![validation accuracy per epoch](summary/{stem}-val.png)",
                      f"![test accuracy](summary/{stem}-test.png)"]
            if sweep == "l2":
                kernels = {r.name: [(layer.name, layer.get_weights()[0]) for layer in models[r.name].layers
                                    if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))] for r in members}
                labels = {r.name: sweep_label("l2", r.setting) for r in members}
                figures[f"{stem}-weights"] = l2_histograms_figure(f"{dataset} L2 sweep", kernels, labels)
                lines += [f"![weights with and without L2](summary/{stem}-weights.png)"]
        lines += ["", "### Most confused class pairs", "", confused_pairs_table(in_dataset)]
        lines += ["", "### Figures per setting"]
        for result in in_dataset:
            lines += ["", f"<details><summary><code>{result.name}</code></summary>", ""]
            for figure_name, caption in SETTING_FIGURES:
                lines += [f"**{caption}**", "", f"![{caption}](figures/{result.name}/{figure_name}.png)", ""]
            lines += ["</details>"]
        lines += ["", "### Architectures", ""]
        for result in in_dataset:
            lines += [f"<details><summary><code>{result.name}</code></summary>", "",
                      architecture_table(models[result.name]), "", "</details>", ""]
    lines += ["", "## Provenance", "", "| setting | MLflow run id | prepared data md5 | epochs |", "|---|---|---|---|"]
    lines += [f"| `{r.name}` | `{r.run_id}` | `{r.data_md5}` | {r.train['epochs']} |" for r in results.values()]
    markdown = "\n".join(lines) + "\n"

    with atomic_dir(args.summary) as tmp:
        for name, figure in figures.items():
            figure.savefig(tmp / f"{name}.png", dpi=110)
    write_text(args.out, markdown)
    with atomic_file(args.html) as tmp:
        tmp.write_text(to_html(markdown, args.out.parent), encoding="utf-8")

    for dataset, experiment in tracking.EXPERIMENTS.items():
        if not any(r.setting.dataset == dataset for r in results.values()):
            continue
        tags = {"kind": "report", "smoke_run": str(smoke).lower()}
        with mlflow.start_run(experiment_id=tracking.experiment_id(experiment, root), run_name="report", tags=tags):
            mlflow.log_artifact(str(args.out), "report")
            mlflow.log_artifact(str(args.html), "report")
            mlflow.log_artifacts(str(args.summary), "report/summary")
    print(f"report: {args.out} and {args.html} ({len(results)} settings)", file=sys.stderr)


if __name__ == "__main__":
    cli.run(main)
