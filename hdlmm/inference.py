"""Debiased inference for the fixed effects (Li, Cai & Li 2022), from cross-products.

In the whitened space (x_a = Σ_a^{-1/2}x, r = Σ_a^{-1/2}(y − Xβ̂)), for a coordinate j
with decorrelating direction w_j = x_{a,j} − X_{a,−j}κ̂_j = X_a u_j (nodewise lasso,
:mod:`hdlmm.nodewise`):

    β̃_j = β̂_j + w_jᵀr / (w_jᵀx_{a,j}) = β̂_j + u_jᵀ(c − Gβ̂) / (G u_j)_j
    V̂_j  = Σ_i (w_{j,i}ᵀ r_i)² / (G u_j)_j²                 (cluster-robust)

Everything but the per-cluster scores w_{j,i}ᵀr_i comes from G(a) and c(a). Those scores
are u_jᵀ s_i with s_i = X_iᵀΣ_{a,i}⁻¹r_i = X_iᵀr_i − B_iᵀ diag(w_i(a)) V_iᵀZ_iᵀr_i: the
Woodbury part comes from the cluster statistics, the first term needs one pass over the
rows of X u_j (N × J numbers, never N × p) — see :func:`row_scores`.

The intercept (unpenalised) is profiled out of the nodewise regressions (it is always in
the model), so u_j has an intercept entry −G_00⁻¹G_{0,·}u_j.

Small-sample correction. The cluster-robust variance is a sum over n clusters and is
biased downwards when n is small (the tutorial has n = 8). ``small_sample="cr1t"``
(the default) multiplies V̂_j by n/(n − 1) (CR1) and uses Student's t with n − 1 degrees
of freedom, as Stata and statsmodels do for clustered errors; ``"none"`` gives the
asymptotic CR0 variance with normal quantiles. benchmarks/RESULTS.md reports coverage of
both (benchmarks/coverage.py).

Reference: Li, S., Cai, T. T. & Li, H. (2022). Inference for high-dimensional linear
mixed-effects models: a quasi-likelihood approach. JASA 117, 1835-1846.
doi:10.1080/01621459.2021.1888740
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse, stats as sps

from .nodewise import nodewise_lasso
from .splicing import profile_out

__all__ = ["DebiasedInference", "debias", "row_scores", "adjust_pvalues",
           "SMALL_SAMPLE", "P_ADJUST"]

SMALL_SAMPLE = ("cr1t", "none")
P_ADJUST = (None, "holm", "bh")


@dataclass
class DebiasedInference:
    """Debiased estimates of some coordinates with cluster-robust standard errors.

    Attributes
    ----------
    columns : ndarray of int           coordinates j (indices into the features)
    names : list of str
    estimate : ndarray                 β̂_j, the selected (sparse) estimate
    debiased : ndarray                 β̃_j
    se : ndarray                       √V̂_j
    df : float                         degrees of freedom of the reference t (inf: normal)
    pvalue, pvalue_adj : ndarray       two-sided p-values (raw and adjusted)
    p_adjust : str or None
    method : str                       a one-line description for reports
    directions : ndarray (p_full, J)   u_j (intercept entry first when fitted)
    """

    columns: np.ndarray
    names: list
    estimate: np.ndarray
    debiased: np.ndarray
    se: np.ndarray
    df: float
    pvalue: np.ndarray
    pvalue_adj: np.ndarray
    p_adjust: str | None
    method: str
    directions: np.ndarray | None = None

    def quantile(self, level):
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1); got {level!r}")
        return float(sps.t.ppf(0.5 + level / 2, self.df))

    def confint(self, level=0.95):
        """DataFrame of intervals β̃_j ± t_{df}(1 − α/2) · se_j, one row per coordinate."""
        z = self.quantile(level)
        lo, hi = self.debiased - z * self.se, self.debiased + z * self.se
        pct = f"{100 * (1 - level) / 2:g}"
        return pd.DataFrame({f"{pct}%": lo, f"{100 - float(pct):g}%": hi},
                            index=pd.Index(self.names, name="feature"))

    def table(self, level=0.95):
        """Estimates, standard errors, statistics, p-values and intervals."""
        tab = pd.DataFrame({"estimate": self.estimate, "debiased": self.debiased,
                            "std.err": self.se, "t": self.debiased / self.se,
                            "p-value": self.pvalue},
                           index=pd.Index(self.names, name="feature"))
        if self.p_adjust is not None:
            tab[f"p ({self.p_adjust})"] = self.pvalue_adj
        return tab.join(self.confint(level))


def debias(transform, a, coef, cols, rows, *, penalty="scaled", small_sample="cr1t",
           p_adjust=None, names=None):
    """Debiased estimates and cluster-robust intervals for the coordinates ``cols``.

    Parameters
    ----------
    transform : ProxyTransform
        Of the data the model was fitted on (its ``stats`` may carry fold blocks).
    a : float
        The proxy parameter of the fit.
    coef : ndarray of shape (p_full,)
        The fitted coefficients, intercept first when ``stats.intercept``.
    cols : array-like of int
        Coordinates (indices into the features, intercept excluded).
    rows : callable
        ``rows(U)`` returns the (n, J) per-cluster sums Σ_rows (X u_j)·(y − Xβ̂) in the
        cluster order of ``transform.stats`` (see :func:`row_scores`).
    penalty : "scaled" or float
        Nodewise lasso penalty (:func:`hdlmm.nodewise.nodewise_lasso`).
    small_sample : {"cr1t", "none"}
    p_adjust : {None, "holm", "bh"}
    names : list of str, optional

    Returns
    -------
    DebiasedInference
    """
    if small_sample not in SMALL_SAMPLE:
        raise ValueError(f"small_sample must be one of {SMALL_SAMPLE}; got {small_sample!r}")
    if p_adjust not in P_ADJUST:
        raise ValueError(f"p_adjust must be one of {P_ADJUST}; got {p_adjust!r}")
    stats = transform.stats
    G, c, _, _, n_rows = transform.at(a).total()
    free = np.arange(1 if stats.intercept else 0)
    cols = np.asarray(cols, dtype=np.intp)
    U = _directions(G, free, cols, n_rows, penalty)
    full_cols = cols + free.size
    D = np.einsum("jp,pj->j", G[full_cols], U)  # (G u_j)_j = w_jᵀ x_{a,j}
    debiased = coef[full_cols] + U.T @ (c - G @ coef) / D
    T = rows(U) - _woodbury_scores(transform, a, coef, U)
    n = stats.n_clusters
    V = np.sum(T * T, axis=0) / D ** 2
    if small_sample == "cr1t":
        V *= n / (n - 1.0)
        df, label = n - 1.0, f"CR1 cluster-robust SE, t({n - 1})"
    else:
        df, label = np.inf, "CR0 cluster-robust SE, normal"
    se = np.sqrt(V)
    pvalue = 2 * sps.t.sf(np.abs(debiased / se), df)
    names = [str(j) for j in cols] if names is None else list(names)
    method = (f"debiased best subset (Li, Cai & Li 2022; nodewise lasso "
              f"{'scaled' if isinstance(penalty, str) else penalty}), {label}")
    return DebiasedInference(cols, names, coef[full_cols].copy(), debiased, se, df, pvalue,
                             adjust_pvalues(pvalue, p_adjust), p_adjust, method, U)


def _directions(G, free, cols, n_rows, penalty):
    """u_j for the full coefficient vector (intercept entry included)."""
    p = G.shape[0]
    Gt, _, _, rest, _ = profile_out(G, np.zeros(p), 0.0, free)
    res = nodewise_lasso(Gt, cols, n_rows, penalty=penalty)
    U = np.zeros((p, cols.size))
    U[rest] = res.U
    if free.size:
        GFF = G[np.ix_(free, free)]
        U[free] = -np.linalg.solve(GFF, G[np.ix_(free, rest)] @ res.U)
    return U


def _woodbury_scores(transform, a, coef, U):
    """Σ_k (B_i u_j)_k w_ik (V_iᵀZ_iᵀr_i)_k, the part of u_jᵀs_i from the cluster stats."""
    if a == 0:
        return 0.0
    w = transform.weights(a)  # (n, q)
    br = transform.b - transform.B @ coef  # V_iᵀZ_iᵀ(y_i − X_iβ̂), (n, q)
    BU = transform.B @ U  # (n, q, J)
    return np.einsum("nqj,nq->nj", BU, w * br)


def row_scores(X, y, cluster_index, n_clusters, coef, intercept, chunk_rows=65536):
    """A ``rows`` callable for :func:`debias`: Σ over the rows of each cluster of
    (X u_j)·(y − Xβ̂), computed in chunks (memory O(chunk · J), never N × p).

    Parameters
    ----------
    X : ndarray (N, p)        without the intercept column
    y : ndarray (N,)
    cluster_index : ndarray of int (N,)
        Position of each row's cluster in the statistics' cluster order.
    n_clusters : int
    coef : ndarray (p_full,)  intercept first when ``intercept``
    intercept : bool
    """
    f = 1 if intercept else 0

    def rows(U):
        out = np.zeros((n_clusters, U.shape[1]))
        for start in range(0, X.shape[0], chunk_rows):
            sl = slice(start, start + chunk_rows)
            Xc = X[sl]
            XU = Xc @ U[f:] + (U[0] if f else 0.0)
            r = y[sl] - Xc @ coef[f:] - (coef[0] if f else 0.0)
            idx = cluster_index[sl]
            ind = sparse.csr_matrix((np.ones(idx.size), (idx, np.arange(idx.size))),
                                    shape=(n_clusters, idx.size))
            out += ind @ (XU * r[:, None])
        return out

    return rows


def adjust_pvalues(pvalue, method):
    """Holm (family-wise error) or Benjamini-Hochberg (false discovery rate) adjustment."""
    p = np.asarray(pvalue, dtype=float)
    if method is None or p.size == 0:
        return p.copy()
    if method == "bh":
        return sps.false_discovery_control(p, method="bh")
    order = np.argsort(p)
    m = p.size
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out
