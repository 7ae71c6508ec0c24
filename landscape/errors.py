"""The one exception type for bad user input.

Library functions raise :class:`UserError` for anything a user can fix (a wrong
path, a bad hyper-parameter, a file of another format); the CLI prints its
message as one line and exits non-zero, with no traceback.
"""

__all__ = ["UserError", "coerce_enums"]

from enum import Enum


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
