"""The import graph between the units of tvm_mp/ is one-way, and tools stay out of it.

A unit is a subpackage (``tvm_mp.quantize``) or a top-level module
(``tvm_mp.compile``).  Every ``import`` / ``from ... import`` in every module
counts, including those inside functions, so a cycle cannot hide behind a lazy
import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = "tvm_mp"
ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / PACKAGE

# Modules that are not the library: nothing in tvm_mp (but tvm_mp.testing
# itself) imports them, and ``import tvm_mp`` does not load them.
TOOL_MODULES = ("tvm_mp.testing", "tools")
# Training and measuring for the cost models: library code (``tvm-mp cost-model``),
# but ``import tvm_mp`` must not load it either.
TRAINING_MODULES = ("tvm_mp.cost_models.train", "tvm_mp.measure.collect", "tvm_mp.measure.cost_model_cli")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path):
    """(imported module, line) for every import in ``path``, relative ones resolved."""
    module = _module_name(path)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if node.module is None or node.level:
                # ``from . import x`` / ``from .pkg import x`` may name submodules.
                for alias in node.names:
                    yield f"{target}.{alias.name}", node.lineno
                if node.module is not None:
                    yield target, node.lineno
            else:
                yield target, node.lineno


def _unit(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != PACKAGE or len(parts) < 2:
        return None
    return ".".join(parts[:2])


def _sources():
    return sorted(PACKAGE_DIR.rglob("*.py"))


def _unit_graph():
    """unit -> unit -> [evidence "file:line"]."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in _sources():
        src = _unit(_module_name(path))
        if src is None:
            continue
        graph[src]  # every unit is a node, even one that imports nothing
        for target, line in _imports(path):
            dst = _unit(target)
            if dst is None or dst == src:
                continue
            where = f"{path.relative_to(ROOT)}:{line}"
            if where not in graph[src][dst]:
                graph[src][dst].append(where)
    return graph


def _strongly_connected(graph) -> list[list[str]]:
    """Tarjan's algorithm; components in no particular order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, {}):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_unit_import_graph_is_acyclic():
    graph = _unit_graph()
    cycles = [c for c in _strongly_connected(graph) if len(c) > 1]
    lines = []
    for component in cycles:
        lines.append("cycle between " + ", ".join(component) + ":")
        members = set(component)
        for src in component:
            for dst, evidence in sorted(graph[src].items()):
                if dst in members:
                    lines.append(f"  {src} -> {dst}: " + ", ".join(evidence))
    assert not cycles, "\n".join(lines)


def test_library_does_not_import_tools():
    offenders = []
    for path in _sources():
        module = _module_name(path)
        if module == "tvm_mp.testing" or module.startswith("tvm_mp.testing."):
            continue
        for target, line in _imports(path):
            if any(target == t or target.startswith(t + ".") for t in TOOL_MODULES):
                offenders.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not offenders, "\n".join(offenders)


def test_import_tvm_mp_loads_no_tools_or_training():
    code = (
        "import sys, tvm_mp\n"
        f"tools = {TOOL_MODULES + TRAINING_MODULES!r}\n"
        "print('\\n'.join(m for m in sys.modules"
        " if any(m == t or m.startswith(t + '.') for t in tools)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "", out.stdout


def test_checker_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
    """The checker itself: relative and lazy imports resolve to units, and a cycle through them is found."""
    pkg = tmp_path / PACKAGE
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("")
    (pkg / "a" / "m.py").write_text("def f():\n    from ..b import g\n    return g\n")
    (pkg / "b.py").write_text("from . import a\nfrom .a.m import f\nimport numpy\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    monkeypatch.setitem(globals(), "PACKAGE_DIR", pkg)
    assert sorted(_imports(pkg / "a" / "m.py")) == [("tvm_mp.b", 2), ("tvm_mp.b.g", 2)]
    graph = _unit_graph()
    assert dict(graph["tvm_mp.a"]) == {"tvm_mp.b": ["tvm_mp/a/m.py:2"]}
    assert dict(graph["tvm_mp.b"]) == {"tvm_mp.a": ["tvm_mp/b.py:1", "tvm_mp/b.py:2"]}
    assert [c for c in _strongly_connected(graph) if len(c) > 1] == [["tvm_mp.a", "tvm_mp.b"]]
