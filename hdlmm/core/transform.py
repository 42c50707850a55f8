"""The quasi-likelihood proxy transform of Li, Cai & Li (2022), without any N × N matrix.

For a proxy parameter a ≥ 0 the whitened least-squares objective
‖Σ_a^{-1/2}(y − Xβ)‖², with Σ_a^i = a Z_i Z_iᵀ + I, equals d(a) − 2βᵀc(a) + βᵀG(a)β.
Writing Z_iᵀZ_i = V_i diag(λ_i) V_iᵀ, B_i = V_iᵀZ_iᵀX_i, b_i = V_iᵀZ_iᵀy_i and
w_i(a) = a / (1 + a λ_i), Woodbury's identity
(I + a Z_iZ_iᵀ)⁻¹ = I − Z_iV_i diag(w_i(a)) V_iᵀZ_iᵀ gives

    G(a) = XᵀX − Σ_i B_iᵀ diag(w_i) B_i
    c(a) = Xᵀy − Σ_i B_iᵀ diag(w_i) b_i
    d(a) = yᵀy − Σ_i b_iᵀ diag(w_i) b_i
    tr(Σ_a⁻¹) = N − Σ_i Σ_k a λ_ik / (1 + a λ_ik)

The per-cluster eigendecompositions are computed once (batched); each value of a then
costs one (n q × p)ᵀ(n q × p) product. a = 0 gives ordinary least squares.
:meth:`ProxyTransform.prepare` computes a whole grid of a in one pass over the rows:
each chunk is rotated once and then weighted for every a.

Shared weights. The weight of a row b_ik of B depends on a only through λ_ik, so rows
with the same eigenvalue share it for every a: with levels ℓ of equal λ,

    G(a) = XᵀX − Σ_ℓ w_ℓ(a) Σ_{ik: λ_ik = ℓ} b_ikᵀ b_ik,

and the per-level sums cost one pass over B in all. After that pass every value of a
costs K L p² additions (K blocks) instead of a pass over the n q rows. Designs with
few levels are common: a random intercept (λ_i = n_i, one level per distinct cluster
size), and balanced longitudinal designs (every cluster measured at the same times, so
every Z_iᵀZ_i is the same). The levels are used when their sums fit in ``level_bytes``
and 16 K L ≤ n q; otherwise (e.g. random slopes on covariates that differ between
clusters, where every λ_ik is distinct) each a makes its own pass. Eigenvalues that
agree to 1e-12 of the largest count as equal (accumulation order can change the last
bits of Z_iᵀZ_i).

B = (B_i) is never stored: it is as large as the statistics' Z_iᵀX_i (n × q × p), and
keeping both made the whitened problems the peak of memory at scale. Each G(a) rotates
and weights Z_iᵀX_i a chunk of clusters at a time into one reused buffer,
diag(√w_i) V_iᵀ Z_iᵀX_i, before the product; the rotation is a small batched q × q
product, far cheaper than the p × p product that follows (and than first-touching a
second n × q × p array).

Low rank. With several blocks (K folds) and n q ≤ K p rotated rows, each G(a) is kept
as its total, XᵀX − Bᵀ diag(w) B (one product over all the rows), and the blocks'
weighted rows, R_k = (diag(√w) B_k)ᵀ (:class:`~hdlmm.core.quadratic.LowRank`): no
K × p × p array, and the block products, less efficient on fewer rows, are not made;
the CV's training matrices are read entry by entry from them. The weighted rows are
made on demand (:class:`~hdlmm.core.weighted_rows.WeightedRows`), when the total is
formed and again when the CV of that a reads them: kept for every a while they are
small together, else for one a at a time, written over the last a's when nothing holds
those (one n q × p array in memory instead of one per value of a).

Reference: Li, S., Cai, T. T. & Li, H. (2022). Inference for high-dimensional linear
mixed-effects models: a quasi-likelihood approach. JASA 117, 1835-1846.
doi:10.1080/01621459.2021.1888740
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
from numpy.typing import ArrayLike

from hdlmm.core._arrays import thin_product, zeros
from hdlmm.core._threads import default_blas_threads
from hdlmm.core.checks import check_a
from hdlmm.core.quadratic import LowRank, Quadratic, objectives
from hdlmm.core.stats import ClusterStats
from hdlmm.core.weighted_rows import WeightedRows

__all__ = ["ProxyTransform", "Quadratic", "objectives"]


class ProxyTransform:
    """Whitened cross-products G(a), c(a), d(a) for any a, from a ClusterStats.

    Parameters
    ----------
    stats : ClusterStats

    Notes
    -----
    The eigendecompositions of the q × q matrices Z_iᵀZ_i are batched
    (``numpy.linalg.eigh`` on an (n, q, q) stack); nothing loops over clusters in Python.
    """

    #: bytes of whitened problems kept between calls of :meth:`at` (the EBIC path and
    #: the CV folds ask for the same a; each costs one (n q × p)ᵀ(n q × p) product):
    #: the default grid's 11 values at p = 2,000 with 5 folds (160 MB each)
    cache_bytes = 2 * 2 ** 30

    #: bytes of the buffer that holds a chunk of clusters' rotated Z_iᵀX_i: small enough
    #: to stay in the last-level cache while it is weighted and multiplied for every a
    #: (8 MB: 0.07 × a syrk's time per a for the weighting, against 0.18 × at 32 MB, on a
    #: 32 MB L3; docs/decisions.md)
    chunk_bytes = 8 * 2 ** 20

    #: largest size of the per-level sums (blocks × levels × p × p) that replace a pass
    #: over the rows per value of a (see the module docstring)
    level_bytes = 256 * 2 ** 20

    def __init__(self, stats: ClusterStats) -> None:
        self.stats = stats
        self._cache = {}
        self._logdet = {}  # a -> log det Σ_a per block
        # the proxy is a Z Zᵀ + I in the user's Z: the statistics hold Z̃ = Z M
        # (standardised), so Z_iᵀ· = M⁻ᵀ Z̃_iᵀ·, and M⁻ᵀ joins the rotation V_iᵀ
        Minv = stats.z_map_inv()
        identity = np.array_equal(Minv, np.eye(stats.n_re))
        ZtZ = stats.ZtZ if identity else _congruence(stats.ZtZ, Minv)
        lam, V = np.linalg.eigh(ZtZ)
        self.lam = np.clip(lam, 0.0, None)  # (n, q), round-off can give tiny negatives
        self.V = V  # eigenvectors of the user's Z_iᵀZ_i, (n, q, q)
        Vt = np.swapaxes(V, 1, 2)
        # the rotation B_i = V_iᵀZ_iᵀX_i of the statistics' Z̃_iᵀX_i: V_iᵀ M⁻ᵀ
        self.Vt = np.ascontiguousarray(Vt if identity else Vt @ Minv.T)  # (n, q, q)
        self.b = np.einsum("nij,nj->ni", self.Vt, stats.Zty)  # V_iᵀZ_iᵀy_i, (n, q)
        self.slices = stats.block_slices()
        self._buffer = np.empty(0)  # rotated chunks of Z_iᵀX_i, reused by every G(a)
        self.levels, self._level_of = _eigenvalue_levels(self.lam)
        self._level_sums = None
        self._weighted_rows = WeightedRows(self.Vt, stats.ZtX, self.lam)

    def rotate(self, A: np.ndarray) -> np.ndarray:
        """B_i A = V_iᵀ Z_iᵀX_i A for every cluster: shape (n, q) for A of shape (p,),
        (n, q, J) for (p, J)."""
        ZXA = thin_product(self.stats.ZtX, A.reshape(A.shape[0], -1)).reshape(
            self.stats.ZtX.shape[:2] + A.shape[1:])  # A is often sparse (u_j, β̂)
        return np.einsum("nij,nj...->ni...", self.Vt, ZXA)

    def rotate_columns(self, cols: ArrayLike) -> np.ndarray:
        """B_i restricted to the columns ``cols``: shape (n, q, len(cols))."""
        return self.Vt @ self.stats.ZtX[:, :, np.asarray(cols, dtype=np.intp)]

    def weights(self, a: float) -> np.ndarray:
        """w_i(a) = a / (1 + a λ_i), shape (n, q)."""
        return a / (1.0 + a * self.lam)

    def logdet_blocks(self, a: float) -> np.ndarray:
        """log det Σ_a summed over the clusters of each block: Σ_i Σ_k log(1 + a λ_ik)
        (computed once per a; read-only)."""
        if a not in self._logdet:
            per_cluster = np.log1p(a * self.lam).sum(axis=1)
            out = np.array([per_cluster[sl].sum() for sl in self.slices])
            out.flags.writeable = False
            self._logdet[a] = out
        return self._logdet[a]

    def at(self, a: float) -> Quadratic:
        """The whitened problem at one value of a, per block.

        Parameters
        ----------
        a : float ≥ 0

        Returns
        -------
        Quadratic
        """
        a = check_a(a)
        if a in self._cache:
            return self._cache[a]
        s = self.stats
        if a == 0.0:  # the statistics themselves (views, read-only once cached)
            quad = Quadratic(s.XtX.view(), s.Xty.view(), s.yty.astype(float),
                             s.n_rows.astype(float), s.n_rows.copy())
        elif self._use_levels():
            quad = self._at_from_levels(a, self.weights(a))
        else:
            quad = self._passes([a])[0]
        return self._store(a, quad)

    def prepare(self, a_values: Sequence[float]) -> None:
        """Compute the whitened problems of several values of a in one pass over the
        rotated rows (each chunk is rotated once, then weighted and multiplied for every
        a), into the cache that :meth:`at` reads. Values that would not fit in
        ``cache_bytes`` are left to :meth:`at`."""
        todo = [a for a in dict.fromkeys(check_a(v) for v in np.atleast_1d(a_values))
                if a > 0 and a not in self._cache]
        p = self.stats.n_features
        each = 8 * p * (p if self._low_rank() else len(self.slices) * p)
        todo = todo[:max(0, self.cache_bytes // each - len(self._cache))]
        if len(todo) < 2 or self._use_levels():
            return
        for a, quad in zip(todo, self._passes(todo)):
            self._store(a, quad)

    def _store(self, a, quad):
        size = quad.nbytes * (len(self._cache) + 1)
        if size <= self.cache_bytes:
            quad.freeze()  # shared: callers must not write into it
            self._cache[a] = quad
        return quad

    def _passes(self, a_values):
        """The quadratics of some a > 0 from one pass over the rotated rows (BLAS threads
        by the products of one a: several small ones do not make a large one)."""
        with default_blas_threads(self._pass_flops()):
            return self._passes_threads(a_values)

    def _pass_flops(self):
        """Flops of one pass's products for one a: 2 n q p² (the rotated rows)."""
        s = self.stats
        return 2.0 * s.ZtX.shape[0] * s.ZtX.shape[1] * s.n_features ** 2

    def _passes_threads(self, a_values):
        if self._low_rank():
            return self._low_rank_passes(a_values)
        s = self.stats
        W = [self.weights(a) for a in a_values]
        G = [np.empty_like(s.XtX) for _ in W]
        c = [s.Xty.copy() for _ in W]
        d = [s.yty.astype(float).copy() for _ in W]
        formed = np.zeros(len(self.slices), dtype=bool)  # blocks of G begun
        product = None  # a block's later chunks: their BᵀB (reused: new ones page-fault)
        for k, part in self._chunks():
            new_block, formed[k] = not formed[k], True
            for i, (Bw, bw) in enumerate(self._weighted_each(part, W)):
                if new_block:  # G = XᵀX − BᵀB, formed where BᵀB is
                    np.matmul(Bw.T, Bw, out=G[i][k])
                    np.subtract(s.XtX[k], G[i][k], out=G[i][k])
                else:
                    if product is None:
                        product = np.empty((s.n_features, s.n_features))
                    G[i][k] -= np.matmul(Bw.T, Bw, out=product)
                c[i][k] -= Bw.T @ bw
                d[i][k] -= bw @ bw
        for Gi in G:  # blocks without clusters
            Gi[~formed] = s.XtX[~formed]
        return [Quadratic(G[i], c[i], d[i], self._trace(w), s.n_rows.copy())
                for i, w in enumerate(W)]

    def _low_rank_passes(self, a_values):
        """The quadratics in low rank: for each a, the weighted rows (made by
        :class:`WeightedRows`, which keeps those of one a at a time), the total
        XᵀX − BᵀB from one product, and c, d per block."""
        s = self.stats
        bounds = np.r_[0, np.cumsum([(sl.stop - sl.start) * s.n_re for sl in self.slices])]
        blocks = list(zip(bounds[:-1], bounds[1:]))
        out = []
        for a in a_values:
            w = self.weights(a)
            B = self._weighted_rows(a)
            bw = (self.b * np.sqrt(w)).ravel()
            c = s.Xty - np.stack([B[lo:hi].T @ bw[lo:hi] for lo, hi in blocks])
            d = s.yty - np.array([bw[lo:hi] @ bw[lo:hi] for lo, hi in blocks])
            total = np.matmul(B.T, B)  # XᵀX − BᵀB formed where BᵀB is (no buffer)
            np.subtract(self.stats.xtx_total, total, out=total)
            low = LowRank(s.XtX, partial(self._weighted_rows, a), bounds, total)
            out.append(Quadratic(None, c, d, self._trace(w), s.n_rows.copy(), low))
            del B  # (so that the next a's rows can be written over these)
        return out

    def _low_rank(self):
        """Block matrices in low rank: several blocks K, and no more rotated rows than
        K p, so that R (p × n q) is no larger than the K blocks (see the module
        docstring)."""
        K = len(self.slices)
        return K > 1 and self._n_rotated() <= K * self.stats.n_features

    def _n_rotated(self):
        """n q: the rotated rows B_i of all clusters."""
        return self.stats.ZtX.shape[0] * self.stats.n_re

    def _trace(self, w):
        """tr(Σ_a⁻¹) per block: N_k − Σ a λ / (1 + a λ) over the block's clusters."""
        return self.stats.n_rows.astype(float) - np.array(
            [float(np.sum(w[sl] * self.lam[sl])) for sl in self.slices])

    def _use_levels(self):
        """Per-level sums when they fit in ``level_bytes`` and are few against the rows
        (reading them for one a then costs at most 1/16 of a pass over the rows)."""
        K, L, p = len(self.slices), self.levels.size, self.stats.n_features
        return 8 * K * L * p * p <= self.level_bytes and 16 * K * L <= self._level_of.size

    def _at_from_levels(self, a, w):
        """G(a), c(a), d(a) from the per-level sums: XᵀX − Σ_ℓ w_ℓ(a) (Σ_ℓ bᵀb)."""
        s = self.stats
        if self._level_sums is None:
            with default_blas_threads(self._pass_flops()):
                self._level_sums = self._sum_levels()
        GL, cL, dL = self._level_sums  # (K, L, p, p), (K, L, p), (K, L)
        K, L, p = GL.shape[0], GL.shape[1], GL.shape[2]
        wl = a / (1.0 + a * self.levels)  # (L,)
        G = s.XtX - (wl @ GL.reshape(K, L, p * p)).reshape(K, p, p)
        return Quadratic(G, s.Xty - cL.transpose(0, 2, 1) @ wl, s.yty - dL @ wl,
                         self._trace(w), s.n_rows.copy())

    def _sum_levels(self):
        """Σ bᵀb, Σ bᵀ(V_iᵀZ_iᵀy_i) and Σ b² over the rows of each level, per block: one
        pass over the rotated Z_iᵀX_i."""
        K, L = len(self.slices), self.levels.size
        p = self.stats.n_features
        GL, cL, dL = zeros((K, L, p, p)), zeros((K, L, p)), zeros((K, L))
        for k, part in self._chunks():
            B, b = self._weighted(part)
            level = self._level_of[part].ravel()
            if L > 1:  # rows of a level together
                order = np.argsort(level, kind="stable")
                B, b, level = B[order], b[order], level[order]
            ells, starts = np.unique(level, return_index=True)
            for ell, lo, hi in zip(ells, starts, np.r_[starts[1:], level.size]):
                Bl, bl = B[lo:hi], b[lo:hi]
                GL[k, ell] += Bl.T @ Bl
                cL[k, ell] += Bl.T @ bl
                dL[k, ell] += bl @ bl
        return GL, cL, dL

    def _chunks(self):
        """(block, slice of clusters) for every chunk of clusters the buffer holds."""
        step = self._chunk_clusters()
        for k, sl in enumerate(self.slices):
            for lo in range(sl.start, sl.stop, step):
                yield k, slice(lo, min(lo + step, sl.stop))

    def _chunk_clusters(self):
        q, p = self.stats.n_re, self.stats.n_features
        return max(1, self.chunk_bytes // (8 * q * p))

    def _weighted_each(self, part, W):
        """(diag(√w_i) B_i, diag(√w_i) b_i) of the clusters ``part`` for each weight in
        ``W`` (all positive): one weighted rotation for one weight, else one rotation,
        then rescaled in place from one weight to the next (so each result is valid only
        until the next is drawn)."""
        if len(W) == 1:
            yield self._weighted(part, W[0][part])
            return
        B, b = self._weighted(part)
        B3 = B.reshape(-1, self.stats.n_re, B.shape[1])
        applied = None
        for w in W:
            rw = np.sqrt(w[part])
            B3 *= (rw if applied is None else rw / applied)[:, :, None]
            applied = rw
            yield B, b * rw.ravel()

    def _weighted(self, part, w=None):
        """diag(√w_i) B_i and diag(√w_i) b_i of the clusters ``part`` (B_i and b_i when
        ``w`` is None), as (rows × p) and (rows,): the rotated chunk is written into one
        reused buffer."""
        ZtX = self.stats.ZtX[part]
        n, q, p = ZtX.shape
        if self._buffer.size < ZtX.size:
            self._buffer = np.empty(self._chunk_clusters() * q * p)
        Vt, b = self.Vt[part], self.b[part]
        if w is not None:
            rw = np.sqrt(w)
            Vt, b = rw[:, :, None] * Vt, b * rw
        Bw = np.matmul(Vt, ZtX, out=self._buffer[:ZtX.size].reshape(n, q, p))
        return Bw.reshape(n * q, p), b.ravel()


def _congruence(S, A):
    """Aᵀ S_i A for a stack S of (q, q) matrices."""
    return np.swapaxes(A, 0, 1) @ S @ A


def _eigenvalue_levels(lam, rel_tol=1e-12):
    """Distinct eigenvalues λ_ik (equal to ``rel_tol`` of the largest) and the level of
    each: rows with equal λ share the weight w(a) for every a."""
    top = float(lam.max()) if lam.size and lam.max() > 0 else 1.0
    key = np.round(lam / (top * rel_tol))
    _, level = np.unique(key, return_inverse=True)
    level = level.reshape(lam.shape)
    counts = np.bincount(level.ravel())
    return np.bincount(level.ravel(), weights=lam.ravel()) / counts, level
