"""The splicing search in numpy, as hdlmm ran it before its compiled kernel
(:mod:`hdlmm.core._splice_kernel`): an independent implementation of the same
algorithm, to test the kernel against (tests/test_splicing.py)."""

import functools
import warnings

import numpy as np

from hdlmm.core.splicing import SubsetFit, _inverse_pd


class _Support:
    """Quantities of the quadratic restricted to one support A."""

    def __init__(self, G, c, d, A, strict=False):
        self.A = np.sort(np.asarray(A, dtype=np.intp))
        GAA = G[self.A][:, self.A]
        self.M = _inverse_pd(GAA, strict)
        if self.M is None:  # a candidate with linearly dependent columns: never accept
            self.rss = np.inf
            return
        self.beta = self.M @ c[self.A]
        self.rss = float(d - c[self.A] @ self.beta)

    def sacrifices(self, G, c):
        """Backward (ξ on A) and forward (ζ on inactive I) sacrifices, and H, g, D on I."""
        p = G.shape[0]
        inactive = np.ones(p, dtype=bool)
        inactive[self.A] = False
        I = np.flatnonzero(inactive)
        GIA = G[I][:, self.A] if I.size < 4 * self.A.size else G[:, self.A][I]
        H = GIA @ self.M
        g = c[I] - GIA @ self.beta
        D = G[I, I] - np.einsum("ij,ij->i", H, GIA)
        ok = D > 1e-10 * np.maximum(G[I, I], np.finfo(float).tiny)
        zeta = np.where(ok, g ** 2 / np.where(ok, D, 1.0), 0.0)
        xi = self.beta ** 2 / np.diag(self.M)
        return xi, zeta, I, H, g, np.where(ok, D, np.inf)


def _best_single_exchange(st, xi, I, H, g, D):
    """Exact best (i out, j in) exchange: (change of f, i index in A, j feature)."""
    Mii = np.diag(st.M)
    num = (g[:, None] + H * (st.beta / Mii)[None, :]) ** 2
    den = D[:, None] + H ** 2 / Mii[None, :]
    delta = xi[None, :] - num / den  # (|I|, k)
    jj, ii = np.unravel_index(np.argmin(delta), delta.shape)
    return float(delta[jj, ii]), ii, I[jj]


def _grow(G, c, d, A, k):
    """Add forward-sacrifice winners one at a time until |A| = k."""
    A = list(A)
    while len(A) < k:
        st = _Support(G, c, d, A)
        _, zeta, I, *_ = st.sacrifices(G, c)
        A.append(int(I[np.argmax(zeta)]))
    return A


def _shrink(G, c, d, A, k):
    """Drop backward-sacrifice losers one at a time until |A| = k."""
    A = list(A)
    while len(A) > k:
        st = _Support(G, c, d, A)
        xi = st.beta ** 2 / np.diag(st.M)
        A.pop(int(np.argmin(xi)))
        A = sorted(A)
    return A


def best_subset(G, c, d, k, init=None, max_exchange=2, n_candidates=20, max_iter=1000):
    """hdlmm.core.splicing.best_subset, in numpy (same parameters)."""
    p = G.shape[0]
    if not 1 <= k <= p:
        raise ValueError(f"support size k must be in 1..{p}; got {k}")
    A = [] if init is None else sorted(set(int(j) for j in init))
    A = _shrink(G, c, d, _grow(G, c, d, A, k), k)
    st = _Support(G, c, d, A)
    for _ in range(max_iter):
        if k == p:
            break
        new = _improve(G, c, d, st, max_exchange, n_candidates)
        if new is None:
            break
        st = new
    else:
        warnings.warn(f"splicing reached max_iter={max_iter} before converging at k={k};"
                      f" increase max_iter", RuntimeWarning, stacklevel=2)
    return SubsetFit(support=st.A, coef=st.beta, rss=st.rss)


def _improve(G, c, d, st, max_exchange, n_candidates):
    """One splicing iteration; the improved support, or None if none improves f."""
    xi, zeta, I, H, g, D = st.sacrifices(G, c)
    k = st.A.size
    tol = 1e-10 * max(abs(st.rss), 1e-12 * abs(d), np.finfo(float).tiny)
    best = None
    delta, i, j = _best_single_exchange(st, xi, I, H, g, D)
    if delta < -tol:
        A = st.A.copy()
        A[i] = j
        best = _Support(G, c, d, A, strict=True)
    # s = 2 is searched exactly below (the pair of the largest sacrifices is among its
    # candidates), so the sacrifice heuristic starts at s = 3
    if min(max_exchange, k, I.size) >= 3:
        order_out = np.argsort(xi, kind="mergesort")
        order_in = I[np.argsort(-zeta, kind="mergesort")]
    for s in range(3, min(max_exchange, k, I.size) + 1):
        A = np.concatenate([st.A[order_out[s:]], order_in[:s]])
        cand = _Support(G, c, d, A, strict=True)
        if best is None or cand.rss < best.rss:
            best = cand
    if best is None or best.rss >= st.rss - tol:
        best = _best_double_exchange(G, c, d, st, zeta, I, n_candidates, st.rss - tol)
    if best is None or best.rss >= st.rss - tol:
        return None
    return best


@functools.lru_cache(maxsize=64)
def _pairs(n):
    """Index pairs (i < j) of n items (cached, so read-only: the solver asks for the same
    n often)."""
    pairs = np.triu_indices(n, 1)
    for arr in pairs:
        arr.flags.writeable = False
    return pairs


def _best_double_exchange(G, c, d, st, zeta, I, n_candidates, below=np.inf):
    """Exact best exchange of two active for two inactive variables.

    The entering pair is drawn from the ``n_candidates`` inactive variables with the
    largest forward sacrifice (all of them when there are no more). Removing a pair O
    from A is a rank-2 update of the current quantities:
    f rises by β_Oᵀ M_OO⁻¹ β_O, g becomes g + H_O M_OO⁻¹ β_O and the Schur complements
    of the candidates S = G_CC − H G_AC become S + H_O M_OO⁻¹ H_Oᵀ. Adding a pair {j, l}
    then lowers f by [g_j, g_l] S_{jl}⁻¹ [g_j, g_l]ᵀ. All k(k − 1)/2 leaving pairs are
    evaluated at once; cost O(k² L²) for L candidates. Returns None unless the best
    exchange brings f below ``below``.
    """
    k = st.A.size
    if k < 2 or I.size < 2:
        return None
    C = I[np.argsort(-zeta, kind="mergesort")[:n_candidates]]
    GC = G[C]
    GCA = GC[:, st.A]
    H = GCA @ st.M
    g = c[C] - GCA @ st.beta
    S = GC[:, C] - H @ GCA.T
    o1, o2 = _pairs(k)
    # M_OO⁻¹ of every leaving pair in closed form; a singular M_OO (pseudo-inverse M): skip
    m11, m12, m22 = st.M[o1, o1], st.M[o1, o2], st.M[o2, o2]
    det_o = m11 * m22 - m12 * m12
    pair_ok = np.abs(det_o) > 1e-12 * np.abs(m11 * m22) + np.finfo(float).tiny
    det_o = np.where(pair_ok, det_o, 1.0)
    i11, i12, i22 = m22 / det_o, -m12 / det_o, m11 / det_o  # (P,)
    b1, b2 = st.beta[o1], st.beta[o2]
    u1, u2 = i11 * b1 + i12 * b2, i12 * b1 + i22 * b2
    rss_R = np.where(pair_ok, st.rss + b1 * u1 + b2 * u2, np.inf)
    h1, h2 = H[:, o1].T, H[:, o2].T  # (P, L)
    g2 = g[None, :] + h1 * u1[:, None] + h2 * u2[:, None]
    # S + H_O M_OO⁻¹ H_Oᵀ, with H_O M_OO⁻¹ = [w1, w2], on the diagonal and on the
    # entering pairs (j < l) only
    w1 = h1 * i11[:, None] + h2 * i12[:, None]
    w2 = h1 * i12[:, None] + h2 * i22[:, None]
    jj, ll = _pairs(C.size)
    D = np.diagonal(S)[None] + w1 * h1 + w2 * h2  # (P, L)
    Sjl = S[jj, ll][None] + w1[:, jj] * h1[:, ll] + w2[:, jj] * h2[:, ll]  # (P, J)
    Dj, Dl, gj, gl = D[:, jj], D[:, ll], g2[:, jj], g2[:, ll]
    det = Dj * Dl - Sjl * Sjl
    quad = gj * gj * Dl + Dj * gl * gl - 2 * Sjl * gj * gl
    ok = det > 1e-10 * np.abs(Dj * Dl)
    new_rss = np.where(ok, rss_R[:, None] - quad / np.where(ok, det, 1.0), np.inf)
    pi, t = np.unravel_index(np.argmin(new_rss), new_rss.shape)
    if not new_rss[pi, t] < below:  # no improvement (or none feasible): skip the solve
        return None
    j, l = jj[t], ll[t]
    keep = np.ones(k, dtype=bool)
    keep[[o1[pi], o2[pi]]] = False
    return _Support(G, c, d, np.concatenate([st.A[keep], C[[j, l]]]), strict=True)


