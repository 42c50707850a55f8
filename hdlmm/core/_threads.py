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

_controller = None


class _Region:
    """The nesting of one-thread regions and the threads in effect outside them."""

    depth = 0
    outside = None  # threadpoolctl limits to restore for large products
    limit = None


_region = _Region()


def _blas():
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Every loaded BLAS on one thread inside (threadpoolctl; the libraries are looked
    up once); nested regions cost nothing."""
    if _region.depth == 0:
        libs = _blas().select(user_api="blas").lib_controllers
        _region.outside = max([lib.num_threads for lib in libs] or [1])
        _region.limit = _blas().limit(limits=1, user_api="blas")
    _region.depth += 1
    try:
        yield
    finally:
        _region.depth -= 1
        if _region.depth == 0:
            _region.limit.__exit__(None, None, None)


def default_blas_threads(work: float) -> AbstractContextManager:
    """For a product of ``work`` flops: one thread below :data:`SMALL_FLOPS`; above,
    the threads in effect outside the current one-thread region (nothing changes
    outside a region)."""
    if work < SMALL_FLOPS:  # (inside a region, or BLAS set so: one thread already)
        libs = _blas().select(user_api="blas").lib_controllers
        if _region.depth or all(lib.num_threads == 1 for lib in libs):
            return contextlib.nullcontext()
        return _blas().limit(limits=1, user_api="blas")
    if _region.depth == 0:
        return contextlib.nullcontext()
    return _blas().limit(limits=_region.outside, user_api="blas")
