import warnings

import numpy as np
import pytest

import hdlmm


@pytest.fixture(scope="session")
def tutorial_data():
    """The tutorial's data set (m=8, n=15, p=200, q=4, seed 0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return hdlmm.make_tutorial_data(m=8, n=15, p=200, q=4, seed=0)


@pytest.fixture
def unbalanced():
    """Small unbalanced data with a random intercept and slope, labels not sorted."""
    d = hdlmm.make_lmm_data(n_clusters=9, n_obs=(1, 7), n_features=6, n_re=2,
                            support_size=2, random_state=3)
    labels = np.array(["k", "b", "z", "a", "q", "m", "c", "x", "e"], dtype=object)
    d.groups = labels[d.groups]
    return d
