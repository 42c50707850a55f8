import numpy as np
import pandas as pd
import pytest

from hdlmm import ClusterStats, SparseLMM


@pytest.fixture
def small():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 5))
    y = rng.standard_normal(20)
    groups = np.repeat(np.arange(4), 5)
    return X, y, groups


def fit(X, y, groups, Z=None, **kw):
    return SparseLMM(**({"support_size": 2, "a": 1.0} | kw)).fit(X, y, groups=groups, Z=Z)


def test_mismatched_lengths(small):
    X, y, g = small
    with pytest.raises(ValueError, match="groups has 19 labels but X has 20 rows"):
        fit(X, y, g[:-1])
    with pytest.raises(ValueError, match="y has 19 values but X has 20 rows"):
        fit(X, y[:-1], g)
    with pytest.raises(ValueError, match="Z has 18 rows but X has 20 rows"):
        fit(X, y, g, Z=np.ones((18, 1)))


@pytest.mark.parametrize("where", ["X", "y", "Z"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf(small, where, bad):
    X, y, g = small
    X, y, Z = X.copy(), y.copy(), np.ones((20, 1))
    {"X": X, "y": y, "Z": Z}[where].flat[7] = bad
    kind = "NaN" if np.isnan(bad) else "inf"
    with pytest.raises(ValueError, match=f"{where} contains {kind} values in 1 row"):
        fit(X, y, g, Z=Z)


def test_missing_group_labels(small):
    X, y, g = small
    g = g.astype(object)
    g[3] = None
    with pytest.raises(ValueError, match="groups has 1 missing labels"):
        fit(X, y, g)


def test_fewer_than_two_clusters(small):
    X, y, _ = small
    with pytest.raises(ValueError, match="groups has 1 cluster; a mixed model needs at "
                                         "least 2"):
        fit(X, y, np.zeros(20))


def test_groups_omitted_warns_and_means_no_clustering(small):
    X, y, _ = small
    with pytest.warns(UserWarning, match="groups not given: every row is treated as its "
                                         "own cluster.*enable_metadata_routing"):
        m = SparseLMM(support_size=1, a=1.0).fit(X, y)
    ref = SparseLMM(support_size=1, a=1.0, vc_method=None).fit(X, y, groups=np.arange(20))
    np.testing.assert_allclose(m.coef_, ref.coef_, rtol=1e-12)
    assert m.variance_components_ is None
    with pytest.raises(ValueError, match="groups is required"):
        ClusterStats.from_arrays(X, y, None)


@pytest.mark.parametrize("k,msg", [(-1, "support_size must be at least 0"),
                                   (-2, "support_size must be at least 0"),
                                   (6, "support_size=6 exceeds the number of features"),
                                   (2.5, "support_size must be a non-negative integer")])
def test_bad_support_size(small, k, msg):
    X, y, g = small
    with pytest.raises(ValueError, match=msg):
        fit(X, y, g, support_size=k)


def test_support_size_at_least_n_rows():
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((6, 10)), rng.standard_normal(6)
    with pytest.raises(ValueError, match="support_size=6 is not below the number of rows"):
        fit(X, y, np.repeat([0, 1], 3), support_size=6)


@pytest.mark.parametrize("a", [-1.0, np.inf, np.nan, "big"])
def test_bad_a(small, a):
    X, y, g = small
    with pytest.raises(ValueError, match="a must be"):
        fit(X, y, g, a=a)


def test_bad_a_grid(small):
    X, y, g = small
    with pytest.raises(ValueError, match="a_grid values must be finite and ≥ 0"):
        SparseLMM(a_grid=[0, -1], cv=2).fit(X, y, groups=g)


def test_non_numeric_X(small):
    X, y, g = small
    Xs = X.astype(object)
    Xs[0, 0] = "high"
    with pytest.raises(ValueError, match="X must be numeric"):
        fit(Xs, y, g)
    df = pd.DataFrame(X, columns=list("abcde")).assign(site=["u", "v"] * 10)
    with pytest.raises(ValueError, match=r"X has non-numeric columns \['site'\]"):
        fit(df, y, g)


def test_block_diagonal_Z_is_detected(tutorial_data):
    d = tutorial_data
    with pytest.raises(ValueError, match=r"Z looks block-diagonal \(120 × 60 = 15 clusters "
                                         r"× 4 columns\); pass the row-wise"):
        SparseLMM(support_size=3, a=1.0).fit(d.X, d.y, groups=d.groups,
                                             Z=d.block_diagonal_Z())
    # and the suggested fix gives back the row-wise design
    Zb = d.block_diagonal_Z()
    np.testing.assert_array_equal(Zb.reshape(len(Zb), -1, 4).sum(axis=1), d.Z)


def test_empty_input():
    with pytest.raises(ValueError, match="X is empty"):
        fit(np.empty((0, 3)), np.empty(0), np.empty(0))
    with pytest.raises(ValueError, match=r"X has 0 feature\(s\) \(shape=\(5, 0\)\)"):
        fit(np.empty((5, 0)), np.ones(5), np.arange(5))


def test_bad_options(small):
    X, y, g = small
    with pytest.raises(ValueError, match="ic must be one of"):
        fit(X, y, g, support_size=None, ic="cic")
    with pytest.raises(ValueError, match="cv must be an integer ≥ 2"):
        SparseLMM(cv=1).fit(X, y, groups=g)
    with pytest.raises(ValueError, match="cannot deal 4 clusters into 5 folds"):
        SparseLMM(cv=5).fit(X, y, groups=g)
