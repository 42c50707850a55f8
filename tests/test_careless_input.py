"""Careless input never changes the model silently: each case is refused with a message
that names the problem and the fix, warned about, or handled (docs/bad_inputs.md)."""

import warnings

import numpy as np
import pandas as pd
import pytest

import hdlmm
from hdlmm import SparseLMM


@pytest.fixture
def frame():
    d = hdlmm.make_lmm_data(n_clusters=10, n_obs=6, n_features=5, n_re=1, random_state=0)
    return pd.DataFrame(d.X, columns=[f"x{j}" for j in range(5)]).assign(y=d.y, g=d.groups)


def _formula_fit(data, formula="y ~ . + (1 | g)", **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return SparseLMM.from_formula(formula, data, random_state=0, inference=None, **kw)


def test_a_stray_cell_in_a_numeric_column_is_refused_with_the_column_and_values(frame):
    bad = frame.assign(x0=frame.x0.astype(object).where(frame.index != 3, "?"))
    with pytest.raises(ValueError, match=r"column 'x0' is numeric but 1 of its 60 cells "
                                         r"are not numbers \(first: \['\?'\]\)"):
        _formula_fit(bad)
    with pytest.raises(ValueError, match="column 'x0' is numeric"):  # named, not only '.'
        _formula_fit(bad, "y ~ x0 + x1 + (1 | g)")


def test_an_identifier_column_is_refused_unless_declared_categorical(frame):
    ids = frame.assign(visit=[f"v{i}" for i in range(len(frame))])
    with pytest.raises(ValueError, match=r"column 'visit' is text with 60 distinct values "
                                         r"in 60 rows \(an identifier"):
        _formula_fit(ids)
    wide = _formula_fit(ids.assign(visit=ids.visit.astype("category")), support_size=2)
    assert wide.n_features_in_ == 5 + 59


def test_a_constant_text_column_is_named_when_it_drops_out(frame):
    with pytest.warns(UserWarning, match=r"column 'site' has one value \('A'\)"):
        m = _formula_fit(frame.assign(site="A"))
    assert "site" not in m.params_.index


def test_dates_are_refused_with_advice(frame):
    with pytest.raises(ValueError, match="column 'when' holds dates/times; convert it"):
        _formula_fit(frame.assign(when=pd.date_range("2020-01-01", periods=len(frame))))


def test_column_types_are_reported(frame):
    m = _formula_fit(frame.assign(arm=np.where(frame.index % 2, "a", "b")))
    assert m.column_types_["y"] == "response"
    assert m.column_types_["g"] == "grouping (labels)"
    assert m.column_types_["x0"] == "numeric"
    assert m.column_types_["arm"] == "categorical (2 levels)"


def test_integer_column_names_work_in_formulas(frame):
    m = _formula_fit(frame.rename(columns={"x0": 0}))
    assert "0" in m.params_.index


def test_missing_drop_that_drops_every_row_says_so(frame):
    with pytest.raises(ValueError, match=r"every one of the 60 rows has a missing value "
                                         r"in the formula's columns \(x0: 60\)"):
        _formula_fit(frame.assign(x0=np.nan), "y ~ x0 + (1 | g)", missing="drop")


def test_constant_response_is_named():
    d = hdlmm.make_lmm_data(n_clusters=6, n_obs=4, n_features=3, random_state=0)
    with pytest.raises(ValueError, match=r"y is constant \(2 in every row\)"):
        SparseLMM().fit(d.X, np.full(len(d.y), 2.0), groups=d.groups)


def test_empty_a_grid_is_named():
    d = hdlmm.make_lmm_data(n_clusters=6, n_obs=4, n_features=3, random_state=0)
    with pytest.raises(ValueError, match="a_grid is empty"):
        SparseLMM(a_grid=[]).fit(d.X, d.y, groups=d.groups)


def test_tuple_cluster_labels_are_one_label_each():
    d = hdlmm.make_lmm_data(n_clusters=8, n_obs=5, n_features=4, random_state=1)
    ref = SparseLMM(random_state=0, inference=None).fit(d.X, d.y, groups=d.groups)
    tup = [("site", int(g)) for g in d.groups]
    m = SparseLMM(random_state=0, inference=None).fit(d.X, d.y, groups=tup)
    assert m.random_effects_.shape[0] == 8
    np.testing.assert_allclose(m.coef_, ref.coef_)


def test_predicting_for_clusters_not_seen_says_how_many_and_why():
    d = hdlmm.make_lmm_data(n_clusters=8, n_obs=5, n_features=4, random_state=2)
    m = SparseLMM(random_state=0, inference=None).fit(d.X, d.y, groups=d.groups)
    with pytest.warns(UserWarning, match=r"none of the 40 rows' clusters was seen in fit.*"
                                         r"differ in type"):
        marginal = m.predict(d.X, groups=d.groups.astype(str))
    np.testing.assert_allclose(marginal, m.predict(d.X))
    groups = d.groups.copy()
    groups[:5] = 99
    with pytest.warns(UserWarning, match="5 of 40 rows belong to clusters not seen"):
        m.predict(d.X, groups=groups)


def test_predict_frame_without_the_grouping_column(frame):
    m = _formula_fit(frame, "y ~ x0 + x1 + (1 | g)")
    with pytest.raises(ValueError, match="data has no grouping column 'g'.*"
                                         "random_effects=False"):
        m.predict_frame(frame.drop(columns="g"))
    np.testing.assert_allclose(m.predict_frame(frame.drop(columns="g"), random_effects=False),
                               m.predict_frame(frame, random_effects=False))


def test_fit_dask_given_a_pandas_frame(frame):
    pytest.importorskip("dask.dataframe")
    with pytest.raises(TypeError, match="fit_dask needs a Dask DataFrame; got "
                                        "pandas.*from_pandas"):
        SparseLMM().fit_dask(frame, y="y", groups="g")


def test_fit_source_checks_chunk_rows_before_reading(tmp_path, frame):
    frame.to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(ValueError, match="chunk_rows must be a positive integer"):
        SparseLMM().fit_source(tmp_path / "d.csv", y="y", groups="g", chunk_rows=-5)


def test_nullable_missing_values_in_x_are_named_as_missing(frame):
    X = frame[[f"x{j}" for j in range(5)]].astype("Float64")
    X.iloc[0, 0] = pd.NA
    with pytest.raises(ValueError, match=r"X contains NaN values in 1 row\(s\)"):
        SparseLMM().fit(X, frame.y, groups=frame.g)


def test_nested_values_are_refused(frame):
    nested = frame.assign(s=[{"a": 1}] * len(frame))
    with pytest.raises(ValueError, match="column 's' holds nested values"):
        _formula_fit(nested)


@pytest.fixture
def csv_files(tmp_path, frame):
    import csv

    pytest.importorskip("pyarrow")
    bad = frame.assign(x0=frame.x0.astype(object).where(frame.index != 3, "?"))
    bad.to_csv(tmp_path / "q.csv", index=False)
    frame.to_csv(tmp_path / "bom.csv", index=False, encoding="utf-8-sig")
    frame.to_csv(tmp_path / "quoted.csv", index=False, quoting=csv.QUOTE_NONNUMERIC)
    frame.to_csv(tmp_path / "plain.csv", index=False)
    labels = frame.assign(g=np.where(frame.g == 1, "007", frame.g.astype(str)))
    labels.loc[labels.g == "2", "g"] = "7.0"  # '7', '007' and '7.0': three clusters
    labels.to_csv(tmp_path / "labels.csv", index=False)
    return tmp_path


def test_fit_source_names_a_stray_cell(csv_files):
    with pytest.raises(ValueError, match=r"column 'x0' of .*q.csv is numeric but has a "
                                         r"cell '\?' that is not a number"):
        SparseLMM(inference=None).fit_source(csv_files / "q.csv", y="y", groups="g")


def test_fit_source_reads_what_the_cli_reads(csv_files):
    ref = SparseLMM(random_state=0, inference=None).fit_source(csv_files / "plain.csv",
                                                                y="y", groups="g")
    for name in ("bom.csv", "quoted.csv"):
        m = SparseLMM(random_state=0, inference=None).fit_source(csv_files / name, y="y",
                                                                 groups="g")
        np.testing.assert_allclose(m.coef_, ref.coef_)
    m = SparseLMM(random_state=0, inference=None).fit_source(csv_files / "labels.csv",
                                                             y="y", groups="g")
    assert m.stats_.n_clusters == 10  # grouping labels read as text, none merged


def test_fit_source_on_parquet_files_of_different_columns(tmp_path, frame):
    pytest.importorskip("pyarrow")
    (tmp_path / "parts").mkdir()
    frame.iloc[:30].to_parquet(tmp_path / "parts" / "a.parquet")
    frame.iloc[30:].drop(columns="x4").to_parquet(tmp_path / "parts" / "b.parquet")
    with pytest.raises(ValueError, match=r"the Parquet files of .* have different columns: "
                                         r"a.parquet has .* b.parquet has"):
        SparseLMM(inference=None).fit_source(tmp_path / "parts", y="y", groups="g")

