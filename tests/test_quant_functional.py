"""§3.2 equations pinned to hand-worked numbers; observers; bit packing; bad input."""
import numpy as np
import pytest

from minicompress.quantize import (affine_dequantize, affine_quantize, asymmetric_dequantize,
                                   asymmetric_quantize, pack_bits, symmetric_dequantize,
                                   symmetric_quantize, unpack_bits, zero_point)
from minicompress.quantize.functional import symmetric_delta
from minicompress.quantize.observers import (integer_bounds, lsq_observer, minmax_observer,
                                             mse_observer, percentile_observer)


def test_symmetric_by_hand():
    # r_max = 1.27, n = 8: Δ = 1.27 / 127 = 0.01; q = round(x / 0.01)
    x = np.array([-1.27, -0.504, 0.0, 0.006, 0.5, 1.27], np.float32)
    q, delta = symmetric_quantize(x, 8)
    assert delta.item() == pytest.approx(0.01, rel=1e-6)
    np.testing.assert_array_equal(q, [-127, -50, 0, 1, 50, 127])
    np.testing.assert_allclose(symmetric_dequantize(q, delta), [-1.27, -0.5, 0, 0.01, 0.5, 1.27],
                               rtol=1e-6)


def test_symmetric_three_bits():
    # n = 3: range [-3, 3], Δ = 0.9 / 3 = 0.3
    x = np.array([-0.9, -0.44, 0.16, 0.9], np.float32)
    q, delta = symmetric_quantize(x, 3)
    assert delta.item() == pytest.approx(0.3)
    np.testing.assert_array_equal(q, [-3, -1, 1, 3])


def test_learned_small_delta_needs_clipping():
    # Δ = 0.1 < r_max/3 = 0.3: the document's round(x/Δ) leaves the 3-bit range, the clip keeps it
    x = np.array([-0.9, 0.05, 0.9], np.float32)
    q_doc, _ = symmetric_quantize(x, 3, delta=0.1, clip=False)
    q, _ = symmetric_quantize(x, 3, delta=0.1)
    np.testing.assert_array_equal(q_doc, [-9, 0, 9])    # 9 does not fit in 3 signed bits
    np.testing.assert_array_equal(q, [-3, 0, 3])


def test_asymmetric_by_hand():
    # r_min = -0.5, r_max = 2.05, n = 8: Δ = 2.55 / 255 = 0.01
    x = np.array([-0.5, 0.0, 0.123, 2.05], np.float32)
    q, delta, r_min = asymmetric_quantize(x, 8)
    assert delta.item() == pytest.approx(0.01, rel=1e-5) and r_min.item() == -0.5
    np.testing.assert_array_equal(q, [0, 50, 62, 255])
    np.testing.assert_allclose(asymmetric_dequantize(q, delta, r_min), [-0.5, 0, 0.12, 2.05],
                               atol=1e-6)


def test_zero_point_makes_zero_exact():
    # r_min = -0.333, Δ = 0.1: the document's form sends 0.0 to 0.1·round(3.33) − 0.333 = −0.033;
    # the zero-point form z = round(3.33) = 3 sends it to 0.1·(3 − 3) = 0 exactly
    delta, r_min = np.float32(0.1), np.float32(-0.333)
    q, _, _ = asymmetric_quantize(np.zeros(1, np.float32), 4, delta=delta, r_min=r_min)
    assert asymmetric_dequantize(q, delta, r_min)[0] == pytest.approx(-0.033, abs=1e-6)
    z = zero_point(delta, r_min, 4)
    assert z == 3
    assert affine_dequantize(affine_quantize(np.zeros(1), 4, delta, z), delta, z)[0] == 0.0


def test_per_channel_delta():
    w = np.array([[0.1, -0.2], [3.0, 1.0]], np.float32)
    _, delta = symmetric_quantize(w, 8, axis=0)
    np.testing.assert_allclose(delta.ravel(), [0.2 / 127, 3.0 / 127], rtol=1e-6)
    _, delta_t = symmetric_quantize(w, 8)
    assert delta_t.item() == pytest.approx(3.0 / 127)


def test_error_falls_with_bits(rng):
    x = rng.standard_normal(10000).astype(np.float32)
    errors = [np.mean((x - symmetric_dequantize(*symmetric_quantize(x, n))) ** 2)
              for n in range(2, 11)]
    assert all(a > b for a, b in zip(errors, errors[1:]))
    # uniform quantisation noise Δ²/12 once Δ is small
    delta = symmetric_delta(x, 10).item()
    assert errors[-1] == pytest.approx(delta ** 2 / 12, rel=0.1)


@pytest.mark.parametrize("n_bits", [1, 17, 2.5, True, "8"])
def test_bad_n_bits(n_bits):
    with pytest.raises(ValueError, match="n_bits"):
        symmetric_quantize(np.ones(3), n_bits)
    with pytest.raises(ValueError, match="n_bits"):
        asymmetric_quantize(np.ones(3), n_bits)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_rejected(bad):
    with pytest.raises(ValueError, match="NaN/inf"):
        symmetric_quantize(np.array([1.0, bad]), 8)
    with pytest.raises(ValueError, match="NaN/inf"):
        asymmetric_quantize(np.array([1.0, bad]), 8)
    with pytest.raises(ValueError, match="NaN/inf"):
        minmax_observer(np.array([1.0, bad]), 8)


def test_constant_tensor_no_division_by_zero():
    with np.errstate(all="raise"):
        q, delta = symmetric_quantize(np.zeros(5), 8)
        assert delta.item() == 1.0 and np.all(q == 0)
        c = np.full(4, 0.7, np.float32)
        q, delta, r_min = asymmetric_quantize(c, 4)
        assert delta.item() > 0
        np.testing.assert_array_equal(asymmetric_dequantize(q, delta, r_min), c)
        for obs in (minmax_observer, mse_observer, lsq_observer, percentile_observer):
            d, _ = obs(np.zeros(10), 4, "unsigned")
            assert d.item() > 0


def test_given_delta_must_be_positive():
    with pytest.raises(ValueError, match="Δ"):
        symmetric_quantize(np.ones(3), 8, delta=0.0)
    with pytest.raises(ValueError, match="Δ"):
        asymmetric_quantize(np.ones(3), 8, delta=-1.0, r_min=0.0)


def test_observers(rng):
    x = rng.standard_normal(20000).astype(np.float32)
    x[0] = 40.0                       # one outlier
    d_mm, _ = minmax_observer(x, 4, "signed")
    assert d_mm.item() == pytest.approx(40.0 / 7)
    d_pc, _ = percentile_observer(x, 4, "signed", percentile=99.9)
    assert d_pc.item() == pytest.approx(np.percentile(np.abs(x), 99.9) / 7, rel=1e-5)
    d_lsq, _ = lsq_observer(x, 4, "signed")
    assert d_lsq.item() == pytest.approx(2 * np.mean(np.abs(x)) / np.sqrt(7), rel=1e-5)
    d_mse, _ = mse_observer(x, 4, "signed")

    def err(d):
        q = np.clip(np.rint(x / d), -7, 7)
        return np.mean((x - d * q) ** 2)

    # the MSE search beats min–max (stretched by the outlier) and the percentile rule
    assert err(d_mse.item()) < err(d_pc.item()) < err(d_mm.item())


def test_asymmetric_observer_keeps_zero_in_range():
    d, r_min = minmax_observer(np.array([0.5, 2.0]), 8, "asymmetric")
    assert r_min.item() == 0.0 and d.item() == pytest.approx(2.0 / 255)


def test_integer_bounds():
    assert integer_bounds(2, "signed") == (-1, 1)
    assert integer_bounds(2, "signed", narrow_range=False) == (-2, 1)
    assert integer_bounds(4, "unsigned") == (0, 15)


@pytest.mark.parametrize("n_bits", [1, 2, 3, 4, 7, 8, 12, 16])
@pytest.mark.parametrize("signed", [True, False])
def test_bitpack_roundtrip(rng, n_bits, signed):
    lo, hi = (-(2 ** (n_bits - 1)), 2 ** (n_bits - 1) - 1) if signed else (0, 2 ** n_bits - 1)
    codes = rng.integers(lo, hi + 1, size=37)
    packed = pack_bits(codes, n_bits, signed)
    assert packed.dtype == np.uint8 and packed.size == -(-37 * n_bits // 8)
    np.testing.assert_array_equal(unpack_bits(packed, n_bits, 37, signed), codes)


def test_bitpack_by_hand():
    # 4-bit two's complement: -1 → 1111, 3 → 0011 → one byte 0xF3; 2-bit: [1, -1, 0, -2] → 01 11 00 10
    np.testing.assert_array_equal(pack_bits(np.array([-1, 3]), 4), [0xF3])
    np.testing.assert_array_equal(pack_bits(np.array([1, -1, 0, -2]), 2), [0b01110010])


def test_bitpack_rejects_out_of_range():
    with pytest.raises(ValueError, match="codes must lie"):
        pack_bits(np.array([8]), 4)
    with pytest.raises(ValueError, match="need"):
        unpack_bits(np.zeros(3, np.uint8), 4, 7)
