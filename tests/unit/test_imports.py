"""The package's import graph (module level and inside functions): no new import cycle.

A cycle means one module holds two layers. One remains from before this test (issue 26:
model-shape checks and the statistics/evaluation split rule sit in preflight and tokenization);
it is listed here so that it can only shrink.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers.workflow import REPO

PACKAGE = REPO / "src" / "neuron_ablation"
KNOWN_CYCLES = {frozenset({"images", "models", "preflight", "tokenization"})}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (``neuron_ablation.`` dropped)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                inner = target.removeprefix("neuron_ablation.")
                if target.startswith("neuron_ablation.") and inner in modules and inner != name:
                    graph[name].add(inner)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_new_import_cycle():
    new = [sorted(c) for c in cycles(import_graph()) if c not in KNOWN_CYCLES]
    assert not new, f"import cycles: {new} (split the module that holds two layers)"
