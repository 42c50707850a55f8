"""Coverage of SparseLMM.predict_interval for new observations, by simulation.

Per replicate (seed = replicate): make_lmm_data with 50 clusters of 2-10 rows, p = 200
candidates, k = 3, a random intercept and slope (Ψ, σ² of the generator's defaults);
SparseLMM() with its defaults (a, k chosen; the selection is part of what is tested),
then 100 new rows drawn from the true model: 50 in clusters seen in fit (their true
γ_i), 50 in new clusters (fresh γ from Ψ). Reported: the fraction of the nominal 95%
intervals that contain the new y, per kind of row, with its Monte-Carlo SE (over
replicates), and the same with the true support given (support_size=3 on the true
columns forced), which separates the selection's share of any shortfall.

Run:  python benchmarks/prediction_coverage.py --reps 200
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

import hdlmm
from hdlmm import SparseLMM


def replicate(seed: int) -> list[dict]:
    d = hdlmm.make_lmm_data(n_clusters=50, n_obs=(2, 10), n_features=200, support_size=3,
                            random_state=seed)
    rng = np.random.default_rng(10_000 + seed)
    labels = np.unique(d.groups)
    m_new = 50
    Xn = rng.normal(size=(2 * m_new, d.X.shape[1]))
    Zn = np.c_[np.ones(2 * m_new), rng.uniform(d.Z[:, 1].min(), d.Z[:, 1].max(), 2 * m_new)]
    seen = rng.choice(labels, m_new)
    gamma = np.r_[d.gamma[np.searchsorted(labels, seen)],
                  rng.multivariate_normal(np.zeros(2), d.cov_re, size=m_new)]
    y = Xn @ d.beta + np.sum(Zn * gamma, axis=1) + rng.normal(scale=np.sqrt(d.scale),
                                                             size=2 * m_new)
    groups = np.r_[seen, [f"new{i}" for i in range(m_new)]].astype(object)
    rows = []
    for name, params in (("selected", {}),
                         ("true support", dict(force=list(d.support), support_size=0))):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = SparseLMM(random_state=seed, inference=None, **params).fit(
                d.X, d.y, d.groups, d.Z)
            pi = m.predict_interval(Xn, groups, Zn)
        hit = ((pi.lower < y) & (y < pi.upper)).to_numpy()
        rows.append(dict(seed=seed, fit=name, seen=hit[:m_new].mean(),
                         new=hit[m_new:].mean(), exact=set(m.support_) == set(d.support),
                         seconds=time.perf_counter() - t0))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200)
    args = parser.parse_args()
    table = pd.DataFrame([r for seed in range(args.reps) for r in replicate(seed)])
    table.to_csv("benchmarks/out/prediction_coverage.csv", index=False)
    for name, part in table.groupby("fit", sort=False):
        n = len(part)
        print(f"{name:>13}: {n} replicates; seen clusters {part.seen.mean():.3f} ± "
              f"{part.seen.std() / np.sqrt(n):.3f}, new clusters {part.new.mean():.3f} ± "
              f"{part.new.std() / np.sqrt(n):.3f}; exact support {part.exact.mean():.3f}")


if __name__ == "__main__":
    main()
