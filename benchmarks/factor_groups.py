"""Factors selected whole: accuracy of group selection, and how a group is counted.

Data (per replicate, seed = replicate): 100 clusters of 4-12 rows, a random intercept
and slope; 60 numeric candidates (3 of them with effects 0.5, -0.4, 0.3) and 8 factors of
4 levels (treatment dummies, 3 columns each), one factor with level effects
(0, 0.3, -0.3, 0.2); σ² = 1, Ψ = [[1, 0.2], [0.2, 0.5]]. p = 84 columns, 68 terms.
Every estimator is fitted in this process on the same data frame, by the formula
``y ~ . + (1 + t | g)``:

    groups-one      SparseLMM() (feature_groups="terms"): a factor in or out whole,
                    counting once in k and in EBIC's number of supports, its columns
                    counting as parameters (the default)
    groups-columns  the same search, with EBIC counting a factor as its 3 columns in
                    both terms (k and p in columns)
    columns         SparseLMM(feature_groups="columns"): every dummy on its own
    oracle          the true terms forced, nothing selected (the GLS fit of lme4's model
                    on the true support)

Reported per estimator: exact recovery of the true terms, the rate of a factor split
(some but not all of its dummies), true and false terms, l2 error of all coefficients
(mean ± MC SE; and its ratio to the oracle's), median fit time.

Run:  python benchmarks/factor_groups.py --reps 100
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

import hdlmm
from hdlmm import SparseLMM

FACTOR_EFFECT = {"a": 0.0, "b": 0.3, "c": -0.3, "d": 0.2}
NUMERIC_EFFECT = {"x0": 0.5, "x1": -0.4, "x2": 0.3}
TRUE_TERMS = {"x0", "x1", "x2", "f0"}


def make_frame(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(4, 13, size=100)
    g = np.repeat(np.arange(100), sizes)
    n = g.size
    df = pd.DataFrame({"g": g, "t": rng.uniform(0, 1, n)})
    for j in range(60):
        df[f"x{j}"] = rng.normal(size=n)
    for j in range(8):
        df[f"f{j}"] = rng.choice(list("abcd"), n)
    re = rng.multivariate_normal([0, 0], [[1.0, 0.2], [0.2, 0.5]], size=100)
    df["y"] = (sum(b * df[c] for c, b in NUMERIC_EFFECT.items())
               + df.f0.map(FACTOR_EFFECT) + re[g, 0] + re[g, 1] * df.t
               + rng.normal(size=n))
    return df


def true_coef(names) -> np.ndarray:
    out = np.zeros(len(names))
    for i, name in enumerate(names):
        if name in NUMERIC_EFFECT:
            out[i] = NUMERIC_EFFECT[name]
        elif name.startswith("f0[T."):
            out[i] = FACTOR_EFFECT[name[5]]
    return out


def _term(name):
    return name.split("[", 1)[0]


def _row(model, names, seconds):
    chosen = [names[j] for j in model.support_]
    terms = {_term(c) for c in chosen}
    split = sum(0 < sum(_term(c) == f"f{j}" for c in chosen) < 3 for j in range(8))
    beta = true_coef(names)
    return dict(exact=terms == TRUE_TERMS, split=split, tp=len(terms & TRUE_TERMS),
                fp=len(terms - TRUE_TERMS), l2=float(np.linalg.norm(
                    model.coef_ - beta)), seconds=seconds)


class _CountColumns:
    """EBIC with a group counted as its columns: k and p in columns (a patch of the
    criterion the selection uses)."""

    def __init__(self, p_columns):
        self.p_columns = p_columns
        self.original = hdlmm.model.selection.information_criterion

    def __call__(self, rss, k, n_eff, p, kind="ebic", df=None):
        if df is None:
            return self.original(rss, k, n_eff, p, kind)
        return self.original(rss, df, n_eff, self.p_columns, kind)

    def __enter__(self):
        hdlmm.model.selection.information_criterion = self
        return self

    def __exit__(self, *exc):
        hdlmm.model.selection.information_criterion = self.original


def replicate(seed: int) -> list[dict]:
    df = make_frame(seed)
    formula = "y ~ . + (1 + t | g)"
    rows = []
    for name in ("groups-one", "groups-columns", "columns", "oracle"):
        t0 = time.perf_counter()
        if name == "groups-one":
            m = SparseLMM.from_formula(formula, df, random_state=seed, inference=None)
        elif name == "groups-columns":
            with _CountColumns(84):
                m = SparseLMM.from_formula(formula, df, random_state=seed, inference=None)
        elif name == "columns":
            m = SparseLMM.from_formula(formula, df, random_state=seed, inference=None,
                                       feature_groups="columns")
        else:
            m = SparseLMM.from_formula(formula, df, random_state=seed, inference=None,
                                       force=sorted(TRUE_TERMS), support_size=0, a=1.0)
        names = list(m.feature_names_in_)
        rows.append(dict(estimator=name, seed=seed,
                         **_row(m, names, time.perf_counter() - t0)))
    return rows


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    oracle = table[table.estimator == "oracle"].set_index("seed").l2
    out = []
    for name, part in table.groupby("estimator", sort=False):
        ratio = part.set_index("seed").l2 / oracle
        n = len(part)
        out.append(dict(
            estimator=name, reps=n,
            exact=f"{part.exact.mean():.3f} ± {part.exact.std() / np.sqrt(n):.3f}",
            split_factors=f"{part.split.mean():.3f}", tp=f"{part.tp.mean():.2f}",
            fp=f"{part.fp.mean():.2f}",
            l2=f"{part.l2.mean():.4f} ± {part.l2.std() / np.sqrt(n):.4f}",
            l2_over_oracle=f"{ratio.mean():.3f} ± {ratio.std() / np.sqrt(n):.3f}",
            median_s=f"{part.seconds.median():.2f}"))
    return pd.DataFrame(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=100)
    parser.add_argument("--start", type=int, default=0)
    args = parser.parse_args()
    rows = []
    for seed in range(args.start, args.start + args.reps):
        rows += replicate(seed)
    table = pd.DataFrame(rows)
    table.to_csv(f"benchmarks/out/factor_groups_from{args.start}.csv", index=False)
    print(summarise(table).to_string(index=False))


if __name__ == "__main__":
    main()
