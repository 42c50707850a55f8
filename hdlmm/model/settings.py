"""The settings of the choice of (a, k), passed explicitly to :mod:`hdlmm.model.selection`."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from hdlmm.core.checks import check_a

__all__ = ["DEFAULT_A_GRID", "SelectionSettings"]

#: Default grid of the proxy parameter a: 0 (ignore the clustering) and thirds of a
#: decade from 0.1 to 100 (a is a proxy of the variance ratio Ψ/σ² in the units of Z).
#: Searched from its decades (see ``a_search``); the comparison behind it is in
#: docs/decisions.md.
DEFAULT_A_GRID = np.r_[0.0, np.logspace(-1, 2, 10)]


@dataclass(frozen=True)
class SelectionSettings:
    """How the proxy parameter a and the support size k are chosen.

    The fields are the parameters of :class:`hdlmm.SparseLMM` of the same names (see
    its docstring); :meth:`from_params` picks them out of ``get_params()``.
    """

    support_size: int | None = None
    a: float | None = None
    a_grid: Any = None
    a_search: str = "refine"
    k_max: int | None = None
    k_selection: str = "ic"
    ic: str = "ebic"
    ic_samples: str = "ml"
    cv: int = 5
    cv_criterion: str = "loglik"
    one_se: bool | str = "paired"
    max_exchange: int = 2
    progress: bool | None = None

    @classmethod
    def from_params(cls, params: dict) -> SelectionSettings:
        """The settings among an estimator's parameters (others are ignored)."""
        return cls(**{f.name: params[f.name] for f in fields(cls) if f.name in params})

    @property
    def needs_cv(self) -> bool:
        """Whether the grouped cross-validation runs (a chosen, or k chosen by CV)."""
        return self.a is None or (self.support_size is None and self.k_selection == "cv")

    def grid(self) -> np.ndarray:
        """The grid of a, sorted, without repeats."""
        grid = DEFAULT_A_GRID if self.a_grid is None else np.atleast_1d(self.a_grid)
        if grid.size == 0:
            raise ValueError("a_grid is empty; pass at least one value of a ≥ 0, or "
                             "None for the default grid")
        return np.unique([check_a(float(v), "a_grid values") for v in grid])
