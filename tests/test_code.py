"""The code's own rules, checked on the source: names imported from the module that defines them, modules small
enough to read in one sitting, docstrings and imports as ruff's rules of ``pyproject.toml`` ask (Google style)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["landscape", "swa", "figures", "analyses", "swa_landscape"]
MAX_LINES = 320
"""About 300 lines: past that a module is split by concept."""


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _defined(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def re_imports(files: list[Path], modules: dict[str, Path]) -> list[str]:
    """``from X import name`` where X is a module of the toolkit (not a package) that does not define ``name``."""
    out = []
    for path in files:
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        me = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
                source = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                source = node.module
            if source not in modules or modules[source].name == "__init__.py":
                continue
            defined = _defined(modules[source])
            out += [f"{path.relative_to(ROOT)}:{node.lineno}: {a.name} from {source}" for a in node.names
                    if a.name not in defined and f"{source}.{a.name}" not in modules]
    return out


def test_every_name_is_imported_from_the_module_that_defines_it():
    modules = _modules()
    files = [*modules.values(), *(ROOT / "tests").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")]
    assert re_imports(files, modules) == []


def test_modules_stay_small_enough_to_read_in_one_sitting():
    long = {str(p.relative_to(ROOT)): n for p in _modules().values() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


@pytest.mark.skipif(shutil.which("ruff") is None and not (Path(sys.executable).parent / "ruff").exists(),
                    reason="ruff is not installed (pip install -e '.[test]' installs it)")
def test_ruff_passes_with_the_docstring_rules():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    r = subprocess.run([ruff, "check", *PACKAGES, "tests", "benchmarks"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:]


def test_importing_the_toolkit_leaves_matplotlib_backend_alone():
    """A notebook's backend stays: importing every package (the drawing functions and the report included) changes
    nothing process-wide; the command line alone chooses Agg."""
    code = ("import matplotlib; matplotlib.use('pdf')\n"
            "import landscape, swa, figures.plots, figures.planes, analyses, swa_landscape.report, swa_landscape\n"
            "print(matplotlib.get_backend())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "pdf"


def test_every_help_is_plain_text_with_choices_shown():
    """Every command's and subcommand's ``--help``: no docstring markup, and every option with fixed values lists
    them (``--bn-mode {recompute,stored,interpolate}``)."""
    import argparse
    import contextlib
    import io

    from swa_landscape.cli import build_parser

    def walk(parser: argparse.ArgumentParser, path: list[str]):
        yield path, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, [*path, name])

    seen = 0
    for path, parser in walk(build_parser(), []):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            parser.print_help()
        text = out.getvalue()
        assert "``" not in text and ":func:" not in text and ":class:" not in text, (path, text)
        seen += 1
    assert seen > 10
    helps = {}
    for path, parser in walk(build_parser(), []):
        helps[" ".join(path)] = parser.format_help()
    assert "--bn-mode {recompute,stored,interpolate}" in helps["analyze segment"]
    assert "--dtype {float32,float64}" in helps["analyze segment"]
    assert "--swa-schedule {constant,cyclic,swalr}" in helps["train"]
    factories = {k for k, h in helps.items() if "DATASET" in h}  # one name for the data factory everywhere
    assert factories == {"train", "import", "surface"}
    for k in factories:
        text = " ".join(helps[k].split())
        assert "--dataset DATASET, --data DATASET" in text and "(--data: a deprecated alias)" in text, k


def test_the_deprecated_data_flag_still_works_and_says_so(capsys):
    from swa_landscape.cli import build_parser

    for argv in (["train", "--data", "pkg.mod:make", "--data-kwargs", '{"n": 3}', "--out", "r.h5"],
                 ["import", "--model", "m:f", "--data", "pkg.mod:make", "--out", "r.h5"],
                 ["surface", "--model", "m:f", "--checkpoint", "c.pt", "--data", "pkg.mod:make", "--out", "o"]):
        args = build_parser().parse_args(argv)
        assert args.dataset == "pkg.mod:make", argv
        err = capsys.readouterr().err
        assert "swa-landscape: notice: --data is deprecated; use --dataset" in err, argv
    assert args.dataset_kwargs == {} and build_parser().parse_args(
        ["train", "--data-kwargs", '{"n": 3}', "--out", "r.h5"]).dataset_kwargs == {"n": 3}
    assert "--data-kwargs is deprecated; use --dataset-kwargs" in capsys.readouterr().err
    build_parser().parse_args(["train", "--dataset", "a:b", "--out", "r.h5"])
    assert capsys.readouterr().err == ""  # the new name says nothing


def test_version():
    from landscape.files import toolkit_version

    r = subprocess.run([sys.executable, "-m", "swa_landscape", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == f"swa-landscape {toolkit_version()}"
    assert toolkit_version() != "0+unknown"  # the installed distribution's own version
