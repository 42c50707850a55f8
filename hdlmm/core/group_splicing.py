"""Best-subset selection of groups of columns (a factor's dummies, a spline basis) by
splicing on a quadratic in cross-product form.

Minimises f(β) = d − 2βᵀc + βᵀGβ over supports made of whole units: the columns are
partitioned into units U_1..U_m, and a support of size k is k units, all of their
columns in, the other units' columns zero. For a support A (its columns C) with
β_C = G_CC⁻¹c_C, M = G_CC⁻¹ and g = c − G_{·C}β_C, the block forms of the sacrifices of
:mod:`hdlmm.core.splicing` are (Zhang, Zhu, Zhu & Wang 2023, group splicing):

* removing unit u ∈ A raises f by ξ_u = β_uᵀ (M_uu)⁻¹ β_u (backward sacrifice);
* adding unit j ∉ A lowers f by ζ_j = g_jᵀ D_j⁻¹ g_j with the Schur complement
  D_j = G_jj − G_jC M G_Cj (forward sacrifice).

Both are exact. Each iteration tries the splicing exchanges for s = 1..C_max (the s
units with the smallest ξ for the s with the largest ζ); when none improves, every
single exchange of an active unit for one of the ``n_candidates`` inactive units with
the largest ζ; when none of those improves, every double exchange (two active units
for two of the ``N_DOUBLE`` inactive ones with the largest ζ). Each exchange is refitted
exactly, and the best that lowers f is accepted. On 1,000 small problems with strongly
correlated columns (tests/test_group_splicing.py) plain splicing and single exchanges
missed the exhaustive optimum on 3; the double exchange finds it.
With units of one column each this is the column problem, which the compiled kernel
(:mod:`hdlmm.core._splice_kernel`) solves; this module is the general case, in numpy:
the number of units with several columns is small in practice (the factors of a
formula), and the one-column units are handled in vectorised form.

Reference: Zhang, Y., Zhu, J., Zhu, J. & Wang, X. (2023). A splicing approach to best
subset of groups selection. INFORMS J. Comput. 35(1), 104-119.
doi:10.1287/ijoc.2022.1241
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import combinations

import numpy as np
from scipy import linalg

from hdlmm.core.splicing import SubsetFit, _inverse_pd

__all__ = ["Units", "best_group_subset", "best_group_subset_path"]

#: the double exchange swaps two of this many weakest active units (smallest ξ) for
#: two of this many strongest inactive ones (largest ζ)
N_DOUBLE = 4


class Units:
    """A partition of the columns 0..p−1 into units selected together.

    Parameters
    ----------
    units : sequence of sequences of int
        The columns of each unit (together they must cover 0..p−1 once).
    """

    def __init__(self, units: Sequence[Sequence[int]]) -> None:
        self.members = [np.asarray(u, dtype=np.intp) for u in units]
        cols = np.concatenate(self.members) if self.members else np.zeros(0, np.intp)
        if np.sort(cols).tolist() != list(range(cols.size)):
            raise ValueError("units must partition the columns 0..p-1")
        self.p, self.m = int(cols.size), len(self.members)
        self.sizes = np.array([u.size for u in self.members], dtype=np.intp)
        self.unit_of = np.empty(self.p, dtype=np.intp)
        for i, u in enumerate(self.members):
            self.unit_of[u] = i
        self.multi = np.flatnonzero(self.sizes > 1)
        # the units of several columns by size: (unit ids (m_s,), their columns (m_s, s))
        self.by_size = [(ids, np.array([self.members[j] for j in ids]))
                        for ids in (self.multi[self.sizes[self.multi] == size]
                                    for size in np.unique(self.sizes[self.multi]))]
        self.single_cols = np.array([u[0] for u in self.members if u.size == 1], np.intp)
        self.single_units = np.flatnonzero(self.sizes == 1)

    def columns(self, A: Sequence[int]) -> np.ndarray:
        """The sorted columns of the units ``A``."""
        if len(A) == 0:
            return np.zeros(0, dtype=np.intp)
        return np.sort(np.concatenate([self.members[u] for u in A]))

    def df(self, A: Sequence[int]) -> int:
        """The number of columns of the units ``A``."""
        return int(self.sizes[list(A)].sum()) if len(A) else 0


def _fit(G, c, d, units, A):
    """(columns, β on them, M = G_CC⁻¹, f) of the support A (f = inf if singular)."""
    C = units.columns(A)
    if C.size == 0:
        return C, np.zeros(0), np.zeros((0, 0)), float(d)
    M = _inverse_pd(G[np.ix_(C, C)], strict=True)
    if M is None:
        return C, np.zeros(C.size), None, np.inf
    beta = M @ c[C]
    return C, beta, M, float(d - beta @ c[C])


def _objective(G, c, d, units, A):
    """f at the best β on the units A (inf if their columns are nearly dependent), by a
    Cholesky factor of G_CC scaled to a unit diagonal."""
    C = units.columns(A)
    diag = np.diag(G)[C]
    if np.any(diag <= 0):
        return np.inf
    sc = 1.0 / np.sqrt(diag)
    try:
        L = np.linalg.cholesky(G[np.ix_(C, C)] * sc[:, None] * sc[None, :])
    except np.linalg.LinAlgError:
        return np.inf
    piv = np.diag(L)
    if piv.min() <= 1e-6 * piv.max():
        return np.inf
    w = linalg.solve_triangular(L, c[C] * sc, lower=True, check_finite=False)
    return float(d - w @ w)


class _State:
    """A support A with its fit and the pieces of its sacrifices: columns C, β_C,
    M = G_CC⁻¹, g = c − G_{·C}β_C, H = G_{·C}M, the Schur complements D of the one-column
    units (diagonal) and of the others (blocks), ξ and ζ."""

    def __init__(self, G, c, d, units, A):
        self.A = list(A)
        self.C, self.beta, self.M, self.f = _fit(G, c, d, units, A)
        if self.M is None:
            return
        C, M, beta = self.C, self.M, self.beta
        self.pos = [np.searchsorted(C, units.members[u]) for u in self.A]
        self.Muu_inv = [_inverse_pd(M[np.ix_(i, i)]) for i in self.pos]
        self.xi = np.array([float(beta[i] @ W @ beta[i])
                            for i, W in zip(self.pos, self.Muu_inv)])
        self.g = c - G[:, C] @ beta if C.size else c.copy()
        self.H = G[:, C] @ M if C.size else np.zeros((units.p, 0))
        s = units.single_cols
        self.G_ss = np.diag(G)[s]
        self.D = self.G_ss - np.einsum("ij,ij->i", self.H[s], G[s][:, C])
        self.D_multi, self.G_multi = [], []
        for _, cols in units.by_size:  # D_j = G_jj − H_j G_Cj, batched (m_s, s, s)
            Gjj = G[cols[:, :, None], cols[:, None, :]]
            Dj = Gjj - self.H[cols] @ np.moveaxis(G[C][:, cols], 0, 1) if C.size else Gjj
            self.D_multi.append(0.5 * (Dj + np.swapaxes(Dj, 1, 2)))
            self.G_multi.append(np.einsum("mss->ms", Gjj).max(axis=1))
        self.zeta = self._gains(units, self.g, self.D, self.D_multi)

    def _gains(self, units, g, D, D_multi):
        """ζ of every unit (−inf on A) for the residual gradient g and complements D
        (directions where D has less than 1e-12 of the columns' spread, i.e. aliased
        with the support, give no gain)."""
        zeta = np.full(units.m, -np.inf)
        s = units.single_cols
        with np.errstate(divide="ignore", invalid="ignore"):
            zeta[units.single_units] = np.where(D > 1e-12 * self.G_ss, g[s] ** 2 / D, 0.0)
        for (ids, cols), Dj, scale in zip(units.by_size, D_multi, self.G_multi):
            w, V = np.linalg.eigh(Dj)
            proj = np.einsum("mst,ms->mt", V, g[cols])
            keep = w > 1e-12 * scale[:, None]
            zeta[ids] = np.sum(np.where(keep, proj ** 2 / np.where(keep, w, 1.0), 0.0), 1)
        zeta[self.A] = -np.inf
        return zeta

    def best_single_exchange(self, units):
        """(f after the best exchange of one active unit for one inactive unit, that
        support), exactly, from the block update of g and D on leaving u:
        g' = g + H_{·u} M_uu⁻¹ β_u and D'_j = D_j + H_{j,u} M_uu⁻¹ H_{j,u}ᵀ."""
        best_f, best = np.inf, None
        s = units.single_cols
        for i, u in enumerate(self.A):
            Hu = self.H[:, self.pos[i]]
            W = Hu @ self.Muu_inv[i]
            g = self.g + W @ self.beta[self.pos[i]]
            D = self.D + np.einsum("ij,ij->i", W[s], Hu[s])
            D_multi = [Dj + W[cols] @ np.swapaxes(Hu[cols], 1, 2)
                       for (_, cols), Dj in zip(units.by_size, self.D_multi)]
            zeta = self._gains(units, g, D, D_multi)
            j = int(np.argmax(zeta))
            f = self.f + self.xi[i] - zeta[j]
            if np.isfinite(zeta[j]) and f < best_f:
                best_f, best = f, sorted(set(self.A) - {u} | {j})
        return best_f, best


def best_group_subset(G: np.ndarray, c: np.ndarray, d: float, units: Units, k: int,
                      init: Sequence[int] | None = None, max_exchange: int = 2,
                      max_iter: int = 1000) -> tuple:
    """The best k units for f(β) = d − 2βᵀc + βᵀGβ by group splicing.

    Parameters
    ----------
    G, c, d : the quadratic over p columns
    units : Units
    k : int, 1 ≤ k ≤ units.m
    init : sequence of int, optional
        Starting units (warm start), grown (largest ζ first) or shrunk (smallest ξ
        first) to k. Default: forward selection from none.
    max_exchange, max_iter : as in :func:`hdlmm.core.splicing.best_subset`

    Returns
    -------
    (units in the support (sorted), SubsetFit on their columns)
    """
    st = _State(G, c, d, units, [] if init is None else sorted(set(int(u) for u in init)))
    while len(st.A) != k and st.M is not None:
        if len(st.A) > k:
            st = _State(G, c, d, units, [a for i, a in enumerate(st.A)
                                         if i != int(np.argmin(st.xi))])
            continue
        grown = None  # the strongest unit whose columns are not aliased with the support
        for j in np.argsort(-st.zeta, kind="stable")[:units.m - len(st.A)]:
            grown = _State(G, c, d, units, sorted(st.A + [int(j)]))
            if grown.M is not None:
                break
        if grown is None or grown.M is None:
            break  # no unit can be added: the caller reports the rank
        st = grown
    for _ in range(max_iter):
        if st.M is None:
            break
        A = _best_exchange(G, c, d, units, st, max_exchange)
        if A is None:
            break
        st = _State(G, c, d, units, A)
    return st.A, SubsetFit(support=st.C, coef=st.beta, rss=st.f)


def _best_exchange(G, c, d, units, st, max_exchange, n_double=N_DOUBLE):
    """The support after the best improving exchange, or None: splicing for s =
    1..C_max, then the exact best single exchange, then every double exchange of two of
    the ``n_double`` weakest active units (smallest ξ) for two of the ``n_double``
    strongest inactive ones (largest ζ)."""
    tol = 1e-12 * max(abs(st.f), abs(d), 1e-300)
    inactive = np.flatnonzero(np.isfinite(st.zeta))
    order_in = inactive[np.argsort(-st.zeta[inactive], kind="stable")].tolist()
    order_out = [st.A[i] for i in np.argsort(st.xi, kind="stable")]
    best, best_f = None, st.f - tol
    for s in range(1, min(max_exchange, len(st.A), len(order_in)) + 1):
        trial = sorted(set(st.A) - set(order_out[:s]) | set(order_in[:s]))
        ft = _objective(G, c, d, units, trial)
        if ft < best_f:
            best, best_f = trial, ft
    if best is not None:
        return best
    ft, trial = st.best_single_exchange(units)
    if trial is not None and ft < best_f and _objective(G, c, d, units, trial) < best_f:
        return trial
    for enter in combinations(order_in[:n_double], 2):
        for leave in combinations(order_out[:n_double], 2):
            trial = sorted(set(st.A) - set(leave) | set(enter))
            ft = _objective(G, c, d, units, trial)
            if ft < best_f:
                best, best_f = trial, ft
    return best


def best_group_subset_path(G: np.ndarray, c: np.ndarray, d: float, units: Units,
                           k_max: int, max_exchange: int = 2,
                           stop: Callable | None = None) -> list:
    """Best k units for k = 1..k_max: a forward sweep warm-started from k − 1, then a
    backward sweep from k + 1 keeping the better fit (as
    :func:`hdlmm.core.splicing.best_subset_path`). ``stop(k, rss, df)`` ends the forward
    sweep when it returns True.

    Returns
    -------
    list of (units, SubsetFit), the i-th for k = i + 1
    """
    fits, prev = [], None
    for k in range(1, min(k_max, units.m) + 1):
        prev = best_group_subset(G, c, d, units, k, init=None if prev is None else prev[0],
                                 max_exchange=max_exchange)
        fits.append(prev)
        if stop is not None and stop(k, prev[1].rss, units.df(prev[0])):
            break
    for i in range(len(fits) - 2, -1, -1):
        back = best_group_subset(G, c, d, units, i + 1, init=fits[i + 1][0],
                                 max_exchange=max_exchange)
        if back[1].rss < fits[i][1].rss:
            fits[i] = back
    return fits
