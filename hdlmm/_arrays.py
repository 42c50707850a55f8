"""Allocation of the arrays that sums are accumulated into."""

from __future__ import annotations

import numpy as np

__all__ = ["zeros"]


def zeros(shape, dtype=float):
    """A zero array for sums that are added into (``out[i] += v``), written once first.

    ``np.zeros`` takes its memory from calloc, whose pages the kernel maps lazily: the
    first ``+=`` on a page reads it (mapping the shared zero page) and then writes it
    (a copy-on-write fault), so every 4 KiB page faults twice and none becomes a
    transparent huge page. Writing the zeros first maps each page once, as a huge page
    where the system allows. Measured on the 800 MB of Z_iᵀX_i sums of the BLAS-floor
    benchmark (benchmarks/scale.py): 1.1-1.8 s of page faults inside the pass over the
    rows became a 0.08 s fill.
    """
    out = np.empty(shape, dtype=dtype)
    out.fill(0)
    return out
