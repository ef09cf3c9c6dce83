"""Pure preprocessing functions, on synthetic arrays with hand-computed expectations."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.params.schema import PreprocessConfig
from pipeline.preprocess import load_cifar10, load_mnist, prepare, standardize_per_image, stratified_split, to_gray
from tests.datasets import write_cifar10, write_mnist


def test_gray_formula_hand_computed():
    rgb = np.array([[[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [10, 20, 30]]]], dtype=np.uint8)
    gray = to_gray(rgb)
    assert gray.shape == (1, 2, 2, 1) and gray.dtype == np.float32
    expected = [[76.245, 149.685], [29.07, 0.299 * 10 + 0.587 * 20 + 0.114 * 30]]  # 17.15
    np.testing.assert_allclose(gray[0, ..., 0], expected, rtol=1e-6)


def test_split_is_stratified_deterministic_and_disjoint():
    labels = np.repeat(np.arange(10), [50, 60, 70, 80, 90, 100, 110, 120, 130, 140])
    train, val = stratified_split(labels, 0.1, seed=3)
    assert len(np.intersect1d(train, val)) == 0
    assert len(train) + len(val) == len(labels)
    np.testing.assert_array_equal(np.bincount(labels[val]), [5, 6, 7, 8, 9, 10, 11, 12, 13, 14])
    again_train, again_val = stratified_split(labels, 0.1, seed=3)
    np.testing.assert_array_equal(val, again_val)
    _, other_val = stratified_split(labels, 0.1, seed=4)
    assert not np.array_equal(val, other_val)


def _gray_splits(rng, n=500):
    x_train = rng.normal(100, 20, size=(n, 4, 4, 1)).astype(np.float32)
    x_test = rng.normal(140, 50, size=(200, 4, 4, 1)).astype(np.float32)  # deliberately different
    return x_train, np.arange(n) % 10, x_test, np.arange(200) % 10


def test_zscore_uses_training_split_only():
    rng = np.random.default_rng(0)
    x_train, y_train, x_test, y_test = _gray_splits(rng)
    splits, normalization = prepare(x_train, y_train, x_test, y_test, PreprocessConfig(0.2, "zscore", 0))
    x, _ = splits["train"]
    assert abs(x.mean()) < 1e-5 and abs(x.std() - 1) < 1e-5
    train_idx, _ = stratified_split(y_train, 0.2, 0)
    assert normalization["mean"] == pytest.approx(float(x_train[train_idx].mean()), rel=1e-6)
    # the test split was shifted by +40 and scaled by 2.5: untouched by its own statistics
    assert splits["test"][0].mean() == pytest.approx(40 / normalization["std"], rel=0.1)
    assert splits["test"][0].std() == pytest.approx(50 / normalization["std"], rel=0.1)
    assert all(x.dtype == np.float32 and y.dtype == np.uint8 for x, y in splits.values())


def test_per_image_standardization():
    rng = np.random.default_rng(1)
    x = rng.normal(5, 3, size=(6, 8, 8, 1))
    x[0] = 7.0  # a flat image must not divide by zero
    out = standardize_per_image(x)
    np.testing.assert_allclose(out[1:].mean(axis=(1, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out[1:].std(axis=(1, 2, 3)), 1, atol=1e-5)
    assert np.all(out[0] == 0)


def test_loaders_read_canonical_layouts(tmp_path):
    x_train, y_train, x_test, y_test = load_mnist(write_mnist(tmp_path / "mnist.npz", 50, 20))
    assert x_train.shape == (50, 28, 28, 1) and y_test.shape == (20,)
    x_train, y_train, x_test, y_test = load_cifar10(write_cifar10(tmp_path / "c.tar.gz", per_batch=10, n_test=20))
    assert x_train.shape == (50, 32, 32, 3) and x_test.shape == (20, 32, 32, 3)
    assert x_train.dtype == np.uint8 and set(np.unique(y_train)) <= set(range(10))
    # the class block (value 250, on all three channels) is where the fixture put it: HWC order is right
    row, col = divmod(int(y_train[0]), 5)
    assert (x_train[0, row * 12 + 2, col * 6] == 250).all()


def test_color_images_are_standardized_per_channel_on_the_training_split():
    rng = np.random.default_rng(0)
    labels = np.arange(200) % 10
    images = np.stack([rng.normal(10, 2, (200, 4, 4)), rng.normal(50, 5, (200, 4, 4)),
                       rng.normal(200, 20, (200, 4, 4))], axis=-1)
    config = PreprocessConfig(val_fraction=0.2, normalization="zscore", seed=0)
    splits, record = prepare(images, labels, images[:20], labels[:20], config)
    x_train = splits["train"][0]
    assert x_train.shape[-1] == 3 and len(record["mean"]) == 3
    np.testing.assert_allclose(x_train.mean(axis=(0, 1, 2)), 0, atol=1e-6)
    np.testing.assert_allclose(x_train.std(axis=(0, 1, 2)), 1, atol=1e-6)
