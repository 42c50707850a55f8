"""Running sums of a ClusterStats' cross-products, chunk by chunk of rows (the one
pass over the data that every front end makes: arrays, files, Dask partitions)."""

from __future__ import annotations

import numpy as np

from hdlmm.core._arrays import runs, zeros
from hdlmm.core._cluster_kernel import cluster_products
from hdlmm.core.checks import all_finite
from hdlmm.core.standardize import _first_chunk_standardization, _first_chunk_z_standardization

__all__ = ["_Accumulator"]


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
    written into row and column 0. With observation weights w the rows come already
    multiplied by u = √w and ``u`` is given: the intercept column is then u (its
    cross-products are u-weighted sums) and every shift of the standardisation is
    subtracted as a multiple of u, so the sums are those of the weighted model
    W^{1/2}y = W^{1/2}Xβ + W^{1/2}Zγ + ε (ε ~ N(0, σ²I)).

    Rows of several folds are gathered fold by fold, in pieces of ``gather_bytes``, into
    one buffer reused across chunks, so each fold's Gram is BLAS calls on contiguous
    blocks and no chunk-sized array is allocated.
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

    def add_rows(self, X, y, Z, cluster, block_of_cluster, intercept, u=None):
        """Add rows given each row's cluster position (and, with ``intercept``, the
        cross-products of a constant column 0 that X does not contain; ``u``: the rows
        are weighted, see the class docstring)."""
        f = int(intercept)
        if self.standard is None:
            self.standard = (*_first_chunk_standardization(X, intercept),
                             *_first_chunk_z_standardization(Z, self.z_one),
                             float(np.mean(y)) if intercept and y.size else 0.0)
        if self.standard[4]:
            y = y - self.standard[4] * (1.0 if u is None else u)
        self._add_totals(X, y, block_of_cluster[cluster], f, u)
        x_shift, x_scale, z_shift, z_scale, _ = self.standard
        # Z_iᵀX̃_i from the raw rows, (Z_iᵀX_i − Z_iᵀ1 sᵀ)/c, when every shift is within
        # a few SDs (no cancellation to speak of: the rounding error grows with |s|/c);
        # from rows standardised first, through a reused buffer, otherwise
        direct = bool(np.all(np.abs(x_shift[f:]) <= 4 * x_scale[f:]))
        if not direct and self._pieces.shape != (self.product_rows, X.shape[1]):
            self._pieces = np.empty((self.product_rows, X.shape[1]))
        for lo in range(0, X.shape[0], self.product_rows):
            rows = slice(lo, lo + self.product_rows)
            ur = None if u is None else u[rows]
            Xs = X[rows] if direct else self._standard(X[rows], f,
                                                       out=self._pieces[:X[rows].shape[0]],
                                                       u=ur)
            Zs = (Z[rows] - (z_shift if ur is None else ur[:, None] * z_shift)) / z_scale
            self._add_cluster_products(Xs, y[rows], Zs, cluster[rows], f,
                                       (x_shift[f:], x_scale[f:]) if direct else None, ur)

    def _standard(self, X, f, out=None, u=None):
        """(X − s) / c (with weights, (X − u sᵀ) / c) into ``out`` (new if None)."""
        shift, scale = self.standard[:2]
        out = np.subtract(X, shift[f:] if u is None else u[:, None] * shift[f:], out=out)
        out /= scale[f:]
        return out

    def _add_cluster_products(self, X, y, Z, cluster, f, raw=None, u=None):
        """n_i and Z_iᵀ[X_i, Z_i, y_i] of the clusters of some rows (``raw = (s, c)``:
        X is not standardised yet, and its products are, after the product; ``u``:
        the intercept column, ones when None)."""
        uc, local = np.unique(cluster, return_inverse=True)
        self.n_obs[uc] += np.bincount(local, minlength=uc.size)
        # Z_iᵀ[X_i, Z_i, y_i] and Z_iᵀ1 (Z_iᵀu with weights) for every cluster at once
        q = Z.shape[1]
        ZX, ZZ, Zy, Z1 = cluster_products(X, y, Z, local, uc.size, u)
        if raw is not None:
            ZX -= Z1 * raw[0]
            ZX /= raw[1]
        ZX = ZX.reshape(uc.size, q, -1)
        for run, at in runs(uc):  # ZtX is the largest sum: slices, not fancy indexing
            self.ZtX[at, :, f:] += ZX[run]
        self.ZtZ[uc] += ZZ
        self.Zty[uc] += Zy
        if f:  # Z_iᵀ1 for the intercept column
            self.ZtX[uc, :, 0] += Z1.reshape(uc.size, q)

    def _add_totals(self, X, y, block, f, u=None):
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
                rows = slice(start, stop) if single else order[start:stop]
                ub = None if u is None else u[rows]
                if single:
                    Xb = self._standard(X[rows], f, out=buf, u=ub)
                else:
                    Xb = self._standard(np.take(X, rows, axis=0, out=buf, mode="clip"), f,
                                        out=buf, u=ub)
                self._add_block(b, Xb, y[rows], f, ub)

    def _add_block(self, b, Xb, yb, f, ub=None):
        """Add some rows of fold b (contiguous in memory) to its totals (``ub``: their
        intercept column, ones when None)."""
        self.XtX[b, f:, f:] += Xb.T @ Xb
        self.Xty[b, f:] += Xb.T @ yb
        self.yty[b] += yb @ yb
        self.n_rows[b] += Xb.shape[0]
        if f and ub is None:
            colsum = Xb.sum(axis=0)
            self.XtX[b, 0, 0] += Xb.shape[0]
            self.XtX[b, 0, 1:] += colsum
            self.XtX[b, 1:, 0] += colsum
            self.Xty[b, 0] += yb.sum()
        elif f:
            colsum = ub @ Xb
            self.XtX[b, 0, 0] += ub @ ub
            self.XtX[b, 0, 1:] += colsum
            self.XtX[b, 1:, 0] += colsum
            self.Xty[b, 0] += ub @ yb

    def fields(self, X=None, y=None):
        """The sums and their standardisation, as ClusterStats fields, after checking
        them for overflow (``X``, ``y``: the rows, for the message)."""
        sums = dict(n_obs=self.n_obs, ZtZ=self.ZtZ, ZtX=self.ZtX, Zty=self.Zty,
                    XtX=self.XtX, Xty=self.Xty, yty=self.yty, n_rows=self.n_rows)
        _check_no_overflow(sums, X, y)
        standard = dict(zip(("x_shift", "x_scale", "z_shift", "z_scale", "y_shift"),
                            self.standard or (None, None, None, None, 0.0)))
        return dict(z_one=self.z_one, **standard, **sums)
