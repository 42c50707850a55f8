"""The choice of the proxy parameter a and the support size k, and the fit at them.

:class:`Selector` works on the cross-products only (of standardised columns), with its
settings given explicitly (:class:`~hdlmm.model.settings.SelectionSettings`):

* a given, k given: one path at a;
* k by an information criterion (``k_selection="ic"``): full-data paths at every a of the
  grid, then a by grouped CV among the cells the criterion allows (see ``ic_samples``),
  then (``one_se``) the sparsest k at that a that the CV does not reject;
* k by CV (``k_selection="cv"``): a and k jointly by grouped CV.

Full-data paths are computed once per a and shared by the criterion and the final fit.

The grid is searched locally by default (``a_search="refine"``): every third value,
then the neighbours of the choice until it is at least as good as both. Each value of a
costs a full-data path, the CV paths and, when the Z_iᵀZ_i differ between clusters, a
product of the n q × p cluster sums; on the accuracy benchmark the local search chose
the same (a, k) as the exhaustive one (docs/decisions.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from hdlmm.core.progress import progress_bar
from hdlmm.core.stats import ClusterStats
from hdlmm.core.transform import ProxyTransform
from hdlmm.model.a_grid import coarse_grid, evaluate, new_neighbours
from hdlmm.model.checks import check_forced_columns, check_support_rank, check_support_size
from hdlmm.model.deferred import DeferredTable
from hdlmm.model.efficiency import most_efficient_a
from hdlmm.model.full_paths import FullDataPaths
from hdlmm.model.path import default_k_max, fit_path
from hdlmm.model.settings import DEFAULT_A_GRID, SelectionSettings
from hdlmm.model.tuning import choose_from_cv, cross_validate, information_criterion

__all__ = ["DEFAULT_A_GRID", "Selection", "Selector", "coarse_grid", "new_neighbours"]

#: (r, m): a path chosen from by the information criterion stops at the first
#: k ≥ max(r k̂, k̂ + m), k̂ its criterion's minimiser so far (see fit_path's window);
#: paths ran to k = 60-70 for a true k of 5 at N = 2,000, p = 1,000 (docs/decisions.md)
PATH_WINDOW = (2, 10)


@dataclass
class Selection:
    """The chosen (a, k) and the proxy fit at them (of the standardised columns).

    Attributes
    ----------
    a : float
        The proxy parameter (NaN for a formula without candidate predictors).
    k : int
        The support size (the intercept and the forced columns not counted).
    how : str
        How a and k were chosen, in words.
    coef : ndarray of shape (p,)
        Proxy estimate of the fixed effects, zero off the support.
    intercept : float
    n_eff : float
        tr(Σ_a⁻¹).
    path : DeferredTable
        Per k at a: RSS, information criterion, support and coefficients.
    cv_results : DeferredTable or None
        Per (a, k): mean and standard error of the held-out criterion.
    forced : ndarray of int or None
        The columns kept in the model unpenalised.
    """

    a: float
    k: int
    how: str
    coef: np.ndarray
    intercept: float
    n_eff: float
    path: DeferredTable
    cv_results: DeferredTable | None = None
    forced: np.ndarray | None = None

    @property
    def support(self) -> np.ndarray:
        """Indices of the fixed effects in the model: the forced and the selected."""
        forced = np.zeros(0, np.intp) if self.forced is None else self.forced
        return np.union1d(forced, np.flatnonzero(self.coef)).astype(np.intp)

    def attributes(self) -> dict:
        """The fitted attributes of :class:`hdlmm.SparseLMM` that the selection sets."""
        return dict(a_=self.a, support_size_=self.k, n_eff_=self.n_eff,
                    selection_=self.how, intercept_=self.intercept,
                    intercept_proxy_=self.intercept, coef_=self.coef.copy(),
                    coef_proxy_=self.coef.copy(), support_=self.support,
                    path_=self.path, cv_results_=self.cv_results)


class Selector:
    """Chooses (a, k) on standardised statistics and fits at them.

    Parameters
    ----------
    stats : ClusterStats
        Standardised statistics (:meth:`ClusterStats.standardized`), with ``settings.cv``
        fold blocks when the settings need the cross-validation.
    settings : SelectionSettings
    forced : array-like of int, optional
        Columns of X (0-based, the intercept not counted) that stay in the model
        unpenalised, whatever the selection: they are profiled out of every search like
        the intercept, and k counts the other columns only.
    feature_groups : sequence of sequences of int, optional
        Columns of X selected together (a factor's dummies): each group is one unit of
        the search, in or out as a whole, and counts once in k; the other columns are
        units of their own. Forced columns are left out of the groups.

    Attributes
    ----------
    transform : ProxyTransform
        The proxy transform of ``stats`` (shared with the inference).
    free : list of int
        The unpenalised columns of the statistics: the intercept, then the forced ones.
    n_candidates : int
        The number of penalised candidate units (forced ones not counted; a group
        counts once).
    units : list of ndarray
        The groups of several columns, as columns of the statistics.
    """

    def __init__(self, stats: ClusterStats, settings: SelectionSettings,
                 forced: ArrayLike | None = None,
                 feature_groups: list | None = None) -> None:
        self.stats = stats
        self.settings = settings
        self.n_lead = 1 if stats.intercept else 0  # the intercept's column
        self.forced = np.unique(np.asarray([] if forced is None else forced, dtype=np.intp))
        check_forced_columns(stats, self.n_lead, self.forced)
        self.free = list(range(self.n_lead)) + [int(j) + self.n_lead for j in self.forced]
        self.units = [np.setdiff1d(np.asarray(g, dtype=np.intp), self.forced) + self.n_lead
                      for g in (feature_groups or ())]
        self.units = [u for u in self.units if u.size > 1]
        self.n_candidates = (stats.n_features - len(self.free)
                             - sum(u.size - 1 for u in self.units))
        if settings.support_size is not None:
            self._check_units(settings.support_size)
            check_support_size(settings.support_size, self.n_candidates,
                               stats.n_samples - len(self.free))
        self.transform = ProxyTransform(stats)
        # the full-data path at each a, shared by the criterion and the final fit
        self.paths = FullDataPaths(self.transform, settings, self.free, self.units,
                                   self.n_candidates, window=PATH_WINDOW)
        self._bar = progress_bar(None, "", False)  # shown only inside choose()

    def _check_units(self, k):
        """A support size beyond the number of units, when groups count once."""
        if self.units and isinstance(k, int) and k > self.n_candidates:
            cols = self.stats.n_features - len(self.free)
            raise ValueError(
                f"support_size={k} exceeds the {self.n_candidates} candidate units: the "
                f"{cols} penalised columns of X, with {len(self.units)} group(s) of columns "
                f"(a factor's dummies) that count once in k (feature_groups); pass at most "
                f"{self.n_candidates}, or feature_groups='columns' to count columns")

    def choose(self) -> Selection:
        """Choose a and k as the settings say, and fit at them (with a progress bar
        counting the paths: one on all the data and one per CV fold for each a)."""
        self._bar = progress_bar(None, "choosing a and k", self.settings.progress,
                                 unit="path")
        self.paths.progress = self._bar
        try:
            return self._choose()
        finally:
            self._bar.close()
            self._bar = self.paths.progress = progress_bar(None, "", False)

    def _expect(self, n_a):
        """Tell the progress bar that ``n_a`` values of a are to be evaluated."""
        per_a = 1 + (self.stats.n_blocks if self.settings.needs_cv else 0)
        self._bar.total = n_a * per_a
        self._bar.refresh()

    def _choose(self):
        s, p = self.settings, self.n_candidates
        if p == 0:  # a formula without candidate predictors: nothing to select
            a = np.nan if s.a is None else float(s.a)
            return self.fit_at(a, 0, "no candidate predictors: the null model", k_max=0)
        k_max = self.k_max()
        if s.a is None:
            return self._search(s.grid(), k_max)
        a, k, how, cv_results = float(s.a), s.support_size, f"a = {s.a} given", None
        self._expect(1)
        if k is None and s.k_selection == "cv":
            cvres = cross_validate(self.transform, [a], k_max, free=self.free,
                                   units=self.units, progress=self._bar,
                                   criterion=s.cv_criterion, max_exchange=s.max_exchange)
            cv_results = DeferredTable(cvres.table)
            k = int(cvres.ks[cvres.best(s.one_se)[1]])
            how += f"; k by {s.cv}-fold grouped CV ({s.cv_criterion})"
        return self.fit_at(a, k, how, k_max, cv_results)

    def most_efficient(self, selection: Selection, cov_re: np.ndarray,
                       scale: float) -> tuple[Selection | None, pd.DataFrame]:
        """``a_selection="efficiency"``: the selection's k refitted at the a of the grid
        with the most efficient fixed effects under the fitted Ψ, σ²
        (:func:`~hdlmm.model.efficiency.most_efficient_a`), or None if that is the
        selection's a; and the table of the traces."""
        grid = self.settings.grid()
        S = np.r_[:self.n_lead, selection.support + self.n_lead].astype(np.intp)
        a, traces = most_efficient_a(self.transform, grid, S, self.n_lead, cov_re, scale)
        table = pd.DataFrame({"a": grid, "trace_var": traces})
        if a == selection.a:
            selection.how += "; also the most efficient a for its support"
            return None, table
        how = (f"{selection.how}; then a = {a:g}, the most efficient for the fixed "
               f"effects of that support (smallest tr Var(β̂) under the fitted Ψ, σ²)")
        return self.fit_at(a, selection.k, how, self.k_max(), selection.cv_results), table

    def k_max(self) -> int:
        """The largest support size on the paths."""
        s, N = self.settings, self.stats.n_samples
        if s.support_size is not None and s.k_max is None:
            return s.support_size
        n_forced = len(self.free) - self.n_lead
        k_max = s.k_max or default_k_max(N * (s.cv - 1) // s.cv - n_forced, self.n_candidates)
        if s.support_size is not None:
            k_max = max(k_max, s.support_size)
        return check_support_size(int(k_max), self.n_candidates, N - n_forced)

    def _search(self, a_grid, k_max):
        """The selection when a is not given: a by grouped CV over ``a_grid`` (k by the
        information criterion, by the CV, or given).

        ``a_search="refine"`` evaluates every third value of the grid, then the grid
        neighbours of the current choice until both of its neighbours have been
        evaluated: first of the maximum-likelihood a behind the criterion's k (if
        ``ic_samples="ml"``), then of the CV's a. The result is a local optimum on the
        whole grid; ``"full"`` evaluates every value.
        """
        s, transform = self.settings, self.transform
        full = s.a_search == "full"
        seen = list(a_grid) if full else coarse_grid(a_grid)
        self._expect(len(seen))
        transform.prepare(seen)  # the G(a) of several a in one pass over the rows
        use_ic = s.support_size is None and s.k_selection == "ic"
        k_index, ic_how = None, ""  # a -> the k the criterion allows at a
        while use_ic:
            k_index, ic_how, focus = self._ic_choices(seen, k_max)
            new = [] if full or focus is None else new_neighbours(a_grid, focus, seen)
            if not new:
                break
            seen = evaluate(transform, seen, new)
            self._expect(len(seen))
        cvres, todo = None, seen
        while True:
            ks = k_max if k_index is None else [k_index[a] for a in todo]
            part = cross_validate(transform, todo, ks, free=self.free, units=self.units,
                                  progress=self._bar,
                                  criterion=s.cv_criterion, max_exchange=s.max_exchange)
            cvres = part if cvres is None else cvres.merge(part)
            k_of_a = None if k_index is None else np.array([k_index[a]
                                                            for a in cvres.a_grid])
            a, k, how = choose_from_cv(s, cvres, k_of_a, ic_how)
            todo = [] if full else new_neighbours(a_grid, a, seen)
            if not todo:
                break
            seen = evaluate(transform, seen, todo)
            self._expect(len(seen))
            if k_index is not None and s.ic_samples == "ml":  # one k for every a
                k_index.update(dict.fromkeys(todo, k_index[a]))
            elif k_index is not None:
                k_index.update(self._ic_choices(todo, k_max)[0])
        if not full:
            how += (f"; {len(seen)} of the {len(a_grid)} values of a evaluated (every "
                    f"third, then the neighbours of the choice)")
        return self.fit_at(a, k, how, k_max, DeferredTable(cvres.table))

    def _ic_choices(self, a_values, k_max):
        """The index of the k the information criterion allows at each a (a dict), a
        description, and the a the choice rests on (None if none).

        ``ic_samples="ml"``: one k for every a, chosen with n = N at the working model's
        maximum-likelihood a among ``a_values`` (:func:`~hdlmm.model.tuning.proxy_ml_k`);
        otherwise each a gets its own k, with n = tr(Σ_a⁻¹) (``"effective"``) or N
        (``"rows"``).
        """
        s, p = self.settings, self.n_candidates
        if s.ic_samples != "ml":
            paths, n_ic, _ = zip(*(self.paths.full(a, k_max) for a in a_values))
            k_of_a = {a: int(np.argmin(information_criterion(path.rss, path.ks, n, p,
                                                             s.ic, df=path.df)))
                      for a, path, n in zip(a_values, paths, n_ic)}
            return k_of_a, f" at the k chosen by {s.ic.upper()} for each a", None
        k, ia = self._ml_k(list(a_values), k_max)
        return (dict.fromkeys(a_values, k),
                f"; k by {s.ic.upper()} with n = N at the maximum-likelihood "
                f"a = {a_values[ia]:g} of the working model", a_values[ia])

    def _ml_k(self, a_values, k_max):
        """(k, index of a): :func:`~hdlmm.model.tuning.proxy_ml_k` evaluated lazily.

        The alternation needs the whole path (to its criterion's bound) only at the
        maximum-likelihood a of each step, and elsewhere the RSS at the k's it visits:
        those come from paths computed only as far as that k (their forward sweep is
        the whole path's; the whole path's backward sweep, from further up, could only
        lower them).
        """
        N, p, kind = self.stats.n_samples, self.n_candidates, self.settings.ic
        ks = np.arange(k_max + 1)
        logdet = np.array([self.transform.logdet_blocks(a).sum() for a in a_values])

        def dev(k):
            rss = np.array([self.paths.rss_at(a, k, k_max) for a in a_values])
            return N * np.log(np.maximum(rss, np.finfo(float).tiny) / N) + logdet

        def k_by_ic(ia, n):
            path, _, n_eff = self.paths.full(a_values[ia], k_max)
            rss, df = np.full(k_max + 1, np.inf), ks.copy()
            rss[:path.rss.size], df[:path.df.size] = path.rss, path.df
            return int(np.argmin(information_criterion(rss, ks, n_eff if n is None else n,
                                                       p, kind,
                                                       df=df if self.units else None)))

        ia = int(np.argmin(dev(min(1, k_max))))
        k = k_by_ic(ia, None)  # the start: n = tr(Σ_a⁻¹) at the a fitted for k = 1
        seen = []
        while k not in seen:
            seen.append(k)
            ia = int(np.argmin(dev(k)))
            k = k_by_ic(ia, N)
        return k, int(np.argmin(dev(k)))

    def fit_at(self, a: float, k: int | None, how: str, k_max: int,
               cv_results: DeferredTable | None = None) -> Selection:
        """The best-subset fit of size k at a (k None: by the information criterion on
        the full-data path)."""
        s, p, free, lead = self.settings, self.n_candidates, self.free, self.n_lead
        path, n_ic, n_eff = self.paths.full(a, k_max)
        if k is not None and path.ks.size <= k:  # the IC path stopped short of k at a
            G, c, d, _, _ = self.transform.at(a).total()  # (a is defined: k > 0)
            path = fit_path(G, c, d, k, free=free, max_exchange=s.max_exchange,
                            units=self.units)
        ic = (information_criterion(path.rss, path.ks, n_ic, p, s.ic,
                                    df=path.df if self.units else None) if p
              else np.full(path.ks.size, np.nan))
        if k is None:
            k = int(path.ks[np.argmin(ic)])
            n_text = (f"n = tr(Σ_a⁻¹) = {n_eff:.1f}" if s.ic_samples == "effective"
                      else f"n = N = {n_ic:g}")
            how += f"; k by {s.ic.upper()} ({n_text})"
        coef = path.coefs[k]  # k_max() guarantees k ≤ k_max
        supports = [np.union1d(self.forced, np.flatnonzero(cf[lead:])) for cf in path.coefs]
        check_support_rank(self.stats, lead, supports[k], path.df[k] + self.forced.size)
        table = DeferredTable(partial(pd.DataFrame, {
            "k": path.ks, "rss": path.rss, "ic": ic, "support": supports,
            "coef": [cf[lead:] for cf in path.coefs]}))
        return Selection(a=a, k=k, how=how, coef=coef[lead:].copy(),
                         intercept=float(coef[0]) if lead else 0.0, n_eff=n_eff,
                         path=table, cv_results=cv_results, forced=self.forced)
