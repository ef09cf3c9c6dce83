"""The report's tables and lines: results in, Markdown out."""

from __future__ import annotations

from pipeline.model.datasets import num_classes
from pipeline.params.schema import is_smoke_run
from pipeline.provenance.record import NOT_RECORDED
from pipeline.reporting.confounds import code_cell
from pipeline.reporting.results import COLUMNS, Architecture, Result, compare, confounds
from pipeline.reporting.stats import Aggregate, Comparison

# A swept key in words, as a table's first column is headed and its rows are labelled.
KEY_NAMES = {"kernel": "Kernel size", "strides": "Strides", "l2": "L2 regularization", "color": "Color",
             "epochs": "Epochs", "batch_size": "Batch size", "learning_rate": "Learning rate",
             "optimizer": "Optimizer", "subset": "Training subset", "dense_units": "Dense units",
             "dropout": "Dropout"}


def key_name(vary: str) -> str:
    """A sweep's key in words; a searched setting's several keys (`a+b`) joined."""
    return " + ".join(KEY_NAMES[key] for key in vary.split("+"))


def sweep_title(vary: str, reference: Result) -> str:
    """The homework's section titles for its three sweeps; the key and the reference otherwise."""
    values = reference.values
    return {"kernel": f"Effect of the kernel size (strides {values['strides']})",
            "strides": f"Effect of the strides (kernel {values['kernel']})",
            "l2": f"Effect of L2 regularization (kernel {values['kernel']}, strides {values['strides']})",
            }.get(vary, f"Effect of the {key_name(vary).lower()} (against `{reference.name}`)")


def sweep_label(vary: str, values: dict) -> str:
    """A setting's row in a sweep table: the homework's (3,3), (2,2), NO/YES for its sweeps, the
    varied value otherwise (each, for several keys)."""
    if "+" in vary:
        return ", ".join(sweep_label(key, values) for key in vary.split("+"))
    value = values[vary]
    if vary in ("kernel", "strides"):
        return f"({value},{value})"
    if vary == "l2":
        return f"YES ({value:g})" if value > 0 else "NO"
    return f"{value:g}" if isinstance(value, float) else str(value)


def epochs_text(count: int) -> str:
    return f"{count} epoch" if count == 1 else f"{count} epochs"


def _number(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def _cell(summary: Aggregate) -> str:
    return _number(summary.mean) if summary.n == 1 else f"{summary.mean:.4f} ± {summary.std:.4f} ({summary.n})"


def _difference(comparison: Comparison | None) -> str:
    if comparison is None:
        return "–"
    return f"{comparison.difference * 100:+.2f} pp [{comparison.ci_low * 100:+.2f}, {comparison.ci_high * 100:+.2f}]"


def sweep_table(vary: str, results: list[Result], homework: dict[str, list[float]]) -> str:
    """The homework's table, ours first (mean ± std (seeds) where there are several), then the
    homework's numbers for the same setting where it has them, then each row's test accuracy
    against the first row's."""
    reference = results[0]
    header = (f"| {key_name(vary)} | " + " | ".join(title for _, title in COLUMNS)
              + " | HW2 train loss | HW2 train acc | HW2 val acc | HW2 test acc "
              + f"| Δ test acc vs {sweep_label(vary, reference.values)} [95 % CI] | verdict | setting |")
    lines = [header, "|" + "---|" * 12]
    for result in results:
        ours = [_cell(result.aggregates[column]) for column, _ in COLUMNS]
        theirs = map(_number, homework.get(result.name, [None] * 4))
        comparison = None if result is reference else compare(result, reference)
        if result is reference:
            verdict = "reference"
        elif comparison is None:
            verdict = "seeds missing"
        elif is_smoke_run(result.epochs, result.subset) or is_smoke_run(reference.epochs, reference.subset):
            # said beside the verdict, not only in the notes: it is about shorter training than the homework's
            verdict = f"{comparison.verdict} (smoke run: not yet meaningful)"
        else:
            verdict = comparison.verdict
        verdict += also_differs(result, *([] if result is reference else [reference]))
        missing = f" (seeds {', '.join(map(str, result.missing))} missing)" if result.missing else ""
        name = f"`{result.name}`{missing}"
        cells = [sweep_label(vary, result.values), *ours, *theirs, _difference(comparison), verdict, name]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def also_differs(*results: Result) -> str:
    """What else the runs behind a verdict differ in (precision, code, data, machine), said beside it."""
    notes = confounds(*results)
    return f" (runs also differ: {'; '.join(notes)})" if notes else ""


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


def best_line(vary: str, results: list[Result]) -> str:
    best = max(results, key=lambda r: r.test.mean)
    chance = 1 / num_classes(best.setting.dataset)
    mean = "mean " if best.test.n > 1 else ""
    return (f"Best {mean}test accuracy in this sweep: **{best.test.mean:.2%}** "
            f"({key_name(vary)}: {sweep_label(vary, best.values)}; guessing scores {chance:.0%}).")


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


def provenance_table(results: list[Result]) -> str:
    """Every run with what made it: run id, data, length, precision, code, machine, libraries."""
    lines = ["| setting | seed | MLflow run id | prepared data md5 | epochs | precision | code | machine | libraries |",
             "|" + "---|" * 9]
    for r in results:
        for run in r.runs:
            made = run.provenance
            lines.append(f"| `{r.name}` | {run.seed} | `{run.run_id}` | `{r.data_md5}` | {run.train['epochs']} | "
                         f"{made.precision} | {code_cell(made)} | {made.machine} | {made.versions} |")
    if any(not run.provenance.recorded for r in results for run in r.runs):
        lines += ["", f"Runs trained before the pipeline tagged what made them show \"{NOT_RECORDED}\"."]
    return "\n".join(lines)
