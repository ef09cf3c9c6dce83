"""The report's architectures: parameter counts, strides placement, L2, and the shape check."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

from pipeline.common.errors import PipelineError
from pipeline.model.architecture import feature_map_sizes, layer_plan
from pipeline.model.network import build_model, conv_layer_names
from pipeline.params.checks import architecture_problem
from pipeline.params.schema import Cifar10ModelConfig, MnistModelConfig, Setting

MNIST = MnistModelConfig(dense_units=256)
CIFAR = Cifar10ModelConfig(dropout=(0.2, 0.3, 0.4))


def _setting(dataset, kernel=3, strides=1, l2=0.0):
    return Setting(dataset=dataset, kernel=kernel, strides=strides, l2=l2)


def test_parameter_counts_match_the_report():
    # the report's printed summaries: MNIST with 2x2 kernels, CIFAR with 3x3
    assert build_model("m", _setting("mnist", kernel=2), MNIST).count_params() == 1_612_746
    cifar = build_model("c", _setting("cifar10", kernel=3), CIFAR)
    assert cifar.count_params() == 307_818
    assert sum(int(w.numpy().size) for w in cifar.non_trainable_weights) == 448
    # in color: the first convolution sees three channels (3*3*3*32 + 32 weights instead of 3*3*1*32 + 32)
    color = build_model("c", Setting(dataset="cifar10", kernel=3, strides=1, l2=0.0, color="rgb"), CIFAR)
    assert color.count_params() == 307_818 + 576 and color.input_shape == (None, 32, 32, 3)


def test_cifar_strides_only_in_first_two_convs():
    model = build_model("c", _setting("cifar10", kernel=5, strides=2), CIFAR)
    strides = {layer.name: layer.strides for layer in model.layers if layer.name in conv_layer_names(model)}
    assert strides == {"conv2d_1": (2, 2), "conv2d_2": (2, 2), "conv2d_3": (1, 1), "conv2d_4": (1, 1),
                       "conv2d_5": (1, 1), "conv2d_6": (1, 1)}
    assert all(layer.kernel_size == (5, 5) for layer in model.layers if layer.name.startswith("conv2d"))


def test_l2_on_every_kernel_and_bias():
    model = build_model("m", _setting("mnist", l2=0.01), MNIST)
    weighted = [layer for layer in model.layers if layer.weights]
    assert len(weighted) == 4
    assert all(layer.kernel_regularizer is not None and layer.bias_regularizer is not None for layer in weighted)
    assert len(model.losses) == 8
    plain = build_model("m", _setting("mnist"), MNIST)
    assert plain.losses == []


SHAPES = list(itertools.product(("mnist", "cifar10"), (3, 7), (1, 2, 3, 4, 30)))  # strides 30: nothing left


@pytest.mark.parametrize("dataset,kernel,strides", SHAPES)
def test_shape_arithmetic_agrees_with_keras(dataset, kernel, strides):
    setting = _setting(dataset, kernel, strides)
    config = MNIST if dataset == "mnist" else CIFAR
    if architecture_problem(setting, config):
        with pytest.raises(PipelineError, match="setting x: the model cannot be built"):
            build_model("x", setting, config)
        return
    model = build_model("x", setting, config)
    built = {layer.name: layer.output.shape[1] for layer in model.layers}
    planned = feature_map_sizes(dataset, layer_plan(setting, config))
    assert [name for name, _ in planned] == [layer.name for layer in model.layers
                                             if isinstance(layer, (keras.layers.Conv2D, keras.layers.MaxPooling2D))]
    for layer, size in planned:
        assert built[layer] == size, layer


def test_the_evaluate_stage_view_holds_each_conv_layer_map_of_the_auto_pair():
    from pipeline.evaluate import view_of

    model = build_model("c", _setting("cifar10"), CIFAR)
    x = np.random.default_rng(0).normal(size=(6, 32, 32, 1)).astype("float32")
    y = np.array([0, 1, 2, 3, 4, 5])
    probabilities = np.eye(10)[[0, 1, 2, 3, 4, 4]] * 0.9 + 0.01  # image 5 (a 5) taken for a 4
    view = view_of(model, x, probabilities, y)
    assert view.pair == (5, 4)
    assert list(view.activations) == conv_layer_names(model)
    assert [a.shape[1:] for a in view.activations.values()] == \
        [tuple(model.get_layer(n).output.shape[1:]) for n in conv_layer_names(model)]
    assert all(a.shape[0] == 2 for a in view.activations.values())
    assert view.trainable == model.count_params() - view.frozen


def test_a_bf16_models_view_reads_back_as_float_feature_maps_without_tensorflow(tmp_path):
    from pipeline.evaluate import view_of
    from pipeline.model import view as model_view

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_model("m", _setting("mnist"), MNIST)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    x = np.random.default_rng(0).normal(size=(4, 28, 28, 1)).astype("float32")
    model_view.write(tmp_path / "view.npz", view_of(model, x, np.eye(10)[[0, 1, 2, 2]], np.array([0, 1, 2, 3])))
    # what the plot stage sees: a plain np.load, with no bfloat16 dtype known to NumPy
    with np.load(tmp_path / "view.npz") as raw:
        dtypes = {name: raw[name].dtype for name in raw.files if name.startswith("activation/")}
    assert dtypes and all(dtype == np.float32 for dtype in dtypes.values())


def test_feature_maps_are_each_conv_layers_output():
    from pipeline.model.network import conv_activations

    model = build_model("m", _setting("cifar10"), Cifar10ModelConfig(dropout=[0.2, 0.3, 0.4]))
    images = np.random.default_rng(2).normal(size=(2, 32, 32, 1)).astype("float32")
    maps = conv_activations(model, images)
    for name in conv_layer_names(model):
        expected = keras.Model(model.inputs, model.get_layer(name).output)(images, training=False)
        np.testing.assert_allclose(maps[name], expected, atol=1e-5)


def test_feature_maps_of_picked_images_come_from_the_saved_model(tmp_path):
    from pipeline.model.network import conv_activations
    from pipeline.plot import explicit_pair_activations

    model = build_model("m", _setting("mnist"), MNIST)
    model.save(tmp_path / "m.keras")
    images = np.random.default_rng(1).normal(size=(2, 28, 28, 1)).astype("float32")
    picked = explicit_pair_activations(tmp_path / "m.keras", images)
    expected = conv_activations(model, images)
    assert list(picked) == list(expected) == conv_layer_names(model)
    assert all(np.allclose(picked[name], expected[name], atol=1e-5) for name in expected)


@pytest.mark.parametrize("l2", [0.0, 0.001])
def test_test_loss_from_predictions_is_what_keras_evaluate_reports(l2):
    from pipeline.evaluate import test_loss
    from pipeline.model.network import compile_model

    model = compile_model(build_model("m", _setting("mnist", l2=l2), MnistModelConfig(dense_units=16)), 1e-3)
    x = np.random.default_rng(0).normal(size=(64, 28, 28, 1)).astype("float32")
    y = np.arange(64) % 10
    expected = model.evaluate(x, keras.utils.to_categorical(y, 10), verbose=0, return_dict=True)["loss"]
    assert test_loss(model, model.predict(x, verbose=0), y) == pytest.approx(expected, rel=1e-5)
