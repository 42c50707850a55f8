"""Observation weights (lme4's ``weights``, scikit-learn's ``sample_weight``): with
nothing to select the fit is lme4's weighted fit (reference values and the R script in
``tests/data/lme4_weights/``), unit weights change nothing, and weights are units-free
(multiplying them all by c multiplies σ² by c, and changes nothing else)."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hdlmm
from hdlmm import SparseLMM

pytest.importorskip("formulaic")

HERE = Path(__file__).parent / "data" / "lme4_weights"
REFERENCE = json.loads((HERE / "reference.json").read_text())


def _fit(ref, weights="w", **params):
    """The weighted model with every column in (nothing to select), as lme4 fits it."""
    from hdlmm.sources.formula import parse_formula

    factors = [ref["factors"]] if isinstance(ref["factors"], str) else ref["factors"]
    data = pd.read_csv(HERE / ref["data"], dtype={c: str for c in factors})
    p = parse_formula(ref["formula"], data).X.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return SparseLMM.from_formula(ref["formula"], data, support_size=p, a=1.0,
                                      inference=None, vc_method=ref["method"],
                                      feature_groups="columns", weights=weights, **params)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_the_weighted_fit_is_lme4s(name):
    ref = REFERENCE[name]
    m = _fit(ref)
    vc = m.variance_components_
    assert vc.criterion <= ref["criterion"] + 1e-6
    assert vc.criterion == pytest.approx(ref["criterion"], abs=1e-4)
    assert m.llf_ == pytest.approx(ref["loglik"], abs=1e-4)
    se = np.asarray(ref["se"])
    np.testing.assert_allclose(m.params_.to_numpy(), ref["fixef"], atol=1e-3 * se.min())
    np.testing.assert_allclose(m.bse_.to_numpy(), se, rtol=1e-3)
    np.testing.assert_allclose(m.scale_, ref["sigma2"], rtol=1e-3)
    np.testing.assert_allclose(np.atleast_2d(m.cov_re_), np.atleast_2d(ref["cov_re"]),
                               rtol=1e-3, atol=1e-3 * np.max(np.abs(ref["cov_re"])))


def test_unit_weights_change_nothing():
    d = hdlmm.make_lmm_data(n_clusters=30, n_obs=(3, 9), n_features=40, random_state=4)
    a = SparseLMM(random_state=0).fit(d.X, d.y, d.groups, d.Z)
    b = SparseLMM(random_state=0).fit(d.X, d.y, d.groups, d.Z,
                                      sample_weight=np.ones(len(d.y)))
    assert a.support_.tolist() == b.support_.tolist() and a.a_ == b.a_
    np.testing.assert_allclose(b.coef_, a.coef_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b.pvalues_.iloc[1:], a.pvalues_.iloc[1:], rtol=1e-7)
    assert b.llf_ == pytest.approx(a.llf_, rel=1e-10)


def test_scaling_every_weight_changes_only_sigma2():
    d = hdlmm.make_lmm_data(n_clusters=30, n_obs=(3, 9), n_features=40, random_state=5)
    w = np.random.default_rng(0).uniform(0.5, 2, len(d.y))
    a = SparseLMM(random_state=0).fit(d.X, d.y, d.groups, d.Z, sample_weight=w)
    b = SparseLMM(random_state=0).fit(d.X, d.y, d.groups, d.Z, sample_weight=1000 * w)
    assert a.support_.tolist() == b.support_.tolist() and a.a_ == b.a_
    np.testing.assert_allclose(b.coef_, a.coef_, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(b.scale_, a.scale_ * 1000, rtol=1e-6)  # σ²/w the same
    np.testing.assert_allclose(b.cov_re_, a.cov_re_, rtol=1e-5)
    assert b.llf_ == pytest.approx(a.llf_, abs=1e-6)
    np.testing.assert_allclose(b.pvalues_.iloc[1:], a.pvalues_.iloc[1:], rtol=1e-6)


def test_weights_with_offsets_in_x_change_nothing_but_the_intercept():
    d = hdlmm.make_lmm_data(n_clusters=30, n_obs=(3, 9), n_features=20, random_state=6)
    w = np.random.default_rng(1).uniform(0.5, 2, len(d.y))
    a = SparseLMM(random_state=0).fit(d.X, d.y, d.groups, d.Z, sample_weight=w)
    b = SparseLMM(random_state=0).fit(d.X + 1e6, d.y, d.groups, d.Z, sample_weight=w)
    assert a.support_.tolist() == b.support_.tolist()
    np.testing.assert_allclose(b.coef_, a.coef_, rtol=1e-6, atol=1e-9)


def test_formula_weights_by_name_and_missing_rows():
    ref = REFERENCE["sleep_slope_REML"]
    data = pd.read_csv(HERE / ref["data"], dtype={"Subject": str})
    by_name = SparseLMM.from_formula(ref["formula"], data, weights="w", support_size=1,
                                     a=1.0, inference=None)
    by_array = SparseLMM.from_formula(ref["formula"], data, weights=data.w.to_numpy(),
                                      support_size=1, a=1.0, inference=None)
    np.testing.assert_array_equal(by_name.params_, by_array.params_)
    dot = SparseLMM.from_formula("Reaction ~ . + (Days | Subject)", data, weights="w",
                                 support_size=1, a=1.0, inference=None)
    assert list(dot.feature_names_in_) == ["Days"]  # the weights are not a candidate
    holes = data.assign(w=data.w.where(data.index % 17 != 0))
    with pytest.warns(UserWarning, match="dropped 11 of 180 rows"):
        SparseLMM.from_formula(ref["formula"], holes, weights="w", missing="drop",
                               support_size=1, a=1.0, inference=None)


@pytest.mark.parametrize("w, message", [
    (np.zeros(5), "sample_weight must be positive"),
    (np.ones(4), "sample_weight has 4 values but X has 5 rows"),
    (np.r_[1, 1, np.nan, 1, 1], "sample_weight contains NaN values in 1 row"),
    (-np.ones(5), "sample_weight must be positive"),
])
def test_bad_weights(w, message):
    with pytest.raises(ValueError, match=message):
        SparseLMM().fit(np.random.default_rng(0).normal(size=(5, 2)), np.arange(5.0),
                        [0, 0, 1, 1, 1], sample_weight=w)
