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

B = (B_i) is never stored: it is as large as the statistics' Z_iᵀX_i (n × q × p), and
keeping both made the whitened problems the peak of memory at scale. Each G(a) rotates
and weights Z_iᵀX_i a chunk of clusters at a time into one reused buffer,
diag(√w_i) V_iᵀ Z_iᵀX_i, before the product; the rotation is a small batched q × q
product, far cheaper than the p × p product that follows (and than first-touching a
second n × q × p array).

Reference: Li, S., Cai, T. T. & Li, H. (2022). Inference for high-dimensional linear
mixed-effects models: a quasi-likelihood approach. JASA 117, 1835-1846.
doi:10.1080/01621459.2021.1888740
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validation import check_a

__all__ = ["ProxyTransform", "Quadratic"]


@dataclass
class Quadratic:
    """A least-squares problem in cross-product form: f(β) = d − 2βᵀc + βᵀGβ.

    Arrays carry a leading block axis (one entry per fold) unless summed.

    Attributes
    ----------
    G : ndarray of shape (K, p, p)
    c : ndarray of shape (K, p)
    d : ndarray of shape (K,)
    trace : ndarray of shape (K,)
        tr(Σ_a⁻¹) per block: the effective sample size of the whitened problem.
    n_rows : ndarray of shape (K,)
    """

    G: np.ndarray
    c: np.ndarray
    d: np.ndarray
    trace: np.ndarray
    n_rows: np.ndarray

    def total(self):
        """(G, c, d, trace, n_rows) summed over blocks (views when there is one)."""
        if self.G.shape[0] == 1:
            return (self.G[0], self.c[0], float(self.d[0]), float(self.trace[0]),
                    int(self.n_rows[0]))
        return (self.G.sum(0), self.c.sum(0), float(self.d.sum()),
                float(self.trace.sum()), int(self.n_rows.sum()))

    def without(self, block):
        """(G, c, d, trace, n_rows) of all blocks except ``block``: total − block."""
        G, c, d, tr, n = self.total()
        return (G - self.G[block], c - self.c[block], d - self.d[block],
                tr - self.trace[block], n - int(self.n_rows[block]))

    def block(self, block):
        """(G, c, d, trace, n_rows) of one block."""
        return (self.G[block], self.c[block], float(self.d[block]),
                float(self.trace[block]), int(self.n_rows[block]))


def objective(G, c, d, beta):
    """d − 2βᵀc + βᵀGβ, the residual sum of squares of the whitened problem."""
    return float(d - 2 * beta @ c + beta @ G @ beta)


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
    #: the CV folds ask for the same a; each costs one (n q × p)ᵀ(n q × p) product)
    cache_bytes = 512 * 2 ** 20

    #: bytes of the buffer that holds a chunk of clusters' rotated Z_iᵀX_i
    chunk_bytes = 32 * 2 ** 20

    def __init__(self, stats):
        self.stats = stats
        self._cache = {}
        lam, V = np.linalg.eigh(stats.ZtZ)
        self.lam = np.clip(lam, 0.0, None)  # (n, q), round-off can give tiny negatives
        self.Vt = np.ascontiguousarray(np.swapaxes(V, 1, 2))  # (n, q, q)
        self.b = np.einsum("nij,nj->ni", self.Vt, stats.Zty)  # V_iᵀZ_iᵀy_i, (n, q)
        self.slices = stats.block_slices()
        self._buffer = np.empty(0)  # rotated chunks of Z_iᵀX_i, reused by every G(a)

    def rotate(self, A):
        """B_i A = V_iᵀ Z_iᵀX_i A for every cluster: shape (n, q) for A of shape (p,),
        (n, q, J) for (p, J)."""
        ZXA = self.stats.ZtX @ A
        return np.einsum("nij,nj...->ni...", self.Vt, ZXA)

    def rotate_columns(self, cols):
        """B_i restricted to the columns ``cols``: shape (n, q, len(cols))."""
        return self.Vt @ self.stats.ZtX[:, :, np.asarray(cols, dtype=np.intp)]

    def weights(self, a):
        """w_i(a) = a / (1 + a λ_i), shape (n, q)."""
        return a / (1.0 + a * self.lam)

    def logdet_blocks(self, a):
        """log det Σ_a summed over the clusters of each block: Σ_i Σ_k log(1 + a λ_ik)."""
        per_cluster = np.log1p(a * self.lam).sum(axis=1)
        return np.array([per_cluster[sl].sum() for sl in self.slices])

    def at(self, a):
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
        quad = self._at(a)
        size = quad.G.nbytes * (len(self._cache) + 1)
        if size <= self.cache_bytes:
            for arr in (quad.G, quad.c, quad.d, quad.trace, quad.n_rows):
                arr.flags.writeable = False  # shared: callers must not write into it
            self._cache[a] = quad
        return quad

    def _at(self, a):
        s = self.stats
        c = s.Xty.copy()
        d = s.yty.astype(float).copy()
        trace = s.n_rows.astype(float)
        if a == 0.0:
            return Quadratic(s.XtX.copy(), c, d, trace, s.n_rows.copy())
        w = self.weights(a)
        G = s.XtX.copy()
        step = self._chunk_clusters()
        for k, sl in enumerate(self.slices):
            for lo in range(sl.start, sl.stop, step):
                part = slice(lo, min(lo + step, sl.stop))
                Bw, bw = self._weighted(part, w[part])
                G[k] -= Bw.T @ Bw
                c[k] -= Bw.T @ bw
                d[k] -= bw @ bw
            trace[k] -= float(np.sum(w[sl] * self.lam[sl]))  # Σ a λ / (1 + a λ)
        return Quadratic(G, c, d, trace, s.n_rows.copy())

    def _chunk_clusters(self):
        q, p = self.stats.n_re, self.stats.n_features
        return max(1, self.chunk_bytes // (8 * q * p))

    def _weighted(self, part, w):
        """diag(√w_i) B_i and diag(√w_i) b_i of the clusters ``part``, as (rows × p) and
        (rows,): the rotated chunk is written into one reused buffer."""
        ZtX = self.stats.ZtX[part]
        n, q, p = ZtX.shape
        if self._buffer.size < ZtX.size:
            self._buffer = np.empty(self._chunk_clusters() * q * p)
        buf = self._buffer
        rw = np.sqrt(w)
        Bw = np.matmul(rw[:, :, None] * self.Vt[part], ZtX,
                       out=buf[:ZtX.size].reshape(n, q, p))
        return Bw.reshape(n * q, p), (self.b[part] * rw).ravel()
