"""Forced (unpenalised) covariates: always in the model, not counted in k, through the
parameter, the formula marker, the CLI, files and Dask."""

from itertools import combinations

import numpy as np
import pandas as pd
import pytest

import hdlmm
from hdlmm import SparseLMM
from hdlmm.api.cli import main


def _data(seed=0, n_clusters=30, p=8):
    d = hdlmm.make_lmm_data(n_clusters=n_clusters, n_obs=6, n_features=p, n_re=1,
                            support_size=3, x_corr=0.3, random_state=seed)
    return d


def _rss(X, y, cols):
    A = np.c_[np.ones(len(y)), X[:, cols]]
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    return float(np.sum((y - A @ coef) ** 2)), coef


@pytest.mark.parametrize("seed", range(6))
def test_forced_best_subset_equals_exhaustive_search(seed):
    """At a = 0 the proxy fit is least squares: with columns F forced, the fit of size
    k is the best k others with the intercept and F, by brute force."""
    d = _data(seed)
    forced, k = [1, 5], 2
    m = SparseLMM(support_size=k, a=0.0, force=forced, inference=None,
                  vc_method=None).fit(d.X, d.y, d.groups)
    others = [j for j in range(d.X.shape[1]) if j not in forced]
    best = min(combinations(others, k), key=lambda S: _rss(d.X, d.y, forced + list(S))[0])
    cols = sorted(forced + list(best))
    assert m.support_.tolist() == cols and m.support_size_ == k
    _, coef = _rss(d.X, d.y, cols)
    np.testing.assert_allclose(m.coef_proxy_[cols], coef[1:], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(m.intercept_proxy_, coef[0], rtol=1e-8, atol=1e-10)


def test_forced_columns_stay_with_k_chosen_and_get_inference():
    d = _data(1, n_clusters=40, p=60)
    null = [j for j in range(60) if d.beta[j] == 0][:2]
    m = SparseLMM(force=null, random_state=0).fit(d.X, d.y, d.groups, d.Z)
    assert set(null) <= set(m.support_) and set(d.support) <= set(m.support_)
    assert m.support_size_ == len(m.support_) - 2
    assert m.forced_features_.tolist() == [f"x{j}" for j in null]
    names = [f"x{j}" for j in null]
    assert np.isfinite(m.pvalues_[names]).all() and np.isfinite(m.bse_[names]).all()
    # the path and the k = 0 fit keep them too
    assert all(set(null) <= set(s) for s in m.path_["support"])
    assert "2 forced" in m.summary()


def test_screening_keeps_forced_columns():
    d = _data(2, n_clusters=40, p=60)
    noise = [j for j in range(60) if d.beta[j] == 0][-1]
    m = SparseLMM(force=[noise], screening=4, random_state=0).fit(d.X, d.y, d.groups)
    assert noise in m.screened_features_ and noise in m.support_


def _frame(seed=3):
    rng = np.random.default_rng(seed)
    n = 300
    df = pd.DataFrame({"g": np.repeat(np.arange(30), 10), "age": rng.normal(50, 10, n),
                       "arm": rng.choice(["a", "b", "c"], n)})
    for j in range(12):
        df[f"n{j}"] = rng.normal(size=n)
    df["y"] = (0.01 * df.age + 1.5 * df.n3 + np.repeat(rng.normal(size=30), 10)
               + rng.normal(size=n))
    return df


def test_formula_marker_parameter_and_term_agree():
    df = _frame()
    m1 = SparseLMM.from_formula("y ~ force(age + arm) + . + (1 | g)", df, random_state=0)
    m2 = SparseLMM.from_formula("y ~ . + (1 | g)", df, random_state=0,
                                force=["age", "arm"])
    m3 = SparseLMM.from_formula("y ~ . + (1 | g)", df, random_state=0,
                                force=["age", "arm[T.b]", "arm[T.c]"])
    forced = ["age", "arm[T.b]", "arm[T.c]"]
    for m in (m1, m2, m3):
        assert m.forced_features_.tolist() == forced
        assert set(forced) <= set(m.feature_names_in_[m.support_])
    np.testing.assert_array_equal(m1.coef_, m2.coef_)
    np.testing.assert_array_equal(m1.coef_, m3.coef_)


def test_source_and_dask_forced_fits_equal_the_in_memory_fit(tmp_path):
    pytest.importorskip("pyarrow")
    dd = pytest.importorskip("dask.dataframe")
    d = _data(4, n_clusters=40, p=20)
    cols = [f"x{j}" for j in range(20)]
    frame = pd.DataFrame(d.X, columns=cols).assign(y=d.y, g=d.groups)
    ref = SparseLMM(random_state=0, force=["x0", "x9"]).fit(frame[cols], d.y, d.groups)
    frame.to_parquet(tmp_path / "d.parquet")
    m1 = SparseLMM(random_state=0, force=["x0", "x9"]).fit_source(
        tmp_path / "d.parquet", y="y", groups="g", chunk_rows=53, progress=False)
    m2 = SparseLMM(random_state=0, force=["x0", "x9"]).fit_dask(
        dd.from_pandas(frame, npartitions=3), y="y", groups="g")
    for m in (m1, m2):
        assert m.support_.tolist() == ref.support_.tolist()
        assert m.forced_features_.tolist() == ["x0", "x9"]
        np.testing.assert_allclose(m.coef_, ref.coef_, rtol=1e-8, atol=1e-10)


def test_cli_force(tmp_path, capsys):
    df = _frame()
    df.to_csv(tmp_path / "d.csv", index=False)
    code = main(["fit", str(tmp_path / "d.csv"), "--formula", "y ~ . + (1 | g)",
                 "--force", "age,arm", "--out", str(tmp_path / "out"), "--no-plots"])
    assert code == 0
    assert "3 forced: age, arm[T.b], arm[T.c]" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "out" / "coefficients.csv")
    assert table.loc[table.forced, "feature"].tolist() == ["age", "arm[T.b]", "arm[T.c]"]


@pytest.mark.parametrize("force, message", [
    (["nope"], "force names 'nope', which is not a column"),
    ([2], "is an index but the columns have names"),
    ([{"a": 1}], "force must be a column name or index"),
    ("const", "are constant"),
    (["n0", "n0x2"], "linearly dependent"),
])
def test_bad_force_is_refused_with_the_fix(force, message):
    df = _frame().assign(const=1.0)
    df["n0x2"] = 2 * df.n0
    with pytest.raises(ValueError, match=message):
        SparseLMM.from_formula("y ~ . + (1 | g)", df, force=force)


def test_force_marker_needs_terms():
    with pytest.raises(ValueError, match=r"force\(\.\.\.\) .* needs terms"):
        SparseLMM.from_formula("y ~ force() + . + (1 | g)", _frame())


def test_default_table_candidates_are_the_formula_dot(tmp_path):
    """fit_source's default X is what '.' gives: every column but y and g, the slope
    column included."""
    df = _frame().drop(columns=["arm"]).assign(t=np.tile(np.arange(10.0), 30))
    df.to_csv(tmp_path / "d.csv", index=False)
    m1 = SparseLMM(random_state=0).fit_source(tmp_path / "d.csv", y="y", groups="g",
                                              Z=["1", "t"], progress=False)
    m2 = SparseLMM.from_formula("y ~ . + (1 + t | g)", df, random_state=0)
    assert list(m1.feature_names_in_) == list(m2.feature_names_in_)
    np.testing.assert_allclose(m1.coef_, m2.coef_, rtol=1e-7, atol=1e-9)
