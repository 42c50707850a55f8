"""FISTA for the nodewise lasso, compiled: the iterations of
:func:`hdlmm.inference.nodewise._scaled_fista` without Python work per step (one
product G V per iteration, by BLAS, and the proximal step, the restart test and the
momentum in loops; in numpy each iteration was some fifteen library calls), and the
largest eigenvalue behind its step by Lanczos (ARPACK's ``eigsh`` made a Python round
trip per product). Compiled by numba on first use and cached on disk.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["fista", "largest_ritz_value", "warm_up"]


@njit(cache=True, error_model="numpy")
def _kkt_violation(G, U, cols, n, lam):
    """Largest violation of the lasso optimality conditions, relative to λ_j: with
    grad = G U / n, grad_l = −λ_j sign(u_l) where u_l ≠ 0 and |grad_l| ≤ λ_j elsewhere
    (l ≠ j)."""
    grad = np.dot(G, U)
    worst = 0.0
    for i in range(U.shape[0]):
        for j in range(U.shape[1]):
            if i == cols[j]:
                continue
            g = grad[i, j] / n
            u = U[i, j]
            if u != 0:
                v = abs(g + lam[j] * np.sign(u))
            else:
                v = max(abs(g) - lam[j], 0.0)
            if not v / lam[j] <= worst:  # (NaN: no convergence)
                worst = v / lam[j] if v == v else np.inf
    return worst


@njit(cache=True, error_model="numpy")
def fista(G: np.ndarray, U: np.ndarray, cols: np.ndarray, n: float, lam: np.ndarray,
          L: float, max_iter: int, tol: float) -> tuple:
    """FISTA with adaptive restart (O'Donoghue & Candès 2015) on the J problems
    min_u (1/2n) u_jᵀ G u_j + λ_j Σ_{l ≠ j} |u_jl| at once, u_jj fixed at 1, from the
    columns of ``U`` (p × J), with step 1/L; stops when the optimality conditions hold
    to ``tol`` · λ_j (checked every 10 iterations). Returns (U, converged)."""
    p, J = U.shape
    U = U.copy()
    V = U.copy()
    new = np.empty((p, J))
    t = 1.0
    for it in range(max_iter):
        GV = np.dot(G, V)
        uphill = 0.0  # Σ (U_new − U)(U_new − V): negative when the momentum points uphill
        for i in range(p):
            for j in range(J):
                w = V[i, j] - (GV[i, j] / n) / L
                x = np.sign(w) * max(abs(w) - lam[j] / L, 0.0)
                if i == cols[j]:
                    x = 1.0
                new[i, j] = x
                uphill += (x - U[i, j]) * (x - V[i, j])
        if uphill < 0:
            t = 1.0
        t_new = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        for i in range(p):
            for j in range(J):
                step = new[i, j] - U[i, j]
                V[i, j] = new[i, j] + ((t - 1.0) / t_new) * step
                U[i, j] = new[i, j]
        t = t_new
        if it % 10 == 9 and _kkt_violation(G, U, cols, n, lam) <= tol:
            return U, True
    return U, False


@njit(cache=True, error_model="numpy")
def largest_ritz_value(G: np.ndarray, v0: np.ndarray, tol: float, max_steps: int) -> float:
    """The largest eigenvalue of a symmetric G by Lanczos from ``v0`` (FISTA's step):
    the top Ritz value θ of the tridiagonal T_j once its residual β_j |s_j| ≤ tol · |θ|
    (ARPACK's test), or exactly when the Krylov space is invariant; after ``max_steps``
    without that, θ plus its residual. Every new vector is orthogonalised twice
    against all the earlier ones, so T_j stays the projection of G."""
    p = G.shape[0]
    m = min(max_steps, p)
    V = np.empty((m + 1, p))  # the Lanczos vectors, as rows (each written before read)
    alpha, beta = np.zeros(m), np.zeros(m)
    V[0] = v0 / np.linalg.norm(v0)
    theta = 0.0
    for j in range(m):
        w = np.dot(G, V[j])
        for _ in range(2):  # full reorthogonalisation, twice (Gram-Schmidt)
            for i in range(j + 1):
                h = np.dot(w, V[i])
                for e in range(p):
                    w[e] -= h * V[i, e]
                if i == j:
                    alpha[j] += h
        b = np.linalg.norm(w)
        beta[j] = b
        if j < m - 1 and b > 1e-14 * abs(alpha[j]) and (j < 7 or j % 4 != 3):
            V[j + 1] = w / b  # (the Ritz values tested at step 8, then every fourth)
            continue
        T = np.zeros((j + 1, j + 1))
        for i in range(j + 1):
            T[i, i] = alpha[i]
            if i < j:
                T[i, i + 1] = T[i + 1, i] = beta[i]
        values, vectors = np.linalg.eigh(T)
        theta = values[j]
        residual = b * abs(vectors[j, j])
        if residual <= tol * abs(theta) or b <= 1e-14 * abs(theta):
            return theta
        if j == m - 1:
            return theta + residual
        V[j + 1] = w / b
    return theta


def warm_up() -> None:
    """Compile (or load from numba's cache) on a tiny problem."""
    X = np.random.default_rng(0).standard_normal((10, 4))
    U = np.zeros((4, 2))
    U[[0, 2], [0, 1]] = 1.0
    G = X.T @ X
    G.flags.writeable = False  # (the type the fits pass: read-only, as cached problems)
    fista(G, U, np.array([0, 2]), 10.0, np.array([0.1, 0.1]), 50.0, 20, 1e-4)
    largest_ritz_value(G, np.ones(4), 1e-4, 20)
