"""The package's shape: no import circles, packages that run no code of their own, and an
architecture document that names every module there is and no module there is not."""

from __future__ import annotations

import ast
import re

from tests.helpers import REPO, imported_modules

MODULES = sorted(path.relative_to(REPO).as_posix() for path in (REPO / "pipeline").rglob("*.py"))


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every set of modules that import each other round a circle (Tarjan's strongly connected
    components of more than one module)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_another_in_a_circle():
    """Imports inside functions count: they run as surely as the others, only later."""
    graph = {module: imported_modules(REPO / module) - {module} for module in MODULES}
    assert circles(graph) == []


def test_a_circle_is_found():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


STAGES = {f"pipeline/{name}.py" for name in ("download", "preprocess", "job", "train", "evaluate", "plot", "report",
                                                    "register")}
# Tools that drive stages, and that no stage imports: they may import a stage.
STAGE_DRIVERS = {"pipeline/training/estimate.py", "pipeline/scaleout/sweep.py", "pipeline/scaleout/cluster.py",
                 "pipeline/scaleout/cluster_setup.py", "pipeline/search/trial.py"}


def test_packages_import_no_stage_and_common_imports_nothing_else():
    for module in MODULES:
        imported = imported_modules(REPO / module)
        if module.startswith("pipeline/common/"):
            assert all(target.startswith("pipeline/common/") for target in imported), module
        if module not in STAGES | STAGE_DRIVERS:
            assert not imported & STAGES, f"{module} imports the stage {sorted(imported & STAGES)}"


def test_a_package_init_holds_only_its_docstring():
    """What imports a module through its package (dvc.yaml's deps leave __init__ files out)."""
    for init in (REPO / "pipeline").rglob("__init__.py"):
        body = ast.parse(init.read_text(encoding="utf-8")).body
        assert len(body) <= 1 and all(isinstance(node, ast.Expr) for node in body), init


def test_the_architecture_document_names_every_module_and_no_other():
    named = set(re.findall(r"`(pipeline/[\w/]+\.py)`", (REPO / "docs" / "architecture.md").read_text()))
    documented = {module for module in MODULES if not module.endswith("__init__.py")}
    assert sorted(documented - named) == [], "modules docs/architecture.md does not name"
    assert sorted(named - set(MODULES)) == [], "modules docs/architecture.md names that do not exist"
