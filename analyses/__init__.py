"""Geometry analyses of SWA trajectories: rays, segment, plane, FGE (each reads the run file only)."""

from landscape.files import default_results_path

from .fge import FGEConfig, fge
from .plane import PlaneConfig, plane
from .rays import RaysConfig, rays
from .results import ResultsFile
from .segment import SegmentConfig, segment

__all__ = ["FGEConfig", "PlaneConfig", "RaysConfig", "ResultsFile", "SegmentConfig", "default_results_path", "fge",
           "plane", "rays", "segment"]
