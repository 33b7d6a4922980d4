"""The package's import graph (module level and inside functions): no new import cycle.

A cycle means one module holds two layers: split it (scoring/evaluation, integrity/verify,
model_shapes out of preflight, splits out of tokenization were such splits).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers.workflow import REPO

PACKAGE = REPO / "src" / "neuron_ablation"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(top_level_only: bool = False) -> dict[str, set[str]]:
    """module -> the package modules it imports (``neuron_ablation.`` dropped): anywhere in it,
    or at import time only (statements at module level)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        for node in tree.body if top_level_only else ast.walk(tree):
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


def test_no_import_cycle():
    found = [sorted(c) for c in cycles(import_graph())]
    assert not found, f"import cycles: {found} (split the module that holds two layers)"


def test_preflight_stays_torch_free():
    """Pre-flight runs in Snakemake's process before any job: it must not import torch."""
    graph = import_graph(top_level_only=True)
    reached, todo = set(), ["preflight"]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo += graph[module]
    heavy = {m for m in reached if imports_torch_at_top(PACKAGE / f"{m.replace('.', '/')}.py")}
    assert not heavy, f"pre-flight reaches modules that import torch at import time: {heavy}"


def imports_torch_at_top(path: Path) -> bool:
    if not path.exists():  # a package: its __init__
        path = path.with_suffix("") / "__init__.py"
    tree = ast.parse(path.read_text())
    for node in tree.body:
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        if any(n == "torch" or n.startswith("torch.") for n in names):
            return True
    return False
