"""Reading data files and writing a fitted model's results (CSV, JSON, Parquet).

Parquet needs the optional dependency pyarrow (``pip install 'hdlmm[io]'``).
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["read_table", "write_table", "coefficient_table", "results_dict",
           "write_results"]

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")


def _pyarrow():
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ImportError("Parquet files need the optional dependency pyarrow: "
                          "pip install 'hdlmm[io]'") from None


def _kind(path):
    suffix = Path(path).suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    raise ValueError(f"cannot tell the format of {str(path)!r} from its extension; use "
                     f"one of {CSV_SUFFIXES + PARQUET_SUFFIXES}")


def read_table(path, sep=None):
    """Read a CSV (``sep`` default: ',' or tab for .tsv) or Parquet file into a DataFrame,
    with one-line errors for the usual problems (missing, empty, corrupt, wrong
    delimiter)."""
    path = Path(path)
    kind = _kind(path)
    if not path.is_file():
        raise ValueError(f"data file {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"data file {str(path)!r} is empty")
    if kind == "parquet":
        _pyarrow()
        try:
            df = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise ValueError(f"cannot read Parquet file {str(path)!r}: "
                             f"{str(exc).splitlines()[0]}") from None
    else:
        sep = sep or ("\t" if path.suffix.lower() == ".tsv" else ",")
        try:
            df = pd.read_csv(path, sep=sep)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise ValueError(f"cannot read CSV file {str(path)!r}: "
                             f"{str(e).splitlines()[0]}") from None
        _check_delimiter(df, path, sep)
    if df.shape[0] == 0:
        raise ValueError(f"data file {str(path)!r} has a header but no rows")
    dup = [c for c in df.columns if "." in str(c) and str(c).rsplit(".", 1)[0] in
           df.columns and str(c).rsplit(".", 1)[1].isdigit()] if kind == "csv" else []
    if dup:
        raise ValueError(f"data file {str(path)!r} has duplicated column names "
                         f"(pandas renamed them {dup[:5]}); make the header unique")
    return df


def _check_delimiter(df, path, sep):
    if df.shape[1] == 1:
        name = str(df.columns[0])
        for other in (";", "\t", "|", ","):
            if other != sep and other in name:
                raise ValueError(
                    f"data file {str(path)!r} was read as one column named {name[:40]!r}; "
                    f"it looks {other!r}-separated: pass --sep {other!r}")


def write_table(df, path):
    """Write a DataFrame to CSV or Parquet (by extension)."""
    if _kind(path) == "parquet":
        _pyarrow()
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)


def coefficient_table(model, level=0.95):
    """Every candidate fixed effect: estimate, selected, GLS SE, and debiased inference."""
    names = list(model.params_.index)
    free = 1 if model.stats_.intercept else 0
    tab = pd.DataFrame({"feature": names, "estimate": model.params_.to_numpy(),
                        "selected": [True] * free + list(model.coef_ != 0)})
    bse = model.bse_ if model.bse_ is not None else np.full(model.coef_.size, np.nan)
    tab["gls_std_err"] = np.r_[[getattr(model, "intercept_bse_", np.nan)] * free, bse]
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


def results_dict(model, level=0.95, argv=None):
    """Everything a report needs, as plain JSON-able values."""
    import scipy
    import sklearn

    from . import __version__

    vc = model.variance_components_
    free = 1 if model.stats_.intercept else 0
    names = list(model.params_.index)
    out = {
        "formula": getattr(model, "formula_", None),
        "n_observations": model.stats_.n_samples,
        "n_clusters": model.stats_.n_clusters,
        "a": model.a_, "support_size": model.support_size_,
        "selection": model.selection_,
        "support": [names[j + free] for j in model.support_],
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
        tab = model.inference_.table(level)
        out["inference"] = {"method": model.inference_.method, "level": level,
                            "table": tab.reset_index().to_dict(orient="records")}
    return _jsonable(out)


def write_results(model, out, level=0.95, argv=None, plots=True):
    """Write coefficients.csv, results.json and (with matplotlib) the plots to ``out``.

    Returns
    -------
    list of the written paths
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "coefficients.csv", out / "results.json"]
    coefficient_table(model, level).to_csv(paths[0], index=False)
    paths[1].write_text(json.dumps(results_dict(model, level, argv), indent=2,
                                   allow_nan=False))
    if plots:
        try:
            from .plots import plot_cv_curve, plot_path

            plot_path(model, path=out / "coef_path.png")
            paths.append(out / "coef_path.png")
            if model.cv_results_ is not None:
                plot_cv_curve(model, path=out / "cv_curve.png")
                paths.append(out / "cv_curve.png")
        except ImportError:
            pass
    return paths
