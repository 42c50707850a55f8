"""Property test: on any generated input, SparseLMM either raises a ValueError with a
message, or returns finite results that do not change when the rows are permuted."""

import warnings

import numpy as np
import pytest

from hdlmm import SparseLMM

hyp = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

VALUES = st.one_of(
    st.floats(-10, 10, allow_nan=False),
    st.sampled_from([0.0, 1.0, -1.0, 1e-300, 1e300, -1e300, 1e150, np.nan, np.inf]),
)


@st.composite
def problems(draw):
    n_clusters = draw(st.integers(1, 6))
    sizes = draw(st.lists(st.integers(1, 5), min_size=n_clusters, max_size=n_clusters))
    N = sum(sizes)
    p = draw(st.integers(1, 6))
    q = draw(st.integers(1, 2))
    special = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    X = rng.standard_normal((N, p))
    y = X[:, 0] + rng.standard_normal(N)
    if special:  # plant a few extreme or invalid values
        for _ in range(draw(st.integers(1, 3))):
            X[draw(st.integers(0, N - 1)), draw(st.integers(0, p - 1))] = draw(VALUES)
        if draw(st.booleans()):
            y[draw(st.integers(0, N - 1))] = draw(VALUES)
    if draw(st.booleans()):
        X[:, -1] = X[:, 0]  # duplicated column
    if draw(st.booleans()):
        X[:, 0] = 1.0  # constant column
    groups = np.repeat(np.arange(n_clusters), sizes)
    Z = np.column_stack([np.ones(N), rng.standard_normal((N, q - 1))])
    k = draw(st.integers(1, p + 1))
    a = draw(st.sampled_from([0.0, 1.0, 10.0, None]))
    vc = draw(st.sampled_from([None, "REML"]))
    perm = rng.permutation(N)
    return X, y, groups, Z, k, a, vc, perm


def _fit(X, y, groups, Z, k, a, vc):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # warnings are allowed; crashes and NaN are not
        return SparseLMM(support_size=k, a=a, vc_method=vc, cv=2,
                         a_grid=[0.0, 1.0], random_state=0).fit(X, y, groups=groups, Z=Z)


@settings(max_examples=1000, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(problems())
def test_valueerror_or_finite_and_permutation_invariant(problem):
    X, y, groups, Z, k, a, vc, perm = problem
    try:
        m = _fit(X, y, groups, Z, k, a, vc)
    except ValueError as exc:
        assert str(exc).strip(), "a ValueError must carry a message"
        event("ValueError")
        return
    event("fitted")
    assert np.all(np.isfinite(m.coef_)) and np.isfinite(m.intercept_)
    assert np.all(np.isfinite(m.predict(X)))
    mp = _fit(X[perm], y[perm], groups[perm], Z[perm], k, a, vc)
    assert mp.a_ == m.a_
    assert set(mp.support_) == set(m.support_) or np.isclose(
        m.path_["rss"].iloc[k - 1], mp.path_["rss"].iloc[k - 1], rtol=1e-8)  # ties
    if set(mp.support_) == set(m.support_):
        # the proxy estimate is closed-form algebra: equal to round-off; the reported
        # GLS estimate rests on the variance-component optimum, which permuted sums
        # reach by another path: the same optimum (criterion), coefficients to 1e-4
        scale = 1 + np.abs(m.coef_proxy_).max()
        np.testing.assert_allclose(mp.coef_proxy_, m.coef_proxy_, rtol=1e-6,
                                   atol=1e-8 * scale)
        if m.variance_components_ is not None:
            crit = m.variance_components_.criterion, mp.variance_components_.criterion
            assert abs(crit[0] - crit[1]) <= 1e-5 * (1 + abs(crit[0]))
            if not m.variance_components_.boundary:  # else flat: Ψ̂ not identified
                np.testing.assert_allclose(mp.coef_, m.coef_, rtol=1e-3,
                                           atol=1e-3 * (1 + np.abs(m.coef_).max()))
