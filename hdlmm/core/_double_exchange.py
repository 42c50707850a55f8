"""The exact best exchange of two active for two inactive variables, for the compiled
splicing kernel (:mod:`hdlmm.core._splice_kernel`, whose module docstring gives the
conventions: the same formulas and order of choices as :mod:`hdlmm.core.splicing`,
numpy's floating-point semantics, compiled by numba and cached on disk; after editing
this module, ``make clean-cache``).

The entering candidates are the ``n_candidates`` largest forward sacrifices ζ; for each
pair leaving the support, f after every exchange with a pair of candidates comes from
the 2 × 2 updates of the Schur complements, row by row of the candidate pairs.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from hdlmm.core._kernel_matrix import TINY, _gather

__all__ = ["_best_double_exchange", "_largest", "_sorted_with"]


@njit(cache=True, error_model="numpy")
def _sorted_with(A, drop, add):
    """A without the positions ``drop``, with the features ``add``, sorted."""
    keep = np.ones(A.size, dtype=np.bool_)
    for t in range(drop.size):
        keep[drop[t]] = False
    return np.sort(np.concatenate((A[keep], add)))


@njit(cache=True, error_model="numpy")
def _largest(v, L):
    """Positions of the L largest entries of v, largest first: the first L of
    ``np.argsort(-v, kind="mergesort")`` (ties in index order, NaN after every number),
    by insertion into a sorted list of L, in O(len(v)) when L is small."""
    top = np.empty(L, dtype=np.int64)
    key = np.empty(L)  # −v of the kept positions, ascending, NaN last
    m = 0
    for r in range(v.size):
        x = -v[r]
        if m == L and (np.isnan(x) or not (x < key[m - 1] or np.isnan(key[m - 1]))):
            continue  # not above the last kept (a NaN never enters a full list)
        pos = m if m < L else L - 1  # the slot it takes from, then moves down
        while pos > 0 and (x < key[pos - 1] or (np.isnan(key[pos - 1]) and not np.isnan(x))):
            pos -= 1
        stop = m if m < L else L - 1
        for t in range(stop, pos, -1):
            key[t], top[t] = key[t - 1], top[t - 1]
        key[pos], top[pos] = x, r
        m = min(m + 1, L)
    return top


@njit(cache=True, error_model="numpy")
def _best_double_exchange(G, c, d, A, M, beta, rss, zeta, I, HT_I, g_I, n_candidates, below):
    """The support after the exact best exchange of two active for two inactive
    variables (entering ones among the ``n_candidates`` largest ζ), or an empty array
    unless it brings f below ``below``. Entering candidates whose Schur complement after
    the removal is below 1e-10 of their diagonal are skipped (aliased with the rest)."""
    k = A.size
    empty = np.empty(0, dtype=np.int64)
    if k < 2 or I.size < 2:
        return empty
    L = min(n_candidates, I.size)
    top = _largest(zeta, L)
    C, g = I[top], g_I[top]  # the sacrifices' H and g of the candidates
    H = np.empty((L, k))
    for r in range(L):
        for b in range(k):
            H[r, b] = HT_I[b, top[r]]
    GCA = _gather(G, C, A)
    S = _gather(G, C, C)
    for r in range(L):
        for s in range(L):
            acc = S[r, s]
            for b in range(k):
                acc -= H[r, b] * GCA[s, b]
            S[r, s] = acc
    best, bo1, bo2, bj, bl = np.inf, 0, 0, 0, 0
    h1 = np.empty(L)
    h2 = np.empty(L)
    g2 = np.empty(L)
    w1 = np.empty(L)
    w2 = np.empty(L)
    Dd = np.empty(L)
    valid = np.empty(L, dtype=np.bool_)
    for o1 in range(k):
        for o2 in range(o1 + 1, k):
            m11, m12, m22 = M[o1, o1], M[o1, o2], M[o2, o2]
            det_o = m11 * m22 - m12 * m12
            if not abs(det_o) > 1e-12 * abs(m11 * m22) + TINY:
                continue  # rss_R = inf: every exchange of this pair is infeasible
            i11, i12, i22 = m22 / det_o, -m12 / det_o, m11 / det_o
            b1, b2 = beta[o1], beta[o2]
            u1, u2 = i11 * b1 + i12 * b2, i12 * b1 + i22 * b2
            rss_R = rss + b1 * u1 + b2 * u2
            for r in range(L):
                h1[r], h2[r] = H[r, o1], H[r, o2]
                g2[r] = g[r] + h1[r] * u1 + h2[r] * u2
                w1[r] = h1[r] * i11 + h2[r] * i12
                w2[r] = h1[r] * i12 + h2[r] * i22
                Dd[r] = S[r, r] + w1[r] * h1[r] + w2[r] * h2[r]
                # a candidate aliased with the remaining support: its Schur complement
                # is rounding noise, which must not pass for a large gain
                valid[r] = Dd[r] > 1e-10 * max(G[5][C[r]], TINY)
            for j in range(L):
                if not valid[j]:
                    continue
                # whether some l > j brings f below the best so far (a loop without
                # branches or stores, which the compiler vectorises); only then f again
                # for each l in order, the first smallest kept (the same operations:
                # the same numbers)
                Dj, gj, w1j, w2j = Dd[j], g2[j], w1[j], w2[j]
                better = False
                for l in range(L):
                    Sjl = S[j, l] + w1j * h1[l] + w2j * h2[l]
                    DD = Dj * Dd[l]
                    det = DD - Sjl * Sjl
                    quad = gj * gj * Dd[l] + Dj * g2[l] * g2[l] - 2 * Sjl * gj * g2[l]
                    v = rss_R - quad / det
                    better |= valid[l] & (det > 1e-10 * abs(DD)) & (l > j) & (v < best)
                if not better:
                    continue
                for l in range(j + 1, L):
                    Sjl = S[j, l] + w1j * h1[l] + w2j * h2[l]
                    DD = Dj * Dd[l]
                    det = DD - Sjl * Sjl
                    quad = gj * gj * Dd[l] + Dj * g2[l] * g2[l] - 2 * Sjl * gj * g2[l]
                    v = rss_R - quad / det
                    if valid[l] and det > 1e-10 * abs(DD) and v < best:
                        best, bo1, bo2, bj, bl = v, o1, o2, j, l
    if not best < below:
        return empty
    return _sorted_with(A, np.array([bo1, bo2]), np.array([C[bj], C[bl]]))
