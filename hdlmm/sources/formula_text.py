"""The text of an lme4 formula, before any data: its random-effect bars split off
(``(t | g)``, ``(t || g)``), the ``force(...)`` and ``offset(...)`` markers taken out,
a binomial ``cbind(successes, failures)`` response rewritten, and ``.`` detected. The
only hand-written parsing of formulas; the rest is formulaic's
(:mod:`hdlmm.sources.formula`)."""

from __future__ import annotations

import re

__all__ = ["split_bars", "strip_force", "strip_marker", "binomial_response", "has_dot"]


def split_bars(formula: str) -> tuple:
    """Split an lme4 formula into (fixed formula, [(terms, group), ...]).

    Each bar is ``(terms, group, correlated)``; ``correlated`` is False for lme4's
    ``||`` (every column its own, uncorrelated random effect).

    >>> split_bars("y ~ x + (1 + t | g)")
    ('y ~ x', [('1 + t', 'g', True)])
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
        correlated = not group.startswith("|")
        group = group.lstrip("|").strip()
        if not terms or not group:
            raise ValueError(f"random-effect term ({inner}) needs terms and a grouping "
                             f"column on each side of '|'")
        out.append((terms, group, correlated))
    fixed += formula[last:]
    fixed = re.sub(r"\+\s*(?=\+|$)", "", fixed.strip()).strip()  # drop dangling '+'
    fixed = re.sub(r"~\s*\+", "~ ", fixed)
    fixed = re.sub(r"\s+", " ", fixed)
    if fixed.rstrip().endswith("~"):
        fixed += " 1"
    return fixed, out


def strip_force(fixed: str) -> tuple:
    """The fixed formula with every ``force(terms)`` marker replaced by its terms, and
    the marked terms' text (they stay in the model unpenalised).

    >>> strip_force("y ~ force(age + sex) + x")
    ('y ~ age + sex + x', ['age + sex'])
    """
    return strip_marker(fixed, "force")


def strip_marker(fixed: str, marker: str) -> tuple:
    """The fixed formula with every ``marker(...)`` call handled, and the text inside
    each: ``force`` keeps its terms in the formula, ``offset`` removes the call (an
    offset is not a candidate predictor).

    >>> strip_marker("y ~ x + offset(np.log(t))", "offset")
    ('y ~ x', ['np.log(t)'])
    """
    out, marked, i = "", [], 0
    for m in re.finditer(rf"\b{marker}\s*\(", fixed):
        if m.start() < i:
            continue
        depth, j = 1, m.end()
        while j < len(fixed) and depth:
            depth += {"(": 1, ")": -1}.get(fixed[j], 0)
            j += 1
        inner = fixed[m.end():j - 1].strip()
        if depth or not inner:
            example = "force(age + sex)" if marker == "force" else "offset(np.log(exposure))"
            raise ValueError(f"{marker}(...) in {fixed!r} needs terms inside its "
                             f"parentheses, e.g. {example}")
        out += fixed[i:m.start()] + (inner if marker == "force" else "")
        marked.append(inner)
        i = j
    out += fixed[i:]
    if marker == "offset" and marked:  # drop the '+' left where the call was
        out = re.sub(r"\+\s*(?=\+|$)", "", out.strip()).strip()
        out = re.sub(r"~\s*\+", "~ ", out)
        out = re.sub(r"\s+", " ", out)
        out += " 1" if out.rstrip().endswith("~") else ""
    return out, marked


def binomial_response(fixed: str) -> tuple:
    """``cbind(s, f) ~ rhs`` as (``I(s) ~ rhs``, [s, f]); other formulas unchanged."""
    response, rhs = fixed.split("~", 1)
    m = re.fullmatch(r"\s*cbind\s*\((.*)\)\s*", response)
    if not m:
        return fixed, None
    parts, depth, last = [], 0, 0
    inner = m.group(1)
    for i, ch in enumerate(inner):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(inner[last:i].strip())
            last = i + 1
    parts.append(inner[last:].strip())
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"cbind(...) needs two parts, successes and failures, e.g. "
                         f"cbind(incidence, size - incidence); got cbind({inner})")
    return f"I({parts[0]}) ~{rhs}", parts


def has_dot(formula: str) -> bool:
    """Whether the formula uses '.' (every other column)."""
    return re.search(r"(^|[~+\s(])\.($|[\s+)-])", formula) is not None
