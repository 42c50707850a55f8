"""Speed at small and medium sizes: hdlmm's default fit against abess, in one process.

For each problem size, interleaved over ``--runs`` rounds, on the same data:

* ``hdlmm``: the whole default fit, ``SparseLMM(random_state=0).fit(X, y, groups, Z)``
  (a and k chosen, REML, debiased inference on the support);
* ``abess EBIC path at a``: abess's single EBIC path (k = 0..k_max, abess's default
  k_max = N / (log log N · log p)) on the data whitened at one a (hdlmm's chosen a; the
  whitening is not timed); "hdlmm's k": the same to the k hdlmm's paths reached;
* ``abess same search``: abess doing hdlmm's search: at every a of the default grid,
  the data whitened (timed) and abess's path (its default k range of the training
  folds, or hdlmm's) with 5-fold CV on the same grouped folds (whole clusters), the a
  with the best CV score kept.

Each is timed in wall and process CPU time, once with BLAS limited to one thread and
once with the default threads (threadpoolctl, in this process). ``--load`` starts a
competing process that keeps one core busy with matrix products for the whole run.

Sizes: ``tutorial`` (the tutorial's data: 15 clusters of 8 rows, p = 200, q = 4),
``medium`` (N ≈ 2,000 in 200 clusters of 5-15 rows, p = 1,000, k = 5, random intercept
and slope) and ``large`` (N ≈ 20,000 in 2,000 clusters, p = 2,000, k = 5, the same).

Run:  python benchmarks/speed.py --sizes tutorial medium --runs 5 [--load]
      python benchmarks/speed.py --sizes large --runs 2 --search-runs 0 --abess-k 90
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
import warnings

import numpy as np
from threadpoolctl import threadpool_limits

import hdlmm
from hdlmm.model.path import default_k_max


def problem(size, seed=0):
    """(X, y, groups, Z) of a size."""
    if size == "tutorial":
        d = hdlmm.make_tutorial_data(m=8, n=15, p=200, q=4, seed=seed)
    elif size == "medium":
        d = hdlmm.make_lmm_data(n_clusters=200, n_obs=(5, 15), n_features=1000, n_re=2,
                                support_size=5, scale=1.0, random_state=seed)
    elif size == "large":
        d = hdlmm.make_lmm_data(n_clusters=2000, n_obs=(5, 15), n_features=2000, n_re=2,
                                support_size=5, scale=1.0, random_state=seed)
    else:
        raise ValueError(size)
    return d.X, d.y, d.groups, d.Z


def whiten(X, y, groups, Z, a):
    """Σ_a^{-1/2}(X, y) cluster by cluster (explicit eigh of a Z_i Z_iᵀ + I)."""
    Xa, ya = np.empty_like(X), np.empty_like(y)
    order = np.argsort(groups, kind="stable")
    bounds = np.flatnonzero(np.diff(groups[order])) + 1
    for rows in np.split(order, bounds):
        Zi = Z[rows]
        w, V = np.linalg.eigh(a * Zi @ Zi.T + np.eye(rows.size))
        L = (V / np.sqrt(w)) @ V.T
        Xa[rows], ya[rows] = L @ X[rows], L @ y[rows]
    return Xa, ya


def fold_ids(groups, K=5, seed=0):
    """Fold of each row: whole clusters dealt at random into K folds."""
    labels, codes = np.unique(groups, return_inverse=True)
    fold_of = np.random.default_rng(seed).permutation(labels.size) % K
    return fold_of[codes] + 1


def run_hdlmm(X, y, groups, Z):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hdlmm.SparseLMM(random_state=0).fit(X, y, groups=groups, Z=Z)


def run_abess_path(Xa, ya, k_max):
    from abess import LinearRegression

    return LinearRegression(support_size=list(range(0, k_max + 1)), ic_type="ebic",
                            cv=1, thread=1).fit(Xa, ya)


def run_abess_search(X, y, groups, Z, k_max, folds):
    from abess import LinearRegression

    best = (np.inf, None)
    for a in hdlmm.DEFAULT_A_GRID:
        Xa, ya = whiten(X, y, groups, Z, a)
        model = LinearRegression(support_size=list(range(0, k_max + 1)), cv=5,
                                 thread=1).fit(Xa, ya, cv_fold_id=folds)
        score = float(np.min(model.eval_loss_))  # held-out loss of its chosen k
        best = min(best, (score, a), key=lambda t: t[0])
    return best[1]


def timed(fn, *args):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return time.perf_counter() - w0, time.process_time() - c0, out


def _busy():
    """A competing load: one core of matrix products until terminated."""
    A = np.random.default_rng(0).standard_normal((600, 600))
    while True:
        A = np.tanh(A @ A / 600)


def summarise(name, walls, cpus):
    w, c = np.array(walls), np.array(cpus)
    return (f"  {name:<28} wall min/med/max {w.min():8.3f} {np.median(w):8.3f} "
            f"{w.max():8.3f} s   cpu med {np.median(c):8.3f} s")


def bench(size, runs, search_runs, abess_k=None):
    X, y, groups, Z = problem(size)
    N, p = X.shape
    folds = fold_ids(groups)
    model = run_hdlmm(X, y, groups, Z)
    # abess's k range: its own default, k = 0..k_max (abess's rule; for the search, of
    # the training folds' size), and also hdlmm's, as far as its paths went (they stop
    # at the criterion's window, max(2k̂, k̂ + 10))
    k_abess = default_k_max(N, p) if abess_k is None else abess_k
    k_max = min(default_k_max(N * 4 // 5, p), int(model.path_.k.max()))
    Xa, ya = whiten(X, y, groups, Z, model.a_)
    print(f"\n{size}: N = {N}, p = {p}, {np.unique(groups).size} clusters, q = {Z.shape[1]}, "
          f"abess's k_max = {k_abess}, hdlmm's paths to k = {k_max}; hdlmm chose "
          f"a = {model.a_:g}, k = {model.support_size_}")
    run_abess_path(Xa, ya, k_max)  # warm up abess
    k_search = default_k_max(N * 4 // 5, p)
    times = {}
    for r in range(runs):
        for threads in (1, None):
            tag = "1 thread" if threads == 1 else "default threads"
            with threadpool_limits(limits=threads, user_api="blas"):
                for name, fn, args in (
                        ("hdlmm default fit", run_hdlmm, (X, y, groups, Z)),
                        ("abess EBIC path at a", run_abess_path, (Xa, ya, k_abess)),
                        ("abess EBIC path, hdlmm's k", run_abess_path, (Xa, ya, k_max)),
                        ("abess same search", run_abess_search,
                         (X, y, groups, Z, k_search, folds)),
                        ("abess search, hdlmm's k", run_abess_search,
                         (X, y, groups, Z, k_max, folds))):
                    if "search" in name and r >= search_runs:
                        continue
                    wall, cpu, _ = timed(fn, *args)
                    times.setdefault((name, tag), ([], []))
                    times[(name, tag)][0].append(wall)
                    times[(name, tag)][1].append(cpu)
    for (name, tag), (walls, cpus) in times.items():
        print(summarise(f"{name} ({tag})", walls, cpus))
    for tag in ("1 thread", "default threads"):
        h = np.median(times[("hdlmm default fit", tag)][0])
        line = f"  {tag}, median / hdlmm's:"
        for name in ("abess EBIC path at a", "abess EBIC path, hdlmm's k",
                     "abess same search", "abess search, hdlmm's k"):
            if (name, tag) in times:
                line += f"  {name} {np.median(times[(name, tag)][0]) / h:.2f}"
        print(line)
    one = np.array(times[("hdlmm default fit", "1 thread")][0])
    many = np.array(times[("hdlmm default fit", "default threads")][0])
    print(f"  hdlmm default threads / 1 thread (median) {np.median(many) / np.median(one):.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["tutorial", "medium"],
                    choices=["tutorial", "medium", "large"])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--search-runs", type=int, default=None,
                    help="rounds that include abess's full search (default: all; 0: none)")
    ap.add_argument("--load", action="store_true")
    ap.add_argument("--abess-k", type=int, default=None,
                    help="abess's largest k (default: abess's own rule, which is 1,142 at "
                         "the large size, hours of abess's time)")
    args = ap.parse_args()
    load = None
    if args.load:
        load = mp.get_context("spawn").Process(target=_busy, daemon=True)
        load.start()
        print("with a competing process keeping one core busy")
    try:
        for size in args.sizes:
            bench(size, args.runs,
                  args.runs if args.search_runs is None else args.search_runs,
                  args.abess_k)
    finally:
        if load is not None:
            load.terminate()


if __name__ == "__main__":
    main()
