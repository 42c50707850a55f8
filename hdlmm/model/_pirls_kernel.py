"""The conditional modes of a GLMM's random effects, compiled (numba, cached).

:func:`pirls` is :func:`hdlmm.model.glmm.conditional_modes` cluster by cluster: for each
of m fixed parts of η and each cluster, Newton's method on the penalised log-likelihood
−2 log p(y_i | u) + ‖u‖² (without its normalising constant), each step halved until it
does not raise the objective, stopping when the step is below ``tol``. A cluster's rows
are read in place (no N × m temporaries), which makes the Laplace fit and the held-out
deviance of large data sets several times faster than the same steps in numpy
(docs/decisions.md). Families by code: 0 binomial (logit), 1 Poisson (log).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from hdlmm.model.families import MAX_ETA

__all__ = ["pirls", "FAMILY_CODES", "warm_up"]

FAMILY_CODES = {"binomial": 0, "poisson": 1}


@njit(cache=True, inline="always")
def _moments(code, y, eta, m):
    """(log p(y | η) without its constant, y − μ, W) of one row."""
    if code == 0:
        e = np.exp(-abs(eta))
        softplus = (eta if eta > 0.0 else 0.0) + np.log1p(e)  # log(1 + e^η)
        p = 1.0 / (1.0 + e) if eta >= 0.0 else e / (1.0 + e)
        return y * eta - m * softplus, y - m * p, m * p * (1.0 - p)
    mu = np.exp(min(eta, MAX_ETA))
    return y * eta - mu, y - mu, mu


@njit(cache=True)
def _evaluate(code, fixed, ZL, y, m, lo, hi, u, grad, H):
    """The objective at u of one cluster's rows lo..hi (returned), with its Newton
    gradient and Hessian written into ``grad`` and ``H``: one pass over the rows."""
    q = u.size
    obj = 0.0
    for a in range(q):
        grad[a] = -u[a]
        obj += u[a] * u[a]
        for b in range(q):
            H[a, b] = 1.0 if a == b else 0.0
    ll = 0.0
    for j in range(lo, hi):
        eta = fixed[j]
        for a in range(q):
            eta += ZL[j, a] * u[a]
        lj, resid, w = _moments(code, y[j], eta, m[j])
        ll += lj
        for a in range(q):
            grad[a] += ZL[j, a] * resid
            for b in range(a + 1):
                H[a, b] += w * ZL[j, a] * ZL[j, b]
    for a in range(q):
        for b in range(a):
            H[b, a] = H[a, b]
    return obj - 2.0 * ll


@njit(cache=True)
def _solve_spd(H, g, out):
    """out = H⁻¹g by Cholesky (H symmetric positive definite, small)."""
    q = g.size
    L = np.zeros((q, q))
    for a in range(q):
        for b in range(a + 1):
            s = H[a, b]
            for c in range(b):
                s -= L[a, c] * L[b, c]
            L[a, b] = np.sqrt(s) if a == b else s / L[b, b]
    for a in range(q):  # forward: L v = g
        s = g[a]
        for c in range(a):
            s -= L[a, c] * out[c]
        out[a] = s / L[a, a]
    for a in range(q - 1, -1, -1):  # back: Lᵀ x = v
        s = out[a]
        for c in range(a + 1, q):
            s -= L[c, a] * out[c]
        out[a] = s / L[a, a]


@njit(cache=True)
def pirls(code: int, fixed: np.ndarray, ZL: np.ndarray, y: np.ndarray, m: np.ndarray,
          starts: np.ndarray, u: np.ndarray, tol: float, max_iter: int) -> tuple:
    """Conditional modes in place of ``u`` (m_fixed, n, q); returns (objective
    (m_fixed, n) without the constants, H (m_fixed, n, q, q)). ``starts``: first row of
    each cluster and N at the end; rows sorted by cluster."""
    n_fixed, n, q = u.shape
    obj = np.empty((n_fixed, n))
    Hs = np.empty((n_fixed, n, q, q))
    grad, step, new = np.empty(q), np.empty(q), np.empty(q)
    H, new_grad, new_H = np.empty((q, q)), np.empty(q), np.empty((q, q))
    for r in range(n_fixed):
        f = fixed[r]
        for i in range(n):
            lo, hi = starts[i], starts[i + 1]
            ui = u[r, i]
            cur = _evaluate(code, f, ZL, y, m, lo, hi, ui, grad, H)
            for _ in range(max_iter):
                _solve_spd(H, grad, step)
                t = 1.0
                for a in range(q):
                    new[a] = ui[a] + step[a]
                val = _evaluate(code, f, ZL, y, m, lo, hi, new, new_grad, new_H)
                while not (val <= cur + 1e-12 * abs(cur)) and t > 1e-8:
                    t /= 2.0
                    for a in range(q):
                        new[a] = ui[a] + t * step[a]
                    val = _evaluate(code, f, ZL, y, m, lo, hi, new, new_grad, new_H)
                ui[:] = new
                grad[:] = new_grad
                H[:, :] = new_H
                cur = val
                if np.max(np.abs(step)) < tol:
                    break
            obj[r, i] = cur
            Hs[r, i] = H
    return obj, Hs


def warm_up() -> None:
    """Compile the kernel (or load it from numba's cache) on a tiny problem."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 6).astype(float)
    ZL = np.ones((6, 1))
    for code in FAMILY_CODES.values():
        pirls(code, np.zeros((1, 6)), ZL, y, np.ones(6), np.array([0, 3, 6]),
              np.zeros((1, 2, 1)), 1e-10, 50)
