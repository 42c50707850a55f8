"""What each column of a data frame is taken to be, and the careless cases refused.

A formula turns a text column into one dummy per level, so a numeric column with one
stray cell (``?``, ``n/a?``) or a column of identifiers silently becomes dozens or
hundreds of candidate predictors. Before a formula is materialised,
:func:`check_columns` looks at the columns it uses and

* refuses a numeric-looking text column with stray cells, naming the column, the count
  and the first offending values;
* refuses a text column with many distinct values (an identifier or free text) unless
  it is declared categorical (pandas ``category`` dtype);
* refuses datetime columns (a number of days or seconds is what a model can use) and
  nested values (a Parquet struct or list column);
* warns about a text column with one value (it has no dummy and drops out).

:func:`column_types` describes every column as it was read ("numeric", "categorical
(k levels)", "grouping", "response"), for ``column_types_`` and ``results.json``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import pandas as pd

__all__ = ["check_columns", "column_types", "MAX_LEVELS"]

#: a text column with more distinct values than this (and more than half its rows)
#: is taken for an identifier or free text and refused unless declared categorical
MAX_LEVELS = 50


def _is_text(s):
    return s.dtype == object or pd.api.types.is_string_dtype(s.dtype)


def _stray_cells(s):
    """Values of a text column that do not parse as numbers when most others do (None
    when the column is not numeric-looking)."""
    values = s.dropna()
    if values.empty:
        return None
    numbers = pd.to_numeric(values, errors="coerce")
    bad = values[numbers.isna()]
    if bad.empty or len(bad) > 0.2 * len(values):
        return None
    return bad


def check_columns(data: pd.DataFrame, columns: Sequence[str],
                  dot_columns: Sequence[str] = ()) -> None:
    """Refuse or warn about the careless cases among ``columns`` of ``data`` (see the
    module docstring); ``dot_columns`` are those that came in through ``.``, where an
    identifier column is refused."""
    for name in columns:
        s = data[name]
        if pd.api.types.is_datetime64_any_dtype(s.dtype):
            raise ValueError(
                f"column {name!r} holds dates/times; convert it to a number (e.g. days "
                f"since the first date) or leave it out of the formula")
        if isinstance(s.dtype, pd.CategoricalDtype) or not _is_text(s):
            continue
        nested = next((v for v in s.dropna().head(100)
                       if not isinstance(v, (str, bytes, int, float, bool))), None)
        if nested is not None:
            raise ValueError(f"column {name!r} holds nested values ({type(nested).__name__}"
                             f", e.g. {str(nested)[:40]}); flatten it into columns or "
                             f"leave it out of the formula")
        bad = _stray_cells(s)
        if bad is not None:
            first = list(dict.fromkeys(map(str, bad)))[:5]
            raise ValueError(
                f"column {name!r} is numeric but {len(bad)} of its {s.notna().sum()} "
                f"cells are not numbers (first: {first}); fix them or mark them missing "
                f"(pandas.read_csv(..., na_values={first!r})), or declare the column "
                f"categorical (astype('category')) if it is one")
        levels = s.dropna().unique()
        if name in dot_columns and len(levels) > max(MAX_LEVELS, 0) and \
                len(levels) > 0.5 * s.notna().sum():
            raise ValueError(
                f"column {name!r} is text with {len(levels)} distinct values in "
                f"{len(s)} rows (an identifier or free text?): as a factor it would add "
                f"{len(levels) - 1} candidate predictors. Leave it out (y ~ . - {name} "
                f"+ ...), or declare it categorical (astype('category')) to use it")
        if len(levels) == 1:
            warnings.warn(f"column {name!r} has one value ({levels[0]!r}) in every row: "
                          f"it has no dummy and is left out of the model", UserWarning,
                          stacklevel=4)


def column_types(data: pd.DataFrame, response: str, group_columns: Sequence[str]) -> dict:
    """{column: how it was taken} for every column of ``data``."""
    out = {}
    for name in data.columns:
        s = data[name]
        if name == response:
            kind = "response"
        elif name in group_columns:
            kind = "grouping (labels)"
        elif pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):
            kind = "numeric"
        elif pd.api.types.is_datetime64_any_dtype(s.dtype):
            kind = "datetime"
        else:
            kind = f"categorical ({s.nunique()} levels)"
        out[str(name)] = kind
    return out
