"""Geometry analyses of SWA trajectories: the paper's rays, segment, plane and FGE, and beside them the Hessian
and the PCA plane (each reads the run file only), and ``compare`` over several runs."""

from landscape.files import default_results_path

from .batch import PAPER, analyze_all
from .compare import Comparison, compare
from .fge import FGEConfig, fge
from .hessian import HessianConfig, hessian
from .pca import PCAConfig, pca
from .plane import PlaneConfig, plane
from .rays import RaysConfig, rays
from .results import ResultsFile
from .segment import SegmentConfig, segment

__all__ = ["PAPER", "analyze_all", "Comparison", "FGEConfig", "HessianConfig", "PCAConfig", "PlaneConfig", "RaysConfig", "ResultsFile",
           "SegmentConfig", "compare", "default_results_path", "fge", "hessian", "pca", "plane", "rays", "segment"]
