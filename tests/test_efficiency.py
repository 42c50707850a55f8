import numpy as np
import pytest

import hdlmm
from hdlmm import ClusterStats, ProxyTransform
from hdlmm.model.efficiency import fixed_effect_variance


def raw_stats(*args, **kwargs):
    """Statistics of the raw columns (not standardised), to compare with explicit
    computations on the rows."""
    return ClusterStats.from_arrays(*args, standardize=False, **kwargs)


def explicit_variance(X1, Z, groups, S, a, Psi, s2):
    """A⁻¹(Σ_i X_iᵀW_iV_iW_iX_i)A⁻¹ with every N_i × N_i matrix formed (the reference)."""
    s = len(S)
    A, M = np.zeros((s, s)), np.zeros((s, s))
    for g in np.unique(groups):
        r = groups == g
        Zi, Xi = Z[r], X1[r][:, S]
        W = np.linalg.inv(a * Zi @ Zi.T + np.eye(r.sum()))
        V = Zi @ Psi @ Zi.T + s2 * np.eye(r.sum())
        A += Xi.T @ W @ Xi
        M += Xi.T @ W @ V @ W @ Xi
    Ai = np.linalg.inv(A)
    return Ai @ M @ Ai


@pytest.mark.parametrize("a", [0.0, 0.7, 12.0])
def test_fixed_effect_variance_equals_the_explicit_sandwich(unbalanced, a):
    d = unbalanced
    s = raw_stats(d.X, d.y, d.groups, d.Z, n_blocks=2, random_state=0)
    Psi, s2 = np.array([[1.5, 0.4], [0.4, 0.6]]), 0.8
    S = [0, 2, 5]  # the intercept and two columns
    got = fixed_effect_variance(ProxyTransform(s), a, S, Psi, s2)
    X1 = np.c_[np.ones(len(d.y)), d.X]
    np.testing.assert_allclose(got, explicit_variance(X1, d.Z, d.groups, S, a, Psi, s2),
                               rtol=1e-10)


def test_efficiency_is_smallest_at_the_gls_a():
    """With Ψ = a₀σ²I, Σ_a₀ ∝ V: the proxy is GLS at a₀, whose variance is the smallest."""
    d = hdlmm.make_lmm_data(n_clusters=15, n_obs=(3, 9), n_features=8, n_re=2,
                            support_size=2, random_state=4)
    s = raw_stats(d.X, d.y, d.groups, d.Z)
    tf = ProxyTransform(s)
    s2, a0 = 0.5, 3.0
    tr = [np.trace(fixed_effect_variance(tf, a, [0, 1, 2], a0 * s2 * np.eye(2), s2))
          for a in (0.0, 1.0, a0, 9.0, 100.0)]
    assert np.argmin(tr) == 2


@pytest.mark.parametrize("seed, moves", [(1, True), (0, False)])
def test_a_selection_efficiency_refits_at_the_most_efficient_a(seed, moves):
    d = hdlmm.make_lmm_data(n_clusters=30, n_obs=(4, 12), n_features=40, n_re=2,
                            support_size=3, random_state=seed)
    kw = dict(random_state=0, inference=None)
    m = hdlmm.SparseLMM(a_selection="efficiency", **kw).fit(d.X, d.y, groups=d.groups,
                                                            Z=d.Z)
    cv = hdlmm.SparseLMM(**kw).fit(d.X, d.y, groups=d.groups, Z=d.Z)
    eff = m.efficiency_
    assert list(eff.a) == list(hdlmm.DEFAULT_A_GRID)
    assert (m.a_ != cv.a_) == moves and m.support_size_ == cv.support_size_
    # the traces are those of the CV fit's support (the one Ψ̂, σ̂² were fitted on)
    S = np.r_[0, cv.support_ + 1]
    tf = ProxyTransform(cv.stats_)
    np.testing.assert_allclose(
        eff.trace_var, [np.trace(fixed_effect_variance(tf, a, S, cv.cov_re_,
                                                       cv.scale_)[1:, 1:])
                        for a in eff.a], rtol=1e-10)
    assert m.a_ == eff.a[eff.trace_var.idxmin()]
    # the refit is the least-squares fit at a_ on its support
    p = m.stats_.n_features  # in the units of the data
    raw = m.stats_.restandardize(np.zeros(p), np.ones(p), y_shift=0.0)
    G, c, _, _, _ = ProxyTransform(raw).at(m.a_).total()
    S = np.r_[0, m.support_ + 1]
    beta = np.linalg.solve(G[np.ix_(S, S)], c[S])
    np.testing.assert_allclose(np.r_[m.intercept_proxy_, m.coef_proxy_[m.support_]], beta,
                               rtol=1e-8, atol=1e-10)
    assert "efficien" in m.selection_


def test_a_selection_is_checked(tutorial_data):
    d = tutorial_data
    with pytest.raises(ValueError, match="a_selection"):
        hdlmm.SparseLMM(a_selection="best").fit(d.X, d.y, groups=d.groups, Z=d.Z)
