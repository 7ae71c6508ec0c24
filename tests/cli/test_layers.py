"""The packages' layers: no lower package imports a higher one; a command opens the run file once."""

import subprocess
import sys
from pathlib import Path

import h5py
import pytest

ORDER = ["landscape", "swa", "analyses", "figures"]  # lowest first
HIGHER = {"landscape": ["swa", "analyses", "figures", "swa_landscape"], "swa": ["analyses", "figures", "swa_landscape"],
          "analyses": ["figures", "swa_landscape"], "figures": ["swa_landscape"]}


@pytest.mark.parametrize("package", list(HIGHER))
def test_no_package_imports_a_higher_layer(package):
    code = ("import sys, importlib, pkgutil\n"
            f"p = importlib.import_module({package!r})\n"
            "for m in pkgutil.iter_modules(p.__path__):\n"
            f"    importlib.import_module({package!r} + '.' + m.name)\n"
            "print(' '.join(sorted({n.split('.')[0] for n in sys.modules})))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    loaded = set(r.stdout.split())
    assert package in loaded
    assert not loaded & set(HIGHER[package]), f"{package} pulls in {sorted(loaded & set(HIGHER[package]))}"


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
