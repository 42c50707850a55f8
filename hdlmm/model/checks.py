"""Checks of a support size and of a selected support against the statistics."""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence

import numpy as np

from hdlmm.core.aliasing import column_basis
from hdlmm.core.splicing import _inverse_pd
from hdlmm.core.stats import ClusterStats

__all__ = ["check_forced_columns", "check_support_rank", "check_support_size",
           "warn_constant_columns"]


def check_support_size(k: int, n_features: int, n_samples: int) -> int:
    """Validate a support size against the data."""
    if not isinstance(k, numbers.Integral) or isinstance(k, bool):
        raise ValueError(f"support_size must be a non-negative integer or None; got "
                         f"{k!r}")
    if k < 0:
        raise ValueError(f"support_size must be at least 0 (0: the null model, no "
                         f"candidate predictor); got {k}")
    if k > n_features:
        raise ValueError(f"support_size={k} exceeds the number of features "
                         f"({n_features}); pass at most {n_features}")
    if k >= n_samples:
        raise ValueError(f"support_size={k} is not below the number of rows "
                         f"({n_samples}); the fit on the support would be exact. "
                         f"Pass at most {n_samples - 1}")
    return int(k)

def warn_constant_columns(stats: ClusterStats, free: Sequence[int]) -> None:
    """Warn about columns of X that are constant (they duplicate the intercept): on
    standardised statistics, the columns whose values are all equal."""
    const = stats.constant_columns()
    if free and const.size:
        names = [stats.feature_names[j + len(free)] for j in const[:5]]
        warnings.warn(f"{const.size} column(s) of X are constant ({names}"
                      f"{', ...' if const.size > 5 else ''}): they duplicate the intercept "
                      f"and cannot be selected; drop them", UserWarning, stacklevel=4)

def check_support_rank(stats: ClusterStats, n_lead: int, support: np.ndarray,
                       k: int) -> None:
    """Raise if the selected columns (``support``: indices into X's columns, of which
    there must be k) with the intercept (``n_lead`` = 1 column of the statistics before
    X's, or 0) are linearly dependent."""
    cols = np.r_[np.arange(n_lead), np.asarray(support) + n_lead].astype(int)
    G = stats.xtx_total[np.ix_(cols, cols)]
    if support.size < k or _inverse_pd(G, strict=True) is None:
        XtX = stats.xtx_total
        basis = column_basis(XtX)
        names = stats.feature_names
        redundant = [names[j] for j in np.r_[basis.zero, basis.dependent].astype(int)
                     if j >= n_lead]
        rank = basis.basis.size - n_lead
        raise ValueError(
            f"no {k} columns of X are linearly independent of each other and of the "
            f"intercept: X has {rank} independent columns; constant or redundant "
            f"(combinations of others): {redundant[:10]}"
            f"{' and more' if len(redundant) > 10 else ''}. Pass support_size ≤ {rank} or "
            f"drop the redundant columns")


def check_forced_columns(stats: ClusterStats, n_lead: int, forced: np.ndarray) -> None:
    """Raise if the forced columns (indices into X's columns) are out of range,
    constant, or linearly dependent on each other and the intercept: their coefficients
    would not be identified."""
    p = stats.n_features - n_lead
    bad = [int(j) for j in forced if not 0 <= j < p]
    if bad:
        raise ValueError(f"forced column index {bad[0]} is out of range for X with {p} "
                         f"columns; pass indices in 0..{p - 1} or column names")
    if forced.size == 0:
        return
    names = [stats.feature_names[j + n_lead] for j in forced]
    const = set(stats.constant_columns().tolist()) & set(forced.tolist())
    if const:
        constant = [stats.feature_names[j + n_lead] for j in sorted(const)]
        raise ValueError(f"forced column(s) {constant} are constant: they duplicate the "
                         f"intercept and have no coefficient of their own; drop them "
                         f"from force")
    cols = np.r_[np.arange(n_lead), forced + n_lead].astype(int)
    G = stats.xtx_total[np.ix_(cols, cols)]
    if _inverse_pd(G, strict=True) is None:
        basis = column_basis(G)
        dependent = [names[j - n_lead] for j in np.r_[basis.zero, basis.dependent].astype(int)
                     if j >= n_lead]
        raise ValueError(f"the forced columns {names} are linearly dependent "
                         f"(with the intercept); {dependent} are combinations of the "
                         f"others: drop them from force")
