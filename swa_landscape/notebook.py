"""Figures in a notebook: each figure of the report as matplotlib and plotly objects, read from the files.

The report (:func:`swa_landscape.report.make_figures`) writes exactly these figures; here they are returned to be
shown inline, restyled or saved elsewhere. Nothing here changes matplotlib's backend: a notebook keeps its own.

Example:
    >>> from swa_landscape.notebook import figure, figure_names
    >>> figure_names("run.h5", "run.landscape.h5")  # doctest: +SKIP
    ['plane_fig1', 'schedule', 'plane', 'rays', 'segment', 'fge', 'surface']
    >>> fig, interactive = figure("run.h5", "run.landscape.h5", "surface")  # doctest: +SKIP
"""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import plotly.graph_objects as go

from analyses import catalog
from analyses.registry import Section
from figures import plots
from landscape.errors import UserError

from .reading import read_results, read_run

__all__ = ["available", "figure", "figure_names", "sections"]


def _schedule(r) -> Section:
    """The run's own section: its learning rate and test error (paper Figure 2)."""
    return Section("schedule", "Learning rate and test error against iteration (paper Figure 2)",
                   "The learning rate of every step from the run's schedule, the averaged (captured) models circled. "
                   "The SWA average's test error (dashed) should lie below that of every captured model and of "
                   "conventional SGD.", 2, lambda: (plots.schedule_figure(r), plots.schedule_plotly(r)))


def sections(r, res: dict) -> list[Section]:
    """The figures available: the run's schedule and every registered analysis' sections, in the paper's order."""
    out = [_schedule(r)] + [x for a in catalog.analyses() if a.report for x in a.report(res)]
    return sorted(out, key=lambda x: x.order)


def available(run: str | os.PathLike, results: str | os.PathLike | None = None) -> dict[str, Section]:
    """The report's sections for a run and its results, by name, in the report's order.

    Args:
        run: Run file.
        results: Results file of the analyses (None or missing: the run's own figures only).
    """
    res = read_results(results) if results is not None and os.path.exists(results) else {}
    return {s.key: s for s in sections(read_run(run), res)}


def figure_names(run: str | os.PathLike, results: str | os.PathLike | None = None) -> list[str]:
    """The names :func:`figure` takes for these files, in the report's order."""
    return list(available(run, results))


def figure(run: str | os.PathLike, results: str | os.PathLike | None, name: str) -> tuple[plt.Figure, go.Figure]:
    """One figure of the report: the matplotlib figure (for the paper) and the plotly one (interactive).

    Args:
        run: Run file.
        results: Results file of the analyses.
        name: A name from :func:`figure_names` (``"surface"``, ``"rays"``, ``"plane_fig1"``, ...).

    Raises:
        UserError: ``name`` is not among the figures these files hold (the message lists them).
    """
    sections = available(run, results)
    if name not in sections:
        raise UserError(f"no figure {name!r} for these files; they have: {', '.join(sections)}")
    return sections[name].draw()
