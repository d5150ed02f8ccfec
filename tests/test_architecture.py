"""The package's shape (docs/architecture.md): scripts and the run core never import the `axiomrl`
command's tools, and no two modules of axiomrl_utils import each other, directly or in a loop."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

COMMAND_ENTRY_SHIMS = {"axiomrl_utils.benchmark", "axiomrl_utils.tune"}  # `python -m axiomrl_utils.benchmark` starts a sweep, `.tune` a study


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, known: set[str]) -> set[str]:
    """Every axiomrl_utils module `path` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("axiomrl_utils"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("axiomrl_utils"))
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in (REPO / "axiomrl_utils").rglob("*.py")}
    files.update({_module_name(p): p for p in (REPO / "axiomrl").glob("*.py")})
    return {name: _imports(path, set(files)) - {name} for name, path in files.items()}


def test_scripts_and_the_run_core_do_not_import_the_command_tools() -> None:
    graph = _graph()
    assert "axiomrl_utils.commands.cli" in graph and "axiomrl_utils.run.training_run" in graph
    offending = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        for target in targets
        if target.startswith("axiomrl_utils.commands")
        and not module.startswith("axiomrl_utils.commands")
        and module not in COMMAND_ENTRY_SHIMS
    )
    assert offending == []


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if target == "axiomrl_utils":  # the package itself defines only UsageError and __version__
                continue
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target in graph and state.get(target) is None:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(graph):
        if state.get(module) is None:
            visit(module, [module])
    assert cycles == []
