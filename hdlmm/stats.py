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

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.utils import check_random_state

from ._arrays import runs, zeros
from ._validation import _sort_order, all_finite, check_lmm_arrays

__all__ = ["ClusterStats", "FoldLayout"]


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

    def z_map(self):
        """M with Z̃ = Z M, the standardised random-effect design (Z̃_k = (Z_k − s_k) / c_k,
        the shift carried by the intercept column k₀ of Z): M = diag(1/c) − e_k₀(s/c)ᵀ.
        A random effect γ of Z is M γ̃ (γ̃ of Z̃), and Ψ = M Ψ̃ Mᵀ."""
        M = np.diag(1.0 / self.z_scale)
        if self.z_one >= 0:
            M[self.z_one] -= self.z_shift / self.z_scale
        return M

    def z_map_inv(self):
        """M⁻¹ = diag(c) + e_k₀ sᵀ (Z = Z̃ M⁻¹)."""
        Minv = np.diag(self.z_scale).astype(float)
        if self.z_one >= 0:
            Minv[self.z_one] += self.z_shift
        return Minv

    # ------------------------------------------------------------------ sizes
    @property
    def n_clusters(self):
        return self.labels.size

    @property
    def n_samples(self):
        return int(self.n_rows.sum())

    @property
    def n_features(self):
        """Columns of X, including the intercept column if any."""
        return self.XtX.shape[1]

    @property
    def n_re(self):
        return self.ZtZ.shape[1]

    @property
    def n_blocks(self):
        return self.XtX.shape[0]

    def block_slices(self):
        """Slice of the clusters of each block."""
        edges = np.searchsorted(self.block, np.arange(self.n_blocks + 1))
        return [slice(edges[b], edges[b + 1]) for b in range(self.n_blocks)]

    # --------------------------------------------------------------- building
    @classmethod
    def from_arrays(cls, X, y, groups, Z=None, *, fit_intercept=True, n_blocks=1,
                    random_state=None, chunk_rows=65536, feature_names=None,
                    standardize=True):
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
    def from_checked(cls, X, y, Z, codes, labels, *, fit_intercept=True, n_blocks=1,
                     random_state=None, chunk_rows=65536, feature_names=None,
                     standardize=True):
        """Build from the output of :func:`hdlmm._validation.check_lmm_arrays`."""
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
        for start in range(0, X.shape[0], chunk_rows):
            rows = slice(start, start + chunk_rows)
            acc.add_rows(X[rows], y[rows], Z[rows], layout.position[codes[rows]],
                         layout.block, fit_intercept)
        stats = acc.stats(layout.labels, layout.block, fit_intercept, names, X, y)
        stats.own_standard = standardize
        return stats

    # ----------------------------------------------------------- combining
    def __add__(self, other):
        """Merge two statistics (e.g. two chunks of rows); clusters with equal labels add."""
        if not isinstance(other, ClusterStats):
            return NotImplemented
        _check_compatible(self, other)
        other = other.restandardize(self.x_shift, self.x_scale, self.z_shift,
                                    self.z_scale, self.y_shift)
        labels = np.concatenate([self.labels, other.labels])
        block = np.concatenate([self.block, other.block])
        uniq, inv = _factorize(labels)
        ublock = np.full(uniq.size, -1)
        ublock[inv] = block
        if np.any(ublock[inv] != block):
            raise ValueError("a cluster is in different folds in the two statistics; "
                             "build both with the same fold assignment")
        order = np.lexsort((np.arange(uniq.size), ublock))
        pos = np.empty_like(order)
        pos[order] = np.arange(order.size)
        tgt = pos[inv]

        def merge(a, b):
            out = zeros((uniq.size,) + a.shape[1:], dtype=a.dtype)
            np.add.at(out, tgt, np.concatenate([a, b]))
            return out

        return replace(
            self, labels=uniq[order], block=ublock[order],
            n_obs=merge(self.n_obs, other.n_obs), ZtZ=merge(self.ZtZ, other.ZtZ),
            ZtX=merge(self.ZtX, other.ZtX), Zty=merge(self.Zty, other.Zty),
            XtX=self.XtX + other.XtX, Xty=self.Xty + other.Xty,
            yty=self.yty + other.yty, n_rows=self.n_rows + other.n_rows,
            own_standard=False)

    # ----------------------------------------------------------- units
    def restandardize(self, shift, scale, z_shift=None, z_scale=None, y_shift=None):
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
        out = self if same_x else self._restandardize_x(shift, scale)
        out = out if same_z else out._restandardize_z(z_shift, z_scale)
        return out if y_shift == self.y_shift else out._shift_y(y_shift)

    def _shift_y(self, y_shift):
        if not self.intercept:
            raise ValueError("statistics without an intercept column cannot shift y")
        delta = self.y_shift - y_shift
        sum_y = self.Xty[:, 0]  # 1ᵀỹ per block
        return replace(self, Xty=self.Xty + delta * self.XtX[:, 0, :],
                       yty=self.yty + 2 * delta * sum_y + self.n_rows * delta ** 2,
                       Zty=self.Zty + delta * self.ZtX[:, :, 0], y_shift=y_shift,
                       own_standard=False)

    def _restandardize_x(self, shift, scale):
        if not self.intercept and np.any(shift != self.x_shift):
            raise ValueError("statistics without an intercept column can only be "
                             "rescaled, not shifted")
        D = self.x_scale / scale
        delta = (self.x_shift - shift) / scale
        XtX = self.XtX * D[None, :, None] * D[None, None, :]
        Xty = self.Xty * D
        ZtX = self.ZtX * D
        if self.intercept and np.any(delta != 0):
            u = self.XtX[:, 0, :] * D  # D x̃ᵀ1 per block (D = 1 on the intercept)
            XtX += (u[:, :, None] * delta[None, None, :] + delta[None, :, None] * u[:, None, :]
                    + self.n_rows[:, None, None] * np.outer(delta, delta)[None])
            Xty += delta[None, :] * self.Xty[:, :1]
            ZtX += self.ZtX[:, :, :1] * delta[None, None, :]
        return replace(self, XtX=XtX, Xty=Xty, ZtX=ZtX, x_shift=shift.copy(),
                       x_scale=scale.copy(), own_standard=False)

    def _restandardize_z(self, shift, scale):
        k0 = self.z_one
        if k0 < 0 and np.any(shift != self.z_shift):
            raise ValueError("a random-effect design without an intercept column can "
                             "only be rescaled, not shifted")
        D = self.z_scale / scale
        delta = (self.z_shift - shift) / scale
        ZtZ = self.ZtZ * D[None, :, None] * D[None, None, :]
        ZtX = self.ZtX * D[None, :, None]
        Zty = self.Zty * D
        if k0 >= 0 and np.any(delta != 0):
            u = self.ZtZ[:, :, k0] * D  # D Z̃_iᵀ1 (D = 1 at k₀)
            ZtZ += (u[:, :, None] * delta[None, None, :] + delta[None, :, None] * u[:, None, :]
                    + self.n_obs[:, None, None] * np.outer(delta, delta)[None])
            ZtX += delta[None, :, None] * self.ZtX[:, k0:k0 + 1, :]
            Zty += delta[None, :] * self.Zty[:, k0:k0 + 1]
        return replace(self, ZtZ=ZtZ, ZtX=ZtX, Zty=Zty, z_shift=shift.copy(),
                       z_scale=scale.copy(), own_standard=False)

    def standardized(self):
        """The statistics re-expressed in their own column means and standard
        deviations, of X and of Z (no change when they already are; without an
        intercept, in their own root mean squares, unshifted). Constant columns keep
        their scale and, with an intercept, become exact zeros."""
        if self.own_standard:
            return self
        N = self.n_rows.sum()
        XtX = self.XtX.sum(0)
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

    def constant_columns(self):
        """Columns of X (intercept excluded) whose standardised values are all zero."""
        f = int(self.intercept)
        return np.flatnonzero(np.diag(self.XtX.sum(0))[f:] == 0)

    def cluster_index(self, labels):
        """Position in this statistics' cluster order of each label (−1 if absent)."""
        return pd.Index(self.labels).get_indexer(pd.Index(labels))

    def merge_blocks(self):
        """The same statistics with all blocks merged into one."""
        return replace(self, block=np.zeros_like(self.block), XtX=self.XtX.sum(0)[None],
                       Xty=self.Xty.sum(0)[None], yty=self.yty.sum(0, keepdims=True),
                       n_rows=self.n_rows.sum(0, keepdims=True))

    def select_blocks(self, blocks):
        """Statistics of the clusters in the given blocks only (renumbered 0..)."""
        blocks = np.atleast_1d(blocks)
        keep = np.isin(self.block, blocks)
        remap = np.full(self.n_blocks, -1)
        remap[blocks] = np.arange(blocks.size)
        return replace(self, labels=self.labels[keep], block=remap[self.block[keep]],
                       n_obs=self.n_obs[keep], ZtZ=self.ZtZ[keep], ZtX=self.ZtX[keep],
                       Zty=self.Zty[keep], XtX=self.XtX[blocks], Xty=self.Xty[blocks],
                       yty=self.yty[blocks], n_rows=self.n_rows[blocks])

    def select_features(self, columns):
        """Statistics restricted to the given columns of X (e.g. a selected support)."""
        columns = np.asarray(columns, dtype=int)
        names = None if self.feature_names is None else [self.feature_names[j]
                                                         for j in columns]
        return replace(self, ZtX=self.ZtX[:, :, columns],
                       XtX=self.XtX[:, columns][:, :, columns], Xty=self.Xty[:, columns],
                       intercept=bool(self.intercept and columns.size and columns[0] == 0),
                       feature_names=names, x_shift=self.x_shift[columns],
                       x_scale=self.x_scale[columns])


class FoldLayout:
    """Where each cluster goes: its fold (dealt at random) and its position in the
    statistics' (fold, label) order. Built once from all the labels, it makes chunks of
    rows, files and Dask partitions agree on the folds.

    Parameters
    ----------
    labels : ndarray of object
        All cluster labels, in sorted order (as :func:`hdlmm._validation.check_groups`).
    n_blocks : int
    random_state : int, RandomState or None
    """

    def __init__(self, labels, n_blocks, random_state):
        if n_blocks > labels.size:
            raise ValueError(f"cannot deal {labels.size} clusters into {n_blocks} folds; "
                             f"pass cv ≤ {labels.size}")
        block_of = _deal_blocks(labels.size, n_blocks, random_state)
        order = np.lexsort((np.arange(labels.size), block_of))
        self.position = np.empty_like(order)
        self.position[order] = np.arange(order.size)
        self.labels = labels[order]  # in statistics order
        self.block = block_of[order]
        self.n_blocks = n_blocks
        self._index = pd.Index(labels)

    def positions(self, groups):
        """Statistics position of each row's label; an error for unknown labels."""
        codes = self._index.get_indexer(pd.Index(groups))
        if np.any(codes < 0):
            bad = pd.Index(groups)[codes < 0][0]
            raise ValueError(f"cluster label {bad!r} was not seen when the folds were "
                             f"laid out; build the layout from every label of the data")
        return self.position[codes]


def column_standardization(X, intercept, chunk_rows=65536):
    """(shift, scale) of the columns of X for :class:`ClusterStats`, intercept column
    included (0, 1) when ``intercept``.

    With an intercept: the column means and standard deviations, by the corrected
    two-pass algorithm (Chan, Golub & LeVeque 1983: the sum of the deviations from the
    first mean corrects it, as a large offset rounds it), in pieces of rows through one
    reused buffer; a constant column gets its own value as shift and scale 1, so that
    its standardised values are exact zeros. Without one: no shift, and the root mean
    square as scale (1 for a column of zeros).
    """
    N, p = X.shape
    if not intercept:
        rms = np.sqrt(np.einsum("ij,ij->j", X, X) / N) if N else np.ones(p)
        rms[rms == 0] = 1.0
        return np.zeros(p), rms
    if N == 0:
        return np.zeros(p + 1), np.ones(p + 1)
    step = max(1, min(chunk_rows, (8 * 2 ** 20) // (8 * max(p, 1))))  # 8 MB pieces
    mean = X[:step].mean(axis=0)  # a provisional centre, near the mean: the pass corrects it
    ss, dev = np.zeros(p), np.zeros(p)
    buf = np.empty((min(step, N), p))
    for start in range(0, N, step):
        part = np.subtract(X[start:start + step], mean, out=buf[:min(step, N - start)])
        dev += part.sum(axis=0)
        ss += np.einsum("ij,ij->j", part, part)
    mean += dev / N
    sd = np.sqrt(np.maximum(ss - dev ** 2 / N, 0.0) / N)
    # constant (to rounding): checked exactly on those columns only
    maybe = np.flatnonzero(sd <= 64 * np.finfo(float).eps * np.abs(mean))
    const = maybe[np.all(X[:, maybe] == X[0, maybe], axis=0)] if maybe.size else maybe
    mean[const] = X[0, const]
    sd[const] = 1.0
    sd[sd == 0] = 1.0
    return np.r_[0.0, mean], np.r_[1.0, sd]


def z_standardization(Z, z_one):
    """(shift, scale) of the columns of Z: centred and scaled when Z has an intercept
    column ``z_one`` (which stays (0, 1)), only scaled (by the RMS) otherwise."""
    if z_one < 0:
        return column_standardization(Z, False)
    shift, scale = column_standardization(Z, True)
    shift, scale = shift[1:], scale[1:]
    shift[z_one], scale[z_one] = 0.0, 1.0
    return shift, scale


def intercept_column(Z):
    """Index of the first column of Z that is all ones (−1 if none)."""
    ones = np.flatnonzero(np.all(Z == 1.0, axis=0)) if Z.shape[0] else []
    return int(ones[0]) if len(ones) else -1


def _first_chunk_standardization(X, intercept):
    """A provisional (shift, scale) from the first chunk of rows (when the whole data
    are not at hand): it only needs to be near the data's own, which
    :meth:`ClusterStats.standardized` then moves to exactly."""
    shift, scale = column_standardization(X, intercept)
    if intercept and X.shape[0]:  # constant in this chunk, it may vary later: its size
        flat = np.flatnonzero(np.ptp(X, axis=0) == 0) + 1
        scale[flat] = np.where(shift[flat] != 0, np.abs(shift[flat]), 1.0)
    return shift, scale


def _first_chunk_z_standardization(Z, z_one):
    """As :func:`_first_chunk_standardization`, for Z with intercept column ``z_one``."""
    shift, scale = z_standardization(Z, z_one)
    if z_one >= 0 and Z.shape[0]:
        flat = np.flatnonzero(np.ptp(Z, axis=0) == 0)
        flat = flat[flat != z_one]
        scale[flat] = np.where(shift[flat] != 0, np.abs(shift[flat]), 1.0)
    return shift, scale


def _check_no_overflow(sums, X=None, y=None):
    """Cross-products of huge values overflow to inf: say so instead of failing later
    (the largest value is named when the rows X, y are at hand; it is only computed on
    failure)."""
    for key in ("XtX", "Xty", "yty", "ZtZ", "ZtX", "Zty"):
        if not all_finite(sums[key]):
            big = ("" if X is None else
                   f" (largest |value| {max(np.max(np.abs(X)), np.max(np.abs(y))):.3g})")
            raise ValueError(
                f"the cross-products of X, y and Z overflow{big}; rescale the columns "
                f"(e.g. sklearn.preprocessing.StandardScaler, or y in other units) "
                f"before fitting")


class _Accumulator:
    """Running sums of the cross-products, chunk by chunk of rows.

    The intercept column is never materialised: its cross-products are column sums,
    written into row and column 0. Rows of several folds are gathered fold by fold, in
    pieces of ``gather_bytes``, into one buffer reused across chunks, so each fold's
    Gram is BLAS calls on contiguous blocks and no chunk-sized array is allocated.
    """

    #: rows per sparse product Z_iᵀX_i: its result is allocated by scipy on every call,
    #: and results this small reuse freed memory instead of first-touching new pages
    #: (measured: 65,536 rows took 5× as long per row on a VM with transparent huge pages)
    product_rows = 8192

    #: bytes of the buffer the rows of one fold are gathered into before their Gram (it
    #: used to hold a whole chunk: 262 MB at p = 500; no slower in pieces, measured)
    gather_bytes = 16 * 2 ** 20

    def __init__(self, n, K, p, q, standard=None, z_one=-1):
        # (x_shift, x_scale, z_shift, z_scale, y_shift), of all p columns of X (the
        # intercept's included), the q of Z, and y; None: provisional, from the first
        # chunk of rows
        self.standard, self.z_one = standard, z_one
        self.n_obs = np.zeros(n, dtype=np.int64)
        self.ZtZ = zeros((n, q, q))
        self.ZtX = zeros((n, q, p))
        self.Zty = zeros((n, q))
        self.XtX = zeros((K, p, p))
        self.Xty = np.zeros((K, p))
        self.yty = np.zeros(K)
        self.n_rows = np.zeros(K, dtype=np.int64)
        self._buffer = np.empty((0, 0))  # gathered rows of a fold, standardised
        self._pieces = np.empty((0, 0))  # standardised rows of a cluster product

    def add_rows(self, X, y, Z, cluster, block_of_cluster, intercept):
        """Add rows given each row's cluster position (and, with ``intercept``, the
        cross-products of a constant column 0 that X does not contain)."""
        f = int(intercept)
        if self.standard is None:
            self.standard = (*_first_chunk_standardization(X, intercept),
                             *_first_chunk_z_standardization(Z, self.z_one),
                             float(np.mean(y)) if intercept and y.size else 0.0)
        y = y - self.standard[4] if self.standard[4] else y
        self._add_totals(X, y, block_of_cluster[cluster], f)
        x_shift, x_scale, z_shift, z_scale, _ = self.standard
        # Z_iᵀX̃_i from the raw rows, (Z_iᵀX_i − Z_iᵀ1 sᵀ)/c, when every shift is within
        # a few SDs (no cancellation to speak of: the rounding error grows with |s|/c);
        # from rows standardised first, through a reused buffer, otherwise
        direct = bool(np.all(np.abs(x_shift[f:]) <= 4 * x_scale[f:]))
        if not direct and self._pieces.shape != (self.product_rows, X.shape[1]):
            self._pieces = np.empty((self.product_rows, X.shape[1]))
        for lo in range(0, X.shape[0], self.product_rows):
            rows = slice(lo, lo + self.product_rows)
            Xs = X[rows] if direct else self._standard(X[rows], f,
                                                       out=self._pieces[:X[rows].shape[0]])
            self._add_cluster_products(Xs, y[rows], (Z[rows] - z_shift) / z_scale,
                                       cluster[rows], f, (x_shift[f:], x_scale[f:])
                                       if direct else None)

    def _standard(self, X, f, out=None):
        """(X − s) / c into ``out`` (a new array if None)."""
        shift, scale = self.standard[:2]
        out = np.subtract(X, shift[f:], out=out)
        out /= scale[f:]
        return out

    def _add_cluster_products(self, X, y, Z, cluster, f, raw=None):
        """n_i and Z_iᵀ[X_i, Z_i, y_i] of the clusters of some rows (``raw = (s, c)``:
        X is not standardised yet, and its products are, after the product)."""
        uc, local = np.unique(cluster, return_inverse=True)
        self.n_obs[uc] += np.bincount(local, minlength=uc.size)
        # Z_iᵀ[X_i, Z_i, y_i] for every cluster i at once: a sparse (clusters·q × rows)
        # matrix, row i·q + k holding Z[:, k] on the rows of cluster i, times the rows.
        n_rows, q = Z.shape
        S = sparse.csr_matrix(
            (Z.ravel(), ((local[:, None] * q + np.arange(q)).ravel(),
                         np.repeat(np.arange(n_rows), q))),
            shape=(uc.size * q, n_rows))
        ZX = S @ X
        if raw is not None:
            ZX -= np.asarray(S.sum(axis=1)) * raw[0]
            ZX /= raw[1]
        ZX = ZX.reshape(uc.size, q, -1)
        for run, at in runs(uc):  # ZtX is the largest sum: slices, not fancy indexing
            self.ZtX[at, :, f:] += ZX[run]
        self.ZtZ[uc] += (S @ Z).reshape(uc.size, q, q)
        self.Zty[uc] += (S @ y).reshape(uc.size, q)
        if f:  # Z_iᵀ1 for the intercept column: the row sums of S
            self.ZtX[uc, :, 0] += np.asarray(S.sum(axis=1)).reshape(uc.size, q)

    def _add_totals(self, X, y, block, f):
        """XᵀX, Xᵀy, yᵀy and N of each fold (the intercept's in row/column 0 when f),
        of the standardised columns: the rows of each fold are gathered and standardised
        piece by piece into one reused buffer."""
        blocks, counts = np.unique(block, return_counts=True)
        single = blocks.size == 1
        order = None if single else np.argsort(block, kind="stable")
        edges = np.r_[0, np.cumsum(counts)]
        # pieces of at least 2p rows: each product also reads and writes the p × p sums
        step = max(self.gather_bytes // (8 * max(X.shape[1], 1)), 2 * X.shape[1])
        if self._buffer.shape != (step, X.shape[1]):
            self._buffer = np.empty((step, X.shape[1]))
        for b, lo, hi in zip(blocks, edges[:-1], edges[1:]):
            for start in range(lo, hi, step):
                stop = min(start + step, hi)
                buf = self._buffer[:stop - start]
                if single:
                    rows = slice(start, stop)
                    Xb = self._standard(X[rows], f, out=buf)
                else:
                    rows = order[start:stop]
                    Xb = self._standard(np.take(X, rows, axis=0, out=buf, mode="clip"), f,
                                        out=buf)
                self._add_block(b, Xb, y[rows], f)

    def _add_block(self, b, Xb, yb, f):
        """Add some rows of fold b (contiguous in memory) to its totals."""
        self.XtX[b, f:, f:] += Xb.T @ Xb
        self.Xty[b, f:] += Xb.T @ yb
        self.yty[b] += yb @ yb
        self.n_rows[b] += Xb.shape[0]
        if f:
            colsum = Xb.sum(axis=0)
            self.XtX[b, 0, 0] += Xb.shape[0]
            self.XtX[b, 0, 1:] += colsum
            self.XtX[b, 1:, 0] += colsum
            self.Xty[b, 0] += yb.sum()

    def stats(self, labels, block, intercept, feature_names, X=None, y=None):
        """The ClusterStats of the sums (clusters in ``labels``/``block`` order), after
        checking them for overflow (``X``, ``y``: the rows, for the message)."""
        sums = dict(n_obs=self.n_obs, ZtZ=self.ZtZ, ZtX=self.ZtX, Zty=self.Zty,
                    XtX=self.XtX, Xty=self.Xty, yty=self.yty, n_rows=self.n_rows)
        _check_no_overflow(sums, X, y)
        standard = dict(zip(("x_shift", "x_scale", "z_shift", "z_scale", "y_shift"),
                            self.standard or (None, None, None, None, 0.0)))
        return ClusterStats(labels=labels, block=block, intercept=intercept,
                            feature_names=feature_names, z_one=self.z_one, **standard,
                            **sums)


def _own(mean, square, centred, one=0):
    """(shift, scale) in the current standardised units from the column means and the
    means of squares: the SD (the RMS when not ``centred``); a spread below rounding
    is a constant column, left unscaled; the intercept column ``one`` stays (0, 1)."""
    if not centred:
        mean = np.zeros_like(mean)
    sd = np.sqrt(np.maximum(square - mean ** 2, 0.0))
    sd[sd <= 64 * np.finfo(float).eps * np.maximum(np.abs(mean), 1.0)] = 1.0
    if centred and mean.size:
        mean[one], sd[one] = 0.0, 1.0
    return mean, sd


def _deal_blocks(n, K, random_state):
    """Deal n clusters (in sorted-label order) into K blocks of near-equal size."""
    if K == 1:
        return np.zeros(n, dtype=np.intp)
    perm = check_random_state(random_state).permutation(n)
    block = np.empty(n, dtype=np.intp)
    block[perm] = np.arange(n) % K
    return block


def _feature_names(names, p, intercept):
    if names is None:
        names = [f"x{j}" for j in range(p)]
    names = [str(s) for s in names]
    if len(names) != p:
        raise ValueError(f"feature_names has {len(names)} names but X has {p} columns")
    return (["(Intercept)"] if intercept else []) + names


def _factorize(labels):
    """Unique labels (sorted) and the index of each input into them."""
    codes, uniq = pd.factorize(labels)
    order = _sort_order(uniq)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return np.asarray(uniq, dtype=object)[order], rank[codes]


def _check_compatible(a, b):
    if (a.XtX.shape != b.XtX.shape or a.n_re != b.n_re or a.intercept != b.intercept
            or a.z_one != b.z_one):
        raise ValueError(
            f"cannot add ClusterStats of different layouts: {a.n_blocks} vs {b.n_blocks} "
            f"folds, p={a.n_features} vs {b.n_features}, q={a.n_re} vs {b.n_re}, "
            f"intercept {a.intercept} vs {b.intercept}")
