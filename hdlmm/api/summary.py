"""Text summary of a fitted SparseLMM, laid out as lme4's ``summary(lmer(...))``.

The parts an lme4 user looks for, in lme4's order: the criterion at convergence with
AIC, BIC and the log-likelihood, the scaled residuals, the random effects (variance, SD
and correlation), the number of observations and groups, the fixed effects with their
own standard errors, and the correlation of the fixed effects; then what lme4 does not
have: how the support was selected, and the debiased inference that is valid after it.
Every table pairs an estimate with its own estimator's standard error and says which.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hdlmm.api.estimator import SparseLMM

import numpy as np
import pandas as pd
from scipy import stats as sps

__all__ = ["Summary", "summarize", "fixed_effects_table"]


def fixed_effects_table(model: SparseLMM) -> pd.DataFrame:
    """The reported fixed effects on the support (and intercept) with their own SEs.

    Columns ``estimate``, ``std.err``, ``z`` and ``p`` (two-sided, normal, as
    statsmodels' MixedLM; lme4 prints no p-values). The SEs are those of the GLS
    estimate under Ψ̂, σ̂² (``model.estimator_``) and ignore the selection step; with
    ``refit=False`` the proxy estimate has none (NaN).
    """
    free = 1 if model.stats_.intercept else 0
    rows = np.r_[np.arange(free), model.support_ + free].astype(int)
    tab = pd.DataFrame({"estimate": model.params_.iloc[rows],
                        "std.err": model.bse_.iloc[rows]}, dtype=float)
    tab["z"] = tab["estimate"] / tab["std.err"]
    tab["p"] = 2 * sps.norm.sf(np.abs(tab["z"]))
    return tab


def _header(model):
    vc = model.variance_components_
    how = f"by {vc.method}" if vc is not None else "without variance components"
    lines = [f"Linear mixed model fit {how} (hdlmm; fixed effects selected by best subset)"]
    formula = getattr(model, "formula_", None)
    if formula:
        lines.append(f"Formula: {formula}")
    a = f"a = {model.a_:g}; " if np.isfinite(model.a_) else ""
    forced = list(getattr(model, "forced_features_", []))
    n_pen = model.coef_.size - len(forced)
    kept = f" (and {len(forced)} forced: {', '.join(forced)})" if forced else ""
    lines += [f"Selection: k = {model.support_size_} of {n_pen} candidate fixed "
              f"effects{kept}; {a}{model.selection_}"]
    if vc is None:
        return lines
    name = "REML criterion at convergence" if vc.method == "REML" else "deviance"
    lines += ["", f"{name}: {vc.criterion:.4f}",
              f"{'AIC':>10}{'BIC':>10}{'logLik':>10}{'df':>5}",
              f"{model.aic_:>10.1f}{model.bic_:>10.1f}{model.llf_:>10.1f}"
              f"{model.df_model_:>5d}"]
    return lines


def _residual_lines(model):
    quant = getattr(model, "residual_quantiles_", None)
    if quant is None:
        return []
    head = "".join(f"{h:>9}" for h in ("Min", "1Q", "Median", "3Q", "Max"))
    return ["", "Scaled residuals (conditional, y − Xβ̂ − Zγ̂ over σ̂):", head,
            "".join(f"{v:>9.4f}" for v in quant)]


def _random_effects_lines(model):
    vc = model.variance_components_
    if vc is None:
        return ["", "Random effects: not fitted"]
    group = getattr(model, "group_name_", None) or "group"
    names = list(model.random_effects_.columns)
    sd = np.sqrt(np.clip(np.diag(vc.cov_re), 0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = vc.cov_re / np.outer(sd, sd)
    w = max(len(group), 8) + 1
    lines = ["", "Random effects:",
             f" {'Groups':<{w}}{'Name':<14}{'Variance':>12}{'Std.Dev.':>10}  Corr"]
    for i, nm in enumerate(names):
        cr = " ".join(f"{corr[i, j]:6.3f}" for j in range(i) if vc.cov_re[i, j] != 0
                      or corr[i, j] != 0)
        lines.append(f" {group if i == 0 else '':<{w}}{nm:<14}{vc.cov_re[i, i]:>12.5g}"
                     f"{sd[i]:>10.5g}  {cr}")
    lines.append(f" {'Residual':<{w}}{'':<14}{vc.scale:>12.5g}{np.sqrt(vc.scale):>10.5g}")
    s = model.stats_
    lines.append(f"Number of obs: {s.n_samples}, groups:  {group}, {s.n_clusters} "
                 f"(sizes {s.n_obs.min()}-{s.n_obs.max()})")
    return lines


def _fixed_effects_lines(model):
    tab = fixed_effects_table(model)
    lines = ["", f"Fixed effects ({model.estimator_}; the selected support; the SEs "
                 f"ignore the selection step):"]
    lines += [" " + ln for ln in tab.to_string(float_format=lambda v: f"{v:.5g}")
              .splitlines()]
    vc = model.variance_components_
    if vc is not None and getattr(model, "refit", True) and 1 < len(tab) <= 12:
        sd = np.sqrt(np.diag(vc.cov_coef))
        corr = vc.cov_coef / np.outer(sd, sd)
        short = [str(nm)[:6] for nm in tab.index]
        lines += ["", "Correlation of Fixed Effects:",
                  " " + " " * 12 + "".join(f"{nm:>8}" for nm in short[:-1])]
        for i in range(1, len(tab)):
            lines.append(f" {str(tab.index[i])[:12]:<12}"
                         + "".join(f"{corr[i, j]:>8.3f}" for j in range(i)))
    return lines


class Summary(str):
    """The summary of a fitted model: its text (``str()``, ``print``) and, for
    notebooks, an HTML rendering of the same parts (``_repr_html_``). ``tables`` holds
    the parts as data frames: ``random_effects``, ``fixed_effects``, ``correlation``
    and ``debiased`` (None when the model has none)."""

    tables: dict
    header: list

    def __new__(cls, text: str, header: list, tables: dict) -> Summary:
        obj = super().__new__(cls, text)
        obj.header, obj.tables = header, tables
        return obj

    def _repr_html_(self) -> str:
        titles = {"fit": "Fit",
                  "random_effects": "Random effects",
                  "fixed_effects": "Fixed effects (the selected support; the SEs ignore "
                                   "the selection step)",
                  "correlation": "Correlation of fixed effects",
                  "debiased": "Debiased inference, valid after selection"}
        parts = ["<div class='hdlmm-summary'>"]
        parts += [f"<p>{html.escape(line)}</p>" for line in self.header if line]
        for key, title in titles.items():
            tab = self.tables.get(key)
            if tab is not None:
                named = tab.index.name is not None or not isinstance(tab.index,
                                                                      pd.RangeIndex)
                tab = tab.rename_axis(None) if named else tab
                parts += [f"<h4>{html.escape(title)}</h4>",
                          tab.to_html(float_format=lambda v: f"{v:.4g}", na_rep="",
                                      index=named)]
        return "\n".join(parts + ["</div>"])

    def __reduce__(self):
        return (Summary, (str(self), self.header, self.tables))


def _random_effects_table(model):
    vc = model.variance_components_
    if vc is None:
        return None
    names = list(model.random_effects_.columns)
    sd = np.sqrt(np.clip(np.diag(vc.cov_re), 0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = vc.cov_re / np.outer(sd, sd)
    group = getattr(model, "group_name_", None) or "group"
    rows = [(group, nm, vc.cov_re[i, i], sd[i],
             " ".join(f"{corr[i, j]:.3f}" for j in range(i))) for i, nm in enumerate(names)]
    rows.append(("Residual", "", vc.scale, np.sqrt(vc.scale), ""))
    return pd.DataFrame(rows, columns=["Groups", "Name", "Variance", "Std.Dev.", "Corr"])


def _correlation_table(model, fixed):
    vc = model.variance_components_
    if vc is None or not getattr(model, "refit", True) or len(fixed) < 2:
        return None
    sd = np.sqrt(np.diag(vc.cov_coef))
    return pd.DataFrame(vc.cov_coef / np.outer(sd, sd), index=fixed.index,
                        columns=fixed.index)


def summarize(model: SparseLMM) -> Summary:
    """The summary of a fitted :class:`~hdlmm.SparseLMM`: text laid out as lme4's, and
    its tables for the HTML rendering (:class:`Summary`)."""
    header = _header(model)
    lines = header + _residual_lines(model) + _random_effects_lines(model)
    lines += _fixed_effects_lines(model)
    inf = getattr(model, "inference_", None)
    if inf is not None:
        lines += ["", f"Debiased inference, valid after selection ({inf.method}; "
                      f"estimate = the debiased estimate with its own SE):"]
        lines += [" " + ln for ln in inf.table().to_string(
            float_format=lambda v: f"{v:.4g}").splitlines()]
    fixed = fixed_effects_table(model)
    tables = dict(fit=_fit_table(model), random_effects=_random_effects_table(model),
                  fixed_effects=fixed, correlation=_correlation_table(model, fixed),
                  debiased=None if inf is None else inf.table())
    n_head = 2 + bool(getattr(model, "formula_", None))  # title, formula, selection
    return Summary("\n".join(lines), header[:n_head], tables)


def _fit_table(model):
    """The criterion, AIC, BIC, log-likelihood, df, observations and clusters."""
    vc, s = model.variance_components_, model.stats_
    group = getattr(model, "group_name_", None) or "group"
    row = {"observations": s.n_samples, f"clusters ({group})": s.n_clusters}
    if vc is not None:
        name = "REML criterion" if vc.method == "REML" else "deviance"
        row = {name: vc.criterion, "AIC": model.aic_, "BIC": model.bic_,
               "logLik": model.llf_, "df": model.df_model_, **row}
    return pd.DataFrame([row])
