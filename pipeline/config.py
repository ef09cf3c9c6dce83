"""params.yaml, read once per stage and validated into typed dataclasses (`python -m
pipeline.params` checks and edits the file from the command line).

Every user mistake in the file ends as a :class:`ParamsError` whose message is one line naming
the file, the key path and the problem; :func:`pipeline.cli.run` prints it without a traceback.
"""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, Strict, ValidationError
from pydantic.dataclasses import dataclass

from pipeline.architecture import feature_map_sizes, layer_plan
from pipeline.params_file import ParamsError, describe, read_yaml, top_level_problem

SWEEPABLE = ("kernel", "strides", "l2")
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


@dataclass(config=_STRICT)
class TrainConfig:
    epochs: PositiveInt
    batch_size: PositiveInt
    learning_rate: Annotated[float, Strict(), Field(gt=0.0)]
    deterministic: Annotated[bool, Strict()]
    precision: Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"]
    jit_compile: Annotated[bool, Strict()]
    steps_per_execution: PositiveInt
    distribute: Literal["none", "mirrored"]
    subset: Annotated[float, Strict(), Field(gt=0.0, le=1.0)]

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
    dropout: tuple[Fraction, Fraction, Fraction]


@dataclass(config=_STRICT)
class ModelsConfig:
    mnist: MnistModelConfig
    cifar10: Cifar10ModelConfig


@dataclass(config=_STRICT)
class Setting:
    dataset: Literal["mnist", "cifar10"]
    kernel: PositiveInt
    strides: PositiveInt
    l2: Annotated[float, Strict(), Field(ge=0.0)]
    sweeps: tuple[Literal["kernel", "strides", "l2"], ...]


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
    plot: PlotConfig


def load_params(path: Path | str = "params.yaml", setting: str | None = None) -> Params:
    """Read and fully validate params.yaml; raise ParamsError with a one-line message.

    `setting`: the setting a stage was asked to run, which must exist.
    """
    path = Path(path)
    params = parse_params(read_yaml(path), path)
    if setting is not None and setting not in params.settings:
        raise ParamsError(path, f"settings.{setting}", f"no such setting (known: {', '.join(params.settings)})")
    return params


def parse_params(raw: Any, path: Path | str = "params.yaml") -> Params:
    if not isinstance(raw, dict):
        raise ParamsError(path, "", "expected a mapping of sections at the top level")
    try:
        params = Params(**raw)
    except ValidationError as exc:
        raise ParamsError(path, *describe(exc.errors(), raw)) from None
    except TypeError as exc:
        # Params(**raw) itself rejects unknown/missing top-level sections before pydantic runs.
        raise ParamsError(path, "", top_level_problem(raw, [f.name for f in fields(Params)])) from exc
    _check_seeds(params.seeds, path)
    _check_settings(params, path)
    return params


_SETTING_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _check_seeds(seeds: tuple[int, ...], path: Path | str) -> None:
    if not seeds:
        raise ParamsError(path, "seeds", "no seeds: list at least one, e.g. [0]")
    twice = next((seed for seed in seeds if seeds.count(seed) > 1), None)
    if twice is not None:
        raise ParamsError(path, "seeds", f"lists seed {twice} twice")


def _check_settings(params: Params, path: Path | str) -> None:
    if not params.settings:
        raise ParamsError(path, "settings", "no settings: add at least one training setting")
    for name, setting in params.settings.items():
        key = f"settings.{name}"
        if not _SETTING_NAME.match(name):
            raise ParamsError(path, key, "a setting name may hold only letters, digits, '.', '_' and '-'")
        if len(set(setting.sweeps)) != len(setting.sweeps):
            raise ParamsError(path, f"{key}.sweeps", "lists a sweep twice")
        problem = architecture_problem(setting, getattr(params.models, setting.dataset))
        if problem:
            raise ParamsError(path, key, problem)
    _check_sweeps(params, path)


def _check_sweeps(params: Params, path: Path | str) -> None:
    """Settings in one sweep of one dataset may differ only in the swept value."""
    for (dataset, sweep), members in sweep_members(params.settings).items():
        first_name, first = members[0]
        for name, setting in members[1:]:
            for field_name in SWEEPABLE:
                if field_name != sweep and getattr(setting, field_name) != getattr(first, field_name):
                    raise ParamsError(
                        path,
                        f"settings.{name}.{field_name}",
                        f"differs from {first_name} although both are in the {dataset} "
                        f"'{sweep}' sweep, which may vary only {sweep}",
                    )


def sweep_members(settings: dict[str, Setting]) -> dict[tuple[str, str], list[tuple[str, Setting]]]:
    """(dataset, sweep) -> the settings in it, in params.yaml order."""
    members: dict[tuple[str, str], list[tuple[str, Setting]]] = {}
    for name, setting in settings.items():
        for sweep in setting.sweeps:
            members.setdefault((setting.dataset, sweep), []).append((name, setting))
    return members


def architecture_problem(setting: Setting, model_config: MnistModelConfig | Cifar10ModelConfig) -> str | None:
    for layer, size in feature_map_sizes(setting.dataset, layer_plan(setting, model_config)):
        if size < 1:
            return (
                f"kernel {setting.kernel} with strides {setting.strides} shrinks the feature map "
                f"to nothing at layer {layer}"
            )
    return None
