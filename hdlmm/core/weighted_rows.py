"""The weighted rotated rows of every cluster for a value of a, made on demand: kept
for every a while small together, else for one a at a time and written over the last
a's when nothing holds those (the rows behind :class:`hdlmm.core.quadratic.LowRank`;
see :mod:`hdlmm.core.transform`)."""

from __future__ import annotations

import sys

import numpy as np

__all__ = ["WeightedRows"]


class WeightedRows:
    """The weighted rotated rows diag(√w_i(a)) V_iᵀ Z_iᵀX_i of every cluster, as one
    (n q × p) array B(a), made on demand.

    The low-rank problems (:class:`~hdlmm.core.quadratic.LowRank`) read their blocks'
    rows from here: B(a) is as large as the statistics' Z_iᵀX_i, and a grid of them
    held at once was the largest memory of a fit (6 × 64 MB at n q = 4,000, p = 2,000;
    on a machine where new memory is slow to touch, most of the passes' time). The
    rows of every a asked for are kept while together under ``keep_bytes`` (a small
    problem asks for the same a several times); beyond, only those of the last a are
    kept, read-only, and asking for another a makes its rows anew (a batched q × q
    rotation, far cheaper than the product that uses them). Either way an array handed
    out earlier stays valid and unchanged.

    Parameters
    ----------
    Vt : ndarray of shape (n, q, q)
        The rotations V_iᵀ (with the statistics' Z map, as
        :class:`~hdlmm.core.transform.ProxyTransform`'s).
    ZtX : ndarray of shape (n, q, p)
    lam : ndarray of shape (n, q)
        Eigenvalues of the Z_iᵀZ_i.
    """

    #: the rows of every a asked for are kept while together no larger than this (a
    #: small problem's CV, criterion and inference ask for the same a several times);
    #: beyond, those of one a at a time
    keep_bytes = 4 * 2 ** 20

    def __init__(self, Vt: np.ndarray, ZtX: np.ndarray, lam: np.ndarray) -> None:
        self.Vt, self.ZtX, self.lam = Vt, ZtX, lam
        self._a, self._rows = None, None
        self._kept = {}  # a -> rows, while they fit in keep_bytes
        self._probe = np.empty(1).reshape(1, 1)  # (see _reusable)

    def __call__(self, a: float) -> np.ndarray:
        """B(a), shape (n q, p), read-only."""
        if a in self._kept:
            return self._kept[a]
        if self._a == a:
            return self._rows
        if self.ZtX.nbytes * (len(self._kept) + 1) <= self.keep_bytes:
            self._kept[a] = self._make(a, np.empty(self.ZtX.shape))
            return self._kept[a]
        out = self._reusable()
        self._a, self._rows = None, None  # the last one is freed before the next
        self._a, self._rows = a, self._make(a, np.empty(self.ZtX.shape) if out is None
                                            else out)
        return self._rows

    def _make(self, a, out):
        """B(a) written into ``out`` (n, q, p), as a read-only (n q, p) view."""
        n, q, p = self.ZtX.shape
        rw = np.sqrt(a / (1.0 + a * self.lam))
        np.matmul(rw[:, :, None] * self.Vt, self.ZtX, out=out)
        rows = out.reshape(n * q, p)
        rows.flags.writeable = False
        return rows

    def _reusable(self):
        """The last rows' memory, writable, if nothing else refers to it, else None.
        Rewriting it in place spares touching new memory for every a.

        Nothing else refers to the rows (a view of shape (n q, p)) when their reference
        count and their base's are those of ``_probe``, a view held the same way that
        nothing else can hold (the counts are compared, not fixed numbers: how many
        references a call itself adds differs between Python versions)."""
        rows, probe = self._rows, self._probe
        if rows is None or (sys.getrefcount(rows) > sys.getrefcount(probe)
                            or sys.getrefcount(rows.base) > sys.getrefcount(probe.base)):
            return None
        base = rows.base
        base.flags.writeable = True
        return base
