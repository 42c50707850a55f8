"""Screening: scores against explicit whitening, the true support survives screening
(simulation), and the estimator maps a screened fit back to all columns."""

import numpy as np
import pytest

import hdlmm
from hdlmm.core.checks import check_lmm_arrays
from hdlmm.core.screening import default_keep, screen


def _explicit_scores(X, y, groups, Z, a):
    """|x̃_jᵀỹ| / ‖x̃_j‖ with Σ_a^{-1/2} by eigh per cluster, intercept profiled out."""
    Xa = np.empty((X.shape[0], X.shape[1] + 2))
    for g in np.unique(groups):
        r = groups == g
        w, V = np.linalg.eigh(a * Z[r] @ Z[r].T + np.eye(r.sum()))
        Xa[r] = (V / np.sqrt(w)) @ V.T @ np.c_[np.ones(r.sum()), X[r], y[r]]
    one, Xw, yw = Xa[:, 0], Xa[:, 1:-1], Xa[:, -1]
    Xt = Xw - np.outer(one, one @ Xw) / (one @ one)
    yt = yw - one * (one @ yw) / (one @ one)
    return np.abs(Xt.T @ yt) / np.linalg.norm(Xt, axis=0)


@pytest.mark.parametrize("a", [0.0, 0.7, 5.0])
def test_screen_keeps_the_top_explicit_whitened_scores(a):
    d = hdlmm.make_lmm_data(n_clusters=15, n_obs=(2, 9), n_features=40, n_re=2,
                            support_size=3, random_state=2)
    X, y, Z, codes, labels = check_lmm_arrays(d.X, d.y, d.groups, d.Z)
    ref = _explicit_scores(X, y, d.groups, Z, a)
    for keep in (1, 6, 17):
        kept = screen(X, y, Z, codes, labels.size, [a], keep=keep, block_cols=7)
        np.testing.assert_array_equal(kept, np.sort(np.argsort(-ref)[:keep]))


def test_union_over_the_grid_and_no_screening_when_keep_covers_p():
    d = hdlmm.make_lmm_data(n_clusters=10, n_obs=4, n_features=30, random_state=1)
    X, y, Z, codes, labels = check_lmm_arrays(d.X, d.y, d.groups, d.Z)
    one = [set(screen(X, y, Z, codes, 10, [a], keep=4)) for a in (0.0, 9.0)]
    both = set(screen(X, y, Z, codes, 10, [0.0, 9.0], keep=4))
    assert both == one[0] | one[1]
    np.testing.assert_array_equal(screen(X, y, Z, codes, 10, [1.0], keep=30),
                                  np.arange(30))
    assert default_keep(1000, 50_000) == int(1000 / np.log(1000))
    assert default_keep(10**7, 50_000) == 2000


def test_true_support_survives_screening_in_simulation():
    """100 replicates, p = 6000, N ≈ 350, k = 5 (coefficients 1 to 0.5), default size."""
    survived = []
    for rep in range(100):
        d = hdlmm.make_lmm_data(n_clusters=50, n_obs=(3, 11), n_features=6000, n_re=2,
                                coef=[1.0, -0.8, 0.6, 0.5, -0.5], random_state=rep)
        X, y, Z, codes, labels = check_lmm_arrays(d.X, d.y, d.groups, d.Z)
        kept = screen(X, y, Z, codes, labels.size, hdlmm.DEFAULT_A_GRID)
        survived.append(set(d.support) <= set(kept))
    assert np.mean(survived) >= 0.95


def test_estimator_maps_the_screened_fit_back_to_all_columns():
    d = hdlmm.make_lmm_data(n_clusters=40, n_obs=(3, 9), n_features=300, n_re=2,
                            coef=[1.5, -1.0, 1.0], random_state=4)
    m = hdlmm.SparseLMM(screening=50, support_size=3, a=1.0).fit(d.X, d.y,
                                                                  groups=d.groups, Z=d.Z)
    assert m.coef_.size == 300 and m.screened_features_.size == 50
    assert set(m.support_) == set(d.support)
    assert set(m.support_) <= set(m.screened_features_)
    assert list(m.inference_.columns) == list(m.support_)
    assert np.isnan(m.pvalues_.iloc[1:]).sum() == 297 and m.params_.size == 301
    assert m.params_[[f"x{j}" for j in m.support_]].to_numpy() == pytest.approx(
        m.coef_[m.support_])
    # the same as fitting the kept columns directly
    m2 = hdlmm.SparseLMM(screening=None, support_size=3, a=1.0).fit(
        d.X[:, m.screened_features_], d.y, groups=d.groups, Z=d.Z)
    np.testing.assert_allclose(m.coef_[m.screened_features_], m2.coef_, rtol=1e-12)
    assert m.predict(d.X).shape == (d.X.shape[0],)
    assert hdlmm.SparseLMM(support_size=3, a=1.0).fit(
        d.X, d.y, groups=d.groups, Z=d.Z).screened_features_ is None  # p ≤ 5000
    with pytest.raises(ValueError, match="screening must be an integer"):
        hdlmm.SparseLMM(screening=0).fit(d.X, d.y, groups=d.groups)
