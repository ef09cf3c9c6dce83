"""The report's tables and lines: results in, Markdown out."""

from __future__ import annotations

from pipeline.config import Setting
from pipeline.datasets import num_classes
from pipeline.report_results import COLUMNS, Architecture, Result, compare
from pipeline.stats import Aggregate, Comparison

SWEEP_TITLES = {
    "kernel": ("Effect of the kernel size (strides 1)", "Kernel size"),
    "strides": ("Effect of the strides (kernel 5)", "Strides"),
    "l2": ("Effect of L2 regularization (kernel 3, strides 1)", "L2 regularization"),
}

def sweep_label(sweep: str, setting: Setting) -> str:
    """The homework's way to name a setting in a sweep table: (3,3), (2,2), NO/YES."""
    if sweep == "kernel":
        return f"({setting.kernel},{setting.kernel})"
    if sweep == "strides":
        return f"({setting.strides},{setting.strides})"
    return f"YES ({setting.l2:g})" if setting.l2 > 0 else "NO"


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
