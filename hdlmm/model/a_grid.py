"""The local search over the grid of a: every third value first, then the grid
neighbours of the current choice (used by :class:`~hdlmm.model.selection.Selector` and
:func:`~hdlmm.model.glmm_cv.choose_by_deviance`)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from hdlmm.core.transform import ProxyTransform

__all__ = ["coarse_grid", "new_neighbours", "evaluate"]


def coarse_grid(grid: ArrayLike, step: int = 3) -> list:
    """Every ``step``-th positive value of a sorted grid, its last, and 0 if present:
    decades on the default grid."""
    positive = [float(a) for a in grid if a > 0]
    keep = positive[::step]
    if positive and positive[-1] not in keep:
        keep.append(positive[-1])
    return [0.0] * bool(len(grid) > len(positive)) + keep


def new_neighbours(grid: ArrayLike, a: float, seen: list) -> list:
    """The values next to ``a`` on the sorted grid that are not in ``seen``."""
    i = int(np.searchsorted(grid, a))
    return [float(grid[j]) for j in (i - 1, i + 1)
            if 0 <= j < len(grid) and float(grid[j]) not in seen]


def evaluate(transform: ProxyTransform, seen: list, new: list) -> list:
    """Add ``new`` values of a to ``seen`` (sorted), their G(a) in one pass."""
    transform.prepare(new)
    return sorted(seen + new)
