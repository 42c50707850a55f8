"""The bad-input catalogue of docs/bad_inputs.md: every row is one case here.

Each case is (id, action, kind, message): ``kind`` is "error" (a ValueError whose message
matches) or "warning" (a warning whose message matches, and a finite fit).
"""

import numpy as np
import pandas as pd
import pytest

from hdlmm import ClusterStats, SparseLMM

RNG = np.random.default_rng(0)
N = 40
X = RNG.standard_normal((N, 4))
Y = X[:, 0] + RNG.standard_normal(N)
G = np.repeat(np.arange(8), 5)


def fit(X=X, y=Y, groups=G, Z=None, **kw):
    kw = {"support_size": 1, "a": 1.0, **kw}
    return SparseLMM(**kw).fit(X, y, groups=groups, Z=Z)


def with_value(v, row=0, col=0):
    A = X.copy()
    A[row, col] = v
    return A


DF = pd.DataFrame(X, columns=["a", "b", "c", "d"]).assign(y=Y, g=G)

CASES = [
    ("nan in X", lambda: fit(X=with_value(np.nan)), "error", "X contains NaN values"),
    ("inf in X", lambda: fit(X=with_value(np.inf)), "error", "X contains inf values"),
    ("nan in y", lambda: fit(y=np.r_[np.nan, Y[1:]]), "error", "y contains NaN"),
    ("nan in Z", lambda: fit(Z=np.r_[[np.nan], np.ones(N - 1)]), "error", "Z contains NaN"),
    ("missing group label", lambda: fit(groups=np.r_[[None], G[1:]]), "error",
     "groups has 1 missing labels"),
    ("groups too short", lambda: fit(groups=G[:-1]), "error",
     "groups has 39 labels but X has 40 rows"),
    ("y too short", lambda: fit(y=Y[:-1]), "error", "y has 39 values but X has 40 rows"),
    ("Z wrong rows", lambda: fit(Z=np.ones((N - 1, 1))), "error",
     "Z has 39 rows but X has 40 rows"),
    ("block-diagonal Z", lambda: fit(Z=np.kron(np.eye(8), np.ones((5, 1)))), "error",
     "Z looks block-diagonal"),
    ("one cluster", lambda: fit(groups=np.zeros(N)), "error",
     "groups has 1 cluster; a mixed model needs at least 2"),
    ("one sample", lambda: fit(X=X[:1], y=Y[:1], groups=G[:1]), "error", "1 sample"),
    ("empty X", lambda: fit(X=np.empty((0, 4)), y=np.empty(0), groups=np.empty(0)),
     "error", "X is empty"),
    ("X without columns", lambda: fit(X=np.empty((N, 0))), "error", "0 feature"),
    ("1-D X", lambda: fit(X=X[:, 0]), "error", "Reshape your data"),
    ("string column in X", lambda: fit(X=DF[["a", "b"]].assign(s="x")), "error",
     r"X has non-numeric columns \['s'\]"),
    ("string y", lambda: fit(y=np.array(["a"] * N)), "error", "y must be numeric"),
    ("complex X", lambda: fit(X=X + 1j), "error", "Complex data not supported"),
    ("sparse X", lambda: fit(X=__import__("scipy.sparse").sparse.csr_matrix(X)), "error",
     "sparse input is not supported"),
    ("values of 1e300", lambda: fit(X=with_value(1e300)), "error",
     "cross-products of X, y and Z overflow"),
    ("finite values whose sum overflows", lambda: fit(X=1e307 * (1 + np.abs(X))), "error",
     "cross-products of X, y and Z overflow"),
    ("support_size >= N", lambda: fit(X=RNG.standard_normal((6, 8)), y=np.arange(6.0),
                                      groups=np.repeat([0, 1], 3), support_size=6),
     "error", "support_size=6 is not below the number of rows"),
    ("support_size > p", lambda: fit(support_size=5), "error",
     "support_size=5 exceeds the number of features"),
    ("support_size -1", lambda: fit(support_size=-1), "error",
     "support_size must be at least 0"),
    ("negative a", lambda: fit(a=-1.0), "error", "a must be finite and ≥ 0"),
    ("nan a", lambda: fit(a=float("nan")), "error", "a must be finite and ≥ 0"),
    ("more folds than clusters", lambda: fit(a=None, cv=10), "error",
     "cannot deal 8 clusters into 10 folds"),
    ("unknown option", lambda: fit(vc_method="XX"), "error", "vc_method must be one of"),
    ("k_max 0", lambda: fit(k_max=0), "error", "k_max must be an integer ≥ 1"),
    ("duplicated columns, k too large",
     lambda: fit(X=np.column_stack([X[:, 0], X[:, 0]]), support_size=2), "error",
     "no 2 columns of X are linearly independent"),
    ("constant column", lambda: fit(X=np.column_stack([np.ones(N), X])), "warning",
     r"column\(s\) of X are constant"),
    ("every cluster of one row", lambda: fit(groups=np.arange(N)), "warning",
     "variance components not fitted: every cluster has at most q = 1 rows"),
    ("q >= m_i everywhere", lambda: fit(Z=RNG.standard_normal((N, 5))), "warning",
     "variance components not fitted: every cluster has at most q = 5 rows"),
    ("rank-deficient Z_i", lambda: fit(Z=np.ones((N, 2))), "warning",
     "Z_iᵀZ_i is singular in every cluster"),
    ("Psi on the boundary", lambda: fit(), "warning",
     "boundary"),
    ("groups omitted", lambda: SparseLMM(support_size=1, a=1.0).fit(X, Y), "warning",
     "groups not given"),
    ("y as a column", lambda: fit(y=Y[:, None]), "warning", "A column-vector y"),
    ("unknown formula column",
     lambda: SparseLMM.from_formula("y ~ zz + (1 | g)", DF), "error", "unknown column 'zz'"),
    ("grouping column with one level",
     lambda: SparseLMM.from_formula("y ~ a + (1 | g)", DF.assign(g=1)), "error",
     "has one level"),
    ("missing values in a frame",
     lambda: SparseLMM.from_formula("y ~ a + (1 | g)", DF.assign(a=np.r_[np.nan, X[1:, 0]])),
     "error", r"1 rows have missing values \(a: 1\)"),
    ("missing values dropped",
     lambda: SparseLMM.from_formula("y ~ a + (1 | g)", DF.assign(a=np.r_[np.nan, X[1:, 0]]),
                                    missing="drop", support_size=1, a=1.0),
     "warning", "dropped 1 of 40 rows"),
    ("duplicated column names",
     lambda: SparseLMM.from_formula("y ~ a + (1 | g)", pd.concat([DF, DF[["a"]]], axis=1)),
     "error", "duplicated column names"),
    ("no random-effect term", lambda: SparseLMM.from_formula("y ~ a", DF), "error",
     "no random-effect term"),
    ("direct ClusterStats without groups", lambda: ClusterStats.from_arrays(X, Y, None),
     "error", "groups is required"),
]


@pytest.mark.parametrize("name,action,kind,match", CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, action, kind, match):
    if kind == "error":
        with pytest.raises(ValueError, match=match):
            action()
    else:
        with pytest.warns(Warning, match=match):
            m = action()
        assert np.all(np.isfinite(m.coef_)) and np.isfinite(m.intercept_)


def test_the_catalogue_is_documented():
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "bad_inputs.md").read_text()
    for name, *_ in CASES:
        assert f"| {name} |" in doc, name
