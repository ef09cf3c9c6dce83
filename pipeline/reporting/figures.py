"""The report's comparison figures, one set per sweep: pure functions from numbers to figures."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def val_curves_figure(title: str, curves: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]) -> Figure:
    """(label, epochs, mean, std over seeds) of the validation accuracy per setting: a line, and a
    band of one standard deviation where there are several seeds."""
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.subplots()
    for label, epochs, mean, std in curves:
        line, = axes.plot(epochs, mean, marker="o", markersize=3, label=label)
        if np.any(std > 0):
            axes.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    axes.set(xlabel="epoch", ylabel="validation accuracy", title=f"{title}: validation accuracy per epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
    axes.legend()
    return figure


def test_accuracy_figure(title: str, axis_label: str, labels: list[str], values: list) -> Figure:
    """Mean test accuracy per setting (stats.Aggregate), with its 95 % interval over the seeds."""
    figure = Figure(figsize=(6, 3.8), layout="constrained")
    axes = figure.subplots()
    means = [v.mean for v in values]
    errors = np.array([[v.mean - v.ci_low for v in values], [v.ci_high - v.mean for v in values]])
    bars = axes.bar(labels, means, color="tab:blue", yerr=errors if errors.any() else None, capsize=4)
    axes.bar_label(bars, labels=[f"{m:.2%}" for m in means], label_type="center", color="white")
    low = min(min(means), min(v.ci_low for v in values))
    axes.set_ylim(max(0.0, low - (1 - low) * 0.5 - 0.01), 1.0)
    axes.set(xlabel=axis_label, ylabel="test accuracy", title=f"{title}: test accuracy")
    return figure


def l2_histograms_figure(title: str, kernels: dict[str, list[tuple[str, np.ndarray]]]) -> Figure:
    """Overlaid kernel-weight histograms per layer, one colour per label (report 1-4 / 2-4)."""
    layer_names = [name for name, _ in next(iter(kernels.values()))]
    columns = min(3, len(layer_names))
    rows = -(-len(layer_names) // columns)
    figure = Figure(figsize=(4 * columns, 2.8 * rows + 0.5), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False).ravel()
    for index, layer in enumerate(layer_names):
        axes = grid[index]
        for label, layers in kernels.items():
            values = dict(layers)[layer].ravel()
            # one filled outline, not 80 bars: as plot's histograms, and as quick to draw
            axes.hist(values, bins=80, histtype="stepfilled", alpha=0.55, density=True,
                      label=f"L2 {label} (std {values.std():.3g})")
        axes.set_title(layer, fontsize=10)
        axes.set_xlabel("weight value")
        axes.legend(fontsize=7)
    for axes in grid[len(layer_names):]:
        axes.axis("off")
    figure.suptitle(f"{title}: kernel weights with and without L2 (density)")
    return figure
