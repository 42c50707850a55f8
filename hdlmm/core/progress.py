"""Progress bars on long work (tqdm), shown on a terminal only unless asked for.

Every long stage of a fit reports through :func:`progress_bar`: the passes over files,
the search over a and k (one step per path), and the debiased inference (one step per
block of coordinates). ``enabled=None`` shows the bar only when standard error is a
terminal (so logs, pipes and CI stay clean), True always, False never (the estimator's
``progress`` parameter).
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

__all__ = ["NoBar", "progress_bar", "shows_progress"]


def shows_progress(enabled: bool | None) -> bool:
    """Whether a bar is shown: ``enabled``, or (None) whether stderr is a terminal."""
    return bool(enabled) if enabled is not None else sys.stderr.isatty()


def progress_bar(total: float | None, desc: str, enabled: bool | None = None,
                 unit: str = "it", unit_scale: bool = False) -> tqdm | NoBar:
    """A tqdm bar with a total (hence a rate and the time left), or a :class:`NoBar`
    when none is shown."""
    if not shows_progress(enabled):
        return NoBar(total)
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit_scale, leave=False,
                dynamic_ncols=True)


class NoBar:
    """The part of a tqdm bar the fits use, doing nothing (a disabled tqdm costs 20 µs
    to make, a few percent of a small fit's time with one bar per stage)."""

    def __init__(self, total: float | None = None) -> None:
        self.total = total

    def update(self, n: float = 1) -> None:
        """Nothing to show."""

    def refresh(self) -> None:
        """Nothing to show."""

    def close(self) -> None:
        """Nothing to show."""
