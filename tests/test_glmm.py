"""The Laplace fit of a generalized linear mixed model (model/glmm.py) against
lme4::glmer (nAGQ = 1) on textbook data: binomial with trials (cbpp), binary with a
random intercept and with a random slope (Contraception), Poisson (grouseticks).
Reference values and the R script that made them: tests/data/glmer/."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from hdlmm.model.families import get_family
from hdlmm.model.glmm import LaplaceObjective, fit_laplace

formulaic = pytest.importorskip("formulaic")

HERE = Path(__file__).parent / "data" / "glmer"
REFERENCE = json.loads((HERE / "reference.json").read_text())

#: the fixed part of each model as formulaic writes it, its response, trials and Z
DESIGNS = {
    "cbpp_trials": ("~ period", "incidence", "size", [], "herd"),
    "contraception_intercept": ("~ age + I(age**2) + urban + livch", "use", None, [],
                                "district"),
    "contraception_slope": ("~ age + urban", "use", None, ["urban"], "district"),
    "grouseticks_poisson": ("~ YEAR + cHEIGHT", "TICKS", None, [], "BROOD"),
}


def _design(name):
    ref = REFERENCE[name]
    factors = [ref["factors"]] if isinstance(ref["factors"], str) else ref["factors"]
    data = pd.read_csv(HERE / ref["data"], dtype={c: str for c in factors})
    fixed, response, trials, slopes, group = DESIGNS[name]
    X = np.asarray(formulaic.model_matrix(fixed, data), dtype=float)
    Z = np.column_stack([np.ones(len(data))] + [(data[s] == "Y").to_numpy(float)
                                                 for s in slopes])
    codes = pd.factorize(data[group])[0]
    m = None if trials is None else data[trials].to_numpy(float)
    return X, data[response].to_numpy(float), Z, codes, m


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_the_laplace_fit_is_glmers(name):
    ref = REFERENCE[name]
    X, y, Z, codes, m = _design(name)
    fit = fit_laplace(X, y, Z, codes, get_family(ref["family"]), trials=m)
    se = np.asarray(ref["se"])
    assert fit.converged
    assert -2 * fit.loglik <= -2 * ref["loglik"] + 1e-6  # deviance no worse than glmer's
    np.testing.assert_array_less(np.abs(fit.coef - ref["fixef"]) / se, 1e-3)
    cov = np.asarray(ref["cov_re"], dtype=float).reshape(fit.cov_re.shape)
    np.testing.assert_allclose(fit.cov_re, cov, rtol=1e-3, atol=1e-3 * np.abs(cov).max())
    np.testing.assert_allclose(fit.bse, se, rtol=1e-3)


def test_the_objective_at_glmers_estimates_is_glmers_deviance():
    """The same function is optimised: D at glmer's (θ, β) is its −2 log-likelihood
    (to 3e-5: glmer's log-determinant uses the weights of its last-but-one PIRLS
    iterate, 1.1e-5 on grouseticks even at tolPwrss = 1e-12)."""
    for name, ref in REFERENCE.items():
        X, y, Z, codes, m = _design(name)
        obj = LaplaceObjective(X, y, Z, codes, get_family(ref["family"]), m)
        assert obj.deviance(np.r_[ref["theta"], ref["fixef"]]) == pytest.approx(
            -2 * ref["loglik"], abs=3e-5)


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_log_likelihoods_are_scipys(family):
    rng = np.random.default_rng(0)
    eta = rng.normal(size=50)
    f = get_family(family)
    if family == "binomial":
        m = rng.integers(1, 9, 50).astype(float)
        y = rng.binomial(m.astype(int), 1 / (1 + np.exp(-eta))).astype(float)
        want = stats.binom.logpmf(y, m, 1 / (1 + np.exp(-eta)))
    else:
        m = np.ones(50)
        y = rng.poisson(np.exp(eta)).astype(float)
        want = stats.poisson.logpmf(y, np.exp(eta))
    np.testing.assert_allclose(f.loglik(y, eta, m), want, rtol=1e-10, atol=1e-12)


def test_conditional_modes_maximise_the_penalised_likelihood():
    """PIRLS against a general-purpose optimiser, cluster by cluster."""
    rng = np.random.default_rng(1)
    n, per = 6, 7
    codes = np.repeat(np.arange(n), per)
    X = np.c_[np.ones(n * per), rng.normal(size=n * per)]
    Z = np.c_[np.ones(n * per), rng.normal(size=n * per)]
    y = rng.poisson(np.exp(0.3 + 0.5 * X[:, 1])).astype(float)
    obj = LaplaceObjective(X, y, Z, codes, get_family("poisson"))
    beta, theta = np.array([0.2, 0.4]), np.array([0.7, 0.2, 0.5])
    u, _, _ = obj.modes(beta, theta)
    L = obj.lam(theta)
    for i in range(n):
        rows = codes == i

        def pen(v, rows=rows):
            eta = X[rows] @ beta + Z[rows] @ L @ v
            return -2 * np.sum(y[rows] * eta - np.exp(eta)) + v @ v
        best = optimize.minimize(pen, np.zeros(2), method="BFGS", options={"gtol": 1e-10})
        np.testing.assert_allclose(u[i], best.x, atol=1e-6)


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_the_exact_beta_gradient_equals_central_differences(family):
    from hdlmm.model.glmm import _gradient

    rng = np.random.default_rng(5)
    n, per = 30, 8
    codes = np.repeat(np.arange(n), per)
    X = np.c_[np.ones(n * per), rng.normal(size=(n * per, 3))]
    Z = np.c_[np.ones(n * per), rng.normal(size=n * per)]
    y = (rng.binomial(1, 0.4, n * per) if family == "binomial"
         else rng.poisson(1.5, n * per)).astype(float)
    obj = LaplaceObjective(X, y, Z, codes, get_family(family))
    beta, theta = np.array([0.1, 0.3, -0.2, 0.1]), np.array([0.8, 0.3, 0.5])
    numeric = _gradient(lambda b: obj.modes(b, theta)[1], beta, np.full(4, 1e-5))
    np.testing.assert_allclose(obj.beta_gradient(beta, theta), numeric, rtol=1e-6,
                               atol=1e-6)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_conditional_modes_and_their_covariances_are_glmers(name):
    """ranef(fit, condVar = TRUE): the modes and their conditional covariances."""
    ref = REFERENCE[name]
    X, y, Z, codes, m = _design(name)
    fit = fit_laplace(X, y, Z, codes, get_family(ref["family"]), trials=m)
    factors = [ref["factors"]] if isinstance(ref["factors"], str) else ref["factors"]
    data = pd.read_csv(HERE / ref["data"], dtype={c: str for c in factors})
    labels = pd.factorize(data[DESIGNS[name][4]])[1]
    order = pd.Index(ref["mode_labels"]).get_indexer(labels.astype(str))
    q = Z.shape[1]
    modes = np.asarray(ref["modes"], dtype=float).reshape(-1, q)[order]
    cond = np.asarray(ref["cond_var"], dtype=float).reshape(-1, q, q)[order]
    scale = np.sqrt(np.diag(fit.cov_re))
    np.testing.assert_allclose(fit.random_effects / scale, modes / scale, atol=5e-4)
    np.testing.assert_allclose(fit.mode_cov, cond, rtol=0, atol=5e-4 * cond.max())
