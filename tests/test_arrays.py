import numpy as np
import pytest

from hdlmm.core import _arrays


@pytest.mark.parametrize("parallel_bytes", [64 * 2 ** 20, 1])
@pytest.mark.parametrize("dtype", [float, np.int64])
def test_zeros_are_zero_and_writable(parallel_bytes, dtype, monkeypatch):
    """One thread for small arrays, several (the array split between them) otherwise."""
    monkeypatch.setattr(_arrays, "PARALLEL_BYTES", parallel_bytes)
    monkeypatch.setattr(_arrays, "_cores", lambda: 3)
    out = _arrays.zeros((7, 3, 5), dtype=dtype)
    assert out.shape == (7, 3, 5) and out.dtype == dtype and out.flags.c_contiguous
    np.testing.assert_array_equal(out, 0)
    out[[1, 1, 4]] += 1
    assert out.sum() == 2 * 15


def test_runs_of_consecutive_positions():
    pos = np.array([3, 4, 5, 9, 10, 20])
    assert _arrays.runs(pos) == [(slice(0, 3), slice(3, 6)), (slice(3, 5), slice(9, 11)),
                                 (slice(5, 6), slice(20, 21))]
    (run, at), = _arrays.runs(pos, max_runs=2)  # many runs: one indexed add
    assert run == slice(None) and at is pos


@pytest.mark.parametrize("shape", [(50, 12), (20, 2, 12)])
@pytest.mark.parametrize("used", [[3], [0, 5, 9], list(range(12))])
def test_thin_product_reads_the_used_columns_and_equals_the_full_product(shape, used):
    """Through a gather of the used columns (few) or the full product (many)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal(shape)
    W = np.zeros((12, 4))
    W[used] = rng.standard_normal((len(used), 4))
    np.testing.assert_allclose(_arrays.thin_product(X, W), X @ W, rtol=1e-12, atol=1e-12)
