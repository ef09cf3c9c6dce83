"""params.yaml, read once per stage and validated into typed dataclasses.

    python -m pipeline.config check       # validate params.yaml; one line per problem found
    python -m pipeline.config settings    # the setting names, one per line (for shell loops)

Every user mistake in the file ends as a :class:`ParamsError` whose message is one line naming
the file, the key path and the problem; :func:`pipeline.cli.run` prints it without a traceback.
"""

from __future__ import annotations

import math
import re
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BeforeValidator, ConfigDict, Field, Strict, ValidationError
from pydantic.dataclasses import dataclass

from pipeline.errors import PipelineError

DATASETS = ("mnist", "cifar10")
INPUT_SHAPES = {"mnist": (28, 28, 1), "cifar10": (32, 32, 1)}
SWEEPABLE = ("kernel", "strides", "l2")
REPORT_EPOCHS = 50  # the seed report trains every setting this long (reports/seed_results.yaml)
CLASS_NAMES = {
    "mnist": [str(digit) for digit in range(10)],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}

# forbid: a typo is an unknown key. Strict() on each value: no silent coercion of "3" to 3 or
# of true to 1 (strict on the whole config would also refuse plain dicts for nested sections).
_STRICT = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

PositiveInt = Annotated[int, Strict(), Field(gt=0)]
Seed = Annotated[int, Strict(), Field(ge=0)]
Fraction = Annotated[float, Strict(), Field(ge=0.0, lt=1.0)]


class ParamsError(PipelineError):
    """A problem in params.yaml, located by its key path."""

    def __init__(self, path: Path | str, key: str, problem: str):
        where = f"{path}: {key}" if key else str(path)
        super().__init__(f"{where}: {problem}")
        self.key = key


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
    seed: Seed
    deterministic: Annotated[bool, Strict()]
    precision: Literal["float32", "mixed_float16", "mixed_bfloat16"]
    jit_compile: Annotated[bool, Strict()]
    steps_per_execution: PositiveInt
    distribute: Literal["none", "mirrored"]
    subset: Annotated[float, Strict(), Field(gt=0.0, le=1.0)]

    @property
    def smoke_run(self) -> bool:
        """Fewer epochs or images than the report's: numbers that only show the pipeline works."""
        return self.epochs < REPORT_EPOCHS or self.subset < 1.0


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


ImagePair = Annotated[Union[Literal["auto"], tuple[int, int]], BeforeValidator(_image_pair)]


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
    train: TrainConfig
    models: ModelsConfig
    settings: dict[str, Setting]
    plot: PlotConfig


class _StrictLoader(yaml.SafeLoader):
    """YAML loader that rejects duplicate keys and reads `1e-3` as a float (YAML 1.2 style)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."),
)
# The float resolver above also matches plain integers; put int back in front for those.
for _first, _resolvers in _StrictLoader.yaml_implicit_resolvers.items():
    _resolvers.sort(key=lambda r: r[0] != "tag:yaml.org,2002:int")


def load_params(path: Path | str = "params.yaml") -> Params:
    """Read and fully validate params.yaml; raise ParamsError with a one-line message."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ParamsError(path, "", f"cannot read the file ({exc.strerror})") from None
    try:
        raw = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ParamsError(path, "", f"{line}invalid YAML ({problem})") from None
    return parse_params(raw, path)


def parse_params(raw: Any, path: Path | str = "params.yaml") -> Params:
    if not isinstance(raw, dict):
        raise ParamsError(path, "", "expected a mapping of sections at the top level")
    try:
        params = Params(**raw)
    except ValidationError as exc:
        raise ParamsError(path, *_describe(exc.errors()[0], raw)) from None
    except TypeError as exc:
        # Params(**raw) itself rejects unknown/missing top-level sections before pydantic runs.
        raise ParamsError(path, "", _top_level_problem(raw)) from exc
    _check_settings(params, path)
    return params


def _top_level_problem(raw: dict) -> str:
    expected = [f.name for f in fields(Params)]
    unknown = [k for k in raw if k not in expected]
    if unknown:
        return f"unknown section {unknown[0]!r} (expected: {', '.join(expected)})"
    missing = [k for k in expected if k not in raw]
    return f"missing section {missing[0]!r}"


def _describe(error: dict, raw: dict) -> tuple[str, str]:
    loc = [str(part) for part in error["loc"]]
    # pydantic reports tuple items by index and dataclass args under the class name.
    key = ".".join(loc)
    kind = error["type"]
    if kind == "unexpected_keyword_argument" or kind == "extra_forbidden":
        return key, "unknown key"
    if kind == "missing" and loc[-1].isdigit():
        return ".".join(loc[:-1]), f"too few values: item {loc[-1]} is missing"
    if kind == "missing" or kind == "missing_keyword_argument":
        return key, "missing key"
    value = _lookup(raw, loc)
    shown = f" (got {value!r})" if value is not _MISSING else ""
    return key, f"{error['msg']}{shown}"


_MISSING = object()


def _lookup(raw: Any, loc: list[str]) -> Any:
    node = raw
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


_SETTING_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _check_settings(params: Params, path: Path | str) -> None:
    if not params.settings:
        raise ParamsError(path, "settings", "no settings: add at least one training setting")
    for name, setting in params.settings.items():
        key = f"settings.{name}"
        if not _SETTING_NAME.match(name):
            raise ParamsError(path, key, "a setting name may hold only letters, digits, '.', '_' and '-'")
        if len(set(setting.sweeps)) != len(setting.sweeps):
            raise ParamsError(path, f"{key}.sweeps", "lists a sweep twice")
        problem = architecture_problem(setting)
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


def conv_output_size(size: int, strides: int) -> int:
    """Spatial size after a 'same'-padded convolution (Keras: ceil(size / strides))."""
    return math.ceil(size / strides)


def feature_map_sizes(setting: Setting) -> list[tuple[str, int]]:
    """(layer, spatial size) along the model, from shape arithmetic alone (no TensorFlow).

    Mirrors pipeline.models; tests compare it against the built Keras models.
    """
    size = INPUT_SHAPES[setting.dataset][0]
    sizes = []
    if setting.dataset == "mnist":
        plan = [("conv2d_1", setting.strides), ("max_pooling2d_1", None), ("conv2d_2", setting.strides)]
    else:
        plan = []
        for block in range(3):
            for conv in range(2):
                index = 2 * block + conv + 1
                plan.append((f"conv2d_{index}", setting.strides if block == 0 else 1))
            plan.append((f"max_pooling2d_{block + 1}", None))
    for layer, strides in plan:
        size = size // 2 if strides is None else conv_output_size(size, strides)
        sizes.append((layer, size))
    return sizes


def architecture_problem(setting: Setting) -> str | None:
    for layer, size in feature_map_sizes(setting):
        if size < 1:
            return (
                f"kernel {setting.kernel} with strides {setting.strides} shrinks the feature map "
                f"to nothing at layer {layer}"
            )
    return None


def key_paths(obj: Any, prefix: str = "") -> list[str]:
    """Every leaf key path under a config object ('train.epochs', 'settings.x.kernel', ...)."""
    if is_dataclass(obj):
        children = {f.name: getattr(obj, f.name) for f in fields(obj)}
    elif isinstance(obj, dict):
        children = obj
    else:
        return [prefix]
    paths = []
    for name, child in children.items():
        paths.extend(key_paths(child, f"{prefix}.{name}" if prefix else name))
    return paths


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pipeline.config", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("check", "settings"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    params = load_params(args.params)
    if args.command == "settings":
        print("\n".join(params.settings))
    else:
        print(f"{args.params}: {len(params.settings)} settings, valid")


if __name__ == "__main__":
    from pipeline import cli

    cli.run(main)
