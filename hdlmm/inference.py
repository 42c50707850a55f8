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
biased downwards when n is small (the tutorial has n = 15), most for the coordinates the
fitted model explains (residuals are shrunk along the fitted columns). ``"cr2t"``
(the default) rescales each cluster's residuals by (I − H_ii)^{-1/2}, H the whitened hat
matrix of the fitted support (CR2, Bell & McCaffrey 2002), computed from s × s
cluster sums (see :func:`_cr2_adjustment`), and uses t(n − 1) quantiles; ``"cr2"`` the
same with normal quantiles; ``"cr1t"`` multiplies V̂_j by n/(n − 1) with t(n − 1) (as
Stata and statsmodels); ``"none"`` is the asymptotic CR0 with normal quantiles.
benchmarks/RESULTS.md reports the coverage of all four (benchmarks/coverage.py).

Reference: Li, S., Cai, T. T. & Li, H. (2022). Inference for high-dimensional linear
mixed-effects models: a quasi-likelihood approach. JASA 117, 1835-1846.
doi:10.1080/01621459.2021.1888740
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse, stats as sps

from .nodewise import nodewise_lasso
from .splicing import profile_out

__all__ = ["DebiasedInference", "debias", "row_scores", "adjust_pvalues",
           "SMALL_SAMPLE", "P_ADJUST"]

SMALL_SAMPLE = ("cr2t", "cr2", "cr1t", "none")
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


def debias(transform, a, coef, cols, rows, *, penalty="scaled", small_sample="cr2t",
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
        ``rows(U, S)`` returns the per-cluster sums over the rows in the cluster order
        of ``transform.stats`` (see :func:`row_scores`).
    penalty : "scaled" or float
        Nodewise lasso penalty (:func:`hdlmm.nodewise.nodewise_lasso`).
    small_sample : {"cr2t", "cr2", "cr1t", "none"}
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
    cr2 = small_sample.startswith("cr2")
    S = np.r_[free, np.flatnonzero(coef[free.size:]) + free.size].astype(np.intp)
    sums = _whitened_sums(transform, a, coef, U, S, rows(U, S if cr2 else None))
    n = stats.n_clusters
    T = sums["ur"]
    if cr2:
        T = T + _cr2_adjustment(sums, G[np.ix_(S, S)])
    V = np.sum(T * T, axis=0) / D ** 2
    if small_sample == "cr1t":
        V *= n / (n - 1.0)
    df = n - 1.0 if small_sample.endswith("t") else np.inf
    label = ("CR2 (Bell-McCaffrey)" if cr2 else "CR1" if small_sample == "cr1t" else "CR0")
    label += " cluster-robust SE" + (f", t({n - 1})" if np.isfinite(df) else ", normal")
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


def _whitened_sums(transform, a, coef, U, S, raw):
    """Per-cluster sums in the whitened space: each raw sum Σ aᵀb over a cluster's rows
    becomes Σ aᵀΣ_{a,i}⁻¹b = Σ aᵀb − (B_i a)ᵀ diag(w_i(a)) (B_i b) (Woodbury)."""
    if a == 0:
        return raw
    w = transform.weights(a)  # (n, q)
    B = transform.B  # V_iᵀZ_iᵀX_i, (n, q, p)
    br = transform.b - B @ coef  # V_iᵀZ_iᵀ(y_i − X_iβ̂), (n, q)
    BU = B @ U  # (n, q, J)
    out = dict(ur=raw["ur"] - np.einsum("nqj,nq->nj", BU, w * br))
    if "SU" in raw:  # the CR2 sums
        BS = B[:, :, S]  # (n, q, s)
        wBS = w[:, :, None] * BS
        out.update(SU=raw["SU"] - np.swapaxes(wBS, 1, 2) @ BU,
                   SS=raw["SS"] - np.swapaxes(wBS, 1, 2) @ BS,
                   Sr=raw["Sr"] - np.einsum("nqs,nq->ns", wBS, br))
    return out


def _cr2_adjustment(sums, M):
    """w_iᵀ[(I − H_ii)^{-1/2} − I] r_i for every cluster and coordinate.

    H = X_S M⁻¹X_Sᵀ is the hat matrix of the fitted model (whitened, M = X_SᵀX_S). With
    P_i = M^{-1/2}X_{S,i}ᵀ, (I − P_iᵀP_i)^{-1/2} = I + P_iᵀ g(P_iP_iᵀ) P_i where
    g(κ) = ((1 − κ)^{-1/2} − 1)/κ on the eigenvalues κ of P_iP_iᵀ = M^{-1/2}A_iM^{-1/2},
    so only s × s matrices per cluster are needed (Bell & McCaffrey 2002, Survey
    Methodology 28:169; Pustejovsky & Tipton 2018, doi:10.1080/07350015.2016.1247004).
    """
    lam, Q = np.linalg.eigh(M)
    Mih = (Q / np.sqrt(lam)) @ Q.T  # M^{-1/2}
    K = Mih @ sums["SS"] @ Mih  # (n, s, s)
    kap, E = np.linalg.eigh(0.5 * (K + np.swapaxes(K, 1, 2)))
    if np.any(kap > 1 - 1e-8):
        warnings.warn("a cluster has leverage 1 on the fitted fixed effects, so its CR2 "
                      "adjustment is undefined and was capped; use small_sample='cr1t'",
                      RuntimeWarning, stacklevel=3)
    kap = np.clip(kap, 0.0, 1 - 1e-8)
    small = kap < 1e-12
    g = np.where(small, 0.5, ((1 - kap) ** -0.5 - 1) / np.where(small, 1.0, kap))
    Pw = Mih @ sums["SU"]  # (n, s, J)
    Pr = np.einsum("st,nt->ns", Mih, sums["Sr"])  # (n, s)
    Er = np.einsum("nsk,ns->nk", E, Pr) * g  # g(κ) Eᵀ P r
    return np.einsum("nsj,nsk,nk->nj", Pw, E, Er)


def row_scores(X, y, cluster_index, n_clusters, coef, intercept, chunk_rows=65536):
    """A ``rows`` callable for :func:`debias`: per-cluster sums over the rows, in chunks
    (memory O(chunk · J), never N × p).

    ``rows(U, S=None)`` returns a dict of per-cluster sums with r = y − Xβ̂:
    ``ur`` (n, J) Σ (X u_j) r; and, given the columns S of the fitted model (intercept =
    column 0, needed by CR2 only), ``SU`` (n, s, J) Σ x_S (X u_j), ``SS`` (n, s, s)
    Σ x_S x_Sᵀ and ``Sr`` (n, s) Σ x_S r.

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

    def rows(U, S=None):
        J = U.shape[1]
        out = dict(ur=np.zeros((n_clusters, J)))
        if S is not None:
            S = np.asarray(S, dtype=np.intp)
            out.update(SU=np.zeros((n_clusters, S.size, J)),
                       SS=np.zeros((n_clusters, S.size, S.size)),
                       Sr=np.zeros((n_clusters, S.size)))
        for start in range(0, X.shape[0], chunk_rows):
            sl = slice(start, min(start + chunk_rows, X.shape[0]))
            Xc = X[sl]
            XU = Xc @ U[f:] + (U[0] if f else 0.0)
            r = y[sl] - Xc @ coef[f:] - (coef[0] if f else 0.0)
            idx = cluster_index[sl]
            ind = sparse.csr_matrix((np.ones(idx.size), (idx, np.arange(idx.size))),
                                    shape=(n_clusters, idx.size))
            out["ur"] += ind @ (XU * r[:, None])
            if S is None:
                continue
            XS = Xc[:, np.maximum(S - f, 0)]
            if f:
                XS[:, S == 0] = 1.0  # the intercept column
            out["Sr"] += ind @ (XS * r[:, None])
            out["SU"] += (ind @ (XS[:, :, None] * XU[:, None, :]).reshape(idx.size, -1)
                          ).reshape(out["SU"].shape)
            out["SS"] += (ind @ (XS[:, :, None] * XS[:, None, :]).reshape(idx.size, -1)
                          ).reshape(out["SS"].shape)
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
