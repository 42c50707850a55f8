"""Text summary of a fitted SparseLMM, in the manner of lme4 and statsmodels."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["summarize", "fixed_effects_table"]


def fixed_effects_table(model):
    """DataFrame of the selected fixed effects (and intercept) with GLS standard errors."""
    names = model.stats_.feature_names
    free = 1 if model.stats_.intercept else 0
    rows, index = [], []
    if free:
        index.append(names[0])
        rows.append((model.intercept_, getattr(model, "intercept_bse_", np.nan)))
    for j in model.support_:
        index.append(names[j + free])
        bse = model.bse_[j] if getattr(model, "bse_", None) is not None else np.nan
        rows.append((model.coef_[j], bse))
    tab = pd.DataFrame(rows, index=index, columns=["estimate", "std.err"])
    tab["z"] = tab["estimate"] / tab["std.err"]
    return tab


def _random_effects_lines(model):
    vc = model.variance_components_
    if vc is None:
        return ["  (not fitted: vc_method=None)"]
    names = list(model.random_effects_.columns)
    sd = np.sqrt(np.clip(np.diag(vc.cov_re), 0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = vc.cov_re / np.outer(sd, sd)
    lines = [f"  {'name':<14}{'variance':>12}{'std.dev':>10}  corr"]
    for i, nm in enumerate(names):
        cr = " ".join(f"{corr[i, j]:6.3f}" for j in range(i))
        lines.append(f"  {nm:<14}{vc.cov_re[i, i]:>12.4g}{sd[i]:>10.4g}  {cr}")
    lines.append(f"  {'residual':<14}{vc.scale:>12.4g}{np.sqrt(vc.scale):>10.4g}")
    return lines


def summarize(model):
    """The summary text of a fitted :class:`~hdlmm.SparseLMM`."""
    s = model.stats_
    sizes = s.n_obs
    vc = model.variance_components_
    lines = [
        "Sparse linear mixed model (hdlmm)",
        f"  observations: {s.n_samples}   clusters: {s.n_clusters} "
        f"(sizes {sizes.min()}-{sizes.max()}, mean {sizes.mean():.1f})   "
        f"candidate fixed effects: {model.coef_.size}   random effects: {s.n_re}",
        f"  proxy parameter a = {model.a_:g};  support size k = {model.support_size_}",
        f"  chosen: {model.selection_}",
    ]
    if vc is not None:
        lines.append(f"  variance components: {vc.method}, Ψ {model.cov_structure};  "
                     f"{'REML criterion' if vc.method == 'REML' else '-2 log-likelihood'}"
                     f" = {vc.criterion:.2f}")
    lines += ["", "Fixed effects (selected support; standard errors are model-based GLS "
              "errors on the support and ignore the selection step):"]
    tab = fixed_effects_table(model)
    lines += ["  " + ln for ln in tab.to_string(float_format=lambda v: f"{v:.4f}")
              .splitlines()]
    inf = getattr(model, "inference_", None)
    if inf is not None:
        lines += ["", f"Debiased inference, valid after selection: {inf.method}"]
        lines += ["  " + ln for ln in inf.table().to_string(
            float_format=lambda v: f"{v:.4g}").splitlines()]
    lines += ["", "Random effects:"] + _random_effects_lines(model)
    return "\n".join(lines)
