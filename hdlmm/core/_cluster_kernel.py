"""The per-cluster cross-products Z_iᵀ[X_i, Z_i, y_i, 1] of a chunk of rows, compiled:
one pass over the rows, each row added into its cluster's sums.

This is the product a sparse (clusters·q × rows) matrix holding Z would give, in the
same order of additions (rows in their order within each cluster), without building
that matrix: at the tutorial's size the sparse matrix's construction and four products
cost more than the arithmetic (``docs/decisions.md``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from hdlmm.core._kernel_matrix import read_only

__all__ = ["cluster_products", "warm_up"]


def cluster_products(X: np.ndarray, y: np.ndarray, Z: np.ndarray, local: np.ndarray,
                     n_clusters: int, u: np.ndarray | None = None) -> tuple:
    """Z_iᵀX_i, Z_iᵀZ_i, Z_iᵀy_i and Z_iᵀu (u: ones when None) of the clusters
    ``local`` (0..n_clusters − 1, one per row).

    Returns
    -------
    ZX : ndarray (n_clusters · q, p), row i·q + k holding Σ_r Z[r, k] X[r]
    ZZ : ndarray (n_clusters, q, q)
    Zy : ndarray (n_clusters, q)
    Z1 : ndarray (n_clusters · q, 1)
    """
    q, p = Z.shape[1], X.shape[1]
    ZX = np.zeros((n_clusters * q, p))
    ZZ = np.zeros((n_clusters, q, q))
    Zy = np.zeros((n_clusters, q))
    Z1 = np.zeros((n_clusters * q, 1))
    weights = read_only(np.zeros(0) if u is None else u)
    _add_rows(read_only(X), read_only(y), read_only(Z), weights,
              np.ascontiguousarray(local, dtype=np.int64), ZX, ZZ, Zy, Z1)
    return ZX, ZZ, Zy, Z1


@njit(cache=True)
def _add_rows(X, y, Z, u, local, ZX, ZZ, Zy, Z1):
    n, p = X.shape
    q = Z.shape[1]
    weighted = u.size > 0
    for r in range(n):
        i = local[r]
        for k in range(q):
            z = Z[r, k]
            row = i * q + k
            Z1[row, 0] += z * u[r] if weighted else z
            for j in range(p):
                ZX[row, j] += z * X[r, j]
            for m in range(q):
                ZZ[i, k, m] += z * Z[r, m]
            Zy[i, k] += z * y[r]


def warm_up() -> None:
    """Compile the kernel (or load it from numba's cache) for the arrays fits pass."""
    rng = np.random.default_rng(0)
    X, Z = rng.standard_normal((6, 3)), rng.standard_normal((6, 2))
    local = np.array([0, 0, 1, 1, 1, 0])
    for u in (None, np.ones(6)):
        cluster_products(X, X[:, 0].copy(), Z, local, 2, u)
