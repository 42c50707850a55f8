"""The best-subset paths on all the data at each value of a, computed once and shared
by the information criterion and the final fit (:class:`~hdlmm.model.selection.Selector`).

Each a's path stops where its criterion's window says (``window``, see
:func:`~hdlmm.model.path.fit_path`). The maximum-likelihood rule of the criterion
(:meth:`~hdlmm.model.selection.Selector`'s ``ic_samples="ml"``) also asks for the RSS
at one k of paths it does not need whole: those come from paths computed only to that
k. When the compiled kernel runs the paths (at most the intercept unpenalised, units of
one column), each a's path is a :class:`~hdlmm.model.sweep.PathSweep`, continued as far
as it is asked for (the RSS at k of a path computed to k, and the whole path later,
without computing a step twice); otherwise each is computed afresh
(:func:`~hdlmm.model.path.fit_path`). The paths at one a share the kernel's form of that
a's problem (:func:`~hdlmm.core.splicing.profiled_matrix`).
"""

from __future__ import annotations

import numpy as np

from hdlmm.core.progress import progress_bar
from hdlmm.core.splicing import profiled_matrix
from hdlmm.core.transform import ProxyTransform
from hdlmm.model.path import (
    Criterion,
    PathFit,
    fit_path,
    least_squares_bound,
    runs_in_kernel,
)
from hdlmm.model.settings import SelectionSettings
from hdlmm.model.sweep import PathSweep

__all__ = ["FullDataPaths"]


class FullDataPaths:
    """The full-data best-subset paths at each a (cached).

    Parameters
    ----------
    transform : ProxyTransform
    settings : SelectionSettings
    free : list of int
        The unpenalised columns (the intercept, the forced ones).
    units : list of ndarray
        Groups of several columns selected together.
    n_candidates : int
        Penalised units (the criterion's p).
    window : (int, int)
        The criterion's window (:func:`~hdlmm.model.path.fit_path`).

    Attributes
    ----------
    progress : tqdm bar
        Advanced by one for each whole path computed.
    """

    def __init__(self, transform: ProxyTransform, settings: SelectionSettings,
                 free: list, units: list, n_candidates: int,
                 window: tuple[int, int]) -> None:
        self.transform, self.settings = transform, settings
        self.free, self.units, self.n_candidates = free, units, n_candidates
        self.window = window
        self.progress = progress_bar(None, "", False)
        self._paths = {}  # (a, k_max) -> (path, IC sample size, tr(Σ_a⁻¹))
        self._short = {}  # a -> (k, RSS of the path to k)
        self._problems = {}  # a -> the kernel's problem
        self._ls = {}  # a -> RSS of least squares on all columns (the paths' bound)
        self._sweeps = {}  # (a, k_max) -> PathSweep, None where the kernel does not run

    def full(self, a: float, k_max: int) -> tuple[PathFit, float, float]:
        """(path, IC sample size, tr(Σ_a⁻¹)): the path at a to k_max. An undefined a
        (the null model of a formula without candidates, where a has no role) is
        evaluated at a = 0."""
        key = (float(a), int(k_max))
        if key not in self._paths:
            self._paths[key] = self._path(a, k_max)
            self.progress.update(1)
        return self._paths[key]

    def rss_at(self, a: float, k: int, k_max: int) -> float:
        """RSS of the best subset of size k at a (inf where the criterion's path stops
        before k): from the whole path to k_max if it was computed, else from a path
        computed to k (or further, if an earlier call asked for a larger k)."""
        if (float(a), int(k_max)) in self._paths:
            rss = self.full(a, k_max)[0].rss
        elif (sweep := self._sweep(a, k_max)) is not None:
            return sweep.rss(k)
        else:
            reached, rss = self._short.get(float(a), (-1, None))
            if reached < k:
                rss = self._short_rss(a, k)
                self._short[float(a)] = (k, rss)
        return rss[k] if k < rss.size else np.inf

    def _short_rss(self, a, k):
        """RSS along the path at a to k, where the kernel does not run it (the path
        :meth:`_path` computes)."""
        return self._path(a, k)[0].rss

    def _criterion(self, n_eff, n_rows):
        """The criterion the paths stop by (None when k is not chosen by one)."""
        s = self.settings
        if s.support_size is None and s.k_selection == "ic":
            n_ic = n_eff if s.ic_samples == "effective" else float(n_rows)
            return Criterion(n_ic, self.n_candidates, s.ic)
        return None

    def _sweep(self, a, k_max):
        """The resumable path at a to k_max (None where the kernel does not run it)."""
        a = 0.0 if np.isnan(a) else float(a)
        key = (a, int(k_max))
        if key not in self._sweeps:
            G, _, _, n_eff, n_rows = self.transform.at(a).total()
            ic = self._criterion(n_eff, n_rows)
            problem = (self._problem(a) if k_max >= 1 and runs_in_kernel(self.free,
                                                                         self.units, ic)
                       else None)
            self._sweeps[key] = (None if problem is None or not problem[3].size else
                                 PathSweep(problem, G.shape[0], self.free, k_max,
                                           self.settings.max_exchange, ic, self.window))
        return self._sweeps[key]

    def _problem(self, a):
        """The kernel's problem of the full data at a."""
        if a not in self._problems:
            G, c, d, _, _ = self.transform.at(a).total()
            self._problems[a] = profiled_matrix(G, c, d, self.free)
        return self._problems[a]

    def _path(self, a, k_max):
        """(path, IC sample size, tr(Σ_a⁻¹)) of the path at a to k_max."""
        s = self.settings
        a = 0.0 if np.isnan(a) else float(a)
        G, c, d, n_eff, n_rows = self.transform.at(a).total()
        n_ic = n_eff if s.ic_samples == "effective" else float(n_rows)
        ic = self._criterion(n_eff, n_rows)
        sweep = self._sweep(a, k_max)
        if sweep is not None:
            return sweep.path(), n_ic, n_eff
        problem = self._problem(a) if runs_in_kernel(self.free, self.units, ic) else None
        rss_ls = None
        if ic is not None and self.units and G.shape[0] < n_rows:  # exact bound, once per a
            if a not in self._ls:
                self._ls[a] = least_squares_bound(G, c, d, self.free)
            rss_ls = self._ls[a]
        path = fit_path(G, c, d, k_max, free=self.free, max_exchange=s.max_exchange,
                        ic=ic, n_rows=n_rows, rss_ls=rss_ls, units=self.units,
                        window=self.window, problem=problem)
        return path, n_ic, n_eff
