"""Formula and DataFrame interface, with lme4's random-effect syntax.

``"Reaction ~ Days + (Days | Subject)"`` is split into its fixed part (``Reaction ~ Days``)
and its random-effect bars (``(Days | Subject)``: the terms ``1 + Days`` varying by
``Subject``). Each part is then materialised by formulaic (categorical columns get
treatment contrasts, transforms such as ``np.log(x)`` work, ``.`` means every other
column), so the only hand-written parsing is the split on ``|`` inside parentheses,
which formulaic does not know. ``.`` excludes the response, the grouping column, the
weights column and the columns of ``offset(...)`` terms.

Each bar means what it means in lme4: ``(t | g)`` and ``(1 + t | g)`` have a random
intercept and slope, ``(0 + t | g)`` and ``(t - 1 | g)`` a slope only; separate bars on
the same factor (``(1 | g) + (0 + t | g)``) are uncorrelated, so Ψ is block-diagonal
with one block per bar, and ``(1 + t || g)`` gives every column its own block (for
numeric terms, as lme4 expands it). One grouping factor (one level of clustering) is
supported, which may be an interaction ``(1 | a:b)`` (one cluster per combination);
nested ``(1 | a/b)`` and crossed or several grouping factors are refused with a message
saying so.

Missing values: ``missing="raise"`` (default) names the columns with missing values and
their counts; ``missing="drop"`` drops those rows with a warning giving the count.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from hdlmm.sources.coltypes import check_columns, column_types
from hdlmm.sources.formula_text import (
    binomial_response,
    has_dot,
    split_bars,
    strip_force,
    strip_marker,
)

__all__ = ["FormulaDesign", "parse_formula", "split_bars", "strip_force", "strip_marker",
           "design_rows", "design_offset", "offset_values"]

MISSING = ("raise", "drop")


def _formulaic():
    try:
        import formulaic
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("formulas need the optional dependency formulaic: "
                          "pip install 'hdlmm[formula]'") from None
    return formulaic


@dataclass
class FormulaDesign:
    """The arrays a formula describes, and how to rebuild them for new data."""

    y: np.ndarray
    X: pd.DataFrame
    groups: np.ndarray
    Z: np.ndarray
    re_names: list
    fit_intercept: bool
    group_column: str
    fixed_spec: object
    re_spec: list
    n_dropped: int
    re_blocks: list
    column_types: dict | None = None
    terms: dict | None = None
    forced: list | None = None
    offset: np.ndarray | None = None
    offset_terms: list | None = None
    weights: np.ndarray | None = None
    trials: np.ndarray | None = None

    def without_data(self) -> FormulaDesign:
        """The design without the training rows (y, X, groups, Z): what a fitted model
        keeps to encode new data, so that pickling it does not carry the data."""
        return replace(self, y=None, X=None, groups=None, Z=None, offset=None,
                       weights=None, trials=None)


def parse_formula(formula: str, data: pd.DataFrame, missing: str = "raise",
                  weights: str | np.ndarray | None = None,
                  counts: bool = False) -> FormulaDesign:
    """Materialise ``formula`` on ``data`` (a pandas DataFrame); ``weights``, lme4's
    observation weights, is a column of ``data`` (its missing values are handled with
    the formula's) or an array of one weight per row of ``data``. ``counts`` (binomial
    and Poisson models): the response may be ``cbind(successes, failures)``, as in
    glmer; y is then the successes and ``trials`` their sum.

    Returns
    -------
    FormulaDesign
    """
    if not isinstance(data, pd.DataFrame):
        raise ValueError(f"data must be a pandas DataFrame; got {type(data).__name__}")
    if missing not in MISSING:
        raise ValueError(f"missing must be one of {MISSING}; got {missing!r}")
    if any(not isinstance(c, str) for c in data.columns):  # formulas name columns by text
        data = data.rename(columns=str)
    if data.columns.duplicated().any():
        dup = sorted(set(data.columns[data.columns.duplicated()].astype(str)))
        raise ValueError(f"data has duplicated column names {dup}; rename them")
    fixed, bars = split_bars(formula)
    fixed, forced_terms = strip_force(fixed)
    fixed, offset_terms = strip_marker(fixed, "offset")
    fixed, binomial = binomial_response(fixed) if counts else (fixed, None)
    _refuse_unsupported(fixed, data)
    if not bars and "|" in fixed:
        raise ValueError(f"random-effect terms go in parentheses, e.g. "
                         f"'y ~ x + (1 + x | g)'; got {formula!r}")
    if not bars:
        raise ValueError("the formula has no random-effect term such as (1 | group); "
                         "add one to say how rows are clustered")
    group = _grouping_factor(bars, data)
    dot = has_dot(fixed)
    data = _with_weights(data, weights)
    not_dot = group.split(":") + ([_WEIGHTS] if weights is not None else []) + (
        [weights] if isinstance(weights, str) else []) + (
        _variables((binomial or []) + offset_terms, data))
    if dot:  # '.' = every other column: not the grouping factor, weights or offset's
        fixed += "".join(f" - {c}" for c in not_dot)
    used = _used_columns(fixed, bars, data, offset_terms + [f"I({e})" for e in
                                                            binomial or []]) | (
        {_WEIGHTS} if weights is not None else set())
    response = fixed.split("~", 1)[0].strip()
    dot_columns = ([c for c in data.columns if c != response and c not in not_dot]
                   if dot else [])
    check_columns(data, [c for c in data.columns if c in used and c != response
                         and c not in not_dot], dot_columns)
    data, n_dropped = _handle_missing(data, used, group.split(":"), missing)
    fm = _formulaic()
    mm = _materialise(fm, fixed, data)
    y = np.asarray(mm.lhs, dtype=float).ravel() if hasattr(mm, "lhs") else None
    if y is None or mm.lhs.shape[1] != 1:
        raise ValueError(f"the formula needs one response on the left of '~'; got "
                         f"{formula!r}")
    X = mm.rhs
    fit_intercept = "Intercept" in X.columns
    X = X.drop(columns=["Intercept"]) if fit_intercept else X
    terms = _term_columns(mm.rhs.model_spec, fit_intercept)
    forced = _forced_columns(fm, forced_terms, terms)
    Z, names, blocks, re_specs = _random_design(fm, bars, data)
    labels = group_labels(data, group)
    if pd.unique(labels).size < 2:
        raise ValueError(f"grouping column {group!r} has one level "
                         f"({labels[0]!r}); a mixed model needs at least 2 clusters")
    return FormulaDesign(y=y, X=pd.DataFrame(X), groups=labels, Z=Z, re_names=names,
                         fit_intercept=fit_intercept, group_column=group,
                         fixed_spec=mm.rhs.model_spec, re_spec=re_specs,
                         n_dropped=n_dropped, re_blocks=blocks, terms=terms,
                         forced=forced, offset=offset_values(fm, offset_terms, data),
                         offset_terms=offset_terms,
                         weights=None if weights is None else data[_WEIGHTS].to_numpy(float),
                         trials=None if binomial is None else offset_values(
                             fm, [f"I({e})" for e in binomial], data),
                         column_types=column_types(data[[c for c in data.columns
                                                         if c in used and c != _WEIGHTS]],
                                                   response, group.split(":")))


def offset_values(fm: object, terms: list, data: pd.DataFrame) -> np.ndarray | None:
    """The sum of the ``offset(...)`` expressions evaluated on ``data`` (None if none):
    known parts of the linear predictor, with coefficient 1, not estimated."""
    if not terms:
        return None
    total = np.zeros(len(data))
    for expr in terms:
        mm = _materialise(fm, f"0 + {expr}", data, na_action="ignore")
        if mm.shape[1] != 1:
            raise ValueError(f"offset({expr}) must be one numeric value per row; it gives "
                             f"{mm.shape[1]} columns")
        values = np.asarray(mm, dtype=float).ravel()
        if not np.isfinite(values).all():
            raise ValueError(f"offset({expr}) is not finite in {int((~np.isfinite(values)).sum())}"
                             f" rows (log of zero or a negative number?); fix those rows")
        total += values
    return total


def _variables(expressions, data):
    """The columns of ``data`` that some expressions use."""
    fm = _formulaic()
    out = set()
    for expr in expressions:
        out |= set(fm.Formula(f"0 + I({expr})").required_variables)
    return [c for c in data.columns if c in out]


def _refuse_unsupported(fixed, data):
    """Clear messages for constructs of lme4 or R that the fixed part cannot take."""
    if re.search(r"(^|[~+\s(])\.\s*\^", fixed):
        raise ValueError("'.^2' (every pairwise interaction of every column) is not "
                         "supported; write the interactions you want, e.g. (x + z)^2, or "
                         "build the columns yourself")
    response = fixed.split("~", 1)[0].strip()
    if re.match(r"cbind\s*\(", response):
        raise ValueError(f"a response {response} (successes and failures) is for a binomial "
                         f"model: fit it with hdlmm.SparseGLMM.from_formula(formula, data, "
                         f"'binomial') or `hdlmm fit --family binomial`; SparseLMM fits "
                         f"Gaussian outcomes")
    if response in data.columns and not pd.api.types.is_numeric_dtype(data[response]):
        values = pd.unique(data[response].dropna())[:3]
        raise ValueError(f"response {response!r} is not numeric (values such as "
                         f"{[str(v) for v in values]}): hdlmm fits Gaussian outcomes; "
                         f"convert it to numbers (a binary outcome as 0/1 is fitted as a "
                         f"linear probability model)")


def _term_columns(spec, fit_intercept):
    """Term (as text) → indices of its columns in X (the intercept's column dropped)."""
    shift = 1 if fit_intercept else 0
    return {str(t): [j - shift for j in idx] for t, idx in spec.term_indices.items()
            if str(t) != "1"}


def _forced_columns(fm, forced_terms, terms):
    """Indices of the columns of the terms marked by ``force(...)``."""
    cols = []
    for inner in forced_terms:
        for term in (str(t) for t in fm.Formula("0 + " + inner)):
            if term not in terms:
                raise ValueError(f"force({inner}) names the term {term!r}, which is not a "
                                 f"term of the model's fixed part {list(terms)}")
            cols += terms[term]
    return sorted(set(cols))


#: the column the weights are carried in while rows with missing values are handled
_WEIGHTS = "hdlmm_weights_"


def _with_weights(data, weights):
    """``data`` with the weights as a column (from a column name or an array)."""
    if weights is None:
        return data
    if isinstance(weights, str):
        if weights not in data.columns:
            raise ValueError(f"weights column {weights!r} is not in data; columns are "
                             f"{_preview(data.columns)}")
        values = data[weights]
    else:
        values = np.asarray(weights)
        if values.shape != (len(data),):
            raise ValueError(f"weights has {values.size} values but data has {len(data)} "
                             f"rows; pass one weight per row or a column name")
    return data.assign(**{_WEIGHTS: values})


def _grouping_factor(bars, data):
    """The one grouping factor of the bars (a column, or an interaction ``a:b``)."""
    groups = list(dict.fromkeys(g for _, g, _ in bars))
    if any("/" in g for g in groups):
        nested = next(g for g in groups if "/" in g)
        raise ValueError(f"nested random effects ({nested!r}) are not supported yet: "
                         f"hdlmm fits one grouping factor. For clusters defined by the "
                         f"combination, write (1 | {nested.replace('/', ':')}) (one "
                         f"cluster per combination, without the outer level's effect)")
    if len(groups) > 1:
        raise ValueError(f"crossed or several grouping factors ({groups}) are not "
                         f"supported yet: hdlmm fits one grouping factor; keep the "
                         f"random-effect terms of one of them")
    group = groups[0]
    missing = [c for c in group.split(":") if c.strip() not in data.columns]
    if missing:
        raise ValueError(f"grouping column {missing[0].strip()!r} is not in data; "
                         f"columns are {_preview(data.columns)}")
    return ":".join(c.strip() for c in group.split(":"))


def group_labels(data, group):
    """Cluster label of each row: the column, or the combination of the columns of an
    interaction ``a:b`` (as text ``"a_value:b_value"``)."""
    cols = group.split(":")
    if len(cols) == 1:
        return data[group].to_numpy()
    return data[cols].astype(str).agg(":".join, axis=1).to_numpy(dtype=object)


def _random_design(fm, bars, data):
    """Z, its column names, the blocks of Ψ (one per bar, or per column for ``||``) and
    the model specs to rebuild Z for new data."""
    mats, names, blocks, specs = [], [], [], []
    for terms, _, correlated in bars:
        mm = _materialise(fm, terms, data)
        cols = ["(Intercept)" if c == "Intercept" else str(c) for c in mm.columns]
        if not cols:
            raise ValueError(f"random-effect term ({terms} | ...) has no columns; write "
                             f"(1 | g) for a random intercept")
        twice = [c for c in cols if c in names]
        if twice:
            raise ValueError(f"random effect {twice[0]!r} appears in two terms of the "
                             f"formula; lme4 would fit it twice, which is not "
                             f"identifiable: keep it in one term")
        at = len(names)
        idx = list(range(at, at + len(cols)))
        blocks += [idx] if correlated else [[j] for j in idx]
        names += cols
        mats.append(np.asarray(mm, dtype=float))
        specs.append(mm.model_spec)
    return np.hstack(mats), names, blocks, specs


def random_design_matrix(design, data):
    """Z of new rows, from the specs of a fitted formula."""
    return np.hstack([np.asarray(spec.get_model_matrix(data, na_action="raise"), float)
                      for spec in design.re_spec])


def _materialise(fm, formula, data, na_action="raise"):
    try:
        return fm.model_matrix(formula, data, na_action=na_action)
    except fm.errors.FactorEvaluationError as exc:
        m = re.search(r"`([^`]+)` is not present", str(exc))
        if m:
            raise ValueError(f"formula refers to unknown column {m.group(1)!r}; data has "
                             f"columns {_preview(data.columns)}") from None
        m = re.search(r"factor `([^`]+)`\. \[(\w+): (.*)\]", str(exc), re.S)
        term, why = (m.group(1), f"{m.group(2)}: {m.group(3)}") if m else (formula, str(exc))
        raise ValueError(f"cannot evaluate the term {term!r} of the formula ({why}); terms "
                         f"can use columns, numpy functions (np.log(x)), I(...), C(...), "
                         f"poly(x, d), force(...) and offset(...)") from None
    except fm.errors.FormulaicError as exc:
        raise ValueError(f"cannot read formula {formula!r}: {exc}") from None


def _used_columns(fixed, bars, data, offsets=()):
    """The columns of ``data`` that the formula uses (every one, with '.')."""
    fm = _formulaic()
    used = set()
    dot = has_dot(fixed)
    for part in ([] if dot else [fixed]) + [t for t, _, _ in bars] + list(offsets):
        try:
            used |= set(fm.Formula(part).required_variables)
        except fm.errors.FormulaicError as exc:
            raise ValueError(f"cannot read formula {part!r}: {exc}") from None
    if dot:
        used |= set(map(str, data.columns))
    return {c for c in data.columns if str(c) in used}


def _handle_missing(data, used, group, missing):
    cols = [c for c in data.columns if c in used or c in group]
    na = data[cols].isna()
    if not na.to_numpy().any():
        return data, 0
    rows = na.any(axis=1)
    counts = na.sum()
    detail = ", ".join(f"{c}: {n}" for c, n in counts[counts > 0].items())
    if missing == "raise":
        raise ValueError(f"{int(rows.sum())} rows have missing values ({detail}); "
                         f"clean them or pass missing='drop' to drop those rows")
    if rows.all():
        raise ValueError(f"every one of the {len(data)} rows has a missing value in the "
                         f"formula's columns ({detail}), so missing='drop' leaves "
                         f"nothing; fix those columns or leave them out of the formula")
    warnings.warn(f"dropped {int(rows.sum())} of {len(data)} rows with missing values "
                  f"(missing='drop')", UserWarning, stacklevel=4)
    return data.loc[~rows], int(rows.sum())


def _preview(columns, n=12):
    cols = [str(c) for c in columns]
    return str(cols) if len(cols) <= n else str(cols[:n])[:-1] + f", … ({len(cols)} in all)]"


def design_rows(design: FormulaDesign, data: pd.DataFrame, random_effects: bool = True) -> tuple:
    """(X, groups, Z) of new rows of ``data``, encoded as the fitted ``design``;
    ``groups`` and ``Z`` are None when ``random_effects`` is False."""
    if any(not isinstance(c, str) for c in data.columns):
        data = data.rename(columns=str)
    X = design.fixed_spec.get_model_matrix(data, na_action="raise")
    X = X.drop(columns=["Intercept"]) if "Intercept" in X.columns else X
    if not random_effects:
        return X, None, None
    absent = [c for c in design.group_column.split(":") if c not in data.columns]
    if absent:
        raise ValueError(f"data has no grouping column {absent[0]!r}: add it to "
                         f"predict with the fitted random effects, or pass "
                         f"random_effects=False for the marginal prediction")
    return X, group_labels(data, design.group_column), random_design_matrix(design, data)


def design_offset(design: FormulaDesign, data: pd.DataFrame) -> np.ndarray | None:
    """The formula's offset on new rows of ``data`` (None when it has none)."""
    if not design.offset_terms:
        return None
    if any(not isinstance(c, str) for c in data.columns):
        data = data.rename(columns=str)
    return offset_values(_formulaic(), design.offset_terms, data)
