"""Units fuzz: does storing columns of X in other units or with offsets change the fit?

For each of ``--problems`` random problems (clean LMM data, 30 clusters of 10 rows,
p = 50, k = 3, random intercept and slope), the default ``SparseLMM()`` is fitted on
the data as drawn and on the same data with every column of X

* rescaled by an independent random factor 10^u, u ~ U(−e, e), for e = 4, 6, 8, or
* shifted by an independent random offset of 10^u standard deviations (random sign),
  u ~ U(0, e), for e = 4, 6, 8.

Two counts per kind and e, as fractions of the problems with their binomial SE:
*support*, the fits that raise or select another support or a; *any*, those and the
fits where a mapped-back quantity differs from the reference fit's by more than
``--rtol``: the coefficients times their scale factor, Ψ̂, σ̂², and the debiased
p-values of the support.

``--aliased``: the time of the default fit of the Exam data (lme4's mlmRev, in
tests/data/lme4/) with 300 noise columns, ``normexam ~ . + (1 | school)``, with and
without a column that is a function of the school-level factor (aliased with its dummy).

Run:  python benchmarks/units.py --problems 60
      python benchmarks/units.py --aliased
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import hdlmm


def problem(seed):
    return hdlmm.make_lmm_data(n_clusters=30, n_obs=10, n_features=50, n_re=2,
                               coef=[1.0, -1.5, 2.0], cov_re=[[1.0, 0.3], [0.3, 0.5]],
                               scale=1.0, random_state=seed)


def fit(X, d):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hdlmm.SparseLMM(random_state=0).fit(X, d.y, groups=d.groups, Z=d.Z)


def summary_of(model, factor):
    """The quantities that must not change, in the reference units."""
    return dict(support=tuple(model.support_), a=model.a_, coef=model.coef_ * factor,
                cov_re=model.cov_re_, scale=model.scale_,
                pvalues=model.pvalues_.iloc[model.support_ + 1].to_numpy())


def support_changed(ref, new):
    return new is None or new["support"] != ref["support"] or new["a"] != ref["a"]


def changed(ref, new, rtol):
    if support_changed(ref, new):
        return True
    for key in ("coef", "cov_re", "scale", "pvalues"):
        a, b = np.atleast_1d(ref[key]), np.atleast_1d(new[key])
        if not np.allclose(a, b, rtol=rtol, atol=rtol * np.max(np.abs(a), initial=1e-300)):
            return True
    return False


def perturbed(d, kind, e, rng):
    p = d.X.shape[1]
    if kind == "scale":
        factor = 10.0 ** rng.uniform(-e, e, p)
        return d.X * factor, factor
    offset = rng.choice([-1, 1], p) * 10.0 ** rng.uniform(0, e, p) * d.X.std(0)
    return d.X + offset, np.ones(p)


def aliased():
    """Fit time of Exam + 300 noise columns with and without an aliased column."""
    exam = pd.read_csv(Path(__file__).parents[1] / "tests" / "data" / "lme4" / "exam.csv")
    rng = np.random.default_rng(0)
    noise = pd.DataFrame(rng.standard_normal((len(exam), 300)),
                         columns=[f"n{j}" for j in range(300)])
    base = pd.concat([exam, noise], axis=1).assign(school=exam.school.astype(str))
    for name, data in (("without", base),
                       ("with", base.assign(girls_school=(exam.schgend == "girls") * 1.0))):
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m = hdlmm.SparseLMM.from_formula("normexam ~ . + (1 | school)", data,
                                             random_state=0)
        said = [str(w.message)[:90] for w in caught if "alias" in str(w.message)]
        print(f"{name:8} aliased column: {time.perf_counter() - t0:7.1f} s, "
              f"k = {m.support_size_}, path to k = {m.path_.k.max()}, {said}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=60)
    ap.add_argument("--rtol", type=float, default=1e-6)
    ap.add_argument("--aliased", action="store_true")
    args = ap.parse_args()
    if args.aliased:
        aliased()
        return
    t0 = time.perf_counter()
    refs = []
    for seed in range(args.problems):
        d = problem(seed)
        refs.append((d, summary_of(fit(d.X, d), 1.0)))
    print(f"units fuzz: {args.problems} problems (N=300, p=50, k=3), rtol {args.rtol:g}")
    print(f"{'kind':8}{'e':>4}{'support':>9}{'± SE':>8}{'any':>9}{'± SE':>8}{'errors':>8}")
    for kind in ("scale", "shift"):
        for e in (4, 6, 8):
            rng = np.random.default_rng(1000 * e + (kind == "shift"))
            n_support = n_any = n_error = 0
            for d, ref in refs:
                X, factor = perturbed(d, kind, e, rng)
                try:
                    new = summary_of(fit(X, d), factor)
                except Exception:  # noqa: BLE001 - an error is a changed fit here
                    new, n_error = None, n_error + 1
                n_support += support_changed(ref, new)
                n_any += changed(ref, new, args.rtol)
            row = f"{kind:8}{e:>4}"
            for count in (n_support, n_any):
                frac = count / len(refs)
                row += f"{frac:>9.3f}{np.sqrt(frac * (1 - frac) / len(refs)):>8.3f}"
            print(row + f"{n_error:>8}", flush=True)
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
