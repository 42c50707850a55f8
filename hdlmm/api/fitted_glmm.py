"""What a fitted SparseGLMM answers: the summary laid out as glmer's, confidence
intervals (debiased or Wald), the linear predictor, the mean on the response scale and
class probabilities (:class:`FittedGLMM`, a mixin of
:class:`~hdlmm.api.glmm_estimator.SparseGLMM`; its fitted attributes are set by the
fit)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import special
from scipy import stats as sps
from sklearn.utils.validation import check_is_fitted

from hdlmm.api.params import check_predict_groups, check_predict_X, match_columns
from hdlmm.sources.formula import design_offset, design_rows

__all__ = ["FittedGLMM"]


class FittedGLMM:
    """The queries of a fitted generalized linear mixed model (the attributes
    ``coef_``, ``intercept_``, ``random_effects_``, ``cov_re_``, ``params_``, ``bse_``,
    ``pvalues_``, ``loglik_``, ``inference_`` and, after a formula fit,
    ``formula_design_``)."""

    def predict_frame(self, data: pd.DataFrame, random_effects: bool = True) -> np.ndarray:
        """:meth:`predict` for the rows of a DataFrame, encoded as in ``from_formula``
        (with the formula's offset evaluated on ``data``)."""
        design = getattr(self, "formula_design_", None)
        if design is None:
            raise ValueError("predict_frame needs a model fitted by from_formula")
        X, groups, Z = design_rows(design, data, random_effects)
        return self.predict(X, groups, Z, offset=design_offset(design, data),
                            random_effects=random_effects)

    def summary(self) -> str:
        """The fit laid out as lme4's ``summary(glmer(...))``: family and link, formula,
        how the support was selected, the Laplace log-likelihood with AIC and BIC, the
        random effects, and the fixed effects with Wald SEs (which ignore the
        selection step)."""
        check_is_fitted(self, "coef_")
        link = "logit" if self.family == "binomial" else "log"
        q = self.cov_re_.shape[0]
        df = self.support_.size + 1 + q * (q + 1) // 2
        n = int(self.working_model_.stats_.n_samples)
        aic, bic = -2 * self.loglik_ + 2 * df, -2 * self.loglik_ + df * np.log(n)
        group = getattr(self, "group_name_", None) or "group"
        lines = ["Generalized linear mixed model fit by maximum likelihood (Laplace "
                 "approximation) ['glmerMod'-like, hdlmm]",
                 f" Family: {self.family}  ( {link} )"]
        if getattr(self, "formula_", None):
            lines.append(f"Formula: {self.formula_}")
        forced = list(getattr(self, "forced_features_", []))
        kept = f" (and {len(forced)} forced: {', '.join(forced)})" if forced else ""
        lines += [f"Selection: k = {self.support_size_}{kept} by best subset on the PQL "
                  f"working model ({self.n_iter_} iterations); a = {self.a_:g}",
                  f"  ({self.selection_})",
                  "", f"{'AIC':>10}{'BIC':>10}{'logLik':>10}{'df':>5}",
                  f"{aic:>10.1f}{bic:>10.1f}{self.loglik_:>10.1f}{df:>5d}",
                  "", "Random effects:",
                  f" {'Groups':<10}{'Name':<14}{'Variance':>12}{'Std.Dev.':>10}"]
        for i, name in enumerate(self.random_effects_.columns):
            var = self.cov_re_[i, i]
            lines.append(f" {group if i == 0 else '':<10}{name:<14}{var:>12.5g}"
                         f"{np.sqrt(max(var, 0)):>10.5g}")
        lines.append(f"Number of obs: {n}, groups:  {group}, {self.random_effects_.shape[0]}")
        on = np.r_[0, self.support_ + 1]
        tab = pd.DataFrame({"estimate": self.params_.iloc[on], "std.err": self.bse_.iloc[on]})
        tab["z"] = tab["estimate"] / tab["std.err"]
        tab["p"] = self.pvalues_.iloc[on]
        lines += ["", "Fixed effects (the selected support; Wald SEs, which ignore the "
                      "selection step):"]
        lines += [" " + ln for ln in tab.to_string(float_format=lambda v: f"{v:.5g}")
                  .splitlines()]
        if self.inference_ is not None:
            table = self.inference_.table()
            lines += ["", f"Debiased inference on the working model at the Laplace fit "
                          f"({self.inference_.method})."]
            if self.family == "binomial":
                lines.append("Caution: for binary outcomes its 95% intervals covered 91% "
                             "in simulation (p > N; benchmarks/RESULTS.md), below nominal:")
            else:
                lines[-1] += ":"
            lines += [" " + ln for ln in table.to_string(float_format=lambda v: f"{v:.4g}")
                      .splitlines()]
        return "\n".join(lines)

    def confint(self, level: float = 0.95, kind: str = "debiased") -> pd.DataFrame:
        """Confidence intervals of the fixed effects.

        ``kind="debiased"``: β̃_j ± t · se_j of the ``inference`` coordinates, from the
        debiased estimator on the final working model with cluster-robust SEs (they
        account for the selection step); ``"wald"``: β̂_j ± z · se_j of the Laplace fit
        on the selected support (glmer's Wald intervals, which ignore it).

        Returns
        -------
        pandas.DataFrame, one row per coordinate, lower and upper bounds.
        """
        check_is_fitted(self, "coef_")
        if kind == "wald":
            on = np.r_[0, self.support_ + 1]
            half = sps.norm.ppf(0.5 + level / 2) * self.bse_.iloc[on]
            est = self.params_.iloc[on]
            pct = f"{100 * (1 - level) / 2:g}"
            return pd.DataFrame({f"{pct}%": est - half, f"{100 - float(pct):g}%": est + half})
        if kind != "debiased":
            raise ValueError(f"kind must be 'debiased' or 'wald'; got {kind!r}")
        if self.inference_ is None:
            raise ValueError("no debiased inference was computed: fit with "
                             "inference='support', 'all' or a list of columns")
        return self.inference_.confint(level)

    def decision_function(self, X: ArrayLike, groups: ArrayLike | None = None,
                          Z: ArrayLike | None = None, offset: ArrayLike | None = None,
                          random_effects: bool = True) -> np.ndarray:
        """The linear predictor η: Xβ̂ + β̂₀ (+ offset), plus Zγ̂ for rows of clusters
        seen in fit (γ = 0 for new clusters, or with ``random_effects=False``)."""
        check_is_fitted(self, "coef_")
        X = check_predict_X(match_columns(X, getattr(self, "feature_names_in_", None)),
                            self.coef_.size)
        eta = X @ self.coef_ + self.intercept_
        if offset is not None:
            eta = eta + np.asarray(offset, dtype=float)
        if groups is not None and random_effects:
            Z, groups = check_predict_groups(X, groups, Z, self.random_effects_.shape[1])
            gamma = self.random_effects_.reindex(pd.Index(groups)).to_numpy()
            eta = eta + np.nan_to_num(np.einsum("ij,ij->i", Z, gamma), nan=0.0)
        return eta

    def predict(self, X: ArrayLike, groups: ArrayLike | None = None, Z: ArrayLike | None = None,
                offset: ArrayLike | None = None, random_effects: bool = True) -> np.ndarray:
        """The mean on the response scale: the probability (binomial, per trial) or the
        expected count (Poisson), conditional on the random effects of seen clusters
        (see :meth:`decision_function`). New clusters get γ = 0 (the conditional mean
        at the average cluster, not the population-averaged mean)."""
        eta = self.decision_function(X, groups, Z, offset, random_effects)
        return special.expit(eta) if self.family == "binomial" else np.exp(eta)

    def predict_proba(self, X: ArrayLike, groups: ArrayLike | None = None,
                      Z: ArrayLike | None = None, offset: ArrayLike | None = None,
                      random_effects: bool = True) -> np.ndarray:
        """Binomial only: [P(y = 0), P(y = 1)] of each row (scikit-learn's layout)."""
        if self.family != "binomial":
            raise ValueError("predict_proba is for the binomial family; use predict for "
                             "the expected count")
        p = self.predict(X, groups, Z, offset, random_effects)
        return np.c_[1.0 - p, p]
