"""The matrix of a quadratic as the splicing kernel reads it: a tuple of arrays whose
entries are computed when asked for, so that no p × p training or profiled matrix is
formed.

``Q = (G, F, h, t, lead, diagonal, Rt, slot, store)`` (built by :func:`matrix`) stands
for G itself, or G − F (the training folds of a cross-validation: total − fold), or
G − F + R Rᵀ (the same with the fold's matrix in low rank,
:class:`hdlmm.core.quadratic.LowRank`), and either with its first column profiled out
(the intercept, ``lead`` = 1; h its column, t = h[1:] / h[0]) as
:func:`hdlmm.core._path_kernel.profile_first` computes it. The entries are those of the
matrices the numpy route forms (the same operations in the same order), so a path to k
reads O(p k) of them. G and F must be exactly symmetric, as every cross-product matrix
of the package is (G[i, j] and G[j, i] the same number: ``tests/test_transform.py``
checks it on each route that builds them); entry (i, j) is read from row j, which holds
an active column's entries in the order of the rows. In low rank the columns the path
visits are computed whole and kept (``slot``, ``store``), except that a column of which
only a few entries are asked for (the double exchange's candidates among themselves) is
read entry by entry, by the same sums in the same order; R is held transposed (Rt, m ×
p), so that a column of R Rᵀ is a sum of m rows of Rt, a loop the compiler vectorises
(no library call per column).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["matrix", "first_column", "read_only", "is_symmetric", "TINY"]

TINY = np.finfo(np.float64).tiny
#: columns of a low-rank matrix a path keeps (:func:`_column`)
COLUMNS_KEPT = 256
#: a column not kept is read entry by entry, not computed whole, when fewer than
#: 1 / FEW_ENTRIES of its entries are asked for (:func:`_gather_columns`)
FEW_ENTRIES = 4
#: the absent F and R of a matrix tuple, and its empty store (never written)
_NO_MATRIX = np.zeros((0, 0))
_NO_MATRIX.flags.writeable = False
_NO_STORE = np.empty((0, 0))


def matrix(G: np.ndarray, F: np.ndarray | None = None, h: np.ndarray | None = None,
           inv: float | None = None, R: np.ndarray | None = None) -> tuple:
    """The matrix tuple of the kernel: G, or G − F when F is given, plus R Rᵀ when R
    (rows as G's, any number of columns) is given; with the first column profiled out
    when ``h`` (that matrix's first column, :func:`first_column`) and ``inv`` (the
    inverse of its first entry) are given, as
    :func:`hdlmm.core._path_kernel.profile_first` computes it. G and F must be exactly
    symmetric."""
    G = read_only(G)
    if F is None and h is None and R is None:  # G itself: its diagonal, no kernel call
        empty = read_only(np.zeros(0))
        return (G, _NO_MATRIX, empty, empty, 0, read_only(G.diagonal().copy()), _NO_MATRIX,
                np.zeros(1, dtype=np.int64), _NO_STORE)
    F = read_only(np.zeros((0, 0)) if F is None else F)
    Rt = read_only(np.zeros((0, 0)) if R is None else R.T)
    if h is None:
        h, t, lead = read_only(np.zeros(0)), read_only(np.zeros(0)), 0
    else:
        h = read_only(h)
        t, lead = read_only(h[1:] * inv), 1
    # the columns computed in low rank, kept for the path: slot of each column (−1: not
    # kept; the last entry counts the kept ones) and their values
    n = G.shape[0] if Rt.shape[0] else 0
    slot = np.full(n + 1, -1, dtype=np.int64)
    slot[-1] = 0
    store = np.empty((min(n, COLUMNS_KEPT), n))
    Q = (G, F, h, t, lead, read_only(np.zeros(0)), Rt, slot, store)
    return G, F, h, t, lead, read_only(_diagonal(Q)), Rt, slot, store


def read_only(a: np.ndarray) -> np.ndarray:
    """A C-contiguous float64 view of ``a`` that cannot be written: numba compiles a
    function once per array type, and read-only is a type of its own, so the kernel's
    inputs are all read-only (the whitened problems are cached read-only; ``warm_up``
    then compiles the one type the fits use)."""
    if a.dtype == np.float64 and a.flags.c_contiguous and not a.flags.writeable:
        return a
    v = np.ascontiguousarray(a, dtype=np.float64).view()
    v.flags.writeable = False
    return v


def is_symmetric(G: np.ndarray) -> bool:
    """Whether G[i, j] and G[j, i] are the same number for every i, j (what the kernel
    needs, as it reads one triangle): a compiled loop that stops at the first pair
    that differs (``numpy.array_equal(G, G.T)`` forms a p × p array of booleans)."""
    return bool(_is_symmetric(read_only(G)))


@njit(cache=True)
def _is_symmetric(G):
    """A row at a time, without a branch inside the row: the compiler vectorises the
    comparisons (1.5× faster than stopping at the first pair, at p = 200)."""
    n = G.shape[0]
    for i in range(n):
        differ = False
        for j in range(i):
            differ |= G[i, j] != G[j, i]
        if differ:
            return False
    return True


def first_column(G: np.ndarray, F: np.ndarray | None = None,
                 R: np.ndarray | None = None) -> np.ndarray:
    """The first column of G − F + R Rᵀ (the matrix of :func:`matrix` before the
    profiling), by the kernel's formula."""
    out = np.empty(G.shape[0])
    _raw_column(read_only(G), read_only(np.zeros((0, 0)) if F is None else F),
                read_only(np.zeros((0, 0)) if R is None else R.T), 0, out)
    return out


@njit(cache=True, error_model="numpy")
def _gather(Q, rows, cols):
    """The entries (rows[r], cols[b]) of the matrix tuple Q (see :func:`matrix`), as an
    array (len(rows), len(cols)): :func:`_gather_columns` of (cols, rows), each entry
    read along the row of its ``rows`` index (the matrix is exactly symmetric, so
    entry (i, j) and entry (j, i) are the same number)."""
    return _gather_columns(Q, cols, rows)


@njit(cache=True, error_model="numpy")
def _gather_columns(Q, rows, cols):
    """The entries (rows[r], cols[b]) of the matrix tuple Q as an array (len(cols),
    len(rows)); entry (i, j) is read from row j, which holds column j's entries in the
    order of the rows (contiguous in r). (The formula is written out in the loop: numba
    does not inline a per-entry function here, which cost 3-4×.) In low rank a column
    is computed whole and kept (:func:`_column`) when it is kept already or when many of
    its entries are asked for; a column of which few are asked for (the double
    exchange's candidates among themselves) is read entry by entry
    (:func:`_raw_entry`, the same sums in the same order), not computed whole."""
    G, F, h, t, lead, Rt = Q[0], Q[1], Q[2], Q[3], Q[4], Q[6]
    minus = F.shape[0] > 0
    out = np.empty((cols.size, rows.size))
    col = np.empty(0)
    for b in range(cols.size):
        j = cols[b]
        whole = Rt.shape[0] > 0 and (Q[7][j + lead] >= 0
                                     or FEW_ENTRIES * rows.size >= G.shape[0])
        if whole:
            col = _column(Q, j + lead)
        for r in range(rows.size):
            i = rows[r]
            if whole:
                x = col[i + lead]
            elif Rt.shape[0]:
                x = _raw_entry(G, F, Rt, i + lead, j + lead)
            else:
                x = G[j + lead, i + lead]
                if minus:
                    x = x - F[j + lead, i + lead]
            if lead:
                x = ((x - t[i] * h[j + lead]) + (x - t[j] * h[i + lead])) * 0.5
            out[b, r] = x
    return out


@njit(cache=True, error_model="numpy", inline="always")
def _raw_entry(G, F, Rt, i1, j1):
    """Entry (i1, j1) of G − F + R Rᵀ, read from row j1: what :func:`_raw_column`
    writes there (R Rᵀ's entry summed over the rows of Rt in order, then added)."""
    acc = 0.0
    for u in range(Rt.shape[0]):
        acc += Rt[u, i1] * Rt[u, j1]
    x = G[j1, i1]
    if F.shape[0] > 0:
        x = x - F[j1, i1]
    return x + acc


@njit(cache=True, error_model="numpy")
def _raw_column(G, F, Rt, j1, out):
    """``out`` = column j1 of G − F + R Rᵀ, read from row j1 (R Rᵀ's column summed over
    the rows of Rt in order)."""
    low = np.zeros(G.shape[0])
    for u in range(Rt.shape[0]):
        r = Rt[u, j1]
        for i1 in range(G.shape[0]):
            low[i1] += Rt[u, i1] * r
    for i1 in range(G.shape[0]):
        x = G[j1, i1]
        if F.shape[0] > 0:
            x = x - F[j1, i1]
        out[i1] = x + low[i1]


@njit(cache=True, error_model="numpy")
def _column(Q, j1):
    """Column j1 of G − F + R Rᵀ (unprofiled, all rows), read from row j1: kept in the
    tuple's store the first time it is asked for (while there is room), so a path
    computes each of the few columns it visits once. (R Rᵀ's entries here and on the
    diagonal, :func:`_diagonal`, are the same sums in the same order.)"""
    G, F, Rt, slot, store = Q[0], Q[1], Q[6], Q[7], Q[8]
    if slot[j1] >= 0:
        return store[slot[j1]]
    n = slot[-1]
    col = store[n] if n < store.shape[0] else np.empty(G.shape[0])
    _raw_column(G, F, Rt, j1, col)
    if n < store.shape[0]:
        slot[j1] = n
        slot[-1] = n + 1
    return col


@njit(cache=True, error_model="numpy")
def _diagonal(Q):
    """The diagonal of the matrix tuple Q: the entries (j, j) of :func:`_gather`, by its
    formula."""
    G, F, h, t, lead, Rt = Q[0], Q[1], Q[2], Q[3], Q[4], Q[6]
    out = np.empty(G.shape[0] - lead)
    for j in range(out.size):
        x = G[j + lead, j + lead]
        if F.shape[0] > 0:
            x = x - F[j + lead, j + lead]
        if Rt.shape[0]:
            acc = 0.0
            for u in range(Rt.shape[0]):
                acc += Rt[u, j + lead] * Rt[u, j + lead]
            x = x + acc
        if lead:
            x = ((x - t[j] * h[j + lead]) + (x - t[j] * h[j + lead])) * 0.5
        out[j] = x
    return out


@njit(cache=True, error_model="numpy", inline="always")
def _dim(Q):
    """The number of columns of the matrix tuple Q."""
    return Q[5].size
