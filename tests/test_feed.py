"""The arrays-to-batches feed of the train and evaluate stages."""

from __future__ import annotations

import numpy as np

from pipeline.training.feed import array_batches

CLASSES = 4


def _images(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Image i is filled with the value i, and its label is i mod CLASSES: pairs can be checked."""
    x = np.repeat(np.arange(count, dtype=np.float32), 6).reshape(count, 2, 3, 1)
    return x, np.arange(count) % CLASSES


def _epoch(dataset) -> tuple[list[int], np.ndarray]:
    """Image ids of one pass in order, and the batch sizes; checks that every label is its image's."""
    ids, sizes = [], []
    for images, onehot in dataset:
        batch_ids = np.asarray(images)[:, 0, 0, 0].astype(int)
        np.testing.assert_array_equal(np.asarray(onehot), np.eye(CLASSES)[batch_ids % CLASSES])
        ids.extend(batch_ids.tolist())
        sizes.append(len(batch_ids))
    return ids, np.asarray(sizes)


def test_shuffled_batches_cover_every_image_once_per_epoch_in_a_new_seeded_order():
    x, y = _images(10)
    dataset = array_batches(x, y, batch_size=4, classes=CLASSES, shuffle_seed=3)
    first, sizes = _epoch(dataset)
    second, _ = _epoch(dataset)
    assert sorted(first) == sorted(second) == list(range(10))
    np.testing.assert_array_equal(sizes, [4, 4, 2])
    assert first != second and first != list(range(10))
    again = array_batches(x, y, batch_size=4, classes=CLASSES, shuffle_seed=3)
    assert [_epoch(again)[0], _epoch(again)[0]] == [first, second]
    assert _epoch(array_batches(x, y, batch_size=4, classes=CLASSES, shuffle_seed=4))[0] != first


def test_unshuffled_batches_keep_the_order_and_images_alone_come_without_labels():
    x, y = _images(7)
    assert _epoch(array_batches(x, y, batch_size=3, classes=CLASSES))[0] == list(range(7))
    batches = [np.asarray(images) for images in array_batches(x, batch_size=3)]
    np.testing.assert_array_equal(np.concatenate(batches), x)


def test_tf_data_autotuning_is_off():
    # its thread makes every iterator's deletion wait (pipeline.training.feed): once per epoch and predict
    x, y = _images(5)
    assert array_batches(x, y, batch_size=2, classes=CLASSES).options().autotune.enabled is False
