"""Plots (matplotlib is an optional extra, imported only here and only when called)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from hdlmm.api.estimator import SparseLMM

import numpy as np

__all__ = ["plot_fixed_effects", "plot_cv_curve", "plot_path"]


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


def plot_cv_curve(model: SparseLMM, path: str | os.PathLike | None = None,
                  ax: object = None) -> object:
    """Held-out criterion against k, one line (with ±1 SE band) per value of a."""
    plt = _pyplot()
    if getattr(model, "cv_results_", None) is None:
        raise ValueError("the model has no cross-validation results; fit it with a=None "
                         "or k_selection='cv'")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    for a, tab in model.cv_results_.groupby("a"):
        line, = ax.plot(tab["k"], tab["mean"], marker="o", ms=3, label=f"a = {a:.3g}")
        ax.fill_between(tab["k"], tab["mean"] - tab["se"], tab["mean"] + tab["se"],
                        color=line.get_color(), alpha=0.12)
    ax.axvline(model.support_size_, color="k", ls=":", label="chosen k")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("support size k")
    ax.set_ylabel("held-out criterion")
    ax.legend(fontsize=7)
    return _finish(ax, path)


def plot_path(model: SparseLMM, path: str | os.PathLike | None = None, ax: object = None,
              names: Sequence[str] | None = None) -> object:
    """Coefficient path: each fixed effect's estimate against the support size k."""
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    coefs = np.vstack(model.path_["coef"].to_numpy())
    ks = model.path_["k"].to_numpy()
    active = np.flatnonzero(np.any(coefs != 0, axis=0))
    if names is None:  # the fitted column names (from a DataFrame or a formula)
        names = model.stats_.feature_names[1 if model.stats_.intercept else 0:]
    for j in active:
        label = names[j]
        ax.plot(ks, coefs[:, j], marker=".", label=label if j in model.support_ else None)
    ax.axvline(model.support_size_, color="k", ls=":")
    ax.set_xlabel("support size k")
    ax.set_ylabel("coefficient")
    ax.legend(fontsize=7)
    return _finish(ax, path)
