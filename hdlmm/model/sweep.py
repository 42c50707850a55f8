"""A full-data path computed as far as it is asked for, and continued later.

The maximum-likelihood rule of the criterion (:meth:`~hdlmm.model.selection.Selector`'s
``ic_samples="ml"``) asks for the RSS at one k of the path at many values of a, then for
the whole path at a few of them. :class:`PathSweep` keeps each path's forward sweep and
continues it from where it stopped (the forward sweep to k is the first k steps of the
sweep to any larger k), and runs the backward sweep only down to the k asked for, from
the sweep's current top. Every RSS it returns is the one a path computed from scratch to
that top would give (:func:`~hdlmm.core._path_kernel.splice_path`: the same searches on
the same numbers), without recomputing the steps it has.
"""

from __future__ import annotations

import numpy as np

from hdlmm.core._kernel_matrix import read_only
from hdlmm.core._path_kernel import backward_sweep, forward_sweep, new_path
from hdlmm.core._threads import one_blas_thread
from hdlmm.model.path import (
    MAX_ITER,
    N_CANDIDATES,
    Criterion,
    PathFit,
    arrays_path,
    kernel_criterion,
    warn_unconverged,
)

__all__ = ["PathSweep"]


class PathSweep:
    """The path of one problem in the kernel's form, to at most ``k_max``.

    Parameters
    ----------
    problem : tuple
        :func:`~hdlmm.core.splicing.profiled_matrix` of the quadratic (at most the
        intercept unpenalised).
    p : int
        Columns of the quadratic (the intercept included), for the coefficients.
    free : list of int
        The unpenalised columns ([] or [0]).
    k_max : int
        The path's largest k (``asked``; ``k_max`` is that within the columns).
    max_exchange : int
    criterion : Criterion or None
        The stop rule's criterion (None: the path runs to k_max).
    window : (int, int) or None
        The criterion's window (:func:`~hdlmm.model.path.fit_path`).
    """

    def __init__(self, problem: tuple, p: int, free: list, k_max: int, max_exchange: int,
                 criterion: Criterion | None, window: tuple[int, int] | None) -> None:
        Q, ct, dt, rest, recover = problem
        self.Q, self.c, self.d = Q, read_only(ct), float(dt)
        self.rest, self.recover, self.p, self.free = rest, recover, p, free
        self.asked, self.k_max = int(k_max), min(int(k_max), ct.size)
        self.max_exchange = int(max_exchange)
        self.code, self.n, self.n_penalised = kernel_criterion(criterion)
        self.ratio, self.extra = window or (0, 0)
        arrays = new_path(self.d, 1, max(self.k_max, 1), self.code, self.n,
                          self.n_penalised)
        self.forward, self.state = arrays[:5], arrays[5]  # (S, B, R, ok, ξ), state
        self._carry = (np.empty(0), np.empty(0, dtype=np.int64))  # ζ, I of the top
        self.backward = None  # the forward arrays as the backward sweep leaves them
        self.resolved = 0  # levels at and above this index are final in ``backward``

    @property
    def levels(self) -> int:
        """The levels of the forward sweep so far (k = 1..levels)."""
        return int(self.state[0])

    @property
    def stopped(self) -> bool:
        """Whether a stop rule (or k_max) has ended the forward sweep."""
        return bool(self.state[3]) or self.levels >= self.k_max

    def rss(self, k: int) -> float:
        """RSS at k of the path computed to max(k, its top so far): inf where the path
        stops before k."""
        if k > self.levels and not self.stopped:
            self._extend(k)
        if k > self.levels:
            return np.inf
        if k == 0:
            return self.d
        self._resolve(k - 1)
        if not self.backward[3][k - 1:self.levels].all():
            warn_unconverged(stacklevel=4)
        return float(self.backward[2][k - 1])

    def path(self) -> PathFit:
        """The whole path (to its stop or k_max), with its coefficients."""
        self._extend(self.k_max)
        self._resolve(0)
        m = self.levels
        S, B, R, ok, _ = self.backward
        if not ok[:m].all():
            warn_unconverged(stacklevel=4)
        return arrays_path(S[:m], B[:m], R[:m], self.d, self.p, self.rest, self.recover,
                           self.free, self.asked)

    def _extend(self, k):
        """The forward sweep continued to k (the backward sweep restarts from the top)."""
        if self.stopped or k <= self.levels:
            return
        with one_blas_thread():
            self._carry = forward_sweep(
                self.Q, self.c, self.d, 1, min(k, self.k_max), self.max_exchange,
                N_CANDIDATES, MAX_ITER, self.code, self.n, self.n_penalised, 0.0,
                self.ratio, self.extra, *self.forward, self.state, *self._carry)
        self.backward = None

    def _resolve(self, level):
        """The backward sweep from the top continued down to ``level`` (an index)."""
        if self.backward is None:
            self.backward = tuple(a.copy() for a in self.forward)
            self.resolved = self.levels - 1
        if level < self.resolved:
            with one_blas_thread():
                backward_sweep(self.Q, self.c, self.d, 1, self.resolved, level,
                               self.max_exchange, N_CANDIDATES, MAX_ITER, *self.backward)
            self.resolved = level
