"""The arrays that sums are accumulated into (their allocation, adds into slices), and
products that read only the part of a large array they need."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["runs", "thin_product", "zeros"]

#: arrays at least this large are first written by several threads
PARALLEL_BYTES = 64 * 2 ** 20


def zeros(shape: int | tuple, dtype: type = float) -> np.ndarray:
    """A zero array for sums that are added into (``out[i] += v``), written once first.

    ``np.zeros`` takes its memory from calloc, whose pages the kernel maps lazily: the
    first ``+=`` on a page reads it (mapping the shared zero page) and then writes it
    (a copy-on-write fault), so every 4 KiB page faults twice and none becomes a
    transparent huge page. Writing the zeros first maps each page once, as a huge page
    where the system allows. Measured on the 800 MB of Z_iᵀX_i sums of the BLAS-floor
    benchmark (benchmarks/scale.py): 1.1-1.8 s of page faults inside the pass over the
    rows became a 0.08 s fill when the process had used that memory before.

    Memory the process has never used costs more to map (1.7 s for those 800 MB on a
    virtual machine here, single-threaded), so large arrays are written by one thread
    per core (``ndarray.fill`` releases the GIL): the usual parallel first touch.
    """
    out = np.empty(shape, dtype=dtype)
    threads = min(_cores(), max(1, out.nbytes // PARALLEL_BYTES))
    if threads == 1:
        out.fill(0)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda part: part.fill(0),
                          np.array_split(out.reshape(-1), threads)))
    return out


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def runs(positions: np.ndarray, max_runs: int = 64) -> list:
    """(slice into ``positions``, what to index the sums with) for each run of
    consecutive positions, or the whole array at once when there are many runs.

    Rows sorted by cluster give a few runs per chunk (one per fold: positions are in
    (fold, label) order), and adding into a slice of the sums took half the time of
    numpy's fancy-indexed add, which gathers and scatters every row (measured on
    Z_iᵀX_i at p = 500).
    """
    breaks = np.flatnonzero(np.diff(positions) != 1) + 1
    if breaks.size >= max_runs:
        return [(slice(None), positions)]
    edges = np.r_[0, breaks, positions.size]
    return [(slice(lo, hi), slice(positions[lo], positions[lo] + hi - lo))
            for lo, hi in zip(edges[:-1], edges[1:])]


def thin_product(X: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``X @ W`` for a thin W (p × few), reading only the columns of X (its last axis)
    where W has a nonzero row.

    The nodewise directions u_j and the fitted β̂ are sparse, and a product with a thin
    matrix runs at memory speed over all of X: measured at N = 1M rows, p = 500, it took
    0.34× one X.T @ X through all columns and 0.02× through the 7 the u_j and β̂ used.
    """
    used = np.flatnonzero(np.any(W != 0, axis=1))
    if used.size > X.shape[-1] // 4:
        return X @ W
    return X[..., used] @ W[used]
