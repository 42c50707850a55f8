"""Cross-products of a Dask DataFrame, computed on a Dask cluster.

Each partition's rows become a :class:`ClusterStats` of the clusters it holds (the
folds come from one :class:`hdlmm.core.folds.FoldLayout` of all the labels, so partitions
agree on them); a tree reduction adds them (``split_every`` at a time), so no worker
ever holds more than a few partial statistics. A cluster's rows may be spread over any
number of partitions. The fit then runs on the driver from the statistics alone; the
debiased inference, when asked for, makes a second pass over the partitions, also on
the workers: each returns the per-cluster sums of its own clusters only, which the
driver adds up a few partitions at a time (rows never travel to the driver).

Dask recomputes lost pieces of the graph, so a worker that dies during the computation
costs time, not exactness (tested on a ``LocalCluster`` by killing a worker process).

On a real cluster, create a client before fitting and every computation goes there::

    from dask.distributed import Client
    client = Client("tcp://scheduler-host:8786")   # or a dask-jobqueue / Kubernetes cluster
    ddf = dask.dataframe.read_parquet("s3://bucket/visits/*.parquet")
    model = SparseLMM().fit_dask(ddf, y="bp", groups="patient", Z=["1", "week"])

Workers need hdlmm installed (the partition function is hdlmm's own).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from hdlmm.sources.streaming import TableSpec

if TYPE_CHECKING:
    import dask.dataframe

import functools
import operator

import numpy as np
import pandas as pd

from hdlmm.core._accumulate import _Accumulator
from hdlmm.core.folds import FoldLayout
from hdlmm.core.row_pass import add_cluster_sums, local_chunk_sums, standard_pieces
from hdlmm.core.stats import ClusterStats
from hdlmm.sources.streaming import sorted_labels

__all__ = ["dask_stats", "DaskRows", "check_dask_frame"]


def _dask():
    try:
        import dask
        import dask.dataframe  # noqa: F401
    except ImportError as exc:  # pragma: no cover - exercised without the extra
        raise ImportError("fitting a Dask DataFrame needs dask: "
                          "pip install 'hdlmm[dask]'") from exc
    return dask


def partition_stats(frame, spec, layout, fit_intercept):
    """ClusterStats of the clusters in one partition (None for an empty partition)."""
    if len(frame) == 0:
        return None
    X, y, Z, g = spec.arrays(frame, 0, "a partition")
    pos = layout.positions(g)
    uc, local = np.unique(pos, return_inverse=True)
    acc = _Accumulator(uc.size, layout.n_blocks, X.shape[1] + fit_intercept, Z.shape[1],
                       z_one=spec.z_one())
    acc.add_rows(X, y, Z, local, layout.block[uc], fit_intercept)
    return ClusterStats.from_sums(acc, layout.labels[uc], layout.block[uc], fit_intercept,
                                  spec.feature_names(fit_intercept), X, y)


def _add(*parts):
    parts = [p for p in parts if p is not None]
    return functools.reduce(operator.add, parts) if parts else None


def _standardized(stats):
    """The merged statistics in the data's own column standardisation (each partition
    had its own, see :class:`hdlmm.core.stats.ClusterStats`)."""
    return None if stats is None else stats.standardized()


def _tree_sum(dask, items, split_every):
    while len(items) > 1:
        items = [dask.delayed(_add, pure=True)(*items[i:i + split_every])
                 for i in range(0, len(items), split_every)]
    return items[0]


def _unique_labels(series):
    return pd.unique(series.to_numpy(dtype=object))


def dask_layout(ddf, spec, n_blocks, random_state):
    """The fold layout of all the labels of a Dask DataFrame (one small computation)."""
    dask = _dask()
    per_part = dask.compute(*[dask.delayed(_unique_labels, pure=True)(part)
                              for part in ddf[spec.groups].to_delayed()])
    labels = sorted_labels(per_part, spec.groups, "the Dask DataFrame")
    return FoldLayout(labels, n_blocks, random_state)


def dask_stats(ddf: dask.dataframe.DataFrame, spec: TableSpec, *, fit_intercept: bool = True,
               n_blocks: int = 1, random_state: int | np.random.RandomState | None = None,
               split_every: int = 8, compute: bool = True) -> ClusterStats:
    """ClusterStats of a Dask DataFrame, by partition statistics and a tree reduction.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
    spec : TableSpec
    fit_intercept : bool
    n_blocks : int
        Cross-validation folds (blocks).
    random_state : int, RandomState or None
        Seeds the folds (the same labels give the same folds as an in-memory fit).
    split_every : int
        Fan-in of the tree reduction.
    compute : bool
        False: return the Dask ``Delayed`` of the statistics instead.

    Returns
    -------
    ClusterStats (or Delayed)
    """
    dask = _dask()
    spec.resolve(list(ddf.columns), "the Dask DataFrame")
    layout = dask.delayed(dask_layout(ddf, spec, n_blocks, random_state), pure=True)
    parts = ddf[spec.columns].to_delayed()
    stats = [dask.delayed(partition_stats, pure=True)(part, spec, layout, fit_intercept)
             for part in parts]
    total = dask.delayed(_standardized, pure=True)(_tree_sum(dask, stats, split_every))
    return total.compute() if compute else total


def check_dask_frame(ddf: dask.dataframe.DataFrame) -> None:
    """Raise unless ``ddf`` is a Dask DataFrame, saying how to fit other frames."""
    dask = _dask()
    if not isinstance(ddf, dask.dataframe.DataFrame):
        raise TypeError(
            f"fit_dask needs a Dask DataFrame; got {type(ddf).__module__}."
            f"{type(ddf).__name__}. For a pandas DataFrame use fit (arrays) or "
            f"from_formula, or wrap it: dask.dataframe.from_pandas(df, npartitions=8)")


class DaskRows:
    """The rows of a Dask DataFrame for the inference's second pass: :meth:`row_sums`
    computes each partition's per-cluster sums on the workers (in place of the driver's
    pass over row chunks, :func:`hdlmm.core.row_pass.row_sums`).

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
    spec : TableSpec
    labels : ndarray
        Cluster labels in the statistics' order.
    batch : int
        Partitions whose sums are gathered at a time (bounds the driver's memory).
    """

    def __init__(self, ddf: dask.dataframe.DataFrame, spec: TableSpec, labels: np.ndarray,
                 batch: int = 8) -> None:
        self.ddf, self.spec, self.batch = ddf[spec.columns], spec, batch
        self.index = pd.Index(labels)

    def row_sums(self, n_clusters: int, coef: np.ndarray, intercept: bool,
                 standardization: tuple | None = None) -> Callable:
        """A ``rows(U, S, cols)`` callable as :func:`hdlmm.core.row_pass.row_sums`'s."""
        dask = _dask()

        def rows(U, S, cols):
            index = dask.delayed(self.index, pure=True)
            parts = [dask.delayed(_partition_row_sums, pure=True)(
                part, self.spec, index, U, S, cols, coef, intercept, standardization)
                for part in self.ddf.to_delayed()]
            out = None
            for lo in range(0, len(parts), self.batch):
                for res in dask.compute(*parts[lo:lo + self.batch]):
                    if res is not None:
                        out = add_cluster_sums(out, n_clusters, *res)
            return out

        return rows


def _partition_row_sums(frame, spec, index, U, S, cols, coef, intercept,
                        standardization=None):
    """(clusters, their sums) of :func:`hdlmm.core.row_pass.chunk_sums` for one partition
    (its rows standardised as the statistics were)."""
    if len(frame) == 0:
        return None
    X, y, _, g = spec.arrays(frame, 0, "a partition")
    clusters, local = np.unique(index.get_indexer(pd.Index(g)), return_inverse=True)
    out = None
    for Xc, yc, idx, _ in standard_pieces(X, y, local, standardization):
        out = add_cluster_sums(out, clusters.size, *local_chunk_sums(
            Xc, yc, idx, U, S, cols, coef, intercept))
    return clusters, out
