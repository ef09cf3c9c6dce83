"""What the two datasets are: image shape and class names. Every stage that counts classes or
shapes images reads them here (dvc.yaml lists this module as their dependency)."""

from __future__ import annotations

IMAGE_SIDES = {"mnist": 28, "cifar10": 32}
TRAINING_IMAGES = {"mnist": 60_000, "cifar10": 50_000}  # the canonical training splits (validation comes out of them)
CHANNELS = {"gray": 1, "rgb": 3}  # CIFAR-10 is converted to gray unless a setting asks for its colors
CLASS_NAMES = {
    "mnist": [str(digit) for digit in range(10)],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}


def num_classes(dataset: str) -> int:
    return len(CLASS_NAMES[dataset])


def input_shape(dataset: str, color: str = "gray") -> tuple[int, int, int]:
    return IMAGE_SIDES[dataset], IMAGE_SIDES[dataset], CHANNELS[color]
