"""TensorFlow in a stage's process: imported quietly, and its process-wide options for training."""

from __future__ import annotations

import contextlib
import os
import sys

from pipeline.params.schema import TrainConfig


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


# Keras imports two optional extras with itself when they are installed (MLflow installs both): its
# scikit-learn wrappers (which import SciPy) and a pyplot image gallery. No stage uses either;
# without them each TensorFlow stage starts ~2.6 s sooner on a 2-core CPU (docs/performance.md).
KERAS_EXTRAS_UNUSED = ("sklearn", "matplotlib.pyplot")


@contextlib.contextmanager
def _not_importable(names):
    """Within the block, importing one of `names` that is not imported yet fails as if it were not
    installed (what Keras checks for); afterwards it imports as usual."""
    hidden = [name for name in names if name not in sys.modules]
    sys.modules.update(dict.fromkeys(hidden))
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]


def load_tensorflow() -> None:
    """Import TensorFlow without its C++ chatter: on a CPU-only machine each stage would print
    ~9 lines of CUDA probing ("failed call to cuInit") and CPU-feature notes, some before its
    logging is set up; and without Keras' unused extras. A failing import still raises, with its
    message. TF_CPP_MIN_LOG_LEVEL, if the user set it, wins (0 shows everything)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    quiet = os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    with _stderr_discarded() if quiet else contextlib.nullcontext(), _not_importable(KERAS_EXTRAS_UNUSED):
        import tensorflow  # noqa: F401


# /proc/cpuinfo flags of the CPUs that compute bf16 dot products natively (oneDNN uses them)
BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def cpu_flags() -> set[str]:
    """The CPU's feature flags (/proc/cpuinfo; empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            return set(next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), []))
    except OSError:
        return set()


def resolved_precision(choice: str, flags: set[str], gpu_capabilities: list[tuple[int, int]]) -> str:
    """What `train.precision` means on this machine. `auto`: bfloat16 compute where the chip has
    bf16 instructions — a GPU of compute capability 8.0 or newer, else a CPU with AMX-BF16
    (Sapphire Rapids and later: 2-2.7x the float32 speed of these models in plain Keras) or
    AVX512-BF16 without AMX (AMD Zen 5: 1.4-1.5x through the train stage; Zen 4 and Cooper Lake
    have the same instructions, unmeasured) — and float32 elsewhere."""
    if choice != "auto":
        return choice
    if gpu_capabilities:
        return "mixed_bfloat16" if min(gpu_capabilities) >= (8, 0) else "float32"
    return "mixed_bfloat16" if flags & BF16_CPU_FLAGS else "float32"


def configure_runtime(train: TrainConfig, seed: int):
    """Seed, determinism, precision policy, GPU memory growth; return the strategy that models
    must be built under (the default one unless `distribute: mirrored`) and the precision used."""
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        # settings run side by side on one GPU: each takes memory as it needs it, not all of it
        tf.config.experimental.set_memory_growth(gpu, True)
    keras.utils.set_random_seed(seed)
    if train.deterministic:
        tf.config.experimental.enable_op_determinism()
    capabilities = [tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0)))
                    for gpu in gpus]
    precision = resolved_precision(train.precision, cpu_flags(), capabilities)
    keras.mixed_precision.set_global_policy(precision)
    if train.distribute == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
        devices = ", ".join(strategy.extended.worker_devices)
        print(f"MirroredStrategy: {strategy.num_replicas_in_sync} replica(s) on {devices}", file=sys.stderr)
        return strategy, precision
    return tf.distribute.get_strategy(), precision


def device_line(precision: str) -> str:
    """Where and how a stage trains, in one line, with a warning when nvidia-smi sees a GPU that
    TensorFlow does not (the plain `tensorflow` wheel has no CUDA: it would train on the CPU)."""
    import shutil
    import subprocess

    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in gpus]
        return f"training on {len(gpus)} GPU(s) ({', '.join(names)}) in {precision}"
    line = f"training on the CPU ({os.cpu_count()} cores) in {precision}"
    if shutil.which("nvidia-smi"):
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout.strip().splitlines()
        if listed:
            line += (f"; warning: nvidia-smi sees {len(listed)} GPU(s) that TensorFlow does not (install its CUDA "
                     "build: make setup GPU=1)")
    return line
