"""Two ClusterStats of the same columns merged into one (``+``): the clusters of both,
those with equal labels added, in one standardisation (the second's statistics are
re-expressed in the first's, :meth:`~hdlmm.core.stats.ClusterStats.restandardize`)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from hdlmm.core._arrays import zeros
from hdlmm.core.checks import _sort_order

if TYPE_CHECKING:
    from hdlmm.core.stats import ClusterStats

__all__ = ["merged"]


def merged(first: ClusterStats, second: ClusterStats) -> ClusterStats:
    """``first + second``: clusters with equal labels add (they must be in the same
    fold in both), the totals of each fold add, in ``first``'s standardisation.

    Parameters
    ----------
    first, second : ClusterStats

    Returns
    -------
    ClusterStats
    """
    _check_compatible(first, second)
    second = second.restandardize(first.x_shift, first.x_scale, first.z_shift,
                                  first.z_scale, first.y_shift)
    labels = np.concatenate([first.labels, second.labels])
    block = np.concatenate([first.block, second.block])
    uniq, inv = _factorize(labels)
    ublock = np.full(uniq.size, -1)
    ublock[inv] = block
    if np.any(ublock[inv] != block):
        raise ValueError("a cluster is in different folds in the two statistics; "
                         "build both with the same fold assignment")
    order = np.lexsort((np.arange(uniq.size), ublock))
    pos = np.empty_like(order)
    pos[order] = np.arange(order.size)
    tgt = pos[inv]

    def merge(u, v):
        out = zeros((uniq.size,) + u.shape[1:], dtype=u.dtype)
        np.add.at(out, tgt, np.concatenate([u, v]))
        return out

    return replace(
        first, labels=uniq[order], block=ublock[order],
        n_obs=merge(first.n_obs, second.n_obs), ZtZ=merge(first.ZtZ, second.ZtZ),
        ZtX=merge(first.ZtX, second.ZtX), Zty=merge(first.Zty, second.Zty),
        XtX=first.XtX + second.XtX, Xty=first.Xty + second.Xty,
        yty=first.yty + second.yty, n_rows=first.n_rows + second.n_rows,
        own_standard=False)


def _factorize(labels):
    """Unique labels (sorted) and the index of each input into them."""
    codes, uniq = pd.factorize(labels)
    order = _sort_order(uniq)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return np.asarray(uniq, dtype=object)[order], rank[codes]


def _check_compatible(a, b):
    if (a.XtX.shape != b.XtX.shape or a.n_re != b.n_re or a.intercept != b.intercept
            or a.z_one != b.z_one):
        raise ValueError(
            f"cannot add ClusterStats of different layouts: {a.n_blocks} vs {b.n_blocks} "
            f"folds, p={a.n_features} vs {b.n_features}, q={a.n_re} vs {b.n_re}, "
            f"intercept {a.intercept} vs {b.intercept}")
