"""The random part of the model on a selected support: variance components, the fitted
mixed model's fixed effects, BLUPs and likelihood summaries.

Each function returns fitted attributes of :class:`hdlmm.SparseLMM` as a dict.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from hdlmm.core.checks import _sort_order
from hdlmm.core.stats import ClusterStats
from hdlmm.model.selection import Selection
from hdlmm.model.varcomp import (
    VarianceComponents,
    VarianceComponentsError,
    blups,
    fit_variance_components,
)


def random_part(stats: ClusterStats, selection: Selection, *, vc_method: str | None,
                cov_structure: str, refit: bool, re_names: list | None = None,
                re_blocks: list | None = None, skip: bool = False) -> dict:
    """Variance components, the fitted mixed model's fixed effects and BLUPs on the
    selected support.

    ``stats`` are the statistics the selection worked on (standardised); ``vc_method``,
    ``cov_structure`` and ``refit`` are the estimator's parameters. With ``refit`` (the
    default) the reported fixed effects are those of the
    fitted mixed model on the support: feasible GLS under the REML/ML Ψ̂, σ̂² (as lme4
    reports them), with their own standard errors; the proxy estimate of the selection
    stays in ``coef_proxy_``. Without ``refit`` the proxy estimate is reported and
    ``bse_`` is NaN (the GLS errors are not the proxy estimate's errors). ``skip`` (or
    ``vc_method=None``) returns the attributes of a model without variance components.

    Returns
    -------
    dict of fitted attributes (``variance_components_``, ``cov_re_``, ``scale_``,
    ``bse_``, ``intercept_bse_``, ``random_effects_``, ``estimator_``, the likelihood
    summaries, and ``coef_``/``intercept_`` when ``refit``).
    """
    proxy = (f"proxy estimate: whitened least squares at a = {selection.a:g}"
             if np.isfinite(selection.a) else "proxy estimate")
    out = dict(variance_components_=None, random_effects_=None, cov_re_=None,
               scale_=None, bse_=None, intercept_bse_=np.nan, estimator_=proxy,
               llf_=np.nan, aic_=np.nan, bic_=np.nan, df_model_=None)
    if vc_method is None or skip:
        return out
    free = [0] if stats.intercept else []
    support = selection.support
    cols = np.r_[free, support + len(free)].astype(int)
    sub = stats.select_features(cols)
    try:
        vc = fit_variance_components(sub, vc_method, cov_structure,
                                     blocks=re_blocks)
    except (VarianceComponentsError, np.linalg.LinAlgError) as exc:
        # the selection does not need Ψ: keep it, say why the rest is missing
        warnings.warn(f"variance components not fitted: {exc}", RuntimeWarning,
                      stacklevel=4)
        return out
    out.update(variance_components_=vc, cov_re_=vc.cov_re, scale_=vc.scale,
               **likelihood_summaries(vc))
    coef, intercept = selection.coef, selection.intercept
    if refit:
        coef = np.zeros_like(selection.coef)
        coef[support] = vc.coef[len(free):]
        intercept = float(vc.coef[0]) if free else intercept
        bse = np.full(selection.coef.size, np.nan)
        bse[support] = vc.bse[len(free):]
        out.update(coef_=coef, intercept_=intercept, bse_=bse,
                   intercept_bse_=float(vc.bse[0]) if free else np.nan,
                   estimator_=f"GLS under the {vc.method} Ψ̂, σ̂² (the fitted mixed model)")
    full = np.r_[[intercept] if free else [], coef[support]]
    gamma = blups(sub, vc, full)
    q = stats.n_re
    names = list(re_names) if re_names is not None and len(re_names) == q else [
        f"z{j}" for j in range(q)]
    order = _sort_order(stats.labels)  # clusters are stored in fold order
    out["random_effects_"] = pd.DataFrame(
        gamma[order], index=pd.Index(stats.labels[order], name="group"), columns=names)
    return out


def likelihood_summaries(vc: VarianceComponents) -> dict:
    """lme4's summaries of a fit: log-likelihood (restricted, for REML), AIC, BIC and
    the number of parameters (fixed effects, free parameters of Ψ, and σ²).

    As lme4's ``logLik``, ``AIC`` and ``BIC`` of an ``lmer`` fit: for REML they use the
    REML criterion, so they compare only models with the same fixed effects. On a
    selected support they count the selected fixed effects and ignore the selection.
    """
    df = int(vc.coef.size + vc.n_theta + 1)
    llf = -0.5 * vc.criterion
    return dict(llf_=llf, aic_=-2 * llf + 2 * df, bic_=-2 * llf + df * np.log(vc.n_samples),
                df_model_=df)
