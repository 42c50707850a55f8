"""Simulated linear-mixed-model data.

Two generators:

* :func:`make_tutorial_data` reproduces, draw for draw, the generator of skscope's
  "Linear mixed model" tutorial, defects included, so that results can be compared
  with the published analysis;
* :func:`make_lmm_data` is a clean generator: valid covariances, unbalanced clusters,
  any number of random effects, Ψ and σ² as arguments.

Both return a :class:`LMMData` whose ``Z`` is row-wise (N × q), the layout every hdlmm
function takes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from sklearn.utils import check_random_state

__all__ = ["LMMData", "make_tutorial_data", "make_lmm_data", "ar1_cov"]


@dataclass
class LMMData:
    """A simulated data set with its truth.

    Attributes
    ----------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    Z : ndarray of shape (n_samples, n_re)
        Row-wise random-effect design (like statsmodels' ``exog_re``).
    groups : ndarray of shape (n_samples,)
        Cluster label of each row.
    beta : ndarray of shape (n_features,)
        True fixed effects.
    gamma : ndarray of shape (n_clusters, n_re)
        True random effects, one row per cluster (in order of first appearance).
    cov_re : ndarray of shape (n_re, n_re)
        Covariance Ψ from which ``gamma`` was drawn (as the generator states it).
    scale : float
        Noise variance σ².
    """

    X: np.ndarray
    y: np.ndarray
    Z: np.ndarray
    groups: np.ndarray
    beta: np.ndarray
    gamma: np.ndarray
    cov_re: np.ndarray
    scale: float

    @property
    def support(self) -> np.ndarray:
        """Indices of the nonzero true fixed effects."""
        return np.flatnonzero(self.beta)

    def block_diagonal_Z(self) -> np.ndarray:
        """The N × (n·q) block-diagonal Z the tutorial builds (for comparisons only)."""
        labels, codes = np.unique(self.groups, return_inverse=True)
        q = self.Z.shape[1]
        Zb = np.zeros((self.Z.shape[0], labels.size * q))
        for i in range(labels.size):
            rows = codes == i
            Zb[rows, i * q:(i + 1) * q] = self.Z[rows]
        return Zb


def ar1_cov(dim: int, rho: float) -> np.ndarray:
    """AR(1) correlation matrix ``rho ** |i - j|`` of size ``dim``."""
    idx = np.arange(dim)
    return rho ** np.abs(idx[:, None] - idx[None, :])


def make_tutorial_data(m: int = 8, n: int = 30, p: int = 300, q: int = 8, sigma: float = 0.25,
                       rho: float = 0.2, seed: int | None = 0) -> LMMData:
    """The skscope tutorial's generator, reproduced exactly.

    Same arguments, same ``numpy.random.default_rng(seed)`` calls in the same order,
    hence the same arrays as the tutorial's code for the same seed and the same numpy
    build (``multivariate_normal`` factorises by SVD, and the signs and bases LAPACK
    returns for its singular vectors differ between builds). The tutorial's analysis uses
    ``m=8, n=15, p=200, q=4, seed=0``.

    Parameters
    ----------
    m : int
        Observations per cluster (balanced).
    n : int
        Number of clusters.
    p : int
        Number of fixed effects; the true ones are β₁ = 1, β₅ = 5, β₁₀ = 3.
    q : int
        Number of random effects.
    sigma : float
        Documented as the noise SD but **ignored**, as in the tutorial: the noise SD is
        hard-coded to 0.25.
    rho : float
        Correlation between column j of X and column i of Z is ``rho ** |i - j|`` for
        ``max(i, j) < q``.
    seed : int
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    LMMData

    Notes
    -----
    Defects of the original, kept for exact reproduction:

    * The joint covariance ``[[I_p, S], [Sᵀ, I_q]]`` of a row of (X, Z) is **not positive
      semi-definite** for the tutorial's sizes: its smallest eigenvalue is -0.36 for
      (p, q) = (200, 4) and -0.45 for the defaults (300, 8), because the q × q block of
      S has ones on its diagonal (X_j and Z_j would have correlation 1 while X_j is also
      correlated with the other columns of Z). ``Generator.multivariate_normal`` emits
      one RuntimeWarning (which the tutorial silences with
      ``warnings.filterwarnings('ignore')``) and factorises the indefinite matrix by SVD
      anyway, so the rows of (X, Z) do not have the stated covariance. This function
      replaces numpy's warning by a RuntimeWarning that says so.
    * ``sigma`` is ignored (noise SD fixed at 0.25, σ² = 0.0625).
    * Ψ = 0.56^|i-j| is drawn per cluster and stacked in cluster order.
    """
    N = m * n
    rng = np.random.default_rng(seed)
    i_idx, j_idx = np.indices((p, q))
    mx = np.maximum(i_idx, j_idx)
    sigma_xz = np.where(mx <= q - 1, rho ** np.abs(i_idx - j_idx), 0.0)
    joint = np.block([[np.eye(p), sigma_xz], [sigma_xz.T, np.eye(q)]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        X_Z = rng.multivariate_normal(np.zeros(p + q), joint, size=N)
    min_eig = float(np.linalg.eigvalsh(joint)[0])
    if min_eig < -1e-10:
        warnings.warn(
            f"the tutorial's joint covariance of (X, Z) is not positive semi-definite "
            f"(smallest eigenvalue {min_eig:.3f}), so the rows do not have the stated "
            f"covariance; this is kept to reproduce the tutorial exactly. Use "
            f"make_lmm_data for valid simulated data", RuntimeWarning, stacklevel=2)
    X, Z = X_Z[:, :p], X_Z[:, p:]
    beta = np.zeros(p)
    beta[[1, 5, 10]] = [1, 5, 3]
    psi = ar1_cov(q, 0.56)
    gamma = rng.multivariate_normal(np.zeros(q), psi, size=n)
    noise = rng.normal(size=N) * 0.25
    groups = np.repeat(np.arange(n), m)
    y = X @ beta + np.einsum("ij,ij->i", Z, gamma[groups]) + noise
    return LMMData(X=X, y=y, Z=Z, groups=groups, beta=beta, gamma=gamma,
                   cov_re=psi, scale=0.0625)


def _cluster_sizes(n_clusters, n_obs, rng):
    """Cluster sizes from an int, a (low, high) range, or an explicit sequence."""
    if np.isscalar(n_obs):
        return np.full(n_clusters, int(n_obs))
    n_obs = np.asarray(n_obs)
    if n_obs.shape == (2,):
        return rng.integers(int(n_obs[0]), int(n_obs[1]) + 1, size=n_clusters)
    if n_obs.shape != (n_clusters,):
        raise ValueError(
            f"n_obs must be an int, a (low, high) pair or {n_clusters} sizes; "
            f"got shape {n_obs.shape}")
    return n_obs.astype(int)


def make_lmm_data(n_clusters: int = 30, n_obs: int | ArrayLike = 8, n_features: int = 300,
                  n_re: int = 2, support_size: int = 3, coef: ArrayLike | None = None,
                  cov_re: ArrayLike | None = None, scale: float = 0.25, x_corr: float = 0.0,
                  z_design: str = "slope", intercept: float = 0.0,
                  random_state: int | np.random.RandomState | None = None) -> LMMData:
    """Clean simulated LMM: y_i = X_i β + Z_i γ_i + ε_i with valid covariances.

    Parameters
    ----------
    n_clusters : int
        Number of clusters n.
    n_obs : int, (low, high) or sequence of n ints
        Cluster sizes: fixed, drawn uniformly in [low, high], or given.
    n_features : int
        Number of fixed effects p.
    n_re : int
        Number of random effects q.
    support_size : int
        Number of nonzero fixed effects (ignored when ``coef`` is given).
    coef : array-like, optional
        Values of the nonzero fixed effects (default: alternating ±(1, 2, 3, ...)/... see
        below). Their positions are drawn at random.
    cov_re : ndarray of shape (n_re, n_re), optional
        Ψ; default identity. Must be symmetric positive semi-definite.
    scale : float
        Noise variance σ².
    x_corr : float
        AR(1) correlation ``x_corr ** |j - k|`` between columns of X.
    z_design : {"slope", "gaussian"}
        ``"slope"``: Z = [1, t, t², ...] with t the within-cluster time 0..m_i-1 scaled to
        [0, 1] (random intercept and slopes); ``"gaussian"``: independent N(0, 1) columns.
    intercept : float
        Fixed intercept added to y.
    random_state : int, RandomState or None

    Returns
    -------
    LMMData
    """
    _check_options(n_clusters, n_obs, n_features, n_re, support_size, coef, scale)
    rng = np.random.default_rng(check_random_state(random_state).randint(2**31 - 1))
    sizes = _cluster_sizes(n_clusters, n_obs, rng)
    N = int(sizes.sum())
    groups = np.repeat(np.arange(n_clusters), sizes)
    X = _draw_X(N, n_features, x_corr, rng)
    Z = _draw_Z(sizes, n_re, z_design, rng)
    beta = np.zeros(n_features)
    if coef is None:
        coef = np.resize([1.0, -1.5, 2.0, -0.75, 1.25], support_size)
    coef = np.asarray(coef, dtype=float)
    beta[np.sort(rng.choice(n_features, size=coef.size, replace=False))] = coef
    psi = np.eye(n_re) if cov_re is None else np.asarray(cov_re, dtype=float)
    if np.linalg.eigvalsh(psi).min() < -1e-12:
        raise ValueError("cov_re is not positive semi-definite; pass a valid covariance")
    gamma = rng.multivariate_normal(np.zeros(n_re), psi, size=n_clusters, method="eigh")
    noise = rng.normal(scale=np.sqrt(scale), size=N)
    y = intercept + X @ beta + np.einsum("ij,ij->i", Z, gamma[groups]) + noise
    return LMMData(X=X, y=y, Z=Z, groups=groups, beta=beta, gamma=gamma,
                   cov_re=psi, scale=float(scale))


def _check_options(n_clusters, n_obs, n_features, n_re, support_size, coef, scale):
    """Refuse options that would write NaN or empty data."""
    def count(value, name, minimum):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                or value < minimum:
            raise ValueError(f"{name} must be an integer ≥ {minimum}; got {value!r}")

    count(n_clusters, "n_clusters", 2)
    count(n_features, "n_features", 1)
    count(n_re, "n_re", 1)
    sizes = np.atleast_1d(n_obs)
    if sizes.size == 0 or not np.all(np.isfinite(sizes.astype(float))) or np.any(sizes < 1):
        raise ValueError(f"n_obs (rows per cluster) must be at least 1; got {n_obs!r}")
    k = np.size(coef) if coef is not None else support_size
    if coef is None:
        count(support_size, "support_size", 0)
    if k > n_features:
        raise ValueError(f"{k} nonzero fixed effects do not fit in n_features = "
                         f"{n_features}")
    if not np.isfinite(scale) or scale < 0:
        raise ValueError(f"scale (the residual variance σ²) must be finite and ≥ 0; got "
                         f"{scale!r}")


def _draw_X(N, p, x_corr, rng):
    """N × p Gaussian design with AR(1) column correlation (generated recursively)."""
    X = rng.standard_normal((N, p))
    if x_corr:
        innov = np.sqrt(1 - x_corr ** 2)
        for j in range(1, p):
            X[:, j] = x_corr * X[:, j - 1] + innov * X[:, j]
    return X


def _draw_Z(sizes, q, z_design, rng):
    """Row-wise random-effect design."""
    N = int(sizes.sum())
    if z_design == "gaussian":
        return rng.standard_normal((N, q))
    if z_design != "slope":
        raise ValueError(f"z_design must be 'slope' or 'gaussian'; got {z_design!r}")
    t = np.concatenate([np.arange(m) / max(m - 1, 1) for m in sizes])
    return np.column_stack([t ** k for k in range(q)])
