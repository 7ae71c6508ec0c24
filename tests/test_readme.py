"""The README's tour runs as written: train, info, analyze, figures, compare (a newcomer's first commands)."""

import contextlib
import io
import os
import re
import shlex
from pathlib import Path

import pytest

from swa_landscape import main

ROOT = Path(__file__).resolve().parent.parent


def test_readme_tour_runs(tmp_path, monkeypatch):
    """Each command of the tour, in order, through the command line's own entry point (in-process: the same
    parser and code as the installed ``swa-landscape``, without an interpreter start per line)."""
    text = (ROOT / "README.md").read_text()
    part = text[text.index("## A tour"):text.index("## Documentation")]
    lines = [ln.split("  #")[0].strip() for ln in re.search(r"```bash\n(.*?)```", part, re.S).group(1).splitlines()]
    assert len(lines) >= 5 and all(ln.startswith("swa-landscape ") for ln in lines)
    monkeypatch.chdir(tmp_path)
    for line in lines:
        argv = shlex.split(line)[1:]
        with contextlib.redirect_stdout(io.StringIO()) as out:
            if "--help" in argv:
                with pytest.raises(SystemExit) as e:
                    main(argv)
                assert e.value.code == 0 and "--top-k" in out.getvalue()
            else:
                assert main(argv + ([] if argv[0] in ("info", "compare", "figures") else ["--no-progress"])) == 0, line
    assert (tmp_path / "run.landscape.h5").exists() and (tmp_path / "figs" / "index.html").exists()
    assert (tmp_path / "cmp" / "compare.csv").exists() and os.path.getsize(tmp_path / "cmp" / "index.html") > 0


def test_readme_is_short_and_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 150
    for link in [part.split(")")[0] for part in text.split("](")[1:]]:
        if not link.startswith("http"):
            assert (ROOT / link.split("#")[0]).exists(), link
