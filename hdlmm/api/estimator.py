"""SparseLMM: best-subset fixed effects of a linear mixed model (scikit-learn API).

Every front end (arrays and formulas here; files, Dask and statistics built elsewhere in
:mod:`hdlmm.api.out_of_core`) builds a :class:`~hdlmm.core.stats.ClusterStats` and
calls the one fit on statistics, :func:`hdlmm.api._fitting.fit_statistics`; the
estimator only stores parameters, routes data and sets the fitted attributes.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import _num_samples

from hdlmm.api._fitting import fit_arrays, named_outputs
from hdlmm.api.fitted_lmm import FittedLMM
from hdlmm.api.out_of_core import OutOfCoreFits
from hdlmm.api.params import check_params
from hdlmm.model.settings import DEFAULT_A_GRID
from hdlmm.sources.formula import FormulaDesign, parse_formula

__all__ = ["SparseLMM", "DEFAULT_A_GRID"]


NO_GROUPS_WARNING = (
    "groups not given: every row is treated as its own cluster, so the clustering is "
    "ignored (ordinary best subset, no variance components); pass groups=... (in "
    "GridSearchCV or cross_val_score, enable metadata routing with "
    "sklearn.set_config(enable_metadata_routing=True) and "
    "SparseLMM().set_fit_request(groups=True))")


class SparseLMM(FittedLMM, OutOfCoreFits, RegressorMixin, BaseEstimator):
    """Sparse fixed effects of a linear mixed model by best-subset selection.

    Model: y_i = X_i β + Z_i γ_i + ε_i for clusters i = 1..n, γ_i ~ (0, Ψ),
    ε_i ~ (0, σ² I), β sparse. Following Li, Cai & Li (2022), each cluster is whitened
    by the proxy covariance Σ_a^i = a Z_i Z_iᵀ + I and β is the best subset of size k of

        minimise ‖Σ_a^{-1/2}(y − 1β₀ − Xβ)‖²  subject to  ‖β‖₀ ≤ k,

    solved by splicing (Zhu et al. 2020) on the cross-products (see docs/design.md).

    Parameters
    ----------
    support_size : int or None
        k, the number of selected fixed effects (the intercept and the ``force``
        columns are not counted); 0 is the null model (or only the forced columns).
        None chooses it from the data (see ``k_selection``), k = 0 among the candidates.
    a : float ≥ 0 or None
        Proxy parameter; 0 ignores the clustering (ordinary best subset). None chooses
        it by grouped cross-validation over ``a_grid``.
    fit_intercept : bool
        Fit an unpenalised intercept (``intercept_``), always in the model.
    force : str, int or list of them, optional
        Columns that stay in the model whatever the selection (known confounders such
        as age, sex, treatment arm): unpenalised like the intercept, profiled out of
        every search, not counted in k. Names of DataFrame or table columns, of a
        formula's columns or terms (a factor's name forces all its dummies; the formula
        marker ``force(age)`` does the same), or indices of unnamed columns.
    feature_groups : "terms", "columns" or list of lists
        Columns selected together, in or out as a whole, each group counting once in k
        (group splicing, :mod:`hdlmm.core.group_splicing`). "terms" (default): each
        term of a formula with several columns (a factor's dummies, ``poly(x, 3)``) is
        one group; elsewhere every column is its own. "columns": every column on its
        own. A list of lists of column names or indices gives the groups explicitly.
        The information criterion counts a group's columns as its parameters and the
        group once in the number of possible supports (EBIC's log C(p, k) term).
    a_grid : array-like, optional
        Candidate values of a (default :data:`DEFAULT_A_GRID`).
    a_search : {"refine", "full"}
        How the grid is searched. ``refine`` (default): every third value (decades on
        the default grid), then the neighbours of the current choice until neither
        neighbour is better, so the choice is a local optimum on the whole grid; ``full``:
        every value. In the accuracy benchmark both chose the same fit in all 1,100
        replicates, the local search evaluating 7 or 8 of the default grid's 11 values
        in 0.63-0.73× the time (docs/decisions.md).
    k_max : int, optional
        Largest support size on the path (default N / (log log N · log p), as abess).
    k_selection : {"ic", "cv"}
        How k is chosen when ``support_size`` is None: an information criterion on the
        full data (``ic``) or grouped cross-validation jointly with a.
    ic : {"ebic", "gic", "sic", "bic", "aic"}
        Information criterion for ``k_selection="ic"``.
    ic_samples : {"ml", "effective", "rows"}
        Sample size n in the criterion. ``ml`` (default): n = N at the working model's
        maximum-likelihood a on the grid, one k for every a, then a by CV at that k
        (:func:`hdlmm.model.tuning.proxy_ml_k`); ``effective``: n = tr(Σ_a⁻¹) and ``rows``:
        n = N, each a with its own k. In the accuracy benchmark (docs/decisions.md)
        ``effective`` under-selects when q is close to the cluster sizes and ``rows``
        over-selects at large a; ``ml`` avoids both.
    cv : int
        Number of grouped folds (whole clusters).
    cv_criterion : {"loglik", "marginal"}
        Held-out criterion of the cross-validation (see :mod:`hdlmm.model.tuning`). The
        default ``loglik`` chose a better in the accuracy benchmark (docs/decisions.md):
        the marginal prediction error hardly depends on a and picked too small an a
        when Ψ is large relative to σ².
    one_se : {"paired", True, False}
        Whether the cross-validation must confirm k (when it runs: a not given, or
        ``k_selection="cv"``; not when ``support_size`` is given). After its choice of
        (a, k), k is lowered to the sparsest k at that a that the chosen cell does not
        beat clearly; with ``k_selection="ic"`` the criterion's k is then an upper
        bound. ``"paired"`` (default): not beaten at the one-sided 5% level fold by fold
        (the standard error of the paired difference over the same folds, without the
        variation between folds that both models share; see
        :meth:`hdlmm.model.tuning.CVResult.best`). ``True``: the classical one-standard-error
        rule, within one standard error of the chosen cell's mean. ``False``: the
        choice as it stands. In the accuracy benchmark (docs/decisions.md)
        both rules removed most of EBIC's false positives; ``True`` also dropped
        true small coefficients (s3) and ``"paired"`` rarely did.
    a_selection : {"cv", "efficiency"}
        ``cv`` (default): a by the cross-validation. ``efficiency``: after the CV choice
        and the variance components, refit the chosen k at the a of the grid whose
        estimator of the fixed effects has the smallest variance under the fitted Ψ̂, σ̂²
        (:mod:`hdlmm.model.efficiency`; ``efficiency_`` holds the traces). Needs the variance
        components (kept at the CV choice when they are not identified).
    max_exchange : int
        Largest number of variables exchanged at once by splicing (C_max).
    vc_method : {"REML", "ML", None}
        How the variance components are fitted on the selected support (None: skip).
    cov_structure : {"unstructured", "diagonal", "scalar"}
        Form of Ψ.
    refit : bool
        Report the fitted mixed model on the selected support (default): ``coef_``,
        ``intercept_``, ``bse_``, the BLUPs and the predictions are the feasible GLS
        estimates under the fitted Ψ̂, σ̂² and their own standard errors, as lme4
        reports them, so that with nothing to select (``support_size=p``) the fit is
        lme4's. False reports the proxy estimate of the selection instead, with
        ``bse_`` NaN. The proxy estimate is always in ``coef_proxy_`` /
        ``intercept_proxy_`` (the debiased inference starts from it). The support is
        the same either way.
    inference : "support", "all", list or None
        Coordinates given debiased estimates, cluster-robust standard errors and
        p-values (:mod:`hdlmm.inference.debias`): the selected support (default), all
        features, or the support plus the listed column indices or names. None: skip.
    nodewise_penalty : "scaled" or float
        Penalty of the nodewise lasso behind the debiased estimates (scaled lasso by
        default; 0 = exact projection, for p < N).
    small_sample : {"cr2bm", "cr2t", "cr2", "cr1t", "cr1s", "none"}
        Small-sample correction of the cluster-robust variance: CR2 (Bell-McCaffrey
        leverage adjustment) with per-coordinate Satterthwaite (Bell-McCaffrey) degrees
        of freedom (default: within the coverage target for nonzeros and nulls in both
        benchmark settings), CR2 with t(n − 1), CR2 with normal quantiles, CR1 (the
        factor n/(n − 1)) with t(n − 1), CR1S (n/(n − 1) · (N − 1)/(N − s), Stata's
        and statsmodels' factor) with t(n − 1), or none (CR0, normal).
    p_adjust : {None, "holm", "bh"}
        Multiple-testing adjustment of ``pvalues_`` (Holm or Benjamini-Hochberg).
    screening : "auto", int or None
        Sure independence screening in the whitened space before the p × p statistics
        (:mod:`hdlmm.core.screening`): "auto" screens when p > 5000 to the default size
        min(⌊N/log N⌋, 2000) per a; an int screens to that many columns per a; None
        never screens. Screened-out columns get coefficient 0 and NaN p-values.
    progress : bool or None
        Progress bars (tqdm, with the time left) on the long stages: passes over files,
        the search over a and k, the debiased inference. None (default): only when
        standard error is a terminal; False: never; True: always.
    random_state : int, RandomState or None
        Seeds the assignment of clusters to folds.

    Attributes
    ----------
    forced_features_ : ndarray of str
        Names of the forced columns (always in ``support_``).
    feature_groups_ : list of lists of str
        The groups of columns selected together (empty when every column is its own).
    coef_ : ndarray of shape (n_features,)
        Fixed effects (zero off the support); which estimator is in ``estimator_``.
    intercept_ : float
    coef_proxy_, intercept_proxy_ : ndarray, float
        The proxy estimate of the selection (whitened least squares at ``a_``).
    estimator_ : str
        Which estimator ``coef_`` and ``bse_`` are.
    llf_, aic_, bic_ : float
        Log-likelihood at the optimum (the restricted one for REML, as lme4's
        ``logLik``), AIC and BIC; NaN without variance components. They count the
        selected fixed effects and ignore the selection. See
        :func:`hdlmm.compare_models` for a likelihood-ratio test.
    df_model_ : int
        Parameters behind ``llf_``: fixed effects, free parameters of Ψ, and σ².
    support_ : ndarray of int
        Indices of the fixed effects in the model: the forced and the selected ones
        (empty for the null model, k = 0, without forced columns).
    a_ : float
        The proxy parameter used.
    support_size_ : int
    selection_ : str
        How a and k were chosen.
    path_ : pandas.DataFrame
        Per k at ``a_``: support, coefficients, RSS and information criterion. Made
        when first read, as ``cv_results_`` (most fits are never asked for them).
    cv_results_ : pandas.DataFrame or None
        Per (a, k): mean and standard error of the held-out criterion. With
        ``k_selection="ic"`` the paths of each a stop at the k its criterion chose
        (later cells are NaN): only that cell competes, so longer paths would be wasted.
    n_eff_ : float
        tr(Σ_a⁻¹) at ``a_``.
    cov_re_ : ndarray of shape (q, q)
        Ψ̂, fitted on the selected support (``vc_method``).
    scale_ : float
        σ̂².
    bse_ : pandas.Series
        Indexed as ``params_`` (the intercept first): model-based standard errors,
        the square roots of the diagonal of σ̂²(XᵀV̂⁻¹X)⁻¹, of the GLS fixed effects on
        the support (``refit=True``); NaN off the support and with ``refit=False``.
        They ignore the selection step (the debiased ``inference_`` does not).
    variance_components_ : VarianceComponents
    random_effects_ : pandas.DataFrame
        BLUPs γ̂_i, one row per cluster label, one column per random effect.
    inference_ : DebiasedInference or None
        Debiased estimates of the ``inference`` coordinates; ``inference_.table()``.
    pvalues_ : pandas.Series
        Indexed as ``params_``: two-sided debiased p-values (adjusted by ``p_adjust``);
        NaN where not tested (and for the intercept).
    params_ : pandas.Series
        Intercept and coefficients indexed by feature name (updated by ``refit``).
    stats_ : ClusterStats
        The statistics the fit worked on: of the standardised columns (their
        ``x_shift``, ``x_scale``, ``z_shift``, ``z_scale``), of the screened columns when
        screening was applied.
    fittedvalues_ : pandas.Series or None
        Conditional fitted values Xβ̂ + β̂₀ + Zγ̂ of the training rows (lme4's
        ``fitted()``), on the index of X (or the formula's data); None for fits on files,
        Dask or statistics. See :meth:`fitted` and :meth:`residuals`.
    fittedvalues_marginal_ : pandas.Series or None
        Marginal fitted values Xβ̂ + β̂₀.
    resid_ : pandas.Series or None
        Conditional residuals y − ``fittedvalues_``.
    screened_features_ : ndarray of int or None
        Columns kept by screening (None: no screening).
    fit_time_ : float
        Seconds spent in ``fit``.

    References
    ----------
    Li, S., Cai, T. T. & Li, H. (2022). JASA 117, 1835-1846. doi:10.1080/01621459.2021.1888740
    Zhu, J. et al. (2020). PNAS 117, 33117-33123. doi:10.1073/pnas.2014241117
    """

    def __init__(self, support_size: int | None = None, a: float | None = None, *,
                 fit_intercept: bool = True, force: str | int | list | None = None,
                 feature_groups: str | list = "terms", a_grid: ArrayLike | None = None,
                 a_search: str = "refine", k_max: int | None = None, k_selection: str = "ic",
                 ic: str = "ebic", cv: int = 5, cv_criterion: str = "loglik",
                 one_se: bool | str = "paired", a_selection: str = "cv", max_exchange: int = 2,
                 vc_method: str | None = "REML", cov_structure: str = "unstructured",
                 refit: bool = True, ic_samples: str = "ml",
                 inference: str | list | None = "support", nodewise_penalty: str | float = "scaled",
                 small_sample: str = "cr2bm", p_adjust: str | None = None,
                 screening: str | int | None = "auto", progress: bool | None = None,
                 random_state: int | np.random.RandomState | None = None) -> None:
        self.support_size = support_size
        self.a = a
        self.fit_intercept = fit_intercept
        self.force = force
        self.feature_groups = feature_groups
        self.a_grid = a_grid
        self.a_search = a_search
        self.k_max = k_max
        self.k_selection = k_selection
        self.ic = ic
        self.cv = cv
        self.cv_criterion = cv_criterion
        self.one_se = one_se
        self.a_selection = a_selection
        self.max_exchange = max_exchange
        self.vc_method = vc_method
        self.cov_structure = cov_structure
        self.refit = refit
        self.ic_samples = ic_samples
        self.inference = inference
        self.nodewise_penalty = nodewise_penalty
        self.small_sample = small_sample
        self.p_adjust = p_adjust
        self.screening = screening
        self.progress = progress
        self.random_state = random_state

    # ------------------------------------------------------------ front ends
    def fit(self, X: ArrayLike, y: ArrayLike, groups: ArrayLike | None = None,
            Z: ArrayLike | None = None, sample_weight: ArrayLike | None = None) -> SparseLMM:
        """Fit on rows (X, y) in clusters ``groups`` with random-effect design ``Z``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (N, p)
        y : array-like of shape (N,)
        groups : array-like of shape (N,)
            Cluster label of each row (any hashable values; rows in any order). If
            omitted, every row is its own cluster (no clustering: ordinary best subset)
            and a warning says so; in scikit-learn's model selection tools, route
            ``groups`` to ``fit`` with metadata routing (see the README).
        Z : array-like of shape (N, q), optional
            Row-wise random-effect design; default a random intercept.
        sample_weight : array-like of shape (N,), optional
            Observation weights, positive: row j has residual variance σ²/w_j (lme4's
            ``weights``). The selection whitens by W⁻¹ + aZZᵀ, the variance components
            and fixed effects are the weighted REML/ML fit, and the criterion and
            log-likelihood include −Σ log w_j as lme4's do.

        Returns
        -------
        self
        """
        return self._fit_arrays(X, y, groups, Z, weights=sample_weight)

    @classmethod
    def from_formula(cls, formula: str, data: pd.DataFrame, *, missing: str = "raise",
                     **params: Any) -> SparseLMM:
        """Fit ``SparseLMM(**params)`` to ``data`` described by an lme4-style formula.

        Parameters
        ----------
        formula : str
            e.g. ``"y ~ x1 + x2 + (1 + t | subject)"`` or ``"y ~ . + (1 | g)"``
            (:mod:`hdlmm.sources.formula`).
        data : pandas.DataFrame
        missing : {"raise", "drop"}
        **params : SparseLMM parameters, and ``weights``: observation weights as lme4's
            (a column of ``data`` by name, or an array of one weight per row).

        Returns
        -------
        SparseLMM, fitted; column names flow into ``feature_names_in_``, ``params_``,
        ``summary()`` and the plots.
        """
        weights = params.pop("weights", None)
        design = parse_formula(formula, data, missing=missing, weights=weights)
        params.setdefault("fit_intercept", design.fit_intercept)
        return cls(**params)._fit_design(formula, design)

    def fit_formula(self, formula: str, data: pd.DataFrame, *, missing: str = "raise",
                    weights: str | ArrayLike | None = None) -> SparseLMM:
        """Fit this estimator on ``data`` described by ``formula`` (see from_formula)."""
        return self._fit_design(formula, parse_formula(formula, data, missing=missing,
                                                       weights=weights))

    # ------------------------------------------------------- the front ends' parts
    def _fit_arrays(self, X, y, groups, Z, re_names=None, re_blocks=None,
                    allow_no_features=False, terms=None, forced=None, weights=None):
        """fit on arrays (and on the design of a formula)."""
        t0 = time.perf_counter()
        self._reset_fitted()
        no_groups = groups is None
        if groups is None:
            warnings.warn(NO_GROUPS_WARNING, UserWarning, stacklevel=3)
            groups = np.arange(_num_samples(X))
        check_params(self)
        fitted = fit_arrays(X, y, groups, Z, self.get_params(), re_names=re_names,
                            re_blocks=re_blocks, no_groups=no_groups,
                            allow_no_features=allow_no_features, terms=terms,
                            forced=forced, weights=weights)
        self._set(named_outputs(fitted))
        self.fit_time_ = time.perf_counter() - t0
        return self

    def _fit_design(self, formula, design: FormulaDesign):
        """fit on the design of a formula."""
        if design.fit_intercept != self.fit_intercept:
            raise ValueError(
                f"the formula {'has' if design.fit_intercept else 'removes'} an intercept "
                f"but fit_intercept={self.fit_intercept}; make them agree (write "
                f"'0 +' in the formula to remove it)")
        offset = 0.0 if design.offset is None else design.offset
        self._fit_arrays(design.X, design.y - offset, design.groups, design.Z,
                         design.re_names, re_blocks=design.re_blocks, allow_no_features=True,
                         terms=design.terms, forced=design.forced, weights=design.weights)
        if design.offset is not None:  # fitted values on the scale of y
            self.fittedvalues_ = self.fittedvalues_ + design.offset
            self.fittedvalues_marginal_ = self.fittedvalues_marginal_ + design.offset
        self.formula_ = formula
        self.group_name_ = design.group_column
        self.formula_design_ = design.without_data()  # not the training rows
        self.column_types_ = design.column_types
        return self
