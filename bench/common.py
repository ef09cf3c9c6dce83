"""What the benchmarks share: the images they train on, an epoch timer, FLOP counts, tables."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from pipeline.model.datasets import IMAGE_SIDES, input_shape, num_classes
from pipeline.params.schema import Params

# The prepared splits' sizes (val_fraction 0.1), for random stand-ins of the whole splits.
FULL_SPLITS = {"mnist": {"train": 54000, "val": 6000}, "cifar10": {"train": 45000, "val": 5000}}


def first_setting(params: Params, dataset: str) -> str | None:
    return next((name for name, s in params.settings.items() if s.dataset == dataset), None)


def bench_job(params: Params, name: str, data: Path = Path()):
    """The job the train stage would run for a setting's first seed, on the data in `data`."""
    from pipeline.job import TrainJob
    from pipeline.params.schema import resolved

    own, train, model = resolved(params, name)
    return TrainJob(name, own, model, train, data=data, data_md5="bench", seed=params.seeds[0])


def bench_data(source: Path, dataset: str, train_samples: int, val_samples: int, out: Path) -> str:
    """Write the splits the benchmark trains on (the prepared ones, cut, or random) to `out`."""
    out.mkdir(parents=True, exist_ok=True)
    prepared = source / dataset
    rng = np.random.default_rng(0)
    for split, count in (("train", train_samples), ("val", val_samples)):
        if (prepared / f"x_{split}.npy").exists():
            x = np.load(prepared / f"x_{split}.npy", mmap_mode="r")
            y = np.load(prepared / f"y_{split}.npy")
            count = count or len(x)
            np.save(out / f"x_{split}.npy", np.asarray(x[:count]))
            np.save(out / f"y_{split}.npy", y[:count])
        else:
            count = count or FULL_SPLITS[dataset][split]
            np.save(out / f"x_{split}.npy", rng.standard_normal((count, *input_shape(dataset)), dtype=np.float32))
            np.save(out / f"y_{split}.npy", rng.integers(0, num_classes(dataset), count).astype(np.uint8))
    return "prepared" if (prepared / "x_train.npy").exists() else "random"


def load_arrays(data: Path) -> list[np.ndarray]:
    return [np.load(data / f"{k}.npy") for k in ("x_train", "y_train", "x_val", "y_val")]


def timed_fit(model, classes: int, x, y, x_val, y_val, batch_size: int, epochs: int, callbacks=()) -> list[float]:
    """Seconds of each epoch of a plain `model.fit` on in-memory arrays (with `callbacks` too)."""
    import keras

    seconds: list[float] = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.started)

    model.fit(x, keras.utils.to_categorical(y, classes),
              validation_data=(x_val, keras.utils.to_categorical(y_val, classes)),
              batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0, callbacks=[EpochTimer(), *callbacks])
    return seconds


def steady(seconds: list[float]) -> float:
    """Median epoch time without the first epoch, which traces and warms up."""
    return statistics.median(seconds[1:])


def forward_flops(model) -> int:
    """Multiply-adds x 2 of one image through the conv and dense layers (the rest is small)."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, channels_out = layer.output.shape
            kernel_h, kernel_w, channels_in, _ = layer.kernel.shape
            total += 2 * height * width * kernel_h * kernel_w * channels_in * channels_out
        elif isinstance(layer, keras.layers.Dense):
            units_in, units_out = layer.kernel.shape
            total += 2 * units_in * units_out
    return int(total)


def epoch_flops(forward: int, train_samples: int, val_samples: int) -> int:
    """Training costs about three forward passes (forward, gradient of inputs and of weights);
    validation one."""
    return 3 * forward * train_samples + forward * val_samples


def table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def add_data_arguments(parser, train_samples: int = 6400, val_samples: int = 1280) -> None:
    """The options every benchmark that trains takes: which params, data, datasets and sizes."""
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, default=Path("data/prepared"),
                        help="prepared data (one folder per dataset); random images where missing")
    parser.add_argument("--datasets", nargs="+", default=["mnist", "cifar10"], choices=sorted(IMAGE_SIDES))
    parser.add_argument("--train-samples", type=int, default=train_samples, help="0: the whole training split")
    parser.add_argument("--val-samples", type=int, default=val_samples, help="0: the whole validation split")
    parser.add_argument("--json", type=Path, help="write every figure here")
