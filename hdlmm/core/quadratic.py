"""Least-squares problems in cross-product form, per block of clusters (the CV's folds).

A :class:`Quadratic` is f(β) = d − 2βᵀc + βᵀGβ for each block k of clusters, and their
total. Its block matrices G_k are either formed (K × p × p) or, when the whitened rows
are fewer than the columns, held in low rank (:class:`LowRank`):

    G_k = XᵀX_k − R_k R_kᵀ,   R_k the block's weighted rotated rows (p × m_k),

with the total G = XᵀX − R Rᵀ formed by one product. A cross-validation's training
matrix, total − block = G − XᵀX_k + R_k R_kᵀ, is then read entry by entry by the
splicing kernel (:func:`hdlmm.core._kernel_matrix.matrix`): m_k products per entry
instead of a p × p block product per block and value of a, and no K × p × p array.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Quadratic", "LowRank", "objectives", "formed_difference"]


@dataclass(frozen=True)
class LowRank:
    """Block matrices G_k = XᵀX_k − B_kᵀB_k with B_k the rows ``bounds[k]`` to
    ``bounds[k + 1]`` of ``B`` (R_k = B_kᵀ in the module docstring), and their total
    formed.

    Attributes
    ----------
    XtX : ndarray of shape (K, p, p)
        The statistics' blocks (shared, not copied).
    rows : callable
        ``rows()`` gives B, shape (m, p): the blocks' weighted rotated rows, block after
        block (made on demand, :class:`hdlmm.core.weighted_rows.WeightedRows`).
    bounds : ndarray of int, shape (K + 1,)
    total : ndarray of shape (p, p)
        Σ_k G_k = Σ_k XᵀX_k − BᵀB.
    """

    XtX: np.ndarray
    rows: Callable[[], np.ndarray]
    bounds: np.ndarray
    total: np.ndarray

    @property
    def B(self) -> np.ndarray:
        """The weighted rotated rows, (m, p), read-only."""
        return self.rows()

    def factor(self, k: int) -> np.ndarray:
        """R_k = B_kᵀ (p × m_k), a view of B's rows."""
        return self.B[self.bounds[k]:self.bounds[k + 1]].T

    def block(self, k: int, columns: np.ndarray | None = None) -> np.ndarray:
        """G_k formed, or its submatrix on ``columns``."""
        Bk = self.B[self.bounds[k]:self.bounds[k + 1]]
        if columns is None:
            return self.XtX[k] - Bk.T @ Bk
        Bk = Bk[:, columns]
        return self.XtX[k][np.ix_(columns, columns)] - Bk.T @ Bk

    @property
    def nbytes(self) -> int:
        """Bytes kept: the total (the rows are made on demand, one a at a time)."""
        return self.total.nbytes


@dataclass
class Quadratic:
    """A least-squares problem in cross-product form: f(β) = d − 2βᵀc + βᵀGβ.

    Arrays carry a leading block axis (one entry per fold) unless summed.

    Attributes
    ----------
    G : ndarray of shape (K, p, p), or None
        The block matrices, or None when ``low_rank`` holds them.
    c : ndarray of shape (K, p)
    d : ndarray of shape (K,)
    trace : ndarray of shape (K,)
        tr(Σ_a⁻¹) per block: the effective sample size of the whitened problem.
    n_rows : ndarray of shape (K,)
    low_rank : LowRank, optional
    """

    G: np.ndarray | None
    c: np.ndarray
    d: np.ndarray
    trace: np.ndarray
    n_rows: np.ndarray
    low_rank: LowRank | None = None
    _total: tuple | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def nbytes(self) -> int:
        """Bytes of the matrices."""
        return self.G.nbytes if self.G is not None else self.low_rank.nbytes

    def freeze(self) -> None:
        """Make the arrays read-only (a cached problem is shared by its callers)."""
        arrays = [self.c, self.d, self.trace, self.n_rows]
        arrays += [self.G] if self.G is not None else [self.low_rank.total]
        for arr in arrays:
            arr.flags.writeable = False

    def block_matrix(self, block: int, columns: np.ndarray | None = None) -> np.ndarray:
        """G_k (formed if held in low rank), or its submatrix on ``columns``."""
        if self.G is None:
            return self.low_rank.block(block, columns)
        return self.G[block] if columns is None else self.G[block][np.ix_(columns, columns)]

    def total(self) -> tuple:
        """(G, c, d, trace, n_rows) summed over blocks (views when there is one),
        computed once and read-only (the folds of the CV each ask for it)."""
        if self._total is None:
            if self.G is not None and self.G.shape[0] == 1:
                total = (self.G[0], self.c[0], float(self.d[0]), float(self.trace[0]),
                         int(self.n_rows[0]))
            else:
                G = self.G.sum(0) if self.G is not None else self.low_rank.total
                total = (G, self.c.sum(0), float(self.d.sum()),
                         float(self.trace.sum()), int(self.n_rows.sum()))
                total[0].flags.writeable = total[1].flags.writeable = False
            self._total = total
        return self._total

    def without(self, block: int) -> tuple:
        """(G, c, d, trace, n_rows) of all blocks except ``block``: total − block."""
        G, minus, c, d, tr, n = self.split(block)
        return (formed_difference(G, minus), c, d, tr, n)

    def split(self, block: int) -> tuple:
        """(G, minus, c, d, trace, n_rows): :meth:`without` with its matrix left as the
        total G and what the block takes away, ``minus``: the block's matrix, or in low
        rank (XᵀX_k, R_k) for G − XᵀX_k + R_k R_kᵀ (formed by whoever needs it)."""
        G, c, d, tr, n = self.total()
        minus = (self.G[block] if self.G is not None
                 else (self.low_rank.XtX[block], self.low_rank.factor(block)))
        return (G, minus, c - self.c[block], d - self.d[block],
                tr - self.trace[block], n - int(self.n_rows[block]))

    def block(self, block: int, columns: np.ndarray | None = None) -> tuple:
        """(G, c, d, trace, n_rows) of one block, G and c on ``columns`` if given."""
        c = self.c[block] if columns is None else self.c[block][columns]
        return (self.block_matrix(block, columns), c, float(self.d[block]),
                float(self.trace[block]), int(self.n_rows[block]))


def objectives(G: np.ndarray, c: np.ndarray, d: float, betas: np.ndarray) -> np.ndarray:
    """d − 2βᵀc + βᵀGβ, the residual sum of squares of the whitened problem, for each
    row β of ``betas`` (from the columns where some row is nonzero)."""
    S = np.flatnonzero(np.any(betas != 0, axis=0))
    B = betas[:, S]
    return d - 2 * B @ c[S] + np.einsum("ij,ij->i", B @ G[np.ix_(S, S)], B)


def formed_difference(G: np.ndarray, minus: np.ndarray | tuple | None) -> np.ndarray:
    """G − minus formed, ``minus`` a matrix F, or (F, R) for G − F + R Rᵀ (what
    :meth:`Quadratic.split` leaves to whoever needs it), or None for G itself."""
    if minus is None:
        return G
    if isinstance(minus, tuple):
        F, R = minus
        return (G - F) + R @ R.T
    return G - minus
