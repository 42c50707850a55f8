"""Support-size paths on one whitened problem, with unpenalised columns profiled out.

This is the glue between a :class:`~hdlmm.core.transform.Quadratic` (which knows clusters)
and the splicing solver (which does not): it removes the unpenalised columns (the
intercept) by their Schur complement, solves, and maps the coefficients back.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from hdlmm.core._kernel_matrix import matrix, read_only
from hdlmm.core._path_kernel import IC_CODES, splice_path
from hdlmm.core._threads import one_blas_thread
from hdlmm.core.aliasing import least_squares_rss
from hdlmm.core.group_splicing import Units, best_group_subset_path
from hdlmm.core.quadratic import formed_difference
from hdlmm.core.splicing import best_subset_path, profile_out, profiled_matrix

IC_TYPES = ("ebic", "gic", "sic", "bic", "aic")

#: the kernel's limits on a search: candidates of the double exchange, iterations
N_CANDIDATES, MAX_ITER = 20, 1000

__all__ = ["PathFit", "Criterion", "fit_path", "default_k_max",
           "information_criterion", "least_squares_bound", "arrays_path",
           "kernel_criterion", "warn_unconverged"]


@dataclass
class PathFit:
    """Fits along k = 0..k_max: ``coefs[k]`` (all p columns, unpenalised ones included)
    and ``rss[k]`` for support size ``ks[k] = k`` (penalised units only; k = 0 is the
    null model of the unpenalised columns alone), with ``df[k]`` penalised columns
    (k when every unit is one column). ``k_max`` is how far the path was asked to go
    (it may stop earlier at the criterion's bound)."""

    ks: np.ndarray
    coefs: np.ndarray
    rss: np.ndarray
    k_max: int = 0
    df: np.ndarray | None = None

    def __post_init__(self):
        if self.df is None:  # units of one column: as many columns as units
            self.df = self.ks.copy()


def information_criterion(rss: ArrayLike, k: int, n_eff: ArrayLike, p: int,
                          kind: str = "ebic", df: ArrayLike | None = None) -> np.ndarray:
    """Information criterion of abess's family for fits of size k.

    n log(RSS / n) + penalty(k), with n = n_eff and

    * ``"aic"``: 2k;  ``"bic"``: k log n;
    * ``"gic"`` / ``"sic"``: k log(p) log(log n) (Zhu et al. 2020);
    * ``"ebic"``: k (log n + 2 log p) (Chen & Chen 2008, γ = 1).

    With units of several columns (a factor's dummies selected together), k and p
    count units and ``df`` the columns of the k units: the parameters are counted by
    ``df`` (2 df, df log n, df log p log log n) and the models by units (EBIC's
    2 k log p, the log of the number of supports of k units among p).

    Parameters
    ----------
    rss : array-like
    k : array-like of int
    n_eff : float
    p : int
        Number of candidate (penalised) units.
    kind : str
    df : array-like of int, optional
        Columns of each fit (default k).
    """
    rss = np.maximum(np.asarray(rss, dtype=float), np.finfo(float).tiny)
    k = np.asarray(k, dtype=float)
    df = k if df is None else np.asarray(df, dtype=float)
    n = float(n_eff)
    fit = n * np.log(rss / n)
    if kind == "aic":
        pen = 2 * df
    elif kind == "bic":
        pen = df * np.log(n)
    elif kind in ("gic", "sic"):
        pen = df * np.log(p) * np.log(np.log(n))
    elif kind == "ebic" and df is k:  # (the compiled kernel's operation order)
        pen = k * (np.log(n) + 2 * np.log(p))
    elif kind == "ebic":
        pen = df * np.log(n) + 2 * k * np.log(p)
    else:
        raise ValueError(f"ic must be one of {IC_TYPES}; got {kind!r}")
    return fit + pen


@dataclass(frozen=True)
class Criterion:
    """An information criterion of :func:`information_criterion`'s family with its
    sample size ``n`` and number of candidate columns ``p``; ``criterion(rss, k)``.
    Paths given one stop inside the compiled kernel."""

    n: float
    p: int
    kind: str = "ebic"

    def __call__(self, rss, k):
        return information_criterion(rss, k, self.n, self.p, self.kind)


def _expand(fit, p, rest, recover, free):
    beta_R = fit.full_coef(rest.size)
    coef = np.zeros(p)
    coef[rest] = beta_R
    coef[list(free)] = recover(beta_R)
    return coef


def fit_path(G: np.ndarray, c: np.ndarray, d: float, k_max: int, free: Sequence[int] = (),
             max_exchange: int = 2, ic: Callable | None = None, n_rows: int = None,
             rss_ls: float | None = None, units: Sequence | None = None,
             window: tuple[int, int] | None = None,
             minus: np.ndarray | None = None, problem: tuple | None = None) -> PathFit:
    """Best subsets of the penalised columns for k = 0..k_max (k = 0: none of them).

    Parameters
    ----------
    G, c, d : the quadratic d − 2βᵀc + βᵀGβ over all p columns
    k_max : int
    free : sequence of int
        Unpenalised columns (always in the model).
    max_exchange : int
    ic : callable, optional
        ``ic(rss, k)`` → information criterion (increasing in k at fixed RSS). The path
        then stops at the first k beyond which no support can have a smaller criterion:
        every RSS is at least that of least squares on all columns, RSS_LS, so once
        ic(RSS_LS, k + 1) exceeds the best criterion so far, no larger k can win. The
        bound is exact (it holds for any subset); it needs N > p (else RSS_LS = 0).
        RSS_LS costs a factorisation of G: with a ``window`` it is computed only for
        units of several columns, and used otherwise only if given (``rss_ls``).
    n_rows : int, optional
        N, the rows behind the quadratic: with no more rows than columns RSS_LS is 0
        and the bound is skipped without computing it.
    rss_ls : float, optional
        RSS_LS if already known (:func:`least_squares_bound` of the same quadratic).
    units : sequence of arrays of int, optional
        Groups of penalised columns (indices of G's columns) selected together, k
        counting groups (:mod:`hdlmm.core.group_splicing`); the other penalised columns
        are units of their own. ``ic`` must then be a :class:`Criterion` or None.
    window : (int, int), optional
        (r, m): with ``ic`` (a :class:`Criterion`), the path also stops at the first
        k ≥ max(r k̂, k̂ + m), k̂ the minimiser of the criterion so far. Not an exact
        bound: a larger k could still win, which the criterion's growing penalty makes
        unlikely (docs/decisions.md measures how often it changed a fit: never).
    minus : ndarray of shape (p, p), or (F, R), optional
        A matrix subtracted from G (the CV's training statistics: total − fold; c and d
        are then the differences already), or in low rank, F and R for G − F + R Rᵀ
        (:meth:`hdlmm.core.quadratic.Quadratic.split`). With at most the intercept unpenalised the
        kernel reads the entries of G − minus, profiled, as it needs them, and no p × p
        matrix is formed.
    problem : tuple, optional
        :func:`~hdlmm.core.splicing.profiled_matrix` of the same G, c, d, free and
        minus, if already built (several paths on one quadratic share it).

    Returns
    -------
    PathFit
    """
    p = G.shape[0]
    exact_fit = n_rows is not None and p >= n_rows  # RSS_LS = 0: no bound
    if exact_fit and not isinstance(ic, Criterion):
        ic = None  # (no bound, and no window without a Criterion)
    with one_blas_thread():
        if runs_in_kernel(free, units, ic):  # no p × p matrix formed
            if ic is not None and not exact_fit and rss_ls is None and not window:
                rss_ls = least_squares_bound(formed_difference(G, minus), c, d, free)
            Q, ct, dt, rest, recover = problem or profiled_matrix(G, c, d, free, minus)
            if k_max >= 1 and rest.size:
                S, B, R = _kernel_path(Q, ct, dt, k_max, max_exchange, ic,
                                       0.0 if exact_fit else rss_ls, window)
                return arrays_path(S, B, R, dt, p, rest, recover, free, k_max)
            fits = []
        else:
            Gt, ct, dt, rest, recover = profile_out(formed_difference(G, minus), c, d, free)
            grouped = _units_of(units, rest)
            if not (k_max >= 1 and rest.size):
                fits = []
            elif grouped is not None:
                return _group_path(Gt, ct, dt, grouped, k_max, max_exchange, ic,
                                   exact_fit, rss_ls, window, p, rest, recover, free)
            elif ic is None or exact_fit or isinstance(ic, Criterion):
                S, B, R = _kernel_path(matrix(Gt), ct, dt, k_max, max_exchange, ic,
                                       0.0 if exact_fit else rss_ls, window)
                return arrays_path(S, B, R, dt, p, rest, recover, free, k_max)
            else:
                fits = best_subset_path(Gt, ct, dt, k_max, max_exchange=max_exchange,
                                        stop=_ic_stop(Gt, ct, dt, ic, rss_ls))
    null = np.zeros(p)
    null[list(free)] = recover(np.zeros(rest.size))
    coefs = np.array([null] + [_expand(f, p, rest, recover, free) for f in fits])
    return PathFit(ks=np.arange(len(fits) + 1), coefs=coefs,
                   rss=np.array([dt] + [f.rss for f in fits]), k_max=int(k_max))


def arrays_path(S: np.ndarray, B: np.ndarray, R: np.ndarray, d: float, p: int,
                rest: np.ndarray, recover: Callable, free: Sequence[int],
                k_max: int) -> PathFit:
    """The PathFit of the kernel's supports S (padded with −1), coefficients B and RSS R
    for k = 1..m, with the null model at k = 0 (the free columns recovered for every k
    at once)."""
    m = R.size
    coef_R = np.zeros((m + 1, rest.size))
    for i in range(m):
        coef_R[i + 1, S[i, :i + 1]] = B[i, :i + 1]
    coefs = np.zeros((m + 1, p))
    coefs[:, rest] = coef_R
    if len(free):
        coefs[:, list(free)] = recover(coef_R.T).T
    return PathFit(ks=np.arange(m + 1), coefs=coefs, rss=np.concatenate(([d], R)), k_max=int(k_max))


def runs_in_kernel(free, units, ic):
    """Whether the path runs on the kernel's matrix tuple: no columns but the intercept
    unpenalised, no units of several columns, the criterion (if any) a Criterion."""
    return (list(free) in ([], [0]) and not any(len(u) > 1 for u in (units or ()))
            and (ic is None or isinstance(ic, Criterion)))


def _units_of(units, rest):
    """The :class:`~hdlmm.core.group_splicing.Units` of the profiled problem (positions
    in ``rest``), or None when every unit is one column."""
    groups = [np.asarray(u, dtype=np.intp) for u in (units or ()) if len(u) > 1]
    if not groups:
        return None
    grouped = np.concatenate(groups)
    pos = [np.searchsorted(rest, u) for u in groups]
    singles = np.setdiff1d(np.arange(rest.size), np.searchsorted(rest, grouped))
    members = sorted(pos + [np.array([j]) for j in singles], key=lambda u: int(u.min()))
    return Units(members)


def _group_path(G, c, d, units, k_max, max_exchange, criterion, exact_fit, rss_ls, window,
                p, rest, recover, free):
    """:func:`fit_path` with units of several columns (group splicing, in numpy)."""
    stop = None
    if criterion is not None:
        if not isinstance(criterion, Criterion):
            raise TypeError("a path of groups needs its criterion as a Criterion")
        bound = (0.0 if exact_fit else
                 least_squares_bound(G, c, d) if rss_ls is None else float(rss_ls))
        smallest = np.cumsum(np.sort(units.sizes))  # the fewest columns of k + 1 units
        best = [float(criterion(np.array([d]), np.array([0]))[0]), 0]  # value, k̂
        ratio, extra = window or (0, 0)

        def stop(k, rss, df):
            crit = float(information_criterion(rss, k, criterion.n, criterion.p,
                                               criterion.kind, df=df))
            if crit < best[0]:
                best[:] = crit, k
            beyond_bound = k < units.m and bound > 0 and float(information_criterion(
                bound, k + 1, criterion.n, criterion.p, criterion.kind,
                df=smallest[k])) > best[0]
            return beyond_bound or (ratio > 0 and k >= max(ratio * best[1],
                                                           best[1] + extra))

    fits = best_group_subset_path(G, c, d, units, k_max, max_exchange=max_exchange,
                                  stop=stop)
    null = np.zeros(p)
    null[list(free)] = recover(np.zeros(rest.size))
    coefs = np.array([null] + [_expand(f, p, rest, recover, free) for _, f in fits])
    return PathFit(ks=np.arange(len(fits) + 1), coefs=coefs,
                   rss=np.array([d] + [f.rss for _, f in fits]), k_max=int(k_max),
                   df=np.array([0] + [units.df(A) for A, _ in fits]))


def _kernel_path(Q, c, d, k_max, max_exchange, criterion, rss_ls, window):
    """The fits of :func:`best_subset_path` (with the criterion's stops, if given) from
    one call of the compiled kernel, for the matrix tuple Q: supports (padded with −1),
    coefficients and RSS for k = 1..m."""
    c = read_only(c)
    k_max = min(int(k_max), c.size)
    ratio, extra = window or (0, 0)
    bound = 0.0 if criterion is None or rss_ls is None else float(rss_ls)
    S, B, R, ok = splice_path(Q, c, float(d), 1, k_max, int(max_exchange), N_CANDIDATES,
                              MAX_ITER, *kernel_criterion(criterion), bound, int(ratio),
                              int(extra))
    if not ok.all():
        warn_unconverged(stacklevel=4)
    return S, B, R


def kernel_criterion(criterion: Criterion | None) -> tuple:
    """(code, n, p) of a criterion as the path kernel takes it (code −1: none)."""
    if criterion is None:
        return -1, 1.0, 1
    return IC_CODES[criterion.kind], float(criterion.n), int(criterion.p)


def warn_unconverged(stacklevel: int) -> None:
    """The warning of a path whose search reached its iteration limit at some k."""
    warnings.warn(f"splicing reached max_iter={MAX_ITER} before converging at some k of "
                  f"the path", RuntimeWarning, stacklevel=stacklevel)


def least_squares_bound(G: np.ndarray, c: np.ndarray, d: float, free: Sequence[int] = ()) -> float:
    """RSS_LS of the path's bound: least squares on all the columns of the quadratic
    with the ``free`` columns profiled out, also when G is singular (aliased columns:
    the bound still holds; only with p ≥ N is RSS_LS 0, and then there is no bound)."""
    if len(free):
        G, c, d, _, _ = profile_out(G, c, d, free)
    rss_ls = least_squares_rss(G, c, d) if G.size else max(float(d), 0.0)
    return 0.0 if rss_ls <= 1e-12 * max(abs(float(d)), 1e-300) else rss_ls


def _ic_stop(G, c, d, ic, rss_ls=None):
    """``stop(k, rss)`` for :func:`best_subset_path`: True once no k' > k can win."""
    if rss_ls is None:
        rss_ls = least_squares_bound(G, c, d)
    best = [float(ic(np.array([d]), np.array([0]))[0])]  # the null model, k = 0

    def stop(k, rss):
        best[0] = min(best[0], float(ic(np.array([rss]), np.array([k]))[0]))
        return rss_ls > 0 and float(ic(np.array([rss_ls]), np.array([k + 1]))[0]) > best[0]

    return stop


def default_k_max(n_samples: int, n_penalised: int) -> int:
    """abess's default largest support size, N / (log log N · log p), within [1, p]."""
    n = max(n_samples, 3)
    guess = int(n / (np.log(np.log(n)) * np.log(max(n_penalised, 3))))
    return int(np.clip(guess, 1, min(n_penalised, n_samples - 2)))
