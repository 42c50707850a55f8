import itertools

import numpy as np
import pytest

from hdlmm.core.splicing import best_subset, best_subset_path, profile_out


def exhaustive(G, c, d, k):
    """Best subset of size k by enumerating all subsets (the reference)."""
    best = (np.inf, None)
    for A in itertools.combinations(range(G.shape[0]), k):
        A = list(A)
        b = np.linalg.solve(G[np.ix_(A, A)], c[A])
        best = min(best, (d - c[A] @ b, A), key=lambda t: t[0])
    return best


def correlated_problem(seed):
    """Small regression with strongly correlated columns (AR or equicorrelated)."""
    rng = np.random.default_rng(seed)
    p, n = rng.integers(6, 13), rng.integers(20, 60)
    rho = rng.uniform(0.5, 0.9)
    if seed % 2:
        C = (1 - rho) * np.eye(p) + rho
    else:
        C = rho ** np.abs(np.subtract.outer(np.arange(p), np.arange(p)))
    X = rng.multivariate_normal(np.zeros(p), C, size=n)
    beta = np.zeros(p)
    beta[rng.choice(p, 3, replace=False)] = rng.choice([-1, 1], 3) * rng.uniform(0.5, 2, 3)
    y = X @ beta + rng.normal(size=n) * rng.uniform(0.5, 2)
    return X.T @ X, X.T @ y, y @ y


@pytest.mark.parametrize("seed", range(60))
def test_path_matches_exhaustive_search(seed):
    G, c, d = correlated_problem(seed)
    for fit in best_subset_path(G, c, d, 5):
        k = fit.support.size
        rss, A = exhaustive(G, c, d, k)
        assert fit.rss == pytest.approx(rss, rel=1e-9, abs=1e-9)
        assert fit.support.tolist() == A
        np.testing.assert_allclose(
            fit.coef, np.linalg.solve(G[np.ix_(A, A)], c[A]), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("seed", range(20))
def test_cold_start_matches_exhaustive_search(seed):
    G, c, d = correlated_problem(1000 + seed)
    for k in (1, 2, 4):
        fit = best_subset(G, c, d, k)
        assert fit.rss == pytest.approx(exhaustive(G, c, d, k)[0], rel=1e-9, abs=1e-9)


def rss_of(G, c, d, A):
    A = sorted(A)
    return d - c[A] @ np.linalg.solve(G[np.ix_(A, A)], c[A])


@pytest.mark.parametrize("seed", range(10))
def test_result_is_optimal_against_every_single_and_double_exchange(seed):
    """Even where a global optimum is missed, no 1- or 2-exchange improves the fit."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((30, 10)) + rng.standard_normal((30, 1)) * 2  # equicorrelated
    y = rng.standard_normal(30)  # pure noise: many local optima
    G, c, d = X.T @ X, X.T @ y, y @ y
    k = 4
    fit = best_subset(G, c, d, k)
    A = set(fit.support.tolist())
    out = list(itertools.combinations(A, 1)) + list(itertools.combinations(A, 2))
    for O in out:
        for In in itertools.combinations(set(range(10)) - A, len(O)):
            assert rss_of(G, c, d, (A - set(O)) | set(In)) >= fit.rss * (1 - 1e-10)


def test_profile_out_equals_least_squares_with_a_free_column():
    rng = np.random.default_rng(0)
    X = np.hstack([np.ones((40, 1)), rng.standard_normal((40, 5)) + 3])
    y = 2 + X[:, 2] - X[:, 4] + rng.standard_normal(40)
    G, c, d = X.T @ X, X.T @ y, y @ y
    Gt, ct, dt, rest, recover = profile_out(G, c, d, [0])
    beta_R = np.linalg.solve(Gt, ct)
    full = np.linalg.lstsq(X, y, rcond=None)[0]
    np.testing.assert_allclose(beta_R, full[1:], atol=1e-10)
    np.testing.assert_allclose(recover(beta_R), full[:1], atol=1e-10)
    assert dt - ct @ beta_R == pytest.approx(np.sum((y - X @ full) ** 2), rel=1e-10)


def test_bad_support_size_is_rejected():
    G = np.eye(3)
    with pytest.raises(ValueError, match="support size k must be in 1..3"):
        best_subset(G, np.ones(3), 3.0, 4)


def test_duplicated_columns_do_not_break_the_solver():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 5))
    X = np.hstack([X, X[:, :2]])  # exact duplicates: singular G
    y = X[:, 0] * 2 + rng.standard_normal(30)
    G, c, d = X.T @ X, X.T @ y, y @ y
    fit = best_subset(G, c, d, 3)
    best = min(np.sum((y - X[:, list(A)] @ np.linalg.lstsq(X[:, list(A)], y, rcond=None)[0])
                      ** 2) for A in itertools.combinations(range(7), 3))
    assert np.isfinite(fit.rss) and fit.rss == pytest.approx(best, rel=1e-6)


def _kernel_problem(seed):
    """Regressions of several shapes: p from 8 to 120, correlated columns, some
    columns exact copies of others (aliased)."""
    rng = np.random.default_rng(1000 + seed)
    p = int(rng.integers(8, 121))
    n = int(rng.integers(p + 5, 3 * p + 10))
    rho = rng.uniform(0.0, 0.9)
    X = rng.standard_normal((n, p)) * np.sqrt(1 - rho) + rng.standard_normal((n, 1)) * np.sqrt(rho)
    if seed % 5 == 0:
        X[:, -1] = X[:, 0]  # an aliased column
    beta = np.zeros(p)
    beta[rng.choice(p, 4, replace=False)] = rng.choice([-1, 1], 4) * rng.uniform(0.3, 2, 4)
    y = X @ beta + rng.normal(size=n)
    return X.T @ X, X.T @ y, float(y @ y)


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("max_exchange", [2, 4])
def test_compiled_kernel_equals_the_numpy_implementation(seed, max_exchange):
    """The compiled kernel takes the same steps as an independent numpy implementation
    of the same algorithm (tests/splicing_reference.py): the same support at every k of
    a path started cold and warm, and the same objective to rounding."""
    import splicing_reference as ref

    G, c, d = _kernel_problem(seed)
    p = G.shape[0]
    prev = None
    for k in range(1, min(p, 12) + 1):
        if prev is not None and prev.rss < 1e-6 * d:  # the rows fit exactly: ties
            break
        init = None if prev is None else prev.support
        got = best_subset(G, c, d, k, init=init, max_exchange=max_exchange)
        want = ref.best_subset(G, c, d, k, init=init, max_exchange=max_exchange)
        if seed % 5 == 0:  # aliased: the kernel skips candidates aliased with the rest
            assert got.rss <= want.rss + 1e-9 * abs(d)  # (the numpy version did not)
            prev = got
            continue
        np.testing.assert_array_equal(got.support, want.support)
        np.testing.assert_allclose(got.rss, want.rss, rtol=1e-9, atol=1e-9 * abs(d))
        np.testing.assert_allclose(got.coef, want.coef, rtol=1e-7, atol=1e-9)
        prev = want
    back = best_subset(G, c, d, 2, init=prev.support, max_exchange=max_exchange)
    if seed % 5 == 0:
        return
    np.testing.assert_array_equal(
        back.support, ref.best_subset(G, c, d, 2, init=prev.support,
                                      max_exchange=max_exchange).support)


@pytest.mark.parametrize("seed", range(12))
def test_compiled_path_equals_the_python_path(seed):
    """A path with the criterion's stop computed in one kernel call (a Criterion) equals
    the path stepped from Python (the same criterion as a plain callable): same k
    reached, same supports, same RSS."""
    from hdlmm.model.path import Criterion, fit_path

    G, c, d = _kernel_problem(seed)
    n = G[0, 0]  # any sample size: the stop rule only compares criteria
    crit = Criterion(float(n), G.shape[0] - 1, ["ebic", "bic", "gic", "aic"][seed % 4])
    kernel = fit_path(G, c, d, min(20, G.shape[0] - 1), free=[0], ic=crit)
    python = fit_path(G, c, d, min(20, G.shape[0] - 1), free=[0],
                      ic=lambda rss, k: crit(rss, k))
    np.testing.assert_array_equal(kernel.ks, python.ks)
    np.testing.assert_array_equal(kernel.rss, python.rss)
    np.testing.assert_array_equal(kernel.coefs != 0, python.coefs != 0)


@pytest.mark.parametrize("seed", range(8))
def test_path_on_training_entries_equals_the_path_on_the_formed_matrix(seed):
    """fit_path(G, minus=F) reads the entries of G − F, profiled, inside the kernel: the
    same supports, RSS and coefficients, to the last bit, as the path on G − F formed
    and profiled in numpy (profile_out), and with the intercept unprofiled too."""
    from hdlmm.core.splicing import best_subset_path, profile_out
    from hdlmm.model.path import fit_path

    G, c, d = _kernel_problem(seed)
    G2, c2, d2 = _kernel_problem(seed + 100)
    p = min(G.shape[0], G2.shape[0])
    total, F = G[:p, :p] + G2[:p, :p], G2[:p, :p]
    k_max = min(8, p - 1)
    for free in ([0], []):
        lazy = fit_path(total, c[:p], d, k_max, free=free, minus=F)
        Gt, ct, dt, rest, _ = profile_out(total - F, c[:p], d, free)
        ref = best_subset_path(Gt, ct, dt, min(k_max, rest.size))
        np.testing.assert_array_equal(lazy.rss[1:], [f.rss for f in ref])
        for k, f in enumerate(ref, start=1):
            np.testing.assert_array_equal(np.flatnonzero(lazy.coefs[k][rest]), f.support)
            np.testing.assert_array_equal(lazy.coefs[k][rest][f.support], f.coef)


def test_scalar_inverse_is_the_matrix_route_to_the_last_bit():
    """The intercept's 1 × 1 inverse, computed on Python floats, equals the Cholesky
    route's number (the same entry of a diagonal 2 × 2), over 12 decades and more."""
    from hdlmm.core.splicing import _inverse_pd

    values = np.r_[np.random.default_rng(0).lognormal(0, 5, 2000), 1e-300, 1e300, 3.0]
    scalar = [_inverse_pd(np.array([[a]]))[0, 0] for a in values]
    matrix = [_inverse_pd(np.diag([a, 1.0]))[0, 0] for a in values]
    np.testing.assert_array_equal(scalar, matrix)


def test_largest_is_the_head_of_a_stable_descending_argsort():
    """The kernel's top-L selection equals np.argsort(-v, kind="mergesort")[:L]: ties in
    index order, signed zeros equal, NaN after every number, ±inf in place."""
    from hdlmm.core._double_exchange import _largest

    rng = np.random.default_rng(1)
    for t in range(3000):
        n = int(rng.integers(1, 60))
        L = int(rng.integers(1, n + 1))
        v = (rng.choice([0.0, -0.0, 1.0, 2.0, np.nan, np.inf, -np.inf, 3.5], size=n)
             if t % 2 else rng.standard_normal(n))
        np.testing.assert_array_equal(_largest(v, L), np.argsort(-v, kind="mergesort")[:L])


@pytest.mark.parametrize("lead", [0, 1])
def test_low_rank_entries_read_one_by_one_equal_those_of_whole_columns(lead):
    """In low rank, a column of which few entries are asked for is read entry by entry
    (not computed whole and kept): the same numbers, bit for bit, as the whole column
    gives, for columns kept or not, with the fold's matrix F and the profiled column."""
    from hdlmm.core._kernel_matrix import (
        FEW_ENTRIES,
        _gather_columns,
        first_column,
        matrix,
    )

    rng = np.random.default_rng(3)
    p, m = 200, 12
    W = rng.standard_normal((3 * p, p))
    G = W.T @ W
    V = rng.standard_normal((40, p))
    F = V.T @ V
    R = rng.standard_normal((p, m)) * 0.5
    h = first_column(G, F, R) if lead else None
    Q = matrix(G, F, h, 1.0 / h[0] if lead else None, R)
    rows = rng.choice(p - lead, 15, replace=False)
    cols = rng.choice(p - lead, 15, replace=False)
    assert FEW_ENTRIES * rows.size < p  # this read goes entry by entry
    few = _gather_columns(Q, rows, cols)
    assert (Q[7][:-1] == -1).all()  # and keeps no column
    many = np.arange(p - lead)
    whole = _gather_columns(Q, many, cols)  # these columns computed whole, kept
    assert (Q[7][cols + lead] >= 0).all()
    np.testing.assert_array_equal(few, whole[:, rows])
    np.testing.assert_array_equal(_gather_columns(Q, rows, cols), few)  # now from the kept


@pytest.mark.parametrize("seed", range(6))
def test_path_on_low_rank_training_entries_equals_the_path_on_the_formed_matrix(seed):
    """fit_path(G, minus=(F, R)) reads G − F + R Rᵀ entry by entry (a fold's matrix in low
    rank): the supports of the path on that matrix formed, and its RSS and coefficients
    to rounding (the kernel sums R's products in another order than BLAS)."""
    from hdlmm.core.splicing import best_subset_path, profile_out
    from hdlmm.model.path import fit_path

    G, c, d = _kernel_problem(seed)
    p = G.shape[0]
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((7, p))
    R = W.T * 0.3
    F = W.T @ W * 0.5 + np.eye(p)  # symmetric; G − F + R Rᵀ stays positive definite
    total = G + F
    k_max = min(8, p - 1)
    for free in ([0], []):
        lazy = fit_path(total, c, d, k_max, free=free, minus=(F, R))
        Gt, ct, dt, rest, _ = profile_out((total - F) + R @ R.T, c, d, free)
        ref = best_subset_path(Gt, ct, dt, min(k_max, rest.size))
        np.testing.assert_allclose(lazy.rss[1:], [f.rss for f in ref], rtol=1e-9)
        for k, f in enumerate(ref, start=1):
            np.testing.assert_array_equal(np.flatnonzero(lazy.coefs[k][rest]), f.support)
            np.testing.assert_allclose(lazy.coefs[k][rest][f.support], f.coef, rtol=1e-7,
                                       atol=1e-9)


def test_symmetry_check_against_numpy():
    """The compiled check agrees with numpy's G == Gᵀ, down to one entry one ulp off."""
    from hdlmm.core._kernel_matrix import is_symmetric

    rng = np.random.default_rng(0)
    for p in (1, 2, 7, 40):
        A = rng.standard_normal((p, p))
        G = A + A.T
        assert is_symmetric(G) and np.array_equal(G, G.T)
        if p > 1:
            i, j = rng.choice(p, 2, replace=False)
            G[i, j] = np.nextafter(G[i, j], np.inf)
            assert not is_symmetric(G) and not np.array_equal(G, G.T)


def test_a_matrix_not_exactly_symmetric_is_symmetrised():
    """best_subset reads one triangle: a G off by round-off in one entry is replaced by
    (G + Gᵀ)/2, so the fit is that of the symmetrised matrix, whichever triangle is off."""
    G, c, d = correlated_problem(3)
    i, j = best_subset(G, c, d, 3).support[:2]
    for upper in (True, False):  # either triangle off
        H = G.copy()
        H[min(i, j) if upper else max(i, j), max(i, j) if upper else min(i, j)] *= 1 + 1e-6
        got, ref = best_subset(H, c, d, 3), best_subset((H + H.T) / 2, c, d, 3)
        assert np.array_equal(got.support, ref.support)
        np.testing.assert_allclose(got.coef, ref.coef, rtol=1e-12)
