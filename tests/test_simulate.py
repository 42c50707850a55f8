import warnings

import numpy as np
import pytest

import hdlmm


def tutorial_reference(m, n, p, q, rho=0.2, seed=0):
    """The skscope tutorial's make_data, transcribed with its block-diagonal Z."""
    N = m * n
    rng = np.random.default_rng(seed)

    def func(i, j):
        mm = np.maximum(i, j)
        return np.where(mm <= q - 1, rho ** (abs(i - j)), 0)

    Sigma_xz = np.fromfunction(func, (p, q))
    Sigma = np.block([[np.eye(p), Sigma_xz], [Sigma_xz.T, np.eye(q)]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        X_Z = rng.multivariate_normal(np.zeros(p + q), Sigma, size=N)
    X, Z_stack = X_Z[:, :p], X_Z[:, p:]
    Z = np.zeros((N, n * q))
    for i in range(n):
        Z[(i * m):((i + 1) * m), (i * q):((i + 1) * q)] = Z_stack[(i * m):((i + 1) * m), :]
    beta = np.zeros(p)
    beta[[1, 5, 10]] = [1, 5, 3]
    Psi = np.fromfunction(lambda i, j: 0.56 ** (abs(i - j)), (q, q))
    gamma = np.ravel(rng.multivariate_normal(np.zeros(q), Psi, size=n))
    noise = rng.normal(size=N) * 0.25
    y = X @ beta + Z @ gamma + noise
    return X, Z, Z_stack, y, beta, gamma


@pytest.mark.parametrize("m,n,p,q,seed", [(8, 15, 200, 4, 0), (8, 30, 300, 8, 1),
                                          (5, 4, 12, 3, 7)])
def test_tutorial_generator_reproduces_the_tutorial(m, n, p, q, seed):
    X, Zb, Zs, y, beta, gamma = tutorial_reference(m, n, p, q, seed=seed)
    with pytest.warns(RuntimeWarning, match="not positive semi-definite"):
        d = hdlmm.make_tutorial_data(m=m, n=n, p=p, q=q, seed=seed)
    np.testing.assert_array_equal(d.X, X)
    np.testing.assert_array_equal(d.Z, Zs)
    np.testing.assert_array_equal(d.gamma.ravel(), gamma)
    np.testing.assert_array_equal(d.beta, beta)
    np.testing.assert_allclose(d.y, y, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(d.block_diagonal_Z(), Zb)


def test_tutorial_generator_pinned_values(tutorial_data):
    d = tutorial_data
    np.testing.assert_allclose(d.X[0, :3], [-0.1416564, -0.37726995, 0.02048705], atol=1e-7)
    # y and γ are not pinned: γ ~ N(0, Ψ) is drawn through numpy's SVD of Ψ, whose
    # signs differ between LAPACK builds (the reproduction test above checks them)
    assert d.support.tolist() == [1, 5, 10]


def test_clean_generator_shapes_and_truth():
    d = hdlmm.make_lmm_data(n_clusters=20, n_obs=(2, 20), n_features=50, n_re=3,
                            support_size=5, cov_re=np.diag([1.0, 0.5, 0.2]), scale=0.5,
                            x_corr=0.5, random_state=0)
    sizes = np.bincount(d.groups)
    assert sizes.min() >= 2 and sizes.max() <= 20 and sizes.size == 20
    assert d.X.shape == (sizes.sum(), 50) and d.Z.shape == (sizes.sum(), 3)
    assert d.support.size == 5 and d.gamma.shape == (20, 3)
    resid = d.y - d.X @ d.beta - np.einsum("ij,ij->i", d.Z, d.gamma[d.groups])
    assert abs(resid.var() - 0.5) < 0.2
    # AR(0.5) columns: neighbouring correlation about 0.5
    assert abs(np.corrcoef(d.X[:, 10], d.X[:, 11])[0, 1] - 0.5) < 0.15


def test_clean_generator_is_reproducible_and_rejects_bad_cov():
    a = hdlmm.make_lmm_data(random_state=5)
    b = hdlmm.make_lmm_data(random_state=5)
    np.testing.assert_array_equal(a.y, b.y)
    with pytest.raises(ValueError, match="not positive semi-definite"):
        hdlmm.make_lmm_data(n_re=2, cov_re=[[1, 2], [2, 1]])
    with pytest.raises(ValueError, match="n_obs must be"):
        hdlmm.make_lmm_data(n_clusters=3, n_obs=[1, 2, 3, 4])
