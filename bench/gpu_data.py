"""The two datasets, packed small enough to send to a GPU box (64 MiB a call) for bench.gpu_sweep:
mnist.npz as it is, grayscale CIFAR-10 as PNG mosaics. The grey levels are rounded to whole
values (the pipeline keeps the fraction): a pixel moves by at most 0.5 of 255.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MOSAIC = 100  # images per side of one packed PNG: 10,000 grayscale CIFAR images each


def pack(mirror: Path, out: Path) -> None:
    """mnist.npz as it is; grayscale CIFAR-10 (pipeline.preprocess.to_gray) as PNG mosaics."""
    import shutil

    from PIL import Image

    from pipeline.preprocess import load_cifar10, to_gray

    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(mirror / "mnist.npz", out / "mnist.npz")
    x_train, y_train, x_test, y_test = load_cifar10(mirror / "cifar-10-python.tar.gz")
    for split, rgb, labels in (("train", x_train, y_train), ("test", x_test, y_test)):
        gray = np.clip(np.rint(to_gray(rgb)[..., 0]), 0, 255).astype(np.uint8)
        for part, start in enumerate(range(0, len(gray), MOSAIC * MOSAIC)):
            tiles = gray[start:start + MOSAIC * MOSAIC]
            rows = -(-len(tiles) // MOSAIC)  # the last row padded with black tiles
            tiles = np.concatenate([tiles, np.zeros((rows * MOSAIC - len(tiles), 32, 32), np.uint8)])
            Image.fromarray(tiles.reshape(rows, MOSAIC, 32, 32).transpose(0, 2, 1, 3).reshape(rows * 32, -1)).save(
                out / f"cifar10_{split}_{part}.png", optimize=True)
        np.save(out / f"cifar10_y_{split}.npy", labels)


def unpack_cifar10(packed: Path) -> tuple[np.ndarray, ...]:
    from PIL import Image

    splits = []
    for split in ("train", "test"):
        parts = sorted(packed.glob(f"cifar10_{split}_*.png"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
        mosaics = [np.asarray(Image.open(p)).reshape(-1, 32, MOSAIC, 32).transpose(0, 2, 1, 3).reshape(-1, 32, 32)
                   for p in parts]
        labels = np.load(packed / f"cifar10_y_{split}.npy")
        splits += [np.concatenate(mosaics)[: len(labels), ..., None].astype(np.float32), labels]
    return tuple(splits)
