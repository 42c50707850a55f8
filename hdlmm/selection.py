"""How SparseLMM chooses the proxy parameter a and the support size k, and fits at them.

A mixin of :class:`~hdlmm.estimator.SparseLMM` (it reads the estimator's parameters):

* a given, k given: one path at a;
* k by an information criterion (``k_selection="ic"``): full-data paths at every a of the
  grid, then a by grouped CV among the cells the criterion allows (see ``ic_samples``);
* k by CV (``k_selection="cv"``): a and k jointly by grouped CV.

Full-data paths are computed once per a and shared by the criterion and the final fit.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from ._postfit import random_part
from ._validation import check_a, check_support_rank, check_support_size, warn_constant_columns
from .efficiency import most_efficient_a
from .path import default_k_max, fit_path
from .transform import ProxyTransform
from .tuning import choose_from_cv, cross_validate, information_criterion, proxy_ml_k

__all__ = ["SelectionMixin", "DEFAULT_A_GRID"]

#: Default grid of the proxy parameter a: 0 (ignore the clustering) and thirds of a
#: decade from 0.1 to 100 (a is a proxy of the variance ratio Ψ/σ² in the units of Z).
#: Chosen in the accuracy benchmark (benchmarks/RESULTS.md, session 8): decades chose k
#: worse where q equals the cluster sizes (s2: 90% exact recovery against 97%), thirds
#: beat half-decades there (l2 −0.0032 ± 0.0014 over 300 replicates, 99% recovery) and
#: quarters gained nothing more. Each value costs a product of the n q × p cluster sums
#: when the Z_iᵀZ_i differ between clusters.
DEFAULT_A_GRID = np.r_[0.0, np.logspace(-1, 2, 10)]


class SelectionMixin:
    """Choice of (a, k) and the final best-subset fit, from ClusterStats only."""

    def _fit_stats(self, stats, re_names=None, no_groups=False):
        """Choose (a, k) and fit, from the cross-products only."""
        self.stats_ = stats
        free = [0] if stats.intercept else []
        p = stats.n_features - len(free)
        self.n_features_in_ = p
        warn_constant_columns(stats, free)
        if self.support_size is not None:
            check_support_size(self.support_size, p, stats.n_samples)
        k_max = self._k_max(stats.n_samples, p)
        transform = ProxyTransform(stats)
        self._paths = {}  # (a, k_max) -> full-data path, shared by tuning and final fit
        self.cv_results_ = None
        if self.a is None:
            a_grid = self._a_grid()
            transform.prepare(a_grid)  # every G(a) of the grid in one pass over the rows
            k_of_a, ic_how = None, ""
            if self.support_size is None and self.k_selection == "ic":
                k_of_a, ic_how = self._ic_choices(transform, a_grid, k_max, free, p)
            cvres = cross_validate(transform, a_grid,
                                   k_max if k_of_a is None else k_of_a + 1, free=free,
                                   criterion=self.cv_criterion,
                                   max_exchange=self.max_exchange)
            self.cv_results_ = cvres.table()
            a, k, how = choose_from_cv(self, cvres, k_of_a, ic_how)
        else:
            a, k, how = float(self.a), self.support_size, f"a = {self.a} given"
            if k is None and self.k_selection == "cv":
                cvres = cross_validate(transform, [a], k_max, free=free,
                                       criterion=self.cv_criterion,
                                       max_exchange=self.max_exchange)
                self.cv_results_ = cvres.table()
                k = int(cvres.ks[cvres.best(self.one_se)[1]])
                how += f"; k by {self.cv}-fold grouped CV ({self.cv_criterion})"
        self._final_fit(transform, a, k, k_max, free, p, how)
        self._set(random_part(self, stats, free, re_names, skip=no_groups))
        if self.a is None and self.a_selection == "efficiency":
            if self._efficient_a(transform, a_grid, k_max, free, p):
                self._set(random_part(self, stats, free, re_names, skip=no_groups))
        del self._paths
        return transform

    def _efficient_a(self, transform, a_grid, k_max, free, p):
        """``a_selection="efficiency"``: refit the chosen k at the a of the grid with the
        most efficient fixed effects under the fitted Ψ, σ²
        (:func:`~hdlmm.efficiency.most_efficient_a`). True if a changed."""
        if self.cov_re_ is None:
            self.selection_ += "; a not revised (no variance components to judge it by)"
            return False
        S = np.r_[free, self.support_ + len(free)].astype(np.intp)
        a, traces = most_efficient_a(transform, a_grid, S, len(free), self.cov_re_,
                                     self.scale_)
        self.efficiency_ = pd.DataFrame({"a": a_grid, "trace_var": traces})
        if a == self.a_:
            self.selection_ += "; also the most efficient a for its support"
            return False
        how = (f"{self.selection_}; then a = {a:g}, the most efficient for the fixed "
               f"effects of that support (smallest tr Var(β̂) under the fitted Ψ, σ²)")
        self._final_fit(transform, a, self.support_size_, k_max, free, p, how)
        return True

    def _k_max(self, n_samples, p):
        if self.support_size is not None and self.k_max is None:
            return self.support_size
        k_max = self.k_max or default_k_max(n_samples * (self.cv - 1) // self.cv, p)
        if self.support_size is not None:
            k_max = max(k_max, self.support_size)
        return check_support_size(int(k_max), p, n_samples)

    def _a_grid(self):
        grid = DEFAULT_A_GRID if self.a_grid is None else np.atleast_1d(self.a_grid)
        return np.array([check_a(float(v), "a_grid values") for v in grid])

    def _ic_choices(self, transform, a_grid, k_max, free, p):
        """Index of the k the information criterion allows at each a, and a description.

        ``ic_samples="ml"``: one k for every a, chosen with n = N at the working model's
        maximum-likelihood a (:func:`~hdlmm.tuning.proxy_ml_k`); otherwise each a gets
        its own k, with n = tr(Σ_a⁻¹) (``"effective"``) or N (``"rows"``).
        """
        paths, n_ic, n_eff = zip(*(self._full_path(transform, a, k_max, free)
                                   for a in a_grid))
        if self.ic_samples != "ml":
            k_of_a = [int(np.argmin(information_criterion(path.rss, path.ks, n, p, self.ic)))
                      for path, n in zip(paths, n_ic)]
            return np.array(k_of_a), f" at the k chosen by {self.ic.upper()} for each a"
        rss = np.full((len(a_grid), k_max), np.inf)
        for row, path in zip(rss, paths):
            row[:path.rss.size] = path.rss
        logdet = np.array([transform.logdet_blocks(a).sum() for a in a_grid])
        k, ia = proxy_ml_k(rss, logdet, np.array(n_eff), transform.stats.n_samples, p,
                           self.ic)
        return (np.full(len(a_grid), k - 1),
                f"; k by {self.ic.upper()} with n = N at the maximum-likelihood "
                f"a = {a_grid[ia]:g} of the working model")

    def _full_path(self, transform, a, k_max, free):
        """(path, IC sample size, tr(Σ_a⁻¹)): the best-subset path on all the data at one
        a (cached: the final fit reuses the path computed while choosing k for each a)."""
        key = (float(a), int(k_max))
        if key not in self._paths:
            G, c, d, n_eff, n_rows = transform.at(a).total()
            n_ic, p = self._ic_n(n_eff, n_rows), G.shape[0] - len(free)
            ic = None  # the IC path stops where no larger k can win (exact bound)
            if self.support_size is None and self.k_selection == "ic":
                ic = functools.partial(information_criterion, n_eff=n_ic, p=p, kind=self.ic)
            path = fit_path(G, c, d, k_max, free=free, max_exchange=self.max_exchange,
                            ic=ic)
            self._paths[key] = (path, n_ic, n_eff)
        return self._paths[key]

    def _ic_n(self, n_eff, n_rows):
        return n_eff if self.ic_samples == "effective" else float(n_rows)

    def _final_fit(self, transform, a, k, k_max, free, p, how):
        path, n_ic, n_eff = self._full_path(transform, a, k_max, free)
        if k is not None and path.ks.size < k:  # the IC path stopped short of k at this a
            G, c, d, _, _ = transform.at(a).total()
            path = fit_path(G, c, d, k, free=free, max_exchange=self.max_exchange)
        ic = information_criterion(path.rss, path.ks, n_ic, p, self.ic)
        if k is None:
            k = int(path.ks[np.argmin(ic)])
            n_text = (f"n = tr(Σ_a⁻¹) = {n_eff:.1f}" if self.ic_samples == "effective"
                      else f"n = N = {n_ic:g}")
            how += f"; k by {self.ic.upper()} ({n_text})"
        coef = path.coefs[k - 1]  # _k_max guarantees k ≤ k_max
        check_support_rank(self.stats_, free, np.flatnonzero(coef[len(free):]), k)
        self.a_, self.support_size_, self.n_eff_, self.selection_ = a, k, n_eff, how
        self.intercept_ = float(coef[0]) if free else 0.0
        self.coef_ = coef[len(free):].copy()
        self.support_ = np.flatnonzero(self.coef_)
        self.path_ = pd.DataFrame({
            "k": path.ks, "rss": path.rss, "ic": ic,
            "support": [np.flatnonzero(cf[len(free):]) for cf in path.coefs],
            "coef": [cf[len(free):] for cf in path.coefs]})

