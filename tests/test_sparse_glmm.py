"""SparseGLMM: binary and count outcomes. With nothing to select it is glmer's fit
(tests/data/glmer); with p > N it finds the true support; predictions, offsets and the
errors a user meets."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hdlmm.api.glmm_estimator import SparseGLMM

formulaic = pytest.importorskip("formulaic")

HERE = Path(__file__).parent / "data" / "glmer"
REFERENCE = json.loads((HERE / "reference.json").read_text())
CASES = {  # reference: (fixed part without the intercept, response, trials, group)
    "cbpp_trials": ("period", "incidence", "size", "herd"),
    "contraception_intercept": ("age + I(age**2) + urban + livch", "use", None, "district"),
    "grouseticks_poisson": ("YEAR + cHEIGHT", "TICKS", None, "BROOD"),
}


def _reference_case(name):
    """The reference fit, its data, the design of its fixed part (no intercept) and
    its (response, trials, group) columns."""
    ref = REFERENCE[name]
    factors = [ref["factors"]] if isinstance(ref["factors"], str) else ref["factors"]
    data = pd.read_csv(HERE / ref["data"], dtype={c: str for c in factors})
    fixed, response, trials, group = CASES[name]
    X = formulaic.model_matrix(f"~ {fixed}", data).drop(columns=["Intercept"])
    X = pd.DataFrame(np.asarray(X, dtype=float), columns=list(X.columns))
    return ref, data, X, (response, trials, group)


@pytest.mark.parametrize("name", sorted(CASES))
def test_with_nothing_to_select_the_fit_is_glmers(name):
    ref, data, X, (response, trials, group) = _reference_case(name)
    m = SparseGLMM(ref["family"], support_size=X.shape[1], a=1.0, random_state=0).fit(
        X, data[response].to_numpy(float), data[group],
        trials=None if trials is None else data[trials].to_numpy(float))
    se = np.asarray(ref["se"])
    assert m.support_size_ == X.shape[1]
    assert -2 * m.loglik_ <= -2 * ref["loglik"] + 1e-6
    np.testing.assert_array_less(np.abs(m.params_.to_numpy() - ref["fixef"]) / se, 1e-3)
    np.testing.assert_allclose(m.cov_re_, np.atleast_2d(ref["cov_re"]), rtol=1e-3)
    np.testing.assert_allclose(m.bse_.to_numpy(), se, rtol=1e-3)


def _simulate(seed, family, n_clusters=100, p=300, offset=None):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_clusters), 10)
    N = g.size
    X = rng.normal(size=(N, p))
    beta = np.zeros(p)
    beta[[3, 50, 120]] = [1.0, -0.8, 0.9]
    eta = X @ beta + rng.normal(scale=0.6, size=n_clusters)[g]
    if offset is not None:
        eta = eta + offset
    if family == "binomial":
        return X, rng.binomial(1, 1 / (1 + np.exp(-eta))).astype(float), g, beta
    return X, rng.poisson(np.exp(0.3 + eta)).astype(float), g, beta


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_finds_the_support_with_more_columns_than_rows_per_cluster(family):
    X, y, g, beta = _simulate(0, family)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = SparseGLMM(family, random_state=0).fit(X, y, g)
    assert m.support_.tolist() == [3, 50, 120] and m.converged_
    assert np.linalg.norm(m.coef_ - beta) < 0.3
    assert m.pvalues_.iloc[[4, 51, 121]].max() < 1e-6


def test_predictions_on_the_response_scale():
    X, y, g, _ = _simulate(1, "binomial")
    m = SparseGLMM("binomial", random_state=0).fit(X, y, g)
    proba = m.predict_proba(X[:20], g[:20])
    assert proba.shape == (20, 2) and np.allclose(proba.sum(1), 1)
    eta = X[:20] @ m.coef_ + m.intercept_
    np.testing.assert_allclose(m.predict(X[:20]), 1 / (1 + np.exp(-eta)))  # new clusters
    gamma = m.random_effects_.loc[g[:20]].to_numpy()[:, 0]
    np.testing.assert_allclose(m.decision_function(X[:20], g[:20]), eta + gamma)


def test_a_poisson_offset_is_the_exposure():
    rng = np.random.default_rng(2)
    exposure = rng.uniform(0.5, 5, 1000)
    X, y, g, beta = _simulate(2, "poisson", offset=np.log(exposure))
    m = SparseGLMM("poisson", random_state=0).fit(X, y, g, offset=np.log(exposure))
    assert m.support_.tolist() == [3, 50, 120]
    assert abs(m.intercept_ - 0.3) < 0.25
    pred = m.predict(X[:5], offset=np.log(exposure[:5]))
    np.testing.assert_allclose(pred, np.exp(X[:5] @ m.coef_ + m.intercept_) * exposure[:5])


@pytest.mark.parametrize("kwargs, message", [
    (dict(family="gaussian"), "family must be one of"),
    (dict(y=np.tile([0.5, 1.5], 20)), "must be counts"),
    (dict(trials=np.zeros(40)), "more successes than trials"),
    (dict(family="poisson", trials=np.ones(40)), "trials are for the binomial family"),
])
def test_bad_input(kwargs, message):
    rng = np.random.default_rng(3)
    X, g = rng.normal(size=(40, 3)), np.repeat(np.arange(8), 5)
    y = kwargs.pop("y", rng.integers(0, 2, 40).astype(float))
    family = kwargs.pop("family", "binomial")
    with pytest.raises(ValueError, match=message):
        SparseGLMM(family).fit(X, y, g, **kwargs)


def test_formula_with_cbind_is_glmers_fit():
    """cbind(successes, failures) as glmer's; the factor period is one unit (k = 1)."""
    ref = REFERENCE["cbpp_trials"]
    data = pd.read_csv(HERE / ref["data"], dtype={"herd": str, "period": str})
    m = SparseGLMM.from_formula("cbind(incidence, size - incidence) ~ period + (1 | herd)",
                                data, "binomial", support_size=1, a=1.0)
    assert m.support_size_ == 1 and m.support_.size == 3
    np.testing.assert_array_less(np.abs(m.params_.to_numpy() - ref["fixef"]) / ref["se"],
                                 1e-3)
    assert m.loglik_ >= ref["loglik"] - 1e-6
    new = data.head(4)
    eta = m.decision_function(m.formula_design_.fixed_spec.get_model_matrix(new)
                              .drop(columns=["Intercept"]), new.herd.to_numpy(object))
    np.testing.assert_allclose(m.predict_frame(new), 1 / (1 + np.exp(-eta)))


def test_formula_offset_for_poisson_rates():
    rng = np.random.default_rng(4)
    exposure = rng.uniform(0.5, 5, 1000)
    X, y, g, beta = _simulate(4, "poisson", offset=np.log(exposure))
    data = pd.DataFrame(X[:, :40], columns=[f"x{j}" for j in range(40)]).assign(
        y=y, g=g, t=exposure)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = SparseGLMM.from_formula("y ~ . + offset(np.log(t)) + (1 | g)", data, "poisson",
                                    random_state=0)
    assert "t" not in m.feature_names_in_ and m.support_.tolist() == [3]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = SparseGLMM("poisson", random_state=0).fit(X[:, :40], y, g,
                                                        offset=np.log(exposure))
    np.testing.assert_allclose(m.coef_, ref.coef_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(m.predict_frame(data.head(5)),
                               m.predict(X[:5, :40], g[:5], offset=np.log(exposure[:5])))


def test_cli_family(tmp_path, capsys):
    from hdlmm.api.cli import main

    ref = REFERENCE["grouseticks_poisson"]
    code = main(["fit", str(HERE / ref["data"]), "--formula",
                 "TICKS ~ YEAR + cHEIGHT + (1 | BROOD)", "--family", "poisson",
                 "--out", str(tmp_path / "out"), "--support-size", "2", "--a", "1"])
    out = capsys.readouterr().out
    assert code == 0 and "Family: poisson  ( log )" in out
    table = pd.read_csv(tmp_path / "out" / "coefficients.csv")
    assert table.selected.sum() == 3  # the intercept, YEAR (numeric in the CSV), cHEIGHT
    assert table.loc[table.selected, "debiased_estimate"].iloc[1:].notna().all()
    assert "Debiased inference" in out
    written = {p.name for p in (tmp_path / "out").iterdir()}
    pytest.importorskip("matplotlib")
    assert {"random_effects.png", "coefficients.csv", "results.json"} <= written
    code = main(["fit", str(HERE / ref["data"]), "--formula",
                 "TICKS ~ YEAR + cHEIGHT + (1 | BROOD)", "--family", "poisson",
                 "--out", str(tmp_path / "cv"), "--no-progress"])
    assert code == 0 and (tmp_path / "cv" / "cv_curve.png").exists()
    code = main(["fit", str(HERE / ref["data"]), "--formula",
                 "TICKS ~ YEAR + cHEIGHT + (1 | BROOD)", "--family", "poisson",
                 "--force", "YEAR", "--support-size", "0", "--a", "1",
                 "--out", str(tmp_path / "o2"), "--no-plots"])
    table = pd.read_csv(tmp_path / "o2" / "coefficients.csv")
    assert code == 0 and table.selected.sum() == 2  # the intercept and the forced YEAR
    assert table.loc[table.selected, "feature"].tolist()[1:] == ["YEAR"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_column_forced_is_glmers_fit(name):
    """With every column forced and k = 0 nothing is selected: the fit is glmer's on all
    of them (as with support_size = p, the test above)."""
    ref, data, X, (response, trials, group) = _reference_case(name)
    m = SparseGLMM(ref["family"], support_size=0, a=1.0, force=list(X.columns),
                   random_state=0).fit(
        X, data[response].to_numpy(float), data[group],
        trials=None if trials is None else data[trials].to_numpy(float))
    se = np.asarray(ref["se"])
    assert m.support_size_ == 0 and m.support_.size == X.shape[1]
    assert list(m.forced_features_) == list(X.columns)
    np.testing.assert_array_less(np.abs(m.params_.to_numpy() - ref["fixef"]) / se, 1e-3)
    np.testing.assert_allclose(m.bse_.to_numpy(), se, rtol=1e-3)


def _forced_data(seed=0, n=80, m=6, p=8):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.standard_normal((n * m, p)), columns=[f"x{j}" for j in range(p)])
    g = np.repeat(np.arange(n), m)
    eta = 1.5 * (X.x0 - X.x1) + 0.5 * rng.normal(size=n)[g]
    y = (rng.random(n * m) < 1 / (1 + np.exp(-eta))).astype(float)
    return X, y, g


@pytest.mark.parametrize("k_selection", ["ic", "cv", "working"])
def test_forced_columns_stay_and_do_not_count(k_selection):
    """A forced noise column is in every fit's support, not counted in k; the others
    are chosen as without it (the true x0, x1 here); the formula marker force(x5) is
    the parameter force="x5"."""
    X, y, g = _forced_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m = SparseGLMM(force="x5", k_selection=k_selection, inference=None,
                       random_state=0).fit(X, y, g)
        free = SparseGLMM(k_selection=k_selection, inference=None, random_state=0).fit(X, y, g)
        df = X.assign(y=y, g=g)
        f = SparseGLMM.from_formula("y ~ x0 + x1 + x2 + x3 + x4 + force(x5) + x6 + x7 + (1 | g)",
                                    df, k_selection=k_selection, inference=None,
                                    random_state=0)
    assert 5 in m.support_ and list(m.forced_features_) == ["x5"]
    assert m.support_size_ == m.support_.size - 1
    assert set(free.support_) == {0, 1} and set(m.support_) == {0, 1, 5}
    assert m.working_model_.support_.size == m.support_.size
    pd.testing.assert_series_equal(f.params_, m.params_)


def test_forced_columns_with_a_given_k_and_inference():
    """k = 1 with two forced columns: three fixed effects besides the intercept, the
    debiased inference on all of them."""
    X, y, g = _forced_data(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m = SparseGLMM(force=["x5", "x2"], support_size=1, random_state=0).fit(X, y, g)
    assert m.support_size_ == 1 and {2, 5} < set(m.support_) and m.support_.size == 3
    assert "Selection: k = 1 (and 2 forced: x2, x5)" in m.summary()
    assert sorted(m.inference_.columns) == sorted(m.support_)


def test_force_names_a_missing_column():
    X, y, g = _forced_data()
    with pytest.raises(ValueError, match="force names 'nope'"):
        SparseGLMM(force="nope").fit(X, y, g)


def test_every_column_forced_with_nothing_given():
    """Every column forced, k and a to choose: nothing to select, a chosen by the CV
    all the same, and the Laplace fit on all the columns (which a does not change)."""
    X, y, g = _forced_data(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m = SparseGLMM(force=list(X.columns), inference=None, random_state=0).fit(X, y, g)
        ref = SparseGLMM(support_size=X.shape[1], a=1.0, inference=None,
                         random_state=0).fit(X, y, g)
    assert m.support_size_ == 0 and m.support_.size == X.shape[1] and np.isfinite(m.a_)
    np.testing.assert_allclose(m.coef_, ref.coef_, atol=1e-6)
    assert m.loglik_ == pytest.approx(ref.loglik_, abs=1e-8)
