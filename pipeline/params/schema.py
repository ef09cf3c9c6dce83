"""params.yaml's schema: the typed, validated objects a stage gets (pipeline.params.load reads
the file into them), and what follows from them alone (a setting's resolved values, the sizes).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, Strict
from pydantic.dataclasses import dataclass

REPORT_EPOCHS = 50  # the homework trains every setting this long (reports/homework_results.yaml)
# The homework's size, and `make quick`'s: every setting in minutes on a laptop CPU, a smoke run.
# Quick needs ~560 steps for grayscale CIFAR to learn beyond guessing (BatchNorm's moving
# statistics must catch up with the weights): cifar10-k3-s1 on a 2-core EPYC scored 10 % test
# accuracy with 2 epochs of 10 % at batch 128, 18 % with 3 epochs at batch 32, and 32 % with
# 2 epochs of 20 % at batch 32, in the same train-stage time (~105 s) as the first.
SIZES = {
    "full": {"train.epochs": REPORT_EPOCHS, "train.subset": 1.0, "train.batch_size": 128},
    "quick": {"train.epochs": 2, "train.subset": 0.2, "train.batch_size": 32},
}

# forbid: a typo is an unknown key. Strict() on each value: no silent coercion of "3" to 3 or
# of true to 1 (strict on the whole config would also refuse plain dicts for nested sections).
_STRICT = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

PositiveInt = Annotated[int, Strict(), Field(gt=0)]
Seed = Annotated[int, Strict(), Field(ge=0)]
Fraction = Annotated[float, Strict(), Field(ge=0.0, lt=1.0)]


@dataclass(config=_STRICT)
class PreprocessConfig:
    val_fraction: Annotated[float, Strict(), Field(gt=0.0, lt=1.0)]
    normalization: Literal["zscore", "per_image"]
    seed: Seed


PositiveFloat = Annotated[float, Strict(), Field(gt=0.0)]
Share = Annotated[float, Strict(), Field(gt=0.0, le=1.0)]
Optimizer = Literal["adam", "sgd", "rmsprop", "adamw"]
Precision = Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"]
Dropout = tuple[Fraction, Fraction, Fraction]


@dataclass(config=_STRICT)
class TrainConfig:
    epochs: PositiveInt
    batch_size: PositiveInt
    learning_rate: PositiveFloat
    optimizer: Optimizer
    deterministic: Annotated[bool, Strict()]
    precision: Precision
    jit_compile: Annotated[bool, Strict()]
    steps_per_execution: PositiveInt
    distribute: Literal["none", "mirrored"]
    subset: Share

    @property
    def smoke_run(self) -> bool:
        return is_smoke_run(self.epochs, self.subset)


def is_smoke_run(epochs: int, subset: float) -> bool:
    """Fewer epochs or images than the homework's: numbers that only show the pipeline works."""
    return epochs < REPORT_EPOCHS or subset < 1.0


@dataclass(config=_STRICT)
class MnistModelConfig:
    dense_units: PositiveInt


@dataclass(config=_STRICT)
class Cifar10ModelConfig:
    dropout: Dropout


@dataclass(config=_STRICT)
class ModelsConfig:
    mnist: MnistModelConfig
    cifar10: Cifar10ModelConfig


# What a setting may set in place of the shared `train:` and `models.<dataset>:` values.
TRAIN_OVERRIDES = ("epochs", "batch_size", "learning_rate", "optimizer", "subset")
MODEL_OVERRIDES = {"mnist": ("dense_units",), "cifar10": ("dropout",)}


@dataclass(config=_STRICT)
class Setting:
    dataset: Literal["mnist", "cifar10"]
    kernel: PositiveInt
    strides: PositiveInt
    l2: Annotated[float, Strict(), Field(ge=0.0)]
    color: Literal["gray", "rgb"] = "gray"  # CIFAR-10 only: the homework's gray, or the original colors
    # None: the shared value (train.<key>, models.<dataset>.<key>)
    epochs: PositiveInt | None = None
    batch_size: PositiveInt | None = None
    learning_rate: PositiveFloat | None = None
    optimizer: Optimizer | None = None
    subset: Share | None = None
    dense_units: PositiveInt | None = None
    dropout: Dropout | None = None

    def overrides(self, keys) -> dict[str, Any]:
        return {key: getattr(self, key) for key in keys if getattr(self, key) is not None}


@dataclass(config=_STRICT)
class Sweep:
    vary: str  # the one key its settings differ in
    settings: tuple[str, ...]


def _image_pair(value: Any) -> Any:
    """'auto' or [i, j]: checked here so that a mistake gets one message, not one per form."""
    if value == "auto":
        return value
    if (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value)):
        return tuple(value)
    raise ValueError("expected auto or two test-set indices [i, j] (integers >= 0)")


ImagePair = Annotated[Literal["auto"] | tuple[int, int], BeforeValidator(_image_pair)]


@dataclass(config=_STRICT)
class FeatureMapImages:
    mnist: ImagePair
    cifar10: ImagePair


@dataclass(config=_STRICT)
class PlotConfig:
    examples: PositiveInt
    feature_map_channels: PositiveInt
    feature_map_images: FeatureMapImages


@dataclass(config=_STRICT)
class Params:
    preprocess: PreprocessConfig
    seeds: tuple[Seed, ...]
    train: TrainConfig
    models: ModelsConfig
    settings: dict[str, Setting]
    sweeps: dict[str, Sweep]
    plot: PlotConfig


def resolve(setting: Setting, train: TrainConfig, model):
    """A setting's own values (overrides dropped), and the train and model values it trains with:
    the shared `train` and its dataset's `model`, with what the setting overrides."""
    own = Setting(dataset=setting.dataset, kernel=setting.kernel, strides=setting.strides, l2=setting.l2,
                  color=setting.color)
    return (own, replace(train, **setting.overrides(TRAIN_OVERRIDES)),
            replace(model, **setting.overrides(MODEL_OVERRIDES[setting.dataset])))


def resolved(params: Params, name: str):
    """resolve() of a setting of params.yaml."""
    setting = params.settings[name]
    return resolve(setting, params.train, getattr(params.models, setting.dataset))


def setting_values(own: Setting, train: TrainConfig, model) -> dict[str, Any]:
    """Everything a setting trains with that a sweep may vary, by key (as written in a setting)."""
    return {**{key: getattr(own, key) for key in ("dataset", "kernel", "strides", "l2", "color")},
            **{key: getattr(train, key) for key in TRAIN_OVERRIDES}, **asdict(model)}
