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
           "resolve_feature_groups", "resolve_forced", "warn_unseen_clusters"]


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
    _check_force(est.force)
    _check_feature_groups(est.feature_groups)
    if est.screening != "auto":
        _positive_int(est.screening, "screening", 1, allow_none=True)

def resolve_feature_groups(feature_groups: object, names: list, n_features: int,
                           terms: dict | None = None, forced: np.ndarray | None = None) -> list:
    """The groups of columns selected together (lists of indices), from the estimator's
    ``feature_groups``: "terms" (a formula's terms of several columns, e.g. a factor's
    dummies; nothing for other front ends), "columns" (no groups), or a list of lists
    of column names or indices. Forced columns are left out of the groups."""
    if isinstance(feature_groups, str):
        if feature_groups == "columns" or terms is None:
            return []
        groups = [cols for cols in terms.values() if len(cols) > 1]
    else:
        groups = [resolve_forced(g, names, n_features) for g in feature_groups]
    forced = np.zeros(0, np.intp) if forced is None else forced
    groups = [np.setdiff1d(np.asarray(g, dtype=np.intp), forced) for g in groups]
    groups = [g for g in groups if g.size > 1]
    values, counts = np.unique(np.concatenate(groups) if groups else np.zeros(0, np.intp),
                               return_counts=True)
    if (counts > 1).any():
        twice = [names[j] for j in values[counts > 1]]
        raise ValueError(f"feature_groups puts columns {twice[:5]} in more than one group; "
                         f"each column can belong to one group only")
    return groups

def _check_feature_groups(feature_groups):
    if isinstance(feature_groups, str):
        _one_of(feature_groups, "feature_groups", ("terms", "columns"))
        return
    ok = isinstance(feature_groups, (list, tuple)) and all(
        isinstance(g, (list, tuple, np.ndarray, pd.Index)) for g in feature_groups)
    if not ok:
        raise ValueError(f"feature_groups must be 'terms', 'columns' or a list of lists of "
                         f"column names or indices (e.g. [['dose1', 'dose2']]); got "
                         f"{feature_groups!r}")

def _check_force(force):
    """``force``: None, a name or an index, or a list of names and indices."""
    items = [force] if force is None or isinstance(force, (str, numbers.Integral)) else force
    ok = isinstance(items, (list, tuple, np.ndarray, pd.Index)) and all(
        item is None and force is None or isinstance(item, str)
        or isinstance(item, numbers.Integral) and not isinstance(item, bool)
        for item in items)
    if not ok:
        raise ValueError(f"force must be a column name or index, or a list of them "
                         f"(e.g. force=['age', 'sex']); got {force!r}")

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

def resolve_forced(force: object, names: list | None, n_features: int,
                   terms: dict | None = None) -> np.ndarray:
    """Indices of the columns named by ``force`` (the estimator's parameter), sorted.

    ``force`` is None, one name or index, or a list of them. A name is a column name
    (``names``: the DataFrame's or the table's columns, or the formula's columns) or a
    term of the formula (``terms``: term → its columns, so ``"sex"`` forces every dummy
    of the factor); an integer is a column index (only for unnamed columns).
    """
    if force is None:
        return np.zeros(0, dtype=np.intp)
    items = [force] if isinstance(force, (str, numbers.Integral)) else force
    try:
        items = list(items)
    except TypeError:
        raise ValueError(f"force must be a column name, an index or a list of them; got "
                         f"{force!r}") from None
    terms = terms or {}
    out = []
    for item in items:
        if isinstance(item, numbers.Integral) and not isinstance(item, bool):
            if names is not None and not all(n == f"x{j}" for j, n in enumerate(names)):
                raise ValueError(f"force={item!r} is an index but the columns have names; "
                                 f"force columns by name (e.g. {names[0]!r})")
            if not 0 <= item < n_features:
                raise ValueError(f"force index {item} is out of range for X with "
                                 f"{n_features} columns; pass indices in 0..{n_features - 1}")
            out.append(int(item))
        elif isinstance(item, str) and item in terms:
            out += list(terms[item])
        elif isinstance(item, str) and names is not None and item in names:
            out.append(names.index(item))
        else:
            known = list(terms) + [n for n in (names or []) if n not in terms]
            raise ValueError(f"force names {item!r}, which is not a column"
                             f"{' or term' if terms else ''} of the model; known: "
                             f"{_preview(known)}")
    return np.unique(np.asarray(out, dtype=np.intp))
