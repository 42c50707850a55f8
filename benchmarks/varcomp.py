"""Variance components: hdlmm against statsmodels MixedLM, same data, one process.

Low-dimensional model (p = 5 fixed effects + intercept, random intercept and slope,
unbalanced clusters of 2..10 rows), REML. Prints both fits, their criteria, the largest
relative parameter difference and the wall-time ratio, for n clusters in --sizes.

Run:  python benchmarks/varcomp.py --sizes 1000 10000
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import hdlmm
from hdlmm import ClusterStats
from hdlmm.model.varcomp import fit_variance_components


def one(n_clusters, seed=0):
    from statsmodels.regression.mixed_linear_model import MixedLM

    d = hdlmm.make_lmm_data(n_clusters=n_clusters, n_obs=(2, 10), n_features=5, n_re=2,
                            support_size=3, cov_re=[[1.0, 0.3], [0.3, 0.5]], scale=0.5,
                            random_state=seed)
    t0 = time.perf_counter()
    # raw (unstandardised) sums: the fixed effects in the units statsmodels reports
    stats = ClusterStats.from_arrays(d.X, d.y, d.groups, d.Z, standardize=False)
    vc = fit_variance_components(stats, "REML")
    t_ours = time.perf_counter() - t0
    X1 = np.column_stack([np.ones(len(d.y)), d.X])
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = MixedLM(d.y, X1, groups=d.groups, exog_re=d.Z).fit(reml=True, method=["lbfgs"])
    t_sm = time.perf_counter() - t0
    rel = max(np.max(np.abs(vc.coef - r.fe_params) / np.abs(r.fe_params)),
              np.max(np.abs(vc.cov_re - r.cov_re) / np.abs(r.cov_re)),
              abs(vc.scale - r.scale) / r.scale)
    print(f"n = {n_clusters:>6} clusters, N = {len(d.y):>6} rows: hdlmm {t_ours:7.3f} s, "
          f"statsmodels {t_sm:8.2f} s, ratio {t_sm / t_ours:6.0f}x; REML criterion "
          f"{vc.criterion:.6f} vs {-2 * r.llf:.6f}; max relative difference {rel:.1e}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    # the compiled deviance is loaded from numba's cache on first use (or compiled):
    # once, before the timings, as hdlmm.warm_up() does
    t0 = time.perf_counter()
    hdlmm.warm_up()
    print(f"hdlmm.warm_up(): {time.perf_counter() - t0:.2f} s (not in the times below)")
    for n in ap.parse_args().sizes:
        one(n)


if __name__ == "__main__":
    main()
