import gzip

import numpy as np
import pytest

from minicompress import models
from minicompress.data import batches, load_digits, parse_idx, read_idx
from minicompress.io import load_model, save_model


def _idx_bytes(arr):
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def test_idx_roundtrip_raw_and_gzip(tmp_path, rng):
    arr = rng.integers(0, 256, size=(3, 4, 5)).astype(np.uint8)
    (tmp_path / "a").write_bytes(_idx_bytes(arr))
    (tmp_path / "a.gz").write_bytes(gzip.compress(_idx_bytes(arr)))
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), arr)


def test_idx_rejects_truncated_and_bad_magic(rng):
    raw = _idx_bytes(rng.integers(0, 256, size=(2, 3)))
    with pytest.raises(ValueError, match="truncated or corrupt"):
        parse_idx(raw[:-1])
    with pytest.raises(ValueError, match="magic"):
        parse_idx(b"\x01" + raw[1:])


def test_corrupt_gzip(tmp_path):
    (tmp_path / "x.gz").write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    with pytest.raises(ValueError, match="gzip"):
        read_idx(tmp_path / "x.gz")


def test_state_dict_roundtrip(tmp_path, rng):
    a = models.lenet5(rng=rng)
    b = models.lenet5(rng=np.random.default_rng(99))
    save_model(a, tmp_path / "m.npz")
    load_model(b, tmp_path / "m.npz")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb
        np.testing.assert_array_equal(va, vb)


def test_state_dict_key_errors(rng):
    m = models.student(rng=rng)
    sd = m.state_dict()
    missing = dict(sd)
    del missing["fc1.bias"]
    with pytest.raises(KeyError, match="fc1.bias"):
        m.load_state_dict(missing)
    with pytest.raises(KeyError, match="extra"):
        m.load_state_dict(dict(sd, extra=np.zeros(1)))
    bad = dict(sd, **{"fc2.weight": np.zeros((3, 3))})
    with pytest.raises(ValueError, match="fc2.weight"):
        m.load_state_dict(bad)


def test_digits_split_and_batches(rng):
    (xtr, ytr), (xte, yte) = load_digits()
    assert xtr.shape == (1437, 1, 8, 8) and xte.shape == (360, 1, 8, 8)
    assert xtr.dtype == np.float32 and 0 <= xtr.min() and xtr.max() <= 1
    seen = np.concatenate([yb for _, yb in batches(xtr, ytr, 100, rng=rng)])
    assert len(seen) == len(ytr) and np.array_equal(np.sort(seen), np.sort(ytr))
