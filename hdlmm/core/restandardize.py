"""Moving a ClusterStats' sums from one standardisation of the columns to another,
without the rows: the affine maps of :meth:`hdlmm.core.stats.ClusterStats.restandardize`
(its docstring has the formulas) for X's columns, Z's columns and y's shift. Each
returns new statistics; none changes its input."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from hdlmm.core.stats import ClusterStats

__all__ = ["restandardize_x", "restandardize_z", "shift_y"]


def shift_y(stats: ClusterStats, y_shift: float) -> ClusterStats:
    """The statistics with ỹ shifted from the statistics' ``y_shift`` to ``y_shift`` (needs the
    intercept column; the formulas are in :meth:`ClusterStats.restandardize`)."""
    if not stats.intercept:
        raise ValueError("statistics without an intercept column cannot shift y")
    delta = stats.y_shift - y_shift
    sum_y = stats.Xty[:, 0]  # 1ᵀỹ per block
    return replace(stats, Xty=stats.Xty + delta * stats.XtX[:, 0, :],
                   yty=stats.yty + 2 * delta * sum_y + stats.XtX[:, 0, 0] * delta ** 2,
                   Zty=stats.Zty + delta * stats.ZtX[:, :, 0], y_shift=y_shift,
                   own_standard=False)


def restandardize_x(stats: ClusterStats, shift: np.ndarray, scale: np.ndarray) -> ClusterStats:
    """The statistics with X's columns standardised by (``shift``, ``scale``)."""
    if not stats.intercept and np.any(shift != stats.x_shift):
        raise ValueError("statistics without an intercept column can only be "
                         "rescaled, not shifted")
    D = stats.x_scale / scale
    delta = (stats.x_shift - shift) / scale
    shifted = stats.intercept and np.any(delta != 0)
    XtX = _affine_gram(stats.XtX, D, delta, 0, shifted)
    Xty = stats.Xty * D
    ZtX = stats.ZtX * D
    if shifted:
        Xty += delta[None, :] * stats.Xty[:, :1]
        ZtX += stats.ZtX[:, :, :1] * delta[None, None, :]
    return replace(stats, XtX=XtX, Xty=Xty, ZtX=ZtX, x_shift=shift.copy(),
                   x_scale=scale.copy(), own_standard=False)


def restandardize_z(stats: ClusterStats, shift: np.ndarray, scale: np.ndarray) -> ClusterStats:
    """The statistics with Z's columns standardised by (``shift``, ``scale``)."""
    k0 = stats.z_one
    if k0 < 0 and np.any(shift != stats.z_shift):
        raise ValueError("a random-effect design without an intercept column can "
                         "only be rescaled, not shifted")
    D = stats.z_scale / scale
    delta = (stats.z_shift - shift) / scale
    shifted = k0 >= 0 and np.any(delta != 0)
    ZtZ = _affine_gram(stats.ZtZ, D, delta, k0, shifted)
    ZtX = stats.ZtX * D[None, :, None]
    Zty = stats.Zty * D
    if shifted:
        ZtX += delta[None, :, None] * stats.ZtX[:, k0:k0 + 1, :]
        Zty += delta[None, :] * stats.Zty[:, k0:k0 + 1]
    return replace(stats, ZtZ=ZtZ, ZtX=ZtX, Zty=Zty, z_shift=shift.copy(),
                   z_scale=scale.copy(), own_standard=False)


def _affine_gram(G, D, delta, one, shifted):
    """The Gram matrices G (a stack) of columns w mapped to w D + 1δᵀ, where column
    ``one`` is the intercept column 1 (so D w'ᵀ1 = u is its column, and n = 1ᵀ1 its
    square: the rows' count, or Σ w with weights, where the column is √w):
    D G D + u δᵀ + δ uᵀ + n δδᵀ (only D G D when not ``shifted``); exactly symmetric
    (D_i D_j once for both triangles) when G is."""
    out = G * np.outer(D, D)[None]
    if shifted:
        u = G[:, :, one] * D
        n = G[:, one, one]
        out += (u[:, :, None] * delta[None, None, :] + delta[None, :, None] * u[:, None, :]
                + n[:, None, None] * np.outer(delta, delta)[None])
    return out
