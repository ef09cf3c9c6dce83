"""Every params.yaml key a stage reads is declared in that stage's `params:` in dvc.yaml.

Each stage module selects its part of the config in `stage_params(params, item)`; the rest of the
stage sees only that. Here the selection runs on a recording proxy that notes every key path it
touches, and each path must be covered by the stage's declared params (DVC's own expansion of
dvc.yaml, so foreach interpolation is DVC's, not ours).
"""

from __future__ import annotations

import importlib
from dataclasses import fields, is_dataclass

import pytest
from dvc.dependency.param import ParamsDependency
from dvc.repo import Repo

from pipeline.params.load import parse_params
from tests.helpers import REPO, shipped_params


class Recorder:
    """Stands in for a config node; reading an attribute or item records its key path."""

    def __init__(self, value, path: str, seen: set[str]):
        self._value, self._path, self._seen = value, path, seen

    def _child(self, name: str, value):
        path = f"{self._path}.{name}" if self._path else name
        self._seen.add(path)
        if is_dataclass(value) or isinstance(value, dict):
            return Recorder(value, path, self._seen)
        return value

    def __getattr__(self, name):
        if name.startswith("_") or not is_dataclass(self._value):
            raise AttributeError(name)
        if name not in {f.name for f in fields(self._value)}:
            raise AttributeError(name)
        return self._child(name, getattr(self._value, name))

    def __getitem__(self, key):
        return self._child(str(key), self._value[key])


def key_paths(obj, prefix: str = "") -> list[str]:
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


def _leaf_paths(params, seen: set[str]) -> set[str]:
    """The parameter leaves under every deepest path the selection touched."""
    deepest = {p for p in seen if not any(other.startswith(p + ".") for other in seen)}
    leaves = set()
    for path in deepest:
        node = params
        for part in path.split("."):
            node = node[part] if isinstance(node, dict) else getattr(node, part)
        leaves.update(key_paths(node, path))
    return leaves


def _declared(stage) -> set[str]:
    declared = set()
    for dep in stage.deps:
        if isinstance(dep, ParamsDependency):
            declared.update(dep.params)
    return declared


def _stages():
    with Repo(str(REPO)) as repo:
        return [(stage.addressing, _declared(stage)) for stage in repo.index.stages]


@pytest.mark.parametrize("name,declared", _stages(), ids=[name for name, _ in _stages()])
def test_stage_declares_every_key_it_reads(name, declared):
    params = parse_params(shipped_params(), "params.yaml")
    module_name, _, item = name.partition("@")
    module = importlib.import_module(f"pipeline.{module_name}")
    seen: set[str] = set()
    select = getattr(module, "stage_params", None)
    if select is not None:
        select(Recorder(params, "", seen), item)
    read = _leaf_paths(params, seen)
    undeclared = sorted(p for p in read if not any(p == d or p.startswith(d + ".") for d in declared))
    assert not undeclared, f"{name} reads {undeclared} but dvc.yaml does not declare them"


def test_recorder_catches_an_undeclared_read():
    params = parse_params(shipped_params(), "params.yaml")
    seen: set[str] = set()
    _ = Recorder(params, "", seen).settings["mnist-k3-s1"].kernel
    assert _leaf_paths(params, seen) == {"settings.mnist-k3-s1.kernel"}
