"""One BLAS thread around loops of many small products.

A best-subset path or a cross-validation loop makes thousands of small matrix
operations; with a multi-threaded BLAS each of them wakes the thread pool, which costs
more than the product (and much more when another process holds the cores). The large
products (the cross-products, G(a) per value of a) keep the default threads.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

__all__ = ["one_blas_thread", "default_blas_threads"]

_controller = None
_default = None


def one_blas_thread() -> AbstractContextManager:
    """A context in which every loaded BLAS runs on one thread (threadpoolctl; the
    libraries are looked up once, at the first call); nothing to do inside another."""
    if _one.depth:
        return _one
    return _one.wrap(_blas().limit(limits=1, user_api="blas"))


class _OneThread:
    """Counts the nesting of one-thread regions, so that inner ones cost nothing."""

    depth = 0

    def wrap(self, limit):
        self._limit = limit
        return self

    def __enter__(self):
        self.depth += 1
        return self

    def __exit__(self, *exc):
        self.depth -= 1
        if self.depth == 0:
            self._limit.__exit__(*exc)
        return False


_one = _OneThread()


def default_blas_threads(work: float) -> AbstractContextManager:
    """The threads BLAS had when first looked up, for a product of ``work`` flops inside
    a one-thread region; one thread below 10⁸ flops (less than a few milliseconds,
    where waking the pool costs more than it saves)."""
    if work < 1e8:
        return _blas().limit(limits=1, user_api="blas")
    return _blas().limit(limits=_default, user_api="blas")


def _blas():
    global _controller, _default
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
        libs = _controller.select(user_api="blas").lib_controllers
        _default = max([lib.num_threads for lib in libs] or [1])
    return _controller
