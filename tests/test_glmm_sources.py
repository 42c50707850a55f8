"""SparseGLMM on files and Dask frames (hdlmm.api.glmm_chunks): passes over chunks of
rows give the fit on the same rows in memory (support, a, coefficients, CV table,
modes, debiased inference), with trials and offsets, and name the columns a user
mistyped."""

import warnings

import numpy as np
import pandas as pd
import pytest

from hdlmm import SparseGLMM

pytest.importorskip("pyarrow")


def _frame(seed, family, n=40, p=20):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(4, 12, n)
    g = np.repeat(np.arange(n), sizes)
    N = g.size
    X = rng.normal(size=(N, p))
    t = rng.uniform(size=N)
    eta = X[:, 2] - 0.8 * X[:, 7] + rng.normal(scale=0.6, size=n)[g] + 0.3 * t
    df = pd.DataFrame(X, columns=[f"x{j}" for j in range(p)])
    df["t"] = t
    df["g"] = [f"c{v}" for v in g]  # text labels: files read them as text
    if family == "binomial":
        df["n"] = rng.integers(1, 6, N)
        df["y"] = rng.binomial(df["n"], 1 / (1 + np.exp(-eta)))
    else:
        df["expo"] = np.log(rng.uniform(0.5, 2.0, N))
        df["y"] = rng.poisson(np.exp(0.2 + eta + df["expo"]))
    return df.sample(frac=1.0, random_state=seed)  # clusters spread over chunks


def _in_memory(df, family, **params):
    X = df[[c for c in df if c.startswith("x")] + ["t"]]
    Z = np.c_[np.ones(len(df)), df["t"]]
    extra = dict(trials=df["n"]) if family == "binomial" else dict(offset=df["expo"])
    return SparseGLMM(family, random_state=0, **params).fit(X, df["y"].to_numpy(float),
                                                            df["g"].to_numpy(), Z, **extra)


def _same(a, b):
    np.testing.assert_array_equal(a.support_, b.support_)
    assert a.a_ == b.a_ and a.support_size_ == b.support_size_
    np.testing.assert_allclose(a.coef_, b.coef_, atol=1e-6)
    assert a.loglik_ == pytest.approx(b.loglik_, abs=1e-6)
    np.testing.assert_allclose(a.cov_re_, b.cov_re_, atol=1e-6)
    np.testing.assert_allclose(a.random_effects_.to_numpy(),
                               b.random_effects_.reindex(a.random_effects_.index).to_numpy(),
                               atol=1e-5)
    pd.testing.assert_frame_equal(a.cv_results_, b.cv_results_, atol=1e-7)
    pd.testing.assert_frame_equal(a.inference_.table(), b.inference_.table(), atol=1e-6)


@pytest.mark.parametrize("family,kind", [("poisson", "csv"), ("binomial", "parquet")])
def test_fit_source_is_the_fit_in_memory(tmp_path, family, kind):
    df = _frame(1, family)
    path = tmp_path / f"d.{kind}"
    df.to_csv(path, index=False) if kind == "csv" else df.to_parquet(path, index=False)
    extra = dict(trials="n") if family == "binomial" else dict(offset="expo")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mem = _in_memory(df, family)
        src = SparseGLMM(family, random_state=0).fit_source(
            path, y="y", groups="g", Z=["1", "t"], chunk_rows=97, **extra)
    assert set(src.support_) >= {2, 7}
    _same(mem, src)
    assert list(src.random_effects_.columns) == ["(Intercept)", "t"]
    assert list(src.feature_names_in_) == [f"x{j}" for j in range(20)] + ["t"]


def test_fit_dask_is_the_fit_in_memory():
    dd = pytest.importorskip("dask.dataframe")
    df = _frame(2, "poisson")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mem = _in_memory(df, "poisson")
        dsk = SparseGLMM("poisson", random_state=0).fit_dask(
            dd.from_pandas(df, npartitions=4), y="y", groups="g", Z=["1", "t"],
            offset="expo")
    _same(mem, dsk)


def test_source_columns_are_checked_by_name(tmp_path):
    df = _frame(3, "poisson", n=10, p=8)
    path = tmp_path / "d.csv"
    df.to_csv(path, index=False)
    with pytest.raises(ValueError, match="offset column 'exposure' is not in"):
        SparseGLMM("poisson").fit_source(path, y="y", groups="g", offset="exposure")
    with pytest.raises(ValueError, match="trials are for the binomial family"):
        SparseGLMM("poisson").fit_source(path, y="y", groups="g", trials="expo")
    with pytest.raises(ValueError, match="column 'yy' is not in"):
        SparseGLMM("poisson").fit_source(path, y="yy", groups="g")


def test_a_pql_that_does_not_converge_says_so(tmp_path):
    df = _frame(4, "poisson", n=12, p=8)
    path = tmp_path / "d.csv"
    df.to_csv(path, index=False)
    model = SparseGLMM("poisson", support_size=1, a=0.5, max_iter=1, inference=None)
    with pytest.warns(RuntimeWarning, match="did not converge in max_iter=1"):
        model.fit(df[[f"x{j}" for j in range(8)]], df["y"].to_numpy(float), df["g"],
                  offset=df["expo"])
    with pytest.warns(RuntimeWarning, match="did not converge in max_iter=1"):
        model.fit_source(path, y="y", groups="g", X=[f"x{j}" for j in range(8)],
                         offset="expo")
    assert not model.converged_ and model.n_iter_ == 1


def test_fit_source_with_forced_columns_is_the_fit_in_memory(tmp_path):
    """Forced columns on a file: in every pass's working fit, the CV and the Laplace
    fit, as in memory."""
    df = _frame(3, "binomial")
    path = tmp_path / "d.csv"
    df.to_csv(path, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mem = _in_memory(df, "binomial", force=["x4", "x11"])
        src = SparseGLMM("binomial", random_state=0, force=["x4", "x11"]).fit_source(
            path, y="y", groups="g", Z=["1", "t"], chunk_rows=97, trials="n")
    assert {4, 11} <= set(src.support_) and list(src.forced_features_) == ["x4", "x11"]
    assert src.support_size_ == src.support_.size - 2
    _same(mem, src)
