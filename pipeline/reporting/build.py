"""Building the report: every setting's results in, Markdown and comparison figures out.

Pure: no files, no TensorFlow, no tracking (`pipeline.report` reads the inputs and writes and
logs what comes out), so every table and line here is unit-tested on made-up results.
"""

from __future__ import annotations

from dataclasses import dataclass

from matplotlib.figure import Figure

from pipeline.params.schema import REPORT_EPOCHS, Sweep, is_smoke_run
from pipeline.reporting.claims import CLAIMS_METHOD, Claims, Row, claims_table
from pipeline.reporting.figure_names import FIGURES
from pipeline.reporting.figures import l2_histograms_figure, test_accuracy_figure, val_curves_figure
from pipeline.reporting.results import Result, mean_curve
from pipeline.reporting.tables import (
    architecture_table,
    best_line,
    confused_pairs_table,
    epochs_text,
    key_name,
    method_note,
    provenance_table,
    sweep_label,
    sweep_table,
    sweep_title,
    unswept_table,
)

DATASET_TITLES = {"mnist": "1. MNIST", "cifar10": "2. CIFAR-10 (gray, as the homework; in color where a setting asks)"}


@dataclass(frozen=True)
class Report:
    markdown: str
    figures: dict[str, Figure]  # file stem under the summary directory -> figure
    smoke: bool  # some setting trained less than the homework's size


def as_the_homework_trained(result: Result, homework_settings: dict[str, dict]) -> bool:
    """Whether the setting still has the values the homework trained under its name: its numbers
    sit beside ours only then (not beside an edited L2 coefficient, say)."""
    wanted = homework_settings.get(result.name)
    return wanted is not None and all(result.values.get(key) == value for key, value in wanted.items())


def _sweep_section(sweep_name: str, sweep: Sweep, members: list[Result], homework: dict, figures: dict) -> list[str]:
    vary, axis = sweep.vary, key_name(sweep.vary)
    labels = [sweep_label(vary, r.values) for r in members]
    curves = [(f"{axis} {label}", *mean_curve(r, "val_accuracy")) for label, r in zip(labels, members)]
    figures[f"{sweep_name}-val"] = val_curves_figure(sweep_name, curves)
    figures[f"{sweep_name}-test"] = test_accuracy_figure(sweep_name, axis, labels, [r.test for r in members])
    numbers = {r.name: homework["results"][vary][r.name] for r in members
               if r.name in homework["results"].get(vary, {}) and as_the_homework_trained(r, homework["settings"])}
    lines = ["", f"### {sweep_title(vary, members[0])}", "", sweep_table(vary, members, numbers),
             "", best_line(vary, members), "",
             f"![validation accuracy per epoch](summary/{sweep_name}-val.png)",
             f"![test accuracy](summary/{sweep_name}-test.png)"]
    if vary == "l2":
        figures[f"{sweep_name}-weights"] = l2_histograms_figure(
            f"{sweep_name}", {label: r.kernels for label, r in zip(labels, members)})
        lines += [f"![weights with and without L2](summary/{sweep_name}-weights.png)"]
    return lines


def _dataset_section(dataset: str, results: list[Result], sweeps: dict[str, Sweep], homework: dict,
                     figures: dict) -> list[str]:
    by_name = {r.name: r for r in results}
    lines = ["", f"## {DATASET_TITLES[dataset]}", "", "### Architecture", "",
             f"Summary of `{results[0].name}` (every setting's is under *Architectures* below):", "",
             architecture_table(results[0].architecture)]
    swept = []
    for sweep_name, sweep in sweeps.items():
        if sweep.settings[0] in by_name:
            members = [by_name[name] for name in sweep.settings]
            lines += _sweep_section(sweep_name, sweep, members, homework, figures)
            swept += members
    if swept:
        lines += ["", method_note(swept)]
    in_sweeps = {name for sweep in sweeps.values() for name in sweep.settings}
    unswept = [r for r in results if r.name not in in_sweeps]
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


def _claims_section(claims: Claims, rows: list[Row], smoke: bool) -> list[str]:
    judged = sum(row.verdict != "not run" for row in rows)
    lines = ["", "## The homework's claims", "",
             f"Each of the homework's conclusions ({claims.source}; reports/claims.yaml) as checks of one metric "
             f"of a setting against a reference, judged on these runs: {judged} of {len(rows)} checks have "
             "their settings here. " + CLAIMS_METHOD]
    if smoke:
        lines += ["", "> **Smoke run: the verdicts below are not yet meaningful** (fewer epochs or images than the "
                  "homework's); they show that the checks run."]
    return lines + ["", claims_table(claims, rows)]


def _size_line(results: list[Result]) -> tuple[str, bool]:
    """How long the settings trained, and whether that is a smoke run (any of them)."""
    sizes = sorted({(r.epochs, r.subset) for r in results})
    words = ", ".join(f"{epochs_text(e)}" + ("" if s == 1 else f" on {s:.0%} of the training split") for e, s in sizes)
    return words, any(is_smoke_run(e, s) for e, s in sizes)


def build_report(results: dict[str, Result], sweeps: dict[str, Sweep], homework: dict,
                 claims: tuple[Claims, list[Row]] | None = None) -> Report:
    """The whole report; `sweeps`: params.yaml's; `homework`: reports/homework_results.yaml as loaded;
    `claims`: the homework's claims and their rows as judged on these results."""
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
    for dataset in DATASET_TITLES:
        in_dataset = [r for r in results.values() if r.setting.dataset == dataset]
        if in_dataset:
            lines += _dataset_section(dataset, in_dataset, sweeps, {"results": homework["results"][dataset],
                                                                    "settings": homework["settings"]}, figures)
    if claims is not None:
        lines += _claims_section(*claims, smoke)
    lines += ["", "## Provenance", "", provenance_table(list(results.values()))]
    return Report("\n".join(lines) + "\n", figures, smoke)
