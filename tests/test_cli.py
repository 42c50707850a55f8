import subprocess
import sys

import pandas as pd
import pytest

import hdlmm


def test_demo_end_to_end(tmp_path):
    out = subprocess.run([sys.executable, "-m", "hdlmm.api.cli", "demo", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "selected support (k = 3): [1, 5, 10]" in text
    assert "true support recovered: True" in text
    assert "statsmodels MixedLM" in text and "proxy parameter a =" in text
    assert (tmp_path / "fixed_effects.png").stat().st_size > 10_000
    hd = [ln for ln in text.splitlines() if ln.strip().startswith("hdlmm SparseLMM")][0]
    assert float(hd.split()[2]) < 0.105


def test_cli_error_is_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "hdlmm.api.cli", "demo", "--support-size", "-1",
                          "--out", str(tmp_path)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("hdlmm: error: support_size must be at least 0")
    assert "Traceback" not in out.stderr


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "hdlmm.api.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=cwd)


def test_simulate_then_fit_end_to_end(tmp_path):
    import json

    pytest.importorskip("pyarrow")
    data = tmp_path / "d.parquet"
    out = run_cli("simulate", "--out", data, "--n-clusters", 30, "--n-obs", "3,9",
                  "--n-features", 60, "--seed", 4)
    assert out.returncode == 0, out.stderr
    truth = json.loads((tmp_path / "d_truth.json").read_text())
    res = tmp_path / "res"
    out = run_cli("fit", data, "--formula", truth["formula"], "--out", res, "--level",
                  "0.9", "--p-adjust", "bh")
    assert out.returncode == 0, out.stderr
    assert "Debiased inference" in out.stdout and "90% intervals" in out.stdout
    results = json.loads((res / "results.json").read_text())
    assert set(results["support"]) == set(truth["support"])
    assert results["inference"]["level"] == 0.9
    assert results["command_line"][:2] == ["hdlmm", "fit"]
    assert {"hdlmm", "numpy", "scikit-learn"} <= set(results["versions"])
    assert len(results["cv_results"]["a"]) > 0
    coefs = pd.read_csv(res / "coefficients.csv")
    assert len(coefs) == 1 + 60 + 1  # intercept, x0..x59, z1
    assert coefs.loc[coefs.selected, "feature"].tolist()[1:] == results["support"]
    assert (res / "coef_path.png").exists() and (res / "cv_curve.png").exists()


def test_fit_csv_and_bad_files(tmp_path):
    d = hdlmm.make_lmm_data(n_clusters=12, n_obs=6, n_features=5, support_size=2,
                            random_state=0)
    df = pd.DataFrame(d.X, columns=[f"x{j}" for j in range(5)]).assign(y=d.y, g=d.groups)
    df.to_csv(tmp_path / "ok.csv", index=False)
    out = run_cli("fit", tmp_path / "ok.csv", "--formula", "y ~ . + (1 | g)", "--out",
                  tmp_path / "r", "--no-plots", "--inference", "x0,x1")
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "r" / "coef_path.png").exists()
    df.to_csv(tmp_path / "semi.csv", index=False, sep=";")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 this is not parquet")
    (tmp_path / "header.csv").write_text("y,g,x0\n")
    cases = [
        (tmp_path / "semi.csv", "y ~ . + (1 | g)", "looks ';'-separated: pass --sep ';'"),
        (tmp_path / "empty.csv", "y ~ . + (1 | g)", "is empty"),
        (tmp_path / "bad.parquet", "y ~ . + (1 | g)", "cannot read Parquet file"),
        (tmp_path / "header.csv", "y ~ . + (1 | g)", "has a header but no rows"),
        (tmp_path / "nope.csv", "y ~ . + (1 | g)", "does not exist"),
        (tmp_path / "ok.json", "y ~ . + (1 | g)", "cannot tell the format"),
        (tmp_path / "ok.csv", "y ~ x9 + (1 | g)", "unknown column 'x9'"),
    ]
    for path, formula, msg in cases:
        if path.suffix == ".parquet":
            pytest.importorskip("pyarrow")
        out = run_cli("fit", path, "--formula", formula, "--out", tmp_path / "r2")
        assert out.returncode == 2, (path, out.stderr)
        assert out.stderr.startswith("hdlmm: error:") and msg in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_help_is_complete_and_usage_errors_exit_2():
    out = run_cli("--help")
    assert out.returncode == 0
    for word in ("fit", "simulate", "demo", "exit codes"):
        assert word in out.stdout
    out = run_cli("fit", "--help")
    for flag in ("--formula", "--out", "--sep", "--support-size", "--inference",
                 "--level", "--p-adjust", "--missing", "--no-plots"):
        assert flag in out.stdout
    assert run_cli("fit", "data.csv").returncode == 2  # --formula is required
    out = run_cli("simulate", "--out", "x.csv", "--n-obs", "a,b")
    assert out.returncode == 2 and "--n-obs must be a number" in out.stderr


def _frame(seed=0):
    d = hdlmm.make_lmm_data(n_clusters=12, n_obs=6, n_features=5, support_size=2,
                            random_state=seed)
    return pd.DataFrame(d.X, columns=[f"x{j}" for j in range(5)]).assign(y=d.y, g=d.groups)


def test_grouping_labels_stay_text_and_a_saved_index_is_left_out(tmp_path):
    import json

    df = _frame()
    df["g"] = [f"{g:03d}" if g % 2 else str(g) for g in df.g]  # '007' and '7' both
    df.loc[df.g == "001", "g"] = "1"  # '1' and '001' must stay two clusters
    df.loc[df.index < 3, "g"] = "001"
    df.to_csv(tmp_path / "d.csv")  # with the pandas index
    out = run_cli("fit", tmp_path / "d.csv", "--formula", "y ~ . + (1 | g)", "--out",
                  tmp_path / "r", "--no-plots", "--inference", "none")
    assert out.returncode == 0, out.stderr
    assert "looks like a saved pandas index and is left out" in out.stderr
    res = json.loads((tmp_path / "r" / "results.json").read_text())
    assert res["n_clusters"] == df.g.nunique() == 13
    assert res["column_types"]["g"] == "grouping (labels)"
    assert "Unnamed: 0" not in res["column_types"]


def test_decimal_commas_and_a_parquet_folder(tmp_path):
    import json

    df = _frame(1)
    df.to_csv(tmp_path / "d.csv", sep=";", decimal=",", index=False)
    out = run_cli("fit", tmp_path / "d.csv", "--formula", "y ~ . + (1 | g)", "--sep", ";",
                  "--decimal", ",", "--out", tmp_path / "r", "--no-plots")
    assert out.returncode == 0, out.stderr
    ref = json.loads((tmp_path / "r" / "results.json").read_text())
    pytest.importorskip("pyarrow")
    (tmp_path / "parts").mkdir()
    df.iloc[:30].to_parquet(tmp_path / "parts" / "a.parquet")
    df.iloc[30:].to_parquet(tmp_path / "parts" / "b.parquet")
    out = run_cli("fit", tmp_path / "parts", "--formula", "y ~ . + (1 | g)", "--out",
                  tmp_path / "r2", "--no-plots")
    assert out.returncode == 0, out.stderr
    res = json.loads((tmp_path / "r2" / "results.json").read_text())
    assert res["support"] == ref["support"]
    df.iloc[:30].drop(columns="x4").to_parquet(tmp_path / "parts" / "c.parquet")
    out = run_cli("fit", tmp_path / "parts", "--formula", "y ~ . + (1 | g)", "--out",
                  tmp_path / "r3")
    assert out.returncode == 2 and "have different columns" in out.stderr


def test_a_rerun_replaces_the_whole_output_folder(tmp_path):
    df = _frame(2)
    df.to_csv(tmp_path / "d.csv", index=False)
    out = run_cli("fit", tmp_path / "d.csv", "--formula", "y ~ . + (1 | g)", "--out",
                  tmp_path / "r")
    assert out.returncode == 0 and (tmp_path / "r" / "cv_curve.png").exists()
    out = run_cli("fit", tmp_path / "d.csv", "--formula", "y ~ . + (1 | g)", "--out",
                  tmp_path / "r", "--no-plots", "--a", "1")
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["coefficients.csv",
                                                                  "results.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    out = run_cli("fit", tmp_path / "d.csv", "--formula", "y ~ . + (1 | g)", "--out",
                  tmp_path / "mine")
    assert out.returncode == 2 and "holds files that are not hdlmm results" in out.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_ctrl_c_exits_130_with_one_line_and_no_partial_file(tmp_path):
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "hdlmm.api.cli", "simulate", "--out",
                             str(tmp_path / "big.csv"), "--n-clusters", "20000",
                             "--n-obs", "10", "--n-features", "400"],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    time.sleep(4)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:  # it finished before the interrupt: nothing to check
        pytest.skip("simulate finished before the interrupt")
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["hdlmm: interrupted; no output was left "
                                        "half-written"]
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("option, value, message", [
    ("--scale", "nan", "scale (the residual variance σ²) must be finite"),
    ("--scale", "-1", "scale (the residual variance σ²) must be finite and ≥ 0"),
    ("--n-obs", "0", "n_obs (rows per cluster) must be at least 1"),
    ("--n-clusters", "1", "n_clusters must be an integer ≥ 2"),
    ("--support-size", "500", "500 nonzero fixed effects do not fit"),
])
def test_simulate_validates_its_options(tmp_path, option, value, message):
    out = run_cli("simulate", "--out", tmp_path / "d.csv", option, value)
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert not list(tmp_path.iterdir())


def test_binary_file_named_csv_and_struct_parquet_column_are_one_line_errors(tmp_path):
    (tmp_path / "bin.csv").write_bytes(bytes(range(256)) * 20)
    out = run_cli("fit", tmp_path / "bin.csv", "--formula", "y ~ . + (1 | g)")
    assert out.returncode == 2 and "is it a CSV text file?" in out.stderr
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    df = _frame(3)
    table = pa.table({"y": df.y, "g": df.g, "x0": df.x0, "s": [{"a": 1}] * len(df)})
    pq.write_table(table, tmp_path / "s.parquet")
    out = run_cli("fit", tmp_path / "s.parquet", "--formula", "y ~ . + (1 | g)", "--out",
                  tmp_path / "r")
    assert out.returncode == 2 and "column 's' holds nested values" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_debug_anywhere_and_options_checked_before_reading_data(tmp_path):
    """--debug works before or after the command's name; bad options are refused before
    the data file is even opened (the file here does not exist)."""
    missing = tmp_path / "absent.csv"
    for args in (["--debug", "fit", missing, "--formula", "y ~ x + (1 | g)"],
                 ["fit", missing, "--formula", "y ~ x + (1 | g)", "--debug"]):
        out = run_cli(*args, "--out", tmp_path / "o")
        assert out.returncode != 0 and "Traceback" in out.stderr  # --debug: the traceback
    for option, value, message in (("--level", "1.5", "--level must be in (0, 1)"),
                                   ("--cv", "1", "cv must be an integer ≥ 2"),
                                   ("--support-size", "-2", "support_size must be at least 0")):
        out = run_cli("fit", missing, "--formula", "y ~ x + (1 | g)", option, value,
                      "--out", tmp_path / "o")
        assert out.returncode == 2
        assert out.stderr.strip() == f"hdlmm: error: {message}" or \
            out.stderr.strip().startswith(f"hdlmm: error: {message}")
        assert "does not exist" not in out.stderr
