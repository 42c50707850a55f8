"""Variance components Ψ and σ² by profiled REML or ML, from cluster cross-products.

Model on a (small) set of fixed-effect columns: y_i = X_i β + Z_i γ_i + ε_i,
γ_i ~ N(0, Ψ), ε_i ~ N(0, σ² I). As in lme4 (Bates et al. 2015) the relative covariance
is Ψ/σ² = ΛΛᵀ with Λ lower triangular (parameters θ), and β and σ² are profiled out.
For each cluster M_i = ΛᵀZ_iᵀZ_iΛ + I (q × q) and, by Woodbury,

    XᵀV⁻¹X = XᵀX − Σ_i (ΛᵀZ_iᵀX_i)ᵀ M_i⁻¹ (ΛᵀZ_iᵀX_i)      (V = I + Z Λ Λᵀ Zᵀ)
    log |V| = Σ_i log |M_i|

so with β̂(θ) the GLS estimate and r²(θ) = yᵀV⁻¹y − β̂ᵀXᵀV⁻¹y,

    ML:    −2ℓ(θ)   = log|V| + N [1 + log(2π r² / N)]
    REML:  −2ℓ_R(θ) = log|V| + log|XᵀV⁻¹X| + (N − p)[1 + log(2π r² / (N − p))]

minimised over θ with L-BFGS-B (diagonal of Λ ≥ 0), polished by Nelder-Mead. All cluster algebra is batched
q × q linear algebra over an (n, q, q) stack; nothing loops over clusters in Python.

BLUPs: γ̂_i = Λ M_i⁻¹ Λᵀ (Z_iᵀy_i − Z_iᵀX_i β̂)  (= Ψ̂ Z_iᵀ V_i⁻¹ (y_i − X_i β̂)).

Reference: Bates, D., Mächler, M., Bolker, B. & Walker, S. (2015). Fitting linear
mixed-effects models using lme4. J. Stat. Softw. 67(1). doi:10.18637/jss.v067.i01
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import optimize

__all__ = ["VarianceComponents", "VarianceComponentsError", "fit_variance_components",
           "STRUCTURES"]

STRUCTURES = ("unstructured", "diagonal", "scalar")


class VarianceComponentsError(ValueError):
    """The variance components cannot be estimated from these data (not identifiable)."""


@dataclass
class VarianceComponents:
    """Fitted variance components and the GLS fixed effects on the given columns.

    Attributes
    ----------
    coef : ndarray (p,)          GLS fixed effects β̂(θ̂)
    cov_coef : ndarray (p, p)    σ̂² (XᵀV⁻¹X)⁻¹
    cov_re : ndarray (q, q)      Ψ̂
    scale : float                σ̂²
    criterion : float            −2 × (restricted) log-likelihood at the optimum
    method : str                 "REML" or "ML"
    theta : ndarray              optimum of the relative Cholesky factor parameters
    converged : bool
    boundary : bool              Ψ̂ singular (a variance or correlation on the boundary)
    """

    coef: np.ndarray
    cov_coef: np.ndarray
    cov_re: np.ndarray
    scale: float
    criterion: float
    method: str
    theta: np.ndarray
    lam: np.ndarray
    converged: bool
    boundary: bool

    @property
    def bse(self):
        """Standard errors of the fixed effects."""
        return np.sqrt(np.diag(self.cov_coef))

    @property
    def llf(self):
        """(Restricted) log-likelihood at the optimum."""
        return -0.5 * self.criterion


class _Profile:
    """Profiled deviance of θ from the cross-products of a ClusterStats (one block)."""

    def __init__(self, stats, method, structure):
        self.XtX = stats.XtX.sum(0)
        self.Xty = stats.Xty.sum(0)
        self.yty = float(stats.yty.sum())
        self.N = stats.n_samples
        self.ZtZ, self.ZtX, self.Zty = stats.ZtZ, stats.ZtX, stats.Zty
        self.q, self.p = stats.n_re, self.XtX.shape[0]
        self.reml = method == "REML"
        self.structure = structure
        self.tril = np.tril_indices(self.q)

    # θ ↔ Λ --------------------------------------------------------------
    def n_theta(self):
        return {"unstructured": self.q * (self.q + 1) // 2, "diagonal": self.q,
                "scalar": 1}[self.structure]

    def lam(self, theta):
        q = self.q
        if self.structure == "scalar":
            return theta[0] * np.eye(q)
        if self.structure == "diagonal":
            return np.diag(theta)
        L = np.zeros((q, q))
        L[self.tril] = theta
        return L

    def bounds(self):
        if self.structure != "unstructured":
            return [(0.0, None)] * self.n_theta()
        diag = self.tril[0] == self.tril[1]
        return [(0.0, None) if dg else (None, None) for dg in diag]

    def theta0(self):
        if self.structure != "unstructured":
            return np.ones(self.n_theta())
        return (self.tril[0] == self.tril[1]).astype(float)

    # the profiled quantities ---------------------------------------------
    def solve(self, theta):
        """GLS pieces at θ: (β̂, r², log|V|, XᵀV⁻¹X, Λ)."""
        L = self.lam(theta)
        M = np.einsum("ji,njk,kl->nil", L, self.ZtZ, L) + np.eye(self.q)
        sign, logdetM = np.linalg.slogdet(M)
        if np.any(sign <= 0):
            raise np.linalg.LinAlgError("M_i not positive definite")
        Minv = np.linalg.inv(M)  # (n, q, q): batched, cheaper than solves for small q
        LZX = np.einsum("ji,njp->nip", L, self.ZtX)  # ΛᵀZ_iᵀX_i
        LZy = np.einsum("ji,nj->ni", L, self.Zty)
        T = Minv @ LZX
        t = np.einsum("nij,nj->ni", Minv, LZy)
        A = self.XtX - LZX.reshape(-1, self.p).T @ T.reshape(-1, self.p)
        b = self.Xty - LZX.reshape(-1, self.p).T @ t.ravel()
        cyy = self.yty - LZy.ravel() @ t.ravel()
        beta = np.linalg.solve(A, b)
        r2 = max(float(cyy - beta @ b), np.finfo(float).tiny)
        return beta, r2, float(logdetM.sum()), A, L

    def deviance(self, theta):
        try:
            beta, r2, logdetV, A, _ = self.solve(theta)
        except np.linalg.LinAlgError:
            return np.inf
        if self.reml:
            dof = self.N - self.p
            sign, logdetA = np.linalg.slogdet(A)
            return logdetV + logdetA + dof * (1 + np.log(2 * np.pi * r2 / dof))
        return logdetV + self.N * (1 + np.log(2 * np.pi * r2 / self.N))


def fit_variance_components(stats, method="REML", structure="unstructured", tol=1e-10):
    """Fit Ψ, σ² and the GLS fixed effects on all columns of ``stats``.

    Parameters
    ----------
    stats : ClusterStats
        Usually restricted to a selected support (``stats.select_features``).
    method : {"REML", "ML"}
    structure : {"unstructured", "diagonal", "scalar"}
        Form of Ψ: full q × q, diagonal, or σ_γ² I.
    tol : float
        Convergence tolerance of the optimiser on the deviance.

    Returns
    -------
    VarianceComponents
    """
    method = method.upper()
    if method not in ("REML", "ML"):
        raise ValueError(f"method must be 'REML' or 'ML'; got {method!r}")
    if structure not in STRUCTURES:
        raise ValueError(f"structure must be one of {STRUCTURES}; got {structure!r}")
    _check_identifiable(stats)
    if stats.n_samples <= stats.n_features:
        raise VarianceComponentsError(
            f"{stats.n_samples} rows leave no residual degrees of freedom for "
            f"{stats.n_features} fixed effects; fewer fixed effects or more rows needed")
    prof = _Profile(stats, method, structure)
    opts = dict(method="L-BFGS-B", bounds=prof.bounds(),
                options=dict(ftol=tol, gtol=1e-8, maxiter=2000))
    best = optimize.minimize(prof.deviance, prof.theta0(), **opts)
    if np.any(np.diag(prof.lam(best.x)) < 1e-4):  # on the boundary: try a second start
        other = optimize.minimize(prof.deviance, 0.1 * prof.theta0(), **opts)
        best = other if other.fun < best.fun else best
    # The deviance is flat along correlations and L-BFGS-B's finite-difference gradient
    # stops early: polish with a simplex search started close to its optimum.
    x0 = best.x
    simplex = np.vstack([x0] + [x0 + 1e-3 * max(abs(x0[i]), 0.1) * np.eye(x0.size)[i]
                                for i in range(x0.size)])
    lo = np.array([b[0] if b[0] is not None else -np.inf for b in prof.bounds()])
    simplex = np.maximum(simplex, lo)
    polish = optimize.minimize(prof.deviance, x0, method="Nelder-Mead",
                               bounds=prof.bounds(),
                               options=dict(xatol=1e-8, fatol=tol, maxiter=4000,
                                            initial_simplex=simplex))
    if polish.fun <= best.fun:
        polish.success = polish.success or best.success
        best = polish
    return _result(prof, best, method)


def _result(prof, res, method):
    theta = res.x
    beta, r2, logdetV, A, L = prof.solve(theta)
    dof = prof.N - prof.p if method == "REML" else prof.N
    scale = r2 / dof
    cov_re = scale * (L @ L.T)
    # θ is relative to σ (dimensionless): lme4's singularity rule, a diagonal below 1e-4
    boundary = bool(np.any(np.diag(L) < 1e-4))
    if not res.success:
        warnings.warn(f"variance components: the optimiser did not converge "
                      f"({res.message}); try structure='diagonal' or a simpler Z",
                      RuntimeWarning, stacklevel=3)
    if boundary:
        warnings.warn("variance components: boundary (singular) fit — Ψ̂ is singular, "
                      "some random-effect variance or correlation is estimated at its "
                      "limit; consider dropping that random effect or "
                      "structure='diagonal'. The fit is returned.", RuntimeWarning,
                      stacklevel=3)
    return VarianceComponents(
        coef=beta, cov_coef=scale * np.linalg.inv(A), cov_re=cov_re, scale=float(scale),
        criterion=float(res.fun), method=method, theta=theta, lam=L,
        converged=bool(res.success), boundary=boundary)


def _check_identifiable(stats):
    q = stats.n_re
    if np.all(stats.n_obs <= q):
        raise VarianceComponentsError(
            f"every cluster has at most q = {q} rows, so the {q} random effects cannot be "
            f"separated from the noise; use fewer random effects (e.g. a random "
            f"intercept only) or data with larger clusters")
    ranks = np.linalg.matrix_rank(stats.ZtZ)
    if np.all(ranks < q):
        raise VarianceComponentsError(
            f"Z_iᵀZ_i is singular in every cluster (rank < q = {q}): the columns of Z are "
            f"linearly dependent within clusters; remove the redundant random effects")


def blups(stats, vc, coef=None):
    """Best linear unbiased predictions γ̂_i, shape (n, q), in ``stats.labels`` order.

    γ̂_i = Λ M_i⁻¹ Λᵀ Z_iᵀ(y_i − X_i β), with β = ``coef`` (default: the GLS β̂ of ``vc``).
    """
    beta = vc.coef if coef is None else np.asarray(coef, dtype=float)
    L = vc.lam
    M = L.T @ stats.ZtZ @ L + np.eye(stats.n_re)
    r = stats.Zty - np.einsum("nqp,p->nq", stats.ZtX, beta)  # Z_iᵀ(y_i − X_iβ)
    Lr = np.einsum("ji,nj->ni", L, r)
    return np.einsum("ij,nj->ni", L, np.linalg.solve(M, Lr[..., None])[..., 0])
