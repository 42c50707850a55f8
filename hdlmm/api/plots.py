"""Plots (matplotlib is an optional extra, imported only here and only when called)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from hdlmm.api.estimator import SparseLMM

import numpy as np

__all__ = ["full_cv_results", "plot_fixed_effects", "plot_cv_curve", "plot_path",
           "plot_random_effects", "plot_residuals"]


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("plotting needs matplotlib: pip install 'hdlmm[plot]'") from None
    return plt


def _finish(ax, path):
    """Write the axes' figure to ``path`` (PNG) if given; return the figure."""
    fig = ax.figure
    if path is not None:
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    return fig


def plot_fixed_effects(true_fe: ArrayLike, fitted: ArrayLike, path: str | os.PathLike | None = None,
                       ax: object = None) -> object:
    """Scatter of fitted against true fixed effects Xβ, with the identity line.

    Parameters
    ----------
    true_fe : ndarray of shape (N,)
        X β of the truth.
    fitted : dict of str -> ndarray of shape (N,)
        X β̂ of each method, by label.
    path : str or Path, optional
        Write the figure to this PNG file.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Figure
    """
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    colors = ["deepskyblue", "darkorange", "seagreen", "orchid"]
    for (label, fe), col in zip(fitted.items(), colors):
        ax.scatter(true_fe, fe, s=14, alpha=0.8, label=label, color=col)
    lo, hi = float(np.min(true_fe)), float(np.max(true_fe))
    ax.plot([lo, hi], [lo, hi], "r--", label="identity")
    ax.set_xlabel("true fixed effect Xβ")
    ax.set_ylabel("fitted fixed effect Xβ̂")
    ax.legend()
    return _finish(ax, path)


def full_cv_results(model: SparseLMM) -> object:
    """The CV table of ``model`` over the whole k range (0..k_max) at every value of a
    it evaluated: the fit computes the held-out criterion only up to the k the
    information criterion allows at each a, so the missing cells are computed here from
    the kept statistics (``stats_``, with its folds), by the fit's own search."""
    from hdlmm.model.selection import Selector
    from hdlmm.model.settings import SelectionSettings
    from hdlmm.model.tuning import cross_validate

    table = model.cv_results_
    settings = SelectionSettings.from_params(model.get_params())
    lead = 1 if model.stats_.intercept else 0
    names = list(model.stats_.feature_names[lead:])
    forced = [names.index(n) for n in getattr(model, "forced_features_", [])]
    groups = [[names.index(n) for n in g] for g in getattr(model, "feature_groups_", [])]
    selector = Selector(model.stats_, settings, forced=forced, feature_groups=groups)
    k_max = selector.k_max()
    if table["mean"].notna().groupby(table["a"]).sum().min() > k_max:
        return table  # already complete
    a_values = sorted(table["a"].unique())
    return cross_validate(selector.transform, a_values, k_max, free=selector.free,
                          units=selector.units, criterion=settings.cv_criterion,
                          max_exchange=settings.max_exchange).table()


def plot_cv_curve(model: SparseLMM, path: str | os.PathLike | None = None,
                  ax: object = None, full: bool = True) -> object:
    """Held-out criterion against k, one line per value of a (the chosen one with its
    ±1 SE band), over the whole k range (``full``; see :func:`full_cv_results`), the
    chosen (a, k) marked."""
    plt = _pyplot()
    if getattr(model, "cv_results_", None) is None:
        raise ValueError("the model has no cross-validation results; fit it with a=None "
                         "or k_selection='cv'")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 5))
    full = full and hasattr(model, "stats_")  # a SparseGLMM's table is already whole
    table = full_cv_results(model) if full else model.cv_results_
    colors = plt.cm.viridis(np.linspace(0, 0.9, table["a"].nunique()))
    for (a, tab), color in zip(table.groupby("a"), colors):
        tab = tab.dropna(subset=["mean"])
        chosen = np.isclose(a, model.a_)
        ax.plot(tab["k"], tab["mean"], marker="o", ms=3, color=color, lw=2 if chosen else 1,
                label=f"a = {a:.3g}" + (" (chosen)" if chosen else ""))
        if chosen:  # one band, the chosen a's, keeps the figure readable
            ax.fill_between(tab["k"], tab["mean"] - tab["se"], tab["mean"] + tab["se"],
                            color=color, alpha=0.15)
    at = table[np.isclose(table["a"], model.a_) & (table["k"] == model.support_size_)]
    ax.plot(at["k"], at["mean"], marker="*", ms=16, color="red", ls="none",
            label=f"chosen: a = {model.a_:.3g}, k = {model.support_size_}", zorder=5)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("support size k")
    criterion = getattr(model, "cv_criterion", "deviance per row")
    ax.set_ylabel(f"held-out criterion ({criterion}, mean ± SE over folds)")
    ax.set_title(f"Grouped {model.cv}-fold cross-validation")
    ax.legend(fontsize=7, ncol=2)
    return _finish(ax, path)


def plot_path(model: SparseLMM, path: str | os.PathLike | None = None, ax: object = None,
              names: Sequence[str] | None = None, max_labels: int = 12) -> object:
    """Coefficient path: each fixed effect's estimate against the support size k (the
    selected effects labelled, at most ``max_labels`` of them by size, the chosen k
    marked)."""
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 5))
    coefs = np.vstack(model.path_["coef"].to_numpy())
    ks = model.path_["k"].to_numpy()
    active = np.flatnonzero(np.any(coefs != 0, axis=0))
    if names is None:  # the fitted column names (from a DataFrame or a formula)
        names = list(model.params_.index[model.params_.size - model.coef_.size:])
    chosen = set(model.support_.tolist())
    labelled = sorted(chosen, key=lambda j: -abs(model.coef_proxy_[j]))[:max_labels]
    colors = plt.cm.tab10(np.arange(10))
    styles = ["-", "--", "-.", ":"]
    rank = {j: i for i, j in enumerate(sorted(chosen))}  # distinct colour, then style
    for j in active:
        on = j in chosen
        i = rank.get(j, 0)
        ax.plot(ks, coefs[:, j], marker="." if on else None, color=colors[i % 10] if on
                else "0.75", ls=styles[(i // 10) % 4] if on else "-", lw=1.5 if on else 0.8,
                label=names[j] if j in labelled else None, zorder=3 if on else 1)
    ax.axvline(model.support_size_, color="k", ls=":", label=f"chosen k = "
               f"{model.support_size_}")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("support size k")
    ax.set_ylabel("coefficient (proxy estimate at the chosen a)")
    ax.set_title(f"Best-subset path at a = {model.a_:.3g} (grey: not selected)")
    ax.legend(fontsize=7, ncol=2 if len(labelled) > 6 else 1)
    return _finish(ax, path)


def plot_residuals(model: SparseLMM, path: str | os.PathLike | None = None) -> object:
    """Scaled conditional residuals against fitted values, and their normal QQ plot."""
    plt = _pyplot()
    from scipy import stats as sps

    resid = model.residuals(scaled=True).to_numpy()
    fitted = model.fitted().to_numpy()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.5))
    left.scatter(fitted, resid, s=8, alpha=0.5)
    left.axhline(0, color="r", ls="--")
    left.set_xlabel("fitted value Xβ̂ + Zγ̂")
    left.set_ylabel("scaled residual (y − fitted) / σ̂")
    left.set_title("Residuals against fitted values")
    (theory, ordered), _ = sps.probplot(resid, dist="norm")
    right.scatter(theory, ordered, s=8, alpha=0.5)
    lo, hi = theory.min(), theory.max()
    right.plot([lo, hi], [lo, hi], "r--")
    right.set_xlabel("normal quantile")
    right.set_ylabel("scaled residual")
    right.set_title("Normal QQ plot of the residuals")
    return _finish(left, path)


def plot_random_effects(model: SparseLMM, path: str | os.PathLike | None = None,
                        level: float = 0.95, max_clusters: int = 60) -> object:
    """Caterpillar plot: each cluster's BLUP (a SparseGLMM's conditional mode) with its
    conditional interval, sorted, one panel per random effect (at most
    ``max_clusters`` clusters, evenly spread)."""
    plt = _pyplot()
    from scipy import stats as sps

    from hdlmm.api.prediction import conditional_covariances

    if model.random_effects_ is None:
        raise ValueError("the model has no random effects (fit with groups and vc_method)")
    blups = model.random_effects_
    cov = getattr(model, "random_effects_cov_", None)  # a SparseGLMM's (Laplace)
    cov = conditional_covariances(model) if cov is None else cov
    sd = np.sqrt(np.clip(np.einsum("nii->ni", cov), 0, None))
    z = sps.norm.ppf(0.5 + level / 2)
    q = blups.shape[1]
    fig, axes = plt.subplots(1, q, figsize=(4 * q + 1, 6), squeeze=False)
    for i, ax in enumerate(axes[0]):
        order = np.argsort(blups.iloc[:, i].to_numpy())
        if order.size > max_clusters:
            order = order[np.linspace(0, order.size - 1, max_clusters).astype(int)]
        y = np.arange(order.size)
        ax.errorbar(blups.iloc[order, i], y, xerr=z * sd[order, i], fmt="o", ms=3,
                    elinewidth=0.8)
        ax.axvline(0, color="r", ls="--")
        ax.set_yticks(y)
        ax.set_yticklabels([str(v) for v in blups.index[order]], fontsize=6)
        what = "BLUP" if getattr(model, "random_effects_cov_", None) is None else "mode"
        ax.set_xlabel(f"{what} ± {level:.0%} conditional interval")
        ax.set_title(str(blups.columns[i]))
    axes[0][0].set_ylabel(getattr(model, "group_name_", None) or "cluster")
    fig.suptitle("Random effects by cluster")
    return _finish(axes[0][0], path)
