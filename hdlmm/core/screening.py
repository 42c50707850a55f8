"""Sure independence screening in the whitened space, for p too large for a p × p Gram.

For each proxy parameter a of a grid, every column gets its marginal score in the
whitened space with the intercept profiled out,

    score_j(a) = |c̃_j(a)| / √G̃_jj(a),   c̃_j = c_j − G_0j c_0 / G_00,
                                          G̃_jj = G_jj − G_0j² / G_00,

(the absolute marginal correlation of x̃_{a,j} with ỹ_a, times ‖ỹ_a‖), computed from
the diagonal of G(a) and from c(a) only: per block of columns, the column sums of
squares, Xᵀ1, Xᵀy and the per-cluster Z_iᵀX_i of that block (Woodbury, as in
:mod:`hdlmm.core.transform`). Memory O(n · q · block), time O(N · p). The ``keep`` best
columns at each a are kept (their union over the grid), then the usual cross-products
are built on those only.

Default size: ``keep = min(⌊N / log N⌋, 2000)``, Fan & Lv's d = N / log N (J. R. Stat.
Soc. B 70:849, 2008), capped so that the p × p statistics of the kept columns (one per
CV fold) stay small. :class:`hdlmm.SparseLMM` screens by default when p > 5000.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

from hdlmm.core.standardize import column_standardization

__all__ = ["screen", "default_keep", "screened_columns",
           "SCREEN_ABOVE"]

SCREEN_ABOVE = 5000


def default_keep(n_samples: int, p: int) -> int:
    """min(⌊N / log N⌋, 2000, p)."""
    return int(min(p, 2000, max(1, np.floor(n_samples / np.log(max(n_samples, 3))))))


def screen(X: np.ndarray, y: np.ndarray, Z: np.ndarray, codes: np.ndarray, n_clusters: int,
           a_grid: Sequence[float], keep: int | None = None, block_cols: int = 2048) -> np.ndarray:
    """Columns kept by whitened marginal screening (sorted indices into X's columns).

    Parameters
    ----------
    X : ndarray (N, p)
    y : ndarray (N,)
    Z : ndarray (N, q)
    codes : ndarray of int (N,)
        Cluster index of each row, in 0..n_clusters − 1.
    n_clusters : int
    a_grid : sequence of float
        Proxy parameters at which to score (the union of the top columns is kept).
    keep : int, optional
        Columns kept at each a (default :func:`default_keep`).
    block_cols : int
        Columns processed at a time (bounds the memory).

    Returns
    -------
    ndarray of int
    """
    N, p = X.shape
    keep = default_keep(N, p) if keep is None else int(keep)
    if keep >= p:
        return np.arange(p)
    rows = np.arange(N)
    S = [sparse.csr_matrix((Z[:, k], (codes, rows)), shape=(n_clusters, N))
         for k in range(Z.shape[1])]
    lam, V = np.linalg.eigh(np.stack([Sk @ Z for Sk in S], axis=1))
    lam, Vt = np.clip(lam, 0.0, None), np.swapaxes(V, 1, 2)

    def rotate(A):  # V_iᵀ Z_iᵀ A_i for a block of columns A: (n, q, cols)
        return Vt @ np.stack([Sk @ A for Sk in S], axis=1)

    y = y - y.mean()  # the scores do not depend on y's mean (the intercept is profiled)
    one = rotate(np.ones((N, 1)))[:, :, 0]
    b = rotate(y[:, None])[:, :, 0]
    scores = np.empty((len(a_grid), p))
    for lo in range(0, p, block_cols):
        # the scores do not depend on a column's shift or scale (the intercept is
        # profiled out): standardised first, so that a large mean is no cancellation
        shift, scale = column_standardization(X[:, lo:lo + block_cols], True)
        Xb = (X[:, lo:lo + block_cols] - shift[1:]) / scale[1:]
        B = rotate(Xb)
        for ia, a in enumerate(a_grid):
            w = a / (1.0 + a * lam)
            G00 = N - np.sum(w * one * one)
            c0 = y.sum() - np.sum(w * one * b)
            G0j = Xb.sum(0) - np.einsum("nq,nqj->j", w * one, B)
            Gjj = np.einsum("ij,ij->j", Xb, Xb) - np.einsum("nq,nqj->j", w, B * B)
            cj = Xb.T @ y - np.einsum("nq,nqj->j", w * b, B)
            var = np.maximum(Gjj - G0j ** 2 / G00, 0.0)
            ok = var > 1e-12 * np.maximum(Gjj, 1e-300)
            scores[ia, lo:lo + Xb.shape[1]] = np.where(
                ok, np.abs(cj - G0j * c0 / G00) / np.sqrt(np.where(ok, var, 1.0)), 0.0)
    top = np.argpartition(-scores, keep - 1, axis=1)[:, :keep]
    return np.unique(top)


def screened_columns(screening: str | int | None, a_values: Sequence[float], X: np.ndarray,
                     y: np.ndarray, Z: np.ndarray, codes: np.ndarray,
                     n_clusters: int) -> np.ndarray | None:
    """The columns kept by the ``screening`` parameter of :class:`hdlmm.SparseLMM`
    ("auto", an int or None) over the proxy parameters ``a_values``; None: no screening."""
    if screening is None or (screening == "auto" and X.shape[1] <= SCREEN_ABOVE):
        return None
    keep = None if screening == "auto" else screening
    return screen(X, y, Z, codes, n_clusters, list(a_values), keep=keep)
