"""The tutorial's analysis, done right (what ``hdlmm demo`` runs)."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hdlmm.api.estimator import SparseLMM
from hdlmm.sources.simulate import make_tutorial_data

__all__ = ["run_demo"]

TUTORIAL_L2_ERROR = 0.105  # published in the skscope tutorial (k = 3 given)


def _fit_mixedlm(data):
    """statsmodels MixedLM on all p columns, as the tutorial compares (optional peer)."""
    try:
        from statsmodels.regression.mixed_linear_model import MixedLM
    except ImportError:
        return None, None
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = MixedLM(data.y, data.X, groups=data.groups, exog_re=data.Z).fit()
    return np.asarray(res.fe_params), time.perf_counter() - t0


def run_demo(out: str | os.PathLike = "demo_output", support_size: int | None = None,
             random_state: int | np.random.RandomState | None = 0, echo: Callable = print) -> None:
    """Fit the tutorial's data (m=8, n=15, p=200, q=4, seed 0), compare, plot.

    Returns
    -------
    dict with the fitted model, the data, the errors and the figure path.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # documented: indefinite cov
        data = make_tutorial_data(m=8, n=15, p=200, q=4, seed=0)
    echo("hdlmm demo: the skscope tutorial's linear mixed model, done right")
    echo(f"data: N = {data.X.shape[0]} rows, n = 15 clusters of 8, p = {data.X.shape[1]} "
         f"fixed effects, q = {data.Z.shape[1]} random effects; true support "
         f"{data.support.tolist()} = {data.beta[data.support].tolist()}")
    model = SparseLMM(support_size=support_size, random_state=random_state)
    model.fit(data.X, data.y, groups=data.groups, Z=data.Z)
    err = float(np.linalg.norm(model.coef_ - data.beta))
    echo(f"\nproxy parameter a = {model.a_:g}")
    echo(f"how chosen: {model.selection_}")
    echo(f"selected support (k = {model.support_size_}): {model.support_.tolist()}  "
         f"(true support recovered: {set(model.support_) == set(data.support)})")
    for j in model.support_:
        echo(f"  beta[{j:3d}] = {model.coef_[j]: .4f}   (true {data.beta[j]:g})")
    echo(f"  intercept = {model.intercept_: .4f}   (true 0)")
    sm_coef, sm_time = _fit_mixedlm(data)
    echo("\nl2 error of the fixed effects ||beta_hat - beta||:")
    echo(f"  {'method':<32}{'l2 error':>10}{'time (s)':>10}")
    echo(f"  {'hdlmm SparseLMM':<32}{err:>10.4f}{model.fit_time_:>10.3f}")
    if sm_coef is not None:
        sm_err = float(np.linalg.norm(sm_coef - data.beta))
        echo(f"  {'statsmodels MixedLM (all p)':<32}{sm_err:>10.4f}{sm_time:>10.3f}")
    else:
        sm_err = None
        echo("  statsmodels MixedLM: not installed (pip install 'hdlmm[compare]')")
    echo(f"  {'tutorial, as published (k=3)':<32}{TUTORIAL_L2_ERROR:>10.4f}{'':>10}")
    fig_path = _figure(out, data, model, sm_coef, echo)
    return dict(model=model, data=data, l2_error=err, mixedlm_l2_error=sm_err,
                figure=fig_path)


def _figure(out, data, model, sm_coef, echo):
    try:
        from hdlmm.api.plots import plot_fixed_effects
        fitted = {"hdlmm": data.X @ model.coef_ + model.intercept_}
        if sm_coef is not None:
            fitted = {"statsmodels MixedLM": data.X @ sm_coef, **fitted}
        Path(out).mkdir(parents=True, exist_ok=True)
        fig_path = Path(out) / "fixed_effects.png"
        plot_fixed_effects(data.X @ data.beta, fitted, path=fig_path)
    except ImportError as exc:
        echo(f"\nfigure skipped: {exc}")
        return None
    echo(f"\nfigure (fitted vs true fixed effects): {fig_path.resolve()}")
    from hdlmm.api.plots import plot_cv_curve, plot_path
    if model.cv_results_ is not None:
        plot_cv_curve(model, path=Path(out) / "cv_curve.png")
        echo(f"figure (cross-validation curve over k for each a): "
             f"{(Path(out) / 'cv_curve.png').resolve()}")
    plot_path(model, path=Path(out) / "coef_path.png")
    echo(f"figure (coefficient path): {(Path(out) / 'coef_path.png').resolve()}")
    return fig_path
