"""Speed of SparseGLMM against lme4::glmer on the true support, on the same data.

Binary outcomes: ``--clusters`` clusters of 5-15 rows, p = ``--p`` candidates, k = 5,
a random intercept and slope (as benchmarks/glmm_accuracy.py). Timed: hdlmm's whole
default pipeline (PQL selection with a and k chosen, then the Laplace fit) in this
process; glmer (nAGQ = 1, default control) on the true support only, by Rscript on the
same rows written to a temporary CSV (its time measured inside R, reading excluded).
Also timed: SparseLMM's default fit on a Gaussian response of the same design (the
issue's second target compares the GLMM pipeline with the Gaussian one).

Run:  python benchmarks/glmm_speed.py --clusters 10000 --p 200
      python benchmarks/glmm_speed.py --clusters 100000 --p 500 --no-glmer   (N ≈ 10⁶)
(needs R with lme4 for the glmer column: Debian's r-cran-lme4)
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from glmm_accuracy import simulate

from hdlmm import SparseGLMM, SparseLMM

R_SCRIPT = """
suppressPackageStartupMessages(library(lme4))
d <- read.csv("{csv}")
t <- system.time(fit <- glmer({formula}, d, family = binomial, nAGQ = 1))["elapsed"]
cat(t, "\\n")
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=10_000)
    parser.add_argument("--p", type=int, default=200)
    parser.add_argument("--no-glmer", action="store_true", help="skip glmer (large N)")
    args = parser.parse_args()
    X, y, g, Z, beta, S, eta = simulate(0, "binary", args.clusters, args.p, largest=15)
    print(f"N = {len(y)}, {args.clusters} clusters, p = {args.p}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        m = SparseGLMM("binomial", random_state=0).fit(X, y, g, Z)
        t_hdlmm = time.perf_counter() - t0
        y_gauss = eta + np.random.default_rng(1).normal(size=len(y))
        t0 = time.perf_counter()
        SparseLMM(random_state=0).fit(X, y_gauss, g, Z)
        t_gauss = time.perf_counter() - t0
    print(f"hdlmm SparseGLMM (whole pipeline): {t_hdlmm:.1f} s, support "
          f"{'exact' if set(m.support_) == set(S) else m.support_.tolist()}, "
          f"{m.n_iter_} PQL iterations")
    print(f"hdlmm SparseLMM (Gaussian, same design): {t_gauss:.1f} s; GLMM / Gaussian = "
          f"{t_hdlmm / t_gauss:.1f}")
    if args.no_glmer:
        return
    if shutil.which("Rscript") is None:
        print("glmer: Rscript not found")
        return
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "d.csv"
        cols = {f"x{j}": X[:, j] for j in S}
        pd.DataFrame({"y": y, "g": g, "t": Z[:, 1], **cols}).to_csv(csv, index=False)
        formula = f"y ~ {' + '.join(cols)} + (1 + t | g)"
        script = Path(tmp) / "fit.R"
        script.write_text(R_SCRIPT.format(csv=csv, formula=formula))
        out = subprocess.run(["Rscript", str(script)], capture_output=True, text=True)
        t_glmer = float(out.stdout.split()[-1])
    print(f"glmer on the true support: {t_glmer:.1f} s; hdlmm / glmer = "
          f"{t_hdlmm / t_glmer:.2f}")


if __name__ == "__main__":
    main()
