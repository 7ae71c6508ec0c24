"""The packages' layers, read from every import statement (at module level and inside functions, by the AST): no
lower package imports a higher one, the drawing functions import nothing of the toolkit but themselves, no module
imports itself through a cycle; and a command opens the run file once."""

from __future__ import annotations

import ast
from pathlib import Path

import h5py

ROOT = Path(__file__).resolve().parents[2]
ORDER = ["landscape", "swa", "figures", "analyses", "swa_landscape"]  # lowest first
ONLY = {"figures": {"figures"}}
"""Packages that may use only these of the toolkit's packages (drawing functions: arrays in, figures out)."""


def _module(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path, packages: list[str]) -> dict[str, dict[str, int]]:
    """Module to the toolkit modules it imports (with a line number), from every import statement of its source."""
    files = {_module(p, root): p for pkg in packages for p in (root / pkg).rglob("*.py")}
    graph: dict[str, dict[str, int]] = {}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                base = base[: len(base) - node.level + 1] if node.level else []
                stem = ".".join(base + ([node.module] if node.module else []))
                names = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in files else stem for a in node.names]
            else:
                continue
            for name in names:
                target = next((n for n in (name, name.rsplit(".", 1)[0]) if n in files), None)
                if target is not None and target != mod:
                    edges.setdefault(target, node.lineno)
        graph[mod] = edges
    return graph


def layer_violations(graph: dict[str, dict[str, int]]) -> list[str]:
    """Imports of a higher layer, or of a package a restricted one may not use."""
    rank = {p: i for i, p in enumerate(ORDER)}
    out = []
    for mod, edges in graph.items():
        mine = mod.split(".")[0]
        for target, line in edges.items():
            theirs = target.split(".")[0]
            if rank[theirs] > rank[mine] or (mine in ONLY and theirs not in ONLY[mine]):
                out.append(f"{mod} (line {line}) imports {target}")
    return out


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The import cycles of the graph (one path each), by depth-first search."""
    found, state = [], {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in graph.get(m, {}):
            if state.get(t) == 1:
                found.append(path[path.index(t):] + [t])
            elif t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return found


def test_no_package_imports_a_higher_layer_even_inside_a_function():
    graph = import_graph(ROOT, ORDER)
    assert set(graph) >= {"landscape.engine", "analyses.rays", "figures.plots", "swa_landscape.report"}
    assert "figures.plots" in graph["analyses.rays"]  # a function-level import is read: the report section's
    assert layer_violations(graph) == []


def test_no_import_cycle_at_any_depth():
    assert cycles(import_graph(ROOT, ORDER)) == []


def test_the_checks_catch_a_cycle_and_a_climb(tmp_path):
    """The same checks on a small tree with a cycle hidden in a function and a drawing module that reads results."""
    for path, text in {"analyses/__init__.py": "", "analyses/a.py": "from .b import x\n",
                       "analyses/b.py": "def f():\n    from analyses import a\n",
                       "figures/__init__.py": "", "figures/p.py": "def g():\n    import analyses.b\n",
                       "landscape/__init__.py": "", "swa/__init__.py": "", "swa_landscape/__init__.py": ""}.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    graph = import_graph(tmp_path, ORDER)
    assert cycles(graph) == [["analyses.a", "analyses.b", "analyses.a"]]
    assert layer_violations(graph) == ["figures.p (line 2) imports analyses.b"]


def test_analyze_all_opens_the_run_file_once(tiny_run, tmp_path, monkeypatch):
    import swa_landscape

    opened = []
    real = h5py.File.__init__

    def counting(self, name, *a, **k):
        if Path(str(name)).resolve() == Path(tiny_run).resolve():
            opened.append(a[0] if a else k.get("mode"))
        return real(self, name, *a, **k)

    monkeypatch.setattr(h5py.File, "__init__", counting)
    rc = swa_landscape.main(["analyze", tiny_run, "all", "--out", str(tmp_path / "r.h5"), "--rays.directions", "2",
                             "--rays.steps", "3", "--rays.t-max", "1", "--plane.grid", "3", "3", "--segment.steps", "3",
                             "--dtype", "float64", "--no-progress"])
    assert rc == 0
    assert opened == ["r"]  # once, read-only, for four analyses
