"""The one shape of an analysis, and the registry the command line, ``all``, the demo, ``compare`` and the report
iterate.

An analysis is one module that builds an :class:`Analysis` and registers it. That declaration is everything the
rest of the toolkit knows about it:

* ``name`` and ``config``: the subcommand ``analyze RUN NAME`` and its flags, one per field of the config
  dataclass with the help text of its docstring (:mod:`landscape.cli_fields`);
* ``compute``: the work, on a run opened once with its engine (:class:`~analyses.common.RunContext`) and the
  results file; ``describe`` turns its summary into the lines the command prints;
* ``unsupported_bn_modes``: the BN modes it refuses, with the reason, checked before any work;
* ``metrics``: the quantities ``compare`` reads from a results file, with their ``labels``;
* ``report``: its figures' sections of the HTML report.

Adding an analysis is one new module plus its tests: the registry does the rest (a test registers a toy analysis
and finds it in ``analyze --help``, in ``all`` and in the report).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from landscape.engine import BNMode, EngineConfig
from landscape.errors import UserError

from .common import RunContext, analysis
from .distributed import ShardedResults

__all__ = ["Section", "Analysis", "REGISTRY", "register", "registered", "by_config", "get"]


@dataclass(frozen=True)
class Section:
    """One figure of the report.

    Attributes:
        key: File stem of the figure's files and the section's anchor.
        title: Heading.
        what: What to look for, in a sentence or two.
        order: Position in the report: the paper's figure number where there is one (the run's schedule is 2).
        draw: Returns ``(matplotlib figure, plotly figure)``.
    """

    key: str
    title: str
    what: str
    order: float
    draw: Callable[[], tuple[Any, Any]]


@dataclass(frozen=True)
class Analysis:
    """An analysis as the toolkit sees it (see the module docstring).

    Attributes:
        name: Subcommand name (``analyze RUN NAME``).
        help: One line for ``analyze --help``.
        config: Its config dataclass (frozen, every field documented in an ``Attributes:`` section).
        compute: ``compute(ctx, results, config, progress) -> summary`` on an opened run.
        describe: The summary as the lines the command prints.
        unsupported_bn_modes: BN modes it cannot honour, with the reason.
        skippable: ``all`` skips it, with the reason, on a run that lacks what it needs (snapshots, proposals)
            instead of stopping.
        metrics: ``metrics(results file [h5py]) -> {key: value}``, the quantities ``compare`` reads (NaN or absent
            where not computed).
        labels: Each metric's label in ``compare``'s table, in table order.
        comparable: ``comparable(results file) -> {what: settings}``: settings that must agree across runs for
            ``compare`` to set them side by side (it notes runs that differ).
        report: ``report(results) -> sections``, given every group of the results file as nested dicts.
    """

    name: str
    help: str
    config: type
    compute: Callable[[RunContext, ShardedResults, Any, bool], dict]
    describe: Callable[[dict], str]
    unsupported_bn_modes: Mapping[BNMode, str] = field(default_factory=dict)
    skippable: bool = False
    metrics: Callable[[Any], dict[str, float]] | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    comparable: Callable[[Any], dict[str, tuple]] | None = None
    report: Callable[[dict], list[Section]] | None = None

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
            model, data: For a run the file cannot rebuild (see :func:`analyses.common.open_run`).

        Returns:
            The analysis' summary.
        """
        config = self.config() if config is None else config
        self.check_bn_mode(engine_config)
        with analysis(run, out, engine_config, model, data) as (ctx, results):
            return self.compute(ctx, results, config, progress)


REGISTRY: dict[str, Analysis] = {}
"""Registered analyses by name, in registration order (the order of ``analyze --help`` and ``compare``'s table)."""


def register(a: Analysis) -> Analysis:
    """Add an analysis to :data:`REGISTRY` (a module does this once, at import); returns it."""
    if a.name in REGISTRY and REGISTRY[a.name] is not a:
        raise ValueError(f"an analysis named {a.name!r} is already registered")
    if by_config(a.config, missing_ok=True) not in (None, a):
        raise ValueError(f"{a.config.__name__} already belongs to another analysis")
    REGISTRY[a.name] = a
    return a


@contextmanager
def registered(a: Analysis) -> Iterator[Analysis]:
    """Register ``a`` for the duration of a block (tests, plug-ins tried out for one command)."""
    register(a)
    try:
        yield a
    finally:
        REGISTRY.pop(a.name, None)


def get(name: str) -> Analysis:
    """The analysis called ``name``."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UserError(f"no analysis named {name!r}; there are {', '.join(REGISTRY)}") from None


def by_config(config_type: type, missing_ok: bool = False) -> Analysis | None:
    """The analysis whose config dataclass is ``config_type``."""
    for a in REGISTRY.values():
        if a.config is config_type:
            return a
    if missing_ok:
        return None
    raise UserError(f"no analysis takes a {config_type.__name__}")
