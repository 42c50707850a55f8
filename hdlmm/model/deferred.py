"""Tables of a fit made when first read.

A fit's path (RSS, criterion, support and coefficients per k) and its cross-validation
table (mean and SE per (a, k)) are pandas DataFrames. Building them costs about 1 ms
of a 22 ms fit at the tutorial's size (pandas' construction, run once per fit, with
nothing of it in the processor's caches), and many fits are never asked for them
(simulation studies, bootstraps, GridSearchCV). The selection keeps their arrays in
a :class:`DeferredTable`; the estimator makes the DataFrame the first time the
attribute is read (:class:`hdlmm.api.fitted_lmm.FittedLMM`), and before it is pickled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

__all__ = ["DeferredTable", "then"]


@dataclass(frozen=True)
class DeferredTable:
    """A DataFrame that ``make()`` builds (from arrays the callable holds)."""

    make: Callable[[], pd.DataFrame]

    def then(self, change: Callable[[pd.DataFrame], pd.DataFrame]) -> DeferredTable:
        """The table ``change`` makes of this one, also deferred."""
        return DeferredTable(lambda: change(self.make()))


def then(table: DeferredTable | pd.DataFrame | None,
         change: Callable[[pd.DataFrame], pd.DataFrame]) -> DeferredTable | pd.DataFrame | None:
    """``change`` applied to a table, deferred if the table is (None stays None)."""
    if table is None:
        return None
    if isinstance(table, DeferredTable):
        return table.then(change)
    return change(table)
