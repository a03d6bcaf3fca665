"""The package's import graph, read from the code (module-level and function-level imports):
the lower layers never import the upper ones, and module-level imports have no cycle."""
from __future__ import annotations

import ast
from pathlib import Path

import annotator

ROOT = Path(annotator.__file__).parent
LOWER = ("annotator.body", "annotator.geometry", "annotator.model")
UPPER = ("annotator.data", "annotator.steps", "annotator.evaluation", "annotator.bench")


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("annotator")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("annotator") and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def _graph(top_level_only: bool) -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path, top_level_only) if m in modules and m != name}
    return graph


def test_lower_layers_never_import_upper_ones():
    bad = sorted(f"{mod} imports {dep}" for mod, deps in _graph(top_level_only=False).items()
                 if mod.startswith(LOWER) for dep in deps if dep.startswith(UPPER))
    assert not bad, "\n".join(bad)


def test_module_level_imports_have_no_cycle():
    graph = _graph(top_level_only=True)
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(" -> ".join(path[path.index(dep):] + [dep]) if dep in path else f"{node} -> {dep}")
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    # a package importing its own submodules (``__init__`` re-exports) is not a cycle of concerns
    real = [c for c in cycles if not all(p.startswith(c.split(" -> ")[0]) or c.split(" -> ")[0].startswith(p)
                                         for p in c.split(" -> "))]
    assert not real, "\n".join(real)
