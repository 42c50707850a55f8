"""The choice of k and a of a GLMM by grouped CV on the held-out deviance
(hdlmm.model.glmm_cv): the batched conditional modes against one-at-a-time fits and a
scalar optimiser, the held-out deviance against the GLM deviance (a = 0) and a Laplace
approximation written out by hand, the fold fits against SparseLMM fitted on the
training clusters alone, and SparseGLMM's choice against its own CV table."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

from hdlmm.api.estimator import SparseLMM
from hdlmm.api.glmm_estimator import SparseGLMM
from hdlmm.core.checks import check_lmm_arrays
from hdlmm.core.stats import ClusterStats
from hdlmm.model.families import get_family
from hdlmm.model.glmm import conditional_modes
from hdlmm.model.glmm_cv import HeldOutRows, deviance_cv, heldout_deviance


def _data(seed, family="binomial", n=40, p=12, size=8):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n), size)
    X = rng.normal(size=(g.size, p)) * rng.uniform(0.5, 3, p) + rng.normal(size=p)
    Z = np.c_[np.ones(g.size), rng.uniform(0, 1, g.size)]
    eta = X[:, 0] * 0.8 - X[:, 3] * 0.5 / X[:, 3].std() + rng.normal(scale=0.7, size=n)[g]
    eta = eta - eta.mean()
    if family == "binomial":
        y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    else:
        y = rng.poisson(np.exp(0.4 + eta))
    return X, y.astype(float), g, Z


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_batched_modes_equal_one_at_a_time_and_a_scalar_optimiser(family):
    X, y, g, Z = _data(0, family)
    fam = get_family(family)
    rng = np.random.default_rng(1)
    fixed = rng.normal(scale=0.5, size=(3, y.size))
    ZL = Z[:, :1] * 0.9  # q = 1: each cluster's mode by a scalar optimiser
    starts = np.flatnonzero(np.r_[True, np.diff(g) != 0])
    ones = np.ones(y.size)
    u, obj, H = conditional_modes(fixed, ZL, starts, y, ones, fam)
    for m in range(3):
        u1, obj1, H1 = conditional_modes(fixed[m:m + 1], ZL, starts, y, ones, fam)
        np.testing.assert_allclose(u[m], u1[0], atol=1e-10)
        np.testing.assert_allclose(obj[m], obj1[0], rtol=1e-12)
    for i in (0, 7, 39):
        rows = g == i

        def penalised(v, m=0, rows=rows):
            eta = fixed[m, rows] + ZL[rows, 0] * v
            return -2 * fam.loglik(y[rows], eta, ones[rows]).sum() + v * v
        best = optimize.minimize_scalar(penalised, bracket=(-1, 1), tol=1e-12)
        assert u[0, i, 0] == pytest.approx(best.x, abs=1e-6)
        assert obj[0, i] == pytest.approx(best.fun, rel=1e-10)


def _rows_and_stats(X, y, g, Z, w, z, K=4):
    Xc, zc, Zc, codes, labels = check_lmm_arrays(X, z, g, Z)
    stats = ClusterStats.from_checked(Xc, zc, Zc, codes, labels, n_blocks=K,
                                      random_state=3, weights=w / w.mean()).standardized()
    rows = HeldOutRows.from_stats(stats, lambda cols: X[:, cols], Z, y, np.ones(y.size),
                                  np.zeros(y.size), labels[codes])
    return stats, rows


def _working(X, y, family):
    fam = get_family(family)
    eta = 0.3 * X[:, 0] / X[:, 0].std()
    w = fam.variance(eta, np.ones(y.size))
    return w, eta + (y - fam.mean(eta, np.ones(y.size))) / w


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_heldout_deviance_at_a_zero_is_the_glm_deviance(family):
    X, y, g, Z = _data(2, family)
    w, z = _working(X, y, family)
    stats, rows = _rows_and_stats(X, y, g, Z, w, z)
    fam = get_family(family)
    coefs = np.random.default_rng(0).normal(scale=0.3, size=(2, X.shape[1] + 1))
    dev = heldout_deviance(rows, 1, coefs, 0.0, fam)
    on = rows.fold == 1
    Xs = (np.c_[np.ones(y.size), X] - stats.x_shift) / stats.x_scale
    eta = coefs @ Xs[on].T + rows.offset[on]
    expected = -2 * fam.loglik(y[on], eta, np.ones(on.sum())).sum(axis=1) / on.sum()
    np.testing.assert_allclose(dev, expected, rtol=1e-12)


def test_heldout_deviance_is_the_laplace_approximation_written_out():
    """Random intercept only (q = 1): −2 log p(y|û) + û² + log(1 + ψ Σ W) per cluster,
    with û from a scalar optimiser."""
    X, y, g, Z = _data(4, "binomial")
    Z = Z[:, :1]
    w, z = _working(X, y, "binomial")
    stats, rows = _rows_and_stats(X, y, g, Z, w, z)
    fam = get_family("binomial")
    coef = np.random.default_rng(5).normal(scale=0.3, size=(1, X.shape[1] + 1))
    psi = 0.7
    dev = heldout_deviance(rows, 2, coef, psi, fam)[0]
    total, count = 0.0, 0
    for i in np.unique(rows.cluster[rows.fold == 2]):
        on = rows.cluster == i
        Xs = (np.c_[np.ones(y.size), X] - stats.x_shift) / stats.x_scale
        fixed = Xs[on] @ coef[0] + rows.offset[on]
        ones = np.ones(on.sum())

        def penalised(v, fixed=fixed, on=on, ones=ones):
            return -2 * fam.loglik(y[on], fixed + np.sqrt(psi) * v, ones).sum() + v * v
        v = optimize.minimize_scalar(penalised, bracket=(-1, 1), tol=1e-12).x
        W = fam.variance(fixed + np.sqrt(psi) * v, ones)
        total += penalised(v) + np.log(1 + psi * W.sum())
        count += on.sum()
    assert dev == pytest.approx(total / count, rel=1e-9)


def test_fold_fits_are_sparselmms_on_the_training_clusters():
    """The path of each fold at (a, k) gives the same held-out fixed part as SparseLMM
    fitted on the training clusters' rows (weights, the same a in the same units)."""
    X, y, g, Z = _data(6, "poisson")
    Z = Z[:, :1]  # (a slope's standardisation would differ between the two)
    w, z = _working(X, y, "poisson")
    stats, rows = _rows_and_stats(X, y, g, Z, w, z)
    fam = get_family("poisson")
    res = deviance_cv(stats, rows, fam, [0.5], 4)
    labels = stats.labels[stats.block != 1]
    train = np.isin(g, labels)
    w_train = w / w.mean()
    for k in (1, 3):
        m = SparseLMM(support_size=k, a=0.5 * w_train[train].mean(),
                      inference=None).fit(X[train], z[train], g[train], Z[train],
                                          sample_weight=w_train[train])
        coefs = _in_stats_units(stats, np.r_[m.intercept_proxy_, m.coef_proxy_])
        dev = heldout_deviance(rows, 1, coefs, 0.5, fam)[0]
        assert res.scores[0, 1, k] == pytest.approx(dev, rel=1e-7)


def _in_stats_units(stats, coefs):
    """β in the user's units → β̃ of the standardised columns (the intercept first),
    for a response shifted by the statistics' y shift."""
    scale, shift = stats.x_scale[1:], stats.x_shift[1:]
    out = np.r_[coefs[0] + coefs[1:] @ shift - stats.y_shift, coefs[1:] * scale]
    return out[None]


@pytest.mark.parametrize("k_selection", ["cv", "ic"])
def test_sparseglmm_choice_is_its_cv_tables(k_selection):
    X, y, g, Z = _data(8, "binomial", n=60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m = SparseGLMM("binomial", k_selection=k_selection, random_state=0).fit(X, y, g, Z)
    table = m.cv_results_
    assert isinstance(table, pd.DataFrame) and {"a", "k", "mean", "se"} <= set(table)
    assert m.a_ in set(table.a)
    assert "held-out deviance" in m.selection_
    best = table.loc[table["mean"].idxmin()]
    # the paired rule only lowers k at the chosen a: never above the best cell's k
    if k_selection == "cv":
        assert m.a_ == best.a and m.support_size_ <= best.k
    assert set(np.flatnonzero(m.coef_)) >= {0}  # the strong effect is found
    assert "Caution: for binary outcomes" in m.summary()  # their measured coverage


def test_k_selection_working_keeps_the_working_models_choice():
    X, y, g, Z = _data(8, "binomial", n=60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m = SparseGLMM("binomial", k_selection="working", random_state=0).fit(X, y, g, Z)
    assert m.cv_results_ is None and "held-out deviance" not in m.selection_


def test_bad_k_selection_is_refused_by_name():
    X, y, g, Z = _data(8, "binomial", n=20)
    with pytest.raises(ValueError, match="k_selection must be one of"):
        SparseGLMM("binomial", k_selection="aic").fit(X, y, g, Z)


def test_debiased_and_wald_intervals():
    X, y, g, Z = _data(10, "poisson", n=60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m = SparseGLMM("poisson", random_state=0).fit(X, y, g, Z)
        none = SparseGLMM("poisson", inference=None, random_state=0).fit(X, y, g, Z)
    names = [f"x{j}" for j in m.support_]
    wald = m.confint(kind="wald")
    on = np.r_[0, m.support_ + 1]
    np.testing.assert_allclose(wald.iloc[:, 1] - m.params_.iloc[on],
                               1.959963984540054 * m.bse_.iloc[on])
    debiased = m.confint()
    assert list(debiased.index) == names
    inf = m.inference_.table()
    assert np.all(np.abs(inf["debiased"] - m.params_[names]) < 3 * inf["std.err"])
    assert "Debiased inference" in m.summary() and "Caution" not in m.summary()
    assert none.inference_ is None
    with pytest.raises(ValueError, match="no debiased inference"):
        none.confint()
    with pytest.raises(ValueError, match="kind must be"):
        m.confint(kind="profile")
