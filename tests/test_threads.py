"""BLAS threads: one inside a region of small products, the outside setting for a large
product, and everything restored on leaving."""

from threadpoolctl import threadpool_info, threadpool_limits

from hdlmm.core._threads import default_blas_threads, one_blas_thread


def _threads():
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_regions_set_and_restore_the_blas_threads():
    with threadpool_limits(limits=2, user_api="blas"):
        outside = _threads()
        with one_blas_thread():
            assert set(_threads()) == {1}
            with one_blas_thread():  # nested: nothing changes
                assert set(_threads()) == {1}
            with default_blas_threads(1e12):  # a large product: the outside threads
                assert _threads() == outside
            with default_blas_threads(1e3):
                assert set(_threads()) == {1}
            assert set(_threads()) == {1}
        assert _threads() == outside
        with default_blas_threads(1e3):  # a small product outside a region
            assert set(_threads()) == {1}
        with default_blas_threads(1e12):
            assert _threads() == outside
        assert _threads() == outside
