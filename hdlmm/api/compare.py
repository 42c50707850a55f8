"""Likelihood-ratio comparison of two nested fits, as lme4's ``anova(m0, m1)``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats as sps

if TYPE_CHECKING:
    from hdlmm.api.estimator import SparseLMM

__all__ = ["compare_models"]


def compare_models(smaller: SparseLMM, larger: SparseLMM) -> pd.DataFrame:
    """Likelihood-ratio test of two nested fitted SparseLMMs on the same data.

    χ² = 2 (ℓ₁ − ℓ₀) on df₁ − df₀ degrees of freedom, from ``llf_`` and ``df_model_``.

    * Models with different fixed effects must be fitted by ML (``vc_method="ML"``):
      REML likelihoods of different fixed-effect designs are not comparable (lme4's
      ``anova`` refits by ML for this reason); this is refused.
    * Testing a variance on the boundary of its space (a random slope in or out, a
      variance of 0 under the null) makes the χ² p-value conservative: the null
      distribution is a mixture, ½χ²₀ + ½χ²₁ for one variance (Self & Liang 1987,
      JASA 82:605), whose p-value is half the one reported; ``note`` says so.
    * After selection the supports are data-dependent and the χ² reference does not
      hold; compare fits with fixed supports (``support_size``), or use the debiased
      inference.

    Parameters
    ----------
    smaller, larger : fitted SparseLMM
        The null model and the alternative.

    Returns
    -------
    pandas.DataFrame
        One row per model: ``df``, ``AIC``, ``BIC``, ``logLik``, ``deviance``, then
        ``Chisq``, ``Df`` and ``Pr(>Chisq)`` on the larger model's row; its ``attrs``
        hold the ``note``.
    """
    for m, name in ((smaller, "smaller"), (larger, "larger")):
        if getattr(m, "variance_components_", None) is None:
            raise ValueError(f"the {name} model has no fitted likelihood (fit it with "
                             f"vc_method='ML' or 'REML' and groups)")
    vcs = smaller.variance_components_, larger.variance_components_
    if vcs[0].n_samples != vcs[1].n_samples:
        raise ValueError(f"the models were fitted on different data ({vcs[0].n_samples} "
                         f"and {vcs[1].n_samples} rows); compare fits of the same rows")
    same_fixed = list(smaller.params_.index[smaller.params_ != 0]) == list(
        larger.params_.index[larger.params_ != 0])
    if vcs[0].method != vcs[1].method:
        raise ValueError("the models were fitted by different methods "
                         f"({vcs[0].method}, {vcs[1].method}); fit both with the same "
                         f"vc_method")
    if vcs[0].method == "REML" and not same_fixed:
        raise ValueError("REML likelihoods of models with different fixed effects are "
                         "not comparable; fit both with vc_method='ML'")
    ddf = larger.df_model_ - smaller.df_model_
    if ddf <= 0:
        raise ValueError(f"the larger model has {larger.df_model_} parameters, not more "
                         f"than the smaller's {smaller.df_model_}; pass the smaller "
                         f"model first")
    chisq = max(2.0 * (larger.llf_ - smaller.llf_), 0.0)
    table = pd.DataFrame({
        "df": [smaller.df_model_, larger.df_model_],
        "AIC": [smaller.aic_, larger.aic_], "BIC": [smaller.bic_, larger.bic_],
        "logLik": [smaller.llf_, larger.llf_],
        "deviance": [-2 * smaller.llf_, -2 * larger.llf_],
        "Chisq": [np.nan, chisq], "Df": [np.nan, ddf],
        "Pr(>Chisq)": [np.nan, float(sps.chi2.sf(chisq, ddf))]},
        index=["smaller", "larger"])
    table.attrs["note"] = (
        "variance parameters differ: a variance tested on its boundary (0) makes the "
        "chi-square p-value conservative (about twice the mixture's for one variance)"
        if vcs[0].n_theta != vcs[1].n_theta else "")
    return table
