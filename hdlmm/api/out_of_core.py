"""The front ends of :class:`~hdlmm.api.estimator.SparseLMM` for data that is not in
memory: a Parquet/CSV file or folder streamed in chunks, a Dask DataFrame, and
statistics built elsewhere. Each builds a :class:`~hdlmm.core.stats.ClusterStats` in one
pass and calls the one fit on statistics, :func:`hdlmm.api._fitting.fit_statistics`; the
inference's second pass reads the rows again through the source."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from hdlmm.api._fitting import fit_statistics, named_outputs
from hdlmm.api.params import check_params, resolve_feature_groups, resolve_forced
from hdlmm.core.stats import ClusterStats
from hdlmm.model.settings import SelectionSettings
from hdlmm.sources.dask_frames import DaskRows, check_dask_frame, dask_stats
from hdlmm.sources.streaming import (
    INTERCEPT,
    StreamRows,
    TableSpec,
    check_chunk_rows,
    stream_stats,
)

if TYPE_CHECKING:
    import dask.dataframe

    from hdlmm.api.estimator import SparseLMM

__all__ = ["OutOfCoreFits"]


class OutOfCoreFits:
    """``fit_source``, ``fit_dask`` and ``fit_stats`` of SparseLMM (a mixin: it reads
    the estimator's parameters and sets its fitted attributes)."""

    def fit_source(self, source: str | os.PathLike, *, y: str, groups: str, X: list | None = None,
                   Z: list | None = None, chunk_rows: int = 50_000, sep: str | None = None,
                   progress: bool | None = None) -> SparseLMM:
        """Fit on a Parquet/CSV file (or a folder of Parquet files) too big for memory
        (:mod:`hdlmm.sources.streaming`).

        Parameters
        ----------
        source : str or Path
        y, groups : str
            Response and cluster-label columns.
        X : list of str, optional
            Candidate predictors (default: every column but y and groups, the random
            slopes included, as the formula's ``.``).
        Z : list of str, optional
            Random-effect columns, ``"1"`` for the intercept (default: ``["1"]``).
        chunk_rows : int
        sep : str, optional
        progress : bool or None
            Progress bars on the passes (None: the estimator's ``progress``).

        Returns
        -------
        self
        """
        chunk_rows = check_chunk_rows(chunk_rows)
        spec = TableSpec(y, groups, X, Z)
        progress = self.progress if progress is None else progress
        stats = stream_stats(source, spec, chunk_rows=chunk_rows, sep=sep,
                             progress=progress, **self._stats_options())
        return self._fit_table(spec, stats, StreamRows(source, spec, stats, chunk_rows,
                                                       sep, progress))

    def fit_dask(self, ddf: dask.dataframe.DataFrame, *, y: str, groups: str, X: list | None = None,
                 Z: list | None = None, split_every: int = 8) -> SparseLMM:
        """Fit on a Dask DataFrame (on the current Dask client, if any;
        :mod:`hdlmm.sources.dask_frames`).

        Parameters
        ----------
        ddf : dask.dataframe.DataFrame
        y, groups : str
            Response and cluster-label columns.
        X : list of str, optional
            Candidate predictors (default: every column but y and groups, the random
            slopes included, as the formula's ``.``).
        Z : list of str, optional
            Random-effect columns, ``"1"`` for the intercept (default ``["1"]``).
        split_every : int
            Fan-in of the tree reduction.

        Returns
        -------
        self
        """
        check_dask_frame(ddf)
        spec = TableSpec(y, groups, X, Z)
        stats = dask_stats(ddf, spec, split_every=split_every, **self._stats_options())
        return self._fit_table(spec, stats, DaskRows(ddf, spec, stats.labels))

    def fit_stats(self, stats: ClusterStats, chunks: Callable | None = None,
                  re_names: list | None = None) -> SparseLMM:
        """Fit from cross-products built elsewhere (files in chunks, Dask partitions).

        Parameters
        ----------
        stats : ClusterStats
            Built with ``n_blocks=cv`` (and this ``random_state``) when a or k is chosen
            by cross-validation, else with any number of blocks.
        chunks : callable, optional
            ``chunks()`` yields ``(X, y, cluster_index)`` row chunks, needed for the
            debiased inference (a second pass over the rows); without it, ``inference``
            is skipped with a warning.
        re_names : list of str, optional
            Names of the random effects (columns of Z).

        Returns
        -------
        self
        """
        t0 = time.perf_counter()
        check_params(self)
        self._reset_fitted()
        if not isinstance(stats, ClusterStats):
            raise TypeError(f"fit_stats needs a ClusterStats; got {type(stats).__name__}")
        needs_cv = self._settings().needs_cv
        if needs_cv and stats.n_blocks != self.cv:
            raise ValueError(f"the statistics have {stats.n_blocks} fold(s) but cv={self.cv} "
                             f"is needed to choose a or k; build them with n_blocks={self.cv}")
        if not needs_cv and stats.n_blocks > 1:
            stats = stats.merge_blocks()
        lead = 1 if stats.intercept else 0
        names, p = list(stats.feature_names[lead:]), stats.n_features - lead
        forced = resolve_forced(self.force, names, p)
        groups = resolve_feature_groups(self.feature_groups, names, p, forced=forced)
        fitted = fit_statistics(stats, chunks, self.get_params(), re_names=re_names,
                                forced=forced, feature_groups=groups)
        fitted.update(fittedvalues_=None, fittedvalues_marginal_=None, resid_=None)
        self._set(named_outputs(fitted))
        self.fit_time_ = time.perf_counter() - t0
        return self

    def _fit_table(self, spec, stats, rows):
        """fit_stats with the names of a TableSpec (fit_source, fit_dask)."""
        self.fit_stats(stats, rows, re_names=["(Intercept)" if c == INTERCEPT else c
                                              for c in spec.Z])
        self.feature_names_in_ = np.asarray(spec.X, dtype=object)
        return self

    def _stats_options(self):
        """Checked parameters, and how the statistics must be built for them."""
        check_params(self)
        return dict(fit_intercept=self.fit_intercept, random_state=self.random_state,
                    n_blocks=self.cv if self._settings().needs_cv else 1)

    def _settings(self):
        """The selection's settings from the estimator's parameters."""
        return SelectionSettings.from_params(self.get_params())
