"""TensorFlow in a stage's process: imported quietly, and its process-wide options for training."""

from __future__ import annotations

import contextlib
import os
import sys

from pipeline.config import TrainConfig


@contextlib.contextmanager
def _stderr_discarded():
    """Send what C++ code writes to file descriptor 2 to /dev/null for the block."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def load_tensorflow() -> None:
    """Import TensorFlow without its C++ chatter: on a CPU-only machine each stage would print
    ~9 lines of CUDA probing ("failed call to cuInit") and CPU-feature notes, some before its
    logging is set up. A failing import still raises, with its message. TF_CPP_MIN_LOG_LEVEL,
    if the user set it, wins (0 shows everything)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    quiet = os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    with _stderr_discarded() if quiet else contextlib.nullcontext():
        import tensorflow  # noqa: F401


def configure_runtime(train: TrainConfig, seed: int):
    """Seed, determinism, precision policy, GPU memory growth; return the strategy that models
    must be built under (the default one unless `distribute: mirrored`)."""
    import keras
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        # settings run side by side on one GPU: each takes memory as it needs it, not all of it
        tf.config.experimental.set_memory_growth(gpu, True)
    keras.utils.set_random_seed(seed)
    if train.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy(train.precision)
    if train.distribute == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
        devices = ", ".join(strategy.extended.worker_devices)
        print(f"MirroredStrategy: {strategy.num_replicas_in_sync} replica(s) on {devices}", file=sys.stderr)
        return strategy
    return tf.distribute.get_strategy()
