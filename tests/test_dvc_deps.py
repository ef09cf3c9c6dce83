"""Every project module a stage imports, directly or through another module, is a dependency of
that stage in dvc.yaml; otherwise an edit of it leaves stale outputs that `dvc status` calls up
to date. Imports are read from the source (ast), lazy ones inside functions included."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest
from dvc.dependency.param import ParamsDependency
from dvc.repo import Repo

from tests.helpers import REPO

# Modules a stage may import without declaring them, and why none of them changes its outputs.
# The search does not follow their own imports: those serve the module's job, not the stage's.
NOT_DEPENDENCIES = {
    "pipeline/cli.py": "runs a stage's main: how errors and signals reach the user",
    "pipeline/errors.py": "the error type, and redacting URIs in messages",
    "pipeline/outputs.py": "writes files atomically; the bytes written are the caller's",
    "pipeline/config.py": "validates params.yaml; the values a stage reads are declared as its params "
                          "(the report, whose tables follow config's sweep and smoke-run rules, declares it)",
    "pipeline/tracking.py": "where MLflow runs are logged and how they end, not what a stage computes",
    "pipeline/provenance.py": "the data digest and git commit, as tags of MLflow runs only",
    "pipeline/estimate.py": "records and foretells how long an epoch takes; no output depends on it",
    "pipeline/state_files.py": "reads the files stages leave, or stops in one line; what it accepts passes as written",
    "pipeline/run_artifacts.py": "what a training run logs to MLflow besides metrics (its data, its model)",
}


def imported_modules(path: Path) -> set[str]:
    """Project modules (as 'pipeline/x.py') that the module at `path` imports anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pipeline":
            if node.module == "pipeline":
                found.update(f"pipeline/{alias.name}.py" for alias in node.names)
            else:
                found.add(node.module.replace(".", "/") + ".py")
        elif isinstance(node, ast.Import):
            found.update(alias.name.replace(".", "/") + ".py" for alias in node.names
                         if alias.name.startswith("pipeline."))
    return {module for module in found if (REPO / module).exists()}


def required_deps(module: str) -> set[str]:
    """The stage module and every project module it reaches, less NOT_DEPENDENCIES."""
    required, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current in required or current in NOT_DEPENDENCIES:
            continue
        required.add(current)
        todo.extend(imported_modules(REPO / current))
    return required


def missing_deps(module: str, declared: set[str]) -> list[str]:
    return sorted(required_deps(module) - declared)


@cache
def _stages() -> dict[str, set[str]]:
    """Stage -> its declared file deps (DVC's own expansion of dvc.yaml)."""
    with Repo(str(REPO)) as repo:
        return {stage.addressing: {Path(dep.def_path).as_posix() for dep in stage.deps
                                   if not isinstance(dep, ParamsDependency)}
                for stage in repo.index.stages}


def _module(stage: str) -> str:
    return f"pipeline/{stage.partition('@')[0]}.py"


@pytest.mark.parametrize("stage", sorted(_stages()))
def test_stage_depends_on_every_module_it_imports(stage):
    assert not missing_deps(_module(stage), _stages()[stage]), f"dvc.yaml: {stage} lacks these deps"


@pytest.mark.parametrize("stage", sorted(_stages()))
def test_stage_declares_no_module_it_does_not_import(stage):
    declared = {dep for dep in _stages()[stage] if dep.startswith("pipeline/")}
    reached = required_deps(_module(stage)) | imported_modules(REPO / _module(stage))
    assert declared <= reached, f"dvc.yaml: {stage} declares {sorted(declared - reached)}, which it never imports"


def test_a_removed_dependency_is_caught():
    """plot imports evaluate (for the confusion matrix) and, through models, architecture."""
    declared = _stages()["plot@mnist-k3-s1"]
    assert missing_deps("pipeline/plot.py", declared - {"pipeline/evaluate.py"}) == ["pipeline/evaluate.py"]
    assert missing_deps("pipeline/plot.py", declared - {"pipeline/architecture.py"}) == ["pipeline/architecture.py"]


def test_every_exempt_module_exists():
    assert all((REPO / module).exists() for module in NOT_DEPENDENCIES)
