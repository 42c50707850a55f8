"""The debiased inference of a fitted model's fixed effects: which coordinates, the
second pass over the rows, and the p-values over all features.

Returns fitted attributes of :class:`hdlmm.SparseLMM` as a dict.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np

from hdlmm.core.row_pass import row_sums
from hdlmm.core.transform import ProxyTransform
from hdlmm.inference.debias import debias
from hdlmm.model.selection import Selection

__all__ = ["fixed_effect_inference", "inference_columns"]


def inference_columns(spec: str | list | None, support: np.ndarray, names: list) -> np.ndarray:
    """The coordinates to test: the support, all, or the support plus named ones."""
    p = len(names)
    if spec is None:
        return np.zeros(0, dtype=int)
    if isinstance(spec, str):
        if spec == "support":
            return np.asarray(support, dtype=int)
        if spec == "all":
            return np.arange(p)
        spec = [spec]
    lookup = {nm: j for j, nm in enumerate(names)}
    extra = []
    for item in spec:
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            if not 0 <= item < p:
                raise ValueError(f"inference column {item} is out of range; X has {p} "
                                 f"columns (0..{p - 1})")
            extra.append(int(item))
        elif item in lookup:
            extra.append(lookup[item])
        else:
            raise ValueError(f"inference column {item!r} is not a feature; pass "
                             f"'support', 'all', or column indices/names of X")
    return np.union1d(np.asarray(support, dtype=int), extra).astype(int)


def fixed_effect_inference(transform: ProxyTransform, selection: Selection, rows: Callable | None,
                           columns: Sequence[str] = "support", *, penalty: str | float = "scaled",
                           small_sample: str = "cr2bm", p_adjust: str | None = None,
                           progress: bool | None = False) -> dict:
    """Debiased estimates, cluster-robust SEs and p-values (:mod:`hdlmm.inference.debias`)
    of the ``columns`` coordinates (:func:`inference_columns`), starting from the
    selection's proxy estimate; ``penalty``, ``small_sample`` and ``p_adjust`` as the
    estimator's ``nodewise_penalty``, ``small_sample`` and ``p_adjust``.

    ``rows()`` yields ``(X, y, cluster_index)`` chunks of the rows (the second pass
    over the data; see :func:`hdlmm.core.row_pass.row_sums`), or ``rows.row_sums(n,
    coef, intercept)`` returns the sums itself (e.g. :class:`hdlmm.sources.dask_frames.DaskRows`,
    computed where the rows are); None: no row access, and the inference is skipped
    with a warning.

    Returns
    -------
    dict with ``inference_`` (a DebiasedInference or None) and ``pvalues_``
    (ndarray over all features, NaN where not tested).
    """
    stats = transform.stats
    free = 1 if stats.intercept else 0
    names = stats.feature_names[free:]
    cols = inference_columns(columns, selection.support, names)
    pvalues = np.full(selection.coef.size, np.nan)  # the debiasing starts from the proxy
    if cols.size == 0:
        return dict(inference_=None, pvalues_=pvalues)
    if rows is None:
        warnings.warn("inference needs a second pass over the rows, and fit_stats was "
                      "given none: pass chunks= (or fit with fit_source / fit_dask), or "
                      "inference=None to silence this", UserWarning, stacklevel=3)
        return dict(inference_=None, pvalues_=pvalues)
    coef = np.r_[[selection.intercept] if free else [], selection.coef]
    standard = (stats.x_shift[free:], stats.x_scale[free:], stats.y_shift)  # as the stats
    if hasattr(rows, "row_sums"):  # rows that compute their own sums (Dask workers)
        sums = rows.row_sums(stats.n_clusters, coef, stats.intercept, standard)
    else:
        sums = row_sums(rows, stats.n_clusters, coef, stats.intercept, standard)
    res = debias(transform, selection.a, coef, cols, sums, penalty=penalty,
                 small_sample=small_sample, p_adjust=p_adjust,
                 names=[names[j] for j in cols], progress=progress)
    pvalues[cols] = res.pvalue_adj
    return dict(inference_=res, pvalues_=pvalues)
