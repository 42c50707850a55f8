"""The tutorial's pipeline against hdlmm's, on the tutorial's data, in one process.

The tutorial (skscope "Linear mixed model"): for a = 0..9, build the dense N × N Σ_a,
take Σ_a^{-1/2} from ``np.linalg.eig``, and run skscope's ScopeSolver with k = 3 on the
transformed data. hdlmm: ClusterStats → Woodbury transform (the grid's whitened
problems in one pass, ``ProxyTransform.prepare``) → splicing at each a, same a and k, no
intercept (as the tutorial).

Objectives are compared on the *exact* whitened objective ‖Σ_a^{-1/2}(y − Xβ)‖² /
tr(Σ_a⁻¹) (explicit ``eigh`` per cluster), and also as the tutorial computes it with its
own (inexact) transform.

Run:  python benchmarks/seed.py          (needs the bench extra: skscope, jax)
"""

from __future__ import annotations

import time
import warnings

import numpy as np

import hdlmm
from hdlmm import ClusterStats, ProxyTransform
from hdlmm.core.splicing import best_subset

M, N_CLUSTERS, P, Q, K = 8, 15, 200, 4, 3
A_GRID = np.arange(0, 10)


def tutorial_lmm_scope(X, Z, y, m, a, k):
    """The tutorial's lmm_scope, with its dense eig transform (block-diagonal Z)."""
    import jax.numpy as jnp
    from skscope import ScopeSolver

    N, p = X.shape
    n = int(N / m)
    Sigma_a = np.zeros((N, N))
    for i in range(n):
        Z_i = Z[(i * m):((i + 1) * m), :]
        Sigma_a[(i * m):((i + 1) * m), (i * m):((i + 1) * m)] = a * Z_i @ Z_i.T + np.eye(m)
    w, v = np.linalg.eig(Sigma_a)
    w, v = np.real(w), np.real(v)
    L = v @ np.diag(w ** (-0.5)) @ v.T
    X_a, y_a = L @ X, L @ y
    trace = float(np.trace(v @ np.diag(w ** (-1)) @ v.T))

    def custom_objective(params):
        return jnp.sum((y_a - X_a @ params) ** 2) / trace

    params = np.asarray(ScopeSolver(p, k).solve(custom_objective))
    return params, float(np.sum((y_a - X_a @ params) ** 2) / trace)


def hdlmm_pipeline(X, y, groups, Z, a_grid, k):
    """hdlmm from raw arrays: one ClusterStats, one transform (the whitened problems of
    the whole grid from one pass over the clusters), splicing at each a."""
    # raw (unstandardised) sums: the coefficients and the objective in the tutorial's units
    stats = ClusterStats.from_arrays(X, y, groups, Z, fit_intercept=False, standardize=False)
    tr = ProxyTransform(stats)
    tr.prepare(a_grid)
    out, prev = [], None
    for a in a_grid:  # each a warm-starts from the previous a's support
        G, c, d, n_eff, _ = tr.at(float(a)).total()
        fit = best_subset(G, c, d, k, init=prev)
        prev = fit.support
        out.append((fit.full_coef(X.shape[1]), fit.rss / n_eff))
    return out


def exact_objective(X, y, Z, groups, a, beta):
    """‖Σ_a^{-1/2}(y − Xβ)‖² / tr(Σ_a⁻¹) with an explicit per-cluster eigh."""
    r, num, tr = y - X @ beta, 0.0, 0.0
    for g in np.unique(groups):
        i = groups == g
        w, V = np.linalg.eigh(a * Z[i] @ Z[i].T + np.eye(i.sum()))
        u = V.T @ r[i]
        num += np.sum(u ** 2 / w)
        tr += np.sum(1 / w)
    return num / tr


def main():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        d = hdlmm.make_tutorial_data(m=M, n=N_CLUSTERS, p=P, q=Q, seed=0)
    Zb = d.block_diagonal_Z()
    # hdlmm first: once skscope has started jax, its thread pool competes for the cores
    reps = 50
    hdlmm_pipeline(d.X, d.y, d.groups, d.Z, A_GRID, K)  # warm-up (imports, caches)
    t0 = time.perf_counter()
    for _ in range(reps):
        ours = hdlmm_pipeline(d.X, d.y, d.groups, d.Z, A_GRID, K)
    t_ours = (time.perf_counter() - t0) / reps
    t0 = time.perf_counter()
    tut = [tutorial_lmm_scope(d.X, Zb, d.y, M, a, K) for a in A_GRID]
    t_tut = time.perf_counter() - t0
    print(f"data: tutorial's (m={M}, n={N_CLUSTERS}, p={P}, q={Q}, seed 0), k = {K}, "
          f"a = 0..9")
    print(f"{'a':>3} {'l2 tutorial':>12} {'l2 hdlmm':>10} {'obj tutorial':>14} "
          f"{'obj hdlmm':>12} {'obj tut (own L)':>16} {'support tut':>14} {'support hdlmm':>14}")
    worse = 0
    for a, (bt, own), (bo, _) in zip(A_GRID, tut, ours):
        ot = exact_objective(d.X, d.y, d.Z, d.groups, a, bt)
        oo = exact_objective(d.X, d.y, d.Z, d.groups, a, bo)
        worse += oo > ot * (1 + 1e-9)
        print(f"{a:>3} {np.linalg.norm(bt - d.beta):>12.4f} "
              f"{np.linalg.norm(bo - d.beta):>10.4f} {ot:>14.6f} {oo:>12.6f} {own:>16.6f} "
              f"{str(np.flatnonzero(bt).tolist()):>14} {str(np.flatnonzero(bo).tolist()):>14}")
    print(f"\nwall time, whole a-grid: tutorial {t_tut:.3f} s, hdlmm {t_ours * 1e3:.2f} ms "
          f"(mean of {reps}); ratio {t_tut / t_ours:,.0f}x")
    print(f"hdlmm objective worse than the tutorial's at {worse} of {len(A_GRID)} values "
          f"of a (exact objective)")


if __name__ == "__main__":
    main()
