import numpy as np
import pytest

from hdlmm import ClusterStats, ProxyTransform


def explicit_whitening(X, y, Z, groups, a):
    """Σ_a^{-1/2} applied cluster by cluster with an explicit eigh (the reference)."""
    Xa, ya, tr = np.empty_like(X), np.empty_like(y), 0.0
    for g in np.unique(groups):
        r = groups == g
        S = a * Z[r] @ Z[r].T + np.eye(r.sum())
        w, V = np.linalg.eigh(S)
        L = V @ np.diag(w ** -0.5) @ V.T
        Xa[r], ya[r] = L @ X[r], L @ y[r]
        tr += np.sum(1 / w)
    return Xa, ya, tr


@pytest.mark.parametrize("a", [0.0, 0.3, 2.0, 9.0, 250.0])
def test_woodbury_equals_explicit_whitening(unbalanced, a):
    d = unbalanced
    s = ClusterStats.from_arrays(d.X, d.y, d.groups, d.Z, fit_intercept=True, n_blocks=3,
                                 random_state=0)
    G, c, dd, tr, n = ProxyTransform(s).at(a).total()
    X1 = np.hstack([np.ones((d.X.shape[0], 1)), d.X])
    Xa, ya, tr_ref = explicit_whitening(X1, d.y, d.Z, d.groups, a)
    scale = np.abs(Xa.T @ Xa).max()
    np.testing.assert_allclose(G, Xa.T @ Xa, rtol=0, atol=1e-10 * scale)
    np.testing.assert_allclose(c, Xa.T @ ya, rtol=0, atol=1e-10 * scale)
    assert abs(dd - ya @ ya) <= 1e-10 * abs(ya @ ya)
    assert abs(tr - tr_ref) <= 1e-10 * tr_ref
    assert n == d.X.shape[0]


def test_a_zero_is_ordinary_least_squares(unbalanced):
    d = unbalanced
    s = ClusterStats.from_arrays(d.X, d.y, d.groups, d.Z, fit_intercept=False)
    G, c, dd, tr, n = ProxyTransform(s).at(0.0).total()
    np.testing.assert_allclose(np.linalg.solve(G, c),
                               np.linalg.lstsq(d.X, d.y, rcond=None)[0], atol=1e-10)
    assert tr == n == d.X.shape[0]


def test_block_quadratics_are_those_of_the_fold_rows(unbalanced):
    d = unbalanced
    s = ClusterStats.from_arrays(d.X, d.y, d.groups, d.Z, fit_intercept=False, n_blocks=3,
                                 random_state=2)
    qa = ProxyTransform(s).at(1.5)
    for b in range(3):
        rows = np.isin(d.groups, s.labels[s.block == b])
        Xa, ya, tr = explicit_whitening(d.X[rows], d.y[rows], d.Z[rows], d.groups[rows], 1.5)
        G, c, dd, trb, _ = qa.block(b)
        np.testing.assert_allclose(G, Xa.T @ Xa, atol=1e-10)
        G_tr, c_tr, _, _, _ = qa.without(b)
        Xo, yo, _ = explicit_whitening(d.X[~rows], d.y[~rows], d.Z[~rows],
                                       d.groups[~rows], 1.5)
        np.testing.assert_allclose(G_tr, Xo.T @ Xo, atol=1e-10)
        np.testing.assert_allclose(c_tr, Xo.T @ yo, atol=1e-10)


def test_negative_or_nan_a_is_rejected(unbalanced):
    d = unbalanced
    t = ProxyTransform(ClusterStats.from_arrays(d.X, d.y, d.groups, d.Z))
    with pytest.raises(ValueError, match="finite and ≥ 0"):
        t.at(-1.0)
    with pytest.raises(ValueError, match="finite and ≥ 0"):
        t.at(np.nan)


def test_chunked_rotation_equals_explicit_whitening(unbalanced, monkeypatch):
    """G(a) accumulated over chunks of one or a few clusters (the reused buffer) is the
    explicit whitening's; so are the rotations the inference uses."""
    d = unbalanced
    s = ClusterStats.from_arrays(d.X, d.y, d.groups, d.Z, fit_intercept=False, n_blocks=2,
                                 random_state=1)
    tf = ProxyTransform(s)
    monkeypatch.setattr(ProxyTransform, "chunk_bytes", 3 * 8 * s.n_re * s.n_features)
    assert tf._chunk_clusters() == 3
    G, c, dd, _, _ = tf.at(4.0).total()
    Xa, ya, _ = explicit_whitening(d.X, d.y, d.Z, d.groups, 4.0)
    np.testing.assert_allclose(G, Xa.T @ Xa, atol=1e-10 * np.abs(G).max())
    np.testing.assert_allclose(c, Xa.T @ ya, atol=1e-10 * np.abs(G).max())
    # B_i = V_iᵀ Z_iᵀX_i: rotate(A) = B_i A and rotate_columns(cols) = B_i[:, cols]
    V = np.linalg.eigh(s.ZtZ)[1]
    B = np.swapaxes(V, 1, 2) @ s.ZtX
    A = np.random.default_rng(0).standard_normal((s.n_features, 3))
    np.testing.assert_allclose(tf.rotate(A), B @ A, atol=1e-10)
    np.testing.assert_allclose(tf.rotate(A[:, 0]), B @ A[:, 0], atol=1e-10)
    np.testing.assert_allclose(tf.rotate_columns([4, 1]), B[:, :, [4, 1]], atol=1e-12)
