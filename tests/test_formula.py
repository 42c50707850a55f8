"""The formula interface: lme4 syntax, '.', categoricals, names, missing values, errors."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hdlmm
from hdlmm.sources.formula import split_bars

pytest.importorskip("formulaic")

SLEEP = pd.read_csv(Path(__file__).parent / "data" / "sleepstudy.csv")


@pytest.mark.parametrize("formula,fixed,bars", [
    ("y ~ x + (1 + t | g)", "y ~ x", [("1 + t", "g", True)]),
    ("y ~ (1|g) + x1 + x2", "y ~ x1 + x2", [("1", "g", True)]),
    ("y ~ . + (1 | g)", "y ~ .", [("1", "g", True)]),
    ("y ~ np.log(x) + (0 + t | g) + (1 | g)", "y ~ np.log(x)",
     [("0 + t", "g", True), ("1", "g", True)]),
    ("y ~ (1 | g)", "y ~ 1", [("1", "g", True)]),
    ("y ~ x + (1 + t || g)", "y ~ x", [("1 + t", "g", False)]),
])
def test_split_bars(formula, fixed, bars):
    assert split_bars(formula) == (fixed, bars)


def test_sleepstudy_formula_reproduces_lme4():
    m = hdlmm.SparseLMM.from_formula("Reaction ~ Days + (Days | Subject)", SLEEP,
                                     support_size=1, a=1.0)
    # lme4 (REML): fixed effects 251.4051, 10.4673; SEs 6.8246, 1.5458; σ² 654.94
    np.testing.assert_allclose(m.params_[["(Intercept)", "Days"]], [251.4051, 10.4673],
                               atol=5e-5)
    np.testing.assert_allclose([m.intercept_bse_, m.bse_["Days"]], [6.8246, 1.5458], rtol=5e-5)
    np.testing.assert_allclose(np.diag(m.cov_re_), [612.10, 35.07], rtol=1e-4)
    np.testing.assert_allclose(m.scale_, 654.94, rtol=1e-5)
    assert list(m.random_effects_.columns) == ["(Intercept)", "Days"]
    assert m.random_effects_.index.name == "group" and len(m.random_effects_) == 18
    assert "Days" in m.summary() and "(Intercept)" in m.summary()


def test_formula_equals_the_array_interface():
    d = hdlmm.make_lmm_data(n_clusters=20, n_obs=(3, 8), n_features=8, n_re=2,
                            support_size=2, random_state=1)
    df = pd.DataFrame(d.X, columns=[f"v{j}" for j in range(8)])
    df["y"], df["t"], df["g"] = d.y, d.Z[:, 1], d.groups
    m1 = hdlmm.SparseLMM.from_formula("y ~ . - t + (1 + t | g)", df, support_size=2,
                                      a=1.0)
    m2 = hdlmm.SparseLMM(support_size=2, a=1.0).fit(d.X, d.y, groups=d.groups, Z=d.Z)
    np.testing.assert_allclose(m1.coef_, m2.coef_, rtol=1e-10)
    assert list(m1.feature_names_in_) == [f"v{j}" for j in range(8)]
    assert list(m1.params_.index) == ["(Intercept)"] + [f"v{j}" for j in range(8)]
    # BLUPs agree to the variance-component optimiser's tolerance
    np.testing.assert_allclose(m1.predict_frame(df), m2.predict(d.X, d.groups, d.Z),
                               rtol=1e-5)
    np.testing.assert_allclose(m1.predict_frame(df, random_effects=False),
                               m2.predict(d.X), rtol=1e-12)


def test_dot_excludes_response_and_group_and_encodes_categoricals():
    rng = np.random.default_rng(0)
    n = 120
    df = pd.DataFrame({"g": np.repeat([f"s{i}" for i in range(12)], 10),
                       "arm": rng.choice(["a", "b", "c"], n),
                       "x": rng.standard_normal(n)})
    df["y"] = 2 * df.x + np.where(df.arm == "c", 3.0, 0.0) + rng.standard_normal(n) * 0.3
    m = hdlmm.SparseLMM.from_formula("y ~ . + (1 | g)", df, random_state=0)
    assert list(m.feature_names_in_) == ["arm[T.b]", "arm[T.c]", "x"]
    # the factor is selected whole by default, its dummies one by one on request
    assert set(m.params_.index[m.params_ != 0]) == {"(Intercept)", "arm[T.b]", "arm[T.c]",
                                                    "x"}
    m = hdlmm.SparseLMM.from_formula("y ~ . + (1 | g)", df, random_state=0,
                                     feature_groups="columns")
    assert set(m.params_.index[m.params_ != 0]) == {"(Intercept)", "arm[T.c]", "x"}


def test_no_intercept_formula():
    d = SLEEP.assign(one=1.0)
    m = hdlmm.SparseLMM.from_formula("Reaction ~ 0 + Days + (1 | Subject)", d,
                                     support_size=1, a=1.0)
    assert m.intercept_ == 0.0 and not m.fit_intercept
    with pytest.raises(ValueError, match="removes an intercept but fit_intercept=True"):
        hdlmm.SparseLMM().fit_formula("Reaction ~ 0 + Days + (1 | Subject)", d)


def test_missing_values_raise_or_drop_with_a_count():
    d = SLEEP.copy()
    d.loc[[3, 7], "Days"] = np.nan
    with pytest.raises(ValueError, match=r"2 rows have missing values \(Days: 2\).*"
                                         r"missing='drop'"):
        hdlmm.SparseLMM.from_formula("Reaction ~ Days + (1 | Subject)", d)
    with pytest.warns(UserWarning, match="dropped 2 of 180 rows"):
        m = hdlmm.SparseLMM.from_formula("Reaction ~ Days + (1 | Subject)", d,
                                         missing="drop", support_size=1, a=1.0)
    assert m.stats_.n_samples == 178 and m.formula_design_.n_dropped == 2


@pytest.mark.parametrize("formula,match", [
    ("Reaction ~ Dayz + (1 | Subject)", r"unknown column 'Dayz'.*columns are|"
                                        r"unknown column 'Dayz'; data has columns"),
    ("Reaction ~ Days + (1 | Subjekt)", "grouping column 'Subjekt' is not in data"),
    ("Reaction ~ Days", "no random-effect term"),
    ("Reaction ~ Days + (1 | Subject) + (1 | Days)",
     r"crossed or several grouping factors \(\['Subject', 'Days'\]\) are not supported"),
    ("Reaction ~ Days + (1 | Subject/Days)", r"nested random effects \('Subject/Days'\) "
                                           r"are not supported yet"),
    ("Reaction ~ Days + (1 | Subject) + (1 | Subject)", "appears in two terms"),
    ("Reaction ~ Days + (1 | Subject", "unbalanced parentheses"),
    ("Days + (1 | Subject)", "formula must be a string 'response ~ terms'"),
    ("Reaction ~ Days + ( | Subject)", "needs terms and a grouping column"),
])
def test_formula_errors(formula, match):
    with pytest.raises(ValueError, match=match):
        hdlmm.SparseLMM.from_formula(formula, SLEEP)


def test_grouping_column_with_one_level_and_bad_data():
    d = SLEEP.assign(Subject=1)
    with pytest.raises(ValueError, match="grouping column 'Subject' has one level"):
        hdlmm.SparseLMM.from_formula("Reaction ~ Days + (1 | Subject)", d)
    with pytest.raises(ValueError, match="data must be a pandas DataFrame"):
        hdlmm.SparseLMM.from_formula("Reaction ~ Days + (1 | Subject)", SLEEP.to_numpy())
    dup = pd.concat([SLEEP, SLEEP[["Days"]]], axis=1)
    with pytest.raises(ValueError, match=r"duplicated column names \['Days'\]"):
        hdlmm.SparseLMM.from_formula("Reaction ~ Days + (1 | Subject)", dup)
    with pytest.raises(ValueError, match="predict_frame needs a model fitted by"):
        hdlmm.SparseLMM(support_size=1, a=1.0).fit(
            SLEEP[["Days"]], SLEEP.Reaction, groups=SLEEP.Subject).predict_frame(SLEEP)


def test_names_flow_into_the_path_plot(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from hdlmm.api.plots import plot_path

    m = hdlmm.SparseLMM.from_formula("Reaction ~ Days + (1 | Subject)", SLEEP, a=1.0,
                                     support_size=1)
    ax = plot_path(m).axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["Days", "chosen k = 1"]


def test_pickled_formula_model_does_not_carry_the_training_rows():
    """A fitted formula model keeps how to encode new data, not the data: its pickle is
    far smaller than the design, and it still predicts new frames the same after a
    round trip."""
    import pickle
    import warnings

    d = hdlmm.make_lmm_data(n_clusters=200, n_obs=10, n_features=100, random_state=0)
    df = pd.DataFrame(d.X, columns=[f"x{j}" for j in range(100)])
    df["y"], df["g"], df["t"] = d.y, d.groups, d.Z[:, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = hdlmm.SparseLMM.from_formula("y ~ . + (1 + t | g)", df, inference=None,
                                         random_state=0)
    design_bytes = df.to_numpy(dtype=float).nbytes  # 2,000 rows × 103 columns
    blob = pickle.dumps(m)
    assert m.formula_design_.X is None and m.formula_design_.y is None
    # what it keeps: the statistics (p × p per fold, q × p per cluster: 0.76 MB here)
    # and three N-vectors (fitted values and residuals), not the N × p design
    assert len(blob) < 0.6 * design_bytes
    assert len(blob) - len(pickle.dumps(m.stats_)) < 0.1 * design_bytes
    np.testing.assert_array_equal(pickle.loads(blob).predict_frame(df.head(50)),
                                  m.predict_frame(df.head(50)))


def _offset_frame(seed=0):
    rng = np.random.default_rng(seed)
    n = 240
    df = pd.DataFrame({"g": np.repeat(np.arange(24), 10), "x": rng.normal(size=n),
                       "z": rng.normal(size=n), "t": rng.uniform(1, 3, n)})
    df["y"] = (df.x + np.log(df.t) + np.repeat(rng.normal(size=24), 10)
               + rng.normal(size=n))
    return df


def test_an_offset_is_subtracted_and_added_back():
    df = _offset_frame()
    m = hdlmm.SparseLMM.from_formula("y ~ x + z + offset(np.log(t)) + (1 | g)", df,
                                     random_state=0)
    ref = hdlmm.SparseLMM.from_formula("y0 ~ x + z + (1 | g)",
                                       df.assign(y0=df.y - np.log(df.t)), random_state=0)
    assert list(m.feature_names_in_) == ["x", "z"]  # the offset is not a candidate
    np.testing.assert_allclose(m.coef_, ref.coef_, rtol=1e-12)
    np.testing.assert_allclose(m.fitted(), ref.fitted() + np.log(df.t), rtol=1e-12)
    np.testing.assert_allclose(m.residuals(), ref.residuals(), rtol=1e-9, atol=1e-12)
    new = df.head(20).assign(t=5.0)
    np.testing.assert_allclose(m.predict_frame(new),
                               ref.predict_frame(new) + np.log(5.0), rtol=1e-12)


@pytest.mark.parametrize("formula, message", [
    ("y ~ .^2 + (1 | g)", r"'\.\^2' \(every pairwise interaction"),
    ("ytext ~ x + (1 | g)", r"response 'ytext' is not numeric \(values such as"),
    ("cbind(y, x) ~ z + (1 | g)", "is for a binomial model: fit it with hdlmm.SparseGLMM"),
    ("y ~ x + s(z) + (1 | g)", r"cannot evaluate the term 's\(z\)' of the formula"),
    ("y ~ x | g", "random-effect terms go in parentheses"),
    ("y ~ x + offset() + (1 | g)", r"offset\(\.\.\.\) .* needs terms"),
    ("y ~ x + offset(np.log(z)) + (1 | g)", r"offset\(np.log\(z\)\) is not finite"),
])
def test_unsupported_formula_constructs_get_a_clear_message(formula, message):
    df = _offset_frame().assign(ytext=lambda d: np.where(d.x > 0, "yes", "no"))
    with pytest.raises(ValueError, match=message):
        hdlmm.SparseLMM.from_formula(formula, df)


def test_an_unknown_weights_column_is_named():
    with pytest.raises(ValueError, match="weights column 'nope' is not in data"):
        hdlmm.SparseLMM.from_formula("y ~ x + (1 | g)", _offset_frame(), weights="nope")
