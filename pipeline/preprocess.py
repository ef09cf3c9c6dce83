"""preprocess stage: raw archive -> memory-mappable float32 arrays under data/prepared/<dataset>/.

Writes x_{train,val,test}.npy (float32, N x H x W x 1: gray; CIFAR-10 also under rgb/, N x H x W x 3,
z-scored per channel), y_{train,val,test}.npy (integer class
labels, uint8; training one-hot encodes them, as the report does), normalization.json (the
statistics to apply at inference) and a summary JSON (a DVC metric: shapes, class counts,
mean/std per split).
"""

from __future__ import annotations

import argparse
import functools
import pickle
import sys
import tarfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from pipeline.common import cli
from pipeline.common.errors import PipelineError
from pipeline.common.outputs import atomic_dir, write_json
from pipeline.common.state_files import read_json
from pipeline.download import CIFAR_DIR, CIFAR_TEST_BATCH, CIFAR_TRAIN_BATCHES
from pipeline.model.datasets import CLASS_NAMES, num_classes
from pipeline.params.load import load_params
from pipeline.params.schema import Params, PreprocessConfig

GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma, as in the report (2-5)


# What reading an archive that is missing, cut short or not what it should be raises
UNREADABLE_ARCHIVE = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, tarfile.TarError,
                      pickle.UnpicklingError)


def load_mnist(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Keras' mnist.npz -> (x_train, y_train, x_test, y_test), images (N, 28, 28, 1) uint8."""
    with np.load(path, allow_pickle=False) as npz:
        return (npz["x_train"][..., None], npz["y_train"], npz["x_test"][..., None], npz["y_test"])


def _read_cifar_batch(tar: tarfile.TarFile, name: str) -> tuple[np.ndarray, np.ndarray]:
    # Unpickling runs code from the file: this archive's checksum was verified by the download
    # stage against the published digest (or the mirror's manifest) before it reached us.
    batch = pickle.loads(tar.extractfile(f"{CIFAR_DIR}/{name}").read(), encoding="bytes")
    rows = np.asarray(batch[b"data"], dtype=np.uint8)
    images = rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # CHW rows -> NHWC
    return images, np.asarray(batch[b"labels"], dtype=np.uint8)


def load_cifar10(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Toronto's cifar-10-python.tar.gz -> (x_train, y_train, x_test, y_test), RGB uint8 NHWC.

    Members are read in memory; nothing is extracted to disk, so member paths cannot escape.
    """
    with tarfile.open(path, "r:gz") as tar:
        train = [_read_cifar_batch(tar, name) for name in CIFAR_TRAIN_BATCHES]
        x_test, y_test = _read_cifar_batch(tar, CIFAR_TEST_BATCH)
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return x_train, y_train, x_test, y_test


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) -> (N, H, W, 1) float32, Gray = 0.299 R + 0.587 G + 0.114 B (in float64)."""
    gray = rgb.astype(np.float64) @ np.asarray(GRAY_WEIGHTS)
    return gray[..., None].astype(np.float32)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): each class gives round(fraction * its count) images to val."""
    rng = np.random.default_rng(seed)
    val = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        val.append(rng.permutation(members)[: round(fraction * len(members))])
    val_idx = np.sort(np.concatenate(val))
    train_idx = np.setdiff1d(np.arange(len(labels)), val_idx)
    return train_idx, val_idx


def zscore_stats(x_train: np.ndarray) -> dict:
    """Mean and std of the training split only (val/test statistics must not leak in): one pair
    for gray images, one per channel for color ones."""
    x = x_train.astype(np.float64)
    if x.shape[-1] == 1:
        return {"mean": float(x.mean()), "std": float(x.std())}
    return {"mean": x.mean(axis=(0, 1, 2)).tolist(), "std": x.std(axis=(0, 1, 2)).tolist()}


def standardize(x: np.ndarray, stats: dict) -> np.ndarray:
    mean, std = np.asarray(stats["mean"]), np.asarray(stats["std"])
    return ((x.astype(np.float64) - mean) / std).astype(np.float32)


def standardize_per_image(x: np.ndarray) -> np.ndarray:
    """Each image to mean 0 / std 1 by its own statistics (a flat image stays all zeros)."""
    x = x.astype(np.float64)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    std = x.std(axis=(1, 2, 3), keepdims=True)
    return ((x - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)


PositiveStd = Annotated[float, Field(gt=0, allow_inf_nan=False)]


@pydantic_dataclass(config=ConfigDict(extra="forbid"))
class _ZScore:
    method: Literal["zscore"]
    source: str
    mean: Annotated[float, Field(allow_inf_nan=False)] | list[Annotated[float, Field(allow_inf_nan=False)]]
    std: PositiveStd | list[PositiveStd]


@pydantic_dataclass(config=ConfigDict(extra="forbid"))
class _PerImage:
    method: Literal["per_image"]


def read_normalization(directory: Path) -> dict:
    """The normalization record beside prepared arrays, as prepare() made it."""
    record = read_json(directory / "normalization.json", Annotated[_ZScore | _PerImage, Field(discriminator="method")],
                       "the normalization record", "the preprocess stage writes it: dvc repro preprocess@<dataset>")
    return asdict(record)


def prepare(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
    config: PreprocessConfig,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict]:
    """Images in (gray, or color for CIFAR-10's rgb variant), {split: (x float32, y uint8)} and the
    normalization record out."""
    train_idx, val_idx = stratified_split(y_train, config.val_fraction, config.seed)
    raw = {
        "train": (x_train[train_idx], y_train[train_idx]),
        "val": (x_train[val_idx], y_train[val_idx]),
        "test": (x_test, y_test),
    }
    if config.normalization == "zscore":
        stats = zscore_stats(raw["train"][0])
        normalization = {"method": "zscore", "source": "training split", **stats}
        transform = functools.partial(standardize, stats=stats)
    else:
        normalization = {"method": "per_image"}
        transform = standardize_per_image
    splits = {name: (transform(x), y.astype(np.uint8)) for name, (x, y) in raw.items()}
    return splits, normalization


def summarize(splits: dict[str, tuple[np.ndarray, np.ndarray]], normalization: dict, classes: int) -> dict:
    summary = {"normalization": normalization["method"]}
    for name, (x, y) in splits.items():
        summary[name] = {
            "shape": list(x.shape),
            "mean": round(float(x.mean(dtype=np.float64)), 6),
            "std": round(float(x.std(dtype=np.float64)), 6),
            "class_counts": np.bincount(y, minlength=classes).tolist(),
        }
    return summary


@dataclass(frozen=True)
class PreprocessJob:
    dataset: str
    config: PreprocessConfig


def stage_params(params: Params, dataset: str) -> PreprocessJob:
    """The part of params.yaml this stage reads (dvc.yaml declares the same keys)."""
    return PreprocessJob(dataset, params.preprocess)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.preprocess", description=__doc__)
    parser.add_argument("dataset", choices=sorted(CLASS_NAMES))
    parser.add_argument("raw", type=Path, help="the archive written by the download stage")
    parser.add_argument("out", type=Path, help="directory for the prepared arrays")
    parser.add_argument("summary", type=Path, help="JSON summary (a DVC metric)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    job = stage_params(load_params(args.params), args.dataset)

    color = None
    try:
        x_train, y_train, x_test, y_test = (load_mnist if job.dataset == "mnist" else load_cifar10)(args.raw)
    except UNREADABLE_ARCHIVE as exc:
        # the download stage verified the archive it wrote: this one is missing, or was changed since
        said = exc.strerror if isinstance(exc, OSError) and exc.strerror else (str(exc).splitlines() or [""])[0]
        raise PipelineError(f"{args.raw}: cannot read the {job.dataset} archive ({type(exc).__name__}: {said}); "
                            f"the download stage writes it: dvc repro download@{job.dataset}") from None
    if job.dataset == "cifar10":
        color = prepare(x_train, y_train, x_test, y_test, job.config)  # for settings with `color: rgb`
        x_train, x_test = to_gray(x_train), to_gray(x_test)
    splits, normalization = prepare(x_train, y_train, x_test, y_test, job.config)

    with atomic_dir(args.out) as tmp:
        for directory, prepared in ((tmp, (splits, normalization)), (tmp / "rgb", color)):
            if prepared is None:
                continue
            arrays, record = prepared
            directory.mkdir(exist_ok=True)
            for name, (x, y) in arrays.items():
                np.save(directory / f"x_{name}.npy", x)
                np.save(directory / f"y_{name}.npy", y)
            write_json(directory / "normalization.json", record)
    write_json(args.summary, summarize(splits, normalization, num_classes(job.dataset)))
    shapes = ", ".join(f"{name} {x.shape[0]}" for name, (x, _) in splits.items())
    print(f"{args.dataset}: {shapes} -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    cli.run(main)
