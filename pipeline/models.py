"""The report's two architectures, built from one setting of params.yaml."""

from __future__ import annotations

import keras
from keras import layers

from pipeline.config import INPUT_SHAPES, Cifar10ModelConfig, MnistModelConfig, Setting
from pipeline.errors import PipelineError

NUM_CLASSES = 10


def _l2(coefficient: float):
    return keras.regularizers.L2(coefficient) if coefficient > 0 else None


def _conv(filters: int, setting: Setting, strides: int, name: str) -> layers.Conv2D:
    return layers.Conv2D(
        filters, setting.kernel, strides=strides, padding="same", activation="relu",
        kernel_regularizer=_l2(setting.l2), bias_regularizer=_l2(setting.l2), name=name,
    )


def _dense(units: int, setting: Setting, activation: str, name: str, dtype=None) -> layers.Dense:
    return layers.Dense(
        units, activation=activation,
        kernel_regularizer=_l2(setting.l2), bias_regularizer=_l2(setting.l2), name=name, dtype=dtype,
    )


def _classifier(setting: Setting, name: str) -> layers.Dense:
    # float32 even under a mixed-precision policy: a float16 softmax loses the small
    # probabilities that cross-entropy takes the log of (Keras' mixed-precision guide)
    return _dense(NUM_CLASSES, setting, "softmax", name, dtype="float32")


def mnist_cnn(setting: Setting, config: MnistModelConfig) -> keras.Sequential:
    """Report 1-1: conv 32 -> max-pool -> conv 32 -> flatten -> dense 256 -> dense 10."""
    return keras.Sequential(
        [
            keras.Input(INPUT_SHAPES["mnist"]),
            _conv(32, setting, setting.strides, "conv2d_1"),
            layers.MaxPooling2D(2, name="max_pooling2d_1"),
            _conv(32, setting, setting.strides, "conv2d_2"),
            layers.Flatten(name="flatten"),
            _dense(config.dense_units, setting, "relu", "dense_1"),
            _classifier(setting, "dense_2"),
        ],
        name="mnist_cnn",
    )


def cifar10_cnn(setting: Setting, config: Cifar10ModelConfig) -> keras.Sequential:
    """Report 2-1: three blocks of [conv, conv, batch norm, max-pool, dropout] -> dense 10.

    Strides apply to the first block only: on 32 x 32 inputs, striding all six convolutions
    would leave the later blocks nothing to work on (the report's reasoning).
    """
    stack = [keras.Input(INPUT_SHAPES["cifar10"])]
    for block, (filters, dropout) in enumerate(zip((32, 64, 128), config.dropout), start=1):
        strides = setting.strides if block == 1 else 1
        stack += [
            _conv(filters, setting, strides, f"conv2d_{2 * block - 1}"),
            _conv(filters, setting, strides, f"conv2d_{2 * block}"),
            layers.BatchNormalization(name=f"batch_normalization_{block}"),
            layers.MaxPooling2D(2, name=f"max_pooling2d_{block}"),
            layers.Dropout(dropout, name=f"dropout_{block}"),
        ]
    stack += [layers.Flatten(name="flatten"), _classifier(setting, "dense")]
    return keras.Sequential(stack, name="cifar10_gray_cnn")


def build_model(name: str, setting: Setting, model_config: MnistModelConfig | Cifar10ModelConfig) -> keras.Sequential:
    """Build (uncompiled); a shape error becomes one line naming the setting."""
    builder = mnist_cnn if setting.dataset == "mnist" else cifar10_cnn
    try:
        return builder(setting, model_config)
    except ValueError as exc:
        raise PipelineError(f"setting {name}: the model cannot be built ({str(exc).splitlines()[0]})") from None


def compile_model(model: keras.Model, learning_rate: float, jit_compile: bool = False,
                  steps_per_execution: int = 1) -> keras.Model:
    # Keras wraps Adam in a LossScaleOptimizer itself under the mixed_float16 policy.
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    return model


def conv_layer_names(model: keras.Model) -> list[str]:
    return [layer.name for layer in model.layers if isinstance(layer, layers.Conv2D)]
