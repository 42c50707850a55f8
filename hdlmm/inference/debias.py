"""Debiased inference for the fixed effects (Li, Cai & Li 2022), from cross-products.

In the whitened space (x_a = Σ_a^{-1/2}x, r = Σ_a^{-1/2}(y − Xβ̂)), for a coordinate j
with decorrelating direction w_j = x_{a,j} − X_{a,−j}κ̂_j = X_a u_j (nodewise lasso,
:mod:`hdlmm.inference.nodewise`):

    β̃_j = β̂_j + w_jᵀr / (w_jᵀx_{a,j}) = β̂_j + u_jᵀ(c − Gβ̂) / (G u_j)_j
    V̂_j  = Σ_i (w_{j,i}ᵀ r_i)² / (G u_j)_j²                 (cluster-robust, see below)

Everything but the per-cluster scores w_{j,i}ᵀr_i comes from G(a) and c(a). Those scores
are u_jᵀ s_i with s_i = X_iᵀΣ_{a,i}⁻¹r_i = X_iᵀr_i − B_iᵀ diag(w_i(a)) V_iᵀZ_iᵀr_i: the
Woodbury part comes from the cluster statistics, the first term needs one pass over the
rows of X u_j (N × J numbers, never N × p) — see :mod:`hdlmm.core.row_pass`.

The intercept (unpenalised) is profiled out of the nodewise regressions (it is always in
the model), so u_j has an intercept entry −G_00⁻¹G_{0,·}u_j.

Residuals and small-sample correction. The scores are taken on the residuals of the
debiased fit at coordinate j, r̃_j = r − x_{a,j}(β̃_j − β̂_j) (``center=True``), so that
Σ_i w_{j,i}ᵀr̃_{j,i} = 0 as for a Wald test; the residuals r of the selected fit would
put the estimate itself into its variance (Σ_i w_{j,i}ᵀr_i = D_j(β̃_j − β̂_j)), which
bounds |t| by √n and makes the tests of the nulls conservative (measured: 98% coverage
at 95% nominal with 15 clusters). The cluster-robust variance is a sum over n clusters
and is biased downwards when n is small (the tutorial has n = 15), most for the
coordinates the fitted model explains. ``"cr2bm"`` (the default) rescales each
cluster's residuals by (I − H_ii)^{-1/2}, H the whitened hat matrix of the fitted
support (CR2, Bell & McCaffrey 2002), computed from s × s cluster sums, and takes the
quantiles of t with each coordinate's own Satterthwaite degrees of freedom
(Bell-McCaffrey, see :func:`_cluster_variance`); ``"cr2t"`` the same with t(n − 1);
``"cr2"`` with normal quantiles; ``"cr1t"`` multiplies the CR0 variance by n/(n − 1)
with t(n − 1) (CR1 in clubSandwich's naming); ``"cr1s"`` by n/(n − 1) · (N − 1)/(N − s)
with t(n − 1), s the columns of the fitted support with the intercept (CR1S: the factor
of Stata's ``vce(cluster)`` and of statsmodels' cluster covariance with its default
correction, which CR1 is not); ``"none"`` is the asymptotic CR0 with normal quantiles.
benchmarks/RESULTS.md reports the coverage of the variants (benchmarks/interval_coverage.py).

Reference: Li, S., Cai, T. T. & Li, H. (2022). Inference for high-dimensional linear
mixed-effects models: a quasi-likelihood approach. JASA 117, 1835-1846.
doi:10.1080/01621459.2021.1888740
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats as sps

from hdlmm.core._threads import default_blas_threads
from hdlmm.core.progress import progress_bar
from hdlmm.core.splicing import profile_out
from hdlmm.core.transform import ProxyTransform
from hdlmm.inference.nodewise import nodewise_lasso

__all__ = ["DebiasedInference", "debias", "adjust_pvalues", "SMALL_SAMPLE", "P_ADJUST"]

SMALL_SAMPLE = ("cr2bm", "cr2t", "cr2", "cr1t", "cr1s", "none")
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
    df : ndarray                       degrees of freedom of each reference t (inf: normal)
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
    df: np.ndarray
    pvalue: np.ndarray
    pvalue_adj: np.ndarray
    p_adjust: str | None
    method: str
    directions: np.ndarray | None = None

    def quantile(self, level: float) -> np.ndarray:
        """t_{df_j}(0.5 + level/2) for every coordinate (an array)."""
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1); got {level!r}")
        return sps.t.ppf(0.5 + level / 2, self.df)

    def confint(self, level: float = 0.95) -> pd.DataFrame:
        """DataFrame of intervals β̃_j ± t_{df}(1 − α/2) · se_j, one row per coordinate."""
        z = self.quantile(level)
        lo, hi = self.debiased - z * self.se, self.debiased + z * self.se
        pct = f"{100 * (1 - level) / 2:g}"
        return pd.DataFrame({f"{pct}%": lo, f"{100 - float(pct):g}%": hi},
                            index=pd.Index(self.names, name="feature"))

    def table(self, level: float = 0.95) -> pd.DataFrame:
        """Debiased estimates with their own standard errors, degrees of freedom,
        statistics, p-values and intervals (the initial estimate they start from is
        ``estimate``, which has no standard error of its own here)."""
        tab = pd.DataFrame({"debiased": self.debiased, "std.err": self.se,
                            "df": self.df, "t": self.debiased / self.se,
                            "p-value": self.pvalue},
                           index=pd.Index(self.names, name="feature"))
        if self.p_adjust is not None:
            tab[f"p ({self.p_adjust})"] = self.pvalue_adj
        return tab.join(self.confint(level))


def debias(transform: ProxyTransform, a: float, coef: np.ndarray, cols: ArrayLike,
           rows: Callable | None, *, penalty: str | float = "scaled", small_sample: str = "cr2bm",
           p_adjust: str | None = None, names: Sequence[str] | None = None, center: bool = True,
           block_bytes: int = 2 ** 28, progress: bool | None = False) -> DebiasedInference:
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
        of ``transform.stats`` (see :func:`hdlmm.core.row_pass.row_scores`).
    penalty : "scaled" or float
        Nodewise lasso penalty (:func:`hdlmm.inference.nodewise.nodewise_lasso`).
    small_sample : {"cr2bm", "cr2t", "cr2", "cr1t", "cr1s", "none"}
    p_adjust : {None, "holm", "bh"}
    names : list of str, optional
    center : bool
        Score the residuals of the debiased fit, r − x_{a,j}(β̃_j − β̂_j) (default), so
        that the cluster scores of coordinate j sum to zero as in a Wald test; with
        False, the residuals r of the selected fit (whose scores sum to D_j(β̃_j − β̂_j):
        conservative for the nulls, see the module docstring).
    block_bytes : int
        Memory cap for the per-cluster arrays (n × s × J): coordinates run in blocks.
    progress : bool or None
        A progress bar over the coordinates (None: on a terminal only).

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
    S = np.r_[free, np.flatnonzero(coef[free.size:]) + free.size].astype(np.intp)
    M = G[np.ix_(S, S)]
    n = stats.n_clusters
    V, df = np.empty(cols.size), np.full(cols.size, np.inf)
    step = max(1, int(block_bytes // (8 * 3 * n * max(S.size, 1))))
    bar = progress_bar(cols.size, "inference", progress, unit="coef")
    for lo in range(0, cols.size, step):
        blk = slice(lo, lo + step)
        fc = full_cols[blk]
        work = 2.0 * stats.n_samples * U.shape[0] * (fc.size + S.size)  # the row pass
        with default_blas_threads(work):
            raw = rows(U[:, blk], S, cols[blk])
            rotated = _rotated(transform, a, coef, U[:, blk], S, fc)
        delta = (debiased - coef[full_cols])[blk] if center else None
        V[blk], df_bm = _cluster_variance(raw, rotated, M, D[blk],
                                          small_sample.startswith("cr2"), delta)
        if small_sample == "cr2bm":
            df[blk] = df_bm
        bar.update(fc.size)
    bar.close()
    if small_sample in ("cr1t", "cr1s"):
        V *= n / (n - 1.0)
    if small_sample == "cr1s":
        N = stats.n_samples
        V *= (N - 1.0) / (N - S.size)
    if small_sample in ("cr2t", "cr1t", "cr1s"):
        df[:] = n - 1.0
    se = np.sqrt(V)
    pvalue = 2 * sps.t.sf(np.abs(debiased / se), df)
    names = [str(j) for j in cols] if names is None else list(names)
    method = (f"debiased best subset (Li, Cai & Li 2022; nodewise lasso "
              f"{'scaled' if isinstance(penalty, str) else penalty}), "
              f"{_method_label(small_sample, n)}")
    return DebiasedInference(cols, names, coef[full_cols].copy(), debiased, se, df, pvalue,
                             adjust_pvalues(pvalue, p_adjust), p_adjust, method, U)


def _method_label(small_sample, n):
    return {"cr2bm": "CR2 cluster-robust SE, t(Bell-McCaffrey df)",
            "cr2t": f"CR2 cluster-robust SE, t({n - 1})",
            "cr2": "CR2 cluster-robust SE, normal",
            "cr1t": f"CR1 cluster-robust SE, t({n - 1})",
            "cr1s": f"CR1S (Stata's) cluster-robust SE, t({n - 1})",
            "none": "CR0 cluster-robust SE, normal"}[small_sample]


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


def _rotated(transform, a, coef, U, S, cols):
    """The Woodbury pieces of the whitening, per cluster (None at a = 0): w_i(a), B_i U,
    B_i x_S, B_i x_cols and B_i r, with B_i = V_iᵀZ_iᵀX_i (arrays of n × q × ...)."""
    if a == 0:
        return None
    BU = transform.rotate(U)  # B_i U, (n, q, J)
    BSx = transform.rotate_columns(np.r_[S, cols])  # one read of Z_iᵀX_i for both
    BS, Bx = BSx[:, :, :S.size], BSx[:, :, S.size:]  # (n, q, s), (n, q, J)
    br = transform.b - BS @ coef[S]  # V_iᵀZ_iᵀ(y_i − X_iβ̂), (n, q); β̂ is zero off S
    return dict(w=transform.weights(a), BU=BU, BS=BS, Bx=Bx, br=br)


def _whitened_sums(raw, rotated):
    """Per-cluster sums in the whitened space: each raw sum Σ aᵀb over a cluster's rows
    becomes Σ aᵀΣ_{a,i}⁻¹b = Σ aᵀb − (B_i a)ᵀ diag(w_i(a)) (B_i b) (Woodbury)."""
    if rotated is None:
        return raw
    w, BU, BS, Bx, br = (rotated[k] for k in ("w", "BU", "BS", "Bx", "br"))
    wBS = np.swapaxes(w[:, :, None] * BS, 1, 2)  # (n, s, q)
    wBU = w[:, :, None] * BU
    return dict(ur=raw["ur"] - np.einsum("nqj,nq->nj", BU, w * br),
                uu=raw["uu"] - np.sum(wBU * BU, axis=1),
                ux=raw["ux"] - np.sum(wBU * Bx, axis=1),
                Sx=raw["Sx"] - wBS @ Bx, SU=raw["SU"] - wBS @ BU, SS=raw["SS"] - wBS @ BS,
                Sr=raw["Sr"] - (wBS @ br[:, :, None])[:, :, 0])


#: the cluster algebra of the variance takes this many clusters at a time
CLUSTERS_AT_ONCE = 4096


def _cluster_variance(raw, rotated, M, D, cr2, delta=None):
    """Cluster-robust variance Σ_i (v_iᵀA_i r_i)² / D² and its Satterthwaite df.

    v_j = w_j / D_j, A_i = (I − H_ii)^{-1/2} for CR2 (else I), H = X_S M⁻¹X_Sᵀ the
    whitened hat matrix of the fit (M = X_SᵀX_S), r the residuals (``delta``: centred,
    r − x_j δ_j). With P_i = M^{-1/2}X_{S,i}ᵀ and K_i = P_iP_iᵀ (s × s),
    A_i = I + P_iᵀ g(K_i) P_i with g(κ) = ((1 − κ)^{-1/2} − 1)/κ, so only s × s
    matrices per cluster are needed (Bell & McCaffrey 2002, Survey Methodology
    28:169; Pustejovsky & Tipton 2018, doi:10.1080/07350015.2016.1247004).

    Degrees of freedom (Bell-McCaffrey): under the working model (whitened errors
    e ~ N(0, σ²I), uncentred residuals r = (I − H)e) the estimate is eᵀ(Σ_i q_iq_iᵀ)e
    with q_i = (I − H)_{·,i} A_i v_i, so df = (tr Ω)² / ‖Ω‖²_F for
    Ω_ik = q_iᵀq_k = δ_ik ‖g_i‖² − h_iᵀh_k, g_i = A_i v_i, h_i = P_i g_i
    = (I − K_i)^{-1/2} P_i v_i and ‖g_i‖² = ‖v_i‖² + (P_iv_i)ᵀ(I − K_i)⁻¹P_iv_i.

    Everything is a sum over clusters, so the clusters are taken ``CLUSTERS_AT_ONCE``
    at a time (from ``raw``, the per-cluster sums of the rows pass, and ``rotated``,
    see :func:`_rotated`): the per-cluster temporaries then stay small enough to be
    reused from cache, where n-sized ones were fresh memory for every operation
    (with the whitened sums: 0.8-0.9 s → 0.2 s at n = 100,000, s = 6, J = 5,
    profiled inside a full fit).
    """
    lam, Q = np.linalg.eigh(M)
    Mih = (Q / np.sqrt(lam)) @ Q.T  # M^{-1/2}
    total = None
    n = raw["ur"].shape[0]
    for lo in range(0, n, CLUSTERS_AT_ONCE):
        sl = slice(lo, lo + CLUSTERS_AT_ONCE)
        part = None if rotated is None else {k: v[sl] for k, v in rotated.items()}
        sums = _whitened_sums({k: v[sl] for k, v in raw.items()}, part)
        terms = _variance_terms(sums, Mih, D, cr2, delta)
        total = terms if total is None else [t + u for t, u in zip(total, terms)]
    TT, gg, hh, gg2, gghh, HH = total
    df = (gg - hh) ** 2 / (gg2 - 2 * gghh + np.sum(HH ** 2, axis=(1, 2)))
    return TT, df


def _variance_terms(sums, Mih, D, cr2, delta):
    """The sums over some clusters that :func:`_cluster_variance` needs: Σ T_i², Σ ‖g_i‖²,
    Σ ‖h_i‖², Σ ‖g_i‖⁴, Σ ‖g_i‖²‖h_i‖² (each over J coordinates) and Σ h_i h_iᵀ (J, s, s)."""
    K = Mih @ sums["SS"] @ Mih  # (n, s, s)
    K = 0.5 * (K + np.swapaxes(K, 1, 2))
    ur, Sr = sums["ur"], sums["Sr"][:, :, None]
    if delta is not None:  # residuals of the debiased fit: r − x_j δ_j
        ur, Sr = ur - delta * sums["ux"], Sr - delta * sums["Sx"]
    Pv = (Mih @ sums["SU"]) / D  # P_i v_i, (n, s, J)
    T = ur / D  # v_iᵀ r_i, (n, J)
    gg = sums["uu"] / D ** 2  # ‖v_i‖²
    # h_i = (I − K_i)^{-1/2} P_iv_i and g(K_i) P_ir_i (CR2); P_iv_i without it
    h, gPr = _cr2_functions(K, Pv, Mih @ Sr) if cr2 else (Pv, None)
    hh = np.sum(h * h, axis=1)
    if cr2:
        T = T + np.sum(Pv * gPr, axis=1)
        gg = gg + hh  # (P_iv_i)ᵀ(I − K_i)⁻¹P_iv_i = ‖h_i‖²
    Hh = np.moveaxis(h, 2, 0)  # (J, n, s)
    return [np.sum(T * T, axis=0), gg.sum(0), hh.sum(0), np.sum(gg ** 2, 0),
            np.sum(gg * hh, 0), np.swapaxes(Hh, 1, 2) @ Hh]


#: clusters whose leverage tr K_i (≥ its largest eigenvalue) is at most this get the
#: CR2 matrix functions from their power series; the others from an eigendecomposition
SERIES_LEVERAGE = 0.02


def _cr2_functions(K, V, R):
    """(I − K_i)^{-1/2} V_i and g(K_i) R_i for every cluster, with
    g(κ) = ((1 − κ)^{-1/2} − 1)/κ.

    K_i is symmetric positive semi-definite with eigenvalues below 1. In large data
    almost every cluster has a small leverage, and the power series in K_i (terms
    until the bound on the remainder is below 1e-16) costs a few batched
    matrix-vector products, where a batched eigendecomposition of the s × s K_i costs
    two thirds of the inference's cluster algebra (measured: 0.3 s for 100,000 clusters
    at s = 6). Clusters of larger leverage use the eigendecomposition.
    """
    leverage = np.trace(K, axis1=1, axis2=2)
    series = leverage <= SERIES_LEVERAGE
    if series.all():
        return _cr2_by_series(K, V, R, leverage.max())
    root, gR = np.empty_like(V), np.empty_like(R)
    if series.any():
        root[series], gR[series] = _cr2_by_series(K[series], V[series], R[series],
                                                  leverage[series].max())
    rest = ~series
    root[rest], gR[rest] = _cr2_by_eigh(K[rest], V[rest], R[rest])
    return root, gR


def _cr2_by_series(K, V, R, top):
    """(1 − κ)^{-1/2} = Σ_m c_m κ^m and g(κ) = Σ_m c_{m+1} κ^m, c_m = C(2m, m)/4^m ≤ 1,
    by Horner's rule on [V, R] at once: the remainder after t terms is below
    κ^t/(1 − κ), κ ≤ tr K_i ≤ ``top`` (the largest leverage, at most SERIES_LEVERAGE)."""
    top = max(float(top), 1e-300)
    terms = int(np.clip(np.ceil(np.log(1e-16) / np.log(min(top, 0.5))), 1, 60))
    m = np.arange(terms + 1)
    c = np.cumprod(np.r_[1.0, (2 * m + 1) / (2 * m + 2)])  # c_0 .. c_{terms+1}
    J = V.shape[2]
    X = np.concatenate([V, R], axis=2)
    coef = np.stack([np.r_[np.full(J, c[i]), np.full(R.shape[2], c[i + 1])] for i in m])
    Y = X * coef[terms]
    for i in range(terms - 1, -1, -1):
        Y = K @ Y
        Y += X * coef[i]
    return Y[:, :, :J], Y[:, :, J:]


def _cr2_by_eigh(K, V, R):
    """The same from the eigendecomposition of each K_i (its eigenvalues capped below 1,
    with a warning: leverage 1 leaves the CR2 adjustment undefined)."""
    kap, E = np.linalg.eigh(K)
    if np.any(kap > 1 - 1e-8):
        warnings.warn("a cluster has leverage 1 on the fitted fixed effects, so its CR2 "
                      "adjustment is undefined and was capped; use small_sample='cr1t'",
                      RuntimeWarning, stacklevel=7)
    root1 = np.sqrt(1 - np.clip(kap, 0.0, 1 - 1e-8))
    g = 1 / (root1 * (1 + root1))  # = ((1 − κ)^{-1/2} − 1)/κ without its cancellation
    Et = np.swapaxes(E, 1, 2)
    root = E @ (Et @ V / root1[:, :, None])
    gR = E @ (g[:, :, None] * (Et @ R))
    return root, gR


def adjust_pvalues(pvalue: np.ndarray, method: str) -> np.ndarray:
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
