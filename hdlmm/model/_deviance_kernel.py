"""The profiled deviance of a linear mixed model and its gradient in Λ, compiled: one
pass over the clusters with q × q algebra in loops (the formulas of
:meth:`hdlmm.model.profile.Profile.deviance_and_gradient`, which documents them).

A fit evaluates the deviance a few dozen times; with numpy's batched calls each
evaluation costs some twenty library calls whatever the number of clusters, which
dominated small fits (docs/decisions.md). Compiled by numba on first use and cached on
disk.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["deviance_and_gradient", "warm_up"]

TINY = np.finfo(np.float64).tiny


@njit(cache=True, error_model="numpy")
def _inverse_logdet(M, out, C, Ci):
    """``out`` = M⁻¹ of a symmetric q × q M by Cholesky (C, Ci: q × q scratch); returns
    log det M, or NaN when M is not positive definite."""
    q = M.shape[0]
    C[:] = 0.0
    Ci[:] = 0.0
    logdet = 0.0
    for j in range(q):
        acc = M[j, j]
        for t in range(j):
            acc -= C[j, t] * C[j, t]
        if not acc > 0:
            return np.nan
        C[j, j] = math.sqrt(acc)
        logdet += 2.0 * math.log(C[j, j])
        for i in range(j + 1, q):
            acc = M[i, j]
            for t in range(j):
                acc -= C[i, t] * C[j, t]
            C[i, j] = acc / C[j, j]
    for j in range(q):  # C⁻¹, lower triangular
        Ci[j, j] = 1.0 / C[j, j]
        for i in range(j + 1, q):
            acc = 0.0
            for t in range(j, i):
                acc -= C[i, t] * Ci[t, j]
            Ci[i, j] = acc / C[i, i]
    for a in range(q):  # M⁻¹ = C⁻ᵀ C⁻¹
        for b in range(a, q):
            acc = 0.0
            for t in range(b, q):
                acc += Ci[t, a] * Ci[t, b]
            out[a, b] = acc
            out[b, a] = acc
    return logdet


@njit(cache=True, error_model="numpy")
def _product(A, B, out):
    """``out`` = A B of small matrices, in loops (no allocation: the loops over the
    clusters call this a dozen times each)."""
    out[:] = 0.0
    for i in range(A.shape[0]):
        for t in range(A.shape[1]):
            a = A[i, t]
            for j in range(B.shape[1]):
                out[i, j] += a * B[t, j]
    return out


@njit(cache=True, error_model="numpy")
def deviance_and_gradient(L: np.ndarray, ZtZ: np.ndarray, ZtX: np.ndarray,
                          Zty: np.ndarray, XtX: np.ndarray, Xty: np.ndarray, yty: float,
                          nu: float, reml: bool, gradient: bool) -> tuple:
    """(deviance, ∂D/∂Λ, ok) at the relative factor Λ = ``L`` from the per-cluster
    Z_iᵀZ_i (n, q, q), Z_iᵀX_i (n, q, p), Z_iᵀy_i (n, q) and the totals XᵀX, Xᵀy,
    yᵀy; ν = N − p (REML) or N (ML). ok is False (deviance inf) where some M_i =
    ΛᵀZ_iᵀZ_iΛ + I is not positive definite; a singular XᵀV⁻¹X raises
    numpy.linalg.LinAlgError."""
    n, q, p = ZtX.shape[0], ZtX.shape[1], ZtX.shape[2]
    gL = np.zeros((q, q))
    Lt = L.T.copy()
    Minv = np.empty((n, q, q))
    P = np.empty((n, q, q))
    A = XtX.copy()
    b = Xty.copy()
    cyy = yty
    logdetV = 0.0
    # q × q and q × p scratch, reused for every cluster
    M, T1, T2, T3 = np.empty((q, q)), np.empty((q, q)), np.empty((q, q)), np.empty((q, q))
    Pz, e = np.empty(q), np.empty(q)
    PU = np.empty((n, q, p))  # P_i U_i, for Σ U_iᵀP_iU_i as one product
    for i in range(n):
        _product(Lt, _product(ZtZ[i], L, T1), M)
        for a in range(q):
            M[a, a] += 1.0
        ld = _inverse_logdet(M, Minv[i], T1, T2)
        if np.isnan(ld):
            return np.inf, gL, False
        logdetV += ld
        _product(L, _product(Minv[i], Lt, T1), P[i])
        for a in range(q):
            acc = 0.0
            for c in range(q):
                acc += P[i, a, c] * Zty[i, c]
            Pz[a] = acc
            cyy -= Zty[i, a] * Pz[a]
        _product(P[i], ZtX[i], PU[i])
        for j in range(p):
            for a in range(q):
                b[j] -= ZtX[i, a, j] * Pz[a]
    U = ZtX.reshape(n * q, p)
    A -= np.dot(U.T, PU.reshape(n * q, p))
    beta = np.linalg.solve(A, b)  # (numpy.linalg.LinAlgError if A is singular)
    logdetA = np.linalg.slogdet(A)[1]
    r2 = cyy
    for j in range(p):
        r2 -= beta[j] * b[j]
    r2 = max(r2, TINY)
    dev = logdetV + nu * (1.0 + math.log(2.0 * math.pi * r2 / nu))
    if reml:
        dev += logdetA
    if not gradient:
        return dev, gL, True
    UA = np.dot(U, np.linalg.inv(A)).reshape(n, q, p) if reml else PU  # U_i A⁻¹
    for i in range(n):
        LMinv = _product(L, Minv[i], T1)
        for a in range(q):
            acc = Zty[i, a]
            for j in range(p):
                acc -= ZtX[i, a, j] * beta[j]
            e[a] = acc
        C = T2
        for a in range(q):
            for c in range(q):
                C[a, c] = (-nu / r2) * e[a] * e[c]
        if reml:
            for a in range(q):
                for c in range(q):
                    acc = 0.0
                    for j in range(p):
                        acc += UA[i, a, j] * ZtX[i, c, j]
                    C[a, c] -= acc
        W = _product(ZtZ[i], P[i], T3)  # then I − S_i P_i
        for a in range(q):
            for c in range(q):
                W[a, c] = (1.0 if a == c else 0.0) - W[a, c]
        CL = _product(C, LMinv, M)
        for a in range(q):
            for c in range(q):
                acc = 0.0
                for t in range(q):
                    acc += ZtZ[i, a, t] * LMinv[t, c] + W[a, t] * CL[t, c]
                gL[a, c] += 2.0 * acc
    return dev, gL, True


def warm_up() -> None:
    """Compile (or load from numba's cache) on a tiny problem."""
    rng = np.random.default_rng(0)
    Zi = rng.standard_normal((3, 4, 2))
    Xi = rng.standard_normal((3, 4, 3))
    yi = rng.standard_normal((3, 4))
    ZtZ = np.einsum("nia,nib->nab", Zi, Zi)
    ZtX = np.einsum("nia,nij->naj", Zi, Xi)
    Zty = np.einsum("nia,ni->na", Zi, yi)
    XtX = np.einsum("nij,nik->jk", Xi, Xi)
    for reml in (True, False):
        deviance_and_gradient(np.eye(2), ZtZ, ZtX, Zty, XtX, Xi.reshape(-1, 3).T @ yi.ravel(),
                              float(yi.ravel() @ yi.ravel()), 9.0, reml, True)
