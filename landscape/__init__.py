"""Weight-space points and their batched evaluation."""

from .bn import BNWeighting, recompute_bn
from .errors import UserError
from .layout import Layout, buffer_layout, flatten, param_layout, unflatten

__all__ = ["BNWeighting", "Layout", "UserError", "buffer_layout", "flatten", "param_layout", "recompute_bn", "unflatten"]
