"""Reading data files (CSV, TSV, Parquet, folders of Parquet files) into data frames.

Parquet needs the optional dependency pyarrow (``pip install 'hdlmm[io]'``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["read_table"]

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


def read_table(path: str | os.PathLike | None, sep: str | None = None,
               text_columns: Sequence[str] = (), decimal: str = ".") -> pd.DataFrame:
    """Read a CSV (``sep`` default: ',' or tab for .tsv) or Parquet file (or a folder of
    Parquet files) into a DataFrame, with one-line errors for the usual problems
    (missing, empty, corrupt, wrong delimiter).

    ``text_columns`` (e.g. the grouping column) are read as text, so that labels such
    as ``007`` and ``7`` stay distinct; a leading column that is a saved pandas index
    (``Unnamed: 0`` holding 0, 1, 2, ...) is left out with a warning; ``decimal`` is the
    decimal mark of a CSV (``,`` for 3,14)."""
    path = Path(path)
    if path.is_dir():
        return _read_parquet_folder(path)
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
            df = pd.read_csv(path, sep=sep, encoding="utf-8-sig", decimal=decimal,
                             dtype={c: str for c in text_columns})
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise ValueError(f"cannot read CSV file {str(path)!r} (is it a CSV text "
                             f"file?): {str(e).splitlines()[0]}") from None
        _check_delimiter(df, path, sep)
        df = _drop_saved_index(df, path)
    if df.shape[0] == 0:
        raise ValueError(f"data file {str(path)!r} has a header but no rows")
    dup = [c for c in df.columns if "." in str(c) and str(c).rsplit(".", 1)[0] in
           df.columns and str(c).rsplit(".", 1)[1].isdigit()] if kind == "csv" else []
    if dup:
        raise ValueError(f"data file {str(path)!r} has duplicated column names "
                         f"(pandas renamed them {dup[:5]}); make the header unique")
    return df


def _read_parquet_folder(path):
    """The Parquet files of a folder, one frame; files must have the same columns."""
    _pyarrow()
    files = sorted(path.glob("*.parquet")) + sorted(path.glob("*.pq"))
    if not files:
        raise ValueError(f"folder {str(path)!r} has no .parquet files")
    frames = []
    for f in files:
        try:
            frames.append(pd.read_parquet(f))
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise ValueError(f"cannot read Parquet file {str(f)!r}: "
                             f"{str(exc).splitlines()[0]}") from None
        if list(frames[-1].columns) != list(frames[0].columns):
            raise ValueError(f"the Parquet files of {str(path)!r} have different columns: "
                             f"{files[0].name} has {list(frames[0].columns)[:8]}, {f.name} "
                             f"has {list(frames[-1].columns)[:8]}; give them one schema")
    df = pd.concat(frames, ignore_index=True)
    if df.shape[0] == 0:
        raise ValueError(f"the Parquet files of {str(path)!r} have no rows")
    return df


def _drop_saved_index(df, path):
    """Leave out a first column that is a saved pandas index (an unnamed column holding
    0, 1, 2, ... or 1, 2, 3, ...), with a warning."""
    first = str(df.columns[0])
    if not (first.startswith("Unnamed: ") or first == "") or df.shape[1] < 2:
        return df
    values = df.iloc[:, 0]
    if pd.api.types.is_integer_dtype(values.dtype) and (
            np.array_equal(values, np.arange(len(df)))
            or np.array_equal(values, np.arange(1, len(df) + 1))):
        import warnings

        warnings.warn(f"the first column of {path.name} ({first!r}, 0, 1, 2, ...) looks "
                      f"like a saved pandas index and is left out (write CSVs with "
                      f"index=False)", UserWarning, stacklevel=3)
        return df.iloc[:, 1:]
    return df


def _check_delimiter(df, path, sep):
    semicolon = [str(c) for c in df.columns if ";" in str(c)]
    if sep != ";" and semicolon:
        raise ValueError(
            f"data file {str(path)!r} has ';' in its header ({semicolon[0][:40]!r}): it "
            f"looks ';'-separated: pass --sep ';' (and --decimal ',' if its numbers are "
            f"written 3,14)")
    if df.shape[1] == 1:
        name = str(df.columns[0])
        for other in (";", "\t", "|", ","):
            if other != sep and other in name:
                raise ValueError(
                    f"data file {str(path)!r} was read as one column named {name[:40]!r}; "
                    f"it looks {other!r}-separated: pass --sep {other!r}")
