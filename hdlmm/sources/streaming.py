"""Fit from files too big for memory: cross-products built from chunks of rows.

Two passes over a Parquet or CSV/TSV file (or a folder of Parquet files), read in
chunks by pyarrow: the first reads the grouping column only and lays out the folds
(:class:`hdlmm.core.folds.FoldLayout`), the second adds each chunk's cross-products into
one accumulator. Rows of one cluster may be spread over any number of chunks (the
cross-products are additive). Memory: O(p² · folds + n · q · p) for the statistics plus
one chunk of rows, never the whole data. The debiased inference, when asked for, makes
one more pass (its row sums are additive too).

The in-memory fit and the streamed fit of the same data agree to rounding (the sums
are added in another order): the same labels give the same folds.

Example
-------
>>> model = SparseLMM(inference=None).fit_source(  # doctest: +SKIP
...     "visits.parquet", y="bp", groups="patient", Z=["1", "week"])
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from hdlmm.core._accumulate import _Accumulator
from hdlmm.core.checks import _sort_order
from hdlmm.core.folds import FoldLayout
from hdlmm.core.progress import progress_bar, shows_progress
from hdlmm.core.stats import ClusterStats, _feature_names

__all__ = ["TableSpec", "read_batches", "stream_stats", "StreamRows", "check_chunk_rows"]

INTERCEPT = "1"


def _pyarrow():
    try:
        import pyarrow  # noqa: F401
        import pyarrow.csv  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:  # pragma: no cover - exercised without the extra
        raise ImportError("streaming from files needs pyarrow: pip install 'hdlmm[io]'"
                          ) from exc
    return pyarrow


def _files(source):
    """The files of a source: one file, or the Parquet files of a folder (sorted)."""
    path = Path(source)
    if path.is_dir():
        files = sorted(path.glob("*.parquet"))
        if not files:
            raise ValueError(f"folder {path} has no .parquet files")
        return files
    if not path.exists():
        raise FileNotFoundError(f"data file {path} does not exist")
    return [path]


def _kind(path, sep):
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet", None
    if suffix in (".csv", ".tsv", ".txt"):
        return "csv", sep or ("\t" if suffix == ".tsv" else ",")
    raise ValueError(f"cannot stream {path.name}: use .parquet, .csv or .tsv")


def source_columns(source, sep=None):
    """Column names of a source (from the Parquet schema or the CSV header)."""
    pa = _pyarrow()
    files = _files(source)
    kind, sep = _kind(files[0], sep)
    if kind == "parquet":
        first = _parquet_names(pa, files[0])
        for other in files[1:]:  # the files of a folder must share one schema
            names = _parquet_names(pa, other)
            if names != first:
                raise ValueError(f"the Parquet files of {source} have different columns: "
                                 f"{files[0].name} has {first[:8]}, {other.name} has "
                                 f"{names[:8]}; give them one schema")
        return first
    return _csv_header(files[0], sep)


def _parquet_names(pa, path):
    try:
        names = pa.parquet.ParquetFile(path).schema_arrow.names
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise ValueError(f"cannot read Parquet file {str(path)!r}: "
                         f"{str(exc).splitlines()[0]}") from None
    return [c for c in names if not c.startswith("__index_level_")]  # pandas' index


def _csv_header(path, sep):
    """The column names of a CSV header line (quotes as R writes them removed, a UTF-8
    byte-order mark dropped)."""
    import csv

    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            header = fh.readline().rstrip("\r\n")
    except UnicodeDecodeError:
        raise ValueError(f"cannot read {path}: it is not a UTF-8 text file (a CSV?)"
                         ) from None
    if not header:
        raise ValueError(f"{path} is empty: no header line")
    return next(csv.reader([header], delimiter=sep))


def count_rows(source, sep=None):
    """Number of rows (Parquet metadata; None for CSV, which would need a full read)."""
    pa = _pyarrow()
    files = _files(source)
    if _kind(files[0], sep)[0] != "parquet":
        return None
    return sum(pa.parquet.ParquetFile(f).metadata.num_rows for f in files)


def read_batches(source: str | os.PathLike, columns: Sequence[str], chunk_rows: int = 50_000,
                 sep: str | None = None, float_columns: Sequence[str] = (),
                 text_columns: Sequence[str] = ()) -> Iterator[pd.DataFrame]:
    """Yield the rows of ``columns`` as pandas DataFrames of about ``chunk_rows`` rows.

    ``float_columns`` are parsed as float64 in CSV (so that a column of integers in the
    first block and decimals later does not fail half way through the file);
    ``text_columns`` (the grouping column) as text, so that labels ``007`` and ``7``
    stay two clusters. A cell that does not parse is an error naming its column.
    """
    pa = _pyarrow()
    for path in _files(source):
        kind, delim = _kind(path, sep)
        if kind == "parquet":
            yield from _parquet_frames(pa, path, list(columns), chunk_rows)
            continue
        types = {c: pa.float64() for c in float_columns}
        types.update({c: pa.string() for c in text_columns})
        header = _csv_header(path, delim)
        try:
            reader = pa.csv.open_csv(
                path, read_options=pa.csv.ReadOptions(
                    block_size=max(1 << 16, chunk_rows * 16 * len(columns)),
                    column_names=header, skip_rows=1),
                parse_options=pa.csv.ParseOptions(delimiter=delim),
                convert_options=pa.csv.ConvertOptions(include_columns=list(columns),
                                                      column_types=types))
            for batch in reader:
                yield batch.to_pandas()
        except pa.ArrowInvalid as exc:
            raise ValueError(_conversion_error(str(exc), header, path)) from None


def _conversion_error(message, header, path):
    """pyarrow's "In CSV column #3: CSV conversion error to double: invalid value '?'"
    as a message that names the column and the fix."""
    import re

    m = re.search(r"column #(\d+): CSV conversion error to \w+: invalid value '(.*)'",
                  message)
    if not m:
        return f"cannot read {path}: {message.splitlines()[0]}"
    name = header[int(m.group(1))] if int(m.group(1)) < len(header) else m.group(1)
    return (f"column {name!r} of {path} is numeric but has a cell {m.group(2)!r} that is "
            f"not a number; fix such cells or leave them empty (missing), or leave the "
            f"column out")


#: Columns decoded at a time from a Parquet row group, and the largest row group
#: (bytes as float64) read that way. pyarrow's batch reader holds several decoded
#: copies of a whole row group (measured: 0.7 GB for 100,000 rows × 203 columns);
#: groups of 25 columns of one row group at a time hold 0.09 GB, and read faster.
PARQUET_COLUMN_GROUP = 25
PARQUET_ROW_GROUP_BYTES = 256 * 2 ** 20


def _parquet_frames(pa, path, columns, chunk_rows):
    """DataFrames of about ``chunk_rows`` rows of a Parquet file, one row group at a
    time, decoded a group of columns at a time (row groups larger than
    PARQUET_ROW_GROUP_BYTES are read in batches instead, so memory stays bounded)."""
    # no pre-buffering and no threads: pyarrow otherwise reads ahead and keeps
    # decoded row groups around (measured: 13 GB resident for a 10 GB file)
    pf = pa.parquet.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
    for i in range(pf.num_row_groups):
        if pf.metadata.row_group(i).num_rows * len(columns) * 8 > PARQUET_ROW_GROUP_BYTES:
            for batch in pf.iter_batches(batch_size=chunk_rows, row_groups=[i],
                                         columns=columns, use_threads=False):
                yield batch.to_pandas()
            continue
        parts = {}
        for lo in range(0, len(columns), PARQUET_COLUMN_GROUP):
            table = pf.read_row_group(i, columns=columns[lo:lo + PARQUET_COLUMN_GROUP],
                                      use_threads=False)
            parts.update((name, table.column(name).to_pandas())
                         for name in table.column_names)
            del table
        frame = pd.DataFrame(parts, copy=False)
        for lo in range(0, len(frame), chunk_rows):
            yield frame.iloc[lo:lo + chunk_rows]


class TableSpec:
    """Which columns of a table are y, the cluster label, X and Z.

    Parameters
    ----------
    y, groups : str
    X : list of str, optional
        Default: every other column (not y or groups), random-slope columns included,
        the candidates of the formula ``y ~ . + (... | groups)``.
    Z : list of str, optional
        Random-effect design; ``"1"`` is a column of ones. Default ``["1"]``
        (a random intercept).
    """

    def __init__(self, y: str, groups: str, X: Sequence[str] | None = None,
                 Z: Sequence[str] | None = None) -> None:
        self.y, self.groups = str(y), str(groups)
        self.X = None if X is None else [str(c) for c in X]
        self.Z = [INTERCEPT] if Z is None else [str(c) for c in Z]

    def resolve(self, columns: Sequence[str], where: str) -> TableSpec:
        """Check the names against the source's ``columns``; fill in the default X."""
        cols = list(map(str, columns))
        z_cols = [c for c in self.Z if c != INTERCEPT]
        for name in [self.y, self.groups] + z_cols + (self.X or []):
            if name not in cols:
                raise ValueError(f"column {name!r} is not in {where}; its columns are "
                                 f"{', '.join(cols[:20])}{' ...' if len(cols) > 20 else ''}")
        if self.X is None:
            self.X = [c for c in cols if c not in (self.y, self.groups)]
        if not self.X:
            raise ValueError(f"no predictor columns left in {where}; pass X=[...]")
        return self

    def feature_names(self, intercept: bool) -> list[str]:
        """Names of the statistics' columns (the intercept first when fitted)."""
        return _feature_names(self.X, len(self.X), intercept)

    @property
    def numeric(self) -> list[str]:
        return list(dict.fromkeys(self.X + [self.y] + [c for c in self.Z if c != INTERCEPT]))

    def z_one(self) -> int:
        """Position of the intercept among the random effects (−1 if none)."""
        return self.Z.index(INTERCEPT) if INTERCEPT in self.Z else -1

    @property
    def columns(self) -> list[str]:
        return self.numeric + [self.groups]

    def arrays(self, frame: pd.DataFrame, offset: int, where: str) -> tuple:
        """(X, y, Z, groups) of one chunk, with errors naming the column and the row."""
        out = {}
        for name in self.numeric:
            col = frame[name]
            if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
                raise ValueError(f"column {name!r} of {where} is not numeric (dtype "
                                 f"{col.dtype}); encode it first, or leave it out of X")
            v = col.to_numpy(dtype=float, na_value=np.nan)
            bad = ~np.isfinite(v)
            if bad.any():
                row = offset + int(np.argmax(bad))
                raise ValueError(f"column {name!r} of {where} has a missing or infinite "
                                 f"value at row {row}; drop or impute such rows first")
            out[name] = v
        g = frame[self.groups]
        if g.isna().any():
            row = offset + int(np.argmax(g.isna().to_numpy()))
            raise ValueError(f"grouping column {self.groups!r} of {where} has a missing "
                             f"label at row {row}; drop such rows first")
        X = np.column_stack([out[c] for c in self.X])
        Z = np.column_stack([out[c] if c != INTERCEPT else np.ones(len(frame))
                             for c in self.Z])
        return X, out[self.y], Z, g.to_numpy(dtype=object)


def _chunks(source, spec, chunk_rows, sep, progress, desc, total=None):
    """(X, y, Z, groups, offset) per chunk, with a progress bar on a terminal (its
    total: ``total`` rows, or a Parquet source's count; a CSV's first pass has none)."""
    if total is None and shows_progress(progress):
        total = count_rows(source, sep)
    bar = progress_bar(total, desc, progress, unit="rows", unit_scale=True)
    offset = 0
    where = os.fspath(source)
    try:
        for frame in read_batches(source, spec.columns, chunk_rows, sep, spec.numeric,
                                  [spec.groups]):
            X, y, Z, g = spec.arrays(frame, offset, where)
            yield X, y, Z, g, offset
            offset += len(frame)
            bar.update(len(frame))
    finally:
        bar.close()


def sorted_labels(parts, groups, where):
    """All cluster labels from per-chunk label arrays, sorted as in-memory fits sort
    them; an error for fewer than 2 clusters."""
    parts = [pd.unique(np.asarray(p, dtype=object)) for p in parts]
    labels = np.asarray(pd.unique(np.concatenate(parts)) if parts else [], dtype=object)
    if labels.size < 2:
        raise ValueError(f"{where} has {labels.size} cluster(s) in column {groups!r}; a "
                         f"mixed model needs at least 2")
    return labels[_sort_order(labels)]


def scan_labels(source, groups, chunk_rows=1_000_000, sep=None):
    """All cluster labels of a source (reading the grouping column only), sorted."""
    parts = (frame[groups].to_numpy(dtype=object)
             for frame in read_batches(source, [groups], chunk_rows, sep,
                                       text_columns=[groups]))
    return sorted_labels(list(parts), groups, os.fspath(source))


def stream_stats(source: str | os.PathLike, spec: TableSpec, *, fit_intercept: bool = True,
                 n_blocks: int = 1, random_state: int | np.random.RandomState | None = None,
                 chunk_rows: int = 50_000, sep: str | None = None,
                 progress: bool | None = None) -> ClusterStats:
    """ClusterStats of a file (or a folder of Parquet files) read in chunks.

    Parameters
    ----------
    source : str or Path
    spec : TableSpec
    fit_intercept : bool
    n_blocks : int
        Cross-validation folds (blocks) to keep the statistics in.
    random_state : int, RandomState or None
        Seeds the folds (as ``ClusterStats.from_arrays``: the same labels, the same
        folds).
    chunk_rows : int
        Rows per chunk (bounds the memory for the rows).
    sep : str, optional
        CSV delimiter (default: from the extension).
    progress : bool or None
        Progress bar (tqdm); None: only on a terminal.

    Returns
    -------
    ClusterStats
    """
    spec.resolve(source_columns(source, sep), os.fspath(source))
    layout = FoldLayout(scan_labels(source, spec.groups, sep=sep), n_blocks, random_state)
    acc = _Accumulator(layout.labels.size, n_blocks, len(spec.X) + fit_intercept,
                       len(spec.Z), z_one=spec.z_one())
    for X, y, Z, g, _ in _chunks(source, spec, chunk_rows, sep, progress, "cross-products"):
        acc.add_rows(X, y, Z, layout.positions(g), layout.block, fit_intercept)
    # the accumulator standardised by the first chunk; the data's own, now
    return ClusterStats.from_sums(acc, layout.labels, layout.block, fit_intercept,
                                  spec.feature_names(fit_intercept)).standardized()


class StreamRows:
    """The rows of a file for the inference's second pass: calling it yields
    ``(X, y, cluster_index)`` chunks (the positions of the chunk's clusters in ``stats``).

    Parameters
    ----------
    source : str or Path
    spec : TableSpec
        Resolved against the source's columns.
    stats : ClusterStats
        The statistics of the source (their cluster order).
    chunk_rows : int
    sep : str, optional
    progress : bool or None
    """

    def __init__(self, source: str | os.PathLike, spec: TableSpec, stats: ClusterStats,
                 chunk_rows: int = 50_000, sep: str | None = None,
                 progress: bool | None = None) -> None:
        self.source, self.spec, self.stats = source, spec, stats
        self.chunk_rows, self.sep, self.progress = chunk_rows, sep, progress

    def __call__(self):
        for X, y, _, g, _ in _chunks(self.source, self.spec, self.chunk_rows, self.sep,
                                     self.progress, "inference (second pass)",
                                     total=self.stats.n_samples):
            yield X, y, self.stats.cluster_index(g)


def check_chunk_rows(chunk_rows: int) -> int:
    """``chunk_rows`` as a positive integer, or a message saying what it must be."""
    if (not isinstance(chunk_rows, (int, np.integer)) or isinstance(chunk_rows, bool)
            or chunk_rows < 1):
        raise ValueError(f"chunk_rows must be a positive integer (rows read at a "
                         f"time); got {chunk_rows!r}")
    return int(chunk_rows)
