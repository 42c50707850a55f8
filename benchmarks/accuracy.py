"""Accuracy of hdlmm's automatic choice of (a, k) against its peers and an oracle.

For each setting and replicate, every estimator is fitted on the same data in this
process; per-replicate rows go to benchmarks/out/accuracy_<setting>_from<start>.csv and
``--summary`` prints the table (exact support recovery, mean TP/FP, mean l2 error ± SE,
median fit time).

Settings
    s1  the tutorial's data (m=8, n=15, p=200, q=4), seed = replicate
    s2  the tutorial generator's defaults (m=8, n=30, p=300, q=8)
    s3  unbalanced clusters (m_i 2..20, n=40), p=1000, random intercept + slope with
        correlated Ψ, k=5 with large and small coefficients
    s4  strong within-cluster correlation (Ψ large relative to σ²)
    s5  AR(0.5)-correlated columns of X

Estimators
    hdlmm          SparseLMM() defaults
    hdlmm-<v>      variants used to choose the defaults (see VARIANTS)
    hdlmm-truek    SparseLMM(support_size=k_true), a by grouped CV
    tutorial       the tutorial's pipeline: dense eig transform + skscope, k known, with
                   its a rule (which never updates its best loss, so always returns the
                   last a = 9: we run a = 9 only, the identical result)
    abess-trans    abess LinearRegression (default EBIC path) on the data whitened at a=9
    abess-raw      abess LinearRegression on the raw data
    lassocv        scikit-learn LassoCV with GroupKFold(5) on the raw data
    oracle         statsmodels MixedLM (REML) on the true support with the true Z

Run:  python benchmarks/accuracy.py --setting s1 --reps 100
      python benchmarks/accuracy.py --summary
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import hdlmm

OUT = Path(__file__).parent / "out"
ESTIMATORS = ["hdlmm", "hdlmm-truek", "tutorial", "abess-trans", "abess-raw", "lassocv",
              "oracle"]


def make_setting(name, rep):
    """The data of one replicate of a setting."""
    if name in ("s1", "s2"):
        args = dict(m=8, n=15, p=200, q=4) if name == "s1" else dict(m=8, n=30, p=300, q=8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return hdlmm.make_tutorial_data(seed=rep, **args)
    if name == "s3":
        return hdlmm.make_lmm_data(n_clusters=40, n_obs=(2, 20), n_features=1000, n_re=2,
                                   coef=[3.0, -2.0, 1.5, 0.5, -0.5],
                                   cov_re=[[1.0, 0.5], [0.5, 1.0]], scale=1.0,
                                   random_state=rep)
    if name == "s4":
        return hdlmm.make_lmm_data(n_clusters=30, n_obs=10, n_features=300, n_re=2,
                                   coef=[1.0, -1.5, 2.0], cov_re=[[16.0, 4.0], [4.0, 4.0]],
                                   scale=1.0, random_state=rep)
    if name == "s5":
        return hdlmm.make_lmm_data(n_clusters=30, n_obs=10, n_features=300, n_re=2,
                                   coef=[1.0, -1.5, 2.0], x_corr=0.5, scale=1.0,
                                   random_state=rep)
    raise ValueError(f"unknown setting {name!r}")


def whiten(d, a):
    """Explicit per-cluster Σ_a^{-1/2}(X, y) (for the peers that need the rows)."""
    Xa, ya = np.empty_like(d.X), np.empty_like(d.y)
    for g in np.unique(d.groups):
        r = d.groups == g
        w, V = np.linalg.eigh(a * d.Z[r] @ d.Z[r].T + np.eye(r.sum()))
        L = (V / np.sqrt(w)) @ V.T
        Xa[r], ya[r] = L @ d.X[r], L @ d.y[r]
    return Xa, ya


#: hdlmm variants compared to choose the defaults (name -> SparseLMM parameters)
VARIANTS = {
    "hdlmm": {},
    "hdlmm-marginal": dict(cv_criterion="marginal"),
    "hdlmm-gls": dict(refit=True),
    "hdlmm-icrows": dict(ic_samples="rows"),
    "hdlmm-ml": dict(ic_samples="ml"),
    "hdlmm-eff": dict(ic_samples="effective"),
    "hdlmm-kcv": dict(k_selection="cv"),
    "hdlmm-gic": dict(ic="gic"),
    "hdlmm-bic": dict(ic="bic"),
    "hdlmm-effic": dict(a_selection="efficiency"),
    # density of the a-grid over 0.1..100 besides 0, every value evaluated: decades,
    # half-decades, thirds (the default grid) and
    # quarters of a decade
    "hdlmm-grid4": dict(a_grid=np.r_[0.0, np.logspace(-1, 2, 4)], a_search="full"),
    "hdlmm-grid7": dict(a_grid=np.r_[0.0, np.logspace(-1, 2, 7)], a_search="full"),
    "hdlmm-grid10": dict(a_grid=np.r_[0.0, np.logspace(-1, 2, 10)], a_search="full"),
    "hdlmm-grid13": dict(a_grid=np.r_[0.0, np.logspace(-1, 2, 13)], a_search="full"),
    # the default grid searched locally from its decades (the default search)
    # (the variants above were measured with one_se=False, then the only rule)
    "hdlmm-refine": dict(a_search="refine", one_se=False),
    # the criterion's k without the one-SE rule (the default before that rule)
    "hdlmm-prev": dict(one_se=False),
    # the classical one-SE rule on k, and the rule on the paired (fold-by-fold)
    # difference at the one-sided 5% level (the default)
    "hdlmm-onese": dict(one_se=True),
    "hdlmm-paired": dict(one_se="paired"),
    # the proxy estimate of the selection reported instead of the fitted mixed model's
    # GLS (the reported estimate before the GLS became the default)
    "hdlmm-proxy": dict(refit=False),
}


def fit_one(name, d):
    """Coefficient vector (length p) of one estimator."""
    k = d.support.size
    if name in VARIANTS:
        return hdlmm.SparseLMM(random_state=0, **VARIANTS[name]).fit(
            d.X, d.y, groups=d.groups, Z=d.Z).coef_
    if name == "hdlmm-truek":
        return hdlmm.SparseLMM(support_size=k, random_state=0).fit(
            d.X, d.y, groups=d.groups, Z=d.Z).coef_
    if name == "tutorial":
        from seed import tutorial_lmm_scope
        order = np.argsort(d.groups, kind="stable")
        m = np.bincount(d.groups)
        if np.all(m == m[0]):
            return tutorial_lmm_scope(d.X[order], d.Z[order], d.y[order], m[0], 9, k)[0]
        return _tutorial_unbalanced(d, 9, k)
    if name in ("abess-trans", "abess-raw"):
        from abess import LinearRegression
        X, y = whiten(d, 9.0) if name == "abess-trans" else (d.X, d.y)
        return LinearRegression().fit(X, y).coef_
    if name == "lassocv":
        from sklearn.linear_model import LassoCV
        from sklearn.model_selection import GroupKFold
        cv = list(GroupKFold(5).split(d.X, d.y, d.groups))
        return LassoCV(cv=cv, n_jobs=1).fit(d.X, d.y).coef_
    if name == "oracle":
        from statsmodels.regression.mixed_linear_model import MixedLM
        S = d.support
        exog = np.column_stack([np.ones(len(d.y)), d.X[:, S]])
        res = MixedLM(d.y, exog, groups=d.groups, exog_re=d.Z).fit()
        beta = np.zeros(d.X.shape[1])
        beta[S] = np.asarray(res.fe_params)[1:]
        return beta
    raise ValueError(name)


def _tutorial_unbalanced(d, a, k):
    """The tutorial's method (dense eig transform + skscope) for unequal cluster sizes."""
    import jax.numpy as jnp
    from skscope import ScopeSolver

    N = len(d.y)
    Sigma = np.zeros((N, N))
    for g in np.unique(d.groups):
        r = np.flatnonzero(d.groups == g)
        Sigma[np.ix_(r, r)] = a * d.Z[r] @ d.Z[r].T + np.eye(r.size)
    w, v = np.linalg.eig(Sigma)
    w, v = np.real(w), np.real(v)
    L = v @ np.diag(w ** -0.5) @ v.T
    Xa, ya = L @ d.X, L @ d.y
    tr = float(np.sum(1 / w))
    return np.asarray(ScopeSolver(d.X.shape[1], k).solve(
        lambda b: jnp.sum((ya - Xa @ b) ** 2) / tr))


def run(setting, reps, estimators, start=0, tag=""):
    import sys
    sys.path.insert(0, str(Path(__file__).parent))
    OUT.mkdir(exist_ok=True)
    path = OUT / f"accuracy_{setting}_from{start}{tag}.csv"
    rows = []
    for rep in range(start, start + reps):
        d = make_setting(setting, rep)
        truth = set(d.support.tolist())
        for name in estimators:
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                coef = np.asarray(fit_one(name, d), dtype=float)
            secs = time.perf_counter() - t0
            sel = set(np.flatnonzero(np.abs(coef) > 1e-10).tolist())
            rows.append(dict(setting=setting, rep=rep, estimator=name,
                             exact=sel == truth, tp=len(sel & truth), fp=len(sel - truth),
                             l2=float(np.linalg.norm(coef - d.beta)), seconds=secs))
        pd.DataFrame(rows).to_csv(path, index=False)
        print(f"{setting} rep {rep} done", flush=True)


def summary(patterns=None, references=("abess-trans",), estimators=None):
    """Print the table. ``patterns``: globs under out/, in order; a row of a later file
    replaces the same (setting, replicate, estimator) of an earlier one (default: every
    file, the first row of overlapping restarts kept)."""
    if patterns:
        files = [f for pat in patterns for f in sorted(OUT.glob(pat))]
        keep = "last"
    else:
        files, keep = sorted(OUT.glob("accuracy_s*.csv")), "first"
    df = pd.concat([pd.read_csv(f) for f in files])
    df = df.drop_duplicates(["setting", "rep", "estimator"], keep=keep)
    if estimators:
        df = df[df.estimator.isin(estimators)]
    g = df.groupby(["setting", "estimator"], sort=False)
    tab = pd.DataFrame({
        "reps": g.size(),
        "exact %": 100 * g["exact"].mean(),
        "exact SE": 100 * g["exact"].std() / np.sqrt(g.size()),
        "TP": g["tp"].mean(), "FP": g["fp"].mean(),
        "l2 mean": g["l2"].mean(), "l2 SE": g["l2"].std() / np.sqrt(g.size()),
        "median s": g["seconds"].median()})
    tab["l2 / oracle"] = oracle_ratio(df).reindex(tab.index)
    if estimators:  # settings in order, estimators in the order given
        tab = tab.reindex(sorted(tab.index, key=lambda i: (i[0], estimators.index(i[1]))))
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(tab.round(3).to_string())
        for ref in references:
            print(f"\nPaired l2 differences against {ref} (mean ± SE over the shared "
                  f"replicates):")
            print(paired(df, ref).drop(columns=[ref], errors="ignore").to_string())
    return tab


def oracle_ratio(df):
    """Mean l2 of each estimator over the oracle's mean l2 on the same replicates."""
    wide = df.pivot_table(index=["setting", "rep"], columns="estimator", values="l2")
    if "oracle" not in wide:
        return pd.Series(dtype=float)
    out = {}
    for setting, w in wide.groupby(level="setting"):
        for name in w.columns:
            both = w[name].notna() & w["oracle"].notna()
            out[setting, name] = w.loc[both, name].mean() / w.loc[both, "oracle"].mean()
    return pd.Series(out)


def paired(df, reference):
    """Mean and SE of l2(estimator) − l2(reference) on the same replicates, for every
    hdlmm estimator."""
    wide = df.pivot_table(index=["setting", "rep"], columns="estimator", values="l2")
    out = {}
    for name in [c for c in wide.columns if c.startswith("hdlmm")]:
        diff = (wide[name] - wide[reference]).dropna().groupby(level="setting")
        se = diff.std() / np.sqrt(diff.size())
        out[name] = pd.Series({s: f"{m:+.4f} ± {se[s]:.4f} ({diff.size()[s]})"
                               for s, m in diff.mean().items()})
    return pd.DataFrame(out).fillna("")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setting", choices=["s1", "s2", "s3", "s4", "s5"])
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--estimators", default=None,
                    help="comma-separated (default: the table's estimators); with "
                         "--summary, only these rows")
    ap.add_argument("--tag", default="",
                    help="suffix of the output file (runs of extra estimators on the "
                         "same replicates keep the others' file)")
    ap.add_argument("--summary", action="store_true")
    ap.add_argument("--against", nargs="+", default=["abess-trans"],
                    help="with --summary: estimators to pair the hdlmm variants with")
    ap.add_argument("--files", nargs="+",
                    help="with --summary: globs under out/, later files replacing rows "
                         "of earlier ones (e.g. a re-run of the defaults)")
    args = ap.parse_args()
    names = args.estimators.split(",") if args.estimators else None
    if args.summary:
        summary(args.files, args.against, names)
    else:
        run(args.setting, args.reps, names or ESTIMATORS, args.start, args.tag)


if __name__ == "__main__":
    main()
