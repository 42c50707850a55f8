"""Per-cluster cross-products: the only view of the data that every estimator needs.

For clusters i = 1..n with rows (X_i, Z_i, y_i) the sufficient statistics are

    totals:       XᵀX (p × p), Xᵀy, yᵀy, N
    per cluster:  Z_iᵀZ_i (q × q), Z_iᵀX_i (q × p), Z_iᵀy_i, m_i

They are additive over rows and clusters, so a :class:`ClusterStats` can be built from
arrays in chunks of rows and merged with ``+``. The totals are kept per *block* of
clusters (a block is a cross-validation fold fixed at build time), so the statistics
of any union of folds, in particular "training = total − fold", are sums of blocks and
need no second pass over the rows.

Numerical precision: the cross-products are those of the *standardised* columns
x̃_j = (x_j − s_j) / c_j (shift s_j and scale c_j per column, kept in the statistics).
Raw cross-products of a column with a large mean lose its spread to cancellation (a
column 10⁸ + N(0, 1) has xᵀx ≈ 10¹⁶ N, so its variance is below double precision), and
tests of rank or constancy on raw sums depend on the units. With a fitted intercept
the model on x̃ is a reparametrisation of the model on x (β_j = β̃_j / c_j, the intercept
absorbs the shifts); without one, columns are only scaled (s = 0). Statistics built with
different standardisations are re-expressed in one before they are added
(:meth:`ClusterStats.restandardize`, the pairwise update of means and co-moments of Chan,
Golub & LeVeque 1983, Am. Stat. 37:242), and :meth:`ClusterStats.standardized` moves
them to their own column means and standard deviations, so that what the estimators
see does not depend on the user's units or offsets, nor on how the rows were chunked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from hdlmm.core._accumulate import _Accumulator
from hdlmm.core._threads import default_blas_threads
from hdlmm.core.checks import check_lmm_arrays
from hdlmm.core.folds import FoldLayout
from hdlmm.core.merge import merged
from hdlmm.core.progress import progress_bar
from hdlmm.core.restandardize import restandardize_x, restandardize_z, shift_y
from hdlmm.core.standardize import _own, column_standardization, intercept_column, z_standardization

__all__ = ["ClusterStats"]


@dataclass
class ClusterStats:
    """Cross-products of a clustered data set, grouped into blocks (folds) of clusters.

    Clusters are stored ordered by (block, label), so each block is a contiguous slice.

    Attributes
    ----------
    labels : ndarray of object, shape (n,)
        Cluster labels.
    block : ndarray of int, shape (n,)
        Block (fold) of each cluster, non-decreasing.
    n_obs : ndarray of int, shape (n,)
        Rows per cluster m_i.
    ZtZ, ZtX, Zty : ndarrays of shape (n, q, q), (n, q, p), (n, q)
        Per-cluster cross-products.
    XtX, Xty, yty, n_rows : ndarrays of shape (K, p, p), (K, p), (K,), (K,)
        Totals per block.
    intercept : bool
        Whether column 0 of X is the constant 1 (added at build time, unpenalised).
    feature_names : list of str or None
        Names of the columns of X (the intercept column is named "(Intercept)").
    x_shift, x_scale : ndarray of shape (p,)
        The standardisation of the columns: the sums are of x̃_j = (x_j − s_j) / c_j
        (the intercept column has s = 0, c = 1). None: not standardised (s = 0, c = 1).
    y_shift : float
        The sums are of y − y_shift (its mean, with an intercept; the intercept absorbs
        it, so nothing else changes and a large mean of y is no cancellation).
    own_standard : bool
        Whether (s, c) are these data's own column means and standard deviations
        (constant columns: their value and 1), as :meth:`standardized` makes them.
    """

    labels: np.ndarray
    block: np.ndarray
    n_obs: np.ndarray
    ZtZ: np.ndarray
    ZtX: np.ndarray
    Zty: np.ndarray
    XtX: np.ndarray
    Xty: np.ndarray
    yty: np.ndarray
    n_rows: np.ndarray
    intercept: bool = False
    feature_names: list | None = field(default=None)
    x_shift: np.ndarray | None = None
    x_scale: np.ndarray | None = None
    z_shift: np.ndarray | None = None
    z_scale: np.ndarray | None = None
    z_one: int = -1
    y_shift: float = 0.0
    own_standard: bool = False

    def __post_init__(self):
        p, q = self.XtX.shape[1], self.ZtZ.shape[1]
        if self.x_shift is None:
            self.x_shift = np.zeros(p)
        if self.x_scale is None:
            self.x_scale = np.ones(p)
        if self.z_shift is None:
            self.z_shift = np.zeros(q)
        if self.z_scale is None:
            self.z_scale = np.ones(q)

    def z_map(self) -> np.ndarray:
        """M with Z̃ = Z M, the standardised random-effect design (Z̃_k = (Z_k − s_k) / c_k,
        the shift carried by the intercept column k₀ of Z): M = diag(1/c) − e_k₀(s/c)ᵀ.
        A random effect γ of Z is M γ̃ (γ̃ of Z̃), and Ψ = M Ψ̃ Mᵀ."""
        M = np.diag(1.0 / self.z_scale)
        if self.z_one >= 0:
            M[self.z_one] -= self.z_shift / self.z_scale
        return M

    def z_map_inv(self) -> np.ndarray:
        """M⁻¹ = diag(c) + e_k₀ sᵀ (Z = Z̃ M⁻¹)."""
        Minv = np.diag(self.z_scale).astype(float)
        if self.z_one >= 0:
            Minv[self.z_one] += self.z_shift
        return Minv

    # ------------------------------------------------------------------ sizes
    @property
    def n_clusters(self) -> int:
        return self.labels.size

    @property
    def n_samples(self) -> int:
        return int(self.n_rows.sum())

    @cached_property
    def xtx_total(self) -> np.ndarray:
        """XᵀX summed over the blocks, (p, p), computed once and read-only (the fit asks
        for it at several steps; at K = 5, p = 2,000 each sum reads 160 MB)."""
        total = self.XtX.sum(0)
        total.flags.writeable = False
        return total

    @property
    def n_features(self) -> int:
        """Columns of X, including the intercept column if any."""
        return self.XtX.shape[1]

    @property
    def n_re(self) -> int:
        return self.ZtZ.shape[1]

    @property
    def n_blocks(self) -> int:
        return self.XtX.shape[0]

    def block_slices(self) -> list[slice]:
        """Slice of the clusters of each block."""
        edges = np.searchsorted(self.block, np.arange(self.n_blocks + 1))
        return [slice(edges[b], edges[b + 1]) for b in range(self.n_blocks)]

    # --------------------------------------------------------------- building
    @classmethod
    def from_arrays(cls, X: ArrayLike, y: ArrayLike, groups: ArrayLike, Z: ArrayLike | None = None,
                    *, fit_intercept: bool = True, n_blocks: int = 1,
                    random_state: int | np.random.RandomState | None = None,
                    chunk_rows: int = 65536, feature_names: Sequence[str] | None = None,
                    standardize: bool = True) -> ClusterStats:
        """Build from arrays (validated), in chunks of rows.

        Parameters
        ----------
        X : array-like of shape (N, p)
        y : array-like of shape (N,)
        groups : array-like of shape (N,)
            Cluster label of each row; any hashable labels, rows in any order.
        Z : array-like of shape (N, q), optional
            Row-wise random-effect design; default a random intercept (a column of ones).
        fit_intercept : bool
            Prepend a constant column to X (kept out of the sparsity constraint).
        n_blocks : int
            Number of blocks (cross-validation folds) the clusters are dealt into.
        random_state : int, RandomState or None
            Seeds the assignment of clusters to blocks.
        chunk_rows : int
            Rows processed at a time (bounds the temporary memory).
        feature_names : sequence of str, optional
        standardize : bool
            Sums of the standardised columns (by their means and standard deviations;
            the default, see the module docstring), or of the raw columns (x_shift 0,
            x_scale 1: for reading the cross-products themselves; a fit standardises
            them first).
        """
        checked = check_lmm_arrays(X, y, groups, Z, allow_no_features=fit_intercept)
        return cls.from_checked(*checked, fit_intercept=fit_intercept, n_blocks=n_blocks,
                                random_state=random_state, chunk_rows=chunk_rows,
                                feature_names=feature_names, standardize=standardize)

    @classmethod
    def from_checked(cls, X: np.ndarray, y: np.ndarray, Z: np.ndarray, codes: np.ndarray,
                     labels: np.ndarray, *, fit_intercept: bool = True, n_blocks: int = 1,
                     random_state: int | np.random.RandomState | None = None,
                     chunk_rows: int = 65536, feature_names: Sequence[str] | None = None,
                     standardize: bool = True, weights: np.ndarray | None = None,
                     progress: bool | None = False) -> ClusterStats:
        """Build from the output of :func:`hdlmm.core.checks.check_lmm_arrays`.

        ``weights`` (positive, one per row): the statistics of the weighted model, in
        which row j has residual variance σ²/w_j (lme4's ``weights``): the sums of the
        rows multiplied by √w, the intercept column being √w (see
        :class:`hdlmm.core._accumulate._Accumulator`). They are then moved to their own
        weighted standardisation (:meth:`standardized`). ``progress``: a bar over the
        rows (None: on a terminal only)."""
        layout = FoldLayout(labels, n_blocks, random_state)
        names = _feature_names(feature_names, X.shape[1], fit_intercept)
        p, q = X.shape[1] + fit_intercept, Z.shape[1]
        z_one = intercept_column(Z)
        y_shift = (float(column_standardization(y[:, None], True, chunk_rows)[0][1])
                   if standardize and fit_intercept else 0.0)
        standard = ((*column_standardization(X, fit_intercept, chunk_rows),
                     *z_standardization(Z, z_one), y_shift) if standardize
                    else (np.zeros(p), np.ones(p), np.zeros(q), np.ones(q), 0.0))
        acc = _Accumulator(labels.size, n_blocks, p, q, standard, z_one)
        u = None if weights is None else np.sqrt(weights)
        bar = progress_bar(X.shape[0], "cross-products", progress, unit="rows",
                           unit_scale=True)
        with default_blas_threads(2.0 * X.shape[0] * p ** 2):  # (small: one thread)
            for start in range(0, X.shape[0], chunk_rows):
                rows = slice(start, start + chunk_rows)
                ur = None if u is None else u[rows]
                Xr, yr, Zr = ((X[rows], y[rows], Z[rows]) if u is None else
                              (X[rows] * ur[:, None], y[rows] * ur, Z[rows] * ur[:, None]))
                acc.add_rows(Xr, yr, Zr, layout.position[codes[rows]], layout.block,
                             fit_intercept, ur)
                bar.update(Xr.shape[0])
        bar.close()
        stats = cls.from_sums(acc, layout.labels, layout.block, fit_intercept, names, X, y)
        stats.own_standard = standardize and weights is None
        return stats

    @classmethod
    def from_sums(cls, acc: _Accumulator, labels: np.ndarray, block: np.ndarray, intercept: bool,
                  feature_names: Sequence[str] | None, X: np.ndarray | None = None,
                  y: np.ndarray | None = None) -> ClusterStats:
        """The statistics of an accumulator's sums (clusters in ``labels``/``block``
        order; ``X``, ``y``: the rows, named in an overflow message)."""
        return cls(labels=labels, block=block, intercept=intercept,
                   feature_names=feature_names, **acc.fields(X, y))

    # ----------------------------------------------------------- combining
    def __add__(self, other):
        """Merge two statistics (e.g. two chunks of rows); clusters with equal labels add."""
        if not isinstance(other, ClusterStats):
            return NotImplemented
        return merged(self, other)

    # ----------------------------------------------------------- units
    def restandardize(self, shift: np.ndarray, scale: np.ndarray, z_shift: np.ndarray | None = None,
                      z_scale: np.ndarray | None = None,
                      y_shift: float | None = None) -> ClusterStats:
        """The same statistics for the columns standardised by (``shift``, ``scale``)
        (and Z's by (``z_shift``, ``z_scale``), y shifted by ``y_shift``; None keeps
        them).

        With x̃ = (x − s)/c now and x̃' = (x − s')/c' wanted, x̃' = x̃ D + 1δᵀ with
        D = diag(c/c'), δ = (s − s')/c', so per block (u = x̃ᵀ1, the intercept row)

            x̃'ᵀx̃' = D x̃ᵀx̃ D + D u δᵀ + δ uᵀ D + N δδᵀ,   x̃'ᵀy = D x̃ᵀy + δ 1ᵀy,

        and per cluster Z_iᵀx̃' = Z_iᵀx̃ D + Z_iᵀ1 δᵀ (Z_iᵀ1 is the intercept column of
        Z_iᵀX). Z's columns map the same way per cluster, with 1 = its intercept column
        k₀ (Z̃_iᵀ1 = column k₀ of Z̃_iᵀZ̃_i, 1ᵀX̃_i = row k₀ of Z̃_iᵀX̃_i). A shift needs
        the intercept column; it stays (0, 1). With ỹ' = ỹ + δ1 (δ the old shift of y
        less the new): x̃ᵀỹ' = x̃ᵀỹ + δ x̃ᵀ1, ỹ'ᵀỹ' = ỹᵀỹ + 2δ 1ᵀỹ + N δ², Z̃_iᵀỹ' =
        Z̃_iᵀỹ + δ Z̃_iᵀ1.
        """
        shift, scale = np.asarray(shift, float), np.asarray(scale, float)
        z_shift = self.z_shift if z_shift is None else np.asarray(z_shift, float)
        z_scale = self.z_scale if z_scale is None else np.asarray(z_scale, float)
        y_shift = self.y_shift if y_shift is None else float(y_shift)
        same_x = np.array_equal(shift, self.x_shift) and np.array_equal(scale, self.x_scale)
        same_z = (np.array_equal(z_shift, self.z_shift)
                  and np.array_equal(z_scale, self.z_scale))
        if same_x and same_z and y_shift == self.y_shift:
            return self
        out = self if same_x else restandardize_x(self, shift, scale)
        out = out if same_z else restandardize_z(out, z_shift, z_scale)
        return out if y_shift == self.y_shift else shift_y(out, y_shift)

    def standardized(self) -> ClusterStats:
        """The statistics re-expressed in their own column means and standard
        deviations, of X and of Z (no change when they already are; without an
        intercept, in their own root mean squares, unshifted). Constant columns keep
        their scale and, with an intercept, become exact zeros."""
        if self.own_standard:
            return self
        N = self.n_rows.sum()
        XtX = self.xtx_total
        if self.intercept:  # Σ w, the intercept column's square (N without weights)
            N = XtX[0, 0]
        mean = XtX[0] / N if self.intercept else np.zeros(self.n_features)
        shift, scale = _own(mean, np.diag(XtX) / N, self.intercept)
        if self.z_one >= 0:
            ZtZ = self.ZtZ.sum(0)
            z_shift, z_scale = _own(ZtZ[self.z_one] / N, np.diag(ZtZ) / N, True,
                                    self.z_one)
        else:
            z_shift, z_scale = _own(np.zeros(self.n_re), np.diag(self.ZtZ.sum(0)) / N,
                                    False)
        out = self.restandardize(self.x_shift + self.x_scale * shift,
                                 self.x_scale * scale,
                                 self.z_shift + self.z_scale * z_shift,
                                 self.z_scale * z_scale)
        if self.intercept:  # y about its own mean (after X's move, which keeps 1ᵀỹ)
            out = out.restandardize(out.x_shift, out.x_scale,
                                    y_shift=self.y_shift + float(self.Xty[:, 0].sum()) / N)
        return replace(out, own_standard=True)

    def reweighted(self, c: float) -> ClusterStats:
        """The statistics of the same rows with every observation weight multiplied by
        ``c`` (all sums are of products of rows times √w, so each scales by c)."""
        return replace(self, XtX=self.XtX * c, Xty=self.Xty * c, yty=self.yty * c,
                       ZtZ=self.ZtZ * c, ZtX=self.ZtX * c, Zty=self.Zty * c,
                       own_standard=False)

    def constant_columns(self) -> np.ndarray:
        """Columns of X (intercept excluded) whose standardised values are all zero."""
        f = int(self.intercept)
        return np.flatnonzero(np.einsum("kii->i", self.XtX)[f:] == 0)

    def cluster_index(self, labels: ArrayLike) -> np.ndarray:
        """Position in this statistics' cluster order of each label (−1 if absent)."""
        return pd.Index(self.labels).get_indexer(pd.Index(labels))

    def merge_blocks(self) -> ClusterStats:
        """The same statistics with all blocks merged into one."""
        return replace(self, block=np.zeros_like(self.block), XtX=self.XtX.sum(0)[None],
                       Xty=self.Xty.sum(0)[None], yty=self.yty.sum(0, keepdims=True),
                       n_rows=self.n_rows.sum(0, keepdims=True))

    def select_blocks(self, blocks: ArrayLike) -> ClusterStats:
        """Statistics of the clusters in the given blocks only (renumbered 0..)."""
        blocks = np.atleast_1d(blocks)
        keep = np.isin(self.block, blocks)
        remap = np.full(self.n_blocks, -1)
        remap[blocks] = np.arange(blocks.size)
        return replace(self, labels=self.labels[keep], block=remap[self.block[keep]],
                       n_obs=self.n_obs[keep], ZtZ=self.ZtZ[keep], ZtX=self.ZtX[keep],
                       Zty=self.Zty[keep], XtX=self.XtX[blocks], Xty=self.Xty[blocks],
                       yty=self.yty[blocks], n_rows=self.n_rows[blocks])

    def select_features(self, columns: ArrayLike) -> ClusterStats:
        """Statistics restricted to the given columns of X (e.g. a selected support)."""
        columns = np.asarray(columns, dtype=int)
        names = None if self.feature_names is None else [self.feature_names[j]
                                                         for j in columns]
        return replace(self, ZtX=self.ZtX[:, :, columns],
                       XtX=self.XtX[:, columns][:, :, columns], Xty=self.Xty[:, columns],
                       intercept=bool(self.intercept and columns.size and columns[0] == 0),
                       feature_names=names, x_shift=self.x_shift[columns],
                       x_scale=self.x_scale[columns])


def _feature_names(names, p, intercept):
    if names is None:
        names = [f"x{j}" for j in range(p)]
    names = [str(s) for s in names]
    if len(names) != p:
        raise ValueError(f"feature_names has {len(names)} names but X has {p} columns")
    return (["(Intercept)"] if intercept else []) + names
