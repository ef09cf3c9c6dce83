"""TensorFlow's process-wide options for a training run, set from the train params."""

from __future__ import annotations

import sys

from pipeline.config import TrainConfig


def configure_runtime(train: TrainConfig):
    """Seed, determinism, precision policy, GPU memory growth; return the strategy that models
    must be built under (the default one unless `distribute: mirrored`)."""
    import keras
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        # settings run side by side on one GPU: each takes memory as it needs it, not all of it
        tf.config.experimental.set_memory_growth(gpu, True)
    keras.utils.set_random_seed(train.seed)
    if train.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy(train.precision)
    if train.distribute == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
        devices = ", ".join(strategy.extended.worker_devices)
        print(f"MirroredStrategy: {strategy.num_replicas_in_sync} replica(s) on {devices}", file=sys.stderr)
        return strategy
    return tf.distribute.get_strategy()
