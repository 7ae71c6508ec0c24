"""The user guide's code runs: every block of docs/user-guide.md, in order, in a fresh directory (docs cannot rot).

A block starting with ``# file: NAME`` is written to that file; other ``python`` blocks run in one shared
namespace; ``bash`` blocks run with the installed ``swa-landscape`` on the PATH.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def blocks(path: Path) -> list[tuple[str, str]]:
    return re.findall(r"```(python|bash)\n(.*?)```", path.read_text(), flags=re.S)


def run_blocks(path: Path, where: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    namespace: dict = {"__name__": "__guide__"}
    cwd = os.getcwd()
    os.chdir(where)
    sys.path.insert(0, str(where))
    try:
        for lang, code in blocks(path):
            first = code.splitlines()[0]
            if first.startswith("# file: "):
                (where / first.removeprefix("# file: ").strip()).write_text(code)
            elif lang == "python":
                exec(compile(code, str(path), "exec"), namespace)  # noqa: S102 - the page's own code
            else:
                r = subprocess.run(["bash", "-e", "-c", code], cwd=where, env=env, capture_output=True, text=True,
                                   timeout=300)
                assert r.returncode == 0, f"{code}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    finally:
        os.chdir(cwd)
        sys.path.remove(str(where))
        sys.modules.pop("mine_factories", None)


def test_the_user_guide_runs(tmp_path):
    guide = ROOT / "docs" / "user-guide.md"
    assert len(blocks(guide)) >= 7
    run_blocks(guide, tmp_path)
    for run in ("mine", "cli", "loop", "lightning", "imported", "reg", "lm"):  # every way produced a run that the analyses completed
        assert (tmp_path / f"{run}.landscape.h5").exists(), run
    assert (tmp_path / "figs" / "index.html").exists() and (tmp_path / "cli-figs" / "index.html").exists()
    assert (tmp_path / "reg-figs" / "rays.png").exists()
