"""The generalized linear mixed model on a given support, by the Laplace approximation
(lme4's ``glmer`` with nAGQ = 1).

Model: y_j | γ ~ family(μ_j), g(μ_j) = x_jᵀβ + z_jᵀγ_i + o_j for row j of cluster i,
γ_i = Λ u_i with u_i ~ N(0, I) (Ψ = ΛΛᵀ, Λ lower triangular, θ its free entries), g the
canonical link (:mod:`hdlmm.model.families`). For given (β, θ) the conditional modes û_i
maximise log p(y_i | u_i) − ½‖u_i‖²; they are found by Newton's method (penalised
iteratively reweighted least squares, PIRLS), batched over clusters, with
H_i = ΛᵀZ_iᵀW_iZ_iΛ + I (W = Var(y | û)). The Laplace approximation of −2 log L is

    D(β, θ) = Σ_i [ −2 log p(y_i | û_i) + ‖û_i‖² + log |H_i| ]        (Bates et al. 2015)

minimised over (β, θ) jointly, as glmer's second stage does: L-BFGS-B with the
diagonal of Λ ≥ 0, the gradient in β exact (:meth:`LaplaceObjective.beta_gradient`)
and in θ by central differences (PIRLS converges to rounding, so D is smooth to about
1e-12 relative). The start is glmer's first stage: θ = 1 with
β from the fit without random effects. The standard errors are those of glmer: the
inverse of half the Hessian of D in (θ, β), restricted to β; the Hessian by central
differences (of D in θ, of the exact β-gradient in the rest).
X is standardised inside (means and SDs, the intercept first), so that neither the
optimiser's steps nor its tolerances depend on the units of a column.

References: Bates, D., Mächler, M., Bolker, B. & Walker, S. (2015). J. Stat. Softw. 67(1).
Breslow, N. E. & Clayton, D. G. (1993). JASA 88, 9-25.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize

from hdlmm.model._pirls_kernel import FAMILY_CODES, pirls
from hdlmm.model.families import Family

__all__ = ["GLMMFit", "fit_laplace", "LaplaceObjective", "conditional_modes"]


@dataclass
class GLMMFit:
    """A Laplace fit: fixed effects ``coef`` (intercept first) and ``cov_coef``, θ and
    Λ, Ψ = ΛΛᵀ (``cov_re``), the conditional modes of the random effects
    ``random_effects`` (n, q) = Λ û_i, the log-likelihood (Laplace) ``loglik``,
    ``converged``, and ``mode_cov`` (n, q, q) = Λ H_i⁻¹ Λᵀ, the covariance of γ_i given
    y_i in the Laplace approximation (lme4's ``condVar``)."""

    coef: np.ndarray
    cov_coef: np.ndarray
    theta: np.ndarray
    lam: np.ndarray
    cov_re: np.ndarray
    random_effects: np.ndarray
    loglik: float
    converged: bool
    mode_cov: np.ndarray | None = None

    @property
    def bse(self) -> np.ndarray:
        return np.sqrt(np.diag(self.cov_coef))


class LaplaceObjective:
    """D(β, θ) of rows grouped in clusters (see the module docstring).

    Parameters
    ----------
    X : ndarray (N, p)   fixed-effect columns, the intercept's included
    y : ndarray (N,)     counts (successes, or events)
    Z : ndarray (N, q)
    cluster : ndarray of int (N,)   cluster index of each row, 0..n − 1
    family : Family
    trials : ndarray (N,), optional  binomial trials (default 1)
    offset : ndarray (N,), optional
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, Z: np.ndarray, cluster: np.ndarray,
                 family: Family, trials: ArrayLike | None = None,
                 offset: ArrayLike | None = None) -> None:
        order = np.argsort(cluster, kind="stable")
        self.X, self.y, self.Z = X[order], y[order], Z[order]
        self.cluster = cluster[order]
        self.trials = np.ones(len(y)) if trials is None else np.asarray(trials, float)[order]
        self.offset = np.zeros(len(y)) if offset is None else np.asarray(offset, float)[order]
        self.order = order
        self.starts = np.r_[0, np.flatnonzero(np.diff(self.cluster)) + 1]
        self.n, self.q, self.p = self.starts.size, Z.shape[1], X.shape[1]
        self.family = family
        self.rows, self.cols = np.tril_indices(self.q)
        self._u = np.zeros((self.n, self.q))  # warm start of the conditional modes
        self._const = np.add.reduceat(family.log_const(self.y, self.trials), self.starts)

    # θ ↔ Λ ---------------------------------------------------------------
    def lam(self, theta: np.ndarray) -> np.ndarray:
        L = np.zeros((self.q, self.q))
        L[self.rows, self.cols] = theta
        return L

    def theta0(self) -> np.ndarray:
        return (self.rows == self.cols).astype(float)

    def theta_bounds(self) -> list:
        return [(0.0, None) if r == c else (None, None) for r, c in zip(self.rows, self.cols)]

    # the conditional modes -------------------------------------------------
    def _cluster_sum(self, values):
        return np.add.reduceat(values, self.starts, axis=0)

    def modes(self, beta: np.ndarray, theta: np.ndarray, tol: float = 1e-10,
              max_iter: int = 100) -> tuple:
        """(û (n, q), D(β, θ), H (n, q, q)): PIRLS from the last modes."""
        ZL = self.Z @ self.lam(theta)
        fixed = (self.X @ beta + self.offset)[None]
        u, obj, H = conditional_modes(fixed, ZL, self.starts, self.y, self.trials,
                                      self.family, self._u[None], tol, max_iter, self._const)
        self._u = u[0]
        logdet = np.linalg.slogdet(H[0])[1]
        return u[0], float(np.sum(obj[0]) + np.sum(logdet)), H[0]

    def beta_gradient(self, beta: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """∂D/∂β at (β, θ), exactly. With the modes û optimal, the penalised part gives
        −2 Xᵀ(y − μ) (envelope theorem); log|H_i| moves with η_j through W_j:
        d log|H_i| = Σ_j W'_j h_j dη_j with h_j = (ZΛ)_j H_i⁻¹ (ZΛ)_jᵀ, and
        dη_j/dβ = x_j − (ZΛ)_j H_i⁻¹ R_i, R_i = Σ_j (ZΛ)_jᵀ W_j x_j (the modes' response
        to β: dû_i/dβ = −H_i⁻¹R_i)."""
        u, _, H = self.modes(beta, theta)
        ZL = self.Z @ self.lam(theta)
        eta = self.X @ beta + self.offset + np.einsum("nq,nq->n", ZL, u[self.cluster])
        f = self.family
        mu, w = f.mean(eta, self.trials), f.variance(eta, self.trials)
        dw = f.variance_derivative(eta, self.trials)
        Hinv = np.linalg.inv(H)  # (n, q, q), small q
        HZ = np.einsum("nab,nb->na", Hinv[self.cluster], ZL)  # H_i⁻¹ (ZΛ)_jᵀ per row
        c = dw * np.einsum("na,na->n", ZL, HZ)  # W'_j h_j
        R = self._cluster_sum((w[:, None] * ZL)[:, :, None] * self.X[:, None, :])  # (n,q,p)
        # Σ_j c_j (x_j − (ZΛ)_j H_i⁻¹ R_i) = Xᵀc − Σ_i (Σ_j c_j (ZΛ)_j H_i⁻¹) R_i
        v = self._cluster_sum(c[:, None] * HZ)  # (n, q): Σ_j c_j H_i⁻¹ (ZΛ)_jᵀ
        return -2.0 * self.X.T @ (self.y - mu) + self.X.T @ c - np.einsum("na,nap->p", v, R)

    def deviance(self, phi: np.ndarray) -> float:
        """D at φ = (θ, β) (inf where PIRLS fails: a trial point far out)."""
        k = self.rows.size
        try:
            dev = self.modes(phi[k:], phi[:k])[1]
        except np.linalg.LinAlgError:
            dev = np.inf
        if not np.isfinite(dev):
            self._u = np.zeros_like(self._u)  # do not warm-start from there
            return 1e300
        return dev


def conditional_modes(fixed: np.ndarray, ZL: np.ndarray, starts: np.ndarray, y: np.ndarray,
                      trials: np.ndarray, family: Family, u0: np.ndarray | None = None,
                      tol: float = 1e-10, max_iter: int = 100,
                      const: np.ndarray | None = None) -> tuple:
    """The conditional modes û of the random effects for m fixed parts of η at once.

    PIRLS: Newton's method on −2 log p(y_i | u_i) + ‖u_i‖² (convex for the canonical
    links), for each of the m fixed parts and each cluster, every step halved until it
    does not raise its cluster's objective, until the step is below ``tol``
    (compiled: :mod:`hdlmm.model._pirls_kernel`).

    Parameters
    ----------
    fixed : ndarray (m, N)
        Fixed part of η of each row (Xβ + offset), for m values of β; rows sorted by
        cluster.
    ZL : ndarray (N, q)
        The random-effect design times Λ.
    starts : ndarray of int (n,)
        First row of each cluster.
    y, trials : ndarray (N,)
    family : Family
    u0 : ndarray (m, n, q), optional
        Start (default 0).
    const : ndarray (n,), optional
        Σ_j log-normalising constant of each cluster (``family.log_const`` summed), if
        known.

    Returns
    -------
    u : ndarray (m, n, q)
    objective : ndarray (m, n)
        −2 log p(y_i | û_i) + ‖û_i‖² of each cluster (normalising constants included).
    H : ndarray (m, n, q, q)
        ΛᵀZ_iᵀW_iZ_iΛ + I at û.
    """
    m, n, q = fixed.shape[0], starts.size, ZL.shape[1]
    u = np.zeros((m, n, q)) if u0 is None else np.array(u0, dtype=float, order="C")
    y, trials = np.ascontiguousarray(y, dtype=float), np.ascontiguousarray(trials, dtype=float)
    obj, H = pirls(FAMILY_CODES[family.name], np.ascontiguousarray(fixed, dtype=float),
                   np.ascontiguousarray(ZL, dtype=float), y, trials,
                   np.r_[starts, y.size].astype(np.int64), u, tol, max_iter)
    if const is None:
        const = np.add.reduceat(family.log_const(y, trials), starts)
    return u, obj - 2.0 * const, H


def _glm_start(obj, max_iter=50):
    """β of the fit without random effects (IRLS from R's glm start, μ = (m y + ½)/(m + 1)
    or y + 0.1), glmer's start for β."""
    f, m = obj.family, obj.trials
    if f.name == "binomial":
        p0 = (obj.y + 0.5) / (m + 1.0)
        eta = np.log(p0 / (1.0 - p0))
    else:
        eta = np.log(obj.y + 0.1)
    beta = np.zeros(obj.p)
    for _ in range(max_iter):
        mu, w = f.mean(eta, m), np.maximum(f.variance(eta, m), 1e-10)
        z = eta - obj.offset + (obj.y - mu) / w
        new = np.linalg.lstsq(obj.X * np.sqrt(w)[:, None], z * np.sqrt(w), rcond=None)[0]
        eta = obj.X @ new + obj.offset
        if np.max(np.abs(new - beta)) < 1e-10:
            return new
        beta = new
    return beta


def _start_from(obj, start, shift, scale, one, default):
    """φ = (θ, β_s) from (β, Ψ) in the user's units (the default where Ψ is singular)."""
    beta, psi = start
    beta_s = np.asarray(beta, dtype=float) * scale
    if one.size:
        beta_s[one[0]] = beta[one[0]] + np.dot(beta, shift) - beta[one[0]] * shift[one[0]]
    try:
        L = np.linalg.cholesky(np.atleast_2d(psi) + 1e-10 * np.eye(obj.q))
    except np.linalg.LinAlgError:
        return default
    theta = L[obj.rows, obj.cols]
    phi = np.r_[theta, beta_s]
    return phi if np.isfinite(obj.deviance(phi)) else default


def _gradient(fun, x, h):
    g = np.empty_like(x)
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = h[j]
        g[j] = (fun(x + e) - fun(x - e)) / (2 * h[j])
    return g


def _hessian(fun, x, h):
    """Central-difference Hessian of ``fun`` at ``x`` (steps ``h``)."""
    k = x.size
    H = np.empty((k, k))
    f0 = fun(x)
    for i in range(k):
        ei = np.zeros(k)
        ei[i] = h[i]
        H[i, i] = (fun(x + ei) - 2 * f0 + fun(x - ei)) / h[i] ** 2
        for j in range(i):
            ej = np.zeros(k)
            ej[j] = h[j]
            H[i, j] = H[j, i] = (fun(x + ei + ej) - fun(x + ei - ej) - fun(x - ei + ej)
                                 + fun(x - ei - ej)) / (4 * h[i] * h[j])
    return H


def _hessian_from_gradient(fun, grad_beta, x, h, k):
    """Hessian of D in φ = (θ, β) at ``x``: the θθ block by central differences of D,
    the rows of β by central differences of the exact β-gradient (2 evaluations per
    coordinate instead of 4 per pair), symmetrised."""
    n = x.size
    H = np.empty((n, n))
    H[:k, :k] = _hessian(lambda t: fun(np.r_[t, x[k:]]), x[:k], h[:k])
    for i in range(n):
        e = np.zeros(n)
        e[i] = h[i]
        H[i, k:] = (grad_beta(x + e) - grad_beta(x - e)) / (2 * h[i])
    H[k:, :k] = H[:k, k:].T
    return 0.5 * (H + H.T)


def fit_laplace(X: np.ndarray, y: np.ndarray, Z: np.ndarray, cluster: np.ndarray,
                family: Family, trials: ArrayLike | None = None,
                offset: ArrayLike | None = None, start: tuple | None = None) -> GLMMFit:
    """The Laplace fit of the GLMM with fixed-effect columns X (intercept first, a
    column of ones) and random-effect design Z, clusters ``cluster`` (0..n − 1).
    ``start``: (β, Ψ) to start from (e.g. the PQL fit), in the units of X; default
    glmer's (the fit without random effects, θ = 1).

    Returns
    -------
    GLMMFit, in the units of X (and of Z).
    """
    shift = X.mean(axis=0)
    scale = X.std(axis=0)
    one = np.flatnonzero(np.all(X == 1.0, axis=0))
    constant = scale == 0
    shift[constant], scale[constant] = 0.0, 1.0
    if one.size:  # centring moves into the intercept
        shift[one], scale[one] = 0.0, 1.0
    else:
        shift[:] = 0.0
    Xs = (X - shift) / scale
    obj = LaplaceObjective(Xs, y, Z, cluster, family, trials, offset)
    k = obj.rows.size
    phi0 = np.r_[obj.theta0(), _glm_start(obj)]
    if start is not None:
        phi0 = _start_from(obj, start, shift, scale, one, phi0)
    bounds = obj.theta_bounds() + [(None, None)] * obj.p

    def fun(phi):
        return obj.deviance(phi)

    def jac(phi):  # θ by central differences, β exactly
        h = 1e-5 * np.maximum(1.0, np.abs(phi[:k]))
        g_theta = _gradient(lambda t: fun(np.r_[t, phi[k:]]), phi[:k], h)
        try:
            g_beta = obj.beta_gradient(phi[k:], phi[:k])
        except np.linalg.LinAlgError:
            return _gradient(fun, phi, 1e-5 * np.maximum(1.0, np.abs(phi)))
        return np.r_[g_theta, g_beta]

    res = optimize.minimize(fun, phi0, jac=jac, method="L-BFGS-B", bounds=bounds,
                            options=dict(maxiter=2000, ftol=1e-15, gtol=1e-9))
    phi = res.x
    u, dev, H_modes = obj.modes(phi[k:], phi[:k])
    H = _hessian_from_gradient(fun, lambda f: obj.beta_gradient(f[k:], f[:k]), phi,
                               1e-4 * np.maximum(1.0, np.abs(phi)), k)
    cov_s = 2.0 * np.linalg.pinv(H)[k:, k:]
    # back to the units of X: β = A β_s with β_j = β_s,j / c_j, β₀ = β_s,0 − Σ β_j s_j
    A = np.diag(1.0 / scale)
    if one.size:
        A[one[0], :] -= shift / scale
        A[one[0], one[0]] = 1.0
    beta = A @ phi[k:]
    L = obj.lam(phi[:k])
    modes = np.empty_like(u)
    modes[:] = u @ L.T
    return GLMMFit(coef=beta, cov_coef=A @ cov_s @ A.T, theta=phi[:k], lam=L,
                   cov_re=L @ L.T, random_effects=modes, loglik=-0.5 * dev,
                   converged=bool(res.success),
                   mode_cov=np.einsum("ab,nbc,dc->nad", L, np.linalg.inv(H_modes), L))
