"""Coverage of hdlmm's debiased confidence intervals, against an oracle.

For each replicate: fit ``SparseLMM()`` (a and k chosen from the data), take
the 95% intervals of every coordinate, and record, separately for the true nonzeros and
the nulls, for each small-sample variant of the cluster-robust variance (see
:func:`variants`): coverage, mean length relative to the oracle's, rejections of the 5%
test (type-I error for nulls, power for nonzeros). The oracle is GLS with the true Ψ and
σ² on the true support S (for a null j: on S ∪ {j}); its length is 2 · 1.96 · its exact
standard error.

Settings
    tutorial    the tutorial's data (m=8 rows per cluster, 15 clusters, p=200, q=4)
    unbalanced  40 clusters of 2..12 rows (N ≈ 280 < p = 400), random intercept and slope
                with correlated Ψ, k = 5 (large and small coefficients)

Per-replicate rows go to benchmarks/out/coverage_<setting>_from<start>.csv; ``--summary``
prints the table with Monte-Carlo standard errors (binomial over replicates × coordinates
for nonzeros; for the nulls, the SE of the per-replicate mean, which allows for the
correlation of coordinates within a replicate). ``--timing`` measures all-p inference at
p = 1000, N = 10,000.

Run:  python benchmarks/interval_coverage.py --setting tutorial --reps 500
      python benchmarks/interval_coverage.py --summary
      python benchmarks/interval_coverage.py --timing
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

import hdlmm

OUT = Path(__file__).parent / "out"
Z95 = sps.norm.ppf(0.975)


def make_setting(name, rep):
    if name == "tutorial":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return hdlmm.make_tutorial_data(m=8, n=15, p=200, q=4, seed=rep)
    if name == "unbalanced":
        return hdlmm.make_lmm_data(n_clusters=40, n_obs=(2, 12), n_features=400, n_re=2,
                                   coef=[2.0, -1.5, 1.0, 0.5, -0.5],
                                   cov_re=[[1.0, 0.3], [0.3, 0.5]], scale=1.0,
                                   random_state=rep)
    raise ValueError(f"unknown setting {name!r}")


def oracle_se(d):
    """Exact GLS standard errors with the true V: on S for j ∈ S, on S ∪ {j} for nulls."""
    X1 = np.hstack([np.ones((d.X.shape[0], 1)), d.X])
    p1 = X1.shape[1]
    G = np.zeros((p1, p1))
    for g in np.unique(d.groups):
        r = d.groups == g
        V = d.scale * np.eye(r.sum()) + d.Z[r] @ d.cov_re @ d.Z[r].T
        L = np.linalg.cholesky(V)
        W = np.linalg.solve(L, X1[r])
        G += W.T @ W
    S = np.r_[0, d.support + 1]
    GSS_inv = np.linalg.inv(G[np.ix_(S, S)])
    se = np.empty(p1 - 1)
    se[d.support] = np.sqrt(np.diag(GSS_inv)[1:])
    nulls = np.setdiff1d(np.arange(1, p1), S)
    GnS = G[np.ix_(nulls, S)]
    schur = G[nulls, nulls] - np.einsum("js,st,jt->j", GnS, GSS_inv, GnS)
    se[nulls - 1] = np.sqrt(1.0 / schur)
    return se


def variants(m, d):
    """(debiased, se, quantile) of each small-sample variant, from one fitted model.

    Centred scores (residuals of the debiased fit, the default of
    hdlmm.inference.debias.debias): CR2 with Bell-McCaffrey df (cr2bm, the default), with
    t(n − 1) (cr2t) or normal (cr2z) quantiles; CR1 = CR0 · √(n/(n−1)) with t(n − 1);
    CR0 with normal quantiles. Uncentred (residuals of the selected fit): CR2 with
    t(n − 1) (u_cr2t, the default of the previous release)."""
    from hdlmm.core.row_pass import row_scores
    from hdlmm.inference.debias import debias

    cols = np.arange(d.X.shape[1])
    n = m.stats_.n_clusters
    tq = sps.t.ppf(0.975, n - 1)
    coef = np.r_[m.intercept_, m.coef_]
    idx = m.stats_.cluster_index(np.asarray(d.groups, dtype=object))
    rows = row_scores(d.X, d.y, idx, n, coef, True)
    tr = hdlmm.ProxyTransform(m.stats_)

    def run(small_sample, center=True):
        return debias(tr, m.a_, coef, cols, rows, small_sample=small_sample, center=center)

    cr2, cr0, u = run("cr2bm"), run("none"), run("cr2t", center=False)
    return {"cr2bm": (cr2.debiased, cr2.se, sps.t.ppf(0.975, cr2.df)),
            "cr2t": (cr2.debiased, cr2.se, tq), "cr2z": (cr2.debiased, cr2.se, Z95),
            "cr1t": (cr0.debiased, cr0.se * np.sqrt(n / (n - 1)), tq),
            "cr0z": (cr0.debiased, cr0.se, Z95), "u_cr2t": (u.debiased, u.se, tq)}


def one_rep(setting, rep):
    d = make_setting(setting, rep)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = hdlmm.SparseLMM(inference=None, random_state=rep).fit(
            d.X, d.y, groups=d.groups, Z=d.Z)
    secs = time.perf_counter() - t0
    var = variants(m, d)
    ose = oracle_se(d)
    nz = np.zeros(d.beta.size, dtype=bool)
    nz[d.support] = True
    rows = []
    for kind, mask in (("nonzero", nz), ("zero", ~nz)):
        row = dict(setting=setting, rep=rep, kind=kind, count=int(mask.sum()),
                   oracle_length=(2 * Z95 * ose[mask]).mean(),
                   exact_support=set(m.support_) == set(d.support), seconds=secs)
        for name, (est, se, q) in var.items():
            q = np.broadcast_to(q, se.shape)
            row[f"cover_{name}"] = (np.abs(est - d.beta) <= q * se)[mask].mean()
            row[f"length_{name}"] = (2 * q * se)[mask].mean()
            row[f"reject_{name}"] = (np.abs(est / se) > q)[mask].mean()
        rows.append(row)
    return rows


def run(setting, reps, start=0):
    OUT.mkdir(exist_ok=True)
    path = OUT / f"coverage_{setting}_from{start}.csv"
    rows = []
    for rep in range(start, start + reps):
        rows += one_rep(setting, rep)
        if (rep - start) % 10 == 9 or rep == start + reps - 1:
            pd.DataFrame(rows).to_csv(path, index=False)
            print(f"{setting} rep {rep} done", flush=True)


def summary(files=None):
    files = files or sorted(OUT.glob("coverage_*.csv"))
    df = pd.concat([pd.read_csv(f) for f in files]).drop_duplicates(
        ["setting", "rep", "kind"])
    out = []
    for (setting, kind), g in df.groupby(["setting", "kind"], sort=False):
        R = len(g)
        trials = g["count"].sum()
        row = {"setting": setting, "kind": kind, "reps": R}
        for col in [c for c in g.columns if c.startswith(("cover_", "reject_"))]:
            mean = np.average(g[col], weights=g["count"])
            if kind == "nonzero":  # binomial over reps × coordinates
                se = np.sqrt(mean * (1 - mean) / trials)
            else:  # per-replicate means: allows for within-replicate correlation
                se = g[col].std() / np.sqrt(R)
            row[col.replace("_", " ")] = f"{100 * mean:.1f} ± {100 * se:.2f}"
        for col in [c for c in g.columns if c.startswith("length_")]:
            row[col.replace("length_", "len/oracle ")] = (g[col].mean()
                                                          / g["oracle_length"].mean())
        row["exact support %"] = 100 * g["exact_support"].mean()
        row["median s"] = g["seconds"].median()
        out.append(row)
    tab = pd.DataFrame(out).set_index(["setting", "kind"])
    with pd.option_context("display.width", 200):
        print(tab.round(3).to_string())
    return tab


def timing(n_clusters=1000, m=10, p=1000, reps=3):
    """Seconds for all-p intervals at N = n_clusters · m rows, given the selected fit."""
    d = hdlmm.make_lmm_data(n_clusters=n_clusters, n_obs=m, n_features=p, n_re=2,
                            coef=[1.0, -1.0, 0.5], random_state=0)
    base = dict(support_size=3, a=1.0, vc_method=None)
    for _ in range(reps):
        t0 = time.perf_counter()
        hdlmm.SparseLMM(inference=None, **base).fit(d.X, d.y, groups=d.groups, Z=d.Z)
        t1 = time.perf_counter()
        hdlmm.SparseLMM(inference="all", **base).fit(d.X, d.y, groups=d.groups, Z=d.Z)
        t2 = time.perf_counter()
        print(f"N = {d.X.shape[0]}, p = {p}: fit without inference {t1 - t0:.2f} s, "
              f"with all-p inference {t2 - t1:.2f} s (inference {t2 - t1 - (t1 - t0):.2f} s)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setting", choices=["tutorial", "unbalanced"])
    ap.add_argument("--reps", type=int, default=500)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--summary", action="store_true")
    ap.add_argument("--timing", action="store_true")
    args = ap.parse_args()
    if args.summary:
        summary()
    elif args.timing:
        timing()
    elif args.setting:
        run(args.setting, args.reps, args.start)
    else:
        ap.error("pass --setting, --summary or --timing")


if __name__ == "__main__":
    main()
