"""Command-line flags derived from a config dataclass: one flag per field, its help from the docstring.

Every config of the toolkit (``TrainConfig``, ``EngineConfig``, each analysis' config) documents its fields in an
``Attributes:`` section; :func:`add_config_arguments` turns each field into a flag with that text as its help (in
plain text: docstring markup removed), string enums into their choices, byte sizes into sizes such as ``2GiB``, and
:func:`config_values` reads back the values the user gave (absent flags keep the dataclass's defaults).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import typing
from collections.abc import Callable
from enum import Enum

__all__ = ["ALIASES", "Aliased", "add_config_arguments", "add_dataset_arguments", "add_objective_arguments", "config_values", "field_help",
           "json_object", "plain", "size"]

_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|obj):`~?([^`]+)`")
_UNITS = {"": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30,
          "t": 1 << 40, "tib": 1 << 40}


def plain(text: str) -> str:
    """Docstring text as plain text: ``"sgd"`` for ````"sgd"````, ``update_bn`` for ``:func:`~a.update_bn```."""
    text = _ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1], text)
    return text.replace("``", "")


def size(text: str) -> int:
    """An argparse type: a number of bytes, plain or with a binary unit (``2GiB``, ``512MiB``, ``1.5g``)."""
    m = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    unit = m.group(2).lower().removesuffix("b") if m else None
    if unit is not None and m.group(2).lower() in ("kib", "mib", "gib", "tib"):
        unit = m.group(2).lower()
    if m is None or unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"expected a size such as 2GiB, 512MiB or a number of bytes, got {text!r}")
    try:
        return int(float(m.group(1)) * _UNITS[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size such as 2GiB, got {text!r}") from None


def field_help(cls: type) -> dict[str, str]:
    """Field name to its description in the class docstring's ``Attributes:`` section (continuation lines joined)."""
    doc = cls.__doc__ or ""
    if "Attributes:" not in doc:
        return {}
    out: dict[str, str] = {}
    name, indent = None, None
    for line in doc.split("Attributes:", 1)[1].splitlines():
        m = re.match(r"(\s+)([\w, ]+): (.*)", line)
        if m and (indent is None or len(m.group(1)) == indent):
            indent = len(m.group(1))
            name = m.group(2)
            for n in name.split(","):
                out[n.strip()] = m.group(3)
        elif name and line.strip():
            for n in name.split(","):
                out[n.strip()] += " " + line.strip()
        elif not line.strip() and name:
            name = None
    return {k: plain(v) for k, v in out.items()}


def json_object(text: str) -> dict:
    """An argparse type: a JSON object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _scalar(ann: str) -> Callable[[str], object]:
    ann = ann.strip()
    if ann.startswith("int"):
        return int
    if ann.startswith("float"):
        return float
    return str


def _comma_list(element: Callable[[str], object]) -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        try:
            return tuple(element(x.strip()) for x in text.split(",") if x.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None

    return parse


def _enum(hint: object) -> type[Enum] | None:
    """The string enum a field's type hint names (``BNMode``, ``BNMode | None``), or None."""
    for t in (hint, *typing.get_args(hint)):
        if isinstance(t, type) and issubclass(t, Enum):
            return t
    return None


def _flag_kwargs(f: dataclasses.Field, hint: object) -> dict:
    """The argparse keywords of one field, by its annotation and resolved type hint.

    The annotation is a string (the configs' modules use postponed annotations). Enums as choices, bool switches,
    byte sizes, fixed tuples as N values, variable ones comma-separated, dicts as JSON.
    """
    ann = str(f.type)
    enum = _enum(hint)
    if enum is not None:
        return {"type": str, "choices": [e.value for e in enum]}
    if typing.get_origin(hint) is typing.Literal:
        return {"type": str, "choices": list(typing.get_args(hint))}
    if f.metadata.get("unit") == "bytes":
        return {"type": size}
    if ann.startswith("bool"):
        return {"action": argparse.BooleanOptionalAction}
    if "dict" in ann:
        return {"type": json_object}
    tup = re.match(r"tuple\[(.*)\]", ann)
    if tup:
        parts = [p for p in tup.group(1).split(",") if p.strip()]
        if parts[-1].strip() == "...":
            return {"type": _comma_list(_scalar(parts[0]))}
        return {"type": _scalar(parts[0]), "nargs": len(parts)}
    if ann == "tuple":
        return {"type": _comma_list(str)}
    return {"type": _scalar(ann)}


ALIASES = {"--dataset": "--data", "--dataset-kwargs": "--data-kwargs"}
"""Old names of flags, still read, each use noted as deprecated (``import`` once named its data factory ``--data``)."""


class Aliased(argparse.Action):
    """Stores a value like argparse's ``store``; given under its deprecated alias, it also says which name to use."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: D102 - argparse's hook
        if option_string != self.option_strings[0]:
            sys.stderr.write(f"swa-landscape: notice: {option_string} is deprecated; use {self.option_strings[0]}\n")
        setattr(namespace, self.dest, values)


def _names(flag: str) -> tuple[list[str], dict]:
    """A flag's option strings with its deprecated alias, and the keywords that handle the alias."""
    if flag not in ALIASES:
        return [flag], {}
    return [flag, ALIASES[flag]], {"action": Aliased}


def add_dataset_arguments(p: argparse.ArgumentParser) -> None:
    """``--dataset`` (a data factory by import path, required) and ``--dataset-kwargs``, as every command names them."""
    names, kw = _names("--dataset")
    p.add_argument(*names, required=True, help="package.module:function returning (train, test): datasets, "
                                               "DataLoaders or tensor pairs (--data: a deprecated alias)", **kw)
    names, kw = _names("--dataset-kwargs")
    p.add_argument(*names, type=json_object, default={}, help="its keyword arguments as JSON", **kw)


def add_objective_arguments(p: argparse.ArgumentParser) -> None:
    """``--objective`` and ``--objective-kwargs`` for the commands that build a run from checkpoints."""
    p.add_argument("--objective", default="classification",
                   help="what the network was trained for: classification, regression, language-model or "
                        "package.module:function (default: classification)")
    p.add_argument("--objective-kwargs", type=json_object, default={}, help="its keyword arguments as JSON")


def add_config_arguments(p: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, prefix: str = "",
                         skip: tuple[str, ...] = (), shown_defaults: dict[str, str] | None = None) -> None:
    """One flag per field of the dataclass ``cls``: ``--field-name`` (``--PREFIX.field-name`` with a prefix).

    Defaults are not set on the parser (``argparse.SUPPRESS``): only given flags reach :func:`config_values`,
    so the dataclass stays the one owner of its defaults; the help shows them (or, for a field in
    ``shown_defaults``, that text: a default the caller fills in, such as the run's own).
    """
    meaning = field_help(cls)
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):  # an annotation that does not resolve: no enum choices, the rest as annotated
        hints = {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = default.value if isinstance(default, Enum) else list(default) if isinstance(default, tuple) else default
        shown = (shown_defaults or {}).get(f.name, json.dumps(shown))
        flag = "--" + (f"{prefix}." if prefix else "") + f.name.replace("_", "-")
        text = f"{meaning.get(f.name, f.name)} (default: {shown})".replace("%", "%%")
        kwargs = _flag_kwargs(f, hints.get(f.name))
        if "action" not in kwargs and "choices" not in kwargs:
            kwargs["metavar"] = f.name.upper()
        names, alias = _names(flag)
        if alias and "action" not in kwargs:
            kwargs.update(alias)
            text += f" ({names[1]}: a deprecated alias)"
        p.add_argument(*names[:1 + bool(alias)], dest=_dest(prefix, f.name), default=argparse.SUPPRESS, help=text,
                       **kwargs)


def _dest(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def config_values(args: argparse.Namespace, cls: type, prefix: str = "") -> dict:
    """The fields of ``cls`` the user gave as flags (see :func:`add_config_arguments`)."""
    given = vars(args)
    return {f.name: given[_dest(prefix, f.name)] for f in dataclasses.fields(cls) if _dest(prefix, f.name) in given}
