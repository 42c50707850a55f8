"""Linearly dependent (aliased) columns, found once by a pivoted Cholesky factorisation.

A column that is a linear combination of others (a dummy that is a function of another
factor, a total next to its parts) leaves XᵀX singular. Nothing in the selection
breaks (splicing never takes a support whose Gram is singular), but two things need
the rank: the information-criterion bound that stops the support-size path early
(:func:`hdlmm.model.path.fit_path`), which needs the least-squares RSS on all columns, and
the user, who should hear which columns are aliased with which.

Both come from the pivoted Cholesky factorisation of the Gram scaled to a unit diagonal
(LAPACK ``dpstrf``, O(p² r) for rank r): its first r pivots are a basis of the column
space, every other column a combination of them. Scaled to a unit diagonal, the
tolerance is relative to each column's own spread, not to its units.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.linalg import lapack, solve_triangular

from hdlmm.core._threads import default_blas_threads

__all__ = ["ColumnBasis", "column_basis", "least_squares_rss", "warn_aliased_columns"]

#: a pivot below this (relative to the unit diagonal) ends the basis: columns whose
#: residual on the basis has less than 1e-6 of their own spread (condition ≈ 1e12)
RANK_TOL = 1e-12


@dataclass
class ColumnBasis:
    """A basis of the columns of a Gram matrix G.

    Attributes
    ----------
    basis : ndarray of int          columns that span the column space (pivot order)
    dependent : ndarray of int      the other columns with a nonzero diagonal
    zero : ndarray of int           columns with G_jj = 0 (all-zero columns)
    factor : ndarray (≥ r, ≥ r)     LAPACK's output, whose leading r × r lower
                                    triangle is L
    scale : ndarray (p,)            1/√G_jj (0 for zero columns)
    L : ndarray (r, r)              Cholesky factor of the scaled G[basis, basis] (made
                                    from ``factor`` when first asked for: the warning
                                    on aliased columns needs only ``dependent``)
    """

    basis: np.ndarray
    dependent: np.ndarray
    zero: np.ndarray
    factor: np.ndarray
    scale: np.ndarray

    @cached_property
    def L(self) -> np.ndarray:
        r = self.basis.size
        return np.tril(self.factor[:r, :r])

    def combination(self, G: np.ndarray, j: int, tol: float = 1e-8) -> np.ndarray:
        """Columns of the basis that column j is a combination of (their coefficients
        in units of each column's spread, the small ones dropped)."""
        s = self.scale
        g = G[self.basis, j] * s[self.basis] * s[j]
        w = solve_triangular(self.L, solve_triangular(self.L, g, lower=True), lower=True,
                             trans=1)
        return self.basis[np.abs(w) > tol]


def column_basis(G: np.ndarray) -> ColumnBasis:
    """The :class:`ColumnBasis` of a symmetric positive semi-definite G."""
    diag = np.diag(G).copy()
    zero = np.flatnonzero(diag <= 0)
    live = np.flatnonzero(diag > 0)
    scale = np.zeros(G.shape[0])
    scale[live] = 1.0 / np.sqrt(diag[live])
    if live.size == 0:
        return ColumnBasis(live, live, zero, np.zeros((0, 0)), scale)
    s = scale[live]
    A = G[np.ix_(live, live)] if live.size < G.shape[0] else G.copy()
    A *= s[:, None]
    A *= s[None, :]
    factor, piv, rank, info = lapack.dpstrf(A, tol=RANK_TOL, lower=1, overwrite_a=True)
    if info < 0:  # pragma: no cover - an invalid argument, a bug
        raise RuntimeError(f"dpstrf failed (info {info})")
    order = live[piv - 1]
    return ColumnBasis(order[:rank], np.sort(order[rank:]), zero, factor, scale)


def least_squares_rss(G: np.ndarray, c: np.ndarray, d: float,
                      basis: ColumnBasis | None = None) -> float:
    """min_β d − 2βᵀc + βᵀGβ over all β (G may be singular): the RSS of least squares
    on all the columns, d − c_Bᵀ G_BB⁻¹ c_B on a basis B of the column space. Never
    below 0."""
    if basis is None:
        rss = _full_rank_rss(G, c, d)
        if rss is not None:
            return rss
        basis = column_basis(G)
    if basis.basis.size == 0:
        return max(float(d), 0.0)
    z = solve_triangular(basis.L, c[basis.basis] * basis.scale[basis.basis], lower=True)
    return max(float(d - z @ z), 0.0)


def _full_rank_rss(G, c, d):
    """The least-squares RSS by a plain (blocked, level-3) Cholesky factorisation of the
    unit-diagonal G, when G is clearly of full rank (every pivot² above the rank
    tolerance of the pivoted factorisation, so that the basis would be every column);
    None otherwise."""
    diag = np.diag(G)
    if G.shape[0] == 0 or not np.all(diag > 0):
        return None
    s = 1.0 / np.sqrt(diag)
    with default_blas_threads(G.shape[0] ** 3 / 3):
        try:
            L = np.linalg.cholesky(G * s[:, None] * s[None, :])
        except np.linalg.LinAlgError:
            return None
    if not np.min(np.diag(L)) ** 2 > RANK_TOL:
        return None
    z = solve_triangular(L, c * s, lower=True)
    return max(float(d - z @ z), 0.0)


def warn_aliased_columns(G: np.ndarray, names: Sequence[str] | None, free: Sequence[int],
                         n_samples: int, stacklevel: int = 3) -> np.ndarray:
    """Warn, by name, about columns of X that are linear combinations of others (with
    the unpenalised columns ``free``), when there are fewer columns than rows (with more
    columns than rows every column is a combination of the others, and that is no
    defect). All-zero columns (constant ones, after standardisation) are left to the
    constant-column warning. Returns the dependent columns (indices into G)."""
    if G.shape[0] >= n_samples:
        return np.zeros(0, dtype=int)
    basis = column_basis(G)
    dependent = np.setdiff1d(basis.dependent, free)
    if dependent.size:
        pairs = [f"{names[j]!r} = combination of "
                 f"{[names[k] for k in basis.combination(G, j)]}"
                 for j in dependent[:5]]
        more = f" and {dependent.size - 5} more" if dependent.size > 5 else ""
        warnings.warn(
            f"{dependent.size} column(s) of X are linear combinations of other columns "
            f"(aliased): {'; '.join(pairs)}{more}. A support never holds a column "
            f"together with all the columns it is a combination of; drop the redundant "
            f"columns to make the choice between them yours", UserWarning,
            stacklevel=stacklevel)
    return dependent
