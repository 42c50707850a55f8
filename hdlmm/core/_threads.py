"""One BLAS thread around loops of many small products.

A best-subset path or a cross-validation loop makes thousands of small matrix
operations; with a multi-threaded BLAS each of them wakes the thread pool, which costs
more than the product (and much more when another process holds the cores). Inside
:func:`one_blas_thread` BLAS runs on one thread; :func:`default_blas_threads` gives a
large product back the threads that were in effect outside (the user's setting, e.g.
``threadpoolctl.threadpool_limits`` or ``OPENBLAS_NUM_THREADS``, is never exceeded).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager

__all__ = ["one_blas_thread", "default_blas_threads"]

#: flops below which a product runs on one thread (up to about 50 ms: waking the
#: thread pool costs more than it saves)
SMALL_FLOPS = 1e9

_libraries = None


class _Region:
    """The nesting of one-thread regions and the threads in effect outside them."""

    depth = 0
    outside = None  # threads of each BLAS outside the region, restored for large products


_region = _Region()


def _blas():
    """The loaded BLAS libraries' thread controllers (threadpoolctl's, looked up once;
    setting their threads directly costs microseconds, a ``threadpool_limits`` context
    some tens)."""
    global _libraries
    if _libraries is None:
        from threadpoolctl import ThreadpoolController

        _libraries = ThreadpoolController().select(user_api="blas").lib_controllers
    return _libraries


@contextlib.contextmanager
def _threads(counts: list) -> Iterator[None]:
    """Each BLAS on its number of ``counts`` inside, restored after."""
    libs = _blas()
    before = [lib.num_threads for lib in libs]
    for lib, n, b in zip(libs, counts, before):
        if n != b:
            lib.set_num_threads(n)
    try:
        yield
    finally:
        for lib, n, b in zip(libs, counts, before):
            if n != b:
                lib.set_num_threads(b)


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Every loaded BLAS on one thread inside; nested regions cost nothing."""
    if _region.depth:
        yield
        return
    _region.outside = [lib.num_threads for lib in _blas()]
    _region.depth = 1
    try:
        with _threads([1] * len(_region.outside)):
            yield
    finally:
        _region.depth = 0


def default_blas_threads(work: float) -> AbstractContextManager:
    """For a product of ``work`` flops: one thread below :data:`SMALL_FLOPS`; above,
    the threads in effect outside the current one-thread region (nothing changes
    outside a region)."""
    if work < SMALL_FLOPS:  # (inside a region, or BLAS set so: one thread already)
        libs = _blas()
        if _region.depth or all(lib.num_threads == 1 for lib in libs):
            return contextlib.nullcontext()
        return _threads([1] * len(libs))
    if _region.depth == 0:
        return contextlib.nullcontext()
    return _threads(_region.outside)
