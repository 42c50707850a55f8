"""Folds of clusters for the grouped cross-validation: which fold each cluster goes to,
and where it sits in the statistics' (fold, label) order."""

from __future__ import annotations

from functools import cached_property

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.utils import check_random_state

__all__ = ["FoldLayout"]


class FoldLayout:
    """Where each cluster goes: its fold (dealt at random) and its position in the
    statistics' (fold, label) order. Built once from all the labels, it makes chunks of
    rows, files and Dask partitions agree on the folds.

    Parameters
    ----------
    labels : ndarray of object
        All cluster labels, in sorted order (as :func:`hdlmm.core.checks.check_groups`).
    n_blocks : int
    random_state : int, RandomState or None
    """

    def __init__(self, labels: np.ndarray, n_blocks: int,
                 random_state: int | np.random.RandomState | None) -> None:
        if n_blocks > labels.size:
            raise ValueError(f"cannot deal {labels.size} clusters into {n_blocks} folds; "
                             f"pass cv ≤ {labels.size}")
        block_of = _deal_blocks(labels.size, n_blocks, random_state)
        order = np.lexsort((np.arange(labels.size), block_of))
        self.position = np.empty_like(order)
        self.position[order] = np.arange(order.size)
        self.labels = labels[order]  # in statistics order
        self.block = block_of[order]
        self.n_blocks = n_blocks
        self._labels = labels

    @cached_property
    def _index(self) -> pd.Index:
        """The labels as an index (made when rows are first placed by label)."""
        return pd.Index(self._labels)

    def positions(self, groups: ArrayLike) -> np.ndarray:
        """Statistics position of each row's label; an error for unknown labels."""
        codes = self._index.get_indexer(pd.Index(groups))
        if np.any(codes < 0):
            bad = pd.Index(groups)[codes < 0][0]
            raise ValueError(f"cluster label {bad!r} was not seen when the folds were "
                             f"laid out; build the layout from every label of the data")
        return self.position[codes]


def _deal_blocks(n, K, random_state):
    """Deal n clusters (in sorted-label order) into K blocks of near-equal size."""
    if K == 1:
        return np.zeros(n, dtype=np.intp)
    perm = check_random_state(random_state).permutation(n)
    block = np.empty(n, dtype=np.intp)
    block[perm] = np.arange(n) % K
    return block
