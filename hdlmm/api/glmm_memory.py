"""SparseGLMM on rows in memory: the PQL iteration, the choice of (a, k) by the held-out
deviance, and the debiased inference, each a step of :meth:`SparseGLMM.fit
<hdlmm.api.glmm_estimator.SparseGLMM.fit>` (:mod:`hdlmm.api.glmm_chunks` makes the same
steps as passes over rows read in chunks). Each function takes the estimator, reads its
parameters and sets the attributes its step produces."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import special

from hdlmm.api._working import SupportHold, WorkingFit, laplace_proxy_a, warn_not_converged
from hdlmm.api.estimator import SparseLMM
from hdlmm.api.params import resolve_forced
from hdlmm.core.row_pass import row_chunks
from hdlmm.core.stats import ClusterStats
from hdlmm.inference.debias import DebiasedInference
from hdlmm.model.families import Family
from hdlmm.model.glmm_cv import HeldOutRows

__all__ = ["pql_rows", "choose_rows", "debiased_rows"]


def pql_rows(est: object, X: np.ndarray, y: np.ndarray, Z: np.ndarray,
             row_labels: np.ndarray, m: np.ndarray, o: np.ndarray, family: Family,
             names: list | None, eta: np.ndarray | None = None, k: int | None = None,
             a: float | None = None, held: tuple | None = None) -> tuple:
    """The PQL iteration of ``est`` (:mod:`hdlmm.api.glmm_estimator`, step 1) from η
    (default: glm's start), with k and a given (None: the estimator's). Once the
    support repeats it is held (and a with it), and the working model is fitted on its
    columns alone. Returns (WorkingFit, η, k, z, W), z and W those of the last working
    fit; sets ``converged_`` and adds its iterations to ``n_iter_``."""
    k = est.support_size if k is None else k
    a = est.a if a is None else a
    if eta is None and family.name == "binomial":  # R's glm start: (y + ½)/(m + 1)
        eta = special.logit((y + 0.5) / (m + 1.0))
    elif eta is None:
        eta = np.log(y + 0.1)
    groups = [g.tolist() for g in est._groups(names, X.shape[1])]
    forced = est._forced(names, X.shape[1]).tolist()
    hold, model = SupportHold(k, a, held), None
    est.converged_ = False
    for it in range(1, est.max_iter + 1):
        mu, w = family.mean(eta, m), np.maximum(family.variance(eta, m), 1e-10)
        z = eta - o + (y - mu) / w
        params = dict(support_size=hold.k, a=a, cv=est.cv, k_max=est.k_max,
                      random_state=est.random_state, inference=None,
                      progress=est.progress, feature_groups=groups, force=forced)
        data, fit_cols = X, hold.cols  # an array: a frame would be copied at each fit
        if hold.held is not None:  # the support has settled: its columns, a held
            data = X if fit_cols is None else X[:, fit_cols]
            params.update(support_size=0, a=hold.a, feature_groups=[],
                          force=[] if fit_cols is None else list(range(fit_cols.size)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # boundary fits say so
            model = SparseLMM(**params).fit(data, z, row_labels, Z, sample_weight=w)
        new = np.asarray(model.predict(data, row_labels, Z)) + o
        change = float(np.max(np.abs(new - eta)))
        eta = new
        hold.see(model, tuple(model.support_) if fit_cols is None else hold.held)
        if hold.held is not None and change < est.tol:
            est.converged_ = True
            break
    hold.end(model)
    est.n_iter_ += it
    if not est.converged_:
        warn_not_converged(est.max_iter, change)
    return WorkingFit.of(model, fit_cols, X.shape[1], hold.how), eta, hold.k, z, w


def choose_rows(est: object, pql: dict, codes: np.ndarray, labels: np.ndarray,
                z: np.ndarray, w: np.ndarray, k_working: int) -> tuple:
    """(a, k, support) by grouped CV on the held-out deviance at the converged
    working model (rows in memory); sets ``cv_results_`` and ``selection_``."""
    X = pql["X"]
    stats = ClusterStats.from_checked(X, z, pql["Z"], codes, labels, n_blocks=est.cv,
                                      random_state=est.random_state,
                                      weights=w / np.mean(w)).standardized()
    rows = HeldOutRows.from_stats(stats, lambda cols: X[:, cols], pql["Z"], pql["y"],
                                  pql["m"], pql["o"], pql["row_labels"])
    return est._choose_on(stats, rows, pql["family"], k_working, pql["names"])


def debiased_rows(est: object, pql: dict, fit: object, support: np.ndarray,
                  eta: np.ndarray, codes: np.ndarray,
                  labels: np.ndarray) -> DebiasedInference | None:
    """The debiased inference (or None) of the working model at the Laplace fit:
    z and W at its η (modes included), the support held, a matched to its Ψ̂
    (:func:`~hdlmm.api._working.laplace_proxy_a`)."""
    if est.inference is None:
        return None
    names, X, family, m = pql["names"], pql["X"], pql["family"], pql["m"]
    inference = est.inference
    if names is not None and not isinstance(inference, str):  # names → columns
        inference = resolve_forced(inference, names, X.shape[1]).tolist()
    w = np.maximum(family.variance(eta, m), 1e-10)
    z = eta - pql["o"] + (pql["y"] - family.mean(eta, m)) / w
    stats = ClusterStats.from_checked(X, z, pql["Z"], codes, labels,
                                      weights=w / np.mean(w)).standardized()
    a = laplace_proxy_a(stats, fit.cov_re, float(np.mean(w)))
    index, u = stats.cluster_index(labels)[codes], np.sqrt(w / np.mean(w))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        model = SparseLMM(support_size=0, a=a, force=support.tolist(),
                          inference=inference, progress=est.progress,
                          random_state=est.random_state).fit_stats(
            stats, lambda: row_chunks(X, z, index, u=u))
    inf = model.inference_
    if inf is not None and names is not None:
        inf.names = [names[j] for j in inf.columns]
    return inf
