"""Pure functions of the evaluate, plot and report stages, on small hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.evaluate import confused_pairs, confusion_matrix, evaluation, per_class_accuracy
from pipeline.model.view import ModelView, pick_feature_map_pair, read, write
from pipeline.params.file import ParamsError
from pipeline.plot import PlotJob, feature_map_images, pick_examples
from pipeline.report import embed_images
from pipeline.reporting.tables import sweep_label

NAMES = ["a", "b", "c"]


def _one_hot_probs(predicted, confidence):
    probs = np.full((len(predicted), 3), 0.0)
    for i, (p, c) in enumerate(zip(predicted, confidence)):
        probs[i] = (1 - c) / 2
        probs[i, p] = c
    return probs


def test_confusion_matrix_and_per_class_accuracy():
    y_true = np.array([0, 0, 1, 1, 1, 2])
    y_pred = np.array([0, 1, 1, 1, 0, 2])
    matrix = confusion_matrix(y_true, y_pred, 3)
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [1, 2, 0], [0, 0, 1]])
    np.testing.assert_allclose(per_class_accuracy(matrix), [0.5, 2 / 3, 1.0])
    assert confused_pairs(matrix, NAMES)[0] == {"classes": ["a", "b"], "count": 2, "a->b": 1, "b->a": 1}


def test_evaluation_numbers():
    y_true = np.array([0, 1, 2, 2])
    probs = _one_hot_probs([0, 1, 1, 2], [0.9, 0.8, 0.7, 0.6])
    result = evaluation(probs, y_true, loss=0.5, names=NAMES)
    assert result["test_accuracy"] == 0.75 and result["test_loss"] == 0.5
    assert result["per_class_accuracy"] == {"a": 1.0, "b": 1.0, "c": 0.5}


def test_feature_map_pair_is_a_mistake_and_a_correct_image_of_the_mistaken_class():
    y_true = np.array([0, 1, 1, 2, 1, 0])
    probs = _one_hot_probs([0, 1, 1, 1, 1, 1], [0.9, 0.6, 0.95, 0.99, 0.7, 0.5])
    # mistakes: #3 (2 taken for 1, 0.99) and #5 (0 taken for 1, 0.5); correct 1s: #1, #2, #4
    assert pick_feature_map_pair(probs, y_true) == (3, 2)
    correct, wrong = pick_examples(probs, y_true, 2)
    np.testing.assert_array_equal(correct, [0, 1])
    np.testing.assert_array_equal(wrong, [3, 5])


def test_feature_map_pair_without_mistakes_takes_two_classes():
    y_true = np.array([0, 0, 1])
    probs = _one_hot_probs([0, 0, 1], [0.99, 0.98, 0.9])
    assert pick_feature_map_pair(probs, y_true) == (0, 2)


def test_sweep_labels_follow_the_report():
    values = {"kernel": 5, "strides": 2, "l2": 0.0, "learning_rate": 0.003, "optimizer": "sgd", "color": "rgb"}
    assert sweep_label("kernel", values) == "(5,5)"
    assert sweep_label("strides", values) == "(2,2)"
    assert sweep_label("l2", values) == "NO" and sweep_label("l2", {"l2": 0.001}) == "YES (0.001)"
    assert [sweep_label(key, values) for key in ("learning_rate", "optimizer", "color")] == ["0.003", "sgd", "rgb"]


def test_embed_images_inlines_png(tmp_path):
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(8)))
    html = embed_images('<p><img src="f/x.png" alt="x"></p>', tmp_path)
    assert html == '<p><img src="data:image/png;base64,iVBORw0KGgoAAQIDBAUGBw==" alt="x"></p>'


def test_feature_map_index_out_of_range_names_the_key():
    job = PlotJob(dataset="mnist", examples=8, channels=8, images=(3, 10))
    y_true = np.arange(10) % 3
    with pytest.raises(ParamsError) as caught:
        feature_map_images(job, (0, 1), y_true, "params.yaml")
    assert str(caught.value) == ("params.yaml: plot.feature_map_images.mnist: index 10 is out of range "
                                 "(the test set has 10 images)")
    assert feature_map_images(PlotJob("mnist", 8, 8, (3, 9)), (0, 1), y_true, "params.yaml") == (3, 9)
    assert feature_map_images(PlotJob("mnist", 8, 8, "auto"), (4, 7), y_true, "params.yaml") == (4, 7)


def test_a_model_view_reads_back_as_written(tmp_path):
    rng = np.random.default_rng(0)
    weights = [("conv1", rng.normal(size=(3, 3, 1, 4)), rng.normal(size=4)), ("output", rng.normal(size=(8, 3)),
                                                                            rng.normal(size=3))]
    activations = {"conv2": rng.normal(size=(2, 4, 4, 8)), "conv1": rng.normal(size=(2, 8, 8, 4))}
    view = ModelView([("conv1", "Conv2D", (None, 8, 8, 4), 40)], 67, 0, weights, (5, 2), activations)
    write(tmp_path / "v.npz", view)
    back = read(tmp_path / "v.npz")
    assert (back.rows, back.trainable, back.frozen, back.pair) == (view.rows, 67, 0, (5, 2))
    assert list(back.activations) == ["conv2", "conv1"]  # layer order kept: the figure's rows
    assert all(np.array_equal(back.activations[k], v) for k, v in activations.items())
    assert [name for name, _, _ in back.weights] == ["conv1", "output"]
    assert all(np.array_equal(a, b) for (_, *a_arrays), (_, *b_arrays) in zip(back.weights, weights)
               for a, b in zip(a_arrays, b_arrays))
