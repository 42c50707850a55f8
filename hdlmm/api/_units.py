"""The fitted model in the user's units.

Every estimator behind :class:`hdlmm.SparseLMM` works on statistics of standardised
columns x̃_j = (x_j − s_j) / c_j (:class:`hdlmm.core.stats.ClusterStats`), so that nothing
it decides depends on the units or offsets of a column. With an intercept the two
parametrisations are the same model:

    β₀ + Σ_j β_j x_j = β̃₀ + Σ_j β̃_j x̃_j   with   β_j = β̃_j / c_j,
                                                  β₀ = β̃₀ − Σ_j β̃_j s_j / c_j,

a linear map β = A β̃ of the fixed effects, under which covariances map as A Cov Aᵀ;
y is centred at the source (y − ȳ), which only adds ȳ to the intercept.
Random effects, Ψ̂, σ̂², ML likelihoods and p-values are the same in both; the REML
criterion has the term log|XᵀV⁻¹X|, which the map changes by a constant (lme4 reports
it in the user's units). This module
maps the fitted attributes back once, at the end of a fit.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import numpy as np

from hdlmm.core.stats import ClusterStats
from hdlmm.model.deferred import then
from hdlmm.model.random_part import likelihood_summaries

__all__ = ["to_user_units"]


def _linear_map(shift, scale, columns, intercept):
    """A of β = A β̃ for the fixed effects ``columns`` (indices into the full columns,
    intercept = 0 first when ``intercept``)."""
    columns = np.asarray(columns, dtype=np.intp)
    A = np.diag(1.0 / scale[columns])
    if intercept:
        A[0, :] -= shift[columns] / scale[columns]
        A[0, 0] = 1.0
    return A


def to_user_units(fitted: dict, stats: ClusterStats, refit: bool) -> dict:
    """The ``fitted`` attributes of a :class:`hdlmm.SparseLMM` (fitted on the
    standardised ``stats``) in the units of the user's columns, as a dict of the
    attributes that change; ``refit`` is the estimator's parameter."""
    f = int(stats.intercept)
    shift, scale, y0 = stats.x_shift, stats.x_scale, stats.y_shift
    if not np.any(shift) and np.all(scale == 1) and not y0:
        return {}
    c = scale[f:]
    out = {}
    for coef_name, icpt_name in (("coef_", "intercept_"), ("coef_proxy_", "intercept_proxy_")):
        beta = fitted[coef_name] / c
        out[coef_name] = beta
        if f:
            out[icpt_name] = float(fitted[icpt_name] - beta @ shift[f:] + y0)
    if fitted.get("bse_") is not None:
        out["bse_"] = fitted["bse_"] / c
    vc = fitted.get("variance_components_")
    if vc is not None:
        cols = np.r_[np.arange(f), fitted["support_"] + f].astype(np.intp)
        A = _linear_map(shift, scale, cols, f)
        criterion = vc.criterion
        if vc.method == "REML":  # its log|XᵀV⁻¹X| term: log|det A⁻¹| = Σ log c_j smaller
            criterion += 2 * np.sum(np.log(scale[cols]))
        coef = A @ vc.coef
        coef[:f] += y0  # the intercept absorbs the shift of y
        vc = replace(vc, coef=coef, cov_coef=A @ vc.cov_coef @ A.T, criterion=criterion)
        out["variance_components_"] = vc
        out.update(likelihood_summaries(vc))
        if f and refit:
            out["intercept_bse_"] = float(vc.bse[0])
    if fitted.get("path_") is not None:
        out["path_"] = then(fitted["path_"], partial(_path_in_units, c=c))
    inf = fitted.get("inference_")
    if inf is not None:
        cj = c[inf.columns]
        out["inference_"] = replace(inf, estimate=inf.estimate / cj,
                                    debiased=inf.debiased / cj, se=inf.se / cj)
    return out


def _path_in_units(path, c):
    """The path table with its coefficients divided by the columns' scales ``c``."""
    path = path.copy()
    path["coef"] = [cf / c for cf in path["coef"]]
    return path
