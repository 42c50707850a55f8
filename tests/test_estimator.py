import numpy as np
import pandas as pd
import pytest

import hdlmm
from hdlmm import SparseLMM


def test_demo_data_recovers_the_true_support_with_k_given(tutorial_data):
    d = tutorial_data
    for a in (2.0, 5.0, 9.0):
        m = SparseLMM(support_size=3, a=a).fit(d.X, d.y, groups=d.groups, Z=d.Z)
        assert m.support_.tolist() == [1, 5, 10]
        # the proxy estimate at a (the tutorial's, which published l2 0.105) and the
        # reported GLS under the REML Ψ̂ (the same for every a: the same support)
        assert np.linalg.norm(m.coef_proxy_ - d.beta) < 0.07
        assert np.linalg.norm(m.coef_ - d.beta) < 0.08
        assert m.a_ == a and m.support_size_ == 3


def test_demo_data_automatic_choice(tutorial_data):
    d = tutorial_data
    m = SparseLMM(random_state=0).fit(d.X, d.y, groups=d.groups, Z=d.Z)
    assert m.support_.tolist() == [1, 5, 10]
    assert np.linalg.norm(m.coef_ - d.beta) < 0.08
    assert m.a_ > 0 and "grouped CV" in m.selection_


def test_fixed_a_and_k_equals_explicit_whitened_best_subset(unbalanced):
    """With k = p the fit is the GLS estimate under Σ_a, computed explicitly here."""
    d = unbalanced
    a = 1.7
    m = SparseLMM(support_size=d.X.shape[1], a=a).fit(d.X, d.y, groups=d.groups, Z=d.Z)
    X1 = np.hstack([np.ones((len(d.y), 1)), d.X])
    W = np.zeros((len(d.y), len(d.y)))
    for g in np.unique(d.groups):
        r = np.flatnonzero(d.groups == g)
        W[np.ix_(r, r)] = np.linalg.inv(a * d.Z[r] @ d.Z[r].T + np.eye(r.size))
    gls = np.linalg.solve(X1.T @ W @ X1, X1.T @ W @ d.y)
    np.testing.assert_allclose(m.intercept_proxy_, gls[0], atol=1e-9)
    np.testing.assert_allclose(m.coef_proxy_, gls[1:], atol=1e-9)


@pytest.mark.parametrize("params", [dict(support_size=2, a=3.0), dict(random_state=4)])
def test_row_permutation_and_relabelling_leave_the_fit_unchanged(params):
    d = hdlmm.make_lmm_data(n_clusters=25, n_obs=(3, 9), n_features=40, n_re=2,
                            support_size=2, random_state=11)
    ref = SparseLMM(**params).fit(d.X, d.y, groups=d.groups, Z=d.Z)
    perm = np.random.default_rng(0).permutation(len(d.y))
    # relabel with an order-preserving map (folds follow the sorted labels)
    labels = np.array([f"subject-{g:03d}" for g in d.groups], dtype=object)
    m = SparseLMM(**params).fit(d.X[perm], d.y[perm], groups=labels[perm], Z=d.Z[perm])
    assert m.support_.tolist() == ref.support_.tolist() and m.a_ == ref.a_
    np.testing.assert_allclose(m.coef_, ref.coef_, atol=1e-10)
    np.testing.assert_allclose(m.intercept_, ref.intercept_, atol=1e-10)


def test_fixed_a_fit_does_not_depend_on_label_values():
    d = hdlmm.make_lmm_data(n_clusters=12, n_obs=(2, 6), n_features=15, random_state=2)
    ref = SparseLMM(support_size=3, a=1.0).fit(d.X, d.y, groups=d.groups, Z=d.Z)
    scrambled = np.random.default_rng(1).permutation(12)[d.groups] * 7 + 1000
    m = SparseLMM(support_size=3, a=1.0).fit(d.X, d.y, groups=scrambled, Z=d.Z)
    np.testing.assert_allclose(m.coef_, ref.coef_, atol=1e-10)


def test_same_seed_gives_identical_result():
    d = hdlmm.make_lmm_data(n_clusters=20, n_obs=6, n_features=30, random_state=0)
    a = SparseLMM(random_state=3).fit(d.X, d.y, groups=d.groups, Z=d.Z)
    b = SparseLMM(random_state=3).fit(d.X, d.y, groups=d.groups, Z=d.Z)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    pd.testing.assert_frame_equal(a.cv_results_, b.cv_results_)


def test_predict_and_intercept(unbalanced):
    d = unbalanced
    m = SparseLMM(support_size=2, a=1.0).fit(d.X, d.y + 10.0, groups=d.groups, Z=d.Z)
    assert abs(m.intercept_ - 10) < 3
    np.testing.assert_allclose(m.predict(d.X), d.X @ m.coef_ + m.intercept_)
    with pytest.raises(ValueError, match="X has 3 features, but SparseLMM is expecting 6 features"):
        m.predict(d.X[:, :3])


def test_no_intercept_option(unbalanced):
    d = unbalanced
    m = SparseLMM(support_size=2, a=1.0, fit_intercept=False).fit(d.X, d.y, groups=d.groups,
                                                                   Z=d.Z)
    assert m.intercept_ == 0.0 and m.support_.size == 2


def test_estimator_does_not_mutate_inputs_or_params(unbalanced):
    d = unbalanced
    X, y, Z = d.X.copy(), d.y.copy(), d.Z.copy()
    m = SparseLMM(support_size=2, a=1.0)
    m.fit(d.X, d.y, groups=d.groups, Z=d.Z)
    np.testing.assert_array_equal(X, d.X)
    np.testing.assert_array_equal(y, d.y)
    np.testing.assert_array_equal(Z, d.Z)
    assert m.get_params()["support_size"] == 2 and m.get_params()["a"] == 1.0


def test_dataframe_feature_names(unbalanced):
    d = unbalanced
    X = pd.DataFrame(d.X, columns=[f"gene_{j}" for j in range(d.X.shape[1])])
    m = SparseLMM(support_size=2, a=1.0).fit(X, d.y, groups=d.groups, Z=d.Z)
    assert m.feature_names_in_.tolist() == list(X.columns)
    assert m.stats_.feature_names[0] == "(Intercept)"
