"""SparseGLMM on rows read in chunks (``fit_source`` for files, ``fit_dask``): the PQL
iteration as passes over the data, with the same steps and choices as the fit on rows
in memory (:mod:`hdlmm.api.glmm_memory`), and the same result up to rounding.

The working response and weights depend on η, so the GLMM cannot be fitted from one set
of cross-products. Passes over the data, each reading every row once:

1. the cluster labels (the folds' layout, as for SparseLMM);
2. one per PQL iteration, plus one to see the last change of η: each chunk's working
   response z and weights W at the current η, accumulated into the weighted statistics
   of all p columns until the support has settled, of its columns afterwards;
3. the statistics of all columns at the converged η, for the choice of (a, k) (kept:
   y, Z, trials, offset and the labels, O(N·q) numbers);
4. the columns the CV's candidate fits use, for their held-out deviance (one pass per
   round of the local search over a, usually 2-3);
5. if the CV changed (a, k): 2 again, with the best subset at (a, k) held (passes over
   its columns only);
6. the selected columns, for the Laplace fit (N × (k + 1) numbers in memory);
7. the debiased inference: the working statistics at the Laplace fit, and its pass of
   per-cluster sums.

On a 723-row example (60 clusters, p = 41) the default fit made 15 passes besides the
labels' (7 PQL fits).

Memory: the statistics, one chunk, O(N·q) numbers and the columns of 4 and 6, never
N × p. ``fit_dask`` reads its partitions one at a time on the Dask client (the
arithmetic runs on the driver, unlike SparseLMM's ``fit_dask``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from hdlmm.api._working import SupportHold, WorkingFit, laplace_proxy_a, warn_not_converged
from hdlmm.api.estimator import SparseLMM
from hdlmm.core._accumulate import _Accumulator
from hdlmm.core.folds import FoldLayout
from hdlmm.core.stats import ClusterStats
from hdlmm.model.families import Family

__all__ = ["GLMMRows", "WorkingPass", "file_chunks", "dask_chunks", "fit_chunked",
           "pql_passes", "working_pass", "eta_of", "state_of", "weighted_row_chunks",
           "fit_working"]


@dataclass
class GLMMRows:
    """A source of row chunks ``(X, y, Z, labels, trials, offset)``: ``chunks()``
    starts a pass. ``names``: X's columns; ``layout``: the folds of all labels;
    ``z_one``: the intercept's position in Z (−1: none); ``labels``: all cluster
    labels, sorted."""

    chunks: Callable[[], Iterator[tuple]]
    names: list
    layout: FoldLayout
    z_one: int
    labels: np.ndarray

    @property
    def p(self) -> int:
        return len(self.names)

    def columns(self, cols: np.ndarray) -> np.ndarray:
        """X[:, cols] of every row (one pass)."""
        parts = [chunk[0][:, cols] for chunk in self.chunks()]
        return np.concatenate(parts) if parts else np.zeros((0, len(cols)))


@dataclass
class WorkingPass:
    """What one pass at η returns: the working model's statistics (standardised, the
    weights W normalised to mean 1 as :class:`SparseLMM` does), the largest change of η
    from the previous state, and (``keep``) y, Z, trials, offset, labels of all rows and
    the mean weight."""

    stats: ClusterStats
    change: float
    rows: dict | None
    w_mean: float


def eta_of(state: dict | None, X: np.ndarray, y: np.ndarray, Z: np.ndarray,
           labels: np.ndarray, trials: np.ndarray, offset: np.ndarray,
           family: Family) -> np.ndarray:
    """η of a chunk at ``state`` (coef (p,), intercept, gamma: DataFrame by label), or
    glm's start (R's) when ``state`` is None."""
    if state is None:
        if family.name == "binomial":
            return special.logit((y + 0.5) / (trials + 1.0))
        return np.log(y + 0.1)
    on = np.flatnonzero(state["coef"])
    eta = offset + state["intercept"] + X[:, on] @ state["coef"][on]
    gamma = state["gamma"]
    if gamma is not None:
        g = gamma.reindex(pd.Index(labels)).to_numpy()
        eta = eta + np.nan_to_num(np.einsum("ij,ij->i", Z, g), nan=0.0)
    return eta


def working_pass(data: GLMMRows, family: Family, state: dict | None, prev: dict | None,
                 cols: np.ndarray | None = None, keep: bool = False) -> WorkingPass:
    """One pass: the weighted statistics of (X[:, cols], z) at η(state) (see the
    module docstring, 2 and 3)."""
    layout = data.layout
    names = data.names if cols is None else [data.names[j] for j in cols]
    acc, change, kept = None, 0.0, {k: [] for k in ("y", "Z", "labels", "trials", "offset")}
    w_sum, n = 0.0, 0
    for X, y, Z, labels, m, o in data.chunks():
        if state is None:  # the first pass
            family.check_response(y, m)
        eta = eta_of(state, X, y, Z, labels, m, o, family)
        if prev is not None:
            change = max(change, float(np.max(np.abs(
                eta - eta_of(prev, X, y, Z, labels, m, o, family)), initial=0.0)))
        mu, w = family.mean(eta, m), np.maximum(family.variance(eta, m), 1e-10)
        z = eta - o + (y - mu) / w
        u = np.sqrt(w)
        Xc = X if cols is None else X[:, cols]
        if acc is None:
            acc = _Accumulator(layout.labels.size, layout.n_blocks, Xc.shape[1] + 1,
                               Z.shape[1], z_one=data.z_one)
        acc.add_rows(Xc * u[:, None], z * u, Z * u[:, None], layout.positions(labels),
                     layout.block, True, u)
        w_sum, n = w_sum + float(w.sum()), n + y.size
        if keep:
            for key, v in zip(kept, (y, Z, labels, m, o)):
                kept[key].append(v)
    stats = ClusterStats.from_sums(acc, layout.labels, layout.block, True,
                                   ["(Intercept)"] + names)
    w_mean = w_sum / n
    rows = {k: np.concatenate(v) for k, v in kept.items()} if keep else None
    return WorkingPass(stats.reweighted(1.0 / w_mean).standardized(), change, rows, w_mean)


def state_of(model: SparseLMM, cols: np.ndarray | None, p: int) -> dict:
    """The state (coef over all p columns, intercept, BLUPs) of a working fit on the
    columns ``cols`` (None: all)."""
    coef = np.asarray(model.coef_, dtype=float)
    if cols is not None:
        coef = np.zeros(p)
        coef[cols] = model.coef_
    return dict(coef=coef, intercept=float(model.intercept_), gamma=model.random_effects_)


def weighted_row_chunks(data: GLMMRows, family: Family, state: dict, w_mean: float,
                        stats: ClusterStats) -> Callable:
    """The inference's pass over the working model's rows at η(state): chunks
    ``(u X, u z, cluster index, u)`` with u = √(W / w̄) (as
    :func:`hdlmm.core.row_pass.row_chunks` with weights)."""
    def chunks():
        for X, y, Z, labels, m, o in data.chunks():
            eta = eta_of(state, X, y, Z, labels, m, o, family)
            mu, w = family.mean(eta, m), np.maximum(family.variance(eta, m), 1e-10)
            z = eta - o + (y - mu) / w
            u = np.sqrt(w / w_mean)
            yield X * u[:, None], z * u, stats.cluster_index(labels), u
    return chunks


def fit_working(params: dict, data: GLMMRows, stats: ClusterStats,
                rows: Callable | None = None) -> SparseLMM:
    """SparseLMM(**params) on the working statistics (names from ``data``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # boundary fits say so
        return SparseLMM(**params).fit_stats(stats, rows)


# ----------------------------------------------------------------- the sources
def file_chunks(source: object, spec: object, trials: str | None, offset: str | None,
                chunk_rows: int, sep: str | None) -> Callable:
    """Chunks of a file (or a folder of Parquet files) with its trials and offset
    columns (default 1 and 0)."""
    from hdlmm.sources.streaming import read_batches

    extra = [c for c in (trials, offset) if c is not None]

    def chunks():
        where, start = str(source), 0
        for frame in read_batches(source, spec.columns + extra, chunk_rows, sep,
                                  spec.numeric + extra, [spec.groups]):
            yield _chunk(frame, spec, trials, offset, start, where)
            start += len(frame)
    return chunks


def dask_chunks(ddf: object, spec: object, trials: str | None,
                offset: str | None) -> Callable:
    """Chunks of a Dask DataFrame: its partitions, computed one at a time."""
    extra = [c for c in (trials, offset) if c is not None]
    frame = ddf[spec.columns + extra]

    def chunks():
        start = 0
        for part in frame.to_delayed():
            df = part.compute()
            if len(df):
                yield _chunk(df, spec, trials, offset, start, "the Dask DataFrame")
            start += len(df)
    return chunks


def _chunk(frame, spec, trials, offset, start, where):
    X, y, Z, g = spec.arrays(frame, start, where)
    n = y.size
    out = []
    for name, default in ((trials, 1.0), (offset, 0.0)):
        if name is None:
            out.append(np.full(n, default))
            continue
        v = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)
        if not np.all(np.isfinite(v)):
            row = start + int(np.argmax(~np.isfinite(v)))
            raise ValueError(f"column {name!r} of {where} has a missing or non-numeric "
                             f"value at row {row}; drop or fix such rows first")
        out.append(v)
    return X, y, Z, g, out[0], out[1]


# ------------------------------------------------------------------ the fit
def pql_passes(est: object, data: GLMMRows, family: Family, k: int | None = None,
               a: float | None = None, state: dict | None = None,
               held: tuple | None = None) -> tuple:
    """The PQL iteration of :func:`~hdlmm.api.glmm_memory.pql_rows` as passes (module
    docstring, 2): (WorkingFit, the state it was fitted at, k); adds its iterations to
    ``n_iter_``."""
    k = est.support_size if k is None else k
    a = est.a if a is None else a
    groups = [[data.names[j] for j in g] for g in est._groups(data.names, data.p)]
    forced = [data.names[j] for j in est._forced(data.names, data.p)]
    prev, fit_cols, model = None, None, None
    hold = SupportHold(k, a, held)
    est.converged_, fits = False, 0
    while True:
        step = working_pass(data, family, state, prev, hold.cols)
        if hold.held is not None and model is not None and step.change < est.tol:
            est.converged_ = True
            break
        if fits == est.max_iter:
            break
        params = dict(support_size=hold.k, a=a, cv=est.cv, k_max=est.k_max,
                      random_state=est.random_state, inference=None, progress=est.progress,
                      feature_groups=groups, force=forced)
        if hold.held is not None:  # the support has settled: hold it and a
            params.update(support_size=0, a=hold.a, feature_groups=[],
                          force=[data.names[j] for j in hold.held])
        fit_cols = hold.cols
        model = fit_working(params, data, step.stats)
        fits += 1
        prev, state = state, state_of(model, fit_cols, data.p)
        hold.see(model, tuple(model.support_) if fit_cols is None else hold.held)
    hold.end(model)
    est.n_iter_ += fits
    if not est.converged_:
        warn_not_converged(est.max_iter, step.change)
    return WorkingFit.of(model, fit_cols, data.p, hold.how), prev, hold.k


def fit_chunked(est: object, data: GLMMRows, family: Family) -> None:
    """Fit ``est`` (a SparseGLMM) on ``data`` (module docstring); sets its attributes."""
    from hdlmm.model.glmm import fit_laplace
    from hdlmm.model.glmm_cv import HeldOutRows

    est.n_iter_ = 0
    working, at, k = pql_passes(est, data, family)
    full = working_pass(data, family, at, None, keep=True)
    est.cv_results_, est.selection_ = None, working.selection
    if est.k_selection != "working" and (est.support_size is None or est.a is None):
        r = full.rows
        rows = HeldOutRows.from_stats(full.stats, data.columns, r["Z"], r["y"], r["trials"],
                                      r["offset"], r["labels"])
        a, k_cv, support = est._choose_on(full.stats, rows, family, k, data.names)
        if (a, k_cv) != (working.a, k):  # η again, with that support and a held
            start = state_of(working.model, None, data.p)
            start["coef"] = working.coef
            working, at, k = pql_passes(est, data, family, k_cv, a, start, support)
            full = working_pass(data, family, at, None, keep=True)
    r, support = full.rows, working.support
    Xs = np.c_[np.ones(r["y"].size), data.columns(support)]
    codes = pd.Index(data.labels).get_indexer(pd.Index(r["labels"]))
    start = None
    if working.cov_re is not None:
        start = (np.r_[working.intercept, working.coef[support]], working.cov_re)
    fit = fit_laplace(Xs, r["y"], r["Z"], codes, family, trials=r["trials"],
                      offset=r["offset"], start=start)
    est.inference_ = None
    if est.inference is not None:  # the working model at the Laplace fit (as in memory)
        coef = np.zeros(data.p)
        coef[support] = fit.coef[1:]
        gamma = pd.DataFrame(fit.random_effects, index=pd.Index(data.labels))
        state = dict(coef=coef, intercept=float(fit.coef[0]), gamma=gamma)
        step = working_pass(data, family, state, None)
        rows = weighted_row_chunks(data, family, state, step.w_mean, step.stats)
        params = dict(support_size=0, a=laplace_proxy_a(step.stats, fit.cov_re, step.w_mean),
                      inference=est.inference, force=[data.names[j] for j in support],
                      progress=est.progress, random_state=est.random_state)
        est.inference_ = fit_working(params, data, step.stats, rows).inference_
    est._set(fit, working, support, k, data.p, data.labels, data.names)
