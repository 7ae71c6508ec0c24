"""Geometry analyses of SWA trajectories: rays, segment, plane, FGE (each reads the run file only)."""

from .fge import FGEConfig, fge
from .plane import PlaneConfig, plane
from .rays import RaysConfig, rays
from .results import ResultsFile, default_results_path
from .segment import SegmentConfig, segment

__all__ = ["FGEConfig", "PlaneConfig", "RaysConfig", "ResultsFile", "SegmentConfig", "default_results_path", "fge",
           "plane", "rays", "segment"]
