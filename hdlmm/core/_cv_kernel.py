"""The compiled cross-validation at one value of a: every fold's path and its held-out
scores in two calls, without Python work per fold.

:func:`fold_problems` computes, for every fold f, what the path kernel needs of the
training problem (total − fold, the intercept profiled out): the intercept's column h,
the inverse of its first entry, t = h[1:] / h[0], the profiled diagonal, c̃ and d̃, as
:func:`hdlmm.core.splicing.profiled_matrix` computes them. The caller makes them
read-only, so that :func:`fold_scores` builds each fold's matrix tuple
(:mod:`hdlmm.core._kernel_matrix`) from views of the same array types as the Python
route, and runs :func:`~hdlmm.core._path_kernel.splice_path` without compiling it
again. :func:`fold_scores` then scores every k of the fold's path on the fold's own
cross-products (:func:`hdlmm.model.tuning.cross_validate` documents the criteria).

The fold's matrix in low rank is G − XᵀX_f + B_fᵀB_f with B_f the fold's rows of the
weighted rotated rows B (:class:`hdlmm.core.quadratic.LowRank`), rows ``bounds[f]`` to
``bounds[f + 1]``: a slice of B's rows, which is the matrix tuple's Rt as it is.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from hdlmm.core._kernel_matrix import COLUMNS_KEPT, TINY, _diagonal, _raw_column
from hdlmm.core._path_kernel import splice_path

__all__ = ["fold_problems", "fold_scores", "MARGINAL", "LOGLIK"]

#: codes of the held-out criteria
MARGINAL, LOGLIK = 0, 1


@njit(cache=True, error_model="numpy")
def _intercept_inverse(a):
    """1 / a by the operations of :func:`hdlmm.core.splicing._inverse_pd` on a 1 × 1."""
    s = 1.0 / math.sqrt(a)
    inv_l = 1.0 / math.sqrt(a * s * s) * s
    return inv_l * inv_l


@njit(cache=True, error_model="numpy")
def fold_problems(G: np.ndarray, F: np.ndarray, B: np.ndarray, bounds: np.ndarray,
                  C: np.ndarray, D: np.ndarray, lead: int) -> tuple:
    """(H, T, diagonal, c̃, d̃, inverse) of every fold's training problem G − F[f] +
    B_fᵀB_f (B_f = B[bounds[f]:bounds[f + 1]]) with linear term C[f] and constant D[f],
    the first column profiled out
    when ``lead`` is 1 (H and T then have p and p − 1 columns; else none)."""
    K, p = F.shape[0], G.shape[0]
    m = p - lead
    H = np.zeros((K, p * lead))
    T = np.zeros((K, m * lead))
    diag = np.empty((K, m))
    ct = np.empty((K, m))
    dt = np.empty(K)
    inv = np.zeros(K)
    slot = np.full(1, -1, dtype=np.int64)
    store = np.empty((0, 0))
    for f in range(K):
        Bf = B[bounds[f]:bounds[f + 1]]
        if lead:
            _raw_column(G, F[f], Bf, 0, H[f])
            inv[f] = _intercept_inverse(H[f, 0])
            for j in range(m):
                T[f, j] = H[f, j + 1] * inv[f]
                ct[f, j] = C[f, j + 1] - T[f, j] * C[f, 0]
            dt[f] = D[f] - C[f, 0] * inv[f] * C[f, 0]
        else:
            ct[f] = C[f]
            dt[f] = D[f]
        Q = (G, F[f], H[f], T[f], lead, diag[f], Bf, slot, store)
        diag[f] = _diagonal(Q)
    return H, T, diag, ct, dt, inv


@njit(cache=True, error_model="numpy")
def _objective(G, Rt, c, d, J, beta):
    """d − 2βᵀc + βᵀ(G − Rtᵀ Rt)β over the columns J."""
    out = d
    for a in range(J.size):
        out -= 2.0 * beta[a] * c[J[a]]
    for a in range(J.size):
        for b in range(J.size):
            g = G[J[a], J[b]]
            for u in range(Rt.shape[0]):
                g -= Rt[u, J[a]] * Rt[u, J[b]]
            out += beta[a] * g * beta[b]
    return out


@njit(cache=True, error_model="numpy")
def fold_scores(G: np.ndarray, F: np.ndarray, B: np.ndarray, bounds: np.ndarray,
                H: np.ndarray, T: np.ndarray,
                diag: np.ndarray, ct: np.ndarray, dt: np.ndarray, inv: np.ndarray,
                lead: int, k_max: int, max_exchange: int, n_candidates: int,
                max_iter: int, criterion: int, C: np.ndarray, D: np.ndarray,
                n_train: np.ndarray, test_G: np.ndarray, test_B: np.ndarray,
                test_c: np.ndarray, test_d: np.ndarray, n_test: np.ndarray,
                logdet: np.ndarray) -> tuple:
    """Held-out scores (K, k_max + 1) of every fold's path k = 0..k_max (NaN beyond
    the path), and whether every search converged.

    The arrays up to ``inv`` are :func:`fold_problems`' (read-only); C, D and
    ``n_train`` the training problems' unprofiled c, d and rows; the test problem of
    fold f is (test_G[f] − B'ᵀB', test_c[f], test_d[f]), B' = test_B's rows ``bounds[f]``
    to ``bounds[f + 1]`` (none if test_B has none), on ``n_test[f]``
    rows, with log det Σ_a,f = ``logdet[f]`` (``criterion`` LOGLIK).
    """
    K, p = F.shape[0], G.shape[0]
    scores = np.full((K, k_max + 1), np.nan)
    converged = True
    low = B.shape[0] > 0
    n_kept = min(p, COLUMNS_KEPT) if low else 0
    for f in range(K):
        slot = np.full(p * low + 1, -1, dtype=np.int64)
        slot[-1] = 0
        store = np.empty((n_kept, p * low))
        Q = (G, F[f], H[f], T[f], lead, diag[f], B[bounds[f]:bounds[f + 1]], slot, store)
        test_Bf = test_B[bounds[f]:bounds[f + 1]]
        S, coef, rss, ok = splice_path(Q, ct[f], dt[f], 1, k_max, max_exchange,
                                       n_candidates, max_iter, -1, 1.0, 1, 0.0, 0, 0)
        for i in range(ok.size):
            converged = converged and ok[i]
        for k in range(rss.size + 1):
            J = np.empty(k + lead, dtype=np.int64)
            beta = np.empty(k + lead)
            train = dt[f]
            for a in range(k):
                J[a + lead] = S[k - 1, a] + lead
                beta[a + lead] = coef[k - 1, a]
            if k:
                train = rss[k - 1]
            if lead:
                acc = C[f, 0]
                for a in range(k):
                    acc -= H[f, J[a + 1]] * beta[a + 1]
                J[0], beta[0] = 0, inv[f] * acc
            heldout = _objective(test_G[f], test_Bf, test_c[f], test_d[f], J, beta)
            if criterion == MARGINAL:
                scores[f, k] = heldout / n_test[f]
                continue
            if n_train[f] <= k + lead:  # no residual df: σ̂² is not estimable
                scores[f, k] = np.inf
                continue
            floor = 1e-12 * max(D[f], TINY)
            s2 = max(max(train, floor) / n_train[f], TINY)
            scores[f, k] = 0.5 * (np.log(2 * np.pi * s2) + logdet[f] / n_test[f]
                                  + heldout / (s2 * n_test[f]))
    return scores, converged


def warm_up() -> None:
    """Compile both functions (or load them from numba's cache) on a tiny problem, with
    the read-only arrays the fits pass."""
    from hdlmm.core._kernel_matrix import read_only

    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, 6))
    G = X.T @ X
    F = np.stack([0.5 * np.eye(6), 0.25 * np.eye(6)])
    B = 0.1 * rng.standard_normal((4, 6))
    bounds = np.array([0, 2, 4])
    C, D = rng.standard_normal((2, 6)), np.array([30.0, 30.0])
    G, F, B, C, D = (read_only(x) for x in (G, F, B, C, D))
    n = read_only(np.array([6.0, 6.0]))
    for lead in (0, 1):
        problems = [read_only(x) for x in fold_problems(G, F, B, bounds, C, D, lead)]
        for criterion in (MARGINAL, LOGLIK):
            fold_scores(G, F, B, bounds, *problems, lead, 2, 2, 20, 1000, criterion, C,
                        D, n, F, B, C, D, n, n)
