"""The compiled splicing kernel behind :func:`hdlmm.core.splicing.best_subset`.

One call runs a whole best-subset search of size k (grow or shrink the starting
support, then splicing iterations until no exchange improves f) without returning to
Python, so a path of hundreds of supports costs no Python work per step. The
algorithm and its formulas are those documented in :mod:`hdlmm.core.splicing`; every
quantity is computed by the same formula in the same order of choices (first index
on ties, as numpy's argmin and argmax), with loops in place of numpy's vectorised
expressions and numpy's floating-point semantics (``error_model="numpy"``: a division
by zero gives inf or NaN, not an exception). Compiled by numba on first use and cached
on disk (``cache=True``).

The quadratic's matrix is a tuple of :mod:`hdlmm.core._kernel_matrix`, read as the
kernel needs its entries; p × p training and profiled matrices are never formed. The
exact double exchange is in :mod:`hdlmm.core._double_exchange`.

Numba's on-disk cache follows each file's own edits only: after editing this module,
:mod:`~hdlmm.core._double_exchange` or :mod:`~hdlmm.core._kernel_matrix`, delete the
``*.nbi``/``*.nbc`` files under ``hdlmm/core/__pycache__`` (``make clean-cache``), or
the path kernel of :mod:`~hdlmm.core._path_kernel` keeps the old code.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from hdlmm.core._double_exchange import _best_double_exchange, _sorted_with
from hdlmm.core._kernel_matrix import TINY, _dim, _gather, _gather_columns

__all__ = ["splice", "search"]

EPS = np.finfo(np.float64).eps


@njit(cache=True, error_model="numpy")
def _chol_inverse(B):
    """(M, ok): the inverse of a symmetric positive-definite B by Cholesky on B scaled to
    a unit diagonal; ok False if B or the scaled matrix is singular or nearly so (a
    pivot below 1e-6 of the largest)."""
    k = B.shape[0]
    M = np.zeros((k, k))
    if k == 0:
        return M, True
    s = np.empty(k)
    for i in range(k):
        if not B[i, i] > 0:
            return M, False
        s[i] = 1.0 / np.sqrt(B[i, i])
    L = np.zeros((k, k))
    for j in range(k):
        acc = B[j, j] * s[j] * s[j]
        for t in range(j):
            acc -= L[j, t] * L[j, t]
        if not acc > 0:
            return M, False
        L[j, j] = np.sqrt(acc)
        for i in range(j + 1, k):
            acc = B[i, j] * s[i] * s[j]
            for t in range(j):
                acc -= L[i, t] * L[j, t]
            L[i, j] = acc / L[j, j]
    lo, hi = L[0, 0], L[0, 0]
    for j in range(1, k):
        lo, hi = min(lo, L[j, j]), max(hi, L[j, j])
    if not lo > 1e-6 * hi:
        return M, False
    Linv = np.zeros((k, k))  # L⁻¹, lower triangular, by forward substitution
    for j in range(k):
        Linv[j, j] = 1.0 / L[j, j]
        for i in range(j + 1, k):
            acc = 0.0
            for t in range(j, i):
                acc -= L[i, t] * Linv[t, j]
            Linv[i, j] = acc / L[i, i]
    for j in range(k):  # (L⁻¹ D^{-1/2}) scaled columns
        for i in range(k):
            Linv[i, j] *= s[j]
    for a in range(k):  # M = Linvᵀ Linv
        for b in range(a, k):
            acc = 0.0
            for t in range(max(a, b), k):
                acc += Linv[t, a] * Linv[t, b]
            M[a, b] = acc
            M[b, a] = acc
    return M, True


@njit(cache=True, error_model="numpy")
def _pinvh(B):
    """Pseudo-inverse of a symmetric matrix (eigenvalues above max|w| · k · eps)."""
    w, V = np.linalg.eigh(B)
    cutoff = np.max(np.abs(w)) * B.shape[0] * EPS
    k = B.shape[0]
    M = np.zeros((k, k))
    for t in range(k):
        if abs(w[t]) > cutoff:
            for a in range(k):
                for b in range(k):
                    M[a, b] += V[a, t] * V[b, t] / w[t]
    return M


@njit(cache=True, error_model="numpy")
def _support(G, c, d, A, strict):
    """(M, β, f) on the sorted support A; f = inf when ``strict`` and G_AA is singular."""
    k = A.size
    B = _gather(G, A, A)
    M, ok = _chol_inverse(B)
    if not ok:
        if strict:
            return M, np.zeros(k), np.inf
        M = _pinvh(B)
    beta = np.zeros(k)
    for a in range(k):
        acc = 0.0
        for b in range(k):
            acc += M[a, b] * c[A[b]]
        beta[a] = acc
    rss = d
    for a in range(k):
        rss -= c[A[a]] * beta[a]
    return M, beta, rss


@njit(cache=True, error_model="numpy")
def _inactive(p, A):
    mask = np.ones(p, dtype=np.bool_)
    for a in range(A.size):
        mask[A[a]] = False
    return np.flatnonzero(mask)


@njit(cache=True, error_model="numpy")
def _projections(G, c, rows, A, M, beta):
    """For the columns ``rows``, transposed (k × len(rows), loops along the rows, which
    the compiler vectorises): G_Ar, Hᵀ = (G_rA M)ᵀ and g = c_r − G_rA β, each entry
    summed over the support in order."""
    k, L = A.size, rows.size
    GT = _gather_columns(G, rows, A)
    HT = np.zeros((k, L))
    g = np.empty(L)
    for r in range(L):
        g[r] = c[rows[r]]
    for b in range(k):
        for r in range(L):
            g[r] -= GT[b, r] * beta[b]
    for t in range(k):
        for b in range(k):
            m = M[t, b]
            for r in range(L):
                HT[b, r] += GT[t, r] * m
    return GT, HT, g


@njit(cache=True, error_model="numpy")
def _sacrifices(G, c, A, M, beta):
    """ξ on A; ζ, Hᵀ (k × |I|), g and D on the inactive I (D = inf where the column is
    aliased)."""
    k = A.size
    I = _inactive(_dim(G), A)
    GT, HT, g = _projections(G, c, I, A, M, beta)
    D = np.empty(I.size)
    for r in range(I.size):
        D[r] = G[5][I[r]]
    for b in range(k):
        for r in range(I.size):
            D[r] -= HT[b, r] * GT[b, r]
    zeta = np.empty(I.size)
    for r in range(I.size):
        gjj = G[5][I[r]]
        if D[r] > 1e-10 * max(gjj, TINY):
            zeta[r] = g[r] * g[r] / D[r]
        else:
            D[r] = np.inf
            zeta[r] = 0.0
    xi = np.empty(k)
    for b in range(k):
        xi[b] = beta[b] * beta[b] / M[b, b]
    return xi, zeta, I, HT, g, D


@njit(cache=True, error_model="numpy")
def _best_single_exchange(M, beta, xi, HT, g, D):
    """(change of f, position in A, position in I) of the exact best single exchange
    (the first smallest in the order of (I, A); a NaN, if any, first)."""
    k = beta.size
    best, bi, bj = np.inf, 0, 0
    for r in range(HT.shape[1]):
        for b in range(k):
            h = HT[b, r]
            num = g[r] + h * (beta[b] / M[b, b])
            den = D[r] + h * h / M[b, b]
            v = xi[b] - num * num / den
            if v < best or (np.isnan(v) and not np.isnan(best)):
                best, bi, bj = v, b, r
                if np.isnan(v):
                    return best, bi, bj
    return best, bi, bj


@njit(cache=True, error_model="numpy")
def _improve(G, c, d, A, M, beta, rss, max_exchange, n_candidates):
    """One splicing iteration: (A, M, β, f) improved, whether it improved, and ζ and I
    of the sacrifices it computed (those of the returned A when nothing improved)."""
    xi, zeta, I, HT, g, D = _sacrifices(G, c, A, M, beta)
    k = A.size
    tol = 1e-10 * max(abs(rss), 1e-12 * abs(d), TINY)
    found = False
    bA, bM, bbeta, brss = A, M, beta, np.inf
    delta, i, r = _best_single_exchange(M, beta, xi, HT, g, D)
    if delta < -tol:
        bA = _sorted_with(A, np.array([i]), np.array([I[r]]))
        bM, bbeta, brss = _support(G, c, d, bA, True)
        found = True
    top = min(max_exchange, k, I.size)
    if top >= 3:
        order_out = np.argsort(xi, kind="mergesort")
        order_in = I[np.argsort(-zeta, kind="mergesort")]
        for s in range(3, top + 1):
            cA = np.sort(np.concatenate((A[order_out[s:]], order_in[:s])))
            cM, cbeta, crss = _support(G, c, d, cA, True)
            if not found or crss < brss:
                bA, bM, bbeta, brss, found = cA, cM, cbeta, crss, True
    if not found or brss >= rss - tol:
        dA = _best_double_exchange(G, c, d, A, M, beta, rss, zeta, I, HT, g, n_candidates,
                                   rss - tol)
        if dA.size == 0:
            return A, M, beta, rss, False, zeta, I
        bA = dA
        bM, bbeta, brss = _support(G, c, d, bA, True)
    if brss >= rss - tol:
        return A, M, beta, rss, False, zeta, I
    return bA, bM, bbeta, brss, True, zeta, I


@njit(cache=True, error_model="numpy")
def _grow(G, c, d, A, k):
    """Add forward-sacrifice winners one at a time until |A| = k."""
    while A.size < k:
        A = np.sort(A)
        M, beta, _ = _support(G, c, d, A, False)
        _, zeta, I, _, _, _ = _sacrifices(G, c, A, M, beta)
        A = np.concatenate((A, I[np.argmax(zeta):np.argmax(zeta) + 1]))
    return np.sort(A)


@njit(cache=True, error_model="numpy")
def _shrink(G, c, d, A, k):
    """Drop backward-sacrifice losers one at a time until |A| = k (A sorted)."""
    while A.size > k:
        M, beta, _ = _support(G, c, d, A, False)
        xi = np.empty(A.size)
        for b in range(A.size):
            xi[b] = beta[b] * beta[b] / M[b, b]
        A = _sorted_with(A, np.array([np.argmin(xi)]), np.empty(0, dtype=np.int64))
    return A


@njit(cache=True, error_model="numpy")
def splice(G: tuple, c: np.ndarray, d: float, k: int, init: np.ndarray, max_exchange: int,
           n_candidates: int, max_iter: int) -> tuple:
    """Best subset of size k by splicing from the sorted support ``init``, for the
    matrix tuple G (:func:`matrix`).

    Returns (support, coefficients, f, converged).
    """
    none = np.empty(0, dtype=np.int64)
    A, _, beta, rss, converged, _, _ = search(G, c, d, k, init, max_exchange, n_candidates,
                                              max_iter, np.empty(0), none)
    return A, beta, rss, converged


@njit(cache=True, error_model="numpy")
def search(G: tuple, c: np.ndarray, d: float, k: int, init: np.ndarray, max_exchange: int,
           n_candidates: int, max_iter: int, zeta0: np.ndarray, I0: np.ndarray) -> tuple:
    """:func:`splice`, given the forward sacrifices ζ0 of the inactive I0 of ``init``
    when known (a path's previous search computed them; I0 empty when not), and
    returning what the next search of a path can use: (support, M, coefficients, f,
    converged, ζ, I), with ζ and I those of the support when its last iteration found
    no improvement (else I empty). M is the inverse of the support's Gram matrix, for
    its backward sacrifices ξ = β² / diag M. The same operations on the same numbers
    as without them: ζ0 and I0 replace a computation of the same quantities."""
    none = np.empty(0, dtype=np.int64)
    A = init
    if A.size < k and I0.size:  # grow's first step, from the known sacrifices
        top = np.argmax(zeta0)
        A = np.concatenate((A, I0[top:top + 1]))
    A = _shrink(G, c, d, _grow(G, c, d, A, k), k)
    M, beta, rss = _support(G, c, d, A, False)
    if k == _dim(G):
        return A, M, beta, rss, True, np.empty(0), none
    for _ in range(max_iter):
        A, M, beta, rss, improved, zeta, I = _improve(G, c, d, A, M, beta, rss,
                                                      max_exchange, n_candidates)
        if not improved:
            return A, M, beta, rss, True, zeta, I
    return A, M, beta, rss, False, np.empty(0), none
