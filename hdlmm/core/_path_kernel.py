"""The compiled pieces of a support-size path around :mod:`hdlmm.core._splice_kernel`:
the intercept profiled out of a quadratic, and a whole path (forward and backward
sweeps, with an information criterion's stop) in one call. Compiled by numba on first
use and cached on disk; :func:`warm_up` compiles everything once."""

from __future__ import annotations

import numpy as np
from numba import njit

from hdlmm.core._double_exchange import _sorted_with
from hdlmm.core._kernel_matrix import TINY, first_column, is_symmetric, matrix, read_only
from hdlmm.core._splice_kernel import _support, search, splice

__all__ = ["IC_CODES", "profile_first", "splice_path", "new_path", "forward_sweep",
           "backward_sweep", "warm_up"]


@njit(cache=True, error_model="numpy")
def profile_first(G: np.ndarray, inv: float) -> np.ndarray:
    """G̃ = G_RR − G_R0 G_00⁻¹ G_0R for the first column profiled out (R = 1..p−1),
    symmetrised as ½(G̃ + G̃ᵀ), with ``inv`` = G_00⁻¹: one pass in 64 × 64 tiles (so
    that G's transpose is read from cache), no temporaries."""
    m = G.shape[0] - 1
    out = np.empty((m, m))
    t = np.empty(m)
    for i in range(m):
        t[i] = G[i + 1, 0] * inv
    B = 64
    for i0 in range(0, m, B):
        for j0 in range(i0, m, B):
            for i in range(i0, min(i0 + B, m)):
                for j in range(max(j0, i), min(j0 + B, m)):
                    v = ((G[i + 1, j + 1] - t[i] * G[j + 1, 0])
                         + (G[j + 1, i + 1] - t[j] * G[i + 1, 0])) * 0.5
                    out[i, j] = v
                    out[j, i] = v
    return out


#: the penalties of :func:`hdlmm.model.tuning.information_criterion`, by code
IC_CODES = {"aic": 0, "bic": 1, "gic": 2, "sic": 2, "ebic": 3}


@njit(cache=True, error_model="numpy")
def _criterion(rss, k, n, p, code):
    """n log(RSS / n) + penalty(k), in the operation order of information_criterion."""
    fit = n * np.log(max(rss, TINY) / n)
    kf = float(k)
    if code == 0:
        pen = 2 * kf
    elif code == 1:
        pen = kf * np.log(n)
    elif code == 2:
        pen = kf * np.log(p) * np.log(np.log(n))
    else:
        pen = kf * (np.log(n) + 2 * np.log(p))
    return fit + pen


@njit(cache=True, error_model="numpy")
def splice_path(G: tuple, c: np.ndarray, d: float, k_min: int, k_max: int,
                max_exchange: int, n_candidates: int, max_iter: int, code: int, n: float,
                p: int, rss_ls: float, ratio: int = 0, extra: int = 0) -> tuple:
    """Best subsets for k = k_min..k_max of the matrix tuple G
    (:func:`~hdlmm.core._kernel_matrix.matrix`) in one call: a forward sweep warm-started from
    k − 1, then a backward sweep from k + 1 keeping the better fit. Returns (supports
    padded with −1, coefficients, RSS, converged) for the k reached.

    With a criterion (``code`` ≥ 0) the forward sweep stops at the first k beyond which
    no support can have a smaller criterion (RSS_LS = ``rss_ls``, when positive), or,
    with a window (``ratio`` > 0), at the first k ≥ max(ratio · k̂, k̂ + extra), k̂ the
    minimiser of the criterion so far (k̂ = 0 for the null model)."""
    S, B, R, ok, XI, state = new_path(d, k_min, k_max, code, n, p)
    forward_sweep(G, c, d, k_min, k_max, max_exchange, n_candidates, max_iter, code, n, p,
                  rss_ls, ratio, extra, S, B, R, ok, XI, state, np.empty(0),
                  np.empty(0, dtype=np.int64))
    m = int(state[0])
    backward_sweep(G, c, d, k_min, m - 1, 0, max_exchange, n_candidates, max_iter, S, B,
                   R, ok, XI)
    return S[:m], B[:m], R[:m], ok[:m]


@njit(cache=True, error_model="numpy")
def new_path(d: float, k_min: int, k_max: int, code: int, n: float, p: int) -> tuple:
    """The arrays of a path for k = k_min..k_max before its forward sweep: supports
    (padded with −1), coefficients, RSS, converged, the backward sacrifices
    β² / diag M of each support, and the sweep's state (levels done, the smallest
    criterion so far and its k, and 1 once a stop rule has ended the sweep)."""
    K = k_max - k_min + 1
    state = np.zeros(4)
    state[1] = _criterion(d, 0, n, p, code) if code >= 0 else 0.0
    return (-np.ones((K, k_max), dtype=np.int64), np.zeros((K, k_max)), np.empty(K),
            np.ones(K, dtype=np.bool_), np.empty((K, k_max)), state)


@njit(cache=True, error_model="numpy")
def forward_sweep(G: tuple, c: np.ndarray, d: float, k_min: int, k_to: int,
                  max_exchange: int, n_candidates: int, max_iter: int, code: int,
                  n: float, p: int, rss_ls: float, ratio: int, extra: int, S: np.ndarray,
                  B: np.ndarray, R: np.ndarray, ok: np.ndarray, XI: np.ndarray,
                  state: np.ndarray, zeta: np.ndarray, I: np.ndarray) -> tuple:
    """Continue the forward sweep of a path (:func:`new_path`'s arrays, in place) from
    the levels it has to k_to, each search warm-started from the previous support
    (with its forward sacrifices ζ, I, when known), until a stop rule of
    :func:`splice_path` ends it. Returns ζ and I of the last support, for the next
    call."""
    m = int(state[0])
    if state[3]:
        return zeta, I
    best, k_best = state[1], int(state[2])
    prev = S[m - 1, :k_min + m - 1].copy() if m else np.zeros(0, dtype=np.int64)
    for k in range(k_min + m, k_to + 1):
        A, M, beta, rss, conv, zeta, I = search(G, c, d, k, prev, max_exchange,
                                                n_candidates, max_iter, zeta, I)
        S[m, :k], B[m, :k], R[m], ok[m] = A, beta, rss, conv
        _xi(M, beta, XI[m])
        m += 1
        prev = A
        if code >= 0:
            crit = _criterion(rss, k, n, p, code)
            if crit < best:
                best, k_best = crit, k
            if ((rss_ls > 0 and _criterion(rss_ls, k + 1, n, p, code) > best)
                    or (ratio > 0 and k >= max(ratio * k_best, k_best + extra))):
                state[3] = 1.0
                break
    state[0], state[1], state[2] = m, best, k_best
    return zeta, I


@njit(cache=True, error_model="numpy")
def backward_sweep(G: tuple, c: np.ndarray, d: float, k_min: int, hi: int, lo: int,
                   max_exchange: int, n_candidates: int, max_iter: int, S: np.ndarray,
                   B: np.ndarray, R: np.ndarray, ok: np.ndarray, XI: np.ndarray) -> None:
    """The backward sweep of a path, in place, over the levels hi − 1 down to lo
    (indices from k_min), level hi final: each level's search starts from the level
    above with its weakest member dropped, and its fit replaces the level's when
    better. Levels below hi must still hold the forward sweep's fits (a sweep from the
    top, hi = levels − 1, can be continued down in several calls)."""
    none = np.empty(0, dtype=np.int64)
    for i in range(hi - 1, lo - 1, -1):
        k = k_min + i
        # splice's start from the (k + 1)-support: its weakest member dropped; when that
        # is the forward sweep's support (a fixed point of splicing), nothing can change
        start = _sorted_with(S[i + 1, :k + 1], np.array([np.argmin(XI[i + 1, :k + 1])]),
                             none)
        if ok[i] and np.array_equal(start, S[i, :k]):
            continue
        A, M, beta, rss, conv, _, _ = search(G, c, d, k, start, max_exchange, n_candidates,
                                             max_iter, np.empty(0), none)
        if rss < R[i]:
            S[i, :k], B[i, :k], R[i], ok[i] = A, beta, rss, conv
            _xi(M, beta, XI[i])


@njit(cache=True, error_model="numpy")
def _xi(M, beta, out):
    """The backward sacrifices β_a² / M_aa of a support into ``out`` (what
    :func:`~hdlmm.core._splice_kernel._shrink` computes of it)."""
    for a in range(beta.size):
        out[a] = beta[a] * beta[a] / M[a, a]


def warm_up() -> None:
    """Compile the kernel (or load it from numba's cache) on a tiny problem, so that
    the first fit does not pay for it (``make`` runs this once after installing)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, 6))
    G, c = X.T @ X, X.T @ rng.standard_normal(12)
    d = float(np.sum(c ** 2))
    F, R = 0.5 * np.eye(6), 0.1 * X[:6].T
    inv = 1.0 / (G[0, 0] - F[0, 0])
    c = read_only(c)  # (every array the kernel gets is read-only: one type to compile)
    for Q in (matrix(G), matrix(G, h=G[:, 0], inv=1.0 / G[0, 0]),
              matrix(G, F), matrix(G, F, G[:, 0] - F[:, 0], inv),
              matrix(G, F, R=R), matrix(G, F, first_column(G, F, R), inv, R)):
        for max_exchange in (2, 3):
            splice_path(Q, c, d, 1, 4, max_exchange, 20, 1000, 3, 12.0, 6, 1.0, 2, 10)
        # a path continued from Python (hdlmm.model.sweep.PathSweep)
        *arrays, state = new_path(d, 1, 4, 3, 12.0, 6)
        carry = (np.empty(0), np.empty(0, dtype=np.int64))
        for k_to in (2, 4):
            carry = forward_sweep(Q, c, d, 1, k_to, 2, 20, 1000, 3, 12.0, 6, 0.0, 2, 10,
                                  *arrays, state, *carry)
        backward_sweep(Q, c, d, 1, int(state[0]) - 1, 0, 2, 20, 1000, *arrays)
        splice(Q, c, d, 2, np.zeros(0, dtype=np.int64), 2, 20, 1000)
        _support(Q, c, d, np.array([0, 0], dtype=np.int64), False)  # pseudo-inverse route
    for G_in in (G, read_only(G)):  # (cached whitened problems are read-only)
        profile_first(G_in, 1.0 / G[0, 0])
    is_symmetric(G)
