"""Nodewise lasso on a Gram matrix: the decorrelating directions of the debiased estimator.

For each requested column j of a design whose Gram matrix is G (p × p, N rows), the
nodewise lasso is

    κ̂_j = argmin_κ  (1/2N) ‖x_j − X_{−j} κ‖² + λ_j ‖κ‖₁,

written here through u_j = e_j − κ̂_j (u_jj = 1) as (1/2N) u_jᵀ G u_j + λ_j Σ_{l≠j} |u_jl|,
so only G is needed: the rows are never touched. All requested columns are solved at
once by FISTA on a p × J matrix (one p × p by p × J product per iteration, compiled:
:mod:`hdlmm.inference._fista_kernel`), which is what makes "all p intervals" a matter
of seconds at p = 1000.

Penalty: the scaled lasso (Sun & Zhang 2012, Biometrika 99:879, doi:10.1093/biomet/ass043),
λ_j = σ̂_j λ₀ with λ₀ = √(2 log p / N) and σ̂_j² = u_jᵀGu_j / N re-estimated until it settles,
so the penalty follows each column's own residual scale. ``penalty=0`` is the exact
projection (κ̂_j the least-squares coefficients, u_j ∝ G⁻¹e_j), valid when G is
non-singular.
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import ArrayLike

from hdlmm.core._kernel_matrix import read_only
from hdlmm.core._threads import default_blas_threads
from hdlmm.core.splicing import _inverse_pd
from hdlmm.inference._fista_kernel import fista, largest_ritz_value

__all__ = ["nodewise_lasso", "NodewiseResult"]

#: p up to which λ_max comes from a full ``eigvalsh`` (cheaper than Lanczos there)
LANCZOS_MIN_P = 50


class NodewiseResult:
    """Decorrelating directions u_j (columns of ``U``) and their penalty levels.

    Attributes
    ----------
    U : ndarray of shape (p, J)
        u_j = e_j − κ̂_j.
    lam : ndarray of shape (J,)
        Penalty λ_j used (0 for the exact projection).
    converged : bool
    """

    def __init__(self, U: np.ndarray, lam: np.ndarray, converged: bool) -> None:
        self.U, self.lam, self.converged = U, lam, converged


def nodewise_lasso(G: np.ndarray, cols: ArrayLike, n_samples: int, penalty: str | float = "scaled",
                   max_iter: int = 5000, tol: float = 1e-4,
                   n_scale_iter: int = 8) -> NodewiseResult:
    """Nodewise lasso of each column in ``cols`` on all the others, from the Gram matrix.

    Parameters
    ----------
    G : ndarray of shape (p, p)
        Gram matrix XᵀX of the (transformed) design.
    cols : array-like of int
        Columns j to decorrelate.
    n_samples : float
        N, the number of rows behind G (scales the penalty).
    penalty : "scaled", float ≥ 0
        "scaled": the scaled lasso (λ_j = σ̂_j √(2 log p / N)); a float: that λ₀ times
        σ̂_j, still scaled; 0: the exact projection (requires G non-singular).
    max_iter : int
        FISTA iteration limit per update of σ̂.
    tol : float
        Stop when the optimality (KKT) conditions hold to ``tol · λ_j``.
    n_scale_iter : int
        Outer updates of σ̂_j for the scaled lasso.

    Returns
    -------
    NodewiseResult
    """
    G = np.asarray(G, dtype=float)
    cols = np.asarray(cols, dtype=np.intp)
    p = G.shape[0]
    if isinstance(penalty, str):
        if penalty != "scaled":
            raise ValueError(f"penalty must be 'scaled' or a number ≥ 0; got {penalty!r}")
        lam0 = np.sqrt(2.0 * np.log(max(p, 2)) / n_samples)
    else:
        lam0 = float(penalty)
        if not np.isfinite(lam0) or lam0 < 0:
            raise ValueError(f"penalty must be 'scaled' or a number ≥ 0; got {penalty!r}")
    if lam0 == 0.0 or p == 1:
        return _projection(G, cols)
    with default_blas_threads(100.0 * G.shape[0] ** 2 * cols.size):  # ~50 products
        return _scaled_fista(G, cols, n_samples, lam0, max_iter, tol, n_scale_iter)


def _projection(G, cols):
    """u_j = G⁻¹e_j / (G⁻¹)_jj: the least-squares residual direction of column j."""
    Ginv = _inverse_pd(G, strict=True)  # singular relative to each column's scale
    if Ginv is None:
        raise ValueError("the Gram matrix is singular, so the exact projection "
                         "(nodewise_penalty=0) does not exist; use "
                         "nodewise_penalty='scaled'")
    Ginv_cols = Ginv[:, cols]
    U = Ginv_cols / Ginv_cols[cols, np.arange(cols.size)]
    return NodewiseResult(U, np.zeros(cols.size), True)


def _scaled_fista(G, cols, n, lam0, max_iter, tol, n_scale_iter):
    G = read_only(G)  # (the kernel's type; a cached G is read-only, and not copied)
    cols = cols.astype(np.int64)
    p, J = G.shape[0], cols.size
    idx = np.arange(J)
    L = _largest_eigenvalue(G) / n  # Lipschitz constant of the smooth part
    U = np.zeros((p, J))
    U[cols, idx] = 1.0
    sigma = np.sqrt(np.diag(G)[cols] / n)
    converged = True
    for _ in range(n_scale_iter):
        lam = sigma * lam0
        U, ok = fista(G, U, cols, float(n), lam, L, max_iter, tol)
        converged &= ok
        new_sigma = np.sqrt(np.maximum(np.einsum("ij,ij->j", U, G @ U), 0) / n)
        if np.allclose(new_sigma, sigma, rtol=1e-4, atol=0):
            sigma = new_sigma
            break
        sigma = new_sigma
    if not converged:
        warnings.warn(f"the nodewise lasso behind the debiased intervals did not "
                      f"converge in {max_iter} iterations (strongly correlated columns); "
                      f"the intervals of the tested columns may be less accurate. Check "
                      f"for nearly collinear columns, or with p < N use "
                      f"nodewise_penalty=0 (the exact projection)",
                      RuntimeWarning, stacklevel=3)
    return NodewiseResult(U, lam, converged)  # the λ_j that U solves exactly


def _largest_eigenvalue(G):
    """An upper bound of λ_max(G) for FISTA's step (G positive semi-definite): exact for
    small p, else compiled Lanczos (a fixed random start, full reorthogonalisation) to
    ARPACK's relative residual of 1e-4, times 1.01. Lanczos reaches the top of the
    spectrum in tens of products with G where power iteration takes its full 100 when
    the top eigenvalues are close (as in random designs); compiled, it avoids ARPACK's
    Python round trip per product: 0.23 against 0.59 ms at p = 200 (``eigsh``), 7.1
    against 8.1 ms at p = 1,000 (``docs/decisions.md``)."""
    p = G.shape[0]
    if p <= LANCZOS_MIN_P:
        return float(np.linalg.eigvalsh(G)[-1])
    v0 = np.random.default_rng(0).standard_normal(p)
    top = largest_ritz_value(read_only(G), v0, 1e-4, 300)
    return float(top) * 1.01  # a safe upper bound: a too small L would diverge
