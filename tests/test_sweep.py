"""A path continued as far as it is asked for (PathSweep) against paths computed from
scratch: the same RSS at every k it returns, and the same whole path."""

import numpy as np
import pytest

from hdlmm.core.splicing import profiled_matrix
from hdlmm.model.path import Criterion, _kernel_path, fit_path
from hdlmm.model.sweep import PathSweep


def path_rss(problem, k_max, max_exchange=2, ic=None, window=None):
    """The reference: RSS of the path of a problem in the kernel's form for k = 0..m,
    computed from scratch by one call of the path kernel (m ≤ k_max: the path stops
    where ``ic``'s window says, as fit_path's; no least-squares bound)."""
    Q, ct, dt, rest, _ = problem
    if k_max < 1 or not rest.size:
        return np.array([dt])
    return np.concatenate(([dt], _kernel_path(Q, ct, dt, k_max, max_exchange, ic, None,
                                              window)[2]))


def _problem(seed):
    """A regression with an intercept column, p from 15 to 80, correlated columns."""
    rng = np.random.default_rng(500 + seed)
    p = int(rng.integers(15, 81))
    n = int(rng.integers(p + 5, 3 * p))
    rho = rng.uniform(0.0, 0.8)
    X = rng.standard_normal((n, p)) * np.sqrt(1 - rho) + rng.standard_normal((n, 1)) * np.sqrt(rho)
    X[:, 0] = 1.0
    beta = np.zeros(p)
    size = rng.choice([-1, 1], 5) * rng.uniform(0.2, 1.5, 5)
    beta[rng.choice(np.arange(1, p), 5, replace=False)] = size
    y = X @ beta + rng.normal(size=n)
    return X.T @ X, X.T @ y, float(y @ y), n


@pytest.mark.parametrize("seed", range(10))
def test_sweep_gives_the_rss_of_paths_computed_from_scratch(seed):
    """Every RSS a sweep returns, for requests in any order, equals the RSS of a path
    computed from scratch to the largest k asked for so far (the rule the
    maximum-likelihood criterion relies on), and its whole path equals fit_path's (the
    full-data paths always stop by a window: FullDataPaths)."""
    G, c, d, n = _problem(seed)
    k_max, window = 12, (2, 10) if seed % 2 else (1, 2)  # (the second stops early)
    ic = Criterion(float(n), G.shape[0] - 1, ["ebic", "bic"][seed % 2])
    problem = profiled_matrix(G, c, d, [0])
    sweep = PathSweep(problem, G.shape[0], [0], k_max, 2, ic, window)
    rng = np.random.default_rng(seed)
    top, reference = -1, None
    for k in rng.integers(0, k_max + 1, size=12):
        if k > top:  # a path computed to k, as a fresh short path would be
            top, reference = k, path_rss(problem, int(k), 2, ic, window)
        want = reference[k] if k < reference.size else np.inf
        assert sweep.rss(int(k)) == want
    whole = fit_path(G, c, d, k_max, free=[0], ic=ic, window=window, n_rows=n)
    got = sweep.path()
    np.testing.assert_array_equal(got.ks, whole.ks)
    assert got.k_max == whole.k_max
    np.testing.assert_array_equal(got.rss, whole.rss)
    np.testing.assert_array_equal(got.coefs, whole.coefs)
    assert sweep.rss(min(3, whole.ks[-1])) == whole.rss[min(3, whole.ks[-1])]


def test_sweep_without_a_criterion_runs_to_k_max():
    """No criterion: no stop; the path reaches k_max and equals fit_path's."""
    G, c, d, n = _problem(3)
    problem = profiled_matrix(G, c, d, [0])
    sweep = PathSweep(problem, G.shape[0], [0], 9, 2, None, None)
    assert sweep.rss(4) == path_rss(problem, 4)[4]
    whole = fit_path(G, c, d, 9, free=[0])
    np.testing.assert_array_equal(sweep.path().rss, whole.rss)
    assert sweep.rss(10) == np.inf
