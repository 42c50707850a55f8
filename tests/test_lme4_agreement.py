"""With nothing to select, the fit is lme4's: 19 models × REML and ML on 14 datasets.

Reference values: ``tests/data/lme4/reference.json``, made by ``make_reference.R`` in the
same folder (lme4 1.1-31; the datasets come from R's lme4, nlme, datasets and mlmRev).
Each model is fitted by ``SparseLMM.from_formula(..., support_size=p)`` from the CSV the
script wrote. Tolerances (issue "the fitted mixed model is lme4's"): criterion no worse
than lme4's + 1e-6; where both reach the same optimum, fixed effects within 1e-3 of
their SE, SEs, Ψ and σ² within 1e-3 relative. Where hdlmm's criterion is lower than
lme4's (lme4 stops short on the uncentred slopes of Orange and Loblolly), hdlmm's own
deviance at lme4's θ must equal lme4's criterion: the objective is the same and
hdlmm's optimum is better.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hdlmm
from hdlmm import ClusterStats
from hdlmm.model.profile import Profile, lower_factor
from hdlmm.sources.formula import parse_formula

pytest.importorskip("formulaic")

HERE = Path(__file__).parent / "data" / "lme4"
REFERENCE = json.loads((HERE / "reference.json").read_text())
SAME_OPTIMUM = 1e-4  # criteria closer than this: the same optimum


def _list(value):
    return [value] if isinstance(value, (str, int, float)) else list(value)


def load(ref):
    """The CSV of a reference fit, factors and the grouping column as text."""
    text = {c: str for c in _list(ref["factors"])}
    return pd.read_csv(HERE / ref["data"], dtype=text)


def fit(ref, **params):
    data = load(ref)
    p = parse_formula(ref["formula"], data).X.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # boundary fits say so
        return hdlmm.SparseLMM.from_formula(  # p columns, each its own unit: all in
            ref["formula"], data, support_size=p, a=1.0, vc_method=ref["method"],
            inference=None, feature_groups="columns", **params)


def deviance_at_lme4_theta(model, ref):
    """hdlmm's profiled deviance at lme4's θ (column-major lower triangle of Λ)."""
    vc = model.variance_components_
    q = vc.cov_re.shape[0]
    L = np.zeros((q, q))
    rows, cols = np.triu_indices(q)  # column-major lower triangle = row-major upper of Lᵀ
    L[cols, rows] = _list(ref["theta"])
    p = model.stats_.n_features  # the deviance in the units of the data, as lme4's
    stats = model.stats_.restandardize(np.zeros(p), np.ones(p), y_shift=0.0)
    prof = Profile(stats, ref["method"], "unstructured")
    Lt = lower_factor(np.linalg.solve(prof.T, L))
    return prof.deviance(Lt[prof.rows, prof.cols])


@pytest.mark.parametrize("key", sorted(REFERENCE))
def test_the_fit_is_lme4s(key):
    ref = REFERENCE[key]
    m = fit(ref)
    vc = m.variance_components_
    assert vc.converged
    crit = vc.criterion
    assert crit <= ref["criterion"] + 1e-6, (crit, ref["criterion"])
    fixef = np.r_[m.intercept_, m.coef_] if m.fit_intercept else m.coef_
    se = m.bse_.to_numpy()  # the intercept first, as params_
    names = list(m.params_.index)
    assert len(names) == len(_list(ref["fixef_names"]))
    assert m.df_model_ == ref["df"]
    q = vc.cov_re.shape[0]
    psi = np.array(ref["psi"], dtype=float).reshape(q, q)
    if crit < ref["criterion"] - SAME_OPTIMUM:
        # lme4 stopped short: the same objective at its θ, and a better optimum here
        np.testing.assert_allclose(deviance_at_lme4_theta(m, ref), ref["criterion"],
                                   rtol=1e-9, atol=1e-7)
        return
    np.testing.assert_allclose(crit, ref["criterion"], atol=1e-6, rtol=0)
    ref_se = np.array(_list(ref["se"]))
    assert np.max(np.abs(fixef - np.array(_list(ref["fixef"]))) / ref_se) < 1e-3
    np.testing.assert_allclose(se, ref_se, rtol=1e-3)
    scale_psi = max(np.max(np.abs(psi)), 1e-3 * ref["sigma2"])  # Ψ = 0 on the boundary
    assert np.max(np.abs(vc.cov_re - psi)) / scale_psi < 1e-3
    np.testing.assert_allclose(vc.scale, ref["sigma2"], rtol=1e-3)
    np.testing.assert_allclose([m.llf_, m.aic_, m.bic_],
                               [ref["loglik"], ref["aic"], ref["bic"]], atol=1e-5)
    assert vc.boundary == ref["singular"]
    # BLUPs (conditional modes), per level, within 1e-3 of the random effects' SD
    # (5e-3 on a boundary, where the optimum is flat along the vanished direction)
    blup = m.random_effects_.copy()
    blup.index = blup.index.astype(str)
    ranef = np.array(ref["ranef"], dtype=float).reshape(-1, q)
    got = blup.loc[[str(g) for g in _list(ref["group_levels"])]].to_numpy()
    sd = np.sqrt(np.maximum(np.diag(psi), 1e-6 * ref["sigma2"]))
    assert np.max(np.abs(got - ranef) / sd) < (5e-3 if ref["singular"] else 1e-3)


def test_the_reference_covers_what_the_issue_asks():
    models = {r["model"] for r in REFERENCE.values()}
    assert len({r["data"] for r in REFERENCE.values()}) >= 12 and len(models) >= 12
    assert {r["method"] for r in REFERENCE.values()} == {"REML", "ML"}
    assert any(r["singular"] for r in REFERENCE.values())  # a boundary fit
    assert any(len(_list(r["fixef"])) == 1 for r in REFERENCE.values())  # intercept only
    assert any(np.size(r["psi"]) == 9 for r in REFERENCE.values())  # q = 3


@pytest.mark.parametrize("key", ["orthodont_REML", "chickweight_ML", "loblolly_REML"])
def test_shifting_or_rescaling_a_slope_covariate_leaves_the_optimum(key):
    """age → 1000 (age − 11): the same criterion, Ψ transformed as Z is."""
    ref = dict(REFERENCE[key])
    data = load(ref)
    covariate = {"orthodont": "age", "chickweight": "Time", "loblolly": "age"}[ref["model"]]
    data[covariate] = 1000 * (data[covariate] - 11)
    m0 = fit(ref)
    p = parse_formula(ref["formula"], data).X.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m1 = hdlmm.SparseLMM.from_formula(ref["formula"], data, support_size=p, a=1.0,
                                          vc_method=ref["method"], inference=None,
                                          feature_groups="columns")
    c0, c1 = m0.variance_components_.criterion, m1.variance_components_.criterion
    # REML: log|XᵀV⁻¹X| moves by 2 log 1000 when a column of X is multiplied by 1000
    if ref["method"] == "REML":
        c1 -= 2 * np.log(1000.0)
    np.testing.assert_allclose(c1, c0, atol=1e-6)
    # Z = [1, t] → [1, 1000 (t − 11)]: Ψ_new = T⁻¹ Ψ T⁻ᵀ with Z_new = Z T
    T = np.array([[1.0, -11000.0], [0.0, 1000.0]])
    Tinv = np.linalg.inv(T)
    np.testing.assert_allclose(m1.cov_re_, Tinv @ m0.cov_re_ @ Tinv.T, rtol=1e-4,
                               atol=1e-6 * np.max(np.abs(m0.cov_re_)))
    np.testing.assert_allclose(m1.scale_, m0.scale_, rtol=1e-6)
    slope = m1.params_[covariate] * 1000
    np.testing.assert_allclose(slope, m0.params_[covariate], rtol=1e-6)


def test_the_null_model_is_fitted_like_lme4():
    ref = REFERENCE["sleep_null_REML"]
    m = fit(ref)
    assert m.support_size_ == 0 and m.support_.size == 0 and m.coef_.size == 0
    assert "null model" in m.selection_
    se = _list(ref["se"])[0]
    assert abs(m.intercept_ - _list(ref["fixef"])[0]) < 1e-3 * se
    np.testing.assert_allclose(m.intercept_bse_, _list(ref["se"])[0], rtol=1e-4)
    pred = m.predict_frame(load(ref))
    assert np.all(np.isfinite(pred))


def test_support_size_zero_is_the_null_model_of_the_candidates():
    d = hdlmm.make_lmm_data(n_clusters=30, n_obs=6, n_features=20, support_size=2,
                            random_state=3)
    m = hdlmm.SparseLMM(support_size=0, random_state=0).fit(d.X, d.y, groups=d.groups,
                                                           Z=d.Z)
    assert m.support_.size == 0 and np.all(m.coef_ == 0) and m.inference_ is None
    ones = np.zeros((len(d.y), 0))
    null = ClusterStats.from_arrays(ones, d.y, d.groups, d.Z)
    vc = hdlmm.model.varcomp.fit_variance_components(null, "REML")
    np.testing.assert_allclose(m.intercept_, vc.coef[0] + null.y_shift, rtol=1e-8)
    np.testing.assert_allclose(m.variance_components_.criterion, vc.criterion, atol=1e-8)


def test_likelihood_ratio_test_of_nested_fits():
    ref = REFERENCE["sleep_slope_ML"]
    data = load(ref)
    small = hdlmm.SparseLMM.from_formula("Reaction ~ Days + (1 | Subject)", data,
                                         support_size=1, a=1.0, vc_method="ML",
                                         inference=None)
    large = fit(ref)
    tab = hdlmm.compare_models(small, large)
    llf0 = REFERENCE["sleep_intercept_ML"]["loglik"]
    np.testing.assert_allclose(tab.loc["larger", "Chisq"], 2 * (ref["loglik"] - llf0),
                               atol=1e-5)
    assert tab.loc["larger", "Df"] == 2 and tab.loc["larger", "Pr(>Chisq)"] < 1e-6
    assert "boundary" in tab.attrs["note"]
    reml = fit(REFERENCE["sleep_slope_REML"])
    with pytest.raises(ValueError, match="different methods"):
        hdlmm.compare_models(small, reml)
    with pytest.raises(ValueError, match="pass the smaller model first"):
        hdlmm.compare_models(large, small)
    null = hdlmm.SparseLMM.from_formula("Reaction ~ 1 + (1 | Subject)", data,
                                        vc_method="REML", inference=None)
    with pytest.raises(ValueError, match="REML likelihoods of models with different "
                                         "fixed effects are not comparable"):
        hdlmm.compare_models(null, hdlmm.SparseLMM.from_formula(
            "Reaction ~ Days + (1 | Subject)", data, support_size=1, a=1.0,
            inference=None))
