import subprocess
import sys


def test_demo_end_to_end(tmp_path):
    out = subprocess.run([sys.executable, "-m", "hdlmm.cli", "demo", "--out", str(tmp_path)],
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
    out = subprocess.run([sys.executable, "-m", "hdlmm.cli", "demo", "--support-size", "0",
                          "--out", str(tmp_path)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("hdlmm: error: support_size must be at least 1")
    assert "Traceback" not in out.stderr
