"""hdlmm's Laplace fit against lme4::glmer on the reference fits of tests/data/glmer:
the table of benchmarks/RESULTS.md (tests/test_glmm.py asserts the tolerances).

Run:  python benchmarks/glmer_agreement.py
"""

import sys

import numpy as np
import pandas as pd

sys.path.insert(0, "tests")

from test_glmm import DESIGNS, HERE, REFERENCE, _design  # noqa: E402

from hdlmm.model.families import get_family  # noqa: E402
from hdlmm.model.glmm import fit_laplace  # noqa: E402


def row(name):
    """log-lik difference, max |Δβ|/SE, SE and Ψ relative differences, modes over the
    random effects' SD, and conditional covariances relative to their largest."""
    ref = REFERENCE[name]
    X, y, Z, codes, m = _design(name)
    fit = fit_laplace(X, y, Z, codes, get_family(ref["family"]), trials=m)
    se = np.asarray(ref["se"])
    cov = np.asarray(ref["cov_re"], float).reshape(fit.cov_re.shape)
    factors = [ref["factors"]] if isinstance(ref["factors"], str) else ref["factors"]
    data = pd.read_csv(HERE / ref["data"], dtype={c: str for c in factors})
    labels = pd.factorize(data[DESIGNS[name][4]])[1]
    order = pd.Index(ref["mode_labels"]).get_indexer(labels.astype(str))
    q = Z.shape[1]
    modes = np.asarray(ref["modes"], float).reshape(-1, q)[order]
    cond = np.asarray(ref["cond_var"], float).reshape(-1, q, q)[order]
    return dict(
        model=name, loglik=f"{fit.loglik - ref['loglik']:+.1e}",
        beta_over_se=f"{np.max(np.abs(fit.coef - ref['fixef']) / se):.1e}",
        se_rel=f"{np.max(np.abs(fit.bse / se - 1)):.1e}",
        psi_rel=f"{np.max(np.abs(fit.cov_re - cov)) / np.abs(cov).max():.1e}",
        modes_over_sd=f"{np.max(np.abs(fit.random_effects - modes) / np.sqrt(np.diag(cov))):.1e}",
        condvar_rel=f"{np.max(np.abs(fit.mode_cov - cond)) / np.abs(cond).max():.1e}")


if __name__ == "__main__":
    print(pd.DataFrame([row(name) for name in sorted(REFERENCE)]).to_string(index=False))
