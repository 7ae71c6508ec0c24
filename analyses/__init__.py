"""Geometry analyses of SWA trajectories.

The paper's rays, segment, plane and FGE, the solutions' test predictions sample by sample, and beside them the
Hessian, the planes of its eigenvectors and the PCA plane (each reads the run file only), and ``compare`` over
several runs.

Every analysis is one module declaring an :class:`~analyses.registry.Analysis`; :mod:`analyses.catalog` lists them
(the built-ins, installed plug-ins and your own) in their declared order.
"""

from landscape.files import default_results_path

from .batch import analyze_all
from .catalog import analyses, by_config, get
from .compare import Comparison, compare
from .fge import FGEConfig, fge
from .hessian import HessianConfig, hessian
from .hessian_plane import EigenPlaneConfig, eigen_plane
from .metrics import Claim, Finding, Metric
from .pca import PCAConfig, pca
from .plane import PlaneConfig, plane
from .predictions import PredictionsConfig, predictions
from .rays import RaysConfig, rays
from .registry import Analysis, Section, register, registered
from .results import ResultsFile
from .segment import SegmentConfig, segment
from .sharpness import SharpnessConfig, sharpness
from .surface import SurfaceConfig, surface

__all__ = ["Analysis", "Claim", "Comparison", "EigenPlaneConfig", "FGEConfig", "Finding", "HessianConfig", "Metric",
           "PCAConfig", "PlaneConfig", "PredictionsConfig", "RaysConfig", "ResultsFile", "Section", "SegmentConfig",
           "SharpnessConfig", "SurfaceConfig", "analyses", "analyze_all", "by_config", "compare", "default_results_path",
           "eigen_plane", "fge", "get", "hessian", "pca", "plane", "predictions", "rays", "register", "registered",
           "segment", "sharpness", "surface"]
