"""The one exception type for bad user input.

Library functions raise :class:`UserError` for anything a user can fix (a wrong
path, a bad hyper-parameter, a file of another format); the CLI prints its
message as one line and exits non-zero, with no traceback.
"""

__all__ = ["UserError"]


class UserError(Exception):
    """Bad input that the user can fix; its message is a complete sentence."""
