"""How SparseLMM chooses the proxy parameter a and the support size k, and fits at them.

A mixin of :class:`~hdlmm.api.estimator.SparseLMM` (it reads the estimator's parameters):

* a given, k given: one path at a;
* k by an information criterion (``k_selection="ic"``): full-data paths at every a of the
  grid, then a by grouped CV among the cells the criterion allows (see ``ic_samples``),
  then (``one_se``) the sparsest k at that a that the CV does not reject;
* k by CV (``k_selection="cv"``): a and k jointly by grouped CV.

Full-data paths are computed once per a and shared by the criterion and the final fit.

The grid is searched locally by default (``a_search="refine"``): every third value,
then the neighbours of the choice until it is at least as good as both. Each value of a
costs a full-data path, the CV paths and, when the Z_iᵀZ_i differ between clusters, a
product of the n q × p cluster sums; the local search evaluated 7 or 8 of the default
grid's 11 values and chose the same (a, k) as the exhaustive search in all 1,100
replicates of the accuracy benchmark (benchmarks/RESULTS.md, accuracy).
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from hdlmm.core.aliasing import warn_aliased_columns
from hdlmm.core.checks import (
    check_a,
    check_support_rank,
    check_support_size,
    warn_constant_columns,
)
from hdlmm.core.transform import ProxyTransform
from hdlmm.model.efficiency import most_efficient_a
from hdlmm.model.path import default_k_max, fit_path
from hdlmm.model.random_part import random_part
from hdlmm.model.tuning import choose_from_cv, cross_validate, information_criterion, proxy_ml_k

__all__ = ["SelectionMixin", "DEFAULT_A_GRID"]

#: Default grid of the proxy parameter a: 0 (ignore the clustering) and thirds of a
#: decade from 0.1 to 100 (a is a proxy of the variance ratio Ψ/σ² in the units of Z).
#: Chosen in the accuracy benchmark (benchmarks/RESULTS.md, accuracy): decades chose k
#: worse where q equals the cluster sizes (s2: 90% exact recovery against 97%), thirds
#: beat half-decades there (l2 −0.0032 ± 0.0014 over 300 replicates, 99% recovery) and
#: quarters gained nothing more. Searched from its decades (see ``a_search``).
DEFAULT_A_GRID = np.r_[0.0, np.logspace(-1, 2, 10)]


class SelectionMixin:
    """Choice of (a, k) and the final best-subset fit, from ClusterStats only."""

    def _fit_stats(self, stats, re_names=None, no_groups=False, re_blocks=None):
        """Choose (a, k) and fit, from the cross-products only (of the standardised
        columns: :meth:`~hdlmm.core.stats.ClusterStats.standardized`; the estimator maps the
        fit back to the user's units, :mod:`hdlmm.api._units`). Returns the transform."""
        stats = stats.standardized()
        self.stats_ = stats
        free = [0] if stats.intercept else []
        p = stats.n_features - len(free)
        self.n_features_in_ = p
        warn_constant_columns(stats, free)
        warn_aliased_columns(stats.XtX.sum(0), stats.feature_names, free, stats.n_samples,
                             stacklevel=4)
        if self.support_size is not None:
            check_support_size(self.support_size, p, stats.n_samples)
        transform = ProxyTransform(stats)
        self._paths = {}  # (a, k_max) -> full-data path, shared by tuning and final fit
        self.cv_results_ = None
        if p == 0:  # a formula without candidate predictors: nothing to select
            a, k, k_max = (np.nan if self.a is None else float(self.a)), 0, 0
            how = "no candidate predictors: the null model"
        elif self.a is None:
            k_max = self._k_max(stats.n_samples, p)
            a_grid = self._a_grid()
            a, k, how = self._search(transform, a_grid, k_max, free, p)
        else:
            k_max = self._k_max(stats.n_samples, p)
            a, k, how = float(self.a), self.support_size, f"a = {self.a} given"
            if k is None and self.k_selection == "cv":
                cvres = cross_validate(transform, [a], k_max, free=free,
                                       criterion=self.cv_criterion,
                                       max_exchange=self.max_exchange)
                self.cv_results_ = cvres.table()
                k = int(cvres.ks[cvres.best(self.one_se)[1]])
                how += f"; k by {self.cv}-fold grouped CV ({self.cv_criterion})"
        self._final_fit(transform, a, k, k_max, free, p, how)
        self._set(random_part(self, stats, free, re_names, skip=no_groups,
                              re_blocks=re_blocks))
        if p and self.a is None and self.a_selection == "efficiency":
            if self._efficient_a(transform, a_grid, k_max, free, p):
                self._set(random_part(self, stats, free, re_names, skip=no_groups,
                                      re_blocks=re_blocks))
        del self._paths
        return transform

    def _search(self, transform, a_grid, k_max, free, p):
        """(a, k, description) when a is not given: a by grouped CV over ``a_grid`` (k by
        the information criterion, by the CV, or given).

        ``a_search="refine"`` evaluates every third value of the grid, then the grid
        neighbours of the current choice until both of its neighbours have been
        evaluated: first of the maximum-likelihood a behind the criterion's k (if
        ``ic_samples="ml"``), then of the CV's a. The result is a local optimum on the
        whole grid; ``"full"`` evaluates every value.
        """
        full = self.a_search == "full"
        seen = list(a_grid) if full else _coarse(a_grid)
        transform.prepare(seen)  # the G(a) of several a in one pass over the rows
        use_ic = self.support_size is None and self.k_selection == "ic"
        k_index, ic_how = None, ""  # a -> the k the criterion allows at a
        while use_ic:
            k_index, ic_how, focus = self._ic_choices(transform, seen, k_max, free, p)
            new = [] if full or focus is None else _new_neighbours(a_grid, focus, seen)
            if not new:
                break
            seen = _evaluate(transform, seen, new)
        cvres, todo = None, seen
        while True:
            ks = k_max if k_index is None else [k_index[a] for a in todo]
            part = cross_validate(transform, todo, ks, free=free,
                                  criterion=self.cv_criterion,
                                  max_exchange=self.max_exchange)
            cvres = part if cvres is None else cvres.merge(part)
            k_of_a = None if k_index is None else np.array([k_index[a]
                                                            for a in cvres.a_grid])
            a, k, how = choose_from_cv(self, cvres, k_of_a, ic_how)
            todo = [] if full else _new_neighbours(a_grid, a, seen)
            if not todo:
                break
            seen = _evaluate(transform, seen, todo)
            if k_index is not None and self.ic_samples == "ml":  # one k for every a
                k_index.update(dict.fromkeys(todo, k_index[a]))
            elif k_index is not None:
                k_index.update(self._ic_choices(transform, todo, k_max, free, p)[0])
        self.cv_results_ = cvres.table()
        if not full:
            how += (f"; {len(seen)} of the {len(a_grid)} values of a evaluated (every "
                    f"third, then the neighbours of the choice)")
        return a, k, how

    def _efficient_a(self, transform, a_grid, k_max, free, p):
        """``a_selection="efficiency"``: refit the chosen k at the a of the grid with the
        most efficient fixed effects under the fitted Ψ, σ²
        (:func:`~hdlmm.model.efficiency.most_efficient_a`). True if a changed."""
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
        """The grid of a, sorted, without repeats."""
        grid = DEFAULT_A_GRID if self.a_grid is None else np.atleast_1d(self.a_grid)
        if grid.size == 0:
            raise ValueError("a_grid is empty; pass at least one value of a ≥ 0, or "
                             "None for the default grid")
        return np.unique([check_a(float(v), "a_grid values") for v in grid])

    def _ic_choices(self, transform, a_values, k_max, free, p):
        """The index of the k the information criterion allows at each a (a dict), a
        description, and the a the choice rests on (None if none).

        ``ic_samples="ml"``: one k for every a, chosen with n = N at the working model's
        maximum-likelihood a among ``a_values`` (:func:`~hdlmm.model.tuning.proxy_ml_k`);
        otherwise each a gets its own k, with n = tr(Σ_a⁻¹) (``"effective"``) or N
        (``"rows"``).
        """
        paths, n_ic, n_eff = zip(*(self._full_path(transform, a, k_max, free)
                                   for a in a_values))
        if self.ic_samples != "ml":
            k_of_a = {a: int(np.argmin(information_criterion(path.rss, path.ks, n, p,
                                                             self.ic)))
                      for a, path, n in zip(a_values, paths, n_ic)}
            return k_of_a, f" at the k chosen by {self.ic.upper()} for each a", None
        rss = np.full((len(a_values), k_max + 1), np.inf)
        for row, path in zip(rss, paths):
            row[:path.rss.size] = path.rss
        logdet = np.array([transform.logdet_blocks(a).sum() for a in a_values])
        k, ia = proxy_ml_k(rss, logdet, np.array(n_eff), transform.stats.n_samples, p,
                           self.ic)
        return (dict.fromkeys(a_values, k),
                f"; k by {self.ic.upper()} with n = N at the maximum-likelihood "
                f"a = {a_values[ia]:g} of the working model", a_values[ia])

    def _full_path(self, transform, a, k_max, free):
        """(path, IC sample size, tr(Σ_a⁻¹)): the best-subset path on all the data at one
        a (cached: the final fit reuses the path computed while choosing k for each a).
        An undefined a (the null model of a formula without candidates, where a has no
        role) is evaluated at a = 0."""
        key = (float(a), int(k_max))
        if key not in self._paths:
            G, c, d, n_eff, n_rows = transform.at(0.0 if np.isnan(a) else a).total()
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
        if k is not None and path.ks.size <= k:  # the IC path stopped short of k at a
            G, c, d, _, _ = transform.at(a).total()  # (a is defined: k > 0)
            path = fit_path(G, c, d, k, free=free, max_exchange=self.max_exchange)
        ic = (information_criterion(path.rss, path.ks, n_ic, p, self.ic) if p
              else np.full(path.ks.size, np.nan))
        if k is None:
            k = int(path.ks[np.argmin(ic)])
            n_text = (f"n = tr(Σ_a⁻¹) = {n_eff:.1f}" if self.ic_samples == "effective"
                      else f"n = N = {n_ic:g}")
            how += f"; k by {self.ic.upper()} ({n_text})"
        coef = path.coefs[k]  # _k_max guarantees k ≤ k_max
        check_support_rank(self.stats_, free, np.flatnonzero(coef[len(free):]), k)
        self.a_, self.support_size_, self.n_eff_, self.selection_ = a, k, n_eff, how
        self.intercept_ = self.intercept_proxy_ = float(coef[0]) if free else 0.0
        self.coef_ = coef[len(free):].copy()
        self.coef_proxy_ = self.coef_.copy()
        self.support_ = np.flatnonzero(self.coef_)
        self.path_ = pd.DataFrame({
            "k": path.ks, "rss": path.rss, "ic": ic,
            "support": [np.flatnonzero(cf[len(free):]) for cf in path.coefs],
            "coef": [cf[len(free):] for cf in path.coefs]})


def _coarse(grid, step=3):
    """Every ``step``-th positive value of a sorted grid, its last, and 0 if present:
    decades on the default grid."""
    positive = [float(a) for a in grid if a > 0]
    keep = positive[::step]
    if positive and positive[-1] not in keep:
        keep.append(positive[-1])
    return [0.0] * bool(len(grid) > len(positive)) + keep


def _new_neighbours(grid, a, seen):
    """The values next to ``a`` on the sorted grid that are not in ``seen``."""
    i = int(np.searchsorted(grid, a))
    return [float(grid[j]) for j in (i - 1, i + 1)
            if 0 <= j < len(grid) and float(grid[j]) not in seen]


def _evaluate(transform, seen, new):
    """Add ``new`` values of a to ``seen`` (sorted), their G(a) in one pass."""
    transform.prepare(new)
    return sorted(seen + new)
