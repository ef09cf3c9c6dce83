"""params.yaml's rules across keys: seeds, setting names and overrides, sweeps, and the shape
arithmetic of each setting's model. Each broken rule is a ParamsError naming the key path."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.model.architecture import feature_map_sizes, layer_plan
from pipeline.params.file import ParamsError
from pipeline.params.schema import (
    MODEL_OVERRIDES,
    Cifar10ModelConfig,
    MnistModelConfig,
    Params,
    Setting,
    resolved,
    setting_values,
)

_SETTING_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_params(params: Params, path: Path | str) -> None:
    _check_seeds(params.seeds, path)
    _check_settings(params, path)
    _check_sweeps(params, path)


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
        if setting.color != "gray" and setting.dataset != "cifar10":
            raise ParamsError(path, f"{key}.color", f"only CIFAR-10 has colors ({setting.dataset} is gray)")
        for dataset, keys in MODEL_OVERRIDES.items():
            wrong = [k for k in keys if dataset != setting.dataset and getattr(setting, k) is not None]
            if wrong:
                raise ParamsError(path, f"{key}.{wrong[0]}", f"is an option of the {dataset} model "
                                  f"(models.{dataset}), not of {setting.dataset}'s")
        problem = architecture_problem(setting, resolved(params, name)[2])
        if problem:
            raise ParamsError(path, key, problem)


def _check_sweeps(params: Params, path: Path | str) -> None:
    """A sweep names existing settings of one dataset that differ in its one key only."""
    for sweep_name, sweep in params.sweeps.items():
        key = f"sweeps.{sweep_name}"
        unknown = [name for name in sweep.settings if name not in params.settings]
        if unknown:
            known = ", ".join(params.settings)
            raise ParamsError(path, f"{key}.settings", f"no setting {unknown[0]!r} (known: {known})")
        if not sweep.settings:
            raise ParamsError(path, f"{key}.settings", "no settings: list the ones the sweep compares")
        if len(set(sweep.settings)) != len(sweep.settings):
            raise ParamsError(path, f"{key}.settings", "lists a setting twice")
        datasets = {name: params.settings[name].dataset for name in sweep.settings}
        first = sweep.settings[0]
        other = next((name for name in sweep.settings if datasets[name] != datasets[first]), None)
        if other:
            raise ParamsError(path, f"{key}.settings", f"{other} trains on {datasets[other]}, {first} on "
                              f"{datasets[first]}: a sweep compares settings of one dataset")
        values = {name: setting_values(*resolved(params, name)) for name in sweep.settings}
        # Several keys joined by '+': a searched setting against its base (pipeline/search/result.py).
        varied = sweep.vary.split("+")
        wrong = next((k for k in varied if k not in values[first] or k == "dataset"), None)
        if wrong is not None or len(set(varied)) != len(varied):
            known = ", ".join(k for k in values[first] if k != "dataset")
            what = f"{wrong!r} is no key a setting can vary" if wrong is not None else "names a key twice"
            raise ParamsError(path, f"{key}.vary", f"{what} (known: {known}; several joined by +)")
        for name in sweep.settings[1:]:
            differ = [k for k in values[first] if k not in varied and values[name][k] != values[first][k]]
            if differ:
                raise ParamsError(path, key, f"{name} differs from {first} in {differ[0]} ({values[first][differ[0]]}"
                                  f" vs {values[name][differ[0]]}), but the sweep may vary only {sweep.vary}")


def architecture_problem(setting: Setting, model_config: MnistModelConfig | Cifar10ModelConfig) -> str | None:
    for layer, size in feature_map_sizes(setting.dataset, layer_plan(setting, model_config)):
        if size < 1:
            return (
                f"kernel {setting.kernel} with strides {setting.strides} shrinks the feature map "
                f"to nothing at layer {layer}"
            )
    return None
