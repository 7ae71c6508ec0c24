"""Geometry analyses of SWA trajectories: the paper's rays, segment, plane and FGE, and beside them the Hessian,
the planes of its eigenvectors and the PCA plane (each reads the run file only), and ``compare`` over several runs.

Every analysis registers itself in :data:`analyses.registry.REGISTRY` when its module is imported (below, in
the order of ``analyze --help`` and of ``compare``'s table).
"""

from landscape.files import default_results_path

from .rays import RaysConfig, rays  # noqa: I001 (registration order)
from .segment import SegmentConfig, segment
from .plane import PlaneConfig, plane
from .fge import FGEConfig, fge
from .hessian import HessianConfig, hessian
from .hessian_plane import EigenPlaneConfig, eigen_plane
from .pca import PCAConfig, pca
from .sharpness import SharpnessConfig, sharpness
from .batch import PAPER, analyze_all
from .compare import Comparison, compare
from .registry import REGISTRY, Analysis, Section, register
from .results import ResultsFile

__all__ = ["PAPER", "REGISTRY", "Analysis", "Section", "register", "analyze_all", "Comparison", "EigenPlaneConfig",
           "FGEConfig", "HessianConfig", "PCAConfig", "PlaneConfig", "RaysConfig", "ResultsFile", "SegmentConfig",
           "SharpnessConfig", "compare", "default_results_path", "eigen_plane", "fge", "hessian", "pca", "plane", "rays",
           "segment", "sharpness"]
