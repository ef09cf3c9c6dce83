"""params.yaml's `search:` section: named search spaces for `python -m pipeline.search.study` (issue 35).

Each entry names a base setting, the keys a trial may change with their ranges or choices, the
number of trials, each trial's budget (epochs, training share) and the validation metric it is
judged on. It is read by the search tool only: no stage declares it, and its schema lives apart
from pipeline.params.schema (a stage's code dependency) so that a search changes no stage.
Every entry is checked when params.yaml is loaded, like every other key: a bad range, an unknown
key or a choice the shape check would refuse is one line before any trial is spent on it.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, Strict, ValidationError
from pydantic.dataclasses import dataclass

from pipeline.params.checks import architecture_problem
from pipeline.params.file import ParamsError, describe
from pipeline.params.schema import _STRICT, MODEL_OVERRIDES, Params, PositiveInt, Seed, Share, resolved

# What a trial may change: any key a setting may set, but the dataset (another model) and the
# per-trial budget (epochs and subset are the entry's own, the same for every trial).
SEARCHABLE = ("kernel", "strides", "l2", "color", "batch_size", "learning_rate", "optimizer", "dense_units",
              "dropout")
METRICS = {"val_accuracy": "maximize", "val_loss": "minimize"}  # the validation split's; never the test set's
SUFFIX = "-searched"  # the setting a study writes is named <base>-searched, unless its entry names a `result`


@dataclass(config=_STRICT)
class Dimension:
    """One key's range (low..high, on a log scale if `log`) or its choices."""

    low: Annotated[int, Strict()] | Annotated[float, Strict()] | None = None
    high: Annotated[int, Strict()] | Annotated[float, Strict()] | None = None
    log: Annotated[bool, Strict()] = False
    choices: tuple[Any, ...] | None = None

    def candidates(self) -> list[Any]:
        """The values the shape and type checks try: the choices, or both ends of the range."""
        return list(self.choices) if self.choices is not None else [self.low, self.high]


@dataclass(config=_STRICT)
class SearchEntry:
    base: str  # the setting the trials start from
    trials: PositiveInt
    epochs: PositiveInt  # per trial
    subset: Share  # per trial: the share of the training split
    metric: Literal[tuple(METRICS)]  # type: ignore[valid-type]  # one list of the metrics: METRICS
    space: dict[str, Dimension]
    seed: Seed = 0  # the sampler's, and every trial's training seed
    pruner: Literal["median", "none"] = "median"
    startup_trials: Annotated[int, Strict(), Field(ge=0)] = 5  # trials never pruned: the bar the others meet
    result: Annotated[str, Strict()] | None = None  # names the setting and sweep it writes (result_names)

    @property
    def direction(self) -> str:
        return METRICS[self.metric]


def result_names(name: str, entry: SearchEntry) -> tuple[str, str]:
    """The setting and the sweep the entry `name` writes its best trial to."""
    return (entry.result, entry.result) if entry.result else (f"{entry.base}{SUFFIX}", name)


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def parse_search(raw: Any, params: Params, path: Path | str) -> dict[str, SearchEntry]:
    """The `search:` section (absent: none), validated and checked against the settings."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ParamsError(path, "search", "expected a mapping of named search entries")
    entries = {}
    for name, entry in raw.items():
        key = f"search.{name}"
        if not isinstance(entry, dict):
            raise ParamsError(path, key, "expected a mapping (base, trials, epochs, subset, metric, space)")
        try:
            entries[name] = SearchEntry(**entry)
        except ValidationError as exc:
            where, problem = describe(exc.errors(), entry)
            raise ParamsError(path, f"{key}.{where}", problem) from None
        except TypeError as exc:  # a missing or unknown top-level key of the entry
            raise ParamsError(path, key, f"expected keys base, trials, epochs, subset, metric, space ({exc})") from None
        check_entry(name, entries[name], params, path)
    return entries


def check_distinct_results(entries: dict[str, SearchEntry], path: Path | str) -> None:
    """Two entries writing one setting or sweep would each replace the other's result. Checked by
    the search only: the stages, which never write a result, run whatever the entries say."""
    writers: dict[tuple[str, str], str] = {}
    for name, entry in entries.items():
        for kind, written in zip(("setting", "sweep"), result_names(name, entry)):
            other = writers.setdefault((kind, written), name)
            if other != name:
                raise ParamsError(path, f"search.{name}", f"writes the {kind} {written!r}, as search.{other} does: "
                                  "give one of them a `result:` name of its own")


def check_entry(name: str, entry: SearchEntry, params: Params, path: Path | str) -> None:
    key = f"search.{name}"
    if not _NAME.match(str(name)):
        raise ParamsError(path, key, "a search name may hold only letters, digits, '.', '_' and '-'")
    if entry.result is not None and not _NAME.match(entry.result):
        raise ParamsError(path, f"{key}.result", "a result name may hold only letters, digits, '.', '_' and '-'")
    if entry.base not in params.settings:
        raise ParamsError(path, f"{key}.base", f"no setting {entry.base!r} (known: {', '.join(params.settings)})")
    if not entry.space:
        raise ParamsError(path, f"{key}.space", "no keys to vary: name at least one with its range or choices")
    setting = params.settings[entry.base]
    for dim_key, dim in entry.space.items():
        where = f"{key}.space.{dim_key}"
        allowed = [k for k in SEARCHABLE if k not in MODEL_OVERRIDES[_other(setting.dataset)]
                   and (k != "color" or setting.dataset == "cifar10")]
        if dim_key not in allowed:
            why = " (the per-trial budget is the entry's epochs and subset)" if dim_key in ("epochs", "subset") else ""
            raise ParamsError(path, where, f"{dim_key!r} is no key a {setting.dataset} trial can vary{why} "
                              f"(known: {', '.join(allowed)})")
        _check_dimension(dim, where, path)
        for value in dim.candidates():
            try:
                replace(setting, **{dim_key: value})
            except ValidationError as exc:
                raise ParamsError(path, where, f"{value!r}: {exc.errors()[0]['msg']}") from None
    # The feature map shrinks as kernel and strides grow: the largest of each must still fit.
    worst = {k: max(entry.space[k].candidates()) for k in ("kernel", "strides") if k in entry.space}
    if worst:
        model = resolved(params, entry.base)[2]
        for dim_key in ("dense_units", "dropout"):
            if dim_key in entry.space:
                model = replace(model, **{dim_key: entry.space[dim_key].candidates()[0]})
        problem = architecture_problem(replace(setting, **worst), model)
        if problem:
            raise ParamsError(path, f"{key}.space", problem + " (the largest values of the space must fit)")


def _other(dataset: str) -> str:
    return "cifar10" if dataset == "mnist" else "mnist"


def _check_dimension(dim: Dimension, where: str, path: Path | str) -> None:
    if dim.choices is not None:
        if dim.low is not None or dim.high is not None or dim.log:
            raise ParamsError(path, where, "either choices, or a range (low, high, log): not both")
        if not dim.choices:
            raise ParamsError(path, f"{where}.choices", "no choices: list at least one")
        if len({repr(c) for c in dim.choices}) != len(dim.choices):
            raise ParamsError(path, f"{where}.choices", "lists a choice twice")
        return
    if dim.low is None or dim.high is None:
        raise ParamsError(path, where, "expected a range (low and high) or choices")
    if isinstance(dim.low, bool) or isinstance(dim.high, bool):
        raise ParamsError(path, where, "a range's low and high are numbers")
    if type(dim.low) is not type(dim.high):
        raise ParamsError(path, where, f"low {dim.low!r} and high {dim.high!r}: write both as integers or both "
                          "with a decimal point")
    if not dim.low < dim.high:
        raise ParamsError(path, where, f"low {dim.low!r} is not below high {dim.high!r}")
    if dim.log and dim.low <= 0:
        raise ParamsError(path, where, f"a log scale needs low > 0 (got {dim.low!r})")
