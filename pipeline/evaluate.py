"""evaluate stage: one (setting, seed)'s trained model on the test split.

Writes test loss/accuracy and per-class accuracy (a DVC metric), the confusion pairs (a DVC plot
with the `confusion` template), the test predictions with their confidences, and what the plot and
report stages draw from the model (pipeline.model.view: they need no TensorFlow); logs the same
numbers to the setting's MLflow run.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import numpy as np

from pipeline.common import cli
from pipeline.common.outputs import atomic_file, write_json, write_text
from pipeline.job import load_job
from pipeline.model import view as model_view
from pipeline.model.datasets import CLASS_NAMES
from pipeline.model.runtime import load_tensorflow
from pipeline.training.feed import array_batches

EVALUATE_PREFIX = "evaluate."  # its provenance tags on the training's run: what made the test numbers


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> np.ndarray:
    """Rows: true class; columns: predicted class."""
    pairs = y_true.astype(int) * classes + y_pred.astype(int)
    return np.bincount(pairs, minlength=classes * classes).reshape(classes, classes)


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    totals = matrix.sum(axis=1)
    return np.divide(np.diag(matrix), totals, out=np.zeros(len(matrix)), where=totals > 0)


def confused_pairs(matrix: np.ndarray, names: list[str], top: int = 5) -> list[dict]:
    """The class pairs mistaken for each other most often, both directions added up."""
    pairs = []
    for i in range(len(matrix)):
        for j in range(i + 1, len(matrix)):
            pairs.append({"classes": [names[i], names[j]], "count": int(matrix[i, j] + matrix[j, i]),
                          f"{names[i]}->{names[j]}": int(matrix[i, j]), f"{names[j]}->{names[i]}": int(matrix[j, i])})
    return sorted(pairs, key=lambda pair: -pair["count"])[:top]


def confusion_csv(y_true: np.ndarray, y_pred: np.ndarray, names: list[str]) -> str:
    """One row per test image, class names as DVC's confusion template expects."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["actual", "predicted"])
    writer.writerows((names[t], names[p]) for t, p in zip(y_true, y_pred))
    return buffer.getvalue()


def evaluation(probabilities: np.ndarray, y_true: np.ndarray, loss: float, names: list[str]) -> dict:
    y_pred = probabilities.argmax(axis=1)
    matrix = confusion_matrix(y_true, y_pred, len(names))
    return {
        "test_loss": float(loss),
        "test_accuracy": float((y_pred == y_true).mean()),
        "per_class_accuracy": {name: round(float(acc), 6) for name, acc in zip(names, per_class_accuracy(matrix))},
        "most_confused": confused_pairs(matrix, names),
    }


def test_loss(model, probabilities: np.ndarray, y_test: np.ndarray) -> float:
    """What `model.evaluate` reports as loss (the compiled cross-entropy plus the L2 penalty),
    from the predictions already made: one pass over the test set instead of two."""
    import keras

    onehot = keras.utils.to_categorical(y_test, probabilities.shape[1])
    cross_entropy = keras.ops.mean(keras.losses.categorical_crossentropy(onehot, probabilities))
    return float(cross_entropy) + sum(float(penalty) for penalty in model.losses)


def view_of(model, x_test: np.ndarray, probabilities: np.ndarray, y_test: np.ndarray) -> model_view.ModelView:
    """What the figures and the report draw from the model, with the auto feature-map pair's maps."""
    from pipeline.model.network import conv_activations, summary_rows, weighted_layers

    pair = model_view.pick_feature_map_pair(probabilities, y_test)
    rows, trainable, frozen = summary_rows(model)
    return model_view.ModelView(rows, trainable, frozen, weighted_layers(model), pair,
                                conv_activations(model, np.asarray(x_test[list(pair)])))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.evaluate", description=__doc__)
    parser.add_argument("job", type=Path, help="the setting's job file: its dataset and data")
    parser.add_argument("model", type=Path, help="the trained .keras model")
    parser.add_argument("run", type=Path, help="run-id JSON written by the train stage")
    parser.add_argument("metrics", type=Path, help="JSON with test metrics (written)")
    parser.add_argument("confusion", type=Path, help="CSV actual,predicted per test image (written)")
    parser.add_argument("predictions", type=Path, help=".npy of test-set class probabilities (written)")
    parser.add_argument("view", type=Path, help=".npz of what the figures and the report draw from the model "
                        "(written; pipeline.model.view)")
    args = parser.parse_args(argv)
    job = load_job(args.job, seed=0)  # which seed trained the model does not matter here
    names = CLASS_NAMES[job.dataset]

    from pipeline.tracking import store as tracking
    from pipeline.tracking.outcome import run_outcome
    from pipeline.tracking.run_files import recorded_run

    tracking.connect(tracking.project_root())
    load_tensorflow()
    run_id = recorded_run(args.run)
    with run_outcome(run_id, ends_run=False):
        import keras
        import mlflow

        from pipeline.provenance.record import record_provenance

        record_provenance(mlflow.MlflowClient(), run_id, prefix=EVALUATE_PREFIX)

        model = keras.models.load_model(args.model)
        x_test = np.load(job.data / "x_test.npy", mmap_mode="r")
        y_test = np.load(job.data / "y_test.npy")
        probabilities = model.predict(array_batches(x_test, batch_size=512), verbose=0)
        results = evaluation(probabilities, y_test, test_loss(model, probabilities, y_test), names)
        model_view.write(args.view, view_of(model, x_test, probabilities, y_test))

        with atomic_file(args.predictions) as tmp:
            with tmp.open("wb") as handle:
                np.save(handle, probabilities.astype(np.float32))
        write_text(args.confusion, confusion_csv(y_test, probabilities.argmax(axis=1), names))
        write_json(args.metrics, results)
        logged = {"test_loss": results["test_loss"], "test_accuracy": results["test_accuracy"],
                  **{f"test_accuracy_{n}": v for n, v in results["per_class_accuracy"].items()}}
        mlflow.log_metrics(tracking.rounded(logged), run_id=run_id)
        mlflow.log_dict(results, "evaluation/test_metrics.json", run_id=run_id)
        mlflow.log_artifact(str(args.confusion), "evaluation", run_id=run_id)
    print(f"{args.model}: test_accuracy {results['test_accuracy']:.4f}, test_loss {results['test_loss']:.4f}",
          file=sys.stderr)


if __name__ == "__main__":
    cli.run(main)
