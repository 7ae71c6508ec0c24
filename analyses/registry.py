"""The one shape of an analysis (:class:`Analysis`) and the registration of analyses of your own.

An analysis is one module that builds an :class:`Analysis` with keyword fields. That declaration is everything the
rest of the toolkit knows about it:

* ``name`` and ``config``: the subcommand ``analyze RUN NAME`` and its flags, one per field of the config
  dataclass with the help text of its docstring (:mod:`swa_landscape.fields`);
* ``compute``: the work, on a run opened once with its engine (:class:`~analyses.common.RunContext`) and the
  results file; ``describe`` turns its summary into the lines the command prints;
* ``order``, ``paper`` and ``judged``: where it stands in every list, what ``all`` and the demo run of it, and
  whether the findings need it;
* ``unsupported_bn_modes``: the BN modes it refuses, with the reason, checked before any work;
* ``metrics`` and ``findings``: the quantities ``compare`` reads from a results file
  (:class:`~analyses.metrics.Metric`) and the paper's claims judged from them;
* ``report``: its figures' sections of the HTML report.

The built-in analyses and installed plug-ins are listed by :mod:`analyses.catalog`; :func:`register` adds one
from your own code for the process. Adding an analysis is one new module (docs/analyses.md, "Adding an analysis").
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from landscape.config import BNMode, EngineConfig
from landscape.errors import UserError

from .common import RunContext, analysis
from .distributed import ShardedResults
from .metrics import RUN_METRICS, Finding, Metric

__all__ = ["Section", "Analysis", "check_analysis", "register", "unregister", "registered", "registered_by_user"]


@dataclass(frozen=True)
class Section:
    """One figure of the report.

    Attributes:
        key: File stem of the figure's files and the section's anchor.
        title: Heading.
        what: What to look for, in a sentence or two.
        order: Position in the report: the paper's figure number where there is one (the run's schedule is 2).
        draw: Returns ``(matplotlib figure, plotly figure)``.
        export: Writes the section's data for other tools into a directory, returns the file names (optional).
    """

    key: str
    title: str
    what: str
    order: float
    draw: Callable[[], tuple[Any, Any]]
    export: Callable[[Any], list[str]] | None = None


@dataclass(frozen=True, kw_only=True)
class Analysis:
    """An analysis as the toolkit sees it (see the module docstring); every field is a keyword.

    Attributes:
        name: Subcommand name (``analyze RUN NAME``).
        help: One line for ``analyze --help``.
        config: Its config dataclass (frozen, every field documented in an ``Attributes:`` section).
        compute: ``compute(ctx, results, config, progress) -> summary`` on an opened run.
        describe: The summary as the lines the command prints.
        order: Position in ``analyze --help``, ``all``, ``compare``'s table and the verdicts (lowest first).
        paper: What ``all`` and the demo run of it: ``(results key, config)`` pairs (empty: not part of ``all``).
        judged: Whether the findings need its ``paper`` entries (the demo's extra seeds run only these).
        unsupported_bn_modes: BN modes it cannot honour, with the reason.
        skippable: ``all`` skips it, with the reason, on a run that lacks what it needs (snapshots, proposals)
            instead of stopping.
        metrics: The quantities ``compare`` reads from a results file, in table order.
        findings: The findings judged from its metrics (and the run's own, :data:`analyses.metrics.RUN_METRICS`).
        comparable: ``comparable(results file) -> {what: settings}``: settings that must agree across runs for
            ``compare`` to set them side by side (it notes runs that differ).
        report: ``report(results) -> sections``, given every group of the results file as nested dicts.
    """

    name: str
    help: str
    config: type
    compute: Callable[[RunContext, ShardedResults, Any, bool], dict]
    describe: Callable[[dict], str]
    order: float
    paper: tuple[tuple[str, Any], ...] = ()
    judged: bool = False
    unsupported_bn_modes: Mapping[BNMode, str] = field(default_factory=dict)
    skippable: bool = False
    metrics: tuple[Metric, ...] = ()
    findings: tuple[Finding, ...] = ()
    comparable: Callable[[Any], dict[str, tuple]] | None = None
    report: Callable[[dict], list[Section]] | None = None

    def measure(self, f: Any) -> dict[str, float]:
        """Its metrics' values in the results file ``f`` (NaN where not computed), by metric key."""
        return {m.key: float(m.read(f)) for m in self.metrics}

    def check_bn_mode(self, engine_config: EngineConfig | None) -> None:
        """Refuse, before any work, a BN mode this analysis cannot honour (one line naming it and why)."""
        mode = (engine_config or EngineConfig()).bn_mode
        if mode in self.unsupported_bn_modes:
            raise UserError(f"{self.name} cannot use bn_mode {mode.value!r}: {self.unsupported_bn_modes[mode]}")

    def __call__(self, run: str | os.PathLike, out: str | os.PathLike | None = None, config: Any = None,
                 engine_config: EngineConfig | None = None, progress: bool = True, *, model: nn.Module | None = None,
                 data=None) -> dict:
        """Run it on a run file (or an open :class:`~swa.trajectory.Trajectory`) into the results file ``out``.

        Args:
            run: Run file (read only).
            out: Results file (default ``RUN.landscape.h5``).
            config: Its settings (default: the config's defaults).
            engine_config: Engine settings (default: the run's, :func:`analyses.common.default_engine_config`).
            progress: Progress bars (on a terminal).
            model: The network, for a run the file cannot rebuild (see :func:`analyses.common.open_run`).
            data: The data, for a run the file cannot rebuild (see :func:`analyses.common.open_run`).

        Returns:
            The analysis' summary.
        """
        config = self.config() if config is None else config
        self.check_bn_mode(engine_config)
        with analysis(run, out, engine_config, model, data) as (ctx, results):
            return self.compute(ctx, results, config, progress)


def check_analysis(a: Analysis) -> Analysis:
    """Refuse a declaration the toolkit could not use (one line naming what is wrong); returns it.

    Raises:
        ValueError: A field of the wrong kind, a paper entry whose config is not the analysis' own, or a claim using
            a metric that neither the analysis nor the run file (:data:`~analyses.metrics.RUN_METRICS`) provides.
    """
    if not isinstance(a, Analysis):
        raise ValueError(f"expected an analyses.registry.Analysis, got {type(a).__name__}")
    if not dataclasses.is_dataclass(a.config):
        raise ValueError(f"{a.name}: config must be a dataclass, got {a.config!r}")
    for key, cfg in a.paper:
        if type(cfg) is not a.config:
            raise ValueError(f"{a.name}: paper entry {key!r} has a {type(cfg).__name__}, not a {a.config.__name__}")
    known = set(RUN_METRICS) | set(a.metrics)
    for finding in a.findings:
        for claim in finding.claims:
            for m in claim.metrics:
                if m not in known:
                    raise ValueError(f"{a.name}: claim {finding.key}/{claim.key} uses metric {m.key!r}, which "
                                     f"{a.name} does not declare")
    return a


_REGISTERED: dict[str, Analysis] = {}
"""Analyses registered from user code (:func:`register`); the built-ins and installed plug-ins are found by
:mod:`analyses.catalog`."""


def register(a: Analysis) -> Analysis:
    """Add an analysis of your own for this process; returns it.

    Plug-ins installed as packages need not (see :mod:`analyses.catalog`).

    Raises:
        ValueError: Another analysis has the name or the config, or the declaration is refused
            (:func:`check_analysis`).
    """
    check_analysis(a)
    for other in _REGISTERED.values():
        if other is not a and other.name == a.name:
            raise ValueError(f"an analysis named {a.name!r} is already registered")
        if other is not a and other.config is a.config:
            raise ValueError(f"{a.config.__name__} already belongs to another analysis")
    _REGISTERED[a.name] = a
    return a


def unregister(name: str) -> None:
    """Remove an analysis registered with :func:`register` (nothing if there is none)."""
    _REGISTERED.pop(name, None)


def registered_by_user() -> tuple[Analysis, ...]:
    """The analyses registered from user code, in registration order."""
    return tuple(_REGISTERED.values())


@contextmanager
def registered(a: Analysis) -> Iterator[Analysis]:
    """Register ``a`` for the duration of a block (tests, plug-ins tried out for one command)."""
    register(a)
    try:
        yield a
    finally:
        unregister(a.name)
