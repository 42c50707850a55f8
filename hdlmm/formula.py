"""Formula and DataFrame interface, with lme4's random-effect syntax.

``"Reaction ~ Days + (Days | Subject)"`` is split into its fixed part (``Reaction ~ Days``)
and its random-effect bars (``(Days | Subject)``: the terms ``1 + Days`` varying by
``Subject``). Each part is then materialised by formulaic (categorical columns get
treatment contrasts, transforms such as ``np.log(x)`` work, ``.`` means every other
column), so the only hand-written parsing is the split on ``|`` inside parentheses,
which formulaic does not know. ``.`` excludes the response and the grouping column.

One grouping factor (one level of clustering) is supported; several bars on the same
factor (``(1 | g) + (0 + t | g)``) are combined into one Z, with an unstructured Ψ unless
``cov_structure`` says otherwise.

Missing values: ``missing="raise"`` (default) names the columns with missing values and
their counts; ``missing="drop"`` drops those rows with a warning giving the count.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["FormulaDesign", "parse_formula", "split_bars", "FormulaMixin"]

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
    re_spec: object
    n_dropped: int


def split_bars(formula):
    """Split an lme4 formula into (fixed formula, [(terms, group), ...]).

    >>> split_bars("y ~ x + (1 + t | g)")
    ('y ~ x', [('1 + t', 'g')])
    """
    if not isinstance(formula, str) or "~" not in formula:
        raise ValueError(f"formula must be a string 'response ~ terms'; got {formula!r}")
    bars, out, depth, start = [], [], 0, None
    for i, ch in enumerate(formula):
        if ch == "(":
            if depth == 0:
                start = i
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced parentheses in formula {formula!r}")
            if depth == 0:
                inner = formula[start + 1:i]
                if "|" in inner and inner.count("(") == inner.count(")"):
                    bars.append((start, i + 1, inner))
    if depth != 0:
        raise ValueError(f"unbalanced parentheses in formula {formula!r}")
    fixed, last = "", 0
    for s, e, inner in bars:
        fixed += formula[last:s]
        last = e
        terms, group = (part.strip() for part in inner.split("|", 1))
        if group.startswith("|"):
            raise ValueError("the '||' (uncorrelated) syntax is not supported; use "
                             "cov_structure='diagonal'")
        if not terms or not group:
            raise ValueError(f"random-effect term ({inner}) needs terms and a grouping "
                             f"column on each side of '|'")
        out.append((terms, group))
    fixed += formula[last:]
    fixed = re.sub(r"\+\s*(?=\+|$)", "", fixed.strip()).strip()  # drop dangling '+'
    fixed = re.sub(r"~\s*\+", "~ ", fixed)
    fixed = re.sub(r"\s+", " ", fixed)
    if fixed.rstrip().endswith("~"):
        fixed += " 1"
    return fixed, out


def parse_formula(formula, data, missing="raise"):
    """Materialise ``formula`` on ``data`` (a pandas DataFrame).

    Returns
    -------
    FormulaDesign
    """
    if not isinstance(data, pd.DataFrame):
        raise ValueError(f"data must be a pandas DataFrame; got {type(data).__name__}")
    if missing not in MISSING:
        raise ValueError(f"missing must be one of {MISSING}; got {missing!r}")
    if data.columns.duplicated().any():
        dup = sorted(set(data.columns[data.columns.duplicated()].astype(str)))
        raise ValueError(f"data has duplicated column names {dup}; rename them")
    fixed, bars = split_bars(formula)
    if not bars:
        raise ValueError("the formula has no random-effect term such as (1 | group); "
                         "add one to say how rows are clustered")
    groups_cols = {g for _, g in bars}
    if len(groups_cols) > 1:
        raise ValueError(f"hdlmm fits one grouping factor; the formula has "
                         f"{sorted(groups_cols)}")
    group = bars[0][1]
    if group not in data.columns:
        raise ValueError(f"grouping column {group!r} is not in data; columns are "
                         f"{_preview(data.columns)}")
    if _has_dot(fixed):
        fixed += f" - {group}"  # '.' = every other column, not the grouping factor
    data, n_dropped = _handle_missing(data, fixed, bars, group, missing)
    fm = _formulaic()
    mm = _materialise(fm, fixed, data)
    y = np.asarray(mm.lhs, dtype=float).ravel() if hasattr(mm, "lhs") else None
    if y is None or mm.lhs.shape[1] != 1:
        raise ValueError(f"the formula needs one response on the left of '~'; got "
                         f"{formula!r}")
    X = mm.rhs
    fit_intercept = "Intercept" in X.columns
    X = X.drop(columns=["Intercept"]) if fit_intercept else X
    re_terms = " + ".join(f"({t})" for t, _ in bars)
    Zmm = _materialise(fm, re_terms, data)
    names = ["(Intercept)" if c == "Intercept" else str(c) for c in Zmm.columns]
    labels = data[group].to_numpy()
    if pd.unique(labels).size < 2:
        raise ValueError(f"grouping column {group!r} has one level "
                         f"({labels[0]!r}); a mixed model needs at least 2 clusters")
    return FormulaDesign(y=y, X=pd.DataFrame(X), groups=labels,
                         Z=np.asarray(Zmm, dtype=float), re_names=names,
                         fit_intercept=fit_intercept, group_column=group,
                         fixed_spec=mm.rhs.model_spec, re_spec=Zmm.model_spec,
                         n_dropped=n_dropped)


def _materialise(fm, formula, data):
    try:
        return fm.model_matrix(formula, data, na_action="raise")
    except fm.errors.FactorEvaluationError as exc:
        m = re.search(r"`([^`]+)` is not present", str(exc))
        what = f"unknown column {m.group(1)!r}" if m else str(exc).splitlines()[0]
        raise ValueError(f"formula refers to {what}; data has columns "
                         f"{_preview(data.columns)}") from None
    except fm.errors.FormulaicError as exc:
        raise ValueError(f"cannot read formula {formula!r}: {exc}") from None


def _handle_missing(data, fixed, bars, group, missing):
    fm = _formulaic()
    used = set()
    dot = _has_dot(fixed)
    for part in ([] if dot else [fixed]) + [t for t, _ in bars]:
        try:
            used |= set(fm.Formula(part).required_variables)
        except fm.errors.FormulaicError as exc:
            raise ValueError(f"cannot read formula {part!r}: {exc}") from None
    if dot:
        used |= set(map(str, data.columns))
    cols = [c for c in data.columns if str(c) in used or c == group]
    na = data[cols].isna()
    if not na.to_numpy().any():
        return data, 0
    rows = na.any(axis=1)
    if missing == "raise":
        counts = na.sum()
        detail = ", ".join(f"{c}: {n}" for c, n in counts[counts > 0].items())
        raise ValueError(f"{int(rows.sum())} rows have missing values ({detail}); "
                         f"clean them or pass missing='drop' to drop those rows")
    warnings.warn(f"dropped {int(rows.sum())} of {len(data)} rows with missing values "
                  f"(missing='drop')", UserWarning, stacklevel=4)
    return data.loc[~rows], int(rows.sum())


def _has_dot(formula):
    """Whether the formula uses '.' (every other column)."""
    return re.search(r"(^|[~+\s(])\.($|[\s+)-])", formula) is not None


def _preview(columns, n=12):
    cols = [str(c) for c in columns]
    return str(cols) if len(cols) <= n else str(cols[:n])[:-1] + f", … ({len(cols)} in all)]"


class FormulaMixin:
    """Formula methods of :class:`~hdlmm.SparseLMM`."""

    @classmethod
    def from_formula(cls, formula, data, *, missing="raise", **params):
        """Fit ``SparseLMM(**params)`` to ``data`` described by an lme4-style formula.

        Parameters
        ----------
        formula : str
            e.g. ``"y ~ x1 + x2 + (1 + t | subject)"`` or ``"y ~ . + (1 | g)"``.
        data : pandas.DataFrame
        missing : {"raise", "drop"}
        **params : SparseLMM parameters

        Returns
        -------
        SparseLMM, fitted; column names flow into ``feature_names_in_``, ``params_``,
        ``summary()`` and the plots.
        """
        design = parse_formula(formula, data, missing=missing)
        params.setdefault("fit_intercept", design.fit_intercept)
        return cls(**params)._fit_design(formula, design)

    def fit_formula(self, formula, data, *, missing="raise"):
        """Fit this estimator on ``data`` described by ``formula`` (see from_formula)."""
        return self._fit_design(formula, parse_formula(formula, data, missing=missing))

    def _fit_design(self, formula, design):
        if design.fit_intercept != self.fit_intercept:
            raise ValueError(
                f"the formula {'has' if design.fit_intercept else 'removes'} an intercept "
                f"but fit_intercept={self.fit_intercept}; make them agree (write "
                f"'0 +' in the formula to remove it)")
        self._fit(design.X, design.y, design.groups, design.Z, design.re_names)
        self.formula_ = formula
        self.formula_design_ = design
        return self

    def predict_frame(self, data, random_effects=True):
        """Predict for the rows of a DataFrame, encoded as in ``fit_formula``.

        Rows of clusters seen in fit add their BLUPs (unless ``random_effects=False``).
        """
        design = getattr(self, "formula_design_", None)
        if design is None:
            raise ValueError("predict_frame needs a model fitted by from_formula or "
                             "fit_formula; use predict(X, groups, Z) otherwise")
        X = design.fixed_spec.get_model_matrix(data, na_action="raise")
        X = X.drop(columns=["Intercept"]) if "Intercept" in X.columns else X
        Z = np.asarray(design.re_spec.get_model_matrix(data, na_action="raise"), float)
        return self.predict(X, groups=data[design.group_column].to_numpy(), Z=Z,
                            random_effects=random_effects)
