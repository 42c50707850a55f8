"""Scale: hdlmm against abess, against the BLAS floor, out of core and on Dask.

Each comparison runs its contenders in one process on the same data and prints ratios.

    --abess     N = 100,000 rows (10,000 clusters of 10), p = 1,000, path k = 1..30 on the
                same transformed (whitened, a = 1) problem: abess's LinearRegression
                (C++) on X_a, y_a against hdlmm's Gram + splicing path; supports compared
                at k = 1, 5, 10, 20, 30 with abess's defaults, its most thorough
                splicing and its defaults started from hdlmm's support, each support
                checked by brute force against all supports one exchange away.
    --floor     the pipeline the issue names (a-grid × 5-fold grouped CV × k path), then
                the full default fit (that, plus REML variance components and inference
                on the support), at N = 1,000,000 rows in 100,000 clusters, p = 500,
                q = 2, each against one X.T @ X on the same array (timed before and
                after the fit); peak memory by tracemalloc (numpy reports its
                allocations to it) over the size of X. Two designs: every cluster
                measured at the same times (the whitening weights are shared, so all the
                G(a) come from one pass) and times drawn per row (one pass per a).
    --write     writes the out-of-core data set: N = 5,000,000 rows, p = 200, q = 2, in
                100,000 clusters of 50 rows, rows shuffled within row groups of 100,000
                (8 GB as float64) to benchmarks/out/big.parquet.
    --stream    fits it by streaming (SparseLMM().fit_source); run under
                /usr/bin/time -v for the peak resident memory.
    --dask      fits it with fit_dask on a LocalCluster of 2 workers (dd.read_parquet).
    --growth    fit time over 3 sizes of N (p = 200) and 3 of p (N = 100,000).

Sizes can be scaled down with --scale (e.g. 0.1) for a quick look; RESULTS.md records
full-size runs only.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

import hdlmm

OUT = Path(__file__).parent / "out"
BIG = OUT / "big.parquet"
COEF = np.array([1.0, -0.8, 0.6, 0.5, -0.5])


def lmm_arrays(N, p, m, seed=0, times="shared"):
    """X (N × p) standard normal, clusters of m rows, Z = [1, t], k = 5.

    ``times="shared"``: every cluster measured at the same m times (a balanced
    longitudinal design: one Z_iᵀZ_i); ``"random"``: times drawn per row, so every
    cluster has its own Z_iᵀZ_i."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, p))
    n = N // m
    groups = np.repeat(np.arange(n), m)
    t = np.tile(np.linspace(0, 1, m), n) if times == "shared" else rng.random(N)
    Z = np.c_[np.ones(N), t]
    gamma = rng.standard_normal((n, 2)) * [1.0, 0.5]
    y = (X[:, :5] @ COEF + np.einsum("ij,ij->i", Z, gamma[groups])
         + rng.standard_normal(N))
    return X, y, groups, Z


def whiten(X, y, Z, m, a):
    """X_a, y_a for equal clusters of m rows: Σ_a^{-1/2} by a batched eigh."""
    n = X.shape[0] // m
    Zc = Z.reshape(n, m, -1)
    lam, V = np.linalg.eigh(a * Zc @ np.swapaxes(Zc, 1, 2) + np.eye(m))
    W = (V / np.sqrt(lam)[:, None, :]) @ np.swapaxes(V, 1, 2)
    Xa = (W @ X.reshape(n, m, -1)).reshape(X.shape)
    ya = (W @ y.reshape(n, m, 1)).reshape(-1)
    return Xa, ya


def best_exchange_rss(G, c, d, support):
    """Lowest RSS over every support one exchange (one column out, one in) away.

    Brute force, independent of hdlmm's splicing: for each column i of the support, the
    least squares on the rest R, then the RSS drop of adding each outside column j,
    (c_j − G_jR β_R)² / (G_jj − G_jR G_RR⁻¹ G_Rj)."""
    S = np.sort(np.fromiter(support, int))
    outside = np.setdiff1d(np.arange(len(c)), S)
    best = np.inf
    for i in range(len(S)):
        R = np.delete(S, i)
        G_inv = np.linalg.inv(G[np.ix_(R, R)])
        beta = G_inv @ c[R]
        G_oR = G[np.ix_(outside, R)]
        gain = (c[outside] - G_oR @ beta) ** 2 / (
            G[outside, outside] - np.einsum("ij,jk,ik->i", G_oR, G_inv, G_oR))
        best = min(best, d - c[R] @ beta - gain.max())
    return best


def _abess_at(abess, Xa, ya, k, **options):
    model = abess.LinearRegression(support_size=[k], fit_intercept=False, thread=1, **options)
    model.fit(Xa, ya)
    return set(np.flatnonzero(model.coef_)), float(np.sum((ya - Xa @ model.coef_) ** 2))


def run_abess(scale):
    import abess

    N, p, m, K = int(100_000 * scale), 1000, 10, 30
    X, y, groups, Z = lmm_arrays(N, p, m)
    Xa, ya = whiten(X, y, Z, m, 1.0)
    del X
    one_a = whiten(np.ones((N, 1)), np.zeros(N), Z, m, 1.0)[0]
    # project out the whitened intercept column: both then fit the same problem without one
    u = one_a[:, 0] / np.linalg.norm(one_a[:, 0])
    Xa -= np.outer(u, u @ Xa)
    ya = ya - u * (u @ ya)
    t0 = time.perf_counter()
    G, c, d = Xa.T @ Xa, Xa.T @ ya, ya @ ya
    path = hdlmm.best_subset_path(G, c, d, K)
    t_h = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = abess.LinearRegression(support_size=list(range(1, K + 1)), fit_intercept=False,
                                   cv=1, thread=1)
    model.fit(Xa, ya)
    t_ab_path = time.perf_counter() - t0
    print(f"abess vs hdlmm, transformed problem N={N}, p={p}, k=1..{K}")
    print(f"  hdlmm Gram + path k=1..{K}: {t_h:.2f} s")
    print(f"  abess path (support_size=1..{K}, its IC picks one): {t_ab_path:.2f} s "
          f"-> ratio abess/hdlmm {t_ab_path / t_h:.2f}")
    ab_k = int(np.count_nonzero(model.coef_))
    print(f"  abess's chosen k = {ab_k}: support identical to hdlmm's at that k: "
          f"{set(np.flatnonzero(model.coef_)) == set(path[ab_k - 1].support)}")
    # abess's defaults, then its most thorough splicing (every column a candidate, up to
    # k exchanges at a time, 100 iterations), then abess's defaults started from hdlmm's
    # support (does abess's own splicing leave it?); each support checked against every
    # support one exchange away (best_exchange_rss)
    thorough = dict(exchange_num=K, important_search=p, max_iter=100)
    print("  RSS at k (* = an exchange of one column lowers it; = : same support as hdlmm):")
    print("    k  hdlmm         abess default    abess thorough   abess from hdlmm's")
    same = 0
    for k in (1, 5, 10, 20, 30):
        fits = [(set(path[k - 1].support), path[k - 1].rss),
                _abess_at(abess, Xa, ya, k), _abess_at(abess, Xa, ya, k, **thorough),
                _abess_at(abess, Xa, ya, k, A_init=sorted(path[k - 1].support))]
        cells = []
        for support, rss in fits:
            better = best_exchange_rss(G, c, d, support) < rss - 1e-10 * d
            mark = "=" if support == fits[0][0] else " "
            cells.append(f"{rss:11.1f}{'*' if better else ' '}{mark}")
        same += fits[1][0] == fits[0][0]
        print(f"   {k:>2}  " + "    ".join(cells))
    print(f"  abess default's support identical to hdlmm's at {same} of 5 k")


def run_floor(scale):
    for times in ("shared", "random"):
        _floor(int(1_000_000 * scale), 500, 10, times)


#: the fits timed against X.T @ X: the pipeline the issue names (a-grid × 5-fold grouped
#: CV × k path) and everything the default fit adds (REML variance components on the
#: support, debiased inference on the support)
FLOOR_FITS = {"selection (a-grid × 5-fold CV × k path)": dict(vc_method=None, inference=None),
              "full default fit (+ REML + inference)": dict()}


def _floor(N, p, m, times):
    X, y, groups, Z = lmm_arrays(N, p, m, times=times)
    print(f"BLAS floor: N={N}, n={N // m} clusters, p={p}, q=2, times {times} "
          f"({'one Z_iᵀZ_i' if times == 'shared' else 'every Z_iᵀZ_i different'})")
    for label, params in FLOOR_FITS.items():
        t_xtx = [_time_xtx(X)]
        tracemalloc.start()
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = hdlmm.SparseLMM(random_state=0, **params).fit(X, y, groups=groups, Z=Z)
        t_fit = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        t_xtx.append(_time_xtx(X))
        ref = float(np.mean(t_xtx))
        print(f"  {label}: {t_fit:.2f} s; one X.T @ X {t_xtx[0]:.2f} s before, "
              f"{t_xtx[1]:.2f} s after -> ratio {t_fit / ref:.1f} to their mean "
              f"(target ≤ 4)")
        print(f"    peak memory allocated during the fit: {peak / 1e9:.2f} GB = "
              f"{peak / X.nbytes:.2f} × X ({X.nbytes / 1e9:.2f} GB); process total ≈ "
              f"{1 + peak / X.nbytes:.2f} × X (target ≤ 1.5)")
        print(f"    a = {model.a_}, k = {model.support_size_}, "
              f"support {[int(j) for j in model.support_]}")
        del model  # its statistics (Z_iᵀX_i: 0.8 GB) would count in the next fit's peak


def _time_xtx(X):
    t0 = time.perf_counter()
    X.T @ X
    return time.perf_counter() - t0


def write_big(scale):
    import pyarrow as pa
    import pyarrow.parquet as pq

    N, p, m, chunk = int(5_000_000 * scale), 200, 50, 100_000
    OUT.mkdir(exist_ok=True)
    rng = np.random.default_rng(1)
    n = N // m
    gamma = rng.standard_normal((n, 2)) * [1.0, 0.5]
    names = [f"x{j}" for j in range(p)]
    writer = None
    t0 = time.perf_counter()
    for start in range(0, N, chunk):
        rows = np.arange(start, min(start + chunk, N))
        rng.shuffle(rows)  # clusters spread over the row group in any order
        g = rows // m
        t = (rows % m) / (m - 1)
        X = rng.standard_normal((rows.size, p))
        y = X[:, :5] @ COEF + gamma[g, 0] + gamma[g, 1] * t + rng.standard_normal(rows.size)
        cols = {nm: X[:, j] for j, nm in enumerate(names)}
        cols.update(y=y, t=t, g=g)
        table = pa.table(cols)
        if writer is None:
            writer = pq.ParquetWriter(BIG, table.schema)
        writer.write_table(table)
    writer.close()
    print(f"wrote {BIG}: N={N}, p={p}, {n} clusters, {BIG.stat().st_size / 1e9:.2f} GB "
          f"on disk ({N * (p + 3) * 8 / 1e9:.2f} GB as float64) in "
          f"{time.perf_counter() - t0:.0f} s")


def run_stream():
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = hdlmm.SparseLMM(random_state=0).fit_source(
            BIG, y="y", groups="g", Z=["1", "t"], chunk_rows=50_000, progress=False)
    print(f"streaming fit of {BIG.name}: {time.perf_counter() - t0:.1f} s; a = {model.a_}, "
          f"k = {model.support_size_}, support {[int(j) for j in model.support_]}")
    return model


def run_dask(workers=2):
    import dask.dataframe as dd
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None, memory_limit="8GB") as cluster, \
            Client(cluster):
        t0 = time.perf_counter()
        ddf = dd.read_parquet(BIG)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = hdlmm.SparseLMM(random_state=0).fit_dask(ddf, y="y", groups="g",
                                                             Z=["1", "t"])
        t_dask = time.perf_counter() - t0
    print(f"Dask fit of {BIG.name} ({workers} workers): {t_dask:.1f} s; a = {model.a_}, "
          f"k = {model.support_size_}, support {[int(j) for j in model.support_]}")


def run_growth(scale):
    print("fit time (default pipeline) over N (p = 200) and p (N = 100,000), clusters of 10")
    for N, p in ((50_000, 200), (100_000, 200), (200_000, 200),
                 (100_000, 100), (100_000, 400)):
        N = int(N * scale)
        X, y, groups, Z = lmm_arrays(N, p, 10)
        t0 = time.perf_counter()
        X.T @ X
        t_xtx = time.perf_counter() - t0
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hdlmm.SparseLMM(random_state=0).fit(X, y, groups=groups, Z=Z)
        t_fit = time.perf_counter() - t0
        print(f"  N={N:>8} p={p:>4}: fit {t_fit:6.2f} s, X.T@X {t_xtx:5.2f} s, "
              f"ratio {t_fit / t_xtx:5.1f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("abess", "floor", "write", "stream", "dask", "growth"):
        ap.add_argument(f"--{flag}", action="store_true")
    ap.add_argument("--scale", type=float, default=1.0)
    args = ap.parse_args()
    if args.abess:
        run_abess(args.scale)
    if args.floor:
        run_floor(args.scale)
    if args.write:
        write_big(args.scale)
    if args.stream:
        t0 = time.perf_counter()
        run_stream()
        t_stream = time.perf_counter() - t0
    if args.dask:
        t0 = time.perf_counter()
        run_dask()
        if args.stream:
            print(f"Dask / streaming wall time: {(time.perf_counter() - t0) / t_stream:.2f} "
                  f"(target ≤ 1.5; Dask including the LocalCluster's start and stop)")
    if args.growth:
        run_growth(args.scale)


if __name__ == "__main__":
    main()
