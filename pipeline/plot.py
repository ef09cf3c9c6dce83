"""plot stage: the report's figures for one setting, as PNGs logged to its MLflow run.

learning_curves.png  train/val accuracy and loss per epoch            (report 1-1 / 2-1)
examples.png         correctly and wrongly classified test images       (report 1-2 / 2-2)
feature_maps.png     every conv layer's activations for two test images (report 1-3 / 2-3)
weights.png          weight and bias histograms per layer               (report 1-4 / 2-4)
confusion.png        confusion matrix and the most confused class pairs (report 2-2)
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pipeline.common import cli
from pipeline.common.outputs import atomic_dir
from pipeline.evaluate import confusion_matrix
from pipeline.job import load_job
from pipeline.model import view as model_view
from pipeline.model.datasets import CLASS_NAMES
from pipeline.model.runtime import load_tensorflow
from pipeline.params.file import ParamsError
from pipeline.params.load import load_params
from pipeline.params.schema import ImagePair, Params
from pipeline.reporting.figure_names import FIGURES
from pipeline.training.history import read_history

# file name (reports/figures/<setting>/<name>.png) -> caption; the report shows them in this order



@dataclass(frozen=True)
class PlotJob:
    dataset: str
    examples: int
    channels: int
    images: ImagePair


def stage_params(params: Params, name: str) -> PlotJob:
    """The part of params.yaml this stage reads (dvc.yaml declares the same keys)."""
    dataset = params.settings[name].dataset
    return PlotJob(dataset, params.plot.examples, params.plot.feature_map_channels,
                   getattr(params.plot.feature_map_images, dataset))


def pick_examples(probabilities: np.ndarray, y_true: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Test indices: the first `count` correct ones and the `count` most confident mistakes."""
    predicted = probabilities.argmax(axis=1)
    correct = np.flatnonzero(predicted == y_true)[:count]
    wrong = np.flatnonzero(predicted != y_true)
    wrong = wrong[np.argsort(-probabilities[wrong].max(axis=1), kind="stable")][:count]
    return correct, wrong


def show(axes, image: np.ndarray) -> None:
    """A standardized image as a picture: gray, or its colors stretched back to 0..1."""
    if image.shape[-1] == 1:
        axes.imshow(image[..., 0], cmap="gray")
    else:
        axes.imshow((image - image.min()) / max(float(image.max() - image.min()), 1e-6))


def _caption(names, y_true, probabilities, index) -> str:
    predicted = int(probabilities[index].argmax())
    return (f"test #{index}: true {names[int(y_true[index])]},\n"
            f"predicted {names[predicted]} ({probabilities[index, predicted]:.0%})")


def learning_curves_figure(history: dict[str, np.ndarray], title: str) -> Figure:
    figure = Figure(figsize=(10, 4), layout="constrained")
    for axes, metric in zip(figure.subplots(1, 2), ("accuracy", "loss")):
        axes.plot(history["epoch"], history[metric], marker="o", label="train")
        axes.plot(history["epoch"], history[f"val_{metric}"], marker="o", label="validation")
        axes.set(xlabel="epoch", ylabel=metric, title=metric.capitalize())
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(f"{title}: learning curves")
    return figure


def examples_figure(x, y_true, probabilities, correct, wrong, names, title: str) -> Figure:
    columns = max(len(correct), len(wrong), 1)
    figure = Figure(figsize=(1.9 * columns, 4.6), layout="constrained")
    grid = figure.subplots(2, columns, squeeze=False)
    for row, (label, indices) in enumerate((("correct", correct), ("misclassified", wrong))):
        for col in range(columns):
            axes = grid[row, col]
            axes.set_xticks([])
            axes.set_yticks([])
            if col < len(indices):
                index = int(indices[col])
                show(axes, x[index])
                predicted = int(probabilities[index].argmax())
                axes.set_title(f"true {names[int(y_true[index])]}\npred {names[predicted]} "
                               f"({probabilities[index, predicted]:.0%})", fontsize=9,
                               color="tab:green" if row == 0 else "tab:red")
            else:
                axes.axis("off")
        grid[row, 0].set_ylabel(label, fontsize=11)
    figure.suptitle(f"{title}: test examples (true class, predicted class, confidence)")
    return figure


def feature_maps_figure(image_pair, activations, layer_names, captions, channels: int, title: str) -> Figure:
    """Rows: each conv layer for each image; columns: the input, then the first channels."""
    rows = len(layer_names) * len(image_pair)
    shown = min(channels, min(a.shape[-1] for a in activations))
    figure = Figure(figsize=(1.3 * (shown + 1) + 1.5, 1.3 * rows + 0.8), layout="constrained")
    grid = figure.subplots(rows, shown + 1, squeeze=False)
    for layer_index, (name, activation) in enumerate(zip(layer_names, activations)):
        for image_index, image in enumerate(image_pair):
            row = layer_index * len(image_pair) + image_index
            show(grid[row, 0], image)
            grid[row, 0].set_ylabel(f"{name}\n{activation.shape[1]}×{activation.shape[2]}", fontsize=8)
            grid[row, 0].set_title(captions[image_index], fontsize=7)
            for channel in range(shown):
                grid[row, channel + 1].imshow(activation[image_index, ..., channel], cmap="viridis")
                if row == 0:
                    grid[row, channel + 1].set_title(f"channel {channel}", fontsize=8)
            for axes in grid[row]:
                axes.set_xticks([])
                axes.set_yticks([])
    figure.suptitle(f"{title}: feature maps per conv layer (deeper layers below)")
    return figure


def weights_figure(layers: list[tuple[str, np.ndarray, np.ndarray]], title: str) -> Figure:
    figure = Figure(figsize=(9, 2.2 * len(layers) + 0.6), layout="constrained")
    grid = figure.subplots(len(layers), 2, squeeze=False)
    for row, (name, kernel, bias) in enumerate(layers):
        for col, (label, values) in enumerate((("weights", kernel), ("biases", bias))):
            axes = grid[row, col]
            axes.hist(values.ravel(), bins=60, histtype="stepfilled",  # one patch, not 60 bars: half the figure's time
                      color="tab:blue" if col == 0 else "tab:orange")
            axes.set_title(f"{name} {label} (std {values.std():.3g})", fontsize=9)
            axes.set_ylabel("count")
        grid[row, 0].set_xlabel("value")
        grid[row, 1].set_xlabel("value")
    figure.suptitle(f"{title}: weight and bias histograms")
    return figure


def confusion_figure(matrix: np.ndarray, names: list[str], pairs: list[dict], title: str) -> Figure:
    figure = Figure(figsize=(8.5, 7.5), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, shrink=0.8, label="test images")
    axes.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axes.set_yticks(range(len(names)), names)
    axes.set(xlabel="predicted class", ylabel="true class")
    threshold = matrix.max() / 2
    for i in range(len(names)):
        for j in range(len(names)):
            axes.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                      color="white" if matrix[i, j] > threshold else "black")
    top = ", ".join(f"{a}↔{b} {pair['count']}" for pair in pairs[:3] for a, b in [pair["classes"]])
    axes.set_title(f"{title}: confusion matrix\nmost confused: {top}", fontsize=11)
    return figure


def feature_map_images(job: PlotJob, auto_pair: tuple[int, int], y_true, params_path: Path) -> tuple[int, int]:
    if job.images == "auto":
        return auto_pair
    for index in job.images:
        if index >= len(y_true):
            raise ParamsError(params_path, f"plot.feature_map_images.{job.dataset}",
                              f"index {index} is out of range (the test set has {len(y_true)} images)")
    return tuple(job.images)


def explicit_pair_activations(model_path: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    """Feature maps of images the user picked (plot.feature_map_images), from the model itself."""
    load_tensorflow()
    import keras

    from pipeline.model.network import conv_activations

    return conv_activations(keras.models.load_model(model_path), images)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.plot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("setting", help="a key under `settings:` in params.yaml")
    parser.add_argument("job", type=Path, help="the setting's job file: where its test images are")
    parser.add_argument("model", type=Path, help="the trained .keras model (read only for feature-map images "
                        "picked in params.yaml)")
    parser.add_argument("run", type=Path, help="run-id JSON written by the train stage")
    parser.add_argument("history", type=Path, help="per-epoch history CSV from the train stage")
    parser.add_argument("evaluation", type=Path, help="test metrics JSON from the evaluate stage")
    parser.add_argument("predictions", type=Path, help="test probabilities .npy from the evaluate stage")
    parser.add_argument("view", type=Path, help="the model's weights and feature maps .npz from the evaluate stage")
    parser.add_argument("out", type=Path, help="directory for the PNGs (written)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    job = stage_params(load_params(args.params, setting=args.setting), args.setting)
    names = CLASS_NAMES[job.dataset]
    title = args.setting

    data = load_job(args.job, seed=0).data
    x_test = np.load(data / "x_test.npy", mmap_mode="r")
    y_test = np.load(data / "y_test.npy")
    probabilities = np.load(args.predictions)
    view = model_view.read(args.view)
    pair = feature_map_images(job, view.pair, y_test, args.params)
    images = np.asarray(x_test[list(pair)])

    from pipeline.tracking import store as tracking
    from pipeline.tracking.outcome import run_outcome
    from pipeline.tracking.run_files import recorded_run

    tracking.connect(tracking.project_root())
    run_id = recorded_run(args.run)
    with run_outcome(run_id, ends_run=False):
        import mlflow

        # the evaluate stage saved the auto pair's feature maps; only another pair needs the model
        activations = view.activations if pair == view.pair else explicit_pair_activations(args.model, images)
        correct, wrong = pick_examples(probabilities, y_test, job.examples)
        pairs = json.loads(args.evaluation.read_text(encoding="utf-8"))["most_confused"]
        figures = {
            "learning_curves": learning_curves_figure(read_history(args.history), title),
            "examples": examples_figure(x_test, y_test, probabilities, correct, wrong, names, title),
            "feature_maps": feature_maps_figure(
                images, list(activations.values()), list(activations),
                [_caption(names, y_test, probabilities, i) for i in pair], job.channels, title),
            "weights": weights_figure(view.weights, title),
            "confusion": confusion_figure(confusion_matrix(y_test, probabilities.argmax(axis=1), len(names)), names,
                                          pairs, title),
        }
        with atomic_dir(args.out) as tmp:
            for name in FIGURES:
                figures[name].savefig(tmp / f"{name}.png", dpi=110)
        mlflow.log_artifacts(str(args.out), "figures", run_id=run_id)
    print(f"{args.setting}: {len(figures)} figures -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    cli.run(main)
