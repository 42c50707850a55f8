"""The one fit behind every front end of :class:`hdlmm.SparseLMM`: from cross-products
(:class:`~hdlmm.core.stats.ClusterStats`) and a way to reach the rows again, to the
fitted attributes.

``fit`` (arrays), ``fit_formula`` / ``from_formula`` (data frames), ``fit_source``
(files), ``fit_dask`` (Dask) and ``fit_stats`` (statistics built elsewhere) each build
the statistics and call :func:`fit_statistics`, which runs the layers in order: the
selection of (a, k) (:mod:`hdlmm.model.selection`), the random part
(:mod:`hdlmm.model.random_part`), the inference (:mod:`hdlmm.inference`), and the map
back to the user's units (:mod:`hdlmm.api._units`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from hdlmm.api._units import to_user_units
from hdlmm.api.params import resolve_feature_groups, resolve_forced
from hdlmm.core._threads import one_blas_thread
from hdlmm.core.aliasing import warn_aliased_columns
from hdlmm.core.checks import check_lmm_arrays, check_weights
from hdlmm.core.row_pass import row_chunks
from hdlmm.core.screening import screened_columns
from hdlmm.core.stats import ClusterStats
from hdlmm.inference.fixed_effects import fixed_effect_inference
from hdlmm.model.checks import warn_constant_columns
from hdlmm.model.deferred import then
from hdlmm.model.random_part import likelihood_summaries, random_part
from hdlmm.model.selection import Selector
from hdlmm.model.settings import SelectionSettings

__all__ = ["fit_arrays", "fit_statistics", "expand_screened", "named_outputs"]


def fit_statistics(stats: ClusterStats, rows: Callable | None, params: dict, *,
                   re_names: list | None = None, re_blocks: list | None = None,
                   no_groups: bool = False, forced: ArrayLike | None = None,
                   feature_groups: list | None = None) -> dict:
    """Every fitted attribute of a SparseLMM with parameters ``params`` on ``stats``.

    Parameters
    ----------
    stats : ClusterStats
        In any standardisation (they are moved to the data's own), with ``cv`` fold
        blocks when the parameters need the cross-validation.
    rows : callable or object with ``row_sums``, or None
        The second pass over the rows for the inference (see
        :func:`hdlmm.inference.fixed_effects.fixed_effect_inference`).
    params : dict
        The estimator's parameters (``get_params()``).
    re_names, re_blocks
        Names of the random effects and the blocks of Ψ (from a formula).
    no_groups : bool
        No clustering was given: no variance components.
    forced : array-like of int, optional
        Columns of X kept in the model unpenalised (``force``, resolved to indices).
    feature_groups : list of arrays of int, optional
        Columns of X selected together (``feature_groups``, resolved to indices).

    Returns
    -------
    dict of fitted attributes, in the user's units.
    """
    with one_blas_thread():  # many small products; the large ones ask for threads
        return _fit(stats, rows, params, re_names, re_blocks, no_groups, forced,
                    feature_groups)


def _fit(stats, rows, params, re_names, re_blocks, no_groups, forced, feature_groups):
    stats = stats.standardized()
    free = [0] if stats.intercept else []
    warn_constant_columns(stats, free)
    warn_aliased_columns(stats.xtx_total, stats.feature_names, free, stats.n_samples,
                         stacklevel=5)
    selector = Selector(stats, SelectionSettings.from_params(params), forced=forced,
                        feature_groups=feature_groups)
    selection = selector.choose()
    vc_options = dict(vc_method=params["vc_method"], cov_structure=params["cov_structure"],
                      refit=params["refit"], re_names=re_names, re_blocks=re_blocks,
                      skip=no_groups)
    fitted = dict(stats_=stats, n_features_in_=stats.n_features - len(free),
                  forced_features_=np.asarray([stats.feature_names[j + len(free)]
                                               for j in selector.forced], dtype=object),
                  feature_groups_=[[stats.feature_names[j] for j in u]
                                   for u in selector.units])
    fitted.update(selection.attributes())
    fitted.update(random_part(stats, selection, **vc_options))
    if (selector.n_candidates and params["a"] is None
            and params["a_selection"] == "efficiency"):
        if fitted["cov_re_"] is None:
            selection.how += "; a not revised (no variance components to judge it by)"
        else:
            revised, fitted["efficiency_"] = selector.most_efficient(
                selection, fitted["cov_re_"], fitted["scale_"])
            if revised is not None:
                selection = revised
                fitted.update(selection.attributes())
                fitted.update(random_part(stats, selection, **vc_options))
    fitted["selection_"] = selection.how
    fitted.update(fixed_effect_inference(
        selector.transform, selection, rows, params["inference"],
        penalty=params["nodewise_penalty"], small_sample=params["small_sample"],
        p_adjust=params["p_adjust"], progress=params["progress"]))
    fitted.update(to_user_units(fitted, stats, params["refit"]))
    values = ([fitted["intercept_"]] if stats.intercept else []) + list(fitted["coef_"])
    fitted["params_"] = pd.Series(values, index=stats.feature_names, name="coef")
    return fitted


def expand_screened(fitted: dict, cols: ArrayLike, p: int, names: list) -> dict:
    """The attributes of a model fitted on the screened columns ``cols``, mapped back to
    all p columns (coefficient 0 and NaN p-values for the screened-out ones)."""
    cols = np.asarray(cols, dtype=int)

    def full(v, fill):
        out = np.full(p, fill, dtype=float)
        out[cols] = v
        return out

    out = dict(coef_=full(fitted["coef_"], 0.0), coef_proxy_=full(fitted["coef_proxy_"], 0.0),
               support_=cols[fitted["support_"]], pvalues_=full(fitted["pvalues_"], np.nan),
               n_features_in_=p, screened_features_=cols)
    if fitted["bse_"] is not None:
        out["bse_"] = full(fitted["bse_"], np.nan)
    def on_all_columns(path):
        path = path.copy()
        path["support"] = [cols[s] for s in path["support"]]
        path["coef"] = [full(c, 0.0) for c in path["coef"]]
        return path

    out["path_"] = then(fitted["path_"], on_all_columns)
    if fitted["inference_"] is not None:
        fitted["inference_"].columns = cols[fitted["inference_"].columns]
    params = fitted["params_"]
    lead = list(params.index[:params.size - cols.size])  # the intercept
    out["params_"] = params.reindex(lead + list(names), fill_value=0.0)
    return out


def fit_arrays(X: ArrayLike, y: ArrayLike, groups: ArrayLike, Z: ArrayLike | None, params: dict, *,
               re_names: list | None = None, re_blocks: list | None = None,
               no_groups: bool = False, allow_no_features: bool = False,
               terms: dict | None = None, forced: ArrayLike | None = None,
               weights: ArrayLike | None = None) -> dict:
    """Every fitted attribute of a SparseLMM with parameters ``params`` on rows in
    memory (``fit`` and the formulas): the checks, the screening, the statistics and
    :func:`fit_statistics`, then what needs the rows (scaled residuals, names).

    The forced columns are ``params["force"]`` (names or indices; ``terms`` maps a
    formula's terms to their columns) and ``forced`` (indices: a formula's
    ``force(...)`` terms); screening always keeps them.

    ``weights`` (lme4's ``weights``, scikit-learn's ``sample_weight``): row j has
    residual variance σ²/w_j. The statistics are those of the rows times √w
    (:meth:`ClusterStats.from_checked`), so the selection whitens by W⁻¹ + aZZᵀ and the
    REML/ML fit is the weighted one; the criterion and log-likelihood include the
    Jacobian −Σ log w_j as lme4's do. Screening, when it runs, scores the unweighted
    columns."""
    frame_names = list(map(str, X.columns)) if isinstance(X, pd.DataFrame) else None
    row_index = X.index if isinstance(X, pd.DataFrame) else None
    X, y, Z, codes, labels = check_lmm_arrays(X, y, groups, Z,
                                              allow_no_features=allow_no_features)
    w = None if weights is None else check_weights(weights, X.shape[0])
    w_mean = 1.0 if w is None else float(np.mean(w))
    if w is not None:  # weights of mean 1: their units must not move a's grid
        w = w / w_mean
    settings = SelectionSettings.from_params(params)
    p = X.shape[1]
    names = all_names = frame_names or [f"x{j}" for j in range(p)]
    forced = np.union1d(resolve_forced(params["force"], all_names, p, terms),
                        np.asarray([] if forced is None else forced, dtype=np.intp))
    groups = resolve_feature_groups(params["feature_groups"], all_names, p, terms, forced)
    a_values = [float(params["a"])] if params["a"] is not None else settings.grid()
    kept = screened_columns(params["screening"], a_values, X, y, Z, codes, labels.size)
    if kept is not None:  # forced columns always kept, and groups whole
        kept = np.union1d(kept, forced).astype(np.intp)
        groups = [g for g in groups if np.isin(g, kept).any()]
        kept = np.union1d(kept, np.concatenate(groups) if groups else []).astype(np.intp)
        forced = np.searchsorted(kept, forced)
        groups = [np.searchsorted(kept, g) for g in groups]
        X, names = X[:, kept], [all_names[j] for j in kept]
    stats = ClusterStats.from_checked(
        X, y, Z, codes, labels, fit_intercept=params["fit_intercept"],
        n_blocks=params["cv"] if settings.needs_cv else 1,
        random_state=params["random_state"],
        feature_names=names if frame_names is not None or kept is not None else None,
        weights=w, progress=params["progress"])
    index = stats.cluster_index(labels)[codes]
    u = None if w is None else np.sqrt(w)
    fitted = fit_statistics(stats, lambda: row_chunks(X, y, index, u=u), params,
                            re_names=re_names, re_blocks=re_blocks, no_groups=no_groups,
                            forced=forced, feature_groups=groups)
    if w is not None:
        fitted.update(_weighted_summaries(fitted, w, w_mean))
    fitted.update(_fitted_values(fitted, X, y, Z, labels[codes], row_index, u))
    fitted["screened_features_"] = None
    if kept is not None:
        fitted.update(expand_screened(fitted, kept, p, all_names))
    if frame_names is not None:
        fitted["feature_names_in_"] = np.asarray(frame_names, dtype=object)
    return fitted


def _weighted_summaries(fitted, w, w_mean):
    """The variance components of a fit on weights ``w`` of mean 1 (the user's divided
    by ``w_mean``) as lme4 reports them for the user's weights: σ̂² of a row of weight 1
    (σ̂² × w_mean, and Λ = Ψ̂^{1/2}/σ̂ accordingly), and the REML criterion / deviance
    with the Jacobian of y ↦ W^{1/2}y, −Σ log w (invariant, as lme4's, to the units of
    the weights)."""
    vc = fitted.get("variance_components_")
    if vc is None:
        return {}
    root = np.sqrt(w_mean)
    vc = replace(vc, criterion=vc.criterion - float(np.sum(np.log(w))),
                 scale=vc.scale * w_mean, theta=vc.theta / root, lam=vc.lam / root)
    return dict(variance_components_=vc, scale_=vc.scale, **likelihood_summaries(vc))


def _fitted_values(fitted, X, y, Z, row_labels, row_index, u=None):
    """The fitted values (marginal Xβ̂ + β̂₀, and conditional + Zγ̂ with the BLUPs) and
    the conditional residuals as Series on the rows' index, and the min, quartiles and
    max of the residuals over σ̂ (lme4's "scaled residuals", times √w with weights; None
    without variance components)."""
    marginal = X @ fitted["coef_"] + fitted["intercept_"]
    conditional, quantiles = marginal, None
    if fitted["random_effects_"] is not None:
        gamma = fitted["random_effects_"].reindex(pd.Index(row_labels)).to_numpy()
        conditional = marginal + np.einsum("ij,ij->i", Z, gamma)
        pearson = (y - conditional) * (1.0 if u is None else u)
        quantiles = np.quantile(pearson / np.sqrt(fitted["scale_"]), [0, 0.25, 0.5, 0.75, 1])
    return dict(fittedvalues_=pd.Series(conditional, index=row_index, name="fitted"),
                fittedvalues_marginal_=pd.Series(marginal, index=row_index,
                                                 name="fitted_marginal"),
                resid_=pd.Series(y - conditional, index=row_index, name="resid"),
                residual_quantiles_=quantiles)


def named_outputs(fitted: dict) -> dict:
    """``bse_`` and ``pvalues_`` as pandas Series on the index of ``params_`` (the
    intercept first, as statsmodels' ``bse`` and ``pvalues``): the last step of a fit.
    The intercept's p-value is NaN (the debiased inference tests the features); its
    standard error is that of the fitted mixed model, as the features'."""
    index = fitted["params_"].index
    lead = index.size - fitted["coef_"].size  # 1 with an intercept
    nan = np.full(fitted["coef_"].size, np.nan)
    bse = nan if fitted.get("bse_") is None else fitted["bse_"]
    icpt = [fitted.get("intercept_bse_", np.nan)] * lead
    return dict(fitted, bse_=pd.Series(np.r_[icpt, bse], index=index, name="std_err"),
                pvalues_=pd.Series(np.r_[[np.nan] * lead, fitted["pvalues_"]],
                                   index=index, name="pvalue"))
