"""In-memory arrays as Keras input: tf.data batches with tf.data's autotuning off.

Given NumPy arrays, Keras builds a tf.data pipeline with autotuning on and makes a new iterator of
it every epoch (training and validation) and every `predict`. With TF 2.21, deleting such an
iterator waits until its autotuning thread's current sleep runs out (the sleep doubles up to a
minute; the deletion does not wake it). On a 2-core CPU, half the 45 s grayscale-CIFAR epochs
began with 34-35 s of idle waiting, a validation ended with 5 s of it, and `fit` returned up to
34 s after its last epoch. These batches are the same computation without that thread:
`python -m bench.feed` measures both.
"""

from __future__ import annotations

import numpy as np


def array_batches(x: np.ndarray, labels: np.ndarray | None = None, *, batch_size: int, classes: int = 0,
                  shuffle_seed: int | None = None):
    """A tf.data dataset of `x` in batches, with one-hot `labels` beside each batch if given (as
    `classes` columns); with `shuffle_seed`, in a new seeded order every epoch, else in order."""
    import tensorflow as tf

    # On the CPU: tf.data's functions run there, and a GPU copy of the arrays would be read back.
    with tf.device("CPU:0"):
        images = tf.constant(np.asarray(x))
        targets = None if labels is None else tf.constant(np.asarray(labels, dtype=np.int32))
    indices = tf.data.Dataset.range(len(x))
    if shuffle_seed is not None:
        indices = indices.shuffle(len(x), seed=shuffle_seed, reshuffle_each_iteration=True)

    def gather(batch):
        if targets is None:
            return tf.gather(images, batch)
        return tf.gather(images, batch), tf.one_hot(tf.gather(targets, batch), classes)

    options = tf.data.Options()
    options.autotune.enabled = False
    return indices.batch(batch_size).map(gather).prefetch(1).with_options(options)
