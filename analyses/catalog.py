"""Every analysis the toolkit knows, in one ordered list: the built-ins, installed plug-ins, and your own.

* The built-ins are listed once, here (:data:`BUILTIN`).
* A package adds analyses by declaring an entry point in the group ``swa_landscape.analyses`` whose object is an
  :class:`~analyses.registry.Analysis`; installing the package is all it takes (``pyproject.toml``:
  ``[project.entry-points."swa_landscape.analyses"] mine = "mypkg.mine:ANALYSIS"``).
* Code can add one for its own process with :func:`analyses.registry.register`.

Everything that lists analyses (``analyze --help``, ``all``, the demo, ``compare``'s table and verdicts, the
report) asks :func:`analyses`: sorted by each analysis' ``order``, so no import order means anything.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from landscape.errors import UserError

from .fge import ANALYSIS as FGE
from .hessian import ANALYSIS as HESSIAN
from .hessian_plane import ANALYSIS as HESSIAN_PLANE
from .metrics import ACCURACY, RUN_METRICS, Finding, Metric
from .pca import ANALYSIS as PCA
from .plane import ANALYSIS as PLANE
from .predictions import ANALYSIS as PREDICTIONS
from .rays import ANALYSIS as RAYS
from .registry import Analysis, check_analysis, registered_by_user
from .segment import ANALYSIS as SEGMENT
from .sharpness import ANALYSIS as SHARPNESS
from .surface import ANALYSIS as SURFACE

__all__ = ["BUILTIN", "ENTRY_POINT_GROUP", "plugins", "analyses", "get", "by_config", "paper", "judged", "findings",
           "metrics"]

BUILTIN: tuple[Analysis, ...] = (RAYS, PREDICTIONS, SEGMENT, PLANE, FGE, HESSIAN, HESSIAN_PLANE, SURFACE, PCA,
                                  SHARPNESS)
"""The analyses that ship with the toolkit (their order is each one's ``order``, not their place here)."""

ENTRY_POINT_GROUP = "swa_landscape.analyses"
"""The entry-point group of plug-in analyses."""


def plugins() -> tuple[Analysis, ...]:
    """The analyses of installed packages (entry points of :data:`ENTRY_POINT_GROUP`).

    Raises:
        UserError: A plug-in that cannot be imported or is not an :class:`Analysis` (one line naming it).
    """
    out = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            a = ep.load()
            check_analysis(a)
        except Exception as e:  # noqa: BLE001 - any failure of a plug-in is the plug-in's, named in one line
            raise UserError(f"plug-in analysis {ep.name} ({ep.value}) cannot be used: {type(e).__name__}: {e}") \
                from None
        out.append(a)
    return tuple(out)


def analyses() -> list[Analysis]:
    """Every analysis, lowest ``order`` first (ties: built-ins, plug-ins, then your own, each in listed order).

    Raises:
        UserError: Two analyses with one name, one config or one paper key.
    """
    out = sorted((*BUILTIN, *plugins(), *registered_by_user()), key=lambda a: a.order)
    for what, key in (("name", lambda a: [a.name]), ("config", lambda a: [a.config.__qualname__]),
                      ("results key of `all`", lambda a: [k for k, _ in a.paper])):
        seen: dict[str, str] = {}
        for a in out:
            for k in key(a):
                if seen.setdefault(k, a.name) != a.name:
                    raise UserError(f"two analyses share the {what} {k!r}: {seen[k]} and {a.name}")
    return out


def get(name: str) -> Analysis:
    """The analysis called ``name``.

    Raises:
        UserError: No analysis has that name.
    """
    found = {a.name: a for a in analyses()}
    try:
        return found[name]
    except KeyError:
        raise UserError(f"no analysis named {name!r}; there are {', '.join(found)}") from None


def by_config(config_type: type) -> Analysis:
    """The analysis whose config dataclass is ``config_type``.

    Raises:
        UserError: No analysis takes it.
    """
    for a in analyses():
        if a.config is config_type:
            return a
    raise UserError(f"no analysis takes a {config_type.__name__}")


def paper() -> tuple[tuple[str, Any], ...]:
    """What ``all`` and the demo run: every analysis' ``paper`` entries ``(results key, config)``, in order."""
    return tuple(entry for a in analyses() for entry in a.paper)


def judged() -> tuple[tuple[str, Any], ...]:
    """The entries of :func:`paper` the findings are judged by (what a run needs for ``compare``'s verdicts)."""
    return tuple(entry for a in analyses() if a.judged for entry in a.paper)


def findings() -> tuple[Finding, ...]:
    """The findings in the order the verdicts are printed: the run's own (accuracy), then each analysis'."""
    return (ACCURACY, *(f for a in analyses() for f in a.findings))


def metrics() -> tuple[Metric, ...]:
    """Every quantity a comparison can hold, in table order: the run's, then each analysis'."""
    return (*RUN_METRICS, *(m for a in analyses() for m in a.metrics))
