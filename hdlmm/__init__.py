"""hdlmm: sparse, high-dimensional linear mixed models.

Everything is computed from per-cluster cross-products (:class:`ClusterStats`); see
docs/design.md for the architecture: the layers are the subpackages
``core`` → ``model``, ``sources`` → ``inference`` → ``api``.
"""

from hdlmm._version import __version__
from hdlmm.api.compare import compare_models
from hdlmm.api.estimator import DEFAULT_A_GRID, SparseLMM
from hdlmm.api.glmm_estimator import SparseGLMM
from hdlmm.core.splicing import best_subset, best_subset_path
from hdlmm.core.stats import ClusterStats
from hdlmm.core.transform import ProxyTransform
from hdlmm.sources.simulate import LMMData, make_lmm_data, make_tutorial_data
from hdlmm.sources.streaming import TableSpec, stream_stats


def warm_up() -> None:
    """Compile hdlmm's numba kernels (the per-cluster sums, splicing, the
    cross-validation, the mixed model's deviance, the nodewise lasso, and the GLMM's
    conditional modes) once, or load them from numba's on-disk cache, so that no fit
    pays for it."""
    from hdlmm.core._cluster_kernel import warm_up as cluster_sums
    from hdlmm.core._cv_kernel import warm_up as cross_validation
    from hdlmm.core._path_kernel import warm_up as splicing
    from hdlmm.inference._fista_kernel import warm_up as nodewise
    from hdlmm.model._deviance_kernel import warm_up as deviance
    from hdlmm.model._pirls_kernel import warm_up as pirls

    cluster_sums()
    splicing()
    cross_validation()
    deviance()
    nodewise()
    pirls()


__all__ = ["warm_up", "SparseLMM", "SparseGLMM", "ClusterStats", "ProxyTransform", "best_subset",
           "best_subset_path", "make_lmm_data", "make_tutorial_data", "LMMData",
           "DEFAULT_A_GRID", "TableSpec", "stream_stats", "compare_models", "__version__"]
