"""Accuracy of SparseGLMM (binary and count outcomes) against an oracle and the peers a
user would pick instead, in one process on the same data.

Settings (seed = replicate): 150 clusters of 5-20 rows (N ≈ 1,900), p = 500, k = 5
with coefficients ±U(0.5, 1), a random intercept and slope (Ψ = [[0.5, 0.1], [0.1,
0.3]], slope covariate U(0, 1)):

    binary        y ~ Bernoulli(logistic(η))
    poisson       y ~ Poisson(exp(0.5 + η))
    binary_small  a small sample: 60 clusters of 6 rows (N = 360), p = 50, k = 2 with
                  coefficients ±1, otherwise as binary

Estimators:

    hdlmm        SparseGLMM(family) defaults (PQL selection, k by EBIC on the working
                 model and a by grouped CV on the held-out deviance, then the Laplace fit)
    hdlmm_cv     (``--also-cv``) SparseGLMM(family, k_selection="cv"): a and k jointly
                 by that CV
    oracle       the Laplace fit (= glmer, tests/test_glmm.py) on the true support
    abess        abess LogisticRegression / PoissonRegression (its default path and
                 criterion), ignoring the clusters
    bayes        (``--bayes``) statsmodels' Bayesian mixed GLM (variational Bayes, the
                 random intercept and slope; no selection: every coefficient estimated)
    lasso        binary: scikit-learn LogisticRegressionCV, L1 (liblinear), on glmnet's
                 kind of grid (20 values of λ from λ_max down to λ_max / 100, C = 1/(Nλ)),
                 5 grouped folds (whole clusters), ignoring the clusters;
                 poisson: none (scikit-learn has no L1 Poisson)

Reported: exact support recovery, mean TP/FP, mean l2 error of β (± MC SE), its ratio
to the oracle's, median seconds.

``--coverage`` fits hdlmm only and reports the coverage of its nominal 95% intervals for
the true nonzero coefficients it selected, with the Monte-Carlo SE over replicates: the
Wald intervals (Laplace SEs on the selected support, which ignore the selection) and
the debiased ones (``confint()``: the debiased estimator on the final working model,
cluster-robust SEs).

Run:  python benchmarks/glmm_accuracy.py --setting binary --reps 200 --also-cv
      python benchmarks/glmm_accuracy.py --setting binary_small --reps 200 --also-cv
      python benchmarks/glmm_accuracy.py --summary
      python benchmarks/glmm_accuracy.py --setting poisson --reps 100 --coverage
"""

from __future__ import annotations

import argparse
import glob
import time
import warnings

import numpy as np
import pandas as pd

from hdlmm.api.glmm_estimator import SparseGLMM
from hdlmm.model.families import get_family
from hdlmm.model.glmm import fit_laplace

#: each setting's family and sizes (see the module docstring)
SETTINGS = {
    "binary": dict(family="binomial"),
    "poisson": dict(family="poisson"),
    "binary_small": dict(family="binomial", n_clusters=60, p=50, k=2, smallest=6,
                         largest=6, magnitude=(1.0, 1.0)),
}


def simulate(seed: int, setting: str, n_clusters: int = 150, p: int = 500, k: int = 5,
             smallest: int = 5, largest: int = 20, magnitude: tuple = (0.5, 1.0)):
    """(X, y, groups, Z, β, true support, η) of one replicate; clusters of
    smallest..largest rows, coefficients ±U(magnitude)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(smallest, largest + 1, n_clusters)
    g = np.repeat(np.arange(n_clusters), sizes)
    N = g.size
    X = rng.normal(size=(N, p))
    beta = np.zeros(p)
    S = np.sort(rng.choice(p, k, replace=False))
    beta[S] = rng.choice([-1, 1], k) * rng.uniform(*magnitude, k)
    Z = np.c_[np.ones(N), rng.uniform(0, 1, N)]
    gamma = rng.multivariate_normal([0, 0], [[0.5, 0.1], [0.1, 0.3]], n_clusters)
    eta = X @ beta + np.sum(Z * gamma[g], axis=1)
    if SETTINGS[setting]["family"] == "binomial":
        y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    else:
        y = rng.poisson(np.exp(0.5 + eta))
    return X, y.astype(float), g, Z, beta, S, eta


def _row(name, seed, coef, beta, S, seconds):
    chosen = set(np.flatnonzero(coef))
    return dict(estimator=name, seed=seed, exact=chosen == set(S),
                tp=len(chosen & set(S)), fp=len(chosen - set(S)),
                l2=float(np.linalg.norm(coef - beta)), seconds=seconds)


def _simulated(seed, setting):
    """:func:`simulate` with the sizes of ``setting``."""
    sizes = {k: v for k, v in SETTINGS[setting].items() if k != "family"}
    return simulate(seed, setting, **sizes)


def bayes(X, y, g, Z, setting):
    """statsmodels' Bayesian mixed GLM (variational Bayes, random intercept and slope
    per cluster, every column a fixed effect: it does not select): posterior means."""
    from statsmodels.genmod.bayes_mixed_glm import (
        BinomialBayesMixedGLM,
        PoissonBayesMixedGLM,
    )

    G = pd.get_dummies(g).to_numpy(float)
    vc = np.c_[G, G * Z[:, 1:2]]
    ident = np.r_[np.zeros(G.shape[1], int), np.ones(G.shape[1], int)]
    cls = (BinomialBayesMixedGLM if SETTINGS[setting]["family"] == "binomial"
           else PoissonBayesMixedGLM)
    fit = cls(y, np.c_[np.ones(len(y)), X], vc, ident, vcp_p=1, fe_p=2).fit_vb()
    return np.asarray(fit.fe_mean[1:])


def replicate(seed: int, setting: str, lasso: bool = True, also_cv: bool = False,
              with_bayes: bool = False) -> list[dict]:
    X, y, g, Z, beta, S, _ = _simulated(seed, setting)
    family = SETTINGS[setting]["family"]
    rows = []
    for name, how in [("hdlmm", "ic")] + [("hdlmm_cv", "cv")] * also_cv:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = SparseGLMM(family, k_selection=how, random_state=seed).fit(X, y, g, Z)
        rows.append(_row(name, seed, m.coef_, beta, S, time.perf_counter() - t0))
    t0 = time.perf_counter()
    fit = fit_laplace(np.c_[np.ones(len(y)), X[:, S]], y, Z, g, get_family(family))
    coef = np.zeros_like(beta)
    coef[S] = fit.coef[1:]
    rows.append(_row("oracle", seed, coef, beta, S, time.perf_counter() - t0))
    try:
        import abess
        t0 = time.perf_counter()
        est = (abess.LogisticRegression() if family == "binomial"
               else abess.PoissonRegression())
        est.fit(X, y)
        rows.append(_row("abess", seed, np.asarray(est.coef_).ravel(), beta, S,
                         time.perf_counter() - t0))
    except ImportError:
        pass
    if with_bayes:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            coef = bayes(X, y, g, Z, setting)
        rows.append(_row("bayes", seed, coef, beta, S, time.perf_counter() - t0))
    if family == "binomial" and lasso:
        from sklearn.linear_model import LogisticRegressionCV
        from sklearn.model_selection import GroupKFold
        t0 = time.perf_counter()
        folds = list(GroupKFold(5).split(X, y, g))
        lam_max = np.max(np.abs((X - X.mean(0)).T @ (y - y.mean()))) / len(y)
        Cs = 1.0 / (len(y) * lam_max * np.logspace(0, -2, 20))
        est = LogisticRegressionCV(Cs=Cs, cv=folds, penalty="l1", solver="liblinear",
                                   max_iter=1000).fit(X, y)
        rows.append(_row("lasso", seed, est.coef_.ravel(), beta, S,
                         time.perf_counter() - t0))
    return rows


def coverage(seed: int, setting: str) -> dict:
    """Coverage of hdlmm's 95% intervals for the selected true nonzeros: the Wald
    intervals of the Laplace fit, and the debiased ones of the final working model."""
    X, y, g, Z, beta, S, _ = _simulated(seed, setting)
    family = SETTINGS[setting]["family"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = SparseGLMM(family, random_state=seed).fit(X, y, g, Z)
    names = [f"x{j}" for j in S if j in set(m.support_)]
    truth = pd.Series(beta, index=[f"x{j}" for j in range(beta.size)])[names]
    out = dict(seed=seed, n=len(names))
    for kind in ("wald", "debiased"):
        ci = m.confint(kind=kind).loc[names]
        out[kind] = int(((ci.iloc[:, 0] <= truth) & (truth <= ci.iloc[:, 1])).sum())
    return out


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    oracle = table[table.estimator == "oracle"].set_index("seed").l2
    out = []
    for name, part in table.groupby("estimator", sort=False):
        n = len(part)
        ratio = part.set_index("seed").l2 / oracle
        out.append(dict(
            estimator=name, reps=n,
            exact=f"{part.exact.mean():.3f} ± {part.exact.std() / np.sqrt(n):.3f}",
            tp=f"{part.tp.mean():.2f}", fp=f"{part.fp.mean():.2f}",
            l2=f"{part.l2.mean():.4f} ± {part.l2.std() / np.sqrt(n):.4f}",
            l2_over_oracle=f"{ratio.mean():.3f} ± {ratio.std() / np.sqrt(n):.3f}",
            median_s=f"{part.seconds.median():.2f}"))
    return pd.DataFrame(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=list(SETTINGS), default="binary")
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--summary", action="store_true")
    parser.add_argument("--coverage", action="store_true")
    parser.add_argument("--no-lasso", action="store_true", help="leave out the slow peer")
    parser.add_argument("--also-cv", action="store_true", help="also k_selection='cv'")
    parser.add_argument("--bayes", action="store_true",
                        help="also statsmodels' Bayesian mixed GLM (slow for binary)")
    args = parser.parse_args()
    if args.coverage:
        table = pd.DataFrame([coverage(seed, args.setting)
                              for seed in range(args.start, args.start + args.reps)])
        table.to_csv(f"benchmarks/out/glmm_coverage_{args.setting}_from{args.start}.csv",
                     index=False)
        for kind in ("wald", "debiased"):
            rate = table[kind] / table.n
            print(f"{args.setting}: {args.reps} replicates, {kind} 95% intervals cover "
                  f"{table[kind].sum() / table.n.sum():.3f} ± "
                  f"{rate.std() / np.sqrt(rate.notna().sum()):.3f} of the selected true "
                  f"nonzeros (MC SE over replicates)")
        return
    if args.summary:
        for setting in SETTINGS:
            files = glob.glob(f"benchmarks/out/glmm_{setting}_from*.csv")
            if files:
                table = pd.concat([pd.read_csv(f) for f in files])
                print(f"{setting}:\n{summarise(table).to_string(index=False)}\n")
        return
    rows = [r for seed in range(args.start, args.start + args.reps)
            for r in replicate(seed, args.setting, not args.no_lasso, args.also_cv,
                               args.bayes)]
    tag = ("_nolasso" if args.no_lasso else "") + ("_bayes" if args.bayes else "")
    pd.DataFrame(rows).to_csv(f"benchmarks/out/glmm_{args.setting}{tag}_from{args.start}.csv",
                              index=False)
    print(summarise(pd.DataFrame(rows)).to_string(index=False))


if __name__ == "__main__":
    main()
