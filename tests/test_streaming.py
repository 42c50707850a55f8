"""Out-of-core and Dask fits against the in-memory fit of the same data.

The rows are shuffled so that every cluster is spread over several chunks/partitions;
the statistics, the choice of (a, k), the coefficients and the debiased standard errors
must agree to rounding (1e-10).
"""

import numpy as np
import pandas as pd
import pytest

import hdlmm
from hdlmm.sources.streaming import TableSpec, stream_stats

pytest.importorskip("pyarrow")

P = 30
XCOLS = [f"x{j}" for j in range(P)]


@pytest.fixture(scope="module")
def frame():
    d = hdlmm.make_lmm_data(n_clusters=40, n_obs=(2, 12), n_features=P, n_re=2,
                            support_size=3, random_state=3)
    df = pd.DataFrame(d.X, columns=XCOLS)
    df["y"], df["t"], df["g"] = d.y, d.Z[:, 1], [f"c{g}" for g in d.groups]
    return df.sample(frac=1, random_state=0).reset_index(drop=True)


@pytest.fixture(scope="module")
def in_memory(frame):
    Z = np.c_[np.ones(len(frame)), frame.t]
    return hdlmm.SparseLMM(random_state=0, inference="all").fit(
        frame[XCOLS], frame.y.to_numpy(), groups=frame.g.to_numpy(), Z=Z)


def _same_fit(m0, m1):
    assert m1.a_ == m0.a_ and m1.support_size_ == m0.support_size_
    np.testing.assert_array_equal(m1.support_, m0.support_)
    np.testing.assert_allclose(m1.coef_, m0.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(m1.inference_.se, m0.inference_.se, rtol=1e-10)
    np.testing.assert_allclose(m1.inference_.debiased, m0.inference_.debiased,
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(m1.cv_results_.filter(like="mean").to_numpy(),
                               m0.cv_results_.filter(like="mean").to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(m1.cov_re_, m0.cov_re_, rtol=1e-5)
    assert list(m1.params_.index) == list(m0.params_.index)


@pytest.mark.parametrize("kind", ["parquet", "csv", "folder"])
def test_streamed_fit_equals_the_in_memory_fit(tmp_path, frame, in_memory, kind):
    if kind == "parquet":
        src = tmp_path / "d.parquet"
        frame.to_parquet(src, row_group_size=41)
    elif kind == "csv":
        src = tmp_path / "d.csv"
        frame.to_csv(src, index=False)
    else:
        src = tmp_path / "parts"
        src.mkdir()
        for i, start in enumerate(range(0, len(frame), 100)):
            frame.iloc[start:start + 100].to_parquet(src / f"part{i}.parquet")
    m = hdlmm.SparseLMM(random_state=0, inference="all").fit_source(
        src, y="y", groups="g", X=XCOLS, Z=["1", "t"], chunk_rows=37, progress=False)
    _same_fit(in_memory, m)
    assert list(m.feature_names_in_) == XCOLS


@pytest.mark.parametrize("row_group_bytes", [None, 0])
def test_streamed_statistics_equal_the_in_memory_ones(tmp_path, frame, monkeypatch,
                                                       row_group_bytes):
    """Row groups decoded 25 columns at a time (33 columns here), or, when a row group
    is too large for that (forced by row_group_bytes=0), in batches."""
    if row_group_bytes is not None:
        monkeypatch.setattr(hdlmm.sources.streaming, "PARQUET_ROW_GROUP_BYTES", row_group_bytes)
    src = tmp_path / "d.parquet"
    frame.to_parquet(src, row_group_size=50)
    spec = TableSpec("y", "g", XCOLS, ["1", "t"])
    s1 = stream_stats(src, spec, n_blocks=5, random_state=7, chunk_rows=23)
    Z = np.c_[np.ones(len(frame)), frame.t]
    s0 = hdlmm.ClusterStats.from_arrays(frame[XCOLS], frame.y, frame.g, Z, n_blocks=5,
                                        random_state=7, feature_names=XCOLS)
    np.testing.assert_array_equal(s1.labels, s0.labels)
    np.testing.assert_array_equal(s1.block, s0.block)
    for key in ("n_obs", "ZtZ", "ZtX", "Zty", "XtX", "Xty", "yty", "n_rows"):
        np.testing.assert_allclose(getattr(s1, key), getattr(s0, key), rtol=1e-12,
                                   atol=1e-9, err_msg=key)


def test_csv_integers_then_decimals_parse_as_floats(tmp_path, frame):
    df = frame.copy()
    df["x0"] = np.r_[np.arange(len(df) - 1), 0.5]  # integers until the last row
    src = tmp_path / "d.csv"
    df.to_csv(src, index=False)
    stats = stream_stats(src, TableSpec("y", "g", ["x0"]), chunk_rows=10)
    assert stats.n_samples == len(df)
    raw = stats.restandardize(np.zeros(2), np.ones(2), y_shift=0.0)  # the raw sums
    np.testing.assert_allclose(raw.Xty.sum(0)[1], df.x0 @ df.y)


def test_streaming_errors_name_the_column_and_the_row(tmp_path, frame):
    src = tmp_path / "d.parquet"
    bad = frame.copy()
    bad.loc[57, "x3"] = np.nan
    bad.to_parquet(src)
    fit = hdlmm.SparseLMM(support_size=2, a=1.0, inference=None)
    with pytest.raises(ValueError, match=r"column 'x3' .* missing or infinite value at "
                                         r"row 57"):
        fit.fit_source(src, y="y", groups="g", chunk_rows=20)
    with pytest.raises(ValueError, match="column 'nope' is not in"):
        fit.fit_source(src, y="nope", groups="g")
    text = frame.assign(x1="a")
    text.to_parquet(src)
    with pytest.raises(ValueError, match="column 'x1' .* is not numeric"):
        fit.fit_source(src, y="y", groups="g")
    frame.assign(g="one").to_parquet(src)
    with pytest.raises(ValueError, match="1 cluster"):
        fit.fit_source(src, y="y", groups="g")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fit.fit_source(tmp_path / "missing.parquet", y="y", groups="g")
    with pytest.raises(ValueError, match="use .parquet, .csv or .tsv"):
        (tmp_path / "d.xlsx").write_text("x")
        fit.fit_source(tmp_path / "d.xlsx", y="y", groups="g")


def test_fit_stats_checks_the_folds(frame):
    stats = hdlmm.ClusterStats.from_arrays(frame[XCOLS], frame.y, frame.g)
    with pytest.raises(ValueError, match="1 fold.* build them with n_blocks=5"):
        hdlmm.SparseLMM().fit_stats(stats)
    with pytest.warns(UserWarning, match="inference needs a second pass"):
        m = hdlmm.SparseLMM(support_size=3, a=1.0).fit_stats(stats)
    assert m.inference_ is None and m.support_.size == 3
