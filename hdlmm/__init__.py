"""hdlmm: sparse, high-dimensional linear mixed models.

Everything is computed from per-cluster cross-products (:class:`ClusterStats`); see
DESIGN.md for the architecture.
"""

from .compare import compare_models
from .estimator import DEFAULT_A_GRID, SparseLMM
from .simulate import LMMData, make_lmm_data, make_tutorial_data
from .splicing import best_subset, best_subset_path
from .stats import ClusterStats
from .streaming import TableSpec, stream_stats
from .transform import ProxyTransform

__version__ = "0.1.0"

__all__ = ["SparseLMM", "ClusterStats", "ProxyTransform", "best_subset",
           "best_subset_path", "make_lmm_data", "make_tutorial_data", "LMMData",
           "DEFAULT_A_GRID", "TableSpec", "stream_stats", "compare_models", "__version__"]
