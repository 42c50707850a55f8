"""How often the default fit picks k = 0 (the null model) when no predictor matters.

Data: make_lmm_data with β = 0 (random intercept and slope, Ψ = diag(1, 0.5), σ² = 0.25),
in two sizes; each replicate is fitted with the default (EBIC at the ML a, then the
paired CV confirmation) and with one_se=False (the criterion's k alone). Prints the
fraction of replicates with k = 0 and its Monte-Carlo standard error.

    python benchmarks/null_model.py [--replicates 200]
"""

import argparse
import warnings

import numpy as np

import hdlmm

SETTINGS = {"tutorial size (n=15, m=8, p=200)": dict(n_clusters=15, n_obs=8,
                                                     n_features=200),
            "unbalanced (n=40, m=3..12, p=100)": dict(n_clusters=40, n_obs=(3, 12),
                                                      n_features=100)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--replicates", type=int, default=200)
    args = parser.parse_args()
    for name, kw in SETTINGS.items():
        ks = {"default": [], "one_se=False": []}
        for r in range(args.replicates):
            d = hdlmm.make_lmm_data(**kw, n_re=2, coef=np.zeros(kw["n_features"]),
                                    cov_re=np.diag([1.0, 0.5]), scale=0.25,
                                    random_state=r)
            for label, extra in (("default", {}), ("one_se=False", {"one_se": False})):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    m = hdlmm.SparseLMM(random_state=r, inference=None, **extra).fit(
                        d.X, d.y, groups=d.groups, Z=d.Z)
                ks[label].append(m.support_size_)
        print(f"{name}, {args.replicates} replicates, beta = 0")
        for label, k in ks.items():
            k = np.asarray(k)
            frac = np.mean(k == 0)
            se = np.sqrt(frac * (1 - frac) / k.size)
            print(f"  {label:<14} k = 0 in {100 * frac:5.1f}% ± {100 * se:.1f}%   "
                  f"mean k {k.mean():.2f}, max k {k.max()}")


if __name__ == "__main__":
    main()
