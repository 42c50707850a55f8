"""The Dask path on a LocalCluster of 2 worker processes, against the in-memory fit;
and a worker killed in the middle of the computation."""

import os
import signal
import time

import numpy as np
import pandas as pd
import pytest

import hdlmm
from hdlmm.sources.dask_frames import dask_stats
from hdlmm.sources.streaming import TableSpec

dask = pytest.importorskip("dask")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

P = 30
XCOLS = [f"x{j}" for j in range(P)]


def _frame(seed=3, n_clusters=40):
    d = hdlmm.make_lmm_data(n_clusters=n_clusters, n_obs=(2, 12), n_features=P, n_re=2,
                            support_size=3, random_state=seed)
    df = pd.DataFrame(d.X, columns=XCOLS)
    df["y"], df["t"], df["g"] = d.y, d.Z[:, 1], [f"c{g}" for g in d.groups]
    return df.sample(frac=1, random_state=0).reset_index(drop=True)


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as cl:
        yield cl


def test_dask_fit_equals_the_in_memory_fit(client):
    frame = _frame()
    Z = np.c_[np.ones(len(frame)), frame.t]
    # the default candidates are every column but y and g, the slope t included (as '.')
    m0 = hdlmm.SparseLMM(random_state=0, inference="all").fit(
        frame[XCOLS + ["t"]], frame.y.to_numpy(), groups=frame.g.to_numpy(), Z=Z)
    ddf = dd.from_pandas(frame, npartitions=7)
    m1 = hdlmm.SparseLMM(random_state=0, inference="all").fit_dask(
        ddf, y="y", groups="g", Z=["1", "t"], split_every=3)
    assert m1.a_ == m0.a_ and list(m1.support_) == list(m0.support_)
    np.testing.assert_allclose(m1.coef_, m0.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(m1.inference_.se, m0.inference_.se, rtol=1e-10)
    np.testing.assert_allclose(m1.cv_results_.filter(like="mean").to_numpy(),
                               m0.cv_results_.filter(like="mean").to_numpy(), rtol=1e-10)


def _slow_part(i, n_parts, seed):
    """Partition i of a fixed data set, slowly (so that a worker can die mid-way)."""
    time.sleep(0.3)
    frame = _frame(seed, n_clusters=60)
    return frame.iloc[i::n_parts].reset_index(drop=True)


def test_a_worker_lost_mid_computation_leaves_the_result_exact(client):
    n_parts, seed = 24, 11
    frame = _frame(seed, n_clusters=60)
    spec = TableSpec("y", "g", XCOLS, ["1", "t"])
    ddf = dd.from_delayed([dask.delayed(_slow_part)(i, n_parts, seed)
                           for i in range(n_parts)], meta=frame.iloc[:0])
    future = client.compute(dask_stats(ddf, spec, n_blocks=5, random_state=2,
                                       compute=False))
    # wait until some partition statistics exist, then kill one worker process
    deadline = time.time() + 60
    while time.time() < deadline and not any(
            "partition_stats" in str(k) for keys in client.has_what().values()
            for k in keys):
        time.sleep(0.05)
    assert future.status == "pending"  # the computation is under way
    victim = next(iter(client.scheduler_info()["workers"]))
    pid = client.run(os.getpid, workers=[victim])[victim]
    os.kill(pid, signal.SIGKILL)
    stats = future.result(timeout=120)
    assert not future.cancelled()
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):  # the worker really died
        os.kill(pid, 0)
    Z = np.c_[np.ones(len(frame)), frame.t]
    ref = hdlmm.ClusterStats.from_arrays(frame[XCOLS], frame.y, frame.g, Z, n_blocks=5,
                                         random_state=2, feature_names=XCOLS)
    np.testing.assert_array_equal(stats.labels, ref.labels)
    for key in ("n_obs", "ZtZ", "ZtX", "Zty", "XtX", "Xty", "yty", "n_rows"):
        np.testing.assert_allclose(getattr(stats, key), getattr(ref, key), rtol=1e-10,
                                   atol=1e-10, err_msg=key)
