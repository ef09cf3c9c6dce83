"""Every project module a stage imports, directly or through another module, is a dependency of
that stage in dvc.yaml; otherwise an edit of it leaves stale outputs that `dvc status` calls up
to date. Imports are read from the source (ast), lazy ones inside functions included."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from dvc.dependency.param import ParamsDependency
from dvc.repo import Repo

from tests.helpers import REPO, imported_modules, shipped_checkout

# Modules a stage may import without declaring them, and why none of them changes its outputs.
# The search does not follow their own imports: those serve the module's job, not the stage's.
NOT_DEPENDENCIES = {
    "pipeline/common/cli.py": "runs a stage's main: how errors and signals reach the user",
    "pipeline/common/errors.py": "the error type, and redacting URIs in messages",
    "pipeline/common/outputs.py": "writes files atomically; the bytes written are the caller's",
    "pipeline/common/state_files.py": "reads the files stages leave, or stops in one line; what it accepts "
                                      "passes as written",
    "pipeline/params/load.py": "reads and checks params.yaml; the values a stage reads are declared as its params",
    "pipeline/params/file.py": "reads params.yaml strictly; its one-line messages",
    "pipeline/params/schema.py": "params.yaml's types; the values a stage reads are declared as its params (the "
                                 "report, whose tables follow its sweep and smoke-run rules, declares it)",
    "pipeline/tracking/store.py": "where MLflow runs are logged, not what a stage computes",
    "pipeline/tracking/outcome.py": "how MLflow runs end (status and reason), not what a stage computes",
    "pipeline/tracking/run_files.py": "reads the run id a train stage wrote, or stops in one line; the file itself is "
                                      "the stage's declared dependency",
    "pipeline/provenance/data.py": "the prepared data's digest, which job files record (the job stage declares it)",
    "pipeline/provenance/record.py": "what made a run (code, machine, versions), as tags of its MLflow run only",
    "pipeline/provenance/code.py": "the commit and uncommitted edit a run's tags name",
    "pipeline/provenance/machine.py": "the machine and library versions a run's tags name",
    "pipeline/tracking/system_metrics.py": "how often MLflow samples the machine's use during a run",
    "pipeline/tracking/artifacts.py": "what a training run logs to MLflow besides metrics (its data, its model)",
    "pipeline/training/timings.py": "records how long an epoch took, for the estimate; no output depends on it",
}


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
    with Repo(str(shipped_checkout())) as repo:
        return {stage.name: {Path(dep.def_path).as_posix() for dep in stage.deps
                                   if not isinstance(dep, ParamsDependency)}
                for stage in repo.index.stages}


def _module(stage: str) -> str:
    return f"pipeline/{stage.partition('@')[0]}.py"


def _modules() -> list[str]:
    return sorted({stage.partition("@")[0] for stage in _stages()})


def _stages_of(module: str) -> list[str]:
    """Every stage dvc.yaml expands from one stage module (each foreach item)."""
    return [stage for stage in sorted(_stages()) if stage.partition("@")[0] == module]


@pytest.mark.parametrize("module", _modules())
def test_stage_depends_on_every_module_it_imports(module):
    required = required_deps(_module(module))
    problems = {stage: sorted(required - _stages()[stage]) for stage in _stages_of(module)}
    assert not any(problems.values()), f"dvc.yaml: these stages lack deps: {problems}"


@pytest.mark.parametrize("module", _modules())
def test_stage_declares_no_module_it_does_not_import(module):
    reached = required_deps(_module(module)) | imported_modules(REPO / _module(module))
    problems = {stage: sorted(dep for dep in _stages()[stage] if dep.startswith("pipeline/") and dep not in reached)
                for stage in _stages_of(module)}
    assert not any(problems.values()), f"dvc.yaml: these stages declare modules they never import: {problems}"


def test_a_removed_dependency_is_caught():
    """plot imports evaluate (for the confusion matrix) and, through models, architecture."""
    declared = _stages()["plot@mnist-k3-s1"]
    assert missing_deps("pipeline/plot.py", declared - {"pipeline/evaluate.py"}) == ["pipeline/evaluate.py"]
    architecture = "pipeline/model/architecture.py"
    assert missing_deps("pipeline/plot.py", declared - {architecture}) == [architecture]


def test_every_exempt_module_exists():
    assert all((REPO / module).exists() for module in NOT_DEPENDENCIES)
