"""Group selection (a factor's dummies in or out together): the group splicing solver
against exhaustive search, and the estimator's ``feature_groups``."""

from itertools import combinations

import numpy as np
import pandas as pd
import pytest

import hdlmm
from hdlmm import SparseLMM
from hdlmm.core.group_splicing import Units, _objective, _State, best_group_subset_path
from hdlmm.model.path import fit_path, information_criterion


def _problem(seed, n_units=9, n=40):
    rng = np.random.default_rng(seed)
    sizes = rng.choice([1, 1, 1, 2, 3], size=n_units)
    p = int(sizes.sum())
    X = rng.normal(size=(n, p)) + rng.normal(size=(n, 1)) * rng.uniform(0, 2)
    beta = np.zeros(p)
    beta[rng.choice(p, 4, replace=False)] = 0.5 * rng.normal(size=4)
    y = X @ beta + rng.normal(size=n)
    edges = np.cumsum(np.r_[0, sizes])
    units = Units([list(range(edges[i], edges[i + 1])) for i in range(n_units)])
    return X.T @ X, X.T @ y, float(y @ y), units


@pytest.mark.parametrize("seed", range(100))
def test_group_path_equals_exhaustive_search(seed):
    """Strongly correlated columns, units of 1-3 columns: every k of the path is the
    best of all C(9, k) supports."""
    G, c, d, units = _problem(seed)
    path = best_group_subset_path(G, c, d, units, 5)
    for k, (A, fit) in enumerate(path, start=1):
        best = min(_objective(G, c, d, units, S) for S in combinations(range(units.m), k))
        assert fit.rss <= best * (1 + 1e-10) + 1e-10, (k, A)
        assert len(A) == k and fit.support.tolist() == units.columns(A).tolist()


@pytest.mark.parametrize("seed", range(20))
def test_exact_single_exchange_equals_refitting_every_pair(seed):
    G, c, d, units = _problem(seed, n_units=10, n=50)
    A = sorted(np.random.default_rng(seed).choice(10, 4, replace=False).tolist())
    f, best = _State(G, c, d, units, A).best_single_exchange(units)
    pairs = {(u, j): _objective(G, c, d, units, sorted(set(A) - {u} | {j}))
             for u in A for j in range(10) if j not in A}
    assert f == pytest.approx(min(pairs.values()), rel=1e-10)
    assert _objective(G, c, d, units, best) == pytest.approx(f, rel=1e-10)


def test_units_of_one_column_give_the_column_path():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 12)) + rng.normal(size=(60, 1))
    y = X[:, 2] - X[:, 7] + rng.normal(size=60)
    G, c, d = X.T @ X, X.T @ y, float(y @ y)
    col = fit_path(G, c, d, 6)
    grp = best_group_subset_path(G, c, d, Units([[j] for j in range(12)]), 6)
    np.testing.assert_allclose([f.rss for _, f in grp], col.rss[1:], rtol=1e-10)


def test_criterion_counts_columns_as_parameters_and_groups_as_models():
    rss, k, df = np.array([10.0, 8.0]), np.array([1, 2]), np.array([3, 4])
    n, p = 100.0, 20
    got = information_criterion(rss, k, n, p, "ebic", df=df)
    want = n * np.log(rss / n) + df * np.log(n) + 2 * k * np.log(p)
    np.testing.assert_allclose(got, want)
    np.testing.assert_allclose(information_criterion(rss, k, n, p, "ebic", df=k.copy()),
                               information_criterion(rss, k, n, p, "ebic"))


def _frame(seed=0, n_clusters=40):
    rng = np.random.default_rng(seed)
    n = n_clusters * 10
    df = pd.DataFrame({"g": np.repeat(np.arange(n_clusters), 10)})
    for j in range(15):
        df[f"n{j}"] = rng.normal(size=n)
    for j in range(4):
        df[f"f{j}"] = rng.choice(list("pqrs"), n)
    effect = df.f1.map({"p": 0.0, "q": 0.6, "r": -0.5, "s": 0.0})
    df["y"] = (df.n3 + effect + np.repeat(rng.normal(size=n_clusters), 10)
               + rng.normal(size=n))
    return df


def test_formula_factors_are_selected_whole_by_default():
    df = _frame()
    m = SparseLMM.from_formula("y ~ . + (1 | g)", df, random_state=0)
    chosen = set(m.feature_names_in_[m.support_])
    for f in ("f0", "f1", "f2", "f3"):
        dummies = {f"{f}[T.{lv}]" for lv in "qrs"}
        assert dummies <= chosen or not dummies & chosen  # all or none of each factor
    assert {"f1[T.q]", "f1[T.r]", "f1[T.s]", "n3"} <= chosen
    assert len(m.feature_groups_) == 4 and m.feature_groups_[1] == ["f1[T.q]", "f1[T.r]",
                                                                    "f1[T.s]"]
    assert m.support_size_ == 2  # the factor counts once
    assert m.path_["support"][m.support_size_].tolist() == m.support_.tolist()


def test_columns_mode_and_explicit_groups_on_arrays():
    df = _frame()
    m = SparseLMM.from_formula("y ~ . + (1 | g)", df, random_state=0,
                               feature_groups="columns")
    assert m.feature_groups_ == []
    X = pd.get_dummies(df.drop(columns=["y", "g"]), drop_first=True, dtype=float)
    groups = [[c for c in X.columns if c.startswith(f"f{j}_")] for j in range(4)]
    a = SparseLMM(random_state=0, feature_groups=groups).fit(X, df.y, df.g)
    b = SparseLMM.from_formula("y ~ . + (1 | g)", df, random_state=0)
    assert a.support_size_ == b.support_size_
    np.testing.assert_allclose(np.sort(a.coef_[a.coef_ != 0]),
                               np.sort(b.coef_[b.coef_ != 0]), rtol=1e-8)


def test_groups_through_files_equal_the_in_memory_fit(tmp_path):
    pytest.importorskip("pyarrow")
    df = _frame(1)
    X = pd.get_dummies(df.drop(columns=["y", "g"]), drop_first=True, dtype=float)
    groups = [[c for c in X.columns if c.startswith(f"f{j}_")] for j in range(4)]
    ref = SparseLMM(random_state=0, feature_groups=groups).fit(X, df.y, df.g)
    X.assign(y=df.y, g=df.g).to_parquet(tmp_path / "d.parquet")
    m = SparseLMM(random_state=0, feature_groups=groups).fit_source(
        tmp_path / "d.parquet", y="y", groups="g", progress=False)
    assert m.support_.tolist() == ref.support_.tolist()
    np.testing.assert_allclose(m.coef_, ref.coef_, rtol=1e-8, atol=1e-10)


def test_a_forced_factor_leaves_the_groups():
    m = SparseLMM.from_formula("y ~ force(f2) + . + (1 | g)", _frame(), random_state=0)
    assert ["f2[T.q]", "f2[T.r]", "f2[T.s]"] not in m.feature_groups_
    assert {"f2[T.q]", "f2[T.r]", "f2[T.s]"} <= set(m.feature_names_in_[m.support_])


@pytest.mark.parametrize("groups, message", [
    ("dummies", "feature_groups must be one of"),
    ([["n0", "n1"], ["n1", "n2"]], "in more than one group"),
    ([["n0", "nope"]], "not a column"),
    (["n0"], "list of lists"),
])
def test_bad_feature_groups_are_refused(groups, message):
    df = _frame()
    with pytest.raises(ValueError, match=message):
        SparseLMM(feature_groups=groups).fit(df.drop(columns=["y", "g", "f0", "f1", "f2",
                                                               "f3"]), df.y, df.g)


def test_simulated_fit_without_factors_is_unchanged():
    d = hdlmm.make_lmm_data(n_clusters=30, n_obs=6, n_features=40, random_state=3)
    a = SparseLMM(random_state=0).fit(d.X, d.y, d.groups, d.Z)
    b = SparseLMM(random_state=0, feature_groups="columns").fit(d.X, d.y, d.groups, d.Z)
    np.testing.assert_array_equal(a.coef_, b.coef_)


@pytest.mark.parametrize("seed", range(6))
def test_group_path_window_stops_where_it_says_and_keeps_the_choice(seed):
    """Units of several columns with the criterion's window, p close to N (where the
    exact bound stops later): the forward sweep ends at max(2 k̂, k̂ + 10) units, before
    the bound alone, and the criterion's choice is the whole path's."""
    from hdlmm.model.path import Criterion

    rng = np.random.default_rng(seed)
    n, sizes = 90, rng.choice([1, 1, 2], size=60)
    p = int(sizes.sum())
    X = rng.normal(size=(n, p))
    y = X[:, :3] @ np.array([1.0, -1.0, 0.8]) + rng.normal(size=n)
    X1 = np.c_[np.ones(n), X]
    G, c, d = X1.T @ X1, X1.T @ y, float(y @ y)
    edges = np.cumsum(np.r_[0, sizes]) + 1
    units = [list(range(edges[i], edges[i + 1])) for i in range(sizes.size)]
    crit = Criterion(float(n), sizes.size, "ebic")
    full = fit_path(G, c, d, 25, free=[0], units=units)
    short = fit_path(G, c, d, 25, free=[0], units=units, ic=crit, window=(2, 10),
                     n_rows=n)
    bound_only = fit_path(G, c, d, 25, free=[0], units=units, ic=crit, n_rows=n)
    ic_short = information_criterion(short.rss, short.ks, n, sizes.size, "ebic", df=short.df)
    ic_full = information_criterion(full.rss, full.ks, n, sizes.size, "ebic", df=full.df)
    k_hat = int(np.argmin(ic_short))
    assert short.ks[-1] == max(2 * k_hat, k_hat + 10) < bound_only.ks[-1]
    assert int(np.argmin(ic_full)) == k_hat
    np.testing.assert_allclose(short.coefs[k_hat], full.coefs[k_hat], rtol=1e-10)
