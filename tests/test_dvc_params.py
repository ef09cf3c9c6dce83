"""Every params.yaml key a stage reads is declared in that stage's `params:` in dvc.yaml.

Each stage module selects its part of the config in `stage_params(params, item)`; the rest of the
stage sees only that. Here the selection runs on a recording proxy that notes every key path it
touches, and each path must be covered by the stage's declared params (DVC's own expansion of
dvc.yaml, so foreach interpolation is DVC's, not ours).
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import fields, is_dataclass

import pytest
from dvc.dependency.param import ParamsDependency
from dvc.repo import Repo

from pipeline.params.load import parse_params
from tests.helpers import REPO, imported_modules, shipped_checkout, shipped_params


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


@functools.cache
def _stages() -> dict[str, dict[str, set[str]]]:
    """Stage module -> {each of its stages (DVC's own expansion of dvc.yaml): its declared params}."""
    with Repo(str(shipped_checkout())) as repo:
        by_module: dict[str, dict[str, set[str]]] = {}
        for stage in repo.index.stages:
            by_module.setdefault(stage.name.partition("@")[0], {})[stage.name] = _declared(stage)
        return by_module


def _selecting(select: bool) -> list[str]:
    return sorted(m for m in _stages() if hasattr(importlib.import_module(f"pipeline.{m}"), "stage_params") == select)


@pytest.mark.parametrize("module", _selecting(True))
def test_stage_declares_every_key_it_reads(module):
    """Each stage module once, over every stage dvc.yaml expands from it (each foreach item)."""
    params = parse_params(shipped_params(), "params.yaml")
    select = importlib.import_module(f"pipeline.{module}").stage_params
    problems = []
    for name, declared in _stages()[module].items():
        seen: set[str] = set()
        select(Recorder(params, "", seen), name.partition("@")[2])
        read = _leaf_paths(params, seen)
        assert read, f"{name}: stage_params read nothing"
        undeclared = sorted(p for p in read if not any(p == d or p.startswith(d + ".") for d in declared))
        if undeclared:
            problems.append(f"{name} reads {undeclared} but dvc.yaml does not declare them")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("module", _selecting(False))
def test_a_stage_that_selects_no_params_reads_no_params_file(module):
    """train, evaluate and download get their values from their inputs (a job file, the command
    line), not from params.yaml: they import no params loader, and dvc.yaml declares none."""
    assert "pipeline/params/load.py" not in imported_modules(REPO / f"pipeline/{module}.py")
    assert not any(_stages()[module].values()), f"dvc.yaml declares params for {module}, which reads none"


def test_every_stage_module_is_checked():
    assert len(_selecting(True)) >= 4 and len(_selecting(False)) >= 3
    assert set(_selecting(True)) | set(_selecting(False)) == set(_stages())


def test_recorder_catches_an_undeclared_read():
    params = parse_params(shipped_params(), "params.yaml")
    seen: set[str] = set()
    _ = Recorder(params, "", seen).settings["mnist-k3-s1"].kernel
    assert _leaf_paths(params, seen) == {"settings.mnist-k3-s1.kernel"}
