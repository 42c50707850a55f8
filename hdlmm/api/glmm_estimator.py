"""SparseGLMM: best-subset fixed effects of a generalized linear mixed model for binary
and count outcomes (scikit-learn API).

Method (Breslow & Clayton 1993; Hui, Müller & Welsh 2017 for regularised PQL):

1. **Selection on the working model of penalised quasi-likelihood (PQL).** From η
   (start: glm's, p = (y + ½)/(m + 1) or μ = y + 0.1), the IRLS working response
   z = η − o + (y − μ)/W with weights W = Var(y | η) is a linear mixed model with
   residual variances 1/W: :class:`SparseLMM` on (X, z, groups, Z) with
   ``sample_weight=W`` chooses a and k (its proxy is W⁻¹ + aZZᵀ) and fits Ψ and the
   BLUPs, and η = o + Xβ̂ + Zγ̂ is updated. Once the support is the same in two
   successive iterations it is held and the iteration runs to convergence of η.
2. **The reported model: the Laplace fit on that support** (:mod:`hdlmm.model.glmm`,
   lme4's ``glmer`` with nAGQ = 1): fixed effects, Ψ̂, conditional modes, the
   log-likelihood, and Wald standard errors that ignore the selection step.

Formulas as glmer's: ``cbind(successes, failures) ~ ...`` for binomial counts,
``offset(np.log(exposure))`` for Poisson rates (:meth:`SparseGLMM.from_formula`).

k and a are chosen by grouped CV on the held-out deviance at the converged working model
(:mod:`hdlmm.model.glmm_cv`); when that changes them, the PQL iteration runs again at
the chosen (a, k) from its last η.

Files and Dask: :meth:`SparseGLMM.fit_source`, :meth:`SparseGLMM.fit_dask`
(:mod:`hdlmm.api.glmm_chunks`). Debiased inference (``inference``): SparseLMM's on the
working model at the Laplace fit (z and W at its η, the support held, a matched to its
Ψ̂). Forced columns (``force``, or ``force(...)`` in the formula) are kept
unpenalised in every working fit, in the CV's paths and in the Laplace fit.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats as sps
from sklearn.base import BaseEstimator

from hdlmm.api._working import laplace_eta
from hdlmm.api.estimator import SparseLMM
from hdlmm.api.fitted_glmm import FittedGLMM
from hdlmm.api.glmm_memory import choose_rows, debiased_rows, pql_rows
from hdlmm.api.params import (
    resolve_feature_groups,
    resolve_forced,
)
from hdlmm.core.checks import check_lmm_arrays
from hdlmm.model.families import get_family
from hdlmm.model.glmm import fit_laplace
from hdlmm.model.glmm_cv import choose_by_deviance
from hdlmm.model.path import default_k_max
from hdlmm.model.settings import DEFAULT_A_GRID
from hdlmm.sources.formula import parse_formula

__all__ = ["SparseGLMM"]

K_SELECTIONS = ("ic", "cv", "working")


class SparseGLMM(FittedGLMM, BaseEstimator):
    """Sparse fixed effects of a generalized linear mixed model (binomial or Poisson).

    Parameters
    ----------
    family : {"binomial", "poisson"}
        Binomial with the logit link (0/1 outcomes, or successes out of ``trials``);
        Poisson with the log link (counts, with an ``offset`` such as log exposure).
    support_size : int or None
        k, the number of selected fixed effects (the intercept and the ``force``
        columns are not counted); None chooses it (``k_selection``).
    a : float or None
        Proxy parameter of the working model; None: grouped CV on the held-out deviance.
    k_selection : {"ic", "cv", "working"}
        How k and a are chosen (:mod:`hdlmm.model.glmm_cv`) by grouped CV on the
        held-out (marginal, Laplace) deviance at the converged working model: "ic"
        (default), k by EBIC on the working model, a by that CV at k, then k lowered to
        the sparsest k not significantly worse (paired over folds); "cv", a and k
        jointly by that CV, then the same rule; "working", the working SparseLMM's own
        choice (EBIC, and a by the Gaussian held-out likelihood of the working
        response). "ic" recovered the true support more often in the benchmarks
        (benchmarks/RESULTS.md).
    feature_groups : "terms", "columns" or list of lists
        As :class:`SparseLMM`'s: a formula's factor is selected whole by default.
    force : str, int or list of them, optional
        Columns kept in every model, unpenalised and not counted in k (as
        :class:`SparseLMM`'s ``force``; the formula marker ``force(age)`` does the
        same): in every working fit, in the CV's paths and in the Laplace fit.
    cv, k_max, random_state, progress
        As :class:`SparseLMM`'s.
    inference : "support", "all", list or None
        Coordinates of the debiased inference (as :class:`SparseLMM`'s
        ``inference``, with its defaults; see ``inference_``); None: none.
    max_iter : int
        PQL iterations at most.
    tol : float
        Convergence of the PQL iteration: the largest change of η.

    Attributes
    ----------
    coef_, intercept_, params_ : the Laplace fixed effects (``params_`` by name)
    support_, support_size_, a_ : the columns in the model (the forced ones included),
        k and the working model's a
    forced_features_ : ndarray of str, the names of the forced columns
    selection_ : str, how a and k were chosen;  cv_results_ : DataFrame or None, the
        held-out deviance per row (mean and SE over folds) per (a, k)
    bse_, pvalues_ : pandas.Series, Wald standard errors and p-values of the Laplace
        fit on the selected support (they ignore the selection step); NaN off it
    cov_re_ : Ψ̂;  random_effects_ : DataFrame of the conditional modes by cluster
    random_effects_cov_ : ndarray (n, q, q), their conditional covariances (lme4's
        ``condVar``), in the order of ``random_effects_``
    inference_ : DebiasedInference or None
        Debiased estimates and cluster-robust SEs of the ``inference`` coordinates (Li,
        Cai & Li 2022's construction on the working model at the Laplace fit: z and W
        at its η, a matched to its Ψ̂; :meth:`confint`)
    loglik_ : the Laplace log-likelihood;  n_iter_, converged_ : the PQL iteration
    working_model_ : the last working SparseLMM (on the selected columns alone once the
        support has settled)
    """

    def __init__(self, family: str = "binomial", support_size: int | None = None,
                 a: float | None = None, *, k_selection: str = "ic",
                 feature_groups: str | list = "terms", force: str | int | list | None = None,
                 cv: int = 5, k_max: int | None = None,
                 inference: str | list | None = "support", max_iter: int = 30,
                 tol: float = 1e-6, progress: bool | None = None,
                 random_state: int | np.random.RandomState | None = None) -> None:
        self.family = family
        self.support_size = support_size
        self.a = a
        self.k_selection = k_selection
        self.feature_groups = feature_groups
        self.force = force
        self.cv = cv
        self.k_max = k_max
        self.inference = inference
        self.max_iter = max_iter
        self.tol = tol
        self.progress = progress
        self.random_state = random_state

    @classmethod
    def from_formula(cls, formula: str, data: pd.DataFrame, family: str = "binomial", *,
                     missing: str = "raise", **params: object) -> SparseGLMM:
        """Fit ``SparseGLMM(family, **params)`` to ``data`` by an lme4-style formula:
        ``"use ~ . + (1 | district)"`` (0/1), ``"cbind(s, n - s) ~ x + (1 | g)"``
        (successes out of trials), ``"y ~ . + offset(np.log(t)) + (1 | g)"`` (counts
        with exposure); random-effect bars as :class:`SparseLMM`'s.

        Returns
        -------
        SparseGLMM, fitted, with ``formula_`` and the design to encode new data
        (:meth:`predict_frame`).
        """
        design = parse_formula(formula, data, missing=missing, counts=True)
        if not design.fit_intercept:
            raise ValueError("SparseGLMM fits an intercept; remove '0 +' or '- 1' from "
                             "the formula")
        model = cls(family, **params)
        names = list(map(str, design.X.columns))
        model._formula_groups = [[names[j] for j in cols] for cols in design.terms.values()
                                 if len(cols) > 1]  # a factor's dummies: one unit
        model._formula_forced = design.forced  # the force(...) markers' columns
        model._formula_terms = design.terms
        model.fit(design.X, design.y, design.groups, design.Z, trials=design.trials,
                  offset=design.offset)
        del model._formula_groups, model._formula_forced, model._formula_terms
        if len(design.re_names) == model.random_effects_.shape[1]:
            model.random_effects_.columns = design.re_names
        model.formula_ = formula
        model.group_name_ = design.group_column
        model.formula_design_ = design.without_data()
        return model

    def fit(self, X: ArrayLike, y: ArrayLike, groups: ArrayLike, Z: ArrayLike | None = None,
            trials: ArrayLike | None = None, offset: ArrayLike | None = None) -> SparseGLMM:
        """Fit on rows (X, y) in clusters ``groups``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (N, p)
        y : array-like of shape (N,)
            0/1 outcomes, successes (with ``trials``) or counts.
        groups : array-like of shape (N,)
        Z : array-like of shape (N, q), optional  (default a random intercept)
        trials : array-like of shape (N,), optional  binomial trials (default 1)
        offset : array-like of shape (N,), optional  added to the linear predictor

        Returns
        -------
        self
        """
        self._check_params()
        family = get_family(self.family)
        names = list(map(str, X.columns)) if isinstance(X, pd.DataFrame) else None
        Xa, ya, Za, codes, labels = check_lmm_arrays(X, y, groups, Z)
        m = np.ones(ya.size) if trials is None else np.asarray(trials, dtype=float)
        o = np.zeros(ya.size) if offset is None else np.asarray(offset, dtype=float)
        if m.shape != ya.shape or o.shape != ya.shape:
            raise ValueError(f"trials and offset need one value per row ({ya.size})")
        if family.name == "poisson" and trials is not None:
            raise ValueError("trials are for the binomial family; for exposures in a "
                             "Poisson model pass offset=np.log(exposure)")
        family.check_response(ya, m)
        row_labels = labels[codes]
        pql = dict(X=Xa, y=ya, Z=Za, row_labels=row_labels, m=m, o=o, family=family,
                   names=names)
        self.n_iter_ = 0
        working, eta, k, z, w = pql_rows(self, **pql)
        self.cv_results_, self.selection_ = None, working.selection
        if self.k_selection != "working" and (self.support_size is None or self.a is None):
            a, k_cv, support = choose_rows(self, pql, codes, labels, z, w, k)
            if (a, k_cv) != (working.a, k):  # η again, with that support and a held
                working, eta, k, z, w = pql_rows(
                    self, **pql, eta=eta, k=k_cv, a=a, held=support)
        support = working.support
        Xs = np.c_[np.ones(ya.size), Xa[:, support]]
        start = None  # from the working model: glmer's first stage, near the optimum
        if working.cov_re is not None:
            start = (np.r_[working.intercept, working.coef[support]], working.cov_re)
        fit = fit_laplace(Xs, ya, Za, codes, family, trials=m, offset=o, start=start)
        eta = laplace_eta(fit, Xs, Za, codes, o)
        self.inference_ = debiased_rows(self, pql, fit, support, eta, codes, labels)
        self._set(fit, working, support, k, Xa.shape[1], labels, names)
        return self

    def fit_source(self, source: str | os.PathLike, *, y: str, groups: str,
                   X: list | None = None, Z: list | None = None, trials: str | None = None,
                   offset: str | None = None, chunk_rows: int = 50_000,
                   sep: str | None = None) -> SparseGLMM:
        """Fit on a Parquet/CSV file (or a folder of Parquet files) read in chunks, by
        passes over it (:mod:`hdlmm.api.glmm_chunks` says which and how many); the
        same fit as :meth:`fit` on the same rows, up to rounding.

        Parameters
        ----------
        source : str or Path
        y, groups : str
            Response (0/1, successes or counts) and cluster-label columns.
        X : list of str, optional
            Candidate predictors (default: every other column but ``trials`` and
            ``offset``, random slopes included).
        Z : list of str, optional
            Random-effect columns, ``"1"`` for the intercept (default ``["1"]``).
        trials, offset : str, optional
            Columns of binomial trials and of the offset (e.g. log exposure).
        chunk_rows : int
        sep : str, optional

        Returns
        -------
        self
        """
        from hdlmm.api.glmm_chunks import file_chunks
        from hdlmm.sources.streaming import (
            check_chunk_rows,
            scan_labels,
            source_columns,
        )

        chunk_rows = check_chunk_rows(chunk_rows)
        spec = self._spec(source_columns(source, sep), str(source), y, groups, X, Z,
                          trials, offset)
        labels = scan_labels(source, spec.groups, sep=sep)
        chunks = file_chunks(source, spec, trials, offset, chunk_rows, sep)
        return self._fit_chunks(chunks, spec, labels)

    def fit_dask(self, ddf: object, *, y: str, groups: str, X: list | None = None,
                 Z: list | None = None, trials: str | None = None,
                 offset: str | None = None) -> SparseGLMM:
        """Fit on a Dask DataFrame, by passes over its partitions (read one at a time
        on the Dask client; :mod:`hdlmm.api.glmm_chunks`). Parameters as
        :meth:`fit_source`'s.

        Returns
        -------
        self
        """
        from hdlmm.api.glmm_chunks import dask_chunks
        from hdlmm.sources.dask_frames import check_dask_frame, dask_layout

        check_dask_frame(ddf)
        spec = self._spec(list(ddf.columns), "the Dask DataFrame", y, groups, X, Z,
                          trials, offset)
        labels = dask_layout(ddf, spec, 1, None).labels
        return self._fit_chunks(dask_chunks(ddf, spec, trials, offset), spec, labels)

    def _spec(self, columns, where, y, groups, X, Z, trials, offset):
        """The TableSpec of a table with these columns (X by default: all but y,
        groups, trials and offset)."""
        from hdlmm.sources.streaming import TableSpec

        self._check_params()
        for name, what in ((trials, "trials"), (offset, "offset")):
            if name is not None and name not in columns:
                raise ValueError(f"{what} column {name!r} is not in {where}")
        if trials is not None and self.family == "poisson":
            raise ValueError("trials are for the binomial family; for exposures in a "
                             "Poisson model give an offset column of log(exposure)")
        if X is None:
            X = [c for c in map(str, columns) if c not in (y, groups, trials, offset)]
        return TableSpec(y, groups, X, Z).resolve(columns, where)

    def _fit_chunks(self, chunks, spec, labels):
        from hdlmm.api.glmm_chunks import GLMMRows, fit_chunked
        from hdlmm.core.folds import FoldLayout

        labels = np.asarray(labels, dtype=object)
        data = GLMMRows(chunks, list(spec.X), FoldLayout(labels, self.cv, self.random_state),
                        spec.z_one(), labels)
        fit_chunked(self, data, get_family(self.family))
        names = ["(Intercept)" if c == "1" else c for c in spec.Z]
        if len(names) == self.random_effects_.shape[1]:
            self.random_effects_.columns = names
        self.group_name_ = spec.groups
        return self

    def _check_params(self):
        get_family(self.family)
        if self.k_selection not in K_SELECTIONS:
            raise ValueError(f"k_selection must be one of {K_SELECTIONS}; got "
                             f"{self.k_selection!r}")

    def _groups(self, names, p):
        """The groups of columns selected together, as lists of column indices."""
        groups = self.feature_groups
        if isinstance(groups, str):
            groups = getattr(self, "_formula_groups", []) if groups == "terms" else []
        return resolve_feature_groups(groups, names or [f"x{j}" for j in range(p)], p,
                                      forced=self._forced(names, p))

    def _forced(self, names, p):
        """Indices of the forced columns: ``force`` and a formula's ``force(...)``
        markers, sorted."""
        marked = getattr(self, "_formula_forced", None)
        return np.union1d(resolve_forced(self.force, names, p,
                                         terms=getattr(self, "_formula_terms", None)),
                          np.asarray([] if marked is None else marked, dtype=np.intp))

    def _choose_on(self, stats, rows, family, k_working, names):
        """(a, k, the best subset of size k at a) by grouped CV on the held-out deviance
        (:mod:`hdlmm.model.glmm_cv`) of the working statistics ``stats`` (with ``cv``
        fold blocks) and their ``rows``; sets ``cv_results_`` and ``selection_``."""
        N, p = stats.n_samples, stats.n_features - 1
        units = [g + 1 for g in self._groups(names, p)]  # + 1: the intercept
        forced = self._forced(names, p)
        n_units = p - forced.size - sum(g.size - 1 for g in units)
        grid = DEFAULT_A_GRID if self.a is None else np.array([float(self.a)])
        if self.support_size is not None:
            k_ic, k_max = self.support_size, self.support_size
        else:
            k_ic = k_working if self.k_selection == "ic" else None
            k_max = self.k_max or default_k_max(N * (self.cv - 1) // self.cv, n_units)
            k_max = max(min(k_max, n_units), k_working)
        a, k, res, how = choose_by_deviance(stats, rows, family, grid, k_max,
                                            k_ic=k_ic, units=units,
                                            lower=self.support_size is None,
                                            k_start=max(2 * k_working, k_working + 10),
                                            free=[0] + (forced + 1).tolist())
        self.cv_results_ = res.table()
        self.selection_ = how
        groups = [[int(j) - 1 for j in g] for g in units]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            at = SparseLMM(support_size=k, a=a, inference=None, feature_groups=groups,
                           force=[stats.feature_names[j + 1] for j in forced],
                           random_state=self.random_state).fit_stats(stats)
        return a, k, tuple(int(j) for j in at.support_)

    def _set(self, fit, working, support, k, p, labels, names):
        forced = self._forced(names, p)
        names = names or [f"x{j}" for j in range(p)]
        self.forced_features_ = np.asarray([names[j] for j in forced], dtype=object)
        self.working_model_ = working.model
        self.a_ = working.a
        self.support_ = np.asarray(support, dtype=np.intp)
        self.support_size_ = int(k)
        self.n_features_in_ = p
        if names is not None:
            self.feature_names_in_ = np.asarray(names, dtype=object)
        coef = np.zeros(p)
        coef[self.support_] = fit.coef[1:]
        self.coef_, self.intercept_ = coef, float(fit.coef[0])
        index = pd.Index(["(Intercept)"] + names)
        self.params_ = pd.Series(np.r_[self.intercept_, coef], index=index, name="coef")
        bse = np.full(p + 1, np.nan)
        bse[np.r_[0, self.support_ + 1]] = fit.bse
        self.bse_ = pd.Series(bse, index=index, name="std_err")
        self.pvalues_ = pd.Series(2 * sps.norm.sf(np.abs(self.params_ / self.bse_)),
                                  index=index, name="pvalue")
        self.cov_re_ = fit.cov_re
        q = fit.cov_re.shape[0]
        self.random_effects_ = pd.DataFrame(fit.random_effects,
                                            index=pd.Index(labels, name="group"),
                                            columns=[f"z{j}" for j in range(q)])
        self.random_effects_cov_ = fit.mode_cov
        self.loglik_ = fit.loglik
        self.laplace_converged_ = fit.converged
