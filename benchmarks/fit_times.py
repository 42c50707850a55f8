"""Wall times of hdlmm's default fit at one size of ``speed.py``, in one process.

For comparing two checkouts of hdlmm on a noisy machine: run it with each on
``PYTHONPATH``, alternating, several times, and compare the minima and medians.

Run:  PYTHONPATH=CHECKOUT python benchmarks/fit_times.py [tutorial|medium] [fits]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

import hdlmm

sys.path.insert(0, str(Path(__file__).parent))
from speed import problem, run_hdlmm  # noqa: E402


def main():
    size = sys.argv[1] if len(sys.argv) > 1 else "tutorial"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    X, y, groups, Z = problem(size)[:4]
    for _ in range(3):  # imports, compiled kernels, caches
        run_hdlmm(X, y, groups, Z)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        run_hdlmm(X, y, groups, Z)
        times.append(time.perf_counter() - t)
    print(f"{Path(hdlmm.__file__).parent.parent} {size}: {n} fits, "
          f"min {min(times) * 1e3:.2f} ms, median {np.median(times) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
