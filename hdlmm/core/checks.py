"""Checks of the data arrays (X, y, groups, Z, a), with one message style: name the
problem and the fix. The checks of parameters and of fitted supports are in
:mod:`hdlmm.model.checks` and :mod:`hdlmm.api.params`."""

from __future__ import annotations

import numbers
import warnings

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import sparse
from sklearn.exceptions import DataConversionWarning

__all__ = ["NonNumericError", "all_finite", "check_a", "check_groups", "check_lmm_arrays",
           "check_weights"]


class NonNumericError(ValueError, TypeError):
    """Input that cannot be converted to numbers (both a ValueError and a TypeError)."""

def _as_float_matrix(A, name, n_rows=None, allow_1d=True, allow_no_columns=False):
    """2-D float array, or a ValueError naming ``name``.

    ``allow_1d`` turns a 1-D array into one column (for Z); X must be 2-D, as in
    scikit-learn, so a vector of n features is not mistaken for n rows.
    """
    if A is None:
        raise ValueError(f"{name} is None; pass an array")
    if sparse.issparse(A):
        raise ValueError(f"{name} is a scipy sparse matrix, and sparse input is not "
                         f"supported; pass a dense array ({name}.toarray())")
    if isinstance(A, pd.DataFrame):
        bad = [c for c in A.columns if not (pd.api.types.is_numeric_dtype(A[c])
                                            or pd.api.types.is_bool_dtype(A[c]))]
        if bad:
            raise ValueError(
                f"{name} has non-numeric columns {bad[:5]}; encode them (e.g. "
                f"pandas.get_dummies) or use SparseLMM.from_formula, which does")
        A = A.to_numpy(dtype=float, na_value=np.nan)  # pd.NA of nullable dtypes: NaN
    elif isinstance(A, pd.Series) and pd.api.types.is_numeric_dtype(A):
        A = A.to_numpy(dtype=float, na_value=np.nan)
    raw = np.asarray(A)
    if raw.dtype.kind == "c":
        raise ValueError(f"Complex data not supported: {name} has complex values; pass "
                         f"real numbers")
    try:
        arr = raw.astype(float, copy=False)
    except (TypeError, ValueError) as exc:
        raise NonNumericError(
            f"{name} must be numeric; could not convert it to float ({exc}). "
            f"Encode categorical columns first (e.g. pandas.get_dummies)") from None
    if arr.ndim == 1 and allow_1d:
        arr = arr[:, None]
    elif arr.ndim == 1:
        raise ValueError(f"{name} must be 2-dimensional (n_samples, n_features); got a "
                         f"1-D array of {arr.size} values. Reshape your data: "
                         f"{name}.reshape(-1, 1) for one feature, {name}.reshape(1, -1) "
                         f"for one row")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-dimensional (n_samples, n_columns); "
                         f"got {arr.ndim} dimensions")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 rows); pass at least one row per cluster")
    if arr.shape[1] == 0 and not allow_no_columns:
        raise ValueError(f"{name} has 0 feature(s) (shape={arr.shape}) while a minimum of "
                         f"1 is required; pass at least one column")
    _check_finite(arr, name)
    return arr

def all_finite(arr: np.ndarray) -> bool:
    """Whether every value of ``arr`` is finite. A finite sum proves it (NaN and inf
    propagate) at the cost of one read; only an overflowing sum or a bad value pays
    for the elementwise check."""
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.sum(arr)):
            return True
    return bool(np.all(np.isfinite(arr)))

def _check_finite(arr, name):
    if not all_finite(arr):
        bad = ~np.isfinite(arr)
        rows = np.unique(np.nonzero(bad)[0])
        kind = "NaN" if np.isnan(arr[bad]).any() else "inf"
        raise ValueError(
            f"{name} contains {kind} values in {rows.size} row(s) (first: row {rows[0]}); "
            f"drop or impute them before fitting (hdlmm never drops rows silently)")

def check_groups(groups: ArrayLike, n_rows: int) -> tuple:
    """Validate cluster labels; return (codes, labels) with labels in sorted order.

    Labels may be any hashable values; codes index into ``labels``. Sorting makes the
    result independent of the row order.
    """
    if groups is None:
        raise ValueError("groups is required: pass one cluster label per row "
                         "(e.g. groups=df['subject'])")
    if isinstance(groups, np.ndarray) and groups.ndim == 1 and groups.size == n_rows \
            and np.issubdtype(groups.dtype, np.integer):  # fast path: no missing labels
        labels, codes = np.unique(groups, return_inverse=True)
        return codes.astype(np.intp), labels.astype(object)
    g = pd.Series(_label_array(groups) if not isinstance(groups, pd.Series)
                  else groups.to_numpy(dtype=object))
    if g.ndim != 1 or len(g) != n_rows:
        raise ValueError(f"groups has {len(g)} labels but X has {n_rows} rows; "
                         f"pass one cluster label per row")
    if g.isna().any():
        raise ValueError(f"groups has {int(g.isna().sum())} missing labels; "
                         f"give every row a cluster label")
    codes, labels = pd.factorize(g, sort=False)
    order = _sort_order(labels)
    relabel = np.empty(len(labels), dtype=np.intp)
    relabel[order] = np.arange(len(labels))
    return relabel[codes], np.asarray(labels, dtype=object)[order]

def _label_array(groups):
    """A 1-D object array of labels; tuples (e.g. (site, patient)) stay one label each."""
    arr = np.asarray(groups, dtype=object)
    if arr.ndim > 1 and len(groups) == arr.shape[0]:
        arr = np.empty(len(groups), dtype=object)
        arr[:] = list(groups)
    return arr

def _sort_order(labels):
    """Order that sorts labels; by (type name, repr) when the labels are not comparable."""
    try:
        return np.argsort(np.asarray(labels), kind="stable")
    except TypeError:
        keys = [(type(v).__name__, repr(v)) for v in labels]
        return np.array(sorted(range(len(keys)), key=keys.__getitem__), dtype=np.intp)

def check_lmm_arrays(X: np.ndarray, y: np.ndarray, groups: ArrayLike, Z: np.ndarray = None,
                     allow_no_features: bool = False) -> tuple:
    """Validate (X, y, groups, Z) for fitting.

    ``allow_no_features`` accepts an X of no columns (the null model of a formula
    ``y ~ 1 + (1 | g)``; ``fit`` refuses it, as scikit-learn's estimators do).

    Returns
    -------
    X, y, Z : float ndarrays (Z is a column of ones when not given)
    codes : ndarray of int, cluster index of each row (into ``labels``)
    labels : ndarray of object, sorted cluster labels
    """
    X = _as_float_matrix(X, "X", allow_1d=False, allow_no_columns=allow_no_features)
    n = X.shape[0]
    if y is None:
        raise ValueError("SparseLMM requires y to be passed, but the target y is None: "
                         "pass the response, one value per row of X")
    y = np.asarray(y)
    if y.dtype.kind == "c":
        raise ValueError("Complex data not supported: y has complex values; pass real "
                         "numbers")
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn("A column-vector y was passed when a 1d array was expected: y of "
                      "shape (n, 1) was raveled to shape (n,)",
                      DataConversionWarning, stacklevel=4)
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"y must be 1-dimensional; got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"y has {y.shape[0]} values but X has {n} rows; "
                         f"pass one response per row")
    try:
        y = y.astype(float)
    except (TypeError, ValueError):
        raise ValueError("y must be numeric; could not convert it to float") from None
    _check_finite(y, "y")
    if n > 1 and np.ptp(y) == 0:
        raise ValueError(f"y is constant ({y[0]:g} in every row): there is nothing to "
                         f"explain; check that the response column is the right one")
    if n == 1:
        raise ValueError("X has 1 sample (n_samples = 1); a mixed model needs at least 2 "
                         "clusters of rows")
    codes, labels = check_groups(groups, n)
    if labels.size < 2:
        raise ValueError(f"groups has {labels.size} cluster; a mixed model needs at "
                         f"least 2 clusters")
    if Z is None:
        Z = np.ones((n, 1))
    else:
        Z = _as_float_matrix(Z, "Z")
        if Z.shape[0] != n:
            raise ValueError(f"Z has {Z.shape[0]} rows but X has {n} rows; "
                             f"pass one row of random-effect covariates per row of X")
        _reject_block_diagonal(Z, codes, labels.size)
    return X, y, Z, codes, labels

def _reject_block_diagonal(Z, codes, n_clusters):
    """Raise if Z is the N × (n·q) block-diagonal layout instead of row-wise N × q."""
    width, rem = divmod(Z.shape[1], n_clusters)
    if rem or width < 1 or Z.shape[1] < 2 * width:
        return
    nz = Z != 0
    blocks = np.arange(Z.shape[1]) // width
    used = np.zeros((n_clusters, n_clusters), dtype=bool)
    np.logical_or.at(used, (codes[:, None], blocks[None, :]), nz)
    if np.all(used.sum(axis=1) <= 1) and np.unique(used.argmax(axis=1)).size == n_clusters:
        raise ValueError(
            f"Z looks block-diagonal ({Z.shape[0]} × {Z.shape[1]} = {n_clusters} clusters × "
            f"{width} columns); pass the row-wise random-effect design of shape "
            f"({Z.shape[0]}, {width}) instead, like statsmodels' exog_re (for a "
            f"block-diagonal Zb: Zb.reshape(len(Zb), -1, {width}).sum(axis=1))")

def check_a(a: float, name: str = "a") -> float:
    """Validate one proxy parameter a ≥ 0."""
    if type(a) in (float, np.float64) and 0.0 <= a < np.inf:  # (the fits' own: no ABC)
        return float(a)
    if isinstance(a, bool) or not isinstance(a, numbers.Real):
        raise ValueError(f"{name} must be a non-negative number; got {a!r}")
    if not np.isfinite(a) or a < 0:
        raise ValueError(f"{name} must be finite and ≥ 0 (0 ignores the clustering); "
                         f"got {a}")
    return float(a)


def check_weights(weights: ArrayLike, n_rows: int) -> np.ndarray:
    """Observation weights as positive finite floats, one per row."""
    w = _as_float_matrix(weights, "sample_weight", allow_1d=True).ravel()
    if w.size != n_rows:
        raise ValueError(f"sample_weight has {w.size} values but X has {n_rows} rows; "
                         f"pass one weight per row")
    bad = np.flatnonzero(~(w > 0))
    if bad.size:
        raise ValueError(f"sample_weight must be positive: {bad.size} value(s) are zero, "
                         f"negative or NaN (first: row {bad[0]}, {w[bad[0]]!r}); drop "
                         f"those rows instead of giving them weight 0")
    return w
