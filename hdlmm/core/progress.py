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

__all__ = ["progress_bar", "shows_progress"]


def shows_progress(enabled: bool | None) -> bool:
    """Whether a bar is shown: ``enabled``, or (None) whether stderr is a terminal."""
    return bool(enabled) if enabled is not None else sys.stderr.isatty()


def progress_bar(total: float | None, desc: str, enabled: bool | None = None,
                 unit: str = "it", unit_scale: bool = False) -> tqdm:
    """A tqdm bar with a total (hence a rate and the time left), or a disabled one."""
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit_scale, leave=False,
                disable=not shows_progress(enabled), dynamic_ncols=True)
