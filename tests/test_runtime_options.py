"""The train params that change how a model is built and compiled, each on one batch of a tiny
model: every optimizer train.optimizer accepts, `precision: mixed_float16` and `deterministic: true`
(the e2e tests train with the shipped adam, auto precision and no determinism only)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipeline.params.load import parse_params
from tests.helpers import shipped_params

pytest.importorskip("tensorflow")


def _train_config(**changes):
    return dataclasses.replace(parse_params(shipped_params(), "params.yaml").train, **changes)


def _one_step(optimizer: str = "adam", learning_rate: float = 0.01):
    import keras

    from pipeline.model.network import compile_model, optimizer_name

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Activation("softmax")])
    compile_model(model, learning_rate, optimizer)
    x, y = np.eye(4, dtype=np.float32)[:3], np.eye(3, dtype=np.float32)
    loss = model.train_on_batch(x, y, return_dict=True)["loss"]
    assert np.isfinite(loss)
    return model, optimizer_name(model)


@pytest.fixture
def runtime_restored():
    """configure_runtime sets process-wide state: put back the defaults afterwards."""
    import keras

    yield
    keras.mixed_precision.set_global_policy("float32")
    from tensorflow.python.framework import config

    config.disable_op_determinism()


@pytest.mark.parametrize("name,cls", [("adam", "Adam"), ("sgd", "SGD"), ("rmsprop", "RMSprop"), ("adamw", "AdamW")])
def test_every_optimizer_trains_with_the_learning_rate_of_the_params(name, cls):
    model, compiled = _one_step(name, learning_rate=0.025)
    assert compiled == cls
    assert float(model.optimizer.learning_rate) == pytest.approx(0.025)
    if name == "sgd":
        assert float(model.optimizer.momentum) == pytest.approx(0.9)


def test_mixed_float16_computes_in_float16_with_a_loss_scaled_optimizer(runtime_restored):
    import keras

    from pipeline.model.runtime import configure_runtime

    _, precision = configure_runtime(_train_config(precision="mixed_float16"), seed=0)
    assert precision == "mixed_float16" and keras.mixed_precision.global_policy().name == "mixed_float16"
    model, compiled = _one_step("adam")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) and compiled == "Adam"
    assert model.layers[0].compute_dtype == "float16" and model.layers[0].variable_dtype == "float32"


def test_deterministic_turns_on_tensorflows_op_determinism_and_repeats_a_step(runtime_restored):
    from tensorflow.python.framework import config

    from pipeline.model.runtime import configure_runtime

    configure_runtime(_train_config(deterministic=False), seed=0)
    assert not config.is_op_determinism_enabled()
    configure_runtime(_train_config(deterministic=True), seed=0)
    assert config.is_op_determinism_enabled()
    first = _one_step()[0].get_weights()
    configure_runtime(_train_config(deterministic=True), seed=0)
    again = _one_step()[0].get_weights()
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
