"""Tiny datasets in the canonical archive formats, with a class-dependent pattern to learn."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from pipeline.download import CIFAR_DIR, CIFAR_META, CIFAR_TEST_BATCH, CIFAR_TRAIN_BATCHES
from pipeline.model.datasets import CLASS_NAMES


def _patterned_images(labels: np.ndarray, size: int, channels: int, rng) -> np.ndarray:
    """Noise plus a bright block whose position encodes the class: learnable in one epoch."""
    images = rng.integers(0, 60, size=(len(labels), size, size, channels), dtype=np.uint8)
    block = size // 5
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 5)
        r0, c0 = row * 2 * block + 2, col * block
        images[i, r0 : r0 + block, c0 : c0 + block, :] = 250
    return images


def _labels(n: int, rng) -> np.ndarray:
    return rng.permutation(np.arange(n) % 10).astype(np.uint8)


def write_mnist(path: Path, n_train: int = 400, n_test: int = 100, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    y_train, y_test = _labels(n_train, rng), _labels(n_test, rng)
    np.savez_compressed(
        path,
        x_train=_patterned_images(y_train, 28, 1, rng)[..., 0],
        y_train=y_train,
        x_test=_patterned_images(y_test, 28, 1, rng)[..., 0],
        y_test=y_test,
    )
    return path


def _cifar_batch(labels: np.ndarray, rng, name: str) -> bytes:
    images = _patterned_images(labels, 32, 3, rng)
    rows = images.transpose(0, 3, 1, 2).reshape(len(labels), 3072)  # NHWC -> CHW rows
    batch = {
        b"batch_label": name.encode(),
        b"labels": [int(v) for v in labels],
        b"data": rows,
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    }
    return pickle.dumps(batch, protocol=2)


def write_cifar10(path: Path, per_batch: int = 80, n_test: int = 100, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed + 1)
    members = {f"{CIFAR_DIR}/{b}": _cifar_batch(_labels(per_batch, rng), rng, b) for b in CIFAR_TRAIN_BATCHES}
    members[f"{CIFAR_DIR}/{CIFAR_TEST_BATCH}"] = _cifar_batch(_labels(n_test, rng), rng, CIFAR_TEST_BATCH)
    members[f"{CIFAR_DIR}/{CIFAR_META}"] = pickle.dumps(
        {b"label_names": [n.encode() for n in CLASS_NAMES["cifar10"]], b"num_cases_per_batch": per_batch}, protocol=2
    )
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_mirror(directory: Path) -> Path:
    """A mirror directory: both archives plus SHA256SUMS, as the README describes."""
    directory.mkdir(parents=True, exist_ok=True)
    files = [write_mnist(directory / "mnist.npz"), write_cifar10(directory / "cifar-10-python.tar.gz")]
    (directory / "SHA256SUMS").write_text("".join(f"{sha256(f)}  {f.name}\n" for f in files))
    return directory
