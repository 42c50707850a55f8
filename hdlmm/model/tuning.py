"""Choosing the support size k and the proxy parameter a from the data.

* k by an information criterion along the path; its sample size is N at the
  maximum-likelihood a of the working model (:func:`proxy_ml_k`, the default), or
  tr(Σ_a⁻¹) or N at every a of the grid;
* (a, k) by grouped K-fold cross-validation: folds are whole clusters (the blocks of a
  ClusterStats), training statistics are "total − fold" and the held-out criterion is
  computed from the fold's own cross-products, so no pass over the rows is repeated.

Held-out criteria, both comparable across values of a:

``"marginal"``
    mean squared prediction error of held-out clusters without random effects,
    ‖y_f − X_fβ‖² / N_f = (d_f(0) − 2βᵀc_f(0) + βᵀG_f(0)β) / N_f.
``"loglik"``
    held-out Gaussian negative log-likelihood per row under Var(y_i) = σ² Σ_a^i, with σ²
    fitted on the training folds (σ̂² = RSS_train(a) / N_train):
    ½ [log 2πσ̂² + log det Σ_a,f / N_f + RSS_f(a) / (σ̂² N_f)].
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from hdlmm.core._cv_kernel import LOGLIK, MARGINAL, fold_problems, fold_scores
from hdlmm.core._kernel_matrix import read_only
from hdlmm.core.transform import ProxyTransform, objectives
from hdlmm.model.path import IC_TYPES, fit_path, information_criterion, runs_in_kernel  # noqa: F401
from hdlmm.model.settings import SelectionSettings

__all__ = ["information_criterion", "proxy_ml_k", "CVResult", "cross_validate",
           "choose_from_cv", "IC_TYPES", "CV_CRITERIA"]

CV_CRITERIA = ("marginal", "loglik")
#: one-sided 5% normal quantile, the bound of ``one_se="paired"``
PAIRED_Z = 1.6448536269514722


def proxy_ml_k(rss: ArrayLike, logdet: np.ndarray, n_eff: ArrayLike, n_rows: int, p: int,
               kind: str = "ebic") -> tuple[int, int]:
    """Support size by an information criterion at the working model's fitted a.

    Under the working model Var(y_i) = σ² Σ_a^i the whitened residuals are N independent
    components, so the criterion's sample size is N, but only at an a that fits: when a
    is larger than the data's variance ratio, the random-effect directions are shrunk
    below σ², only about tr(Σ_a⁻¹) components carry the noise, and a criterion with N
    over-selects; with tr(Σ_a⁻¹) everywhere it under-selects where q is close to the
    cluster sizes (tr(Σ_a⁻¹) → N − Σᵢ rank Zᵢ, which is 0 when every Zᵢ is square).
    So a is set to its maximum-likelihood value on the grid, from the profiled deviance
    of the working model

        D(a, k) = N log(RSS_k(a) / N) + log det Σ_a,

    and k is chosen by the criterion with n = N at that a; the two steps alternate
    until k repeats (a fixed point, or the first repeat of a cycle). The start is the
    conservative k of the criterion with n = tr(Σ_a⁻¹) at the a fitted for k = 1.

    Parameters
    ----------
    rss : ndarray of shape (n_a, k_max + 1)
        RSS of the best subset of each size k = 0..k_max at each a (``inf`` beyond a
        path's end).
    logdet : ndarray of shape (n_a,)
        log det Σ_a.
    n_eff : ndarray of shape (n_a,)
        tr(Σ_a⁻¹).
    n_rows : int
    p : int
        Number of candidate columns.
    kind : str

    Returns
    -------
    k : int
        0 (the null model) is a candidate.
    ia : int
        Index of the maximum-likelihood a at k.
    """
    rss = np.maximum(np.asarray(rss, dtype=float), np.finfo(float).tiny)
    ks = np.arange(rss.shape[1])
    dev = n_rows * np.log(rss / n_rows) + np.asarray(logdet, dtype=float)[:, None]
    ia = int(np.argmin(dev[:, min(1, ks[-1])]))
    k = int(np.argmin(information_criterion(rss[ia], ks, n_eff[ia], p, kind)))
    seen = []
    while k not in seen:
        seen.append(k)
        ia = int(np.argmin(dev[:, k]))
        k = int(np.argmin(information_criterion(rss[ia], ks, n_rows, p, kind)))
    return k, int(np.argmin(dev[:, k]))


@dataclass
class CVResult:
    """Held-out criterion per (a, fold, k): ``scores`` of shape (n_a, K, n_k), for the
    support sizes ``ks`` = 0..n_k − 1 (k = 0: the null model)."""

    a_grid: np.ndarray
    ks: np.ndarray
    scores: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        return self.scores.mean(axis=1)

    @property
    def se(self) -> np.ndarray:
        K = self.scores.shape[1]
        return self.scores.std(axis=1, ddof=1) / np.sqrt(K)

    def merge(self, other: CVResult) -> CVResult:
        """The results of both, ordered by a (paths of different lengths padded with
        NaN)."""
        n_k = max(self.ks.size, other.ks.size)
        pad = [np.pad(r.scores, ((0, 0), (0, 0), (0, n_k - r.ks.size)),
                      constant_values=np.nan) for r in (self, other)]
        a = np.r_[self.a_grid, other.a_grid]
        order = np.argsort(a, kind="stable")
        return CVResult(a_grid=a[order], ks=np.arange(n_k),
                        scores=np.concatenate(pad)[order])

    def table(self) -> pd.DataFrame:
        """Long DataFrame: one row per (a, k) with the mean and SE of the criterion."""
        A, K = np.meshgrid(self.a_grid, self.ks, indexing="ij")
        return pd.DataFrame({"a": A.ravel(), "k": K.ravel(), "mean": self.mean.ravel(),
                             "se": self.se.ravel()})

    def best(self, one_se: bool | str = False, k_of_a: np.ndarray | None = None) -> tuple[int, int]:
        """Indices (i_a, i_k) of the chosen cell.

        The cell with the smallest mean; with ``k_of_a`` (index of the k allowed at each
        a, e.g. chosen by an information criterion) only those cells compete. With
        ``one_se=True``, k is then lowered to the sparsest k at the same a whose mean is
        within one standard error of the chosen cell's (the one-standard-error rule of
        Breiman et al. 1984, applied along k at the chosen a, as with a fixed
        elastic-net mixing parameter in glmnet): a larger model must beat a smaller one
        by more than the noise of the cross-validation itself. With
        ``one_se="paired"`` that noise is the paired difference's over the same folds:
        the sparsest k whose fold-by-fold excess over the chosen cell has a mean of at
        most 1.645 of its standard error (the chosen k must be better at the one-sided
        5% level), which leaves out the variation between folds that both models share.
        """
        mean, se = np.nan_to_num(self.mean, nan=np.inf), self.se
        allowed = np.full(mean.shape, k_of_a is None)
        if k_of_a is not None:
            allowed[np.arange(mean.shape[0]), k_of_a] = True
        # cells equal up to round-off are ties: take the first (smallest a, then k), so
        # the choice does not depend on the order in which rows were summed
        best = np.min(mean[allowed])
        tol = 1e-9 * max(abs(best), 1.0) if np.isfinite(best) else 0.0
        ia, ik = np.unravel_index(np.argmax(allowed & (mean <= best + tol)), mean.shape)
        if not one_se:
            return ia, ik
        if one_se == "paired":
            excess = self.scores[ia, :, :ik + 1] - self.scores[ia, :, ik:ik + 1]
            bound = PAIRED_Z * excess.std(axis=0, ddof=1) / np.sqrt(excess.shape[0])
            within = excess.mean(axis=0) <= bound + tol
        else:
            within = mean[ia, :ik + 1] <= mean[ia, ik] + se[ia, ik] + tol
        within[-1] = True  # the chosen cell itself (also when its scores are not finite)
        return ia, int(np.argmax(within))


def _heldout(criterion, coefs, test0, test_a, train_rss, train_n, train_d):
    """Held-out criterion of the coefficient vectors ``coefs`` (one per row) on one fold,
    with their training RSS (floored at 1e-12 of the training total ``train_d``: an exact
    training fit, on tiny folds, would otherwise make σ̂² ≈ 0 and the criterion
    overflow)."""
    G0, c0, d0, _, n_f = test0
    if criterion == "marginal":
        return objectives(G0, c0, d0, coefs) / n_f
    Ga, ca, da, logdet, _ = test_a
    rss = np.maximum(train_rss, 1e-12 * max(train_d, np.finfo(float).tiny))
    s2 = np.maximum(rss / train_n, np.finfo(float).tiny)
    rss_f = objectives(Ga, ca, da, coefs)
    return 0.5 * (np.log(2 * np.pi * s2) + logdet / n_f + rss_f / (s2 * n_f))


def cross_validate(transform: ProxyTransform, a_grid: Sequence[float], k_max: int,
                   free: Sequence[int] = (), criterion: str = "marginal",
                   max_exchange: int = 2, units: Sequence | None = None,
                   progress: object = None) -> CVResult:
    """Grouped K-fold CV over a grid of a and support sizes 0..k_max.

    Parameters
    ----------
    transform : ProxyTransform
        Built on a ClusterStats with K ≥ 2 blocks (the folds).
    a_grid : sequence of float
    k_max : int or sequence of int (one per value of a)
        Largest support size of the paths; cells beyond a value's own k_max are NaN.
    free : sequence of int
        Unpenalised columns.
    criterion : {"marginal", "loglik"}
    max_exchange : int
    units : sequence of arrays of int, optional
        Groups of columns selected together (see :func:`~hdlmm.model.path.fit_path`).
    progress : tqdm bar, optional
        Advanced by one after each fold's path.

    Returns
    -------
    CVResult
    """
    if criterion not in CV_CRITERIA:
        raise ValueError(f"cv_criterion must be one of {CV_CRITERIA}; got {criterion!r}")
    K = transform.stats.n_blocks
    k_max_a = np.broadcast_to(np.asarray(k_max, dtype=int), (len(a_grid),))
    q0 = transform.at(0.0)
    scores = np.full((len(a_grid), K, int(k_max_a.max()) + 1), np.nan)
    fold_scores_at = (partial(_compiled_scores, lead=len(free))
                      if runs_in_kernel(free, units, None)
                      else partial(_loop_scores, free=free, units=units))
    for ia, a in enumerate(a_grid):
        k_a = min(int(k_max_a[ia]), transform.stats.n_features - len(free))
        scores[ia, :, :k_a + 1] = fold_scores_at(
            transform.at(a), q0, transform.logdet_blocks(a), k_a, criterion,
            max_exchange, progress)
    if np.isinf(scores).any():
        warnings.warn("some cross-validation training sets have no more rows than "
                      "coefficients, so their held-out likelihood is undefined (set to "
                      "inf); use fewer folds (cv), a smaller k_max, or give a",
                      RuntimeWarning, stacklevel=3)
    return CVResult(a_grid=np.asarray(a_grid, dtype=float),
                    ks=np.arange(scores.shape[2]), scores=scores)


def _loop_scores(qa, q0, logdet, k_max, criterion, max_exchange, progress, free, units):
    """The held-out scores (K, k_max + 1) of every fold at one a, a path at a time
    (:func:`~hdlmm.model.path.fit_path`: any unpenalised columns and units)."""
    K = qa.c.shape[0]
    scores = np.full((K, k_max + 1), np.nan)
    for f in range(K):
        G, G_f, c, d, _, n_tr = qa.split(f)
        path = fit_path(G, c, d, k_max, free=free, max_exchange=max_exchange,
                        units=units, minus=G_f)
        if progress is not None:
            progress.update(1)
        n_k = min(k_max + 1, path.ks.size)  # k = 0..n_k − 1
        coefs = path.coefs[:n_k]
        S = np.flatnonzero(np.any(coefs != 0, axis=0))  # the fold's problems on
        test_a = None                                    # the columns in use only
        if criterion == "loglik":
            Gf, cf, df, _, nf = qa.block(f, S)
            test_a = (Gf, cf, df, logdet[f], nf)
        scores[f, :n_k] = _heldout(criterion, coefs[:, S], q0.block(f, S), test_a,
                                   path.rss[:n_k], n_tr, d)
        if criterion == "loglik":  # no residual df: σ̂² is not estimable
            scores[f, :n_k][n_tr <= path.df[:n_k] + len(free)] = np.inf
    return scores


def _compiled_scores(qa, q0, logdet, k_max, criterion, max_exchange, progress, lead):
    """:func:`_loop_scores` for at most the intercept unpenalised and units of one
    column, by the compiled kernel (:mod:`hdlmm.core._cv_kernel`): every fold's path
    and scores in two calls, the fold's problems read as the path kernel reads them
    (``lead`` = 1: the intercept profiled out)."""
    G, c, d, _, n = qa.total()
    low = qa.low_rank
    F = low.XtX if low is not None else qa.G
    K, p = F.shape[0], G.shape[0]
    B = low.B if low is not None else np.zeros((0, p))
    bounds = (low.bounds if low is not None else np.zeros(K + 1)).astype(np.int64)
    C, D = c[None, :] - qa.c, d - qa.d
    F, B, C, D = (read_only(x) for x in (F, B, C, D))
    problems = [read_only(x) for x in fold_problems(G, F, B, bounds, C, D, lead)]
    test = ((q0.G, np.zeros((0, p)), q0.c, q0.d) if criterion == "marginal"
            else (F, B, qa.c, qa.d))
    scores, ok = fold_scores(
        read_only(G), F, B, bounds, *problems, lead, int(k_max), int(max_exchange), 20,
        1000, MARGINAL if criterion == "marginal" else LOGLIK, C, D,
        read_only(n - qa.n_rows), *(read_only(x) for x in test), read_only(qa.n_rows),
        read_only(logdet))
    if not ok:
        warnings.warn("splicing reached max_iter=1000 before converging at some k of the "
                      "path", RuntimeWarning, stacklevel=4)
    if progress is not None:
        progress.update(K)
    return scores


def choose_from_cv(model: SelectionSettings, cvres: CVResult, k_of_a: np.ndarray | None,
                   ic_how: str = "") -> tuple:
    """(a, k, description) for a SparseLMM from the CV table (and the IC's k per a,
    described by ``ic_how``)."""
    how = f"a by {model.cv}-fold grouped CV ({model.cv_criterion})"
    if model.support_size is not None:
        k_of_a = np.full(cvres.a_grid.size, model.support_size)
        ia, _ = cvres.best(k_of_a=k_of_a)
        return float(cvres.a_grid[ia]), model.support_size, how + "; k given"
    rule = ("not significantly worse in CV (paired over folds, one-sided 5%)"
            if model.one_se == "paired" else "within one SE of the CV score")
    if k_of_a is None:
        ia, ik = cvres.best(model.one_se)
        how += ", jointly with k"
        if model.one_se:
            how += f" (then the sparsest k at that a {rule})"
        return float(cvres.a_grid[ia]), int(cvres.ks[ik]), how
    ia, ik = cvres.best(model.one_se, k_of_a=k_of_a)
    k_ic, k = int(k_of_a[ia]), int(cvres.ks[ik])
    how += ic_how
    if model.one_se:
        how += (f"; then the sparsest k at that a {rule}: "
                f"{k}" + (f" (the criterion's {k_ic})" if k != k_ic else ""))
    return float(cvres.a_grid[ia]), k, how
