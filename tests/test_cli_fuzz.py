"""Property test of the command line on malformed files: every run exits 0 with the model
the clean file gives, or exits 2 with one line and no traceback."""

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest

import hdlmm
from hdlmm.api.cli import main

hyp = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FORMULA = "y ~ . + (1 | g)"
OPTIONS = ["--a", "1", "--support-size", "2", "--inference", "none", "--no-plots"]

#: corruption -> whether the file still holds the clean data (exit 0 with the same model)
CORRUPTIONS = {
    "stray text cell": False, "empty cell": False, "fewer fields in a row": False,
    "more fields in a row": False, "identifier column": False, "duplicated header": False,
    "date column": False, "decimal comma cell": False,
    "byte-order mark": True, "quoted fields": True, "saved index": True,
    "constant text column": True, "crlf line ends": True, "shuffled columns": True,
}


def _clean(seed):
    d = hdlmm.make_lmm_data(n_clusters=12, n_obs=5, n_features=6, support_size=2,
                            random_state=seed)
    df = pd.DataFrame(d.X, columns=[f"x{j}" for j in range(6)]).assign(y=d.y)
    return df.assign(g=[f"s{g}" for g in d.groups])


def _corrupt(df, kind, rng):
    """CSV text of ``df`` with one corruption."""
    df = df.copy()
    row, col = int(rng.integers(len(df))), f"x{int(rng.integers(6))}"
    kw = dict(index=False)
    if kind == "stray text cell":
        df[col] = df[col].astype(object)
        df.loc[row, col] = rng.choice(["?", "n/a?", "--", "1.2.3", "x"])
    elif kind == "empty cell":
        df.loc[row, col] = np.nan
    elif kind == "identifier column":
        df["id"] = [f"r{i}" for i in range(len(df))]
    elif kind == "date column":
        df["when"] = pd.date_range("2021-01-01", periods=len(df)).astype(str)
    elif kind == "decimal comma cell":
        df[col] = df[col].astype(object)
        df.loc[row, col] = f"{df.loc[row, col]:.3f}".replace(".", ",")
    elif kind == "saved index":
        kw = {}
    elif kind == "constant text column":
        df["site"] = "A"
    elif kind == "shuffled columns":
        df = df[list(rng.permutation(df.columns))]
    elif kind == "quoted fields":
        kw["quoting"] = 2  # csv.QUOTE_NONNUMERIC
    text = df.to_csv(**kw)
    lines = text.splitlines()
    if kind == "fewer fields in a row":
        lines[1 + row] = ",".join(lines[1 + row].split(",")[:-2])
    elif kind == "more fields in a row":
        lines[1 + row] += ",3.5"
    elif kind == "duplicated header":
        names = lines[0].split(",")
        names[1] = names[0]
        lines[0] = ",".join(names)
    sep = "\r\n" if kind == "crlf line ends" else "\n"
    text = sep.join(lines) + sep
    return ("\ufeff" + text) if kind == "byte-order mark" else text


def _run(path, out):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["fit", str(path), "--formula", FORMULA, "--out", str(out), *OPTIONS])
    return code, err.getvalue()


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """The clean file's results for each seed used below."""
    base = tmp_path_factory.mktemp("clean")
    out = {}
    for seed in range(4):
        _clean(seed).to_csv(base / f"{seed}.csv", index=False)
        code, err = _run(base / f"{seed}.csv", base / f"r{seed}")
        assert code == 0, err
        out[seed] = json.loads((base / f"r{seed}" / "results.json").read_text())
    return out


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 3), kind=st.sampled_from(sorted(CORRUPTIONS)),
       draw=st.integers(0, 2**31 - 1))
def test_malformed_csv_exits_2_with_one_line_or_fits_the_clean_model(
        references, tmp_path_factory, seed, kind, draw):
    base = tmp_path_factory.mktemp("fuzz")
    path = base / "d.csv"
    path.write_bytes(_corrupt(_clean(seed), kind, np.random.default_rng(draw))
                     .encode("utf-8"))
    code, err = _run(path, base / "r")
    errors = [ln for ln in err.splitlines() if not ln.startswith("hdlmm: warning:")]
    assert "Traceback" not in err
    if CORRUPTIONS[kind]:
        assert code == 0, (kind, err)
        res = json.loads((base / "r" / "results.json").read_text())
        ref = references[seed]
        assert sorted(res["support"]) == sorted(ref["support"]), kind
        for name, value in ref["estimates"].items():
            assert res["estimates"][name] == pytest.approx(value, rel=1e-9), kind
    else:
        assert code == 2, (kind, err)
        assert len(errors) == 1 and errors[0].startswith("hdlmm: error:"), (kind, err)
        assert not (base / "r").exists()


@pytest.mark.parametrize("kind", ["text cell", "nested column", "truncated file"])
def test_malformed_parquet_exits_2_with_one_line(tmp_path, kind):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    df = _clean(0)
    path = tmp_path / "d.parquet"
    if kind == "text cell":
        df["x1"] = df.x1.map(str)  # a text column of numbers, one of them '?'
        df.loc[4, "x1"] = "?"
        df.to_parquet(path)
    elif kind == "nested column":
        table = pa.Table.from_pandas(df).append_column("s", pa.array([[1, 2]] * len(df)))
        pq.write_table(table, path)
    else:
        df.to_parquet(path)
        path.write_bytes(path.read_bytes()[:200])
    code, err = _run(path, tmp_path / "r")
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
