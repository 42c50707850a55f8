"""The examples/ scripts run end to end and reach their stated results."""

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parents[1] / "examples"


def test_tutorial_walkthrough_runs(tmp_path):
    out = subprocess.run([sys.executable, str(EXAMPLES / "tutorial_walkthrough.py"),
                          str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "selected: [1, 5, 10]" in out.stdout
    assert "formula interface selects: ['(Intercept)', 'x1', 'x5', 'x10']" in out.stdout
    err = float(out.stdout.split("l2 error ")[1].split()[0])
    assert err < 0.105
    assert (tmp_path / "fixed_effects.png").exists()
