"""Writing a fitted model's results (CSV, JSON, plots), atomically: a reader never sees a
half-written file or results folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hdlmm.api.estimator import SparseLMM

import atexit
import contextlib
import json
import os
import platform
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from hdlmm.sources.files import _kind, _pyarrow

__all__ = ["atomic_path", "write_table", "write_text", "coefficient_table", "results_dict",
           "write_results"]


def _temporary(path):
    """A name beside ``path`` for writing it first (renamed over it when complete)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike | None) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` in one rename,
    on any failure or interrupt it is removed, so ``path`` is never half-written."""
    tmp = _temporary(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_table(df: pd.DataFrame, path: str | os.PathLike | None) -> None:
    """Write a DataFrame to CSV or Parquet (by extension), atomically."""
    kind = _kind(path)
    with atomic_path(path) as tmp:
        if kind == "parquet":
            _pyarrow()
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)


def write_text(text: str, path: str | os.PathLike | None) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def coefficient_table(model: SparseLMM, level: float = 0.95) -> pd.DataFrame:
    """Every candidate fixed effect: estimate, selected, GLS SE, and debiased inference."""
    names = list(model.params_.index)
    free = 1 if model.stats_.intercept else 0
    tab = pd.DataFrame({"feature": names, "estimate": model.params_.to_numpy(),
                        "selected": [True] * free + list(model.coef_ != 0)})
    forced = set(getattr(model, "forced_features_", []))
    tab["forced"] = [False] * free + [n in forced for n in names[free:]]  # by `force`
    tab["gls_std_err"] = model.bse_.to_numpy()
    tab["proxy_estimate"] = np.r_[[model.intercept_proxy_] * free, model.coef_proxy_]
    inf = model.inference_
    if inf is not None:
        inf_tab = inf.table(level).reset_index()
        inf_tab.columns = ["feature"] + [f"debiased_{c}" if c != "debiased" else c
                                         for c in inf_tab.columns[1:]]
        tab = tab.merge(inf_tab, on="feature", how="left")
    return tab


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    return obj


def results_dict(model: SparseLMM, level: float = 0.95, argv: list[str] | None = None) -> dict:
    """Everything a report needs, as plain JSON-able values."""
    import scipy
    import sklearn

    from hdlmm._version import __version__

    vc = model.variance_components_
    free = 1 if model.stats_.intercept else 0
    names = list(model.params_.index)
    out = {
        "formula": getattr(model, "formula_", None),
        "column_types": getattr(model, "column_types_", None),
        "n_observations": model.stats_.n_samples,
        "n_clusters": model.stats_.n_clusters,
        "a": model.a_, "support_size": model.support_size_,
        "selection": model.selection_,
        "support": [names[j + free] for j in model.support_],
        "forced": list(getattr(model, "forced_features_", [])),
        "intercept": model.intercept_ if free else None,
        "estimates": {names[j + free]: model.coef_[j] for j in model.support_},
        "variance_components": None if vc is None else {
            "method": vc.method, "cov_re": vc.cov_re,
            "random_effects": list(model.random_effects_.columns),
            "residual_variance": vc.scale, "criterion": vc.criterion,
            "boundary": vc.boundary},
        "inference": None,
        "cv_results": None if model.cv_results_ is None else
        model.cv_results_.to_dict(orient="list"),
        "params": model.get_params(),
        "versions": {"hdlmm": __version__, "python": platform.python_version(),
                     "numpy": np.__version__, "scipy": scipy.__version__,
                     "pandas": pd.__version__, "scikit-learn": sklearn.__version__},
        "command_line": list(sys.argv if argv is None else argv),
    }
    if model.inference_ is not None:
        out["inference"] = _inference_record(model.inference_, level)
    return _jsonable(out)


def _inference_record(inference, level):
    """The debiased inference as results.json holds it."""
    return {"method": inference.method, "level": level,
            "table": inference.table(level).reset_index().to_dict(orient="records")}


def write_results(model: SparseLMM, out: str | os.PathLike, level: float = 0.95,
                  argv: list[str] | None = None, plots: bool = True) -> list:
    """Write coefficients.csv, results.json and (with matplotlib) the plots to ``out``.

    Returns
    -------
    list of the written paths
    """
    def draw(folder):
        from hdlmm.api.plots import (
            plot_cv_curve,
            plot_path,
            plot_random_effects,
            plot_residuals,
        )

        plot_path(model, path=folder / "coef_path.png")
        if model.cv_results_ is not None:
            plot_cv_curve(model, path=folder / "cv_curve.png")
        if model.random_effects_ is not None:
            plot_residuals(model, path=folder / "residuals.png")
            plot_random_effects(model, path=folder / "random_effects.png")

    return _write_folder(out, coefficient_table(model, level),
                         results_dict(model, level, argv), draw if plots else None)


def write_glmm_results(model: object, out: str | os.PathLike, argv: list[str] | None = None,
                       level: float = 0.95, plots: bool = True) -> list:
    """Write coefficients.csv (every candidate: estimate, selected, Wald SE and p-value,
    and the debiased estimate, SE, p-value and interval where computed), results.json
    and (with matplotlib) cv_curve.png and random_effects.png of a fitted
    :class:`hdlmm.SparseGLMM` to ``out`` (atomically)."""
    table = pd.DataFrame({"feature": model.params_.index, "estimate": model.params_.values,
                          "selected": [True] + list(model.coef_ != 0),
                          "wald_std_err": model.bse_.values,
                          "wald_pvalue": model.pvalues_.values})
    names = list(model.params_.index)
    results = {"family": model.family, "formula": getattr(model, "formula_", None),
               "support": [names[j + 1] for j in model.support_],
               "support_size": model.support_size_, "a": model.a_,
               "selection": model.selection_, "intercept": model.intercept_,
               "estimates": {names[j + 1]: model.coef_[j] for j in model.support_},
               "cov_re": model.cov_re_, "loglik": model.loglik_,
               "pql_iterations": model.n_iter_, "command": argv}
    if model.inference_ is not None:
        debiased = model.inference_.table(level).rename(
            columns=lambda c: "debiased_estimate" if c == "debiased" else f"debiased_{c}")
        table = table.merge(debiased, left_on="feature", right_index=True, how="left")
        results["inference"] = _inference_record(model.inference_, level)

    def draw(folder):
        from hdlmm.api.plots import plot_cv_curve, plot_random_effects

        if model.cv_results_ is not None:
            plot_cv_curve(model, path=folder / "cv_curve.png")
        plot_random_effects(model, path=folder / "random_effects.png")

    return _write_folder(out, table, _jsonable(results), draw if plots else None)


def _write_folder(out, table, results, draw):
    """coefficients.csv (``table``), results.json (``results``, JSON-ready) and what
    ``draw(folder)`` plots (skipped without matplotlib) in the folder ``out``, written
    whole or not at all: an earlier run's results stay until this one is complete."""
    out = Path(out)
    _check_output_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        table.to_csv(tmp / "coefficients.csv", index=False)
        (tmp / "results.json").write_text(json.dumps(results, indent=2, allow_nan=False))
        if draw is not None:
            try:
                draw(tmp)
            except ImportError:
                pass
        written = sorted(p.name for p in tmp.iterdir())
        if out.exists():
            _retire(out)
    return [out / name for name in written]


#: the files ``write_results`` writes: an existing --out folder may hold only these
OUTPUT_FILES = {"coefficients.csv", "results.json", "coef_path.png", "cv_curve.png",
                "residuals.png", "random_effects.png"}


def _check_output_folder(out):
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; give a folder for the results")
    if out.is_dir():
        other = sorted(p.name for p in out.iterdir() if p.name not in OUTPUT_FILES)
        if other:
            raise ValueError(f"--out folder {str(out)!r} holds files that are not hdlmm "
                             f"results ({other[:5]}); give an empty or new folder")


def _retire(out):
    """Move an earlier run's results folder aside (removed once the new one is in
    place), so that the folder never mixes two runs."""
    old = out.with_name(f".{out.name}.{os.getpid()}.old")
    os.replace(out, old)
    atexit.register(shutil.rmtree, old, ignore_errors=True)
