"""The PQL working model of a SparseGLMM, in the user's columns, and the hold of its
support (shared by the fit on rows in memory, :mod:`hdlmm.api.glmm_memory`, and the
fit by passes over chunks, :mod:`hdlmm.api.glmm_chunks`)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from hdlmm.api.estimator import SparseLMM
from hdlmm.core.stats import ClusterStats

__all__ = ["WorkingFit", "SupportHold", "warn_not_converged", "laplace_proxy_a", "laplace_eta"]


@dataclass
class WorkingFit:
    """The PQL working model in the user's columns: the last working fit ``model``
    (on the held support's columns once the support is held), the ``support`` and
    ``coef`` (p,) in all columns, ``a``, ``intercept``, ``cov_re`` (Ψ̂ of the working
    LMM) and how the support was chosen (``selection``)."""

    model: SparseLMM
    support: np.ndarray
    coef: np.ndarray
    a: float
    intercept: float
    cov_re: np.ndarray | None
    selection: str

    @classmethod
    def of(cls, model: SparseLMM, cols: np.ndarray | None, p: int, how: str) -> WorkingFit:
        coef = np.asarray(model.coef_, dtype=float)
        support = np.asarray(model.support_, dtype=np.intp)
        if cols is not None:  # fitted on the columns ``cols``
            coef, support = np.zeros(p), cols[support]
            coef[cols] = model.coef_
        return cls(model=model, support=support, coef=coef, a=float(model.a_),
                   intercept=float(model.intercept_), cov_re=model.cov_re_, selection=how)


@dataclass
class SupportHold:
    """The support of the PQL iteration: free until a working fit's support repeats
    the last one, then held, with that fit's k, description and a (the working model
    is then fitted on its columns alone). ``held``: a support to hold from the start,
    at ``a``; ``k`` and ``a`` are those of the free fits until then."""

    k: int | None
    a: float | None
    held: tuple | None = None
    how: str = ""
    last: tuple | None = None

    @property
    def cols(self) -> np.ndarray | None:
        """The held support's columns (None while free or when it is empty)."""
        return np.asarray(self.held, dtype=np.intp) if self.held else None

    def see(self, model: SparseLMM, support: tuple) -> None:
        """Take the working fit ``model``, whose support in all columns is
        ``support``."""
        if self.held is None and support == self.last:
            self.held, self.k, self.how = support, model.support_size_, model.selection_
            self.a = None if np.isnan(model.a_) else model.a_  # (NaN: no candidates)
        self.last = support

    def end(self, model: SparseLMM) -> None:
        """After the last fit: a support never held takes that fit's k and
        description."""
        if self.held is None:
            self.k, self.how = model.support_size_, model.selection_


def warn_not_converged(max_iter: int, change: float) -> None:
    """The warning of a PQL iteration that did not converge in ``max_iter``
    iterations (``change``: the last change of η)."""
    warnings.warn(f"the PQL iteration did not converge in max_iter={max_iter} iterations "
                  f"(last change of η {change:.2g}); the Laplace fit on its last support is "
                  f"reported; increase max_iter", RuntimeWarning, stacklevel=4)


def laplace_proxy_a(stats: ClusterStats, cov_re: np.ndarray, w_mean: float) -> float:
    """The proxy's a that matches the Laplace fit's Ψ̂ for the working statistics
    ``stats`` (weights W normalised by their mean ``w_mean``): the working covariance
    W⁻¹ + ZΨ̂Zᵀ is (W̄⁻¹ + w̄ Z̃Ψ̃Z̃ᵀ)/w̄ with Ψ̃ = M⁻¹Ψ̂M⁻ᵀ in the standardised Z̃'s
    units, whose columns other than the intercept have mean 0; a·I matches w̄Ψ̃ for the
    row at those means (z̃ = e₀: the random-effect variance of the average row), a =
    w̄ Ψ̃₀₀ (exact for a random intercept alone; without an intercept in Z, the mean
    of Ψ̃'s diagonal)."""
    Minv = stats.z_map_inv()
    psi = Minv @ np.atleast_2d(cov_re) @ Minv.T
    k0 = stats.z_one
    return float(w_mean * (psi[k0, k0] if k0 >= 0 else np.trace(psi) / psi.shape[0]))


def laplace_eta(fit: object, X: np.ndarray, Z: np.ndarray, codes: np.ndarray,
                offset: np.ndarray) -> np.ndarray:
    """η of the rows at a Laplace fit (X: the fit's columns, the intercept first;
    codes: each row's cluster)."""
    return offset + X @ fit.coef + np.einsum("ij,ij->i", Z, fit.random_effects[codes])
