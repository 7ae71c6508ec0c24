"""The example notebook (docs/notebook.ipynb), executed cell by cell as Jupyter would, in a fresh process.

Each code cell runs in one namespace; a cell ending in an expression "displays" it (recorded here by type), as
IPython does. The process sets its own matplotlib backend first, as a notebook's inline backend would be, and the
toolkit must leave it.
"""

import json
import subprocess
import sys
from pathlib import Path

from swa_landscape.notebook import figure, figure_names

NOTEBOOK = Path(__file__).resolve().parent.parent / "docs" / "notebook.ipynb"

RUNNER = r"""
import ast, json, sys
import matplotlib
matplotlib.use("svg")  # stands in for the notebook's own backend
nb = json.load(open(sys.argv[1]))
ns, shown = {"__name__": "__main__"}, []
for cell in nb["cells"]:
    if cell["cell_type"] != "code":
        continue
    tree = ast.parse("".join(cell["source"]))
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, "<cell>", "exec"), ns)
    value = eval(compile(ast.Expression(last.value), "<cell>", "eval"), ns) if last else None
    shown.append(None if value is None else [type(value).__module__ + "." + type(value).__name__,
                                               value if isinstance(value, (list, tuple, str)) else None])
print(json.dumps({"backend": matplotlib.get_backend(), "shown": shown}, default=str))
"""


def test_the_example_notebook_runs_and_shows_its_figures_inline(tmp_path):
    nb = json.loads(NOTEBOOK.read_text())
    assert nb["nbformat"] == 4 and all("id" in c for c in nb["cells"])
    r = subprocess.run([sys.executable, "-c", RUNNER, str(NOTEBOOK)], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.splitlines()[-1])
    assert out["backend"] == "svg"
    kinds = [s[0] if s else None for s in out["shown"]]
    assert kinds[2] == "builtins.list" and "surface" in out["shown"][2][1] and "schedule" in out["shown"][2][1]
    assert kinds[3] == "matplotlib.figure.Figure" and kinds[4] == "plotly.graph_objs._figure.Figure"
    assert (tmp_path / "nb-report" / "index.html").exists() and (tmp_path / "nb-report" / "surface.png").exists()
    # the notebook's figure is the report's: same panels, same levels
    names = figure_names(tmp_path / "nb.h5", tmp_path / "nb.landscape.h5")
    assert names == [n for n in names if (tmp_path / "nb-report" / f"{n}.png").exists()]


def test_figure_names_what_the_files_hold_and_refuses_others(tiny_run):
    import matplotlib.pyplot as plt
    import pytest

    from landscape.errors import UserError

    assert figure_names(tiny_run) == ["schedule"]  # no results yet: the run's own figure
    fig, interactive = figure(tiny_run, None, "schedule")
    assert fig.axes and interactive.data
    plt.close(fig)
    with pytest.raises(UserError, match="no figure 'surface' for these files; they have: schedule"):
        figure(tiny_run, None, "surface")
