"""What the two datasets are: image shape and class names. Every stage that counts classes or
shapes images reads them here (dvc.yaml lists this module as their dependency)."""

from __future__ import annotations

INPUT_SHAPES = {"mnist": (28, 28, 1), "cifar10": (32, 32, 1)}  # CIFAR-10 after the conversion to gray
CLASS_NAMES = {
    "mnist": [str(digit) for digit in range(10)],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}


def num_classes(dataset: str) -> int:
    return len(CLASS_NAMES[dataset])
