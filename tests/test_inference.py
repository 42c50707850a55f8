"""Debiased inference: closed forms (OLS with robust errors), raw-row recomputation,
the nodewise lasso against scikit-learn, p-value adjustments against statsmodels."""

import numpy as np
import pytest
from sklearn.linear_model import Lasso

import hdlmm
from hdlmm import SparseLMM
from hdlmm.core.row_pass import row_scores
from hdlmm.inference.debias import adjust_pvalues, debias
from hdlmm.inference.nodewise import _largest_eigenvalue, nodewise_lasso

sm = pytest.importorskip("statsmodels.api")


def _heteroscedastic(N=150, p=5, n_groups=None, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, p))
    y = X @ np.r_[1.0, 0, 0, 2.0, 0][:p] + rng.standard_normal(N) * (1 + np.abs(X[:, 0]))
    groups = np.arange(N) if n_groups is None else rng.integers(0, n_groups, N)
    return X, y, groups


def _fit_all(X, y, groups, **kw):
    return hdlmm.SparseLMM(support_size=X.shape[1], a=0.0, inference="all",
                           nodewise_penalty=0, small_sample="none", vc_method=None,
                           **kw).fit(X, y, groups=groups)


def test_one_row_per_cluster_reduces_to_ols_with_hc0():
    X, y, groups = _heteroscedastic()
    m = _fit_all(X, y, groups)
    ref = sm.OLS(y, sm.add_constant(X)).fit(cov_type="HC0")
    np.testing.assert_allclose(m.inference_.debiased, ref.params[1:], rtol=1e-10)
    np.testing.assert_allclose(m.inference_.se, ref.bse[1:], rtol=1e-10)
    np.testing.assert_allclose(m.pvalues_.iloc[1:], ref.pvalues[1:], rtol=1e-8)
    ci = m.confint(0.9).to_numpy()
    np.testing.assert_allclose(ci, ref.conf_int(0.1)[1:], rtol=1e-10)


def test_clusters_at_a0_reduce_to_ols_with_cluster_robust_errors():
    X, y, groups = _heteroscedastic(N=200, n_groups=25)
    m = _fit_all(X, y, groups)
    ref = sm.OLS(y, sm.add_constant(X)).fit(
        cov_type="cluster", cov_kwds=dict(groups=groups, use_correction=False))
    np.testing.assert_allclose(m.inference_.se, ref.bse[1:], rtol=1e-10)
    # CR1 + t: the variance grows by n / (n - 1), the quantile is t(n - 1)
    m1 = _fit_all(X, y, groups).set_params(small_sample="cr1t").fit(X, y, groups=groups)
    np.testing.assert_allclose(m1.inference_.se, ref.bse[1:] * np.sqrt(25 / 24), rtol=1e-10)
    assert np.all(m1.inference_.df == 24)


def _explicit_whitening(X1, groups, Z, a):
    """Σ_a^{-1/2} per cluster by eigh, applied to the rows (the slow reference)."""
    out = np.empty_like(X1)
    for g in np.unique(groups):
        r = groups == g
        w, V = np.linalg.eigh(a * Z[r] @ Z[r].T + np.eye(r.sum()))
        out[r] = (V / np.sqrt(w)) @ V.T @ X1[r]
    return out


def _explicit_scores(m, d, a):
    """Whitened rows and residuals, w_j, D_j and the hat matrix, by explicit row-level
    algebra with an N × N hat matrix (the slow reference), in the standardised columns
    the fit works on (x̃ = (x − s)/c, y − ȳ; the coefficients β̃_j = c_j β_j,
    β̃₀ = β₀ + Σ s_j β_j − ȳ)."""
    inf = m.inference_
    shift, scale = m.stats_.x_shift[1:], m.stats_.x_scale[1:]
    X1 = np.hstack([np.ones((d.X.shape[0], 1)), (d.X - shift) / scale])
    Xa = _explicit_whitening(X1, d.groups, d.Z, a)
    y0 = m.stats_.y_shift  # y about its mean, as the statistics
    ya = _explicit_whitening(d.y[:, None] - y0, d.groups, d.Z, a)[:, 0]
    coef = np.r_[m.intercept_ + shift @ m.coef_ - y0, m.coef_ * scale]
    r = ya - Xa @ coef
    W = Xa @ inf.directions  # w_j = X_a u_j
    D = np.einsum("ij,ij->j", W, Xa[:, inf.columns + 1])
    XS = Xa[:, np.r_[0, m.support_ + 1]]
    H = XS @ np.linalg.solve(XS.T @ XS, XS.T)
    return Xa, coef, r, W, D, H


def test_variance_matches_a_direct_computation_from_the_raw_rows():
    d = hdlmm.make_lmm_data(n_clusters=12, n_obs=(2, 9), n_features=60, n_re=2,
                            support_size=3, random_state=5)
    kw = dict(support_size=3, a=2.5, inference=[7, 11], vc_method=None)
    m = hdlmm.SparseLMM(small_sample="cr1t", **kw).fit(d.X, d.y, groups=d.groups, Z=d.Z)
    inf = m.inference_
    Xa, coef, r, W, D, H = _explicit_scores(m, d, 2.5)
    labels = np.unique(d.groups)
    n = labels.size
    delta = W.T @ r / D
    c = m.stats_.x_scale[1:][inf.columns]  # the reported values are in the data's units
    np.testing.assert_allclose(inf.debiased * c, coef[inf.columns + 1] + delta, rtol=1e-10)
    # residuals of the debiased fit at j: r − x_j δ_j; their scores sum to zero
    R = r[:, None] - Xa[:, inf.columns + 1] * delta
    np.testing.assert_allclose(np.einsum("ij,ij->j", W, R), 0, atol=1e-9)
    T = np.array([np.einsum("ij,ij->j", W[d.groups == g], R[d.groups == g])
                  for g in labels])
    np.testing.assert_allclose((inf.se * c) ** 2, (T ** 2).sum(0) / D ** 2 * n / (n - 1),
                               rtol=1e-9)
    assert set(inf.columns) == set(m.support_) | {7, 11}
    # uncentred: the residuals r of the selected fit
    idx = m.stats_.cluster_index(np.asarray(d.groups, dtype=object))
    res = debias(hdlmm.ProxyTransform(m.stats_), 2.5, coef, inf.columns,
                 row_scores((d.X - m.stats_.x_shift[1:]) / m.stats_.x_scale[1:],
                            d.y - m.stats_.y_shift, idx, n, coef, True), small_sample="none",
                 center=False)
    Tu = np.array([W[d.groups == g].T @ r[d.groups == g] for g in labels])
    np.testing.assert_allclose(res.se ** 2, (Tu ** 2).sum(0) / D ** 2, rtol=1e-9)
    # CR2: residuals scaled by A_i = (I − H_ii)^{-1/2}; Bell-McCaffrey df from the
    # explicit Ω_ik = q_iᵀq_k, q_i = (I − H)_{·,i} A_i w_i
    m2 = hdlmm.SparseLMM(small_sample="cr2bm", **kw).fit(d.X, d.y, groups=d.groups, Z=d.Z)
    IH = np.eye(r.size) - H
    T2, Q = [], []
    for g in labels:
        i = d.groups == g
        lam, E = np.linalg.eigh(IH[np.ix_(i, i)])
        A = (E / np.sqrt(lam)) @ E.T
        T2.append(np.einsum("ij,ij->j", W[i], A @ R[i]))
        Q.append(IH[:, i] @ A @ W[i])  # (N, J)
    np.testing.assert_allclose((m2.inference_.se * c) ** 2, (np.array(T2) ** 2).sum(0) / D ** 2,
                               rtol=1e-9)
    Q = np.array(Q)  # (n, N, J)
    Om = np.einsum("inj,knj->jik", Q, Q)
    df = np.trace(Om, axis1=1, axis2=2) ** 2 / np.sum(Om ** 2, axis=(1, 2))
    np.testing.assert_allclose(m2.inference_.df, df, rtol=1e-9)
    assert np.all(df < n) and "Bell-McCaffrey" in m2.inference_.method


@pytest.mark.parametrize("N, p", [(40, 80), (150, 300)])  # FISTA's step from eigvalsh, Lanczos
def test_nodewise_lasso_matches_scikit_learn_at_its_penalty(N, p):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, p)) + 0.5 * rng.standard_normal((N, 1))
    cols = np.array([0, 3, 17])
    res = nodewise_lasso(X.T @ X, cols, N, tol=1e-9, max_iter=100000)
    assert res.converged
    for k, j in enumerate(cols):
        others = np.delete(np.arange(p), j)
        ref = Lasso(alpha=res.lam[k], fit_intercept=False, tol=1e-12,
                    max_iter=100000).fit(X[:, others], X[:, j])
        np.testing.assert_allclose(-res.U[others, k], ref.coef_, atol=1e-5)
        # the scaled lasso's fixed point: λ_j = σ̂_j √(2 log p / N)
        sigma = np.linalg.norm(X @ res.U[:, k]) / np.sqrt(N)
        np.testing.assert_allclose(res.lam[k], sigma * np.sqrt(2 * np.log(p) / N),
                                   rtol=1e-3)


@pytest.mark.parametrize("spectrum", ["gram", "close_pair", "spike"])
def test_largest_eigenvalue_is_a_tight_upper_bound(spectrum):
    """FISTA's step needs L ≥ λ_max(G): the bound holds and is within 1.1% of λ_max, on
    a rank-deficient Gram (p > N), a matrix whose two largest eigenvalues differ by 1e-5
    (slow for power iteration), and one large eigenvalue over a flat spectrum."""
    rng = np.random.default_rng(1)
    p = 300
    if spectrum == "gram":
        X = rng.standard_normal((150, p)) + rng.standard_normal((150, 1))
        G = X.T @ X
    else:
        Q, _ = np.linalg.qr(rng.standard_normal((p, p)))
        w = rng.uniform(0, 1, p)
        w[:2] = (100.0, 100.0 - 1e-3) if spectrum == "close_pair" else (1e4, 1.0)
        G = (Q * w) @ Q.T
        G = (G + G.T) / 2
    top = np.linalg.eigvalsh(G)[-1]
    L = _largest_eigenvalue(G)
    assert top <= L <= 1.011 * top


def test_nodewise_lasso_that_stops_short_says_so():
    """The compiled FISTA's convergence flag reaches the user: too few iterations for
    correlated columns give a warning with advice, and converged is False."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 60)) + 2.0 * rng.standard_normal((30, 1))
    with pytest.warns(RuntimeWarning, match="did not converge in 3 iterations"):
        res = nodewise_lasso(X.T @ X, [0, 1], 30, max_iter=3)
    assert not res.converged and res.U.shape == (60, 2)


def test_nodewise_exact_projection_needs_a_nonsingular_gram():
    X = np.random.default_rng(0).standard_normal((5, 8))
    with pytest.raises(ValueError, match="singular.*penalty='scaled'"):
        nodewise_lasso(X.T @ X, [0], 5, penalty=0)
    with pytest.raises(ValueError, match="penalty must be"):
        nodewise_lasso(X.T @ X, [0], 5, penalty="huge")


@pytest.mark.parametrize("method,sm_method", [("holm", "holm"), ("bh", "fdr_bh")])
def test_pvalue_adjustments_match_statsmodels(method, sm_method):
    from statsmodels.stats.multitest import multipletests

    p = np.random.default_rng(2).uniform(size=40) ** 3
    np.testing.assert_allclose(adjust_pvalues(p, method),
                               multipletests(p, method=sm_method)[1], rtol=1e-12)


def test_summary_names_the_method_and_confint_by_default(tutorial_data):
    d = tutorial_data
    m = hdlmm.SparseLMM(support_size=3, a=9.0, p_adjust="holm", random_state=0).fit(
        d.X, d.y, groups=d.groups, Z=d.Z)
    text = m.summary()
    assert "Debiased inference" in text and "Li, Cai & Li 2022" in text
    assert "p (holm)" in text
    ci = m.confint()
    assert list(ci.index) == ["x1", "x5", "x10"]
    assert np.all(ci.iloc[:, 0] < d.beta[[1, 5, 10]])
    assert np.all(ci.iloc[:, 1] > d.beta[[1, 5, 10]])
    assert np.isnan(m.pvalues_.iloc[1:]).sum() == 197


def test_inference_errors(tutorial_data):
    d = tutorial_data
    m = hdlmm.SparseLMM(support_size=3, a=9.0, inference=None).fit(
        d.X, d.y, groups=d.groups, Z=d.Z)
    with pytest.raises(ValueError, match="no inference was computed"):
        m.confint()
    with pytest.raises(ValueError, match="inference column 'nope' is not a feature"):
        hdlmm.SparseLMM(support_size=3, a=9.0, inference=["nope"]).fit(
            d.X, d.y, groups=d.groups, Z=d.Z)
    with pytest.raises(ValueError, match="inference column 500 is out of range"):
        hdlmm.SparseLMM(support_size=3, a=9.0, inference=[500]).fit(
            d.X, d.y, groups=d.groups, Z=d.Z)
    with pytest.raises(ValueError, match="small_sample must be one of"):
        hdlmm.SparseLMM(small_sample="cr3").fit(d.X, d.y, groups=d.groups)
    with pytest.raises(ValueError, match="p_adjust must be one of"):
        hdlmm.SparseLMM(p_adjust="bonf").fit(d.X, d.y, groups=d.groups)
    m2 = hdlmm.SparseLMM(support_size=3, a=9.0).fit(d.X, d.y, groups=d.groups, Z=d.Z)
    with pytest.raises(ValueError, match="level must be in"):
        m2.confint(1.5)


def _psd_stack(n, s, scale, seed):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, s, s))
    K = A @ np.swapaxes(A, 1, 2)
    return K * (scale / np.trace(K, axis1=1, axis2=2))[:, None, None], rng


def test_cr2_matrix_functions_by_power_series_equal_the_eigendecomposition():
    """Clusters of small leverage (tr K_i ≤ SERIES_LEVERAGE) take the series, the others
    the eigendecomposition; both agree with the eigendecomposition everywhere."""
    from hdlmm.inference.debias import SERIES_LEVERAGE, _cr2_by_eigh, _cr2_functions

    K, rng = _psd_stack(40, 5, 1.0, 3)
    K *= np.geomspace(1e-9, 40 * SERIES_LEVERAGE, 40)[:, None, None] / 1.0
    K[-5:] *= 0.9 / np.linalg.eigvalsh(K[-5:])[:, -1][:, None, None]  # up to κ = 0.9
    V, R = rng.standard_normal((40, 5, 3)), rng.standard_normal((40, 5, 1))
    root, gR = _cr2_functions(K, V, R)
    root_e, gR_e = _cr2_by_eigh(K, V, R)
    np.testing.assert_allclose(root, root_e, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(gR, gR_e, rtol=1e-13, atol=1e-13)
    # (I − K)^{-1/2} squared is (I − K)⁻¹
    twice, _ = _cr2_functions(K, root, R)
    np.testing.assert_allclose(twice, np.linalg.solve(np.eye(5) - K, V), rtol=1e-10)


def test_inference_is_the_same_with_and_without_the_series(monkeypatch):
    """400 small clusters: 98% have leverage below SERIES_LEVERAGE (the series), the
    rest take the eigendecomposition; and the same by blocks of clusters."""
    d = hdlmm.make_lmm_data(n_clusters=400, n_obs=(3, 8), n_features=30, n_re=2,
                            support_size=3, random_state=2)
    kw = dict(support_size=3, a=1.0, vc_method=None, inference=[0, 1, 2, 9])
    series = hdlmm.SparseLMM(**kw).fit(d.X, d.y, groups=d.groups, Z=d.Z).inference_
    monkeypatch.setattr("hdlmm.inference.debias.SERIES_LEVERAGE", -1.0)
    eigh = hdlmm.SparseLMM(**kw).fit(d.X, d.y, groups=d.groups, Z=d.Z).inference_
    np.testing.assert_allclose(series.se, eigh.se, rtol=1e-12)
    np.testing.assert_allclose(series.df, eigh.df, rtol=1e-10)
    # the cluster algebra by blocks of 7 clusters: the same sums
    monkeypatch.setattr("hdlmm.inference.debias.CLUSTERS_AT_ONCE", 7)
    blocks = hdlmm.SparseLMM(**kw).fit(d.X, d.y, groups=d.groups, Z=d.Z).inference_
    np.testing.assert_allclose(blocks.se, eigh.se, rtol=1e-12)
    np.testing.assert_allclose(blocks.df, eigh.df, rtol=1e-10)


def test_cr2_warns_when_a_cluster_has_leverage_one():
    from hdlmm.inference.debias import _cr2_by_eigh

    K = np.diag([1.0, 0.2])[None]
    with pytest.warns(RuntimeWarning, match="leverage 1.*small_sample='cr1t'"):
        root, _ = _cr2_by_eigh(K, np.ones((1, 2, 1)), np.ones((1, 2, 1)))
    assert np.all(np.isfinite(root))


def test_cr1s_is_cr1_times_statas_degrees_of_freedom_factor(tutorial_data):
    """CR1S = CR1 · (N − 1)/(N − s), s the columns of the support with the intercept."""
    d = tutorial_data
    kw = dict(support_size=3, a=1.0, random_state=0)
    fits = {ss: SparseLMM(small_sample=ss, **kw).fit(d.X, d.y, groups=d.groups, Z=d.Z)
            for ss in ("cr1t", "cr1s")}
    N, s = len(d.y), 3 + 1
    ratio = fits["cr1s"].inference_.se / fits["cr1t"].inference_.se
    np.testing.assert_allclose(ratio, np.sqrt((N - 1) / (N - s)), rtol=1e-12)
    assert "CR1S" in fits["cr1s"].inference_.method
