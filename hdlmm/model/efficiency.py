"""Choosing a by the efficiency of the fixed effects under the fitted variance components.

For a support S the proxy estimator at a is β̂_S(a) = A⁻¹X_SᵀW y with W = Σ_a⁻¹ (per
cluster) and A = X_SᵀW X_S = G(a)_SS. Under the fitted model Var(y_i) = V_i =
Z_iΨZ_iᵀ + σ²I its variance is the sandwich A⁻¹ (Σ_i X_iᵀW_iV_iW_iX_i) A⁻¹, which is
smallest when Σ_a is proportional to V (generalised least squares). Choosing the a of a
grid with the smallest trace of that variance (over the penalised coordinates) therefore
chooses the proxy closest to GLS for the fixed effects, which a held-out likelihood does
not aim at when Σ_a = aZZᵀ + I cannot match V (e.g. a random slope whose variance
differs from the intercept's, or correlated random effects).

With Z_iᵀZ_i = Q_iΛ_iQ_iᵀ, B_i = Q_iᵀZ_iᵀX_{i,S} and w_i = a / (1 + aλ_i):

    Z_iᵀW_iX_{i,S} = Q_i diag(1 / (1 + aλ_i)) B_i
    X_{i,S}ᵀW_i²X_{i,S} = X_{i,S}ᵀX_{i,S} − B_iᵀ diag(2w_i − w_i²λ_i) B_i

so the criterion costs O(n q s²) per a from the statistics.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hdlmm.core.transform import ProxyTransform

__all__ = ["fixed_effect_variance", "most_efficient_a"]


def fixed_effect_variance(transform: ProxyTransform, a: float, S: np.ndarray, cov_re: np.ndarray,
                          scale: float) -> np.ndarray:
    """Var(β̂_S(a)) under Var(y_i) = Z_iΨZ_iᵀ + σ²I.

    Parameters
    ----------
    transform : ProxyTransform
    a : float ≥ 0
    S : array-like of int
        Columns of the statistics (the intercept is column 0 when present).
    cov_re : ndarray of shape (q, q)
        Ψ.
    scale : float
        σ².

    Returns
    -------
    ndarray of shape (s, s)
    """
    return _sandwich(transform, a, *_support_parts(transform, S), cov_re, scale)


def most_efficient_a(transform: ProxyTransform, a_grid: Sequence[float], S: np.ndarray,
                     free: Sequence[int], cov_re: np.ndarray, scale: float) -> tuple:
    """The a of ``a_grid`` with the smallest tr Var(β̂_S(a)) over the penalised
    coordinates of S (the first ``free`` entries of S are not counted), and the traces."""
    parts = _support_parts(transform, S)  # the same for every a
    traces = np.array([np.trace(_sandwich(transform, a, *parts, cov_re,
                                          scale)[free:, free:])
                       for a in a_grid])
    return float(a_grid[int(np.argmin(traces))]), traces


def _support_parts(transform, S):
    """(S, B_i = Q_iᵀZ_iᵀX_{i,S} of shape (n, q, s), X_SᵀX_S): what does not depend on a."""
    S = np.asarray(S, dtype=np.intp)
    XtX = transform.stats.XtX[:, S][:, :, S].sum(0)
    return S, transform.rotate_columns(S), XtX


def _sandwich(transform, a, S, B, XtX, cov_re, scale):
    """A⁻¹ (Σ_i X_iᵀW_iV_iW_iX_i) A⁻¹ at one a (see the module docstring)."""
    A = transform.at(a).total()[0][np.ix_(S, S)]
    lam, w = transform.lam, transform.weights(a)
    ZWX = transform.V @ (B / (1.0 + a * lam)[:, :, None])  # Z_iᵀΣ_a⁻¹X_i = V_i ⋯ B_i
    meat = np.sum(np.swapaxes(ZWX, 1, 2) @ (cov_re @ ZWX), axis=0)
    s = S.size
    WW = XtX - ((2 * w - w * w * lam)[:, :, None] * B).reshape(-1, s).T @ B.reshape(-1, s)
    Ainv = np.linalg.inv(A)
    return Ainv @ (meat + scale * WW) @ Ainv
