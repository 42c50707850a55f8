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

minimised over θ with L-BFGS-B (diagonal of Λ ≥ 0) and the analytic gradient
(:meth:`hdlmm.model.profile.Profile.deviance_and_gradient`, with the batched cluster
algebra).

BLUPs: γ̂_i = Λ M_i⁻¹ Λᵀ (Z_iᵀy_i − Z_iᵀX_i β̂)  (= Ψ̂ Z_iᵀ V_i⁻¹ (y_i − X_i β̂)).

Reference: Bates, D., Mächler, M., Bolker, B. & Walker, S. (2015). Fitting linear
mixed-effects models using lme4. J. Stat. Softw. 67(1). doi:10.18637/jss.v067.i01
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from hdlmm.core.stats import ClusterStats
from hdlmm.model.profile import Profile, lower_factor

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
    theta : ndarray              lower triangle (row by row) of Λ, the lower-triangular
                                 factor of Ψ̂/σ̂² in the units of Z (lme4's θ for an
                                 unstructured Ψ)
    lam : ndarray (q, q)         Λ
    converged : bool
    boundary : bool              Ψ̂ singular (a variance or correlation on the boundary)
    n_theta : int                free parameters of Ψ
    n_samples : int              rows N
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
    n_theta: int = 0
    n_samples: int = 0

    @property
    def bse(self) -> np.ndarray:
        """Standard errors of the fixed effects."""
        return np.sqrt(np.diag(self.cov_coef))

    @property
    def llf(self) -> float:
        """(Restricted) log-likelihood at the optimum."""
        return -0.5 * self.criterion


def fit_variance_components(stats: ClusterStats, method: str = "REML",
                            structure: str = "unstructured", tol: float = 1e-10,
                            blocks: list | None = None) -> VarianceComponents:
    """Fit Ψ, σ² and the GLS fixed effects on all columns of ``stats``.

    Parameters
    ----------
    stats : ClusterStats
        Usually restricted to a selected support (``stats.select_features``).
    method : {"REML", "ML"}
    structure : {"unstructured", "diagonal", "scalar"}
        Form of Ψ: full q × q (block-diagonal with ``blocks``), diagonal, or σ_γ² I.
    tol : float
        Convergence tolerance of the optimiser on the deviance.
    blocks : list of lists of int, optional
        Groups of columns of Z that are correlated among themselves and uncorrelated
        with the other groups (lme4's separate terms ``(1 | g) + (0 + t | g)``): Ψ is
        block-diagonal. Default: one block.

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
    _check_residual_dof(stats)
    prof = Profile(stats, method, structure, blocks)
    res = _optimise(prof, tol)
    return _result(prof, res, method)


#: a diagonal of the relative Cholesky factor below this, in the standardised basis of
#: Z, is a boundary (singular) fit: lme4's rule (its ``isSingular`` tolerance), applied
#: where it does not depend on the units of Z
BOUNDARY_TOL = 1e-4

#: the optimum is accepted as converged when the largest entry of the gradient of the
#: deviance in θ̃ is below this (L-BFGS-B may stop on a line search at the optimum,
#: where the deviance cannot decrease in floating point, without declaring success)
GRADIENT_TOL = 1e-3


#: values a vanished diagonal of Λ̃ is restarted from (standardised units, where the
#: start of every fit is 1)
BOUNDARY_RESTARTS = (0.03, 0.1, 0.3)


def _optimise(prof, tol):
    """Minimise the profiled deviance over θ̃ (the standardised basis).

    θ̃ is unconstrained: the deviance depends on Λ̃ only through Λ̃Λ̃ᵀ, which does not
    change when a column of Λ̃ changes sign, so a diagonal may cross zero instead of
    being held on the bound 0, where its derivative vanishes (with a bound, the first
    quasi-Newton step can land on θ_jj = 0 and stop there at a point that only looks
    optimal). A fit that ends with a singular Λ̃ is restarted with the vanished
    diagonals put at small interior values (``BOUNDARY_RESTARTS``, the other entries
    kept): the profiled deviance can have a local minimum or a stationary point on the
    boundary and its optimum inside (CO2 with a random intercept per plant: 545.10 at
    θ = 0, 544.19 at θ = 0.28), and a boundary is reported only if no interior start
    does better.
    """
    opts = dict(method="L-BFGS-B", jac=True,
                options=dict(ftol=tol, gtol=1e-7, maxiter=5000, maxcor=20))
    f = prof.deviance_and_gradient
    best = optimize.minimize(f, prof.theta0(), **opts)
    diag = (np.ones(1, bool) if prof.structure == "scalar" else prof.rows == prof.cols)
    small = _vanished(prof, best.x)
    if small.size:
        for value in BOUNDARY_RESTARTS:
            start = best.x.copy()
            start[np.flatnonzero(diag)[small]] = value
            other = optimize.minimize(f, start, **opts)
            if other.fun < best.fun - 1e-10:
                best = other
    return best


def _vanished(prof, theta):
    """Positions (among the diagonal entries of Λ̃) of the diagonals below
    ``BOUNDARY_TOL`` in the lower-triangular factor of Λ̃Λ̃ᵀ."""
    F = lower_factor(prof.lam(theta))
    small = np.flatnonzero(np.abs(np.diag(F)) < BOUNDARY_TOL)
    if prof.structure == "scalar":
        return np.zeros(0, np.intp) if small.size == 0 else np.zeros(1, np.intp)
    return small


def _result(prof, res, method):
    theta = res.x
    beta, r2, logdetV, A, _ = prof.solve(theta)
    L = prof.lam_original(theta)
    dof = prof.N - prof.p if method == "REML" else prof.N
    scale = r2 / dof
    cov_re = scale * (L @ L.T)
    boundary = bool(_vanished(prof, theta).size)
    grad = prof.deviance_and_gradient(theta)[1]
    converged = bool(res.success or np.max(np.abs(grad), initial=0.0) < GRADIENT_TOL)
    if not converged:
        warnings.warn(f"variance components: the optimiser did not converge "
                      f"({res.message}; largest gradient entry "
                      f"{np.max(np.abs(grad)):.2g}); the fit is returned, but check it "
                      f"with cov_structure='diagonal' or a simpler Z", RuntimeWarning,
                      stacklevel=3)
    if boundary:
        warnings.warn("variance components: boundary (singular) fit — Ψ̂ is singular, "
                      "some random-effect variance or correlation is estimated at its "
                      "limit; consider dropping that random effect or "
                      "cov_structure='diagonal'. The fit is returned.", RuntimeWarning,
                      stacklevel=3)
    free = np.tril_indices(prof.q)
    return VarianceComponents(
        coef=beta, cov_coef=scale * np.linalg.inv(A), cov_re=cov_re, scale=float(scale),
        criterion=float(res.fun), method=method, theta=L[free], lam=L,
        converged=converged, boundary=boundary, n_theta=prof.n_theta(),
        n_samples=prof.N)


def _check_identifiable(stats):
    q = stats.n_re
    if np.all(stats.n_obs <= q):
        raise VarianceComponentsError(
            f"every cluster has at most q = {q} rows, so the {q} random effects cannot be "
            f"separated from the noise; use fewer random effects (e.g. a random "
            f"intercept only) or data with larger clusters")
    # one cluster of full rank is enough: the largest clusters first, since an SVD of
    # every Z_iᵀZ_i takes 50 ms at 100,000 clusters
    largest_first = np.argsort(-stats.n_obs, kind="stable")
    for some in (largest_first[:64], largest_first[64:]):
        if some.size and np.any(np.linalg.matrix_rank(stats.ZtZ[some]) == q):
            return
    raise VarianceComponentsError(
        f"Z_iᵀZ_i is singular in every cluster (rank < q = {q}): the columns of Z are "
        f"linearly dependent within clusters; remove the redundant random effects")


def _check_residual_dof(stats):
    """Refuse a model whose fixed and random effects, as free parameters, fit the rows
    exactly: then σ² → 0 makes the likelihood unbounded and no optimum exists.

    The residual degrees of freedom of y on [X, Z_i of every cluster] are
    N − Σ rank(Z_iᵀZ_i) − rank(G∞), G∞ = XᵀX − Σ X_iᵀZ_i (Z_iᵀZ_i)⁺ Z_iᵀX_i (the
    fixed effects with the clusters' random effects profiled out). Computed only when
    the cheap bound N − n q − p ≤ 0 cannot rule it out.
    """
    N, n, q, p = stats.n_samples, stats.n_clusters, stats.n_re, stats.n_features
    if N - n * q - p > 0:
        return
    ranks = np.linalg.matrix_rank(stats.ZtZ, hermitian=True)
    P = np.linalg.pinv(stats.ZtZ, hermitian=True)
    XtX = stats.xtx_total
    G = XtX - np.einsum("nqp,nqr,nrs->ps", stats.ZtX, P, stats.ZtX)
    # rank relative to each column's own spread (a column in the span of Z leaves a
    # residual of rounding size, not an exact zero)
    d = np.sqrt(np.maximum(np.diag(XtX), np.finfo(float).tiny))
    rank = np.linalg.matrix_rank(G / np.outer(d, d), tol=1e-9, hermitian=True) if p else 0
    dof = N - int(ranks.sum()) - rank
    if dof <= 0:
        raise VarianceComponentsError(
            f"the {p} fixed effects and the random effects of the {n} clusters fit the "
            f"{N} rows exactly, so σ² is not identified (the likelihood has no "
            f"maximum); use fewer random effects or fixed effects, or more data")


def blups(stats, vc, coef=None):
    """Best linear unbiased predictions γ̂_i, shape (n, q), in ``stats.labels`` order.

    γ̂_i = Λ M_i⁻¹ Λᵀ Z_iᵀ(y_i − X_i β), with β = ``coef`` (default: the GLS β̂ of ``vc``).
    """
    beta = vc.coef if coef is None else np.asarray(coef, dtype=float)
    # Z Λ = Z_s M⁻¹ Λ for the statistics' standardised Z_s = Z M: u_i with Λ_s = M⁻¹Λ
    L = vc.lam
    Ls = stats.z_map_inv() @ L
    M = Ls.T @ stats.ZtZ @ Ls + np.eye(stats.n_re)
    r = stats.Zty - np.einsum("nqp,p->nq", stats.ZtX, beta)  # Z_s,iᵀ(y_i − X_iβ)
    Lr = np.einsum("ji,nj->ni", Ls, r)
    return np.einsum("ij,nj->ni", L, np.linalg.solve(M, Lr[..., None])[..., 0])
