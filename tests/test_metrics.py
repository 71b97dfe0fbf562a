"""metrics.py: counts, MACs, sparse bytes (really encoded) and latency."""
import numpy as np
import pytest

from minicompress import metrics, models, prune


def test_counts_and_macs_of_the_reference_nets():
    rng = np.random.default_rng(0)
    m300 = models.lenet300(28, rng=rng)
    assert metrics.count_parameters(m300) == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert metrics.macs(m300, (1, 28, 28))[0] == 784 * 300 + 300 * 100 + 100 * 10
    m5 = models.lenet5(28, rng=rng)
    total, per = metrics.macs(m5, (1, 28, 28))
    assert per == {"conv1": 6 * 25 * 28 * 28, "conv2": 16 * 150 * 10 * 10, "fc1": 400 * 120,
                   "fc2": 120 * 84, "fc3": 84 * 10}
    assert total == 416520


def test_nonzeros_and_sparse_macs_follow_the_mask():
    m = models.lenet300(8, rng=np.random.default_rng(0))
    prune.prune_by_score(m, 0.9)
    n_w = 64 * 300 + 300 * 100 + 100 * 10
    kept = n_w - round(0.9 * n_w)
    assert metrics.count_nonzeros(m) == kept + 300 + 100 + 10
    assert metrics.macs(m, (1, 8, 8), sparse=True)[0] == kept


@pytest.mark.parametrize("fmt", ["bitmask", "csr", "dense", "auto"])
@pytest.mark.parametrize("density", [0.0, 0.03, 0.5, 1.0])
def test_encode_decode_round_trip(rng, fmt, density):
    w = (rng.standard_normal((37, 3, 5, 5)) * (rng.random((37, 3, 5, 5)) < density)).astype(np.float32)
    enc = metrics.encode_sparse(w, fmt)
    np.testing.assert_array_equal(metrics.decode_sparse(enc), w)


def test_byte_counts(rng):
    w = np.zeros((300, 784), np.float32)
    idx = rng.choice(w.size, 1000, replace=False)
    w.flat[idx] = rng.standard_normal(1000).astype(np.float32) + 5
    header = 1 + 2 * 4  # flag byte + shape (2 int32)
    assert metrics.sparse_bytes(w, "bitmask") == header + w.size // 8 + 4 * 1000
    # CSR: float32 values, uint16 column indices (784 columns), uint16 row pointers (nnz < 65536)
    assert metrics.sparse_bytes(w, "csr") == header + 4 * 1000 + 2 * 1000 + 2 * 301
    assert metrics.sparse_bytes(w, "dense") == header + 4 * w.size
    assert metrics.sparse_bytes(w) == min(metrics.sparse_bytes(w, f) for f in ("bitmask", "csr", "dense"))
    with pytest.raises(ValueError, match="bitmask.*csr"):
        metrics.sparse_bytes(w, "coo")


def test_model_bytes_shrink_with_sparsity():
    m = models.lenet300(28, rng=np.random.default_rng(0))
    dense = metrics.model_bytes(m)
    assert dense <= metrics.dense_bytes(m) + 3 * 9  # a dense model never grows (headers only)
    prune.prune_by_score(m, 0.95)
    assert metrics.model_bytes(m) < 0.1 * metrics.dense_bytes(m)


def test_latency_and_report(rng):
    m = models.lenet300(8, rng=rng)
    x = rng.standard_normal((32, 1, 8, 8)).astype(np.float32)
    rep = metrics.report(m, (1, 8, 8), x=x, repeats=3)
    assert rep["latency_s"] > 0 and rep["parameters"] == rep["nonzeros"]
    with pytest.raises(ValueError, match="repeats"):
        metrics.latency(m, x, repeats=0)
