"""Weight-space points and their batched evaluation."""

from .bn import BNWeighting, recompute_bn
from .config import BNMode, EngineConfig
from .engine import Engine
from .errors import UserError
from .layout import Layout, buffer_layout, flatten, param_layout, unflatten
from .passes import Strategy
from .points import PointSet
from .probe import ProbeCache, ProbeReport
from .result import EvalResult

__all__ = ["BNMode", "BNWeighting", "Engine", "EngineConfig", "EvalResult", "Layout", "PointSet",
           "ProbeCache", "ProbeReport", "Strategy", "UserError", "buffer_layout", "flatten", "param_layout",
           "recompute_bn", "unflatten"]
