"""The built wheel, installed in a fresh environment, works on its own; its package names collide with nothing.

The wheel is built from a copy of the sources (pip's own build, no network: the build backend of the test
environment), installed with ``--no-deps`` into a new virtual environment that sees the test environment's
packages only as its dependencies (a path entry, so the checkout's editable install is not among them), and run
from an empty directory: ``--version`` and the demo's first step, a short training run, then ``info``.
"""

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("analyses", "figures", "landscape", "swa", "swa_landscape")


def _build(tmp: Path) -> Path:
    src = tmp / "src"
    for name in (*PACKAGES, "pyproject.toml", "README.md"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, src / name)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                        "--no-index", "-w", str(tmp / "dist"), "-q"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    (wheel,) = (tmp / "dist").glob("swa_landscape-*.whl")
    return wheel


def test_the_wheel_installs_and_runs_in_a_fresh_environment(tmp_path):
    wheel = _build(tmp_path)
    with zipfile.ZipFile(wheel) as z:
        tops = {n.split("/")[0] for n in z.namelist() if not n.split("/")[0].endswith(".dist-info")}
        assert tops == set(PACKAGES)  # exactly the five packages, no tests or benchmarks
        assert "analyses/catalog.py" in z.namelist() and "swa_landscape/cli.py" in z.namelist()
    env_dir = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    py = env_dir / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch, h5py, ... as installed
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q",
                        str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    work = tmp_path / "work"
    work.mkdir()
    env = {"PATH": f"{env_dir / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "OMP_NUM_THREADS": "2"}

    def run(*args: str) -> str:
        r = subprocess.run([str(env_dir / "bin" / "swa-landscape"), *args], cwd=work, env=env, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, (args, r.stderr[-3000:])
        return r.stdout

    assert run("--version").strip().endswith("0.1.0")
    where = subprocess.run([str(py), "-c", "import swa_landscape, landscape; print(swa_landscape.__file__); "
                                           "print(landscape.__file__)"], cwd=work, env=env, capture_output=True,
                           text=True, check=True).stdout.split()
    assert all(p.startswith(site) for p in where), where  # the wheel's code, not the checkout's
    run("train", "--epochs", "2", "--swa-start", "1", "--swa-epochs", "1", "--num-samples", "300", "--test-samples",
        "100", "--out", "run.h5", "--no-progress")
    assert "status: complete" in run("info", "run.h5")


def test_the_top_level_package_names_collide_with_nothing_installed():
    """Our five generic names (``landscape``, ``swa``, ...) are provided by swa-landscape alone."""
    owners = packages_distributions()
    for name in PACKAGES:
        assert {d.lower().replace("_", "-") for d in owners.get(name, [])} == {"swa-landscape"}, (name, owners.get(name))
