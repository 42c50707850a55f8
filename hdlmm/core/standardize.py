"""The standardisation of columns behind :class:`hdlmm.core.stats.ClusterStats`: each
column's shift and scale (its mean and SD, or its RMS without an intercept), computed
so that a large offset loses nothing to cancellation.
"""

from __future__ import annotations

import numpy as np

__all__ = ["column_standardization", "z_standardization", "intercept_column"]


def column_standardization(X: np.ndarray, intercept: bool, chunk_rows: int = 65536) -> tuple:
    """(shift, scale) of the columns of X for :class:`ClusterStats`, intercept column
    included (0, 1) when ``intercept``.

    With an intercept: the column means and standard deviations, by the corrected
    two-pass algorithm (Chan, Golub & LeVeque 1983: the sum of the deviations from the
    first mean corrects it, as a large offset rounds it), in pieces of rows through one
    reused buffer; a constant column gets its own value as shift and scale 1, so that
    its standardised values are exact zeros. Without one: no shift, and the root mean
    square as scale (1 for a column of zeros).
    """
    N, p = X.shape
    if not intercept:
        rms = np.sqrt(np.einsum("ij,ij->j", X, X) / N) if N else np.ones(p)
        rms[rms == 0] = 1.0
        return np.zeros(p), rms
    if N == 0:
        return np.zeros(p + 1), np.ones(p + 1)
    step = max(1, min(chunk_rows, (8 * 2 ** 20) // (8 * max(p, 1))))  # 8 MB pieces
    mean = X[:step].mean(axis=0)  # a provisional centre, near the mean: the pass corrects it
    ss, dev = np.zeros(p), np.zeros(p)
    buf = np.empty((min(step, N), p))
    for start in range(0, N, step):
        part = np.subtract(X[start:start + step], mean, out=buf[:min(step, N - start)])
        dev += part.sum(axis=0)
        ss += np.einsum("ij,ij->j", part, part)
    mean += dev / N
    sd = np.sqrt(np.maximum(ss - dev ** 2 / N, 0.0) / N)
    # constant (to rounding): checked exactly on those columns only
    maybe = np.flatnonzero(sd <= 64 * np.finfo(float).eps * np.abs(mean))
    const = maybe[np.all(X[:, maybe] == X[0, maybe], axis=0)] if maybe.size else maybe
    mean[const] = X[0, const]
    sd[const] = 1.0
    sd[sd == 0] = 1.0
    return np.r_[0.0, mean], np.r_[1.0, sd]


def z_standardization(Z: np.ndarray, z_one: int) -> tuple:
    """(shift, scale) of the columns of Z: centred and scaled when Z has an intercept
    column ``z_one`` (which stays (0, 1)), only scaled (by the RMS) otherwise."""
    if z_one < 0:
        return column_standardization(Z, False)
    shift, scale = column_standardization(Z, True)
    shift, scale = shift[1:], scale[1:]
    shift[z_one], scale[z_one] = 0.0, 1.0
    return shift, scale


def intercept_column(Z: np.ndarray) -> int:
    """Index of the first column of Z that is all ones (−1 if none)."""
    ones = np.flatnonzero(np.all(Z == 1.0, axis=0)) if Z.shape[0] else []
    return int(ones[0]) if len(ones) else -1


def _first_chunk_standardization(X, intercept):
    """A provisional (shift, scale) from the first chunk of rows (when the whole data
    are not at hand): it only needs to be near the data's own, which
    :meth:`ClusterStats.standardized` then moves to exactly."""
    shift, scale = column_standardization(X, intercept)
    if intercept:
        _scale_flat(X, shift[1:], scale[1:])
    return shift, scale


def _first_chunk_z_standardization(Z, z_one):
    """As :func:`_first_chunk_standardization`, for Z with intercept column ``z_one``."""
    shift, scale = z_standardization(Z, z_one)
    if z_one >= 0:
        _scale_flat(Z, shift, scale, skip=z_one)
    return shift, scale


def _scale_flat(X, shift, scale, skip=-1):
    """A column constant in a first chunk may vary later: scale it by its size (in
    place; the intercept column ``skip`` stays)."""
    if not X.shape[0]:
        return
    flat = np.flatnonzero(np.ptp(X, axis=0) == 0)
    flat = flat[flat != skip]
    scale[flat] = np.where(shift[flat] != 0, np.abs(shift[flat]), 1.0)


def _own(mean, square, centred, one=0):
    """(shift, scale) in the current standardised units from the column means and the
    means of squares: the SD (the RMS when not ``centred``); a spread below rounding
    is a constant column, left unscaled; the intercept column ``one`` stays (0, 1)."""
    if not centred:
        mean = np.zeros_like(mean)
    sd = np.sqrt(np.maximum(square - mean ** 2, 0.0))
    sd[sd <= 64 * np.finfo(float).eps * np.maximum(np.abs(mean), 1.0)] = 1.0
    if centred and mean.size:
        mean[one], sd[one] = 0.0, 1.0
    return mean, sd
