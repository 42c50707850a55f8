import weakref

import numpy as np
import pytest

from hdlmm import ClusterStats, ProxyTransform
from hdlmm.core.weighted_rows import WeightedRows


def raw_stats(*args, **kwargs):
    """Statistics of the raw columns (not standardised), to compare with explicit
    computations on the rows."""
    return ClusterStats.from_arrays(*args, standardize=False, **kwargs)


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
    s = raw_stats(d.X, d.y, d.groups, d.Z, fit_intercept=True, n_blocks=3,
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
    s = raw_stats(d.X, d.y, d.groups, d.Z, fit_intercept=False)
    G, c, dd, tr, n = ProxyTransform(s).at(0.0).total()
    np.testing.assert_allclose(np.linalg.solve(G, c),
                               np.linalg.lstsq(d.X, d.y, rcond=None)[0], atol=1e-10)
    assert tr == n == d.X.shape[0]


@pytest.mark.parametrize("low_rank", [False, True])
def test_block_quadratics_are_those_of_the_fold_rows(unbalanced, low_rank, monkeypatch):
    """Each block's problem, and all blocks but one, against explicit whitening of
    their rows, with the blocks formed and in low rank (XᵀX_k − R_k R_kᵀ)."""
    monkeypatch.setattr(ProxyTransform, "_low_rank", lambda self: low_rank)
    d = unbalanced
    s = raw_stats(d.X, d.y, d.groups, d.Z, fit_intercept=False, n_blocks=3,
                                 random_state=2)
    qa = ProxyTransform(s).at(1.5)
    for b in range(3):
        rows = np.isin(d.groups, s.labels[s.block == b])
        Xa, ya, tr = explicit_whitening(d.X[rows], d.y[rows], d.Z[rows], d.groups[rows], 1.5)
        G, c, dd, trb, _ = qa.block(b)
        np.testing.assert_allclose(G, Xa.T @ Xa, atol=1e-10)
        assert (qa.G is None) == low_rank
        G_tr, c_tr, _, _, _ = qa.without(b)
        Xo, yo, _ = explicit_whitening(d.X[~rows], d.y[~rows], d.Z[~rows],
                                       d.groups[~rows], 1.5)
        np.testing.assert_allclose(G_tr, Xo.T @ Xo, atol=1e-10)
        np.testing.assert_allclose(c_tr, Xo.T @ yo, atol=1e-10)


def test_negative_or_nan_a_is_rejected(unbalanced):
    d = unbalanced
    t = ProxyTransform(raw_stats(d.X, d.y, d.groups, d.Z))
    with pytest.raises(ValueError, match="finite and ≥ 0"):
        t.at(-1.0)
    with pytest.raises(ValueError, match="finite and ≥ 0"):
        t.at(np.nan)


def test_chunked_rotation_equals_explicit_whitening(unbalanced, monkeypatch):
    """G(a) accumulated over chunks of one or a few clusters (the reused buffer) is the
    explicit whitening's; so are the rotations the inference uses."""
    d = unbalanced
    s = raw_stats(d.X, d.y, d.groups, d.Z, fit_intercept=False, n_blocks=2,
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


def _balanced_slope_data(n_clusters=60, m=6, p=5, seed=0):
    """Every cluster measured at the same times: one Z_iᵀZ_i, so 2 eigenvalue levels."""
    rng = np.random.default_rng(seed)
    N = n_clusters * m
    X = rng.standard_normal((N, p))
    groups = np.repeat(np.arange(n_clusters), m)
    Z = np.c_[np.ones(N), np.tile(np.linspace(0, 1, m), n_clusters)]
    y = X[:, 0] + Z @ rng.standard_normal(2) + rng.standard_normal(N)
    return X, y, groups, Z


def _intercept_data(sizes=(2, 3, 5), n_clusters=180, p=5, seed=1):
    """A random intercept with a few distinct cluster sizes: one level per size."""
    rng = np.random.default_rng(seed)
    m = np.resize(sizes, n_clusters)
    groups = rng.permutation(np.repeat(np.arange(n_clusters), m))  # rows in any order
    X = rng.standard_normal((groups.size, p))
    y = X[:, 1] + rng.standard_normal(n_clusters)[groups] + rng.standard_normal(groups.size)
    return X, y, groups, np.ones((groups.size, 1))


@pytest.mark.parametrize("make, n_levels", [(_balanced_slope_data, 2), (_intercept_data, 3)])
@pytest.mark.parametrize("a", [0.4, 3.0, 90.0])
def test_shared_weight_levels_equal_explicit_whitening(make, n_levels, a, monkeypatch):
    """Rows with equal eigenvalues share w(a): G(a) from the per-level sums is the
    explicit whitening's, block by block, and the row-by-row pass's."""
    X, y, groups, Z = make()
    s = raw_stats(X, y, groups, Z, fit_intercept=True, n_blocks=3,
                                 random_state=0, chunk_rows=37)  # clusters split over chunks
    tf = ProxyTransform(s)
    assert tf.levels.size == n_levels and tf._use_levels()
    monkeypatch.setattr(ProxyTransform, "chunk_bytes", 4 * 8 * s.n_re * s.n_features)
    qa = tf.at(a)
    X1 = np.c_[np.ones(len(y)), X]
    for b in range(3):
        rows = np.isin(groups, s.labels[s.block == b].astype(int))
        Xa, ya, tr = explicit_whitening(X1[rows], y[rows], Z[rows], groups[rows], a)
        G, c, dd, trb, _ = qa.block(b)
        scale = np.abs(Xa.T @ Xa).max()
        np.testing.assert_allclose(G, Xa.T @ Xa, rtol=0, atol=1e-10 * scale)
        np.testing.assert_allclose(c, Xa.T @ ya, rtol=0, atol=1e-10 * scale)
        assert abs(dd - ya @ ya) <= 1e-10 * (ya @ ya) and abs(trb - tr) <= 1e-10 * tr
    monkeypatch.setattr(ProxyTransform, "level_bytes", 0)
    direct = ProxyTransform(s)
    assert not direct._use_levels()
    for got, want in zip(qa.total(), direct.at(a).total()):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11)


def test_distinct_eigenvalues_make_one_pass_per_a(unbalanced):
    """Random slopes on covariates that differ by cluster: every λ_ik is its own level,
    so the per-level sums would be no cheaper than a pass, and are not used."""
    d = unbalanced
    tf = ProxyTransform(raw_stats(d.X, d.y, d.groups, d.Z, n_blocks=2,
                                                 random_state=0))
    assert tf.levels.size > 9 and not tf._use_levels()


def test_eigenvalue_levels_ignore_round_off():
    from hdlmm.core.transform import _eigenvalue_levels
    lam = np.array([[2.0, 10.0], [2.0 * (1 + 1e-15), 10.0], [3.0, 10.0 * (1 - 1e-15)]])
    values, level = _eigenvalue_levels(lam)
    np.testing.assert_allclose(values, [2.0, 3.0, 10.0])
    np.testing.assert_array_equal(level, [[0, 2], [0, 2], [1, 2]])


def test_prepare_computes_a_grid_in_one_pass_equal_to_one_a_at_a_time(unbalanced,
                                                                       monkeypatch):
    d = unbalanced
    s = raw_stats(d.X, d.y, d.groups, d.Z, n_blocks=3, random_state=0)
    monkeypatch.setattr(ProxyTransform, "chunk_bytes", 2 * 8 * s.n_re * s.n_features)
    grid = [0.0, 0.5, 4.0, 0.5, 30.0]
    many = ProxyTransform(s)
    many.prepare(grid)
    assert sorted(many._cache) == [0.5, 4.0, 30.0]  # a = 0 needs no pass
    for a in grid:
        one, got = ProxyTransform(s).at(a), many.at(a)
        for k in range(3):
            for x, y in zip(got.block(k), one.block(k)):
                np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)
        for x, y in zip(got.total(), one.total()):
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)
    monkeypatch.setattr(ProxyTransform, "cache_bytes", 0)  # no room: left to at()
    none = ProxyTransform(s)
    none.prepare(grid)
    assert not none._cache


@pytest.mark.parametrize("route", ["slopes", "intercept levels", "restandardized",
                                   "merged", "prepared grid", "low rank"])
def test_whitened_matrices_are_exactly_symmetric(unbalanced, route, monkeypatch):
    """Every G(a) block, and XᵀX, is symmetric to the last bit (G[i, j] and G[j, i] the
    same number) on each route that builds them: the splicing kernel reads one triangle
    (hdlmm.core._splice_kernel)."""
    d = unbalanced
    X = d.X * np.geomspace(1e-3, 1e3, d.X.shape[1]) + 7.25  # units and offsets
    Z = np.ones((len(d.y), 1)) if route == "intercept levels" else d.Z
    s = ClusterStats.from_arrays(X, d.y, d.groups, Z, n_blocks=3, random_state=0,
                                 standardize=route != "restandardized")
    if route == "restandardized":
        s = s.standardized()
    if route == "merged":
        first = np.isin(d.groups, np.unique(d.groups)[::2])
        parts = [ClusterStats.from_arrays(X[r], d.y[r], d.groups[r], Z[r],
                                          standardize=False) for r in (first, ~first)]
        s = (parts[0] + parts[1]).standardized()
    if route == "low rank":
        monkeypatch.setattr(ProxyTransform, "_low_rank", lambda self: True)
    T = ProxyTransform(s)
    grid = [0.1, 1.0, 10.0]
    if route == "prepared grid":
        T.prepare(grid)
    K = len(s.n_rows)
    mats = (list(s.XtX) + [T.at(a).block_matrix(k) for a in grid for k in range(K)]
            + [T.at(1.0).total()[0]] + [T.at(1.0).without(k)[0] for k in range(1, K)])
    for G in mats:
        np.testing.assert_array_equal(G, G.T)


def test_weighted_rows_one_a_at_a_time(unbalanced, monkeypatch):
    """The low-rank problems' rows B(a) = diag(√w(a)) VᵀZᵀX are made for one a at a
    time: their values are the formula's; a block's matrix from them equals the one
    formed on the other route; rows handed out (or a view of them) stay unchanged when
    another a is asked for; their memory is reused when nothing holds it."""
    d = unbalanced
    s = ClusterStats.from_arrays(d.X, d.y, d.groups, d.Z, n_blocks=3, random_state=0)
    formed = ProxyTransform(s)
    monkeypatch.setattr(ProxyTransform, "_low_rank", lambda self: True)
    monkeypatch.setattr(WeightedRows, "keep_bytes", 0)  # (small rows: see the next test)
    T = ProxyTransform(s)
    rows = T._weighted_rows
    B1 = T.at(1.0).low_rank.B
    n, q, p = s.ZtX.shape
    rw = np.sqrt(1.0 / (1.0 + T.lam))
    np.testing.assert_array_equal(B1, ((rw[:, :, None] * T.Vt) @ s.ZtX).reshape(n * q, p))
    for k in range(3):
        np.testing.assert_allclose(T.at(1.0).block_matrix(k), formed.at(1.0).block_matrix(k),
                                   rtol=1e-10, atol=1e-10)
    view, kept = B1[5:9].T, B1.copy()
    B2 = rows(2.0)
    assert not np.shares_memory(B1, B2) and np.array_equal(B1, kept)
    assert np.array_equal(view, kept[5:9].T) and not B2.flags.writeable
    del B1, view, kept
    base = weakref.ref(B2.base)
    del B2
    assert rows(3.0).base is base()  # nothing held the rows of 2.0: rewritten in place
    np.testing.assert_array_equal(T.at(1.0).low_rank.B,
                                  ((rw[:, :, None] * T.Vt) @ s.ZtX).reshape(n * q, p))


def test_small_weighted_rows_are_kept_for_every_a(unbalanced, monkeypatch):
    """Rows of several a that fit in ``keep_bytes`` together are made once each and
    kept (asked for again, the same array); beyond it, one a at a time again, and
    every array is the formula's."""
    d = unbalanced
    s = ClusterStats.from_arrays(d.X, d.y, d.groups, d.Z, n_blocks=3, random_state=0)
    monkeypatch.setattr(ProxyTransform, "_low_rank", lambda self: True)
    monkeypatch.setattr(WeightedRows, "keep_bytes", 2 * s.ZtX.nbytes)
    T = ProxyTransform(s)
    rows = T._weighted_rows
    n, q, p = s.ZtX.shape

    def formula(a):
        rw = np.sqrt(a / (1.0 + a * T.lam))
        return ((rw[:, :, None] * T.Vt) @ s.ZtX).reshape(n * q, p)

    B1, B2 = rows(1.0), rows(2.0)
    assert rows(1.0) is B1 and rows(2.0) is B2 and not np.shares_memory(B1, B2)
    B3 = rows(3.0)  # a third does not fit: made alone, the kept ones unchanged
    assert rows(1.0) is B1 and rows(3.0) is B3 and not B3.flags.writeable
    for a, B in ((1.0, B1), (2.0, B2), (3.0, B3), (4.0, rows(4.0))):
        np.testing.assert_array_equal(B, formula(a))
