import numpy as np
import pytest

from hdlmm import ClusterStats


def direct_stats(X, y, Z, groups, intercept):
    """Per-cluster cross-products computed cluster by cluster from the raw rows."""
    if intercept:
        X = np.hstack([np.ones((X.shape[0], 1)), X])
    out = {}
    for g in np.unique(groups):
        r = groups == g
        out[g] = (Z[r].T @ Z[r], Z[r].T @ X[r], Z[r].T @ y[r], r.sum())
    return X.T @ X, X.T @ y, y @ y, out


@pytest.mark.parametrize("intercept", [True, False])
@pytest.mark.parametrize("n_blocks", [1, 3])
@pytest.mark.parametrize("product_rows", [8192, 2])
@pytest.mark.parametrize("rows", ["as generated", "sorted by label", "shuffled"])
def test_stats_equal_direct_computation(unbalanced, intercept, n_blocks, product_rows, rows,
                                        monkeypatch):
    """Chunks of 5 rows, and cluster products over sub-chunks of 2 rows, split clusters;
    sorted rows take the sliced adds (consecutive clusters), shuffled rows the indexed."""
    from hdlmm.core._accumulate import _Accumulator
    monkeypatch.setattr(_Accumulator, "product_rows", product_rows)
    d = unbalanced
    order = {"as generated": np.arange(d.groups.size),
             "sorted by label": np.argsort(d.groups, kind="stable"),
             "shuffled": np.random.default_rng(0).permutation(d.groups.size)}[rows]
    d.X, d.y, d.Z, d.groups = d.X[order], d.y[order], d.Z[order], d.groups[order]
    s = ClusterStats.from_arrays(d.X, d.y, d.groups, d.Z, fit_intercept=intercept,
                                 n_blocks=n_blocks, random_state=0, chunk_rows=5)
    # the sums are of the standardised columns: by their mean and SD with an intercept,
    # by their root mean square without
    f = int(intercept)
    shift = d.X.mean(0) if intercept else np.zeros(d.X.shape[1])
    np.testing.assert_allclose(s.x_shift[f:], shift, atol=1e-12)
    np.testing.assert_allclose(s.x_scale[f:], np.sqrt(((d.X - shift) ** 2).mean(0)))
    Xs = (d.X - s.x_shift[f:]) / s.x_scale[f:]
    # Z = [1, t]: t centred and scaled (the intercept column carries the shift)
    assert s.z_one == 0
    np.testing.assert_allclose(s.z_shift, [0.0, d.Z[:, 1].mean()], atol=1e-12)
    np.testing.assert_allclose(s.z_scale, [1.0, d.Z[:, 1].std()])
    Zs = (d.Z - s.z_shift) / s.z_scale
    # y about its mean (with an intercept, which absorbs it)
    np.testing.assert_allclose(s.y_shift, d.y.mean() if intercept else 0.0, atol=1e-12)
    XtX, Xty, yty, per = direct_stats(Xs, d.y - s.y_shift, Zs, d.groups, intercept)
    np.testing.assert_allclose(s.XtX.sum(0), XtX, atol=1e-10)
    np.testing.assert_allclose(s.Xty.sum(0), Xty, atol=1e-10)
    np.testing.assert_allclose(s.yty.sum(), yty, atol=1e-10)
    assert s.n_samples == d.X.shape[0]
    for i, lab in enumerate(s.labels):
        ZtZ, ZtX, Zty, m = per[lab]
        np.testing.assert_allclose(s.ZtZ[i], ZtZ, atol=1e-10)
        np.testing.assert_allclose(s.ZtX[i], ZtX, atol=1e-10)
        np.testing.assert_allclose(s.Zty[i], Zty, atol=1e-10)
        assert s.n_obs[i] == m
    assert np.all(np.diff(s.block) >= 0)


def test_fold_totals_in_gathered_pieces(unbalanced, monkeypatch):
    """Rows of a fold gathered in pieces of 2p rows (chunks of 64 rows, 3 folds) give
    the same fold totals as whole folds."""
    from hdlmm.core._accumulate import _Accumulator
    d = unbalanced
    whole = ClusterStats.from_arrays(d.X, d.y, d.groups, d.Z, n_blocks=3, random_state=0)
    monkeypatch.setattr(_Accumulator, "gather_bytes", 0)
    pieces = ClusterStats.from_arrays(d.X, d.y, d.groups, d.Z, n_blocks=3, random_state=0,
                                      chunk_rows=64)
    for key in ("XtX", "Xty", "yty", "n_rows"):
        np.testing.assert_allclose(getattr(pieces, key), getattr(whole, key), atol=1e-10)


def test_blocks_are_whole_clusters_and_sum_to_totals(unbalanced):
    d = unbalanced
    s = ClusterStats.from_arrays(d.X, d.y, d.groups, d.Z, n_blocks=3, random_state=1)
    for b in range(3):
        labs = s.labels[s.block == b]
        rows = np.isin(d.groups, labs)
        Xs = (d.X[rows] - s.x_shift[1:]) / s.x_scale[1:]
        Xb = np.hstack([np.ones((rows.sum(), 1)), Xs])
        np.testing.assert_allclose(s.XtX[b], Xb.T @ Xb, atol=1e-10)
        np.testing.assert_allclose(s.Xty[b], Xb.T @ (d.y[rows] - s.y_shift), atol=1e-10)
        assert s.n_rows[b] == rows.sum()
        sub = s.select_blocks(b)
        assert sub.n_clusters == labs.size and sub.n_samples == rows.sum()
    assert sorted(np.bincount(s.block).tolist()) == [3, 3, 3]


def test_merge_of_row_chunks_equals_whole(unbalanced):
    d = unbalanced
    whole = ClusterStats.from_arrays(d.X, d.y, d.groups, d.Z)
    # split rows so that clusters are spread over both parts
    idx = np.random.default_rng(0).permutation(d.X.shape[0])
    a, b = idx[:20], idx[20:]
    part = [ClusterStats.from_arrays(d.X[i], d.y[i], d.groups[i], d.Z[i]) for i in (a, b)]
    merged = (part[0] + part[1]).standardized()
    assert merged.labels.tolist() == whole.labels.tolist()
    for name in ["ZtZ", "ZtX", "Zty", "XtX", "Xty", "yty", "n_obs", "n_rows", "x_shift",
                 "x_scale"]:
        np.testing.assert_allclose(getattr(merged, name), getattr(whole, name), atol=1e-10)


def test_select_features_matches_building_on_columns(unbalanced):
    d = unbalanced
    s = ClusterStats.from_arrays(d.X, d.y, d.groups, d.Z).select_features([0, 2, 4])
    t = ClusterStats.from_arrays(d.X[:, [1, 3]], d.y, d.groups, d.Z)
    np.testing.assert_allclose(s.XtX, t.XtX, atol=1e-10)
    np.testing.assert_allclose(s.ZtX, t.ZtX, atol=1e-10)
    assert s.intercept


def test_adding_incompatible_stats_is_an_error(unbalanced):
    d = unbalanced
    a = ClusterStats.from_arrays(d.X, d.y, d.groups, d.Z)
    b = ClusterStats.from_arrays(d.X[:, :3], d.y, d.groups, d.Z)
    with pytest.raises(ValueError, match="different layouts"):
        a + b


@pytest.mark.parametrize("intercept", [True, False])
def test_restandardize_recovers_the_raw_cross_products(unbalanced, intercept):
    """Re-expressed with shift 0 and scale 1 (and to any other standardisation and
    back), the statistics are those of the raw columns."""
    d = unbalanced
    s = ClusterStats.from_arrays(d.X, d.y, d.groups, d.Z, fit_intercept=intercept,
                                 n_blocks=3, random_state=0)
    p = s.n_features
    rng = np.random.default_rng(1)
    other = s.restandardize(np.r_[0.0, rng.normal(size=p - 1)] if intercept
                            else np.zeros(p), rng.uniform(0.5, 2, p) ** np.r_[0, np.ones(p - 1)],
                            [0.0, 3.0], [1.0, 0.1])
    raw = other.restandardize(np.zeros(p), np.ones(p), np.zeros(2), np.ones(2),
                              0.0 if intercept else None)
    XtX, Xty, yty, per = direct_stats(d.X, d.y, d.Z, d.groups, intercept)
    np.testing.assert_allclose(raw.XtX.sum(0), XtX, atol=1e-10)
    np.testing.assert_allclose(raw.Xty.sum(0), Xty, atol=1e-10)
    np.testing.assert_allclose(raw.yty.sum(), yty, rtol=1e-12)
    for i, lab in enumerate(raw.labels):
        np.testing.assert_allclose(raw.ZtZ[i], per[lab][0], atol=1e-10)
        np.testing.assert_allclose(raw.ZtX[i], per[lab][1], atol=1e-10)
        np.testing.assert_allclose(raw.Zty[i], per[lab][2], atol=1e-10)
    back = raw.standardized()
    for key in ("XtX", "Xty", "yty", "ZtX", "ZtZ", "Zty", "x_shift", "x_scale", "z_shift",
                "z_scale", "y_shift"):
        np.testing.assert_allclose(getattr(back, key), getattr(s, key), atol=1e-10)


def test_large_offsets_keep_the_spread_of_a_column():
    """A column 10⁸ + N(0, 1): its raw xᵀx holds no trace of its variance in double
    precision, the standardised sums hold it exactly; in chunks (a provisional
    standardisation from the first chunk, then the data's own) as in one piece."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 1))
    g = np.repeat(np.arange(40), 10)
    y = x[:, 0] + rng.normal(size=400)
    ref = ClusterStats.from_arrays(x, y, g)
    for X in (x + 1e8, x * 1e-6 - 50.0):  # 8 digits of x left in each value
        s = ClusterStats.from_arrays(X, y, g)
        np.testing.assert_allclose(s.XtX, ref.XtX, rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(s.ZtX, ref.ZtX, rtol=1e-6, atol=1e-5)
        half = [ClusterStats.from_arrays(X[r], y[r], g[r]) for r in (slice(0, 200),
                                                                    slice(200, 400))]
        merged = (half[0] + half[1]).standardized()
        np.testing.assert_allclose(merged.XtX, ref.XtX, rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(merged.Xty, ref.Xty, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("weighted", [False, True])
def test_cluster_products_kernel_equals_per_cluster_products(weighted):
    """The compiled pass gives Z_iᵀX_i, Z_iᵀZ_i, Z_iᵀy_i, Z_iᵀu cluster by cluster, for
    rows in any order of clusters."""
    from hdlmm.core._cluster_kernel import cluster_products

    rng = np.random.default_rng(3)
    n, q, p, N = 5, 3, 7, 40
    X, Z, y = rng.standard_normal((N, p)), rng.standard_normal((N, q)), rng.standard_normal(N)
    local = rng.integers(0, n, N)
    u = rng.uniform(0.5, 2.0, N) if weighted else None
    ZX, ZZ, Zy, Z1 = cluster_products(X, y, Z, local, n, u)
    for i in range(n):
        rows = local == i
        Zi = Z[rows]
        np.testing.assert_allclose(ZX.reshape(n, q, p)[i], Zi.T @ X[rows], atol=1e-12)
        np.testing.assert_allclose(ZZ[i], Zi.T @ Zi, atol=1e-12)
        np.testing.assert_allclose(Zy[i], Zi.T @ y[rows], atol=1e-12)
        ones = u[rows] if weighted else np.ones(rows.sum())
        np.testing.assert_allclose(Z1[i * q:(i + 1) * q, 0], Zi.T @ ones, atol=1e-12)
