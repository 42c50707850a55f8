"""Variance components against lme4's published sleepstudy fit and statsmodels MixedLM."""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hdlmm
from hdlmm import ClusterStats, SparseLMM
from hdlmm.model.varcomp import blups, fit_variance_components

SLEEP = pd.read_csv(Path(__file__).parent / "data" / "sleepstudy.csv")


def raw_stats(*args, **kwargs):
    """Statistics of the raw columns (not standardised), to compare with explicit
    computations on the rows."""
    return ClusterStats.from_arrays(*args, standardize=False, **kwargs)


def sleep_stats():
    Z = np.column_stack([np.ones(len(SLEEP)), SLEEP.Days])
    return raw_stats(SLEEP[["Days"]].to_numpy(), SLEEP.Reaction.to_numpy(),
                                    SLEEP.Subject.to_numpy(), Z)


def test_sleepstudy_reml_matches_lme4():
    vc = fit_variance_components(sleep_stats(), "REML")
    np.testing.assert_allclose(vc.coef, [251.4051, 10.4673], atol=5e-5)  # published, rounded
    np.testing.assert_allclose(vc.bse, [6.8246, 1.5458], rtol=5e-5)
    np.testing.assert_allclose(np.diag(vc.cov_re), [612.10, 35.07], rtol=1e-4)
    # the deviance is flat along the covariance: lme4 prints 9.605, our optimum (whose
    # criterion is as low as statsmodels' to 1e-12) gives 9.604
    np.testing.assert_allclose(vc.cov_re[0, 1], 9.605, rtol=2e-4)
    np.testing.assert_allclose(vc.scale, 654.94, rtol=1e-5)
    np.testing.assert_allclose(vc.criterion, 1743.6, atol=0.05)
    sd = np.sqrt(np.diag(vc.cov_re))
    np.testing.assert_allclose(sd, [24.741, 5.922], rtol=1e-4)
    assert vc.converged and not vc.boundary


def test_sleepstudy_ml_matches_lme4():
    vc = fit_variance_components(sleep_stats(), "ML")
    np.testing.assert_allclose(np.diag(vc.cov_re), [565.5, 32.68], rtol=2e-4)
    corr = vc.cov_re[0, 1] / np.sqrt(vc.cov_re[0, 0] * vc.cov_re[1, 1])
    assert abs(corr - 0.08) < 0.005
    np.testing.assert_allclose(vc.scale, 654.9, rtol=1e-4)
    np.testing.assert_allclose(vc.llf, -875.97, atol=0.005)


def simulated(seed):
    d = hdlmm.make_lmm_data(n_clusters=40, n_obs=(2, 12), n_features=4, n_re=2,
                            support_size=3, cov_re=[[1.0, 0.3], [0.3, 0.5]], scale=0.5,
                            random_state=seed)
    return d


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("reml", [True, False])
def test_matches_statsmodels_on_simulated_data(seed, reml):
    from statsmodels.regression.mixed_linear_model import MixedLM

    d = simulated(seed)
    X1 = np.column_stack([np.ones(len(d.y)), d.X])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = MixedLM(d.y, X1, groups=d.groups, exog_re=d.Z).fit(
            reml=reml, method=["lbfgs"], gtol=1e-10)
    stats = raw_stats(d.X, d.y, d.groups, d.Z)
    vc = fit_variance_components(stats, "REML" if reml else "ML")
    # Our criterion is at least as low as statsmodels' optimum (in practice lower by
    # ~1e-8: statsmodels stops earlier on this flat likelihood, which leaves Ψ
    # determined only to a few 1e-4); β, σ² and the standard errors agree to 1e-4.
    assert vc.criterion <= -2 * r.llf + 1e-9
    np.testing.assert_allclose(vc.coef, r.fe_params, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(vc.cov_re, r.cov_re, rtol=5e-4, atol=1e-5)
    np.testing.assert_allclose(vc.scale, r.scale, rtol=1e-4)
    # standard errors: lme4's σ²(XᵀV⁻¹X)⁻¹ (statsmodels' bse_fe uses the observed joint
    # Hessian instead), evaluated here at statsmodels' estimates from the raw rows
    info = np.zeros((X1.shape[1],) * 2)
    for g in np.unique(d.groups):
        i = d.groups == g
        V = d.Z[i] @ r.cov_re @ d.Z[i].T + r.scale * np.eye(i.sum())
        info += X1[i].T @ np.linalg.solve(V, X1[i])
    np.testing.assert_allclose(vc.bse, np.sqrt(np.diag(np.linalg.inv(info))), rtol=1e-4)
    re = np.array([r.random_effects[g].to_numpy() for g in stats.labels])
    np.testing.assert_allclose(blups(stats, vc), re, rtol=1e-3, atol=1e-4)


def test_diagonal_and_scalar_structures():
    stats = sleep_stats()
    diag = fit_variance_components(stats, structure="diagonal")
    assert diag.cov_re[0, 1] == 0 and diag.cov_re[0, 0] > 0
    scal = fit_variance_components(stats, structure="scalar")
    assert scal.cov_re[0, 0] == pytest.approx(scal.cov_re[1, 1])
    full = fit_variance_components(stats)
    assert full.criterion <= diag.criterion + 1e-8 <= scal.criterion + 2e-8


def test_estimator_complete_model_on_sleepstudy():
    Z = np.column_stack([np.ones(len(SLEEP)), SLEEP.Days])
    m = SparseLMM(support_size=1, a=1.0, refit=True).fit(
        SLEEP[["Days"]], SLEEP.Reaction, groups=SLEEP.Subject, Z=Z)
    np.testing.assert_allclose([m.intercept_, m.coef_[0]], [251.4051, 10.4673], atol=5e-5)
    np.testing.assert_allclose(m.bse_, [m.intercept_bse_, 1.5458], rtol=5e-5)
    assert m.random_effects_.index.tolist() == sorted(SLEEP.Subject.unique())
    text = m.summary()
    for piece in ["Days", "(Intercept)", "251.41", "REML criterion at convergence: 1743.6",
                  "Residual",
                  "groups:  group, 18"]:
        assert piece in text
    # conditional predictions: seen clusters get their BLUP, new ones the marginal mean
    yhat = m.predict(SLEEP[["Days"]], groups=SLEEP.Subject, Z=Z)
    fitted = m.intercept_ + m.coef_[0] * SLEEP.Days + np.einsum(
        "ij,ij->i", Z, m.random_effects_.loc[SLEEP.Subject].to_numpy())
    np.testing.assert_allclose(yhat, fitted)
    new = m.predict(SLEEP[["Days"]].iloc[:2], groups=["nobody", 308], Z=Z[:2])
    assert new[0] == pytest.approx(m.intercept_)
    assert new[1] == pytest.approx(fitted[1])
    np.testing.assert_allclose(m.predict(SLEEP[["Days"]], groups=SLEEP.Subject, Z=Z,
                                         random_effects=False), m.predict(SLEEP[["Days"]]))


def test_variance_components_not_identifiable():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20, 3)), rng.standard_normal(20)
    groups = np.repeat(np.arange(10), 2)
    Z = np.column_stack([np.ones(20), rng.standard_normal(20)])
    stats = raw_stats(X, y, groups, Z)
    with pytest.raises(ValueError, match="every cluster has at most q = 2 rows"):
        fit_variance_components(stats)
    # the estimator keeps the selection and warns that the random part is missing
    with pytest.warns(RuntimeWarning, match="variance components not fitted: every "
                                            "cluster has at most q = 2 rows"):
        m = SparseLMM(support_size=1, a=1.0).fit(X, y, groups=groups, Z=Z)
    assert m.support_.size == 1 and m.cov_re_ is None and m.random_effects_ is None


def test_singular_ZtZ_in_every_cluster():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 3)), rng.standard_normal(40)
    z = rng.standard_normal(40)
    Z = np.column_stack([z, 2 * z])
    stats = raw_stats(X, y, np.repeat(np.arange(8), 5), Z)
    with pytest.raises(ValueError, match="Z_iᵀZ_i is singular in every cluster"):
        fit_variance_components(stats)


def test_boundary_fit_warns_and_returns():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((200, 3))
    groups = np.repeat(np.arange(40), 5)
    e = rng.standard_normal(200)
    e -= 0.9 * (np.bincount(groups, e) / 5)[groups]  # negative within-cluster correlation
    y = X[:, 0] + e
    with pytest.warns(RuntimeWarning, match="boundary"):
        m = SparseLMM(support_size=1, a=1.0).fit(X, y, groups=groups)
    assert m.cov_re_[0, 0] < 1e-3 and np.isfinite(m.scale_)


@pytest.mark.parametrize("method", ["REML", "ML"])
@pytest.mark.parametrize("structure", ["unstructured", "diagonal", "scalar", "blocks"])
def test_analytic_gradient_matches_finite_differences(method, structure):
    from hdlmm.model.profile import Profile

    d = hdlmm.make_lmm_data(n_clusters=50, n_obs=(2, 12), n_features=4, n_re=3,
                            support_size=2,
                            cov_re=[[1.0, 0.3, 0.1], [0.3, 0.5, 0.2], [0.1, 0.2, 0.4]],
                            random_state=3)
    blocks = [[0, 2], [1]] if structure == "blocks" else None
    structure = "unstructured" if structure == "blocks" else structure
    prof = Profile(raw_stats(d.X, d.y, d.groups, d.Z), method, structure,
                    blocks)
    rng = np.random.default_rng(0)
    for _ in range(3):
        theta = rng.uniform(0.2, 1.2, prof.n_theta())
        if structure == "unstructured":  # off-diagonal entries of Λ of either sign
            theta[prof.rows != prof.cols] -= 0.7
        _, grad = prof.deviance_and_gradient(theta)
        h = 1e-6
        fd = [(prof.deviance(theta + h * e) - prof.deviance(theta - h * e)) / (2 * h)
              for e in np.eye(theta.size)]
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-6 * np.max(np.abs(fd)))


@pytest.mark.parametrize("q", [1, 2, 3])
def test_batched_inverse_and_logdet_match_numpy(q):
    from hdlmm.model.profile import inv_logdet
    rng = np.random.default_rng(q)
    A = rng.standard_normal((50, q, q))
    M = A @ np.swapaxes(A, 1, 2) + 0.1 * np.eye(q)
    inv, logdet = inv_logdet(M)
    np.testing.assert_allclose(inv, np.linalg.inv(M), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(logdet, np.linalg.slogdet(M)[1], rtol=1e-12)
    M[7] = -M[7]  # one matrix not positive definite
    with pytest.raises(np.linalg.LinAlgError, match="positive definite"):
        inv_logdet(M)


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_compiled_deviance_equals_the_batched_numpy_pieces(method):
    """The compiled deviance (one pass over the clusters) equals the deviance assembled
    from the GLS pieces of Profile.solve (batched numpy algebra)."""
    from hdlmm.model.profile import Profile

    d = hdlmm.make_lmm_data(n_clusters=40, n_obs=(2, 9), n_features=5, n_re=3,
                            support_size=2, random_state=8)
    prof = Profile(raw_stats(d.X, d.y, d.groups, d.Z), method, "unstructured")
    rng = np.random.default_rng(1)
    for _ in range(4):
        theta = rng.uniform(-0.5, 1.5, prof.n_theta())
        _, r2, logdet_v, A, _ = prof.solve(theta)
        nu = prof.N - prof.p if method == "REML" else prof.N
        numpy_dev = logdet_v + nu * (1 + np.log(2 * np.pi * r2 / nu))
        numpy_dev += np.linalg.slogdet(A)[1] if method == "REML" else 0.0
        assert prof.deviance(theta) == pytest.approx(numpy_dev, rel=1e-12)
