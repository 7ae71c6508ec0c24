"""The one exception type for bad user input, and the range checks of config fields.

Library functions raise :class:`UserError` for anything a user can fix (a wrong
path, a bad hyper-parameter, a file of another format); the CLI prints its
message as one line and exits non-zero, with no traceback. Config dataclasses
declare each numeric field's range with :func:`bounded` and check them all in
``__post_init__`` with :func:`check_bounds`.
"""

from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

__all__ = ["UserError", "coerce_enums", "Bounds", "bounded", "check_bounds"]


class UserError(Exception):
    """Bad input that the user can fix; its message is a complete sentence."""


def coerce_enums(obj: object, fields: dict[str, type[Enum]]) -> None:
    """In a frozen dataclass's ``__post_init__``: turn plain strings into the fields' string enums.

    Raises:
        UserError: A value that is not a member, naming the choices.
    """
    for name, enum in fields.items():
        value = getattr(obj, name)
        try:
            object.__setattr__(obj, name, enum(value))
        except ValueError:
            raise UserError(f"{name} must be one of {', '.join(e.value for e in enum)}, got {value!r}") from None


@dataclass(frozen=True)
class Bounds:
    """The allowed range of a numeric config field (declared with :func:`bounded`, checked by :func:`check_bounds`).

    Attributes:
        gt, ge, lt, le: Strict and non-strict lower and upper bounds (None: unbounded on that side).
        meaning: For fields with no numeric bound, why any value is meaningful (then no bound is given).
    """

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    meaning: str = ""

    def holds(self, v: float) -> bool:
        """Whether ``v`` lies within the bounds."""
        return ((self.gt is None or v > self.gt) and (self.ge is None or v >= self.ge)
                and (self.lt is None or v < self.lt) and (self.le is None or v <= self.le))

    def describe(self) -> str:
        """In words: ``positive``, ``non-negative``, ``at least 1``, ``in [0, 1)``..."""
        lo = "(" if self.gt is not None else "["
        lo_v = self.gt if self.gt is not None else self.ge
        hi_v = self.lt if self.lt is not None else self.le
        if hi_v is None:
            if self.gt == 0:
                return "positive"
            if self.ge == 0:
                return "non-negative"
            return f"at least {_num(self.ge)}" if self.ge is not None else f"above {_num(self.gt)}"
        if lo_v is None:
            return f"below {_num(self.lt)}" if self.lt is not None else f"at most {_num(self.le)}"
        return f"in {lo}{_num(lo_v)}, {_num(hi_v)}{')' if self.lt is not None else ']'}"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def bounded(default: Any, *, gt: float | None = None, ge: float | None = None, lt: float | None = None,
            le: float | None = None, meaning: str = "", unit: str = "") -> Any:
    """A dataclass field with its allowed range.

    For example ``momentum: float = bounded(0.9, ge=0, lt=1)``. A numeric field that any value suits declares why with ``meaning`` instead (``bounded(0, meaning="any seed")``):
    every numeric field of a config says what it accepts, and a test checks that none forgets. ``unit="bytes"``
    lets the command line take sizes such as ``2GiB``.
    """
    if gt is ge is lt is le is None and not meaning:
        raise ValueError("bounded() needs a bound or a meaning")
    return field(default=default, metadata={"bounds": Bounds(gt, ge, lt, le, meaning), "unit": unit})


def check_bounds(obj: object) -> None:
    """In a config's ``__post_init__``: every field declared with :func:`bounded` within its range (None passes).

    Raises:
        UserError: ``"<field> must be <range>, got <value>"`` for the first field out of range.
    """
    for f in fields(obj):
        b = f.metadata.get("bounds")
        value = getattr(obj, f.name)
        if b is None or value is None or isinstance(value, bool):
            continue
        if not isinstance(value, (int, float)) or value != value or not b.holds(value):
            raise UserError(f"{f.name} must be {b.describe()}, got {value!r}")
