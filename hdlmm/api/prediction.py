"""Prediction intervals for new observations of a fitted :class:`hdlmm.SparseLMM`.

A new row (x, z) of cluster i is y = xᵀβ + zᵀγ_i + ε. Its prediction ŷ = xᵀβ̂ + zᵀγ̂_i
(γ̂_i the BLUP of a cluster seen in fit, 0 for a new cluster) has the error variance

    seen cluster:  σ̂² + xᵀ Var(β̂) x + zᵀ C_i z,   C_i = Var(γ_i | y_i) = Ψ̂ (I + S_i Ψ̂ / σ̂²)⁻¹
    new cluster:   σ̂² + xᵀ Var(β̂) x + zᵀ Ψ̂ z

with S_i = Z_iᵀZ_i of the cluster's training rows, Var(β̂) the covariance of the GLS fixed
effects on the support (``variance_components_.cov_coef``) and Ψ̂, σ̂² plugged in. The
interval is ŷ ± t · se with the normal quantile. As in merTools' ``predictInterval``
and statsmodels' ``get_prediction``, the covariance between β̂ and γ̂_i − γ_i and the
uncertainty of Ψ̂, σ̂² are left out; the selection step is taken as given. The coverage
this gives is measured in ``benchmarks/prediction_coverage.py``. After a weighted fit
(``sample_weight``), a new row is taken to have weight 1 (residual variance σ̂²).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats as sps

if TYPE_CHECKING:
    from hdlmm.api.estimator import SparseLMM

from hdlmm.api.params import check_predict_groups, check_predict_X, match_columns

__all__ = ["prediction_interval", "conditional_covariances"]


def conditional_covariances(model: SparseLMM) -> np.ndarray:
    """C_i = Ψ̂ (I + S_i Ψ̂ / σ̂²)⁻¹ of every cluster seen in fit, in the order of
    ``model.random_effects_`` (shape (n, q, q)); S_i = Z_iᵀZ_i in the units of Z."""
    stats = model.stats_
    Minv = stats.z_map_inv()  # Z = Z̃ M⁻¹, so S_i = M⁻ᵀ S̃_i M⁻¹
    S = np.einsum("ab,nbc,cd->nad", Minv.T, stats.ZtZ, Minv)
    order = pd.Index(stats.labels).get_indexer(model.random_effects_.index)
    S = S[order]
    psi, s2 = np.asarray(model.cov_re_, dtype=float), float(model.scale_)
    q = psi.shape[0]
    C = psi @ np.linalg.inv(np.eye(q) + S @ psi / s2)
    return 0.5 * (C + np.swapaxes(C, 1, 2))


def prediction_interval(model: SparseLMM, X: ArrayLike, groups: ArrayLike | None = None,
                        Z: ArrayLike | None = None, level: float = 0.95) -> pd.DataFrame:
    """Prediction intervals for new rows (see the module docstring).

    Parameters
    ----------
    model : SparseLMM, fitted with variance components
    X : array-like or DataFrame of shape (N, p)
    groups : array-like of shape (N,), optional
        Cluster labels; rows of clusters seen in fit get their BLUP. Without it every
        row is taken as a new cluster.
    Z : array-like of shape (N, q), optional
        Random-effect design of the rows (default: a random intercept).
    level : float in (0, 1)

    Returns
    -------
    pandas.DataFrame with ``prediction``, ``se``, ``lower``, ``upper``, ``seen``.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), e.g. 0.95; got {level}")
    vc = model.variance_components_
    if vc is None or not getattr(model, "refit", True):
        raise ValueError("prediction intervals need the fitted mixed model: fit with "
                         "groups, vc_method='REML' or 'ML' and refit=True")
    index = X.index if isinstance(X, pd.DataFrame) else None
    X = check_predict_X(match_columns(X, getattr(model, "feature_names_in_", None)),
                        model.coef_.size)
    q = model.random_effects_.shape[1]
    Z, labels = check_predict_groups(X, np.full(X.shape[0], None) if groups is None
                                     else groups, Z, q)
    seen_at = (model.random_effects_.index.get_indexer(pd.Index(labels))
               if groups is not None else np.full(X.shape[0], -1))
    seen = seen_at >= 0
    free = 1 if model.stats_.intercept else 0
    Xs = np.c_[np.ones((X.shape[0], free)), X[:, model.support_]]
    var = float(model.scale_) + np.einsum("ij,jk,ik->i", Xs, vc.cov_coef, Xs)
    gamma = np.zeros((X.shape[0], q))
    cov = np.broadcast_to(np.asarray(model.cov_re_, dtype=float), (X.shape[0], q, q)).copy()
    if seen.any():
        gamma[seen] = model.random_effects_.to_numpy()[seen_at[seen]]
        cov[seen] = conditional_covariances(model)[seen_at[seen]]
    var += np.einsum("ij,ijk,ik->i", Z, cov, Z)
    pred = X @ model.coef_ + model.intercept_ + np.einsum("ij,ij->i", Z, gamma)
    se = np.sqrt(var)
    t = sps.norm.ppf(0.5 + level / 2)
    return pd.DataFrame({"prediction": pred, "se": se, "lower": pred - t * se,
                         "upper": pred + t * se, "seen": seen}, index=index)
