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
(:meth:`_Profile.deviance_and_gradient`). All cluster algebra is batched
q × q linear algebra over an (n, q, q) stack; nothing loops over clusters in Python.
Products of every M_i with the one Λ, and sums over clusters of products, are written
as single matrix products (:func:`_congruence`, :func:`_left`, :func:`_sum_of_products`):
a broadcast matmul loops over the clusters (measured at n = 100,000, q = 2, 6 columns:
47 ms per deviance and gradient instead of 71).

BLUPs: γ̂_i = Λ M_i⁻¹ Λᵀ (Z_iᵀy_i − Z_iᵀX_i β̂)  (= Ψ̂ Z_iᵀ V_i⁻¹ (y_i − X_i β̂)).

Reference: Bates, D., Mächler, M., Bolker, B. & Walker, S. (2015). Fitting linear
mixed-effects models using lme4. J. Stat. Softw. 67(1). doi:10.18637/jss.v067.i01
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from types import SimpleNamespace

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
    def bse(self):
        """Standard errors of the fixed effects."""
        return np.sqrt(np.diag(self.cov_coef))

    @property
    def llf(self):
        """(Restricted) log-likelihood at the optimum."""
        return -0.5 * self.criterion


class _Profile:
    """Profiled deviance of θ from the cross-products of a ClusterStats (one block).

    The random-effect design is first expressed in a standardised basis Z̃ = Z T (T from
    the pooled ZᵀZ / N, see :func:`_preconditioner`), in which θ is optimised: with a
    slope on an uncentred covariate (age 8-14, time 0-21) the intercept and slope of Z
    are nearly collinear and θ in the raw basis is badly scaled, which made the
    optimiser stop short of lme4's optimum. The model is the same (ZΛΛᵀZᵀ = Z̃Λ̃Λ̃ᵀZ̃ᵀ
    with Λ = TΛ̃), so the optimum is where it was, in any units of Z.
    """

    def __init__(self, stats, method, structure, blocks=None):
        self.XtX = stats.XtX.sum(0)
        self.Xty = stats.Xty.sum(0)
        self.yty = float(stats.yty.sum())
        self.N = stats.n_samples
        self.q, self.p = stats.n_re, self.XtX.shape[0]
        self.reml = method == "REML"
        self.structure = structure
        self.blocks = _check_blocks(blocks, self.q, structure)
        # the statistics hold Z_s = Z M (standardised, :meth:`ClusterStats.z_map`), in a
        # form this structure allows; Z̃ = Z_s T_s = Z T with T = M T_s
        stats = _z_standard_for(stats, structure, self.blocks)
        T_s = _preconditioner(stats.ZtZ.sum(0) / self.N, structure, self.blocks)
        self.T = stats.z_map() @ T_s
        self.ZtZ = _congruence(stats.ZtZ, T_s)  # T_sᵀ Z_s,iᵀZ_s,i T_s
        self.ZtX = np.einsum("ab,nbp->nap", T_s.T, stats.ZtX) if self.q else stats.ZtX
        self.Zty = stats.Zty @ T_s
        self.U = self.ZtX.reshape(-1, self.p)  # the Z̃_iᵀX_i stacked, (n q, p)
        self.rows, self.cols = self._free_entries()

    # θ ↔ Λ --------------------------------------------------------------
    def _free_entries(self):
        """Rows and columns of the free entries of Λ̃ (lower triangle of each block)."""
        if self.structure != "unstructured":
            return np.arange(self.q), np.arange(self.q)
        rows, cols = [], []
        for idx in self.blocks:
            r, c = np.tril_indices(idx.size)
            rows.append(idx[r])
            cols.append(idx[c])
        return np.concatenate(rows), np.concatenate(cols)

    def n_theta(self):
        return 1 if self.structure == "scalar" else self.rows.size

    def lam(self, theta):
        """Λ̃ (in the standardised basis) from θ."""
        if self.structure == "scalar":
            return theta[0] * np.eye(self.q)
        L = np.zeros((self.q, self.q))
        L[self.rows, self.cols] = theta
        return L

    def theta0(self):
        """lme4's start: Λ̃ = I (here in the standardised basis)."""
        if self.structure == "scalar":
            return np.ones(1)
        return (self.rows == self.cols).astype(float)

    def lam_original(self, theta):
        """Λ in the units of Z, lower triangular with a non-negative diagonal."""
        return _lower_factor(self.T @ self.lam(theta))

    # the profiled quantities ---------------------------------------------
    def solve(self, theta):
        """GLS pieces at θ: (β̂, r², log|V|, XᵀV⁻¹X, Λ)."""
        st = self._state(theta)
        return st.beta, st.r2, st.logdetV, st.A, st.L

    def _state(self, theta):
        L = self.lam(theta)
        M = _congruence(self.ZtZ, L) + np.eye(self.q)  # ΛᵀZ_iᵀZ_iΛ + I
        Minv, logdetM = _inv_logdet(M)  # (n, q, q): cheaper than solves for small q
        P = _congruence(Minv, L.T)  # P_i = Λ M_i⁻¹ Λᵀ
        Pz = np.einsum("nab,nb->na", P, self.Zty)  # P_i Z_iᵀy_i
        A = self.XtX - self.U.T @ (P @ self.ZtX).reshape(-1, self.p)
        b = self.Xty - self.U.T @ Pz.ravel()
        cyy = self.yty - float(np.sum(self.Zty * Pz))
        beta = np.linalg.solve(A, b)
        r2 = max(float(cyy - beta @ b), np.finfo(float).tiny)
        return SimpleNamespace(L=L, Minv=Minv, P=P, A=A, beta=beta, r2=r2,
                               logdetV=float(logdetM.sum()))

    def deviance(self, theta):
        """−2 × the profiled (restricted) log-likelihood at θ (inf where undefined)."""
        return self.deviance_and_gradient(theta, gradient=False)[0]

    def deviance_and_gradient(self, theta, gradient=True):
        """The profiled deviance and its analytic gradient in θ.

        With P_i = Λ M_i⁻¹ Λᵀ (so V_i⁻¹ = I − Z_i P_i Z_iᵀ), every θ-dependent piece is
        linear in the P_i: dr² = −Σ e_iᵀ dP_i e_i with e_i = Z_iᵀ(y_i − X_i β̂) (β̂ is
        stationary), d log|XᵀV⁻¹X| = −Σ tr(U_i A⁻¹ U_iᵀ dP_i) with U_i = Z_iᵀX_i, and
        d log|V| = 2 Σ tr(M_i⁻¹ Λᵀ S_i dΛ) with S_i = Z_iᵀZ_i. From
        dP_i = W_iᵀ dΛ K_i + K_iᵀ dΛᵀ W_i (K_i = M_i⁻¹Λᵀ, W_i = I − S_i P_i), the
        gradient in Λ is

            ∂D/∂Λ = 2 Σ_i (S_i + W_i C_i) Λ M_i⁻¹,
            C_i = −(ν / r²) e_i e_iᵀ − [REML] U_i A⁻¹ U_iᵀ,   ν = N − p (REML) or N (ML),

        then restricted to the free entries of Λ (lower triangle, diagonal or trace).
        """
        try:
            st = self._state(theta)
        except np.linalg.LinAlgError:
            return np.inf, np.zeros(self.n_theta())
        nu = self.N - self.p if self.reml else self.N
        dev = st.logdetV + nu * (1 + np.log(2 * np.pi * st.r2 / nu))
        if self.reml:
            dev += np.linalg.slogdet(st.A)[1]
        if not gradient:
            return dev, None
        LMinv = _left(st.L, st.Minv)  # Λ M_i⁻¹, (n, q, q)
        e = self.Zty - (self.U @ st.beta).reshape(-1, self.q)
        C = (-nu / st.r2) * (e[:, :, None] * e[:, None, :])
        if self.reml:
            UA = (self.U @ np.linalg.inv(st.A)).reshape(self.ZtX.shape)
            C -= UA @ np.swapaxes(self.ZtX, 1, 2)
        W = np.eye(self.q) - self.ZtZ @ st.P
        gL = 2 * (_sum_of_products(self.ZtZ, LMinv) + _sum_of_products(W, C @ LMinv))
        return dev, self._chain(gL)

    def _chain(self, gL):
        """Gradient in θ from the gradient in Λ̃."""
        if self.structure == "scalar":
            return np.array([np.trace(gL)])
        return gL[self.rows, self.cols]


def _check_blocks(blocks, q, structure):
    """The blocks of Ψ (lists of Z columns, uncorrelated with each other) as arrays."""
    if blocks is None:
        return [np.arange(q)]
    blocks = [np.asarray(b, dtype=np.intp) for b in blocks]
    flat = np.sort(np.concatenate(blocks)) if blocks else np.zeros(0, np.intp)
    if not np.array_equal(flat, np.arange(q)):
        raise ValueError(f"re_blocks must split the {q} columns of Z into disjoint "
                         f"groups; got {[b.tolist() for b in blocks]}")
    if structure == "scalar" and len(blocks) > 1:
        raise ValueError("cov_structure='scalar' has one variance for every random "
                         "effect; it cannot be combined with separate random-effect "
                         "terms")
    return blocks


def _z_standard_for(stats, structure, blocks):
    """The statistics with Z standardised only as far as the structure of Ψ allows a
    reparametrisation Z → Z M to leave the model unchanged: a shift of column k by
    the intercept column k₀ needs an unstructured Ψ with k and k₀ in one block, a
    rescaling needs an unstructured or diagonal Ψ (scalar Ψ: the raw columns)."""
    k0 = stats.z_one
    shift, scale = stats.z_shift.copy(), stats.z_scale.copy()
    if structure == "scalar":
        shift[:], scale[:] = 0.0, 1.0
    elif structure == "diagonal" or k0 < 0:
        shift[:] = 0.0
    else:
        same = next(b for b in blocks if k0 in b)
        outside = np.setdiff1d(np.arange(stats.n_re), same)
        shift[outside] = 0.0
    return stats.restandardize(stats.x_shift, stats.x_scale, shift, scale)


def _preconditioner(S, structure, blocks):
    """T such that Z̃ = Z T has a pooled Gram Z̃ᵀZ̃ / N = I within each block.

    ``S`` is ZᵀZ / N. Unstructured blocks: T_b = R_b⁻¹ with S_b = R_bᵀR_b (Cholesky), so
    that an intercept and an uncentred slope become an intercept and the centred,
    scaled slope; any invertible block-diagonal T leaves the model unchanged. Diagonal
    Ψ: only a scaling per column is allowed; scalar Ψ: T = I.
    """
    q = S.shape[0]
    T = np.eye(q)
    if structure == "scalar" or q == 0:
        return T
    d = np.sqrt(np.diag(S))
    if structure == "diagonal" or not np.all(d > 0):
        return np.diag(np.where(d > 0, 1.0 / np.where(d > 0, d, 1.0), 1.0))
    for idx in blocks:
        Sb = S[np.ix_(idx, idx)] / np.outer(d[idx], d[idx])
        try:
            R = np.linalg.cholesky(Sb).T
        except np.linalg.LinAlgError:  # collinear within the pooled data: scale only
            R = np.eye(idx.size)
        T[np.ix_(idx, idx)] = np.linalg.inv(R) / d[idx][:, None]
    return T


def _lower_factor(L):
    """A lower-triangular F with FFᵀ = LLᵀ and diag(F) ≥ 0 (by a QR of Lᵀ; singular
    LLᵀ allowed), as lme4 reports θ."""
    if L.size == 0:
        return L
    R = np.linalg.qr(L.T, mode="r")
    F = R.T
    return F * np.where(np.diag(F) < 0, -1.0, 1.0)[None, :]


def _congruence(S, L):
    """LᵀS_iL for a stack S of shape (n, q, q), as one (n, q²) × (q², q²) product
    (a broadcast matmul would loop over the n clusters)."""
    q = L.shape[0]
    K = np.einsum("ca,db->cdab", L, L).reshape(q * q, q * q)
    return (S.reshape(-1, q * q) @ K).reshape(S.shape)


def _left(L, S):
    """L S_i for a stack S of shape (n, q, q), as one product."""
    return np.swapaxes(np.tensordot(S, L, axes=([1], [1])), 1, 2)


def _sum_of_products(X, Y):
    """Σ_i X_i Y_i over stacks of shape (n, q, q), as one (q, n q) × (n q, q) product."""
    q = X.shape[1]
    return np.swapaxes(X, 0, 1).reshape(q, -1) @ Y.reshape(-1, Y.shape[2])


def _inv_logdet(M):
    """Inverses and log-determinants of a stack of positive definite matrices (n, q, q).

    Closed forms for q ≤ 2 (the common random intercept and slope): numpy's batched
    ``inv`` and ``slogdet`` take 15 and 8 ms on 100,000 2 × 2 matrices, the closed form
    under 1 ms, and the deviance is evaluated a dozen times per fit.

    Raises
    ------
    numpy.linalg.LinAlgError
        If some M_i is not positive definite.
    """
    q = M.shape[-1]
    if q == 1:
        det, inv = M[:, 0, 0], 1.0 / M
    elif q == 2:
        a, b, c, d = M[:, 0, 0], M[:, 0, 1], M[:, 1, 0], M[:, 1, 1]
        det = a * d - b * c
        inv = np.stack([d, -b, -c, a], axis=1).reshape(M.shape) / det[:, None, None]
    else:
        sign, logdet = np.linalg.slogdet(M)
        if np.any(sign <= 0):
            raise np.linalg.LinAlgError("M_i not positive definite")
        return np.linalg.inv(M), logdet
    if not np.all((det > 0) & (M[:, 0, 0] > 0)):  # negated: NaN fails too
        raise np.linalg.LinAlgError("M_i not positive definite")
    return inv, np.log(det)


def fit_variance_components(stats, method="REML", structure="unstructured", tol=1e-10,
                            blocks=None):
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
    prof = _Profile(stats, method, structure, blocks)
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
    F = _lower_factor(prof.lam(theta))
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
                      f"with structure='diagonal' or a simpler Z", RuntimeWarning,
                      stacklevel=3)
    if boundary:
        warnings.warn("variance components: boundary (singular) fit — Ψ̂ is singular, "
                      "some random-effect variance or correlation is estimated at its "
                      "limit; consider dropping that random effect or "
                      "structure='diagonal'. The fit is returned.", RuntimeWarning,
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
    XtX = stats.XtX.sum(0)
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
