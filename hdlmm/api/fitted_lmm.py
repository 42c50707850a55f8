"""What a fitted SparseLMM answers: predictions (with or without the random effects,
and intervals), the training rows' fitted values and residuals, the debiased
confidence intervals and the summary (:class:`FittedLMM`, a mixin of
:class:`~hdlmm.api.estimator.SparseLMM`; its fitted attributes are set by the fit)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.utils.validation import check_is_fitted

from hdlmm.api.params import (
    check_predict_groups,
    check_predict_X,
    match_columns,
    warn_unseen_clusters,
)
from hdlmm.model.deferred import DeferredTable
from hdlmm.sources.formula import design_offset, design_rows

if TYPE_CHECKING:
    from hdlmm.api.summary import Summary

__all__ = ["FittedLMM"]


def _kind(kind):
    if kind not in ("conditional", "marginal"):
        raise ValueError(f"kind must be 'conditional' or 'marginal'; got {kind!r}")
    return kind


class _TableAttribute:
    """A fitted DataFrame attribute (``path_``, ``cv_results_``) that the fit leaves as
    a :class:`~hdlmm.model.deferred.DeferredTable`: made when first read, then kept
    as an ordinary attribute. Absent (AttributeError) before a fit sets it."""

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        deferred = obj.__dict__.get("_deferred_tables", {}).get(self.name)
        if deferred is None:
            raise AttributeError(f"{type(obj).__name__!r} object has no attribute "
                                 f"{self.name!r}")
        table = obj.__dict__[self.name] = deferred.make()  # later reads find it here
        return table


class FittedLMM:
    """The queries of a fitted linear mixed model (the attributes ``coef_``,
    ``intercept_``, ``random_effects_``, ``scale_``, ``inference_``, the training rows'
    ``fittedvalues_``, ``fittedvalues_marginal_`` and ``resid_``, and, after a formula
    fit, ``formula_design_``), and how a fit sets and forgets them (``path_`` and
    ``cv_results_`` made when first read)."""

    path_ = _TableAttribute()
    cv_results_ = _TableAttribute()

    def __getstate__(self):
        """Pickled with the deferred tables made (their makers are closures)."""
        for name in self.__dict__.get("_deferred_tables", {}):
            getattr(self, name)
        state = super().__getstate__()
        state.pop("_deferred_tables", None)
        return state

    def _reset_fitted(self):
        """Forget every fitted attribute of an earlier fit (scikit-learn's contract: a
        new ``fit`` leaves nothing of the previous one, e.g. its ``feature_names_in_``
        or formula design)."""
        for name in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
            delattr(self, name)
        self.__dict__.pop("_deferred_tables", None)

    def _set(self, attributes):
        """Set the fitted attributes; deferred tables are kept to be made when first
        read (:class:`_TableAttribute`)."""
        for name, value in attributes.items():
            if isinstance(value, DeferredTable):
                self.__dict__.setdefault("_deferred_tables", {})[name] = value
                self.__dict__.pop(name, None)
            else:
                setattr(self, name, value)

    def predict(self, X: ArrayLike, groups: ArrayLike | None = None, Z: ArrayLike | None = None,
                random_effects: bool = True) -> np.ndarray:
        """Predict y.

        Without ``groups`` (or with ``random_effects=False``): the marginal prediction
        X β̂ + β̂₀. With ``groups``: rows of clusters seen in ``fit`` add Z_i γ̂_i (their
        BLUP); rows of new clusters get the marginal prediction (γ = 0, its mean).

        Parameters
        ----------
        X : array-like of shape (N, p)
        groups : array-like of shape (N,), optional
        Z : array-like of shape (N, q), optional
            Random-effect design of the rows (default: a random intercept).
        random_effects : bool

        Returns
        -------
        ndarray of shape (N,), or a pandas Series on X's index when X is a DataFrame
        """
        check_is_fitted(self, "coef_")
        index = X.index if isinstance(X, pd.DataFrame) else None
        X = check_predict_X(match_columns(X, getattr(self, "feature_names_in_", None)),
                            self.coef_.size)
        pred = X @ self.coef_ + self.intercept_
        if groups is not None and random_effects and self.random_effects_ is not None:
            Z, groups = check_predict_groups(X, groups, Z, self.random_effects_.shape[1])
            gamma = self.random_effects_.reindex(pd.Index(groups)).to_numpy()
            warn_unseen_clusters(np.isnan(gamma).any(axis=1), groups,
                                 self.random_effects_.index)
            pred = pred + np.nan_to_num(np.einsum("ij,ij->i", Z, gamma), nan=0.0)
        return pred if index is None else pd.Series(pred, index=index, name="prediction")

    def fitted(self, kind: str = "conditional") -> pd.Series:
        """Fitted values of the training rows: ``"conditional"`` Xβ̂ + β̂₀ + Zγ̂ (lme4's
        ``fitted()``) or ``"marginal"`` Xβ̂ + β̂₀."""
        return self._training_rows("fittedvalues_" if _kind(kind) == "conditional"
                                   else "fittedvalues_marginal_")

    def residuals(self, kind: str = "conditional", scaled: bool = False) -> pd.Series:
        """Residuals of the training rows, y minus the ``"conditional"`` or ``"marginal"``
        fitted values; ``scaled`` divides them by σ̂ (lme4's scaled residuals)."""
        resid = self._training_rows("resid_")
        if _kind(kind) == "marginal":
            resid = resid + self.fittedvalues_ - self.fittedvalues_marginal_
        resid = resid.rename(f"resid_{kind}")
        if scaled:
            if self.scale_ is None:
                raise ValueError("scaled residuals need σ̂: the model has no variance "
                                 "components (vc_method=None or no groups)")
            resid = resid / np.sqrt(self.scale_)
        return resid

    def _training_rows(self, name):
        check_is_fitted(self, "coef_")
        value = getattr(self, name, None)
        if value is None:
            raise ValueError("fitted values and residuals are kept for fits on rows in "
                             "memory (fit, from_formula); for a fit on a file, Dask or "
                             "statistics, predict on the rows: predict(X, groups, Z)")
        return value

    def predict_interval(self, X: ArrayLike, groups: ArrayLike | None = None,
                         Z: ArrayLike | None = None, level: float = 0.95) -> pd.DataFrame:
        """Prediction intervals for new observations (see
        :func:`hdlmm.api.prediction.prediction_interval`): rows of clusters seen in fit
        use their BLUPs and conditional variance, rows of new clusters (or without
        ``groups``) the marginal prediction with the random effects' variance.

        Returns
        -------
        pandas.DataFrame with columns ``prediction``, ``se`` (of the prediction error),
        ``lower``, ``upper`` and ``seen`` (the row's cluster was in fit).
        """
        from hdlmm.api.prediction import prediction_interval

        check_is_fitted(self, "coef_")
        return prediction_interval(self, X, groups, Z, level)

    def predict_frame(self, data: pd.DataFrame, random_effects: bool = True) -> pd.Series:
        """Predict for the rows of a DataFrame, encoded as in ``fit_formula``.

        Rows of clusters seen in fit add their BLUPs (unless ``random_effects=False``),
        and the formula's ``offset(...)`` evaluated on ``data``.
        """
        design = getattr(self, "formula_design_", None)
        if design is None:
            raise ValueError("predict_frame needs a model fitted by from_formula or "
                             "fit_formula; use predict(X, groups, Z) otherwise")
        X, groups, Z = design_rows(design, data, random_effects)
        pred = self.predict(X, groups=groups, Z=Z, random_effects=random_effects)
        offset = design_offset(design, data)
        return pred if offset is None else pred + offset

    def confint(self, level: float = 0.95) -> pd.DataFrame:
        """Debiased confidence intervals of the ``inference`` coordinates.

        Intervals β̃_j ± t · se_j from the debiased estimator of Li, Cai & Li (2022) with
        cluster-robust standard errors; valid after selection, unlike Wald intervals on
        the selected support (``bse_``). The method is in ``inference_.method``.

        Returns
        -------
        pandas.DataFrame with one row per coordinate, lower and upper bounds.
        """
        check_is_fitted(self, "coef_")
        if self.inference_ is None:
            raise ValueError("no inference was computed: fit with inference='support', "
                             "'all' or a list of columns")
        return self.inference_.confint(level)

    def summary(self) -> Summary:
        """The summary of the fitted model, laid out as lme4's: a ``str`` (print it)
        that renders as HTML tables in notebooks (:class:`hdlmm.api.summary.Summary`)."""
        from hdlmm.api.summary import summarize

        check_is_fitted(self, "coef_")
        return summarize(self)

