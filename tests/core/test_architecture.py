"""The house, read from the source (ast): no import cycles, imports flow one way between the
packages (scenarios <- benchmark <- methods; the harness finds methods through the plugin
registry), and no function in benchmark/ or methods/ runs past 60 lines."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("benchmark", "methods", "scenarios")
MAX_LINES = 60
# package -> packages it may import (the layers, bottom first: scenarios, benchmark, methods)
ALLOWED = {"scenarios": set(), "benchmark": {"scenarios"}, "methods": {"benchmark", "scenarios"}}


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def imported(name: str, path: Path, known: dict) -> set[str]:
    """The project modules that ``name`` imports (anywhere in the file, TYPE_CHECKING included)."""
    deps = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".")[: len(name.split(".")) - node.level + (path.name == "__init__.py")]
                base = ".".join(parts + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                deps.add(target)
    return deps


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(name, path, known) for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan); a package's __init__
    importing its own children is not counted as a cycle."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w.startswith(v + "."):
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_imports_flow_one_way_between_packages():
    wrong = sorted(f"{a} imports {b}" for a, deps in import_graph().items() for b in deps
                   if b.split(".")[0] != a.split(".")[0]
                   and b.split(".")[0] not in ALLOWED[a.split(".")[0]])
    assert wrong == []


def test_no_function_over_sixty_lines():
    long = []
    for pkg in ("benchmark", "methods"):
        for path in (REPO / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = node.end_lineno - node.lineno + 1
                    if n > MAX_LINES:
                        long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({n} lines)")
    assert long == []


def test_the_run_loop_fits_one_screen():
    tree = ast.parse((REPO / "benchmark/engine/run.py").read_text())
    run = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Run")
    execute = next(n for n in run.body if isinstance(n, ast.FunctionDef) and n.name == "execute")
    assert execute.end_lineno - execute.lineno + 1 <= 25


@pytest.mark.parametrize("source, cycle", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
    ({"p": {"p.x"}, "p.x": {"p"}}, []),  # a package importing its own child is no cycle
])
def test_the_cycle_finder_finds_cycles(source, cycle):
    assert cycles(source) == cycle


def test_the_checks_see_a_violation(tmp_path):
    """The graph is real: a benchmark module importing methods would be found."""
    graph = import_graph()
    assert "benchmark.engine.run" in graph and "benchmark.core.registry" in graph["benchmark.engine.run"]
    graph["benchmark.engine.run"] = graph["benchmark.engine.run"] | {"methods.template"}
    wrong = [b for b in graph["benchmark.engine.run"] if b.split(".")[0] not in ALLOWED["benchmark"] | {"benchmark"}]
    assert wrong == ["methods.template"]
