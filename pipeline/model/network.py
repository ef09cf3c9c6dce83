"""The report's two architectures as Keras models, built from `pipeline.model.architecture`'s plan."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from pipeline.common.errors import PipelineError
from pipeline.model.architecture import Layer, layer_plan
from pipeline.model.datasets import input_shape
from pipeline.params.schema import Cifar10ModelConfig, MnistModelConfig, Setting

MODEL_NAMES = {"mnist": "mnist_cnn", "cifar10": "cifar10_cnn"}
OPTIMIZERS = {  # train.optimizer -> Keras' class, built with the learning rate
    "adam": keras.optimizers.Adam,
    "sgd": lambda learning_rate: keras.optimizers.SGD(learning_rate, momentum=0.9),
    "rmsprop": keras.optimizers.RMSprop,
    "adamw": keras.optimizers.AdamW,
}


def _l2(coefficient: float):
    return keras.regularizers.L2(coefficient) if coefficient > 0 else None


def keras_layer(layer: Layer, setting: Setting) -> layers.Layer:
    """One planned layer; L2 (the setting's) on every kernel and bias."""
    regularizers = {"kernel_regularizer": _l2(setting.l2), "bias_regularizer": _l2(setting.l2)}
    if layer.kind == "conv":
        return layers.Conv2D(layer.width, setting.kernel, strides=layer.strides, padding="same", activation="relu",
                             name=layer.name, **regularizers)
    if layer.kind == "pool":
        return layers.MaxPooling2D(2, name=layer.name)
    if layer.kind == "batchnorm":
        return layers.BatchNormalization(name=layer.name)
    if layer.kind == "dropout":
        return layers.Dropout(layer.rate, name=layer.name)
    if layer.kind == "flatten":
        return layers.Flatten(name=layer.name)
    if layer.kind == "dense":
        return layers.Dense(layer.width, activation="relu", name=layer.name, **regularizers)
    # float32 even under a mixed-precision policy: a 16-bit softmax loses the small
    # probabilities that cross-entropy takes the log of (Keras' mixed-precision guide)
    return layers.Dense(layer.width, activation="softmax", name=layer.name, dtype="float32", **regularizers)


def build_model(name: str, setting: Setting, model_config: MnistModelConfig | Cifar10ModelConfig) -> keras.Sequential:
    """Build (uncompiled); a shape error becomes one line naming the setting."""
    try:
        return keras.Sequential(
            [keras.Input(input_shape(setting.dataset, setting.color)),
             *(keras_layer(layer, setting) for layer in layer_plan(setting, model_config))],
            name=MODEL_NAMES[setting.dataset],
        )
    except ValueError as exc:
        raise PipelineError(f"setting {name}: the model cannot be built ({str(exc).splitlines()[0]})") from None


def compile_model(model: keras.Model, learning_rate: float, optimizer: str = "adam", jit_compile: bool = False,
                  steps_per_execution: int = 1) -> keras.Model:
    # Keras wraps the optimizer in a LossScaleOptimizer itself under the mixed_float16 policy.
    model.compile(
        optimizer=OPTIMIZERS[optimizer](learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    return model


def optimizer_name(model: keras.Model) -> str:
    """The optimizer the model was compiled with, as Keras names its class ('Adam')."""
    optimizer = model.optimizer
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # under mixed_float16: the loss-scale wrapper
    return type(inner).__name__


def conv_layer_names(model: keras.Model) -> list[str]:
    return [layer.name for layer in model.layers if isinstance(layer, layers.Conv2D)]


def conv_activations(model: keras.Model, images: np.ndarray) -> dict[str, np.ndarray]:
    """Each conv layer's output for `images`, by layer name, in float32: a model trained under
    mixed_bfloat16 outputs bfloat16, which NumPy reads back from a file (and matplotlib draws)
    only as raw 2-byte values where TensorFlow's ml_dtypes is not imported."""
    names = conv_layer_names(model)
    probe = keras.Model(model.inputs, [model.get_layer(name).output for name in names])
    # a few images: one pass, without the data adapter and step loop `predict` sets up per call
    return {name: np.asarray(maps, dtype=np.float32) for name, maps in zip(names, probe.predict_on_batch(images))}


def weighted_layers(model: keras.Model) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, kernel, bias) of every conv and dense layer: the weights the figures draw."""
    return [(layer.name, *(np.asarray(w) for w in layer.get_weights()))
            for layer in model.layers if isinstance(layer, (layers.Conv2D, layers.Dense))]


def summary_rows(model: keras.Model) -> tuple[list[tuple[str, str, tuple, int]], int, int]:
    """What Keras' summary prints: (layer, type, output shape, parameters) per layer, and the
    trainable and non-trainable parameter counts."""
    rows = [(layer.name, type(layer).__name__, tuple(layer.output.shape), layer.count_params())
            for layer in model.layers]
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    frozen = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    return rows, trainable, frozen
