"""What the figures and the report draw from a trained model, saved by the evaluate stage that
has it loaded anyway: its layer table, every conv and dense kernel and bias, and the conv
activations of the feature-map pair that `plot.feature_map_images: auto` picks. The plot and
report stages read this file instead of the model, so they never import TensorFlow (about 6 s
per stage on a 2-core CPU: python -m bench.stage_costs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.common.outputs import atomic_file


@dataclass
class ModelView:
    rows: list[tuple[str, str, tuple, int]]  # (layer, type, output shape, parameters), as Keras' summary
    trainable: int
    frozen: int
    weights: list[tuple[str, np.ndarray, np.ndarray]]  # (layer, kernel, bias) of every conv and dense layer
    pair: tuple[int, int]  # test-set indices of the auto feature-map pair
    activations: dict[str, np.ndarray]  # conv layer -> its output for the pair, (2, h, w, channels)


def pick_feature_map_pair(probabilities: np.ndarray, y_true: np.ndarray) -> tuple[int, int]:
    """The most confident mistake, and the most confident correct image of the class it was
    taken for (the report's 6-taken-for-1 beside a real 1); without mistakes, the two most
    confident images of different classes."""
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    wrong = np.flatnonzero(predicted != y_true)
    if len(wrong):
        mistake = int(wrong[np.argmax(confidence[wrong])])
        same = np.flatnonzero((y_true == predicted[mistake]) & (predicted == y_true))
        if len(same):
            return mistake, int(same[np.argmax(confidence[same])])
    order = np.argsort(-confidence, kind="stable")
    first = int(order[0])
    if len(set(y_true.tolist())) == 1:
        return first, int(order[1])
    other = next(int(i) for i in order if y_true[i] != y_true[first])
    return first, other


def write(path: Path, view: ModelView) -> None:
    meta = {"rows": view.rows, "trainable": view.trainable, "frozen": view.frozen,
            "weights": [name for name, _, _ in view.weights], "activations": list(view.activations)}
    arrays = {"meta": np.array(json.dumps(meta)), "pair": np.asarray(view.pair)}
    for name, kernel, bias in view.weights:
        arrays[f"kernel/{name}"], arrays[f"bias/{name}"] = kernel, bias
    arrays.update({f"activation/{name}": values for name, values in view.activations.items()})
    with atomic_file(path) as tmp:
        with tmp.open("wb") as handle:
            np.savez(handle, **arrays)


def read(path: Path) -> ModelView:
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(str(npz["meta"]))
        return ModelView([(name, kind, tuple(shape), count) for name, kind, shape, count in meta["rows"]],
                         meta["trainable"], meta["frozen"],
                         [(name, npz[f"kernel/{name}"], npz[f"bias/{name}"]) for name in meta["weights"]],
                         tuple(int(i) for i in npz["pair"]),
                         {name: npz[f"activation/{name}"] for name in meta["activations"]})
