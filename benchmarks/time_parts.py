"""Where the time of a small fit goes: wall time per part, in one process.

    seed [runs]   the seed benchmark's hdlmm pipeline (``seed.py``), split into its
                  parts: the statistics, the whitened problems of the grid
                  (``ProxyTransform`` and ``prepare``), the ten splicing calls; the
                  mean over ``runs`` pipelines (default 200), three times.
    fit [size] [fits]
                  the default fit of ``speed.py`` at ``size`` (tutorial or medium),
                  with timers around its phases and compiled kernels (each function's
                  inclusive wall time per fit, and its calls per fit).
    cv [size] [reps]
                  the compiled cross-validation of the default fit at ``size``: its
                  ``fold_scores`` calls (every fold's path and held-out scores at one a)
                  captured during a fit, then run again ``reps`` times; the minimum and
                  median of five such timings, per fit.
    micro         three costs behind them: one dense G(a) product of the seed's rotated
                  rows (numpy's matmul, OpenBLAS's syrk), scipy's L-BFGS-B per
                  evaluation of a 10-parameter quadratic (the size of the tutorial's
                  REML) beside the evaluation itself, and one call of the criterion's
                  alternation (``Selector._ml_k``) on paths already computed.

Timers wrap module attributes, so a part is timed where its callers look it up (a
function imported by name is wrapped in the importing module). Each timer costs about
a microsecond a call. Run with ``OPENBLAS_NUM_THREADS=1`` for the one-thread figures.

Run:  PYTHONPATH=CHECKOUT python benchmarks/time_parts.py seed | fit tutorial 300 |
          cv medium 5 | micro
"""

from __future__ import annotations

import functools
import importlib
import sys
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

import hdlmm
from hdlmm import ClusterStats, ProxyTransform
from hdlmm.core.splicing import best_subset

sys.path.insert(0, str(Path(__file__).parent))
from seed import A_GRID, N_CLUSTERS, K, M, P, Q  # noqa: E402
from speed import problem, run_hdlmm  # noqa: E402

#: the default fit's phases and kernels: (module where callers look it up, attribute)
FIT_PARTS = [
    ("hdlmm.api._fitting", "check_lmm_arrays"),
    ("hdlmm.core.stats", "ClusterStats.from_checked"),
    ("hdlmm.model.selection", "Selector._search"),
    ("hdlmm.core.transform", "ProxyTransform.prepare"),
    ("hdlmm.model.selection", "Selector._ic_choices"),
    ("hdlmm.model.sweep", "forward_sweep"),
    ("hdlmm.model.sweep", "backward_sweep"),
    ("hdlmm.model.selection", "cross_validate"),
    ("hdlmm.model.tuning", "fold_scores"),
    ("hdlmm.model.random_part", "fit_variance_components"),
    ("hdlmm.model.varcomp", "_optimise"),
    ("hdlmm.inference.fixed_effects", "debias"),
    ("hdlmm.api._fitting", "_fitted_values"),
]


def seed_parts(runs):
    """Mean wall time (ms) of the seed pipeline's parts over ``runs`` pipelines."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        d = hdlmm.make_tutorial_data(m=M, n=N_CLUSTERS, p=P, q=Q, seed=0)
    parts = Counter()
    for i in range(runs + 20):  # the first 20: imports, compiled kernels, caches
        t0 = time.perf_counter()
        stats = ClusterStats.from_arrays(d.X, d.y, d.groups, d.Z, fit_intercept=False,
                                         standardize=False)
        t1 = time.perf_counter()
        tr = ProxyTransform(stats)
        tr.prepare(A_GRID)
        t2 = time.perf_counter()
        prev = None
        for a in A_GRID:
            G, c, dd, n_eff, _ = tr.at(float(a)).total()
            fit = best_subset(G, c, dd, K, init=prev)
            prev = fit.support
            fit.full_coef(P)
        t3 = time.perf_counter()
        if i >= 20:
            parts.update({"statistics": t1 - t0, "whitened problems": t2 - t1,
                          "splicing (10 calls)": t3 - t2, "whole pipeline": t3 - t0})
    return {k: v / runs * 1e3 for k, v in parts.items()}


def _wrap(module, qualname, total, calls):
    """Replace module.qualname by a timer that adds to ``total`` and ``calls``."""
    owner = importlib.import_module(module)
    names = qualname.split(".")
    for name in names[:-1]:
        owner = getattr(owner, name)
    f = getattr(owner, names[-1])

    @functools.wraps(f)
    def timed(*args, **kwargs):
        t = time.perf_counter()
        try:
            return f(*args, **kwargs)
        finally:
            total[qualname] += time.perf_counter() - t
            calls[qualname] += 1

    setattr(owner, names[-1], timed)


def fit_parts(size, fits):
    """Per fit: wall time (ms) and calls of each of ``FIT_PARTS``, and of the fit."""
    total, calls = defaultdict(float), Counter()
    for module, qualname in FIT_PARTS:
        _wrap(module, qualname, total, calls)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the tutorial's generator
        X, y, groups, Z = problem(size)[:4]
    for _ in range(5):
        run_hdlmm(X, y, groups, Z)
    total.clear()
    calls.clear()
    t = time.perf_counter()
    for _ in range(fits):
        run_hdlmm(X, y, groups, Z)
    whole = (time.perf_counter() - t) / fits * 1e3
    return whole, {q: (total[q] / fits * 1e3, calls[q] / fits) for _, q in FIT_PARTS}


def cv_kernels(size, reps):
    """(number of calls, min and median ms of all of them) of the fit's compiled CV."""
    import hdlmm.model.tuning as tuning

    calls, original = [], tuning.fold_scores

    def spy(*args):
        calls.append(args)
        return original(*args)

    tuning.fold_scores = spy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        run_hdlmm(*problem(size)[:4])
    tuning.fold_scores = original
    times = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(reps):
            for args in calls:
                original(*args)
        times.append((time.perf_counter() - t) / reps * 1e3)
    return len(calls), min(times), float(np.median(times))


def _per_call(f, n):
    """Mean wall time (µs) of ``f()`` over n calls, after one."""
    f()
    t = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t) / n * 1e6


def micro():
    """The three microbenchmarks of the module docstring, in µs."""
    from scipy import optimize

    import hdlmm.model.selection as selection

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        d = hdlmm.make_tutorial_data(m=M, n=N_CLUSTERS, p=P, q=Q, seed=0)
    stats = ClusterStats.from_arrays(d.X, d.y, d.groups, d.Z, fit_intercept=False,
                                     standardize=False)
    B = np.array(ProxyTransform(stats)._weighted(slice(None))[0])  # n q × p rotated rows
    G = np.empty((P, P))
    product = _per_call(lambda: np.matmul(B.T, B, out=G), 3000)
    A = np.diag(np.arange(1.0, 11.0))
    evals = [0]

    def quadratic(x):
        evals[0] += 1
        return 0.5 * x @ A @ x - x.sum(), A @ x - 1.0

    opts = dict(method="L-BFGS-B", jac=True,
                options=dict(ftol=1e-10, gtol=1e-7, maxiter=5000, maxcor=20))
    whole = _per_call(lambda: optimize.minimize(quadratic, np.ones(10), **opts), 200)
    per_eval = whole / (evals[0] / 201)
    alone = _per_call(lambda: quadratic(np.ones(10)), 20000)
    seen = {}
    original = selection.Selector._ml_k

    def spy(self, a_values, k_max):
        seen["call"] = (self, list(a_values), k_max)
        return original(self, a_values, k_max)

    selection.Selector._ml_k = spy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        run_hdlmm(*problem("tutorial")[:4])
    selection.Selector._ml_k = original
    warm = _per_call(lambda: original(*seen["call"]), 2000)
    print(f"one G(a) product, {B.shape[0]} rotated rows, p = {P}: {product:.1f} µs")
    print(f"L-BFGS-B, 10 parameters: {per_eval:.1f} µs an evaluation, of which the "
          f"quadratic itself {alone:.1f} µs")
    print(f"the criterion's alternation on computed paths: {warm:.1f} µs a call")


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else "seed"
    if what == "micro":
        micro()
        return
    if what == "cv":
        size = sys.argv[2] if len(sys.argv) > 2 else "tutorial"
        reps = int(sys.argv[3]) if len(sys.argv) > 3 else 200
        n, low, mid = cv_kernels(size, reps)
        print(f"{size}: {n} fold_scores calls a fit, all of them: min {low:.3f} ms, "
              f"median {mid:.3f} ms")
        return
    if what == "seed":
        runs = int(sys.argv[2]) if len(sys.argv) > 2 else 200
        for _ in range(3):
            print("  ".join(f"{k} {v:.3f} ms" for k, v in seed_parts(runs).items()))
        return
    size = sys.argv[2] if len(sys.argv) > 2 else "tutorial"
    fits = int(sys.argv[3]) if len(sys.argv) > 3 else 300
    whole, parts = fit_parts(size, fits)
    print(f"default fit at {size}: {whole:.2f} ms a fit (mean of {fits})")
    for name, (ms, n) in parts.items():
        print(f"  {ms:8.3f} ms {n:7.1f} calls  {name}")


if __name__ == "__main__":
    main()
