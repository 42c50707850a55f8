"""What a fitted SparseLMM computes after selection: the random part and the inference.

Each function returns the fitted attributes as a dict; the estimator sets them. Kept
apart from :mod:`hdlmm.api.estimator` so that the estimator only orchestrates.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from hdlmm.core.checks import _sort_order
from hdlmm.core.row_pass import row_sums
from hdlmm.inference.debias import debias
from hdlmm.model.varcomp import VarianceComponentsError, blups, fit_variance_components


def random_part(model, stats, free, re_names=None, skip=False, re_blocks=None):
    """Variance components, the fitted mixed model's fixed effects and BLUPs on the
    selected support.

    With ``model.refit`` (the default) the reported fixed effects are those of the
    fitted mixed model on the support: feasible GLS under the REML/ML Ψ̂, σ̂² (as lme4
    reports them), with their own standard errors; the proxy estimate of the selection
    stays in ``coef_proxy_``. Without ``refit`` the proxy estimate is reported and
    ``bse_`` is NaN (the GLS errors are not the proxy estimate's errors). ``skip`` (or
    ``vc_method=None``) returns the attributes of a model without variance components.

    Returns
    -------
    dict of fitted attributes (``variance_components_``, ``cov_re_``, ``scale_``,
    ``bse_``, ``intercept_bse_``, ``random_effects_``, ``estimator_``, the likelihood
    summaries, and ``coef_``/``intercept_`` when ``model.refit``).
    """
    proxy = (f"proxy estimate: whitened least squares at a = {model.a_:g}"
             if np.isfinite(model.a_) else "proxy estimate")
    out = dict(variance_components_=None, random_effects_=None, cov_re_=None,
               scale_=None, bse_=None, intercept_bse_=np.nan, estimator_=proxy,
               llf_=np.nan, aic_=np.nan, bic_=np.nan, df_model_=None)
    if model.vc_method is None or skip:
        return out
    cols = np.r_[free, model.support_ + len(free)].astype(int)
    sub = stats.select_features(cols)
    try:
        vc = fit_variance_components(sub, model.vc_method, model.cov_structure,
                                     blocks=re_blocks)
    except (VarianceComponentsError, np.linalg.LinAlgError) as exc:
        # the selection does not need Ψ: keep it, say why the rest is missing
        warnings.warn(f"variance components not fitted: {exc}", RuntimeWarning,
                      stacklevel=4)
        return out
    out.update(variance_components_=vc, cov_re_=vc.cov_re, scale_=vc.scale,
               **likelihood_summaries(vc))
    coef, intercept = model.coef_, model.intercept_
    if model.refit:
        coef = np.zeros_like(model.coef_)
        coef[model.support_] = vc.coef[len(free):]
        intercept = float(vc.coef[0]) if free else intercept
        bse = np.full(model.coef_.size, np.nan)
        bse[model.support_] = vc.bse[len(free):]
        out.update(coef_=coef, intercept_=intercept, bse_=bse,
                   intercept_bse_=float(vc.bse[0]) if free else np.nan,
                   estimator_=f"GLS under the {vc.method} Ψ̂, σ̂² (the fitted mixed model)")
    full = np.r_[[intercept] if free else [], coef[model.support_]]
    gamma = blups(sub, vc, full)
    q = stats.n_re
    names = list(re_names) if re_names is not None and len(re_names) == q else [
        f"z{j}" for j in range(q)]
    order = _sort_order(stats.labels)  # clusters are stored in fold order
    out["random_effects_"] = pd.DataFrame(
        gamma[order], index=pd.Index(stats.labels[order], name="group"), columns=names)
    return out


def likelihood_summaries(vc):
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


def inference_columns(spec, support, names):
    """The coordinates to test: the support, all, or the support plus named ones."""
    p = len(names)
    if spec is None:
        return np.zeros(0, dtype=int)
    if isinstance(spec, str):
        if spec == "support":
            return np.asarray(support, dtype=int)
        if spec == "all":
            return np.arange(p)
        spec = [spec]
    lookup = {nm: j for j, nm in enumerate(names)}
    extra = []
    for item in spec:
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            if not 0 <= item < p:
                raise ValueError(f"inference column {item} is out of range; X has {p} "
                                 f"columns (0..{p - 1})")
            extra.append(int(item))
        elif item in lookup:
            extra.append(lookup[item])
        else:
            raise ValueError(f"inference column {item!r} is not a feature; pass "
                             f"'support', 'all', or column indices/names of X")
    return np.union1d(np.asarray(support, dtype=int), extra).astype(int)


def fixed_effect_inference(model, transform, chunks):
    """Debiased estimates, cluster-robust SEs and p-values (:mod:`hdlmm.inference.debias`).

    ``chunks()`` yields ``(X, y, cluster_index)`` chunks of the rows (the second pass
    over the data; see :func:`hdlmm.core.row_pass.row_sums`), or ``chunks.row_sums(n,
    coef, intercept)`` returns the sums itself (e.g. :class:`hdlmm.sources.dask_frames.DaskRows`,
    computed where the rows are); None: no row access, and the inference is skipped
    with a warning.

    Returns
    -------
    dict with ``inference_`` (a DebiasedInference or None) and ``pvalues_``
    (ndarray over all features, NaN where not tested).
    """
    stats = transform.stats
    free = 1 if stats.intercept else 0
    names = stats.feature_names[free:]
    cols = inference_columns(model.inference, model.support_, names)
    pvalues = np.full(model.coef_.size, np.nan)  # the debiasing starts from the proxy
    if cols.size == 0:
        return dict(inference_=None, pvalues_=pvalues)
    if chunks is None:
        warnings.warn("inference needs a second pass over the rows, and fit_stats was "
                      "given none: pass chunks= (or fit with fit_source / fit_dask), or "
                      "inference=None to silence this", UserWarning, stacklevel=3)
        return dict(inference_=None, pvalues_=pvalues)
    coef = np.r_[[model.intercept_proxy_] if free else [], model.coef_proxy_]
    standard = (stats.x_shift[free:], stats.x_scale[free:], stats.y_shift)  # as the stats
    if hasattr(chunks, "row_sums"):  # rows that compute their own sums (Dask workers)
        rows = chunks.row_sums(stats.n_clusters, coef, stats.intercept, standard)
    else:
        rows = row_sums(chunks, stats.n_clusters, coef, stats.intercept, standard)
    res = debias(transform, model.a_, coef, cols, rows, penalty=model.nodewise_penalty,
                 small_sample=model.small_sample, p_adjust=model.p_adjust,
                 names=[names[j] for j in cols])
    pvalues[cols] = res.pvalue_adj
    return dict(inference_=res, pvalues_=pvalues)
