"""Units and offsets never change the answer (and names, not positions, match columns).

Rescaling a column of X by c > 0 must leave the support, a, Ψ̂, σ̂² and the p-values as
they were and divide its coefficient by c; shifting a column (the intercept absorbs
it) must leave everything but the intercept as it was. Tolerances: a rescaled value
x·c is rounded to 1e-16 relative, so scaled fits agree to rounding (1e-8 here); a value
shifted by 10^e standard deviations keeps only 16 − e of its digits of spread, so
shifted fits agree to about 10^(e−16) relative, the precision the data themselves have.
"""

import warnings

import numpy as np
import pandas as pd
import pytest

import hdlmm
from hdlmm import ClusterStats, SparseLMM

hyp = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def _problem(seed, n_features=12):
    return hdlmm.make_lmm_data(n_clusters=16, n_obs=(4, 10), n_features=n_features,
                               n_re=2, coef=[1.0, -1.5, 2.0],
                               cov_re=[[1.0, 0.3], [0.3, 0.5]], scale=1.0,
                               random_state=seed)


def _fit(X, d, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SparseLMM(random_state=0, **params).fit(X, d.y, groups=d.groups, Z=d.Z)


def _assert_same_fit(ref, new, factor, rtol):
    """``new`` is ``ref`` refitted on X with column j multiplied by 1/factor_j
    (and shifted)."""
    assert new.support_.tolist() == ref.support_.tolist()
    assert new.a_ == ref.a_
    atol = rtol * np.abs(ref.coef_).max()
    np.testing.assert_allclose(new.coef_ * factor, ref.coef_, rtol=rtol, atol=atol)
    on = ref.feature_names_in_[ref.support_] if hasattr(ref, "feature_names_in_") else [
        f"x{j}" for j in ref.support_]
    np.testing.assert_allclose(new.bse_[on] * factor[ref.support_], ref.bse_[on], rtol=rtol)
    np.testing.assert_allclose(new.cov_re_, ref.cov_re_, rtol=rtol,
                               atol=rtol * np.abs(ref.cov_re_).max())
    np.testing.assert_allclose(new.scale_, ref.scale_, rtol=rtol)
    np.testing.assert_allclose(new.pvalues_[on], ref.pvalues_[on],
                               rtol=max(rtol, 1e-9), atol=1e-12)
    ci_new, ci_ref = new.confint().to_numpy(), ref.confint().to_numpy()
    f = factor[new.inference_.columns][:, None]
    np.testing.assert_allclose(ci_new * f, ci_ref, rtol=rtol, atol=atol)


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 10_000), exponents=st.lists(st.floats(-8, 8), min_size=12,
                                                       max_size=12))
def test_rescaling_columns_changes_nothing_but_their_coefficients(seed, exponents):
    d = _problem(seed)
    ref = _fit(d.X, d)
    c = 10.0 ** np.asarray(exponents)
    new = _fit(d.X * c, d)
    _assert_same_fit(ref, new, c, rtol=1e-8)


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 10_000), exponents=st.lists(st.floats(0, 8), min_size=12,
                                                       max_size=12),
       signs=st.lists(st.sampled_from([-1.0, 1.0]), min_size=12, max_size=12))
def test_shifting_columns_changes_nothing_but_the_intercept(seed, exponents, signs):
    d = _problem(seed)
    ref = _fit(d.X, d)
    e = np.asarray(exponents)
    new = _fit(d.X + np.asarray(signs) * 10.0 ** e * d.X.std(0), d)
    _assert_same_fit(ref, new, np.ones(d.X.shape[1]), rtol=max(1e-8, 10.0 ** (e.max() - 14)))


def test_a_true_predictor_in_micrograms_or_epoch_seconds_stays_selected():
    d = _problem(3, n_features=40)
    ref = _fit(d.X, d)
    j = ref.support_[0]
    for factor, offset in ((1e8, 0.0), (1e-7, 0.0), (1e7, 0.0), (1.0, 1.7e9)):
        X = d.X.copy()
        X[:, j] = X[:, j] * factor + offset
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            new = SparseLMM(random_state=0, inference=None).fit(X, d.y, groups=d.groups,
                                                                Z=d.Z)
        said = " ".join(str(w.message) for w in caught)
        assert "constant" not in said and "converge" not in said, said
        assert new.support_.tolist() == ref.support_.tolist()
        np.testing.assert_allclose(new.coef_[j] * factor, ref.coef_[j], rtol=1e-6)
        np.testing.assert_allclose(new.scale_, ref.scale_, rtol=1e-6)


@pytest.mark.parametrize("how", ["source", "dask"])
def test_streamed_and_dask_fits_equal_the_in_memory_fit_with_large_offsets(tmp_path, how):
    d = _problem(5)
    cols = [f"x{j}" for j in range(d.X.shape[1])]
    X = d.X + 1e6 * np.arange(1, d.X.shape[1] + 1)  # offsets of a million sd
    frame = pd.DataFrame(X, columns=cols).assign(y=d.y, g=d.groups, t=d.Z[:, 1])
    ref = SparseLMM(random_state=0).fit(frame[cols], d.y, groups=d.groups, Z=d.Z)
    if how == "source":
        pytest.importorskip("pyarrow")
        frame.to_parquet(tmp_path / "d.parquet")
        m = SparseLMM(random_state=0).fit_source(tmp_path / "d.parquet", y="y", groups="g",
                                                 X=cols, Z=["1", "t"], chunk_rows=37)
    else:
        dd = pytest.importorskip("dask.dataframe")
        m = SparseLMM(random_state=0).fit_dask(dd.from_pandas(frame, npartitions=4),
                                               y="y", groups="g", X=cols, Z=["1", "t"])
    assert m.support_.tolist() == ref.support_.tolist() and m.a_ == ref.a_
    np.testing.assert_allclose(m.coef_, ref.coef_, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(m.cov_re_, ref.cov_re_, rtol=1e-7)
    on = ref.feature_names_in_[ref.support_]
    np.testing.assert_allclose(m.pvalues_[on], ref.pvalues_[on], rtol=1e-6)


def test_stats_merged_from_chunks_in_other_standardisations_equal_the_whole():
    d = _problem(6)
    X = d.X * 10.0 ** np.linspace(-6, 6, d.X.shape[1]) + 1e5
    whole = ClusterStats.from_arrays(X, d.y, d.groups, d.Z)
    parts = [ClusterStats.from_arrays(X[r], d.y[r], d.groups[r], d.Z[r])
             for r in (slice(0, 40), slice(40, 90), slice(90, None))]
    merged = (parts[0] + parts[1] + parts[2]).standardized()
    for key in ("XtX", "Xty", "ZtX", "x_shift", "x_scale"):
        np.testing.assert_allclose(getattr(merged, key), getattr(whole, key), rtol=1e-9,
                                   atol=1e-9)


def test_predict_matches_dataframe_columns_by_name():
    d = _problem(7)
    cols = [f"x{j}" for j in range(d.X.shape[1])]
    frame = pd.DataFrame(d.X, columns=cols)
    m = SparseLMM(random_state=0, inference=None).fit(frame, d.y, groups=d.groups, Z=d.Z)
    shuffled = frame[cols[::-1]]
    np.testing.assert_allclose(m.predict(shuffled, groups=d.groups, Z=d.Z),
                               m.predict(frame, groups=d.groups, Z=d.Z))
    with pytest.raises(ValueError, match=r"missing 'x3', unknown 'z'"):
        m.predict(frame.rename(columns={"x3": "z"}))
    with pytest.raises(ValueError, match="missing 'x0'"):
        m.predict(frame.drop(columns="x0"))


def test_a_new_fit_forgets_the_attributes_of_the_previous_one():
    d = _problem(8)
    frame = pd.DataFrame(d.X, columns=[f"x{j}" for j in range(d.X.shape[1])])
    m = SparseLMM(random_state=0, inference=None)
    m.fit(frame, d.y, groups=d.groups, Z=d.Z)
    assert hasattr(m, "feature_names_in_")
    data = frame.assign(y=d.y, g=d.groups)
    m.fit_formula("y ~ x0 + x1 + (1 | g)", data)
    assert hasattr(m, "formula_design_")
    m.fit(d.X, d.y, groups=d.groups, Z=d.Z)
    assert not hasattr(m, "feature_names_in_") and not hasattr(m, "formula_design_")
    np.testing.assert_allclose(m.predict(d.X[:3]), d.X[:3] @ m.coef_ + m.intercept_)


def test_aliased_columns_are_named_and_do_not_slow_the_fit():
    d = _problem(9, n_features=30)
    cols = [f"x{j}" for j in range(d.X.shape[1])]
    frame = pd.DataFrame(d.X, columns=cols).assign(total=d.X[:, 4] - 2 * d.X[:, 11])
    with pytest.warns(UserWarning, match=r"'total' = combination of \['x4', 'x11'\]|"
                                         r"'x11' = combination of|'x4' = combination of"):
        m = SparseLMM(random_state=0, inference=None).fit(frame, d.y, groups=d.groups,
                                                          Z=d.Z)
    ref = _fit(d.X, d, inference=None)
    # the path stopped where the criterion's bound says, as without the aliased column
    assert m.path_.k.max() <= ref.path_.k.max() + 1
    assert m.support_size_ == ref.support_size_


def test_collinear_support_is_an_error_that_names_the_problem():
    d = _problem(10, n_features=4)
    X = np.c_[d.X, d.X[:, 0] + d.X[:, 1]]
    with pytest.raises(ValueError, match="linearly independent"):
        _fit(X, d, support_size=5)


@pytest.mark.parametrize("method", ["REML", "ML"])
@pytest.mark.parametrize("shift_sd, scale", [(1e4, 1.0), (1e8, 1.0), (0.0, 1e-8),
                                             (0.0, 1e8), (1e6, 1e3)])
def test_a_slope_covariate_in_other_units_leaves_the_likelihood_optimum(method, shift_sd,
                                                                        scale):
    """Days, in X and in Z, stored as scale · (Days + shift): the same optimum (the REML
    criterion moves by 2 log scale, its log|XᵀV⁻¹X| term), σ̂² and Ψ̂ as Z moves."""
    data = pd.read_csv(__import__("pathlib").Path(__file__).parent / "data" / "sleepstudy.csv")
    formula = "Reaction ~ Days + (Days | Subject)"
    kw = dict(support_size=1, a=1.0, vc_method=method, inference=None)
    ref = SparseLMM.from_formula(formula, data, **kw)
    shift = shift_sd * data.Days.std(ddof=0)
    moved = SparseLMM.from_formula(formula, data.assign(Days=scale * (data.Days + shift)), **kw)
    c0, c1 = ref.variance_components_.criterion, moved.variance_components_.criterion
    if method == "REML":
        c1 -= 2 * np.log(scale)
    np.testing.assert_allclose(c1, c0, rtol=1e-10)
    np.testing.assert_allclose(moved.scale_, ref.scale_, rtol=1e-7)
    # Z_new = Z T with T = [[1, scale·shift], [0, scale]]: Ψ_new = T⁻¹ Ψ T⁻ᵀ
    T = np.array([[1.0, scale * shift], [0.0, scale]])
    Tinv = np.linalg.inv(T)
    np.testing.assert_allclose(moved.cov_re_[1, 1], (Tinv @ ref.cov_re_ @ Tinv.T)[1, 1],
                               rtol=1e-6)
    np.testing.assert_allclose(moved.params_["Days"] * scale, ref.params_["Days"], rtol=1e-7)
    np.testing.assert_allclose(moved.predict_frame(data.assign(
        Days=scale * (data.Days + shift))), ref.predict_frame(data), rtol=1e-7)


def test_a_collinear_support_names_the_redundant_columns():
    d = _problem(11, n_features=3)
    X = pd.DataFrame(np.c_[d.X, d.X[:, 0] + d.X[:, 1], np.full(len(d.y), 7.0)],
                     columns=["a", "b", "c", "a_plus_b", "seven"])
    with pytest.raises(ValueError, match=r"X has 3 independent columns; constant or "
                                         r"redundant .*'seven'.*support_size ≤ 3"):
        _fit(X, d, support_size=4)


@pytest.mark.parametrize("kind", ["scale", "shift"])
def test_screening_does_not_depend_on_units(kind):
    d = _problem(12, n_features=60)
    rng = np.random.default_rng(0)
    X = (d.X * 10.0 ** rng.uniform(-8, 8, 60) if kind == "scale"
         else d.X + 10.0 ** rng.uniform(0, 8, 60))
    kw = dict(screening=15, inference=None)
    ref, new = _fit(d.X, d, **kw), _fit(X, d, **kw)
    assert new.support_.tolist() == ref.support_.tolist() and new.a_ == ref.a_


@pytest.mark.parametrize("offset", [1e4, 1e6, 1e8])
def test_an_offset_of_y_moves_only_the_intercept(offset):
    d = _problem(13, n_features=30)
    ref = _fit(d.X, d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        new = SparseLMM(random_state=0).fit(d.X, d.y + offset, groups=d.groups, Z=d.Z)
    _assert_same_fit(ref, new, np.ones(d.X.shape[1]), rtol=1e-8)
    np.testing.assert_allclose(new.intercept_ - offset, ref.intercept_, atol=1e-6)
