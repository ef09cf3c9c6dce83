"""The report's two architectures as one plain description (no TensorFlow): the layers in order.

`pipeline.model.network` builds the Keras model from this plan, and `pipeline.params.checks` walks
the same plan to reject, before any training, a kernel/strides choice that shrinks a feature map
to nothing: a change of the architecture here reaches both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pipeline.model.datasets import IMAGE_SIDES, num_classes


@dataclass(frozen=True)
class Layer:
    kind: Literal["conv", "pool", "batchnorm", "dropout", "flatten", "dense", "classifier"]
    name: str
    width: int = 0  # filters of a conv, units of a dense layer
    strides: int = 1  # conv only
    rate: float = 0.0  # dropout only


def mnist_plan(strides: int, dense_units: int) -> list[Layer]:
    """Report 1-1: conv 32 -> max-pool -> conv 32 -> flatten -> dense 256 -> dense 10."""
    return [
        Layer("conv", "conv2d_1", 32, strides),
        Layer("pool", "max_pooling2d_1"),
        Layer("conv", "conv2d_2", 32, strides),
        Layer("flatten", "flatten"),
        Layer("dense", "dense_1", dense_units),
        Layer("classifier", "dense_2", num_classes("mnist")),
    ]


def cifar10_plan(strides: int, dropout: tuple[float, float, float]) -> list[Layer]:
    """Report 2-1: three blocks of [conv, conv, batch norm, max-pool, dropout] -> dense 10.

    Strides apply to the first block only: on 32 x 32 inputs, striding all six convolutions
    would leave the later blocks nothing to work on (the report's reasoning).
    """
    plan = []
    for block, (filters, rate) in enumerate(zip((32, 64, 128), dropout), start=1):
        block_strides = strides if block == 1 else 1
        plan += [
            Layer("conv", f"conv2d_{2 * block - 1}", filters, block_strides),
            Layer("conv", f"conv2d_{2 * block}", filters, block_strides),
            Layer("batchnorm", f"batch_normalization_{block}"),
            Layer("pool", f"max_pooling2d_{block}"),
            Layer("dropout", f"dropout_{block}", rate=rate),
        ]
    return plan + [Layer("flatten", "flatten"), Layer("classifier", "dense", num_classes("cifar10"))]


def layer_plan(setting, model_config) -> list[Layer]:
    """The layers of one setting (a config.Setting) with its dataset's model options."""
    if setting.dataset == "mnist":
        return mnist_plan(setting.strides, model_config.dense_units)
    return cifar10_plan(setting.strides, model_config.dropout)


def conv_output_size(size: int, strides: int) -> int:
    """Spatial size after a 'same'-padded convolution (Keras: ceil(size / strides))."""
    return math.ceil(size / strides)


def feature_map_sizes(dataset: str, plan: list[Layer]) -> list[tuple[str, int]]:
    """(layer, spatial size) after every conv and pooling layer, from the shape arithmetic."""
    size = IMAGE_SIDES[dataset]
    sizes = []
    for layer in plan:
        if layer.kind == "conv":
            size = conv_output_size(size, layer.strides)
        elif layer.kind == "pool":
            size //= 2
        else:
            continue
        sizes.append((layer.name, size))
    return sizes
