"""The package's import graph has no cycles, counting imports inside functions too: a cycle held
together by a lazy import is still a cycle, only one that fails later and further from its cause."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "scaffolds")


def _modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules that `name` imports, anywhere in its body."""
    out: set[str] = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import mod` imports the module `pkg.mod` when there is one.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def test_the_graph_sees_the_modules_and_their_imports() -> None:
    graph = _graph()
    assert "harness.search.engine" in graph and "harness.eval.evaluate" in graph
    assert "harness.search.node" in graph["harness.search.engine"]
    assert "harness.search.api" in graph["scaffolds.greedy"]


def test_no_import_cycles() -> None:
    try:
        tuple(graphlib.TopologicalSorter(_graph()).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_the_harness_does_not_import_the_scaffold_presets() -> None:
    """The presets are plug-ins like a third party's: found through their entry point."""
    offenders = {
        m for m, deps in _graph().items() if m.startswith("harness") and any(d.startswith("scaffolds") for d in deps)
    }
    assert not offenders
