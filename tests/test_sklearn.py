"""scikit-learn compatibility: the estimator checks, Pipeline, GridSearchCV with groups."""

import warnings

import numpy as np
import pytest
import sklearn
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import hdlmm
from hdlmm import SparseLMM

#: a weight of 2 is not two copies of a row in a mixed model: REML's degrees of freedom,
#: the clusters' sizes and the CV folds count rows (lme4 gives different fits too)
NOT_APPLICABLE = {"check_sample_weight_equivalence_on_dense_data":
                  "weights are residual precisions, not row counts, in a mixed model"}


@parametrize_with_checks([SparseLMM(random_state=0)],
                         expected_failed_checks=lambda est: NOT_APPLICABLE)
def test_sklearn_estimator_checks(estimator, check):
    # the checks fit without groups: each row is then its own cluster, with a warning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        check(estimator)


@pytest.fixture(scope="module")
def data():
    return hdlmm.make_lmm_data(n_clusters=30, n_obs=(4, 10), n_features=40, n_re=2,
                               coef=[2.0, -1.5, 1.0], random_state=2)


def test_pipeline_passes_groups_and_z(data):
    d = data
    pipe = make_pipeline(StandardScaler(), SparseLMM(support_size=3, a=1.0))
    pipe.fit(d.X, d.y, sparselmm__groups=d.groups, sparselmm__Z=d.Z)
    ref = SparseLMM(support_size=3, a=1.0).fit(
        StandardScaler().fit_transform(d.X), d.y, groups=d.groups, Z=d.Z)
    np.testing.assert_allclose(pipe[-1].coef_, ref.coef_, rtol=1e-12)
    assert set(pipe[-1].support_) == set(d.support)
    np.testing.assert_allclose(pipe.predict(d.X), ref.predict(
        StandardScaler().fit_transform(d.X)), rtol=1e-12)


def test_grid_search_routes_groups_to_the_splitter_and_to_fit(data):
    d = data
    with sklearn.config_context(enable_metadata_routing=True):
        est = SparseLMM(a=1.0, vc_method=None, inference=None).set_fit_request(
            groups=True, Z=True)
        search = GridSearchCV(est, {"support_size": [1, 2, 3, 4, 5]}, cv=GroupKFold(5))
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # no "groups not given" fallback
            search.fit(d.X, d.y, groups=d.groups, Z=d.Z)
    assert search.best_params_["support_size"] == 3
    assert set(search.best_estimator_.support_) == set(d.support)


def test_cross_val_score_without_routing_warns_that_clusters_are_ignored(data):
    d = data
    with pytest.warns(UserWarning, match="groups not given"):
        cross_val_score(SparseLMM(support_size=3, a=1.0), d.X, d.y, groups=d.groups,
                        cv=GroupKFold(3))
