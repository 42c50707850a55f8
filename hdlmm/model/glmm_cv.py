"""Choosing the support size k and the proxy parameter a of a GLMM by grouped
cross-validation on the held-out deviance.

At the converged PQL working model (working response z and weights W, normalised to
mean w̄ = 1 as in :class:`hdlmm.SparseLMM`; Var(z) ≈ W⁻¹ + ZΨZᵀ), the clusters are dealt
into K folds. For each a and fold f, the best-subset path k = 0..k_max is computed on the
other folds' whitened cross-products (proxy W⁻¹ + aZ̃Z̃ᵀ, Z̃ the standardised random-effect
columns: the statistics' "total − fold", as for the Gaussian CV), and each β̂(k) is
scored on the held-out clusters by their marginal deviance under the family, with the
random effects of those new clusters integrated out:

    −2 log ∫ p(y_i | β̂, γ) φ(γ; 0, Ψ_a) dγ ≈ −2 log p(y_i | û_i) + ‖û_i‖² + log|H_i|

(the Laplace approximation, as glmer's; û_i by PIRLS, batched over k), per row of the
fold. The proxy's Ψ_a = (a / w̄) I in Z̃'s units is the random-effect covariance the
working model assumed at a (the GLMM has no dispersion: σ² = 1), so at a = 0 the score
is the held-out GLM deviance and a is judged, with k, by how well the held-out clusters
are predicted. This is the Gaussian ``cv_criterion="loglik"`` carried to the family's
likelihood (the Gaussian marginal likelihood of the held-out z would judge the working
model instead of the data).

The choice (:func:`choose_by_deviance`): ``k_selection="cv"`` takes the (a, k) of the
smallest mean deviance over the folds, then lowers k at that a to the sparsest k whose
excess over the folds is not significant (one-sided 5%, paired over folds, as
SparseLMM's ``one_se="paired"``); ``"ic"`` keeps the working model's k (EBIC at its
maximum-likelihood a), chooses a among the cells of that k, then lowers k by the same
paired rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hdlmm.core.stats import ClusterStats
from hdlmm.core.transform import ProxyTransform
from hdlmm.model.a_grid import coarse_grid, new_neighbours
from hdlmm.model.families import Family
from hdlmm.model.glmm import conditional_modes
from hdlmm.model.path import fit_path
from hdlmm.model.tuning import CVResult

__all__ = ["HeldOutRows", "deviance_cv", "choose_by_deviance"]


@dataclass
class HeldOutRows:
    """The rows the held-out deviance is computed on, in the statistics' units.

    Built by :meth:`from_stats`: Z̃, y, trials, offset + the shift of z, each row's
    fold and cluster index, and the columns of X, standardised as the statistics',
    loaded only when a candidate β̂ uses them (``load(cols)`` returns the raw columns
    ``cols`` of X for every row: a slice in memory, a pass over a file).
    """

    Z: np.ndarray
    y: np.ndarray
    trials: np.ndarray
    offset: np.ndarray
    fold: np.ndarray
    cluster: np.ndarray
    x_shift: np.ndarray
    x_scale: np.ndarray
    load: Callable[[np.ndarray], np.ndarray]
    columns: dict = field(default_factory=dict)
    folds: dict = field(default_factory=dict)

    @classmethod
    def from_stats(cls, stats: ClusterStats, load: Callable[[np.ndarray], np.ndarray],
                   Z: np.ndarray, y: np.ndarray, trials: np.ndarray, offset: np.ndarray,
                   row_labels: np.ndarray) -> HeldOutRows:
        """The rows (``load`` for X's columns, Z, y, trials, offset, cluster labels)
        standardised as ``stats`` (which must have an intercept column)."""
        Zs = (Z - stats.z_shift) / stats.z_scale
        cluster = stats.cluster_index(row_labels)
        return cls(Z=Zs, y=y, trials=trials, offset=offset + stats.y_shift,
                   fold=stats.block[cluster], cluster=cluster, x_shift=stats.x_shift,
                   x_scale=stats.x_scale, load=load)

    def ensure(self, cols: np.ndarray) -> None:
        """Load the statistics' columns ``cols`` (≥ 1; 0 is the intercept) not loaded
        yet, in one call of ``load``."""
        missing = [int(c) for c in cols if c > 0 and int(c) not in self.columns]
        if missing:
            values = self.load(np.asarray(missing) - 1)
            for i, c in enumerate(missing):
                self.columns[c] = (values[:, i] - self.x_shift[c]) / self.x_scale[c]

    def fixed(self, coefs: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """X̃β̃ + offset of ``rows`` for each β̃ in ``coefs`` (m, p + 1)."""
        used = np.flatnonzero(np.any(coefs[:, 1:] != 0, axis=0)) + 1
        self.ensure(used)
        out = coefs[:, :1] + self.offset[rows]
        for c in used:
            out = out + coefs[:, c:c + 1] * self.columns[int(c)][rows]
        return out

    def fold_rows(self, f: int) -> tuple:
        """(rows of fold f sorted by cluster, the first row of each cluster), computed
        once per fold (every value of a scores the same folds)."""
        if f not in self.folds:
            rows = np.flatnonzero(self.fold == f)
            rows = rows[np.argsort(self.cluster[rows], kind="stable")]
            self.folds[f] = rows, np.unique(self.cluster[rows], return_index=True)[1]
        return self.folds[f]


def heldout_deviance(rows: HeldOutRows, f: int, coefs: np.ndarray, psi_scale: float,
                     family: Family) -> np.ndarray:
    """Marginal deviance per row of fold f (Laplace; module docstring) of each
    coefficient vector in ``coefs`` (m, p + 1), with Ψ = ``psi_scale`` · I."""
    idx, first = rows.fold_rows(f)
    fixed = rows.fixed(coefs, idx)  # (m, N_f)
    ZL = rows.Z[idx] * np.sqrt(psi_scale)
    y, m = rows.y[idx], rows.trials[idx]
    _, obj, H = conditional_modes(fixed, ZL, first, y, m, family)
    dev = obj.sum(axis=1) + np.linalg.slogdet(H)[1].sum(axis=1)
    return dev / idx.size


def deviance_cv(stats: ClusterStats, rows: HeldOutRows, family: Family, a_values: list,
                k_max: int, units: list | None = None, max_exchange: int = 2,
                transform: ProxyTransform | None = None,
                free: list | None = None) -> CVResult:
    """Held-out deviance per (a, fold, k) for k = 0..k_max (module docstring).

    ``stats``: standardised, weighted statistics of the working model with K ≥ 2 fold
    blocks and an intercept column; ``units``: groups of columns of the statistics
    selected together; ``free``: the unpenalised columns (default the intercept, [0];
    forced columns follow it). The fold paths of every a are computed first, then the
    columns they use are loaded at once (one pass over the rows of a file)."""
    transform = transform or ProxyTransform(stats)
    w_mean = float(stats.xtx_total[0, 0] / stats.n_rows.sum())  # Σw / N: 1 if normalised
    K = stats.n_blocks
    scores = np.full((len(a_values), K, k_max + 1), np.nan)
    transform.prepare(a_values)
    paths = {}
    for ia, a in enumerate(a_values):
        qa = transform.at(a)
        for f in range(K):
            G, c, d, _, _ = qa.without(f)
            paths[ia, f] = fit_path(G, c, d, k_max, free=free or [0],
                                    max_exchange=max_exchange, units=units).coefs
    used = np.flatnonzero(np.any(np.vstack(list(paths.values()))[:, 1:] != 0, axis=0))
    rows.ensure(used + 1)
    for (ia, f), coefs in paths.items():
        scores[ia, f, :coefs.shape[0]] = heldout_deviance(rows, f, coefs,
                                                          a_values[ia] / w_mean, family)
    return CVResult(a_grid=np.asarray(a_values, dtype=float), ks=np.arange(k_max + 1),
                    scores=scores)


def choose_by_deviance(stats: ClusterStats, rows: HeldOutRows, family: Family,
                       a_grid: np.ndarray, k_max: int, k_ic: int | None = None,
                       units: list | None = None, max_exchange: int = 2,
                       lower: bool = True, k_start: int | None = None,
                       free: list | None = None) -> tuple:
    """(a, k, CVResult, description): the choice of the module docstring, with a
    searched locally on ``a_grid`` (every third value, then the neighbours of the
    choice until both are evaluated, as SparseLMM's ``a_search="refine"``).

    ``k_ic``: the working model's k (``k_selection="ic"``) or a given k, or None
    (``"cv"``); ``lower``: lower k by the paired rule (False for a given k); ``free``:
    the unpenalised columns (:func:`deviance_cv`).
    With ``k_ic`` None the fold paths run to ``k_start`` first (default k_max) and are
    extended (doubled, up to k_max) while the best k lies in the top quarter of the
    range computed, so that long paths are computed only where the held-out deviance
    may still fall at large k."""
    transform = ProxyTransform(stats)
    k_paths = k_ic if k_ic is not None else min(k_max, k_start or k_max)
    while True:
        a, ik, res, seen = _search_a(stats, rows, family, a_grid, k_paths, k_ic, units,
                                     max_exchange, lower, transform, free)
        k_best = int(res.best(False)[1])
        if k_ic is not None or k_paths >= k_max or k_best < 0.75 * k_paths:
            break
        k_paths = min(k_max, 2 * k_paths)
    k = int(res.ks[ik])
    how = (f"a and k by {stats.n_blocks}-fold grouped CV on the held-out deviance"
           if k_ic is None else
           f"k = {k_ic} given or by EBIC on the working model, a by {stats.n_blocks}-fold "
           f"grouped CV on the held-out deviance at that k")
    if lower:
        how += ("; then the sparsest k not significantly worse in CV (paired over folds, "
                f"one-sided 5%): {k}")
    how += f"; {len(seen)} of the {len(a_grid)} values of a evaluated"
    return a, k, res, how


def _search_a(stats, rows, family, a_grid, k_paths, k_ic, units, max_exchange, lower,
              transform, free=None):
    """The local search over a (see :func:`choose_by_deviance`) with paths to
    ``k_paths``: (a, index of k, CVResult, the values of a evaluated)."""
    seen = coarse_grid(a_grid)
    res = deviance_cv(stats, rows, family, seen, k_paths, units, max_exchange, transform,
                      free)
    while True:
        k_of_a = None if k_ic is None else np.full(res.a_grid.size, k_ic)
        ia, ik = res.best("paired" if lower else False, k_of_a=k_of_a)
        a = float(res.a_grid[ia])
        todo = new_neighbours(a_grid, a, seen)
        if not todo:
            return a, ik, res, seen
        seen = sorted(seen + todo)
        res = res.merge(deviance_cv(stats, rows, family, todo, k_paths, units,
                                    max_exchange, transform, free))
