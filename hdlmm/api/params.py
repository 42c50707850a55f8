"""Checks of the estimator's parameters and of the inputs of ``predict``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from hdlmm.api.estimator import SparseLMM

import numbers
import warnings

import numpy as np
import pandas as pd

from hdlmm.core.checks import _as_float_matrix, check_a
from hdlmm.inference.debias import P_ADJUST, SMALL_SAMPLE
from hdlmm.model.checks import check_support_size
from hdlmm.model.tuning import CV_CRITERIA, IC_TYPES
from hdlmm.model.varcomp import STRUCTURES

__all__ = ["check_params", "check_predict_X", "check_predict_groups", "match_columns",
           "warn_unseen_clusters"]


def _one_of(value, name, options):
    if value not in options:
        raise ValueError(f"{name} must be one of {options}; got {value!r}")

def _positive_int(value, name, minimum, allow_none=False):
    if value is None and allow_none:
        return
    if (not isinstance(value, numbers.Integral) or isinstance(value, bool)
            or value < minimum):
        raise ValueError(f"{name} must be an integer ≥ {minimum}"
                         f"{' or None' if allow_none else ''}; got {value!r}")

def check_params(est: SparseLMM) -> None:
    """Validate a SparseLMM's parameters before any work is done."""
    if est.support_size is not None:
        check_support_size(est.support_size, np.inf, np.inf)
    if est.a is not None:
        check_a(est.a)
    _one_of(est.k_selection, "k_selection", ("ic", "cv"))
    _one_of(est.ic, "ic", IC_TYPES)
    _one_of(est.cv_criterion, "cv_criterion", CV_CRITERIA)
    _one_of(est.small_sample, "small_sample", SMALL_SAMPLE)
    _one_of(est.p_adjust, "p_adjust", P_ADJUST)
    _one_of(est.vc_method, "vc_method", ("REML", "ML", None))
    _one_of(est.cov_structure, "cov_structure", STRUCTURES)
    _one_of(est.ic_samples, "ic_samples", ("ml", "effective", "rows"))
    _one_of(est.a_selection, "a_selection", ("cv", "efficiency"))
    _one_of(est.a_search, "a_search", ("refine", "full"))
    _one_of(est.one_se, "one_se", (True, False, "paired"))
    _positive_int(est.cv, "cv", 2)
    _positive_int(est.k_max, "k_max", 1, allow_none=True)
    _positive_int(est.max_exchange, "max_exchange", 1)
    if est.screening != "auto":
        _positive_int(est.screening, "screening", 1, allow_none=True)

def check_predict_X(X: np.ndarray, n_features: int) -> np.ndarray:
    """X for ``predict``: a float matrix with the fitted number of columns (none for
    the null model of a formula)."""
    X = _as_float_matrix(X, "X", allow_1d=False, allow_no_columns=n_features == 0)
    if X.shape[1] != n_features:
        raise ValueError(f"X has {X.shape[1]} features, but SparseLMM is expecting "
                         f"{n_features} features as input; pass the same columns as in fit")
    return X

def match_columns(X: np.ndarray, fitted: ArrayLike) -> object:
    """A DataFrame's columns in the fitted order, matched by name (scikit-learn's
    convention), when the model was fitted on named columns (``fitted``); X as it is
    otherwise."""
    if fitted is None or not isinstance(X, pd.DataFrame):
        return X
    names = list(map(str, X.columns))
    missing = [c for c in fitted if c not in names]
    unknown = [c for c in names if c not in set(fitted)]
    if missing or unknown:
        raise ValueError(
            f"the columns of X do not match the fitted features: missing "
            f"{_preview(missing)}, unknown {_preview(unknown)}; pass a DataFrame with "
            f"the {len(fitted)} columns of fit (in any order)")
    if len(set(names)) != len(names):
        raise ValueError("X has repeated column names; give each column one name")
    return X.set_axis(names, axis=1)[list(fitted)]

def warn_unseen_clusters(unseen: np.ndarray, groups: ArrayLike, fitted: ArrayLike) -> None:
    """Say how many rows belong to clusters not seen in fit (they get the marginal
    prediction); when none matched, whether the labels differ only in type (3 and "3"
    after a CSV round trip)."""
    if not unseen.any():
        return
    n, N = int(unseen.sum()), unseen.size
    if n < N:
        warnings.warn(f"{n} of {N} rows belong to clusters not seen in fit; they get the "
                      f"marginal prediction (random effects 0)", UserWarning, stacklevel=3)
        return
    as_text = set(map(str, fitted))
    hint = (" The labels match the fitted ones as text: they differ in type (e.g. 3 and "
            "'3'); convert them to the type of the fitted labels "
            f"({type(fitted[0]).__name__})" if any(str(g) in as_text for g in groups[:1000])
            else "")
    warnings.warn(f"none of the {N} rows' clusters was seen in fit, so every prediction "
                  f"is the marginal one (random effects 0).{hint}", UserWarning,
                  stacklevel=3)

def _preview(names, n=5):
    """At most n names, and how many more."""
    if not names:
        return "none"
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(map(repr, names[:n])) + more

def check_predict_groups(X: np.ndarray, groups: ArrayLike, Z: np.ndarray, q: int) -> tuple:
    """(Z, groups) for ``predict`` with random effects: Z defaults to an intercept."""
    Z = np.ones((X.shape[0], 1)) if Z is None else _as_float_matrix(Z, "Z")
    if Z.shape != (X.shape[0], q):
        raise ValueError(f"Z has shape {Z.shape} but the model has {q} random effects "
                         f"and X has {X.shape[0]} rows; pass Z of shape ({X.shape[0]}, {q})")
    groups = np.asarray(groups, dtype=object)
    if groups.shape != (X.shape[0],):
        raise ValueError(f"groups has {groups.size} labels but X has {X.shape[0]} rows")
    return Z, groups
