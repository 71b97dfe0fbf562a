"""The integer model: fixed-point requantisation, exactness of the fast path, agreement with the
fake-quantised model, plain-array round trip, packed storage, unusual shapes and masks."""
import copy
import warnings

import numpy as np
import pytest

from minicompress import models, nn, optim
from minicompress.io import load_npz, save_npz_atomic
from minicompress.quantize import (ActivationQuantizer, IntegerModel, calibrate, convert, prepare,
                                   quantize_multiplier, requantize, train_quantized)
from minicompress.quantize.fixed_point import requantize_exact_float
from minicompress.quantize.integer import IntLayer
from minicompress.train import TrainConfig, fit, predict


def test_quantize_multiplier(rng):
    m = np.exp(rng.uniform(np.log(1e-9), np.log(100.0), 200))
    m0, n = quantize_multiplier(m)
    assert np.all((m0 >= 2 ** 26) & (m0 < 2 ** 27))
    np.testing.assert_allclose(m0 * 2.0 ** -n, m, rtol=2.0 ** -27)
    # by hand: 0.75 = 0.75·2^0 → M₀ = 0.75·2^27, n = 27
    m0, n = quantize_multiplier(0.75)
    assert (int(m0), int(n)) == (3 * 2 ** 25, 27)
    with pytest.raises(ValueError, match="M must"):
        quantize_multiplier(0.0)


def test_requantize_by_hand():
    m0, n = quantize_multiplier(np.array([0.5, 0.5, 0.5, 0.3]))
    acc = np.array([[5, -5, 600, 100]], np.int64)
    # 2.5 → 3 (half up), −2.5 → −2 (half up), 300 clipped to 255, 30 (+ zero point 10)
    out = requantize(acc, m0, n, np.array([0, 0, 0, 10]), -128, 255)
    np.testing.assert_array_equal(out, [[3, -2, 255, 40]])


def test_requantize_with_stored_int32_multipliers_and_large_shifts():
    """M₀ and n are stored as int32; 2^(n−1) for n ≥ 32 must still be computed in int64 (in int32
    it wraps to −2^31 and every result is off by one), whatever NumPy's promotion rules."""
    m0, n = quantize_multiplier(np.array([2.0 ** -6, 0.0259, 3e-4]))
    assert n.max() >= 32
    acc = np.array([[703, 3543, -4372], [-1, 100000, 2 ** 23]], np.int64)
    # the same formula with Python's unbounded integers
    want = [[min(max(((a * int(m) + (1 << (int(s) - 1))) >> int(s)) + 2, -128), 127)
             for a, m, s in zip(row, m0, n)] for row in acc.tolist()]
    for dtype in (np.int64, np.int32):
        got = requantize(acc, m0.astype(dtype), n.astype(dtype), 2, -128, 127)
        np.testing.assert_array_equal(got, want, err_msg=str(dtype))
        fast = requantize_exact_float(acc.astype(np.float32), m0.astype(dtype), n.astype(dtype),
                                      2, -128, 127)
        np.testing.assert_array_equal(fast, want, err_msg=str(dtype))


def test_exact_float_requantize_equals_integer(rng):
    """floor(acc·M + 0.5) in float64 is bit-identical to (acc·M₀ + 2^(n−1)) >> n for |acc| < 2^24,
    including exact ties and extreme multipliers."""
    m = np.concatenate([np.exp(rng.uniform(np.log(1e-12), np.log(1e3), 30)), [0.5, 0.25, 1.0]])
    m0, n = quantize_multiplier(m)
    acc = rng.integers(-2 ** 24 + 1, 2 ** 24, size=(4000, m.size))
    acc[:10] = np.arange(-5, 5)[:, None] * (1 << 10)   # many exact .5 ties for M = 2^-k
    ref = requantize(acc.astype(np.int64), m0, n, 3, -2 ** 40, 2 ** 40)
    fast = requantize_exact_float(acc.astype(np.float32), m0, n, 3, -2 ** 40, 2 ** 40)
    np.testing.assert_array_equal(fast, ref)
    # the unsigned shortcut (z = 0, q_lo ≥ 0: clip, then a truncating cast) gives the same codes
    ref = requantize(acc.astype(np.int64), m0, n, 0, 0, 65535)
    fast = requantize_exact_float(acc.astype(np.float32), m0, n, 0, 0, 65535, out_dtype=np.uint16)
    assert fast.dtype == np.uint16
    np.testing.assert_array_equal(fast, ref)


def _digits_model(name, bits, rng, train=False):
    from minicompress.data import load_dataset
    (xtr, ytr), (xte, yte) = load_dataset("digits")
    model = models.build(name, 8, rng=rng)
    fit(model, optim.Adam(model.parameters(), lr=1e-3), (xtr, ytr), TrainConfig(3, rng))
    prepare(model, bits, bits, example_input=xtr)
    calibrate(model, xtr[:300])
    if train:
        train_quantized(model, (xtr, ytr), TrainConfig(1, rng), lr_quant=1e-2, lr_weights=1e-3)
    return model, xte


NEAR_TIE = 1e-3  # code units


def _rows_with_a_near_tie(model, x, tol=NEAR_TIE):
    """Rows of ``x`` for which some value entering a hidden activation quantizer of the (float32)
    fake model lies within ``tol`` code units of a rounding boundary (v/Δ = k + ½)."""
    near = np.zeros(len(x), bool)
    h = x
    model.eval()
    for i, (_, m) in enumerate(model.named_children()):
        if i > 0 and isinstance(m, ActivationQuantizer):
            v = h.astype(np.float64) / float(m.delta[0])
            near |= (np.abs(v - np.floor(v) - 0.5) < tol).reshape(len(x), -1).any(axis=1)
        h = m(h)
    return near


def _check_agreement(model, im, x):
    """The integer model computes the fake-quantised model's numbers exactly.

    The fake model's float32 sums miss the exact values by up to ~1e-4 code units (8-bit codes;
    how much depends on the BLAS kernel's summation order), and the integer model's M₀·2^(−n)
    differs from M by ≤ 2^(−27) relative. Where that lands within NEAR_TIE (≫ both) of a rounding
    boundary, the two may round a code differently, so a row may differ only if it has such a
    near tie — and such rows must be rare. All other rows hold the same logits: the fake model's
    last BiasQuantizer snaps them to s·acc, as the integer model's are (one float32 rounding of
    the same product each), exact ties included.
    """
    fake = predict(model, x)
    real = im.forward(x)
    same = np.all(np.isclose(real, fake, rtol=1e-6, atol=1e-6), axis=1)
    unexplained = np.flatnonzero(~same & ~_rows_with_a_near_tie(model, x))
    assert unexplained.size == 0, f"rows {unexplained[:10]} differ without a near tie"
    assert (~same).mean() <= 0.02, f"{int((~same).sum())} of {len(x)} rows differ"
    np.testing.assert_array_equal(real[same].argmax(1), fake[same].argmax(1))


@pytest.mark.parametrize("name,bits", [("lenet300", 8), ("lenet5", 4), ("lenet5", 2)])
def test_integer_model_matches_fake(rng, name, bits):
    model, x = _digits_model(name, bits, rng, train=bits == 4)
    im = convert(model)
    _check_agreement(model, im, x)
    # the float32 BLAS fast path gives exactly NumPy's int64 product
    np.testing.assert_array_equal(im.forward(x), convert(model, gemm="int64").forward(x))
    assert all(s.exact_dtype == np.float32 for s in im.steps if isinstance(s, IntLayer))


def test_plain_arrays_round_trip(rng, tmp_path):
    model, x = _digits_model("lenet5", 4, rng)
    im = convert(model)
    arrays = im.to_arrays()
    for k, v in arrays.items():
        assert isinstance(v, np.ndarray) and v.dtype != object, k
        assert np.issubdtype(v.dtype, np.number) or v.dtype.kind == "U", k
    save_npz_atomic(tmp_path / "int.npz", arrays)
    again = IntegerModel.from_arrays(load_npz(tmp_path / "int.npz"))
    np.testing.assert_array_equal(again.forward(x), im.forward(x))
    np.testing.assert_array_equal(again.predict(x), im.predict(x))
    with pytest.raises(ValueError, match="format"):
        IntegerModel.from_arrays({"num_steps": np.int64(0)})


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_packed_bytes(rng, bits):
    model, _ = _digits_model("lenet300", bits, rng)
    im = convert(model)
    n_weights = sum(s.q_w.size for s in im.steps if isinstance(s, IntLayer))
    packed = [s.arrays()["weight_packed"] for s in im.steps if isinstance(s, IntLayer)]
    assert all(p.dtype == np.uint8 for p in packed)
    assert im.weight_bytes() == sum(-(-s.q_w.size * bits // 8) for s in im.steps
                                    if isinstance(s, IntLayer))
    assert im.weight_bytes() <= n_weights * bits / 8 + len(packed)
    n_bias = sum(s.q_b.size for s in im.steps if isinstance(s, IntLayer))
    # everything else (int32 biases, steps, multipliers, metadata) is small
    assert im.nbytes() - im.weight_bytes() < 4 * n_bias + 1500


def test_odd_shapes_mask_and_stride(rng):
    """A pruned-looking net: masked weights, odd channel counts, stride 2, padding, exact zeros."""
    from minicompress.data import load_dataset
    (xtr, ytr), (xte, _) = load_dataset("digits")

    class Mask(nn.WeightTransform):
        def __init__(self, m):
            self.m = m

        def forward(self, w):
            return w * self.m

        def backward(self, g):
            return g * self.m

    model = nn.Sequential(
        conv1=nn.Conv2d(1, 3, 3, padding=1, rng=rng), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(3, 5, 3, stride=2, padding=1, rng=rng), relu2=nn.ReLU(),
        flatten=nn.Flatten(), fc1=nn.Linear(20, 7, rng=rng), relu3=nn.ReLU(),
        fc2=nn.Linear(7, 10, bias=False, rng=rng))
    model.fc1.add_weight_transform(Mask((rng.random((7, 20)) > 0.7).astype(np.float32)))
    fit(model, optim.Adam(model.parameters(), lr=3e-3), (xtr, ytr), TrainConfig(2, rng))
    prepare(model, 3, 4, per_channel=True, example_input=xtr)
    calibrate(model, xtr[:200])
    im = convert(model)
    fc1 = [s for s in im.steps if isinstance(s, IntLayer)][2]
    assert np.all(fc1.q_w[model.fc1.weight_transforms[0].m == 0] == 0)
    _check_agreement(model, im, xte)


def test_wide_accumulator_falls_back_exactly(rng):
    """If the bound B ≥ 2^24 the float32 path would not be exact: the layer uses float64 and
    still matches int64."""
    q_w = rng.integers(-127, 128, size=(3, 2000))
    layer = IntLayer("linear", (q_w, 8, np.ones(3)), np.zeros(3), (np.float32(1), 0, 0, 255),
                     {"out_scale": np.ones(3, np.float32)})
    assert layer.bound >= 2 ** 24 and layer.exact_dtype == np.float64
    x = rng.integers(0, 256, size=(5, 2000))
    np.testing.assert_array_equal(layer.run(x), (x @ q_w.T).astype(np.float32))


def test_convert_errors(rng):
    model = models.lenet300(8, rng=rng)
    with pytest.raises(ValueError, match="prepare"):
        convert(model)
    avg = nn.Sequential(conv=nn.Conv2d(1, 2, 3, rng=rng), relu=nn.ReLU(), pool=nn.AvgPool2d(2),
                        flatten=nn.Flatten(), fc=nn.Linear(18, 3, rng=rng))
    x = rng.standard_normal((4, 1, 8, 8)).astype(np.float32)
    prepare(avg, 8, 8, example_input=x)
    calibrate(avg, x)
    with pytest.raises(ValueError, match="AvgPool2d"):
        convert(avg)
    model, xd = _digits_model("lenet300", 8, rng)
    im = convert(copy.deepcopy(model))
    with pytest.raises(ValueError, match="NaN"):
        im.forward(np.full((1, 1, 8, 8), np.nan, np.float32))


# ---- the fused fast path (IntegerModel.forward) against the step-by-step reference ---------------
from minicompress.quantize.fixed_point import requantize_centred  # noqa: E402
from minicompress.quantize.integer import IntFlatten, IntMaxPool, IntReLU, QuantizeInput  # noqa: E402
from minicompress.quantize.integer_stages import _LayerStage, _PoolStage  # noqa: E402


def _requant_out(m, out_zero, out_lo=0, out_hi=255, relu=0):
    m0, n = quantize_multiplier(np.asarray(m, np.float64))
    return {"m0": m0, "shift": n, "out_delta": np.float32(1), "out_zero": out_zero,
            "out_lo": out_lo, "out_hi": out_hi, "relu": relu}


def _same_three_ways(im, x):
    """forward (fused) == forward_steps == the int64 product, bit for bit."""
    fast = im.forward(x)
    assert im.fast_stages(x.shape[1:]) is not None, "the fused path was not used"
    np.testing.assert_array_equal(fast, im.forward_steps(x))
    slow = IntegerModel.from_arrays(im.to_arrays(), gemm="int64")
    assert slow.fast_stages(x.shape[1:]) is None
    np.testing.assert_array_equal(fast, slow.forward(x))
    return fast


def test_requantize_centred_equals_integer_requantize(rng):
    """clip(floor(acc·M + ½)) in float64 from float32 accumulators is the integer formula minus z,
    for |acc| < 2^24, with exact ties (M = 2^-k) and with the rint shortcut where it is allowed."""
    m = np.concatenate([np.exp(rng.uniform(np.log(1e-9), np.log(30.0), 40)), [0.5, 0.25, 2.0 ** -10]])
    m0, n = quantize_multiplier(m)
    acc = rng.integers(-2 ** 24 + 1, 2 ** 24, size=(3000, m.size))
    acc[:20] = np.arange(-10, 10)[:, None] * (1 << 9)        # exact ties for M = 2^-k
    z, lo, hi = 5, -100, 300
    want = requantize(acc, m0, n, z, lo, hi) - z
    mf = np.ldexp(m0.astype(np.float64), -n)
    out, work = np.empty(acc.shape, np.float32), np.empty(acc.shape)
    got = requantize_centred(acc.astype(np.float32), mf, lo - z, hi - z, out, work, ties=True)
    np.testing.assert_array_equal(got, want)
    # rint (half to even) differs from half up exactly at ties: the shortcut is wrong with ties...
    tie_cols = m0 == 2 ** 26                                   # M a power of two
    bad = requantize_centred(acc.astype(np.float32), mf, lo - z, hi - z, out, work, ties=False)
    assert not np.array_equal(bad[:, tie_cols], want[:, tie_cols])
    # ...and right where no tie can occur: M₀ odd, |acc| < 2^(n−1)
    odd = (m0 % 2 == 1) & (n > 25)
    small = acc[:, odd] % (1 << 24)
    got = requantize_centred(small.astype(np.float32), mf[odd], lo - z, hi - z,
                             np.empty(small.shape, np.float32), np.empty(small.shape), ties=False)
    np.testing.assert_array_equal(got, requantize(small, m0[odd], n[odd], z, lo, hi) - z)


def test_ties_possible_by_hand():
    """A tie acc·M₀ ≡ 2^(n−1) (mod 2^n) needs |acc| ≥ 2^(n−1−t), t = trailing zero bits of M₀."""
    q_w = np.ones((1, 4), np.int64)
    grid = (np.float32(1), 0, 0, 255)                          # bound B = 4·255 = 1020
    def stage(m):
        layer = IntLayer("linear", (q_w, 8, np.ones(1)), np.zeros(1), grid, _requant_out(m, 0))
        return _LayerStage(layer, (4,))
    assert stage(0.5).ties                                     # M₀ = 2^26, n = 27: acc = 1 ties
    assert stage(2.0 ** -10).ties                              # acc = 512 ≤ 1020 ties
    assert not stage(2.0 ** -11).ties                          # needs acc = 1024 > 1020
    assert not stage(0.3).ties                                 # M₀ even but n − 1 − t ≫ 10


def test_fast_forward_random_models(rng):
    """Random Linear chains: asymmetric, unsigned and signed grids, per-channel multipliers
    (including powers of two, whose ties take the '+ ½, floor' path), inputs beyond the input
    grid (clipped) and inside it (clip skipped), a ReLU step on codes."""
    for trial in range(12):
        d, h = int(rng.integers(3, 60)), int(rng.integers(2, 40))
        lo, hi = [(0, 255), (-128, 127), (0, 15)][trial % 3]
        z_in = int(rng.integers(lo, hi + 1))
        grid = (np.float32(rng.uniform(0.01, 0.1)), z_in, lo, hi)
        m = rng.uniform(1e-4, 0.05, h)
        if trial % 2:
            m[: h // 2] = 2.0 ** -rng.integers(5, 12, h // 2)   # ties possible
        z_h = int(rng.integers(0, 20))
        l1 = IntLayer("linear", (rng.integers(-127, 128, (h, d)), 8, np.ones(h)),
                      rng.integers(-3000, 3000, h), grid,
                      _requant_out(m, z_h, out_lo=z_h if trial % 4 == 0 else 0))
        l2 = IntLayer("linear", (rng.integers(-7, 8, (10, h)), 4, np.ones(10)),
                      rng.integers(-50, 50, 10), (np.float32(1), z_h, 0, 255),
                      {"out_scale": rng.uniform(0.01, 1, 10).astype(np.float32)})
        steps = [QuantizeInput(*grid), l1] + ([IntReLU(z_h + 3)] if trial % 3 == 1 else []) + [l2]
        im = IntegerModel(steps)
        x = rng.standard_normal((int(rng.integers(1, 70)), d)).astype(np.float32)
        x *= [20.0, 0.001][trial % 2]                           # clipped / inside the grid
        _same_three_ways(im, x)


def test_fast_forward_conv_pool_flatten(rng):
    """Conv (padding, stride) → 2x2 pool fused before the requantisation; a ReLU step, then an
    overlapping 3x3/2 pool as its own stage; flatten folded into the Linear's column order."""
    grid = (np.float32(0.05), 11, 0, 255)
    conv1 = IntLayer("conv2d", (rng.integers(-127, 128, (4, 1, 3, 3)), 8, np.ones(4)),
                     rng.integers(-500, 500, 4), grid, _requant_out(rng.uniform(1e-4, 1e-2, 4), 0),
                     padding=1)
    conv2 = IntLayer("conv2d", (rng.integers(-127, 128, (5, 4, 3, 3)), 8, np.ones(5)),
                     rng.integers(-500, 500, 5), (np.float32(1), 0, 0, 255),
                     _requant_out(rng.uniform(1e-4, 1e-2, 5), 2, out_lo=2), stride=2, padding=1)
    fc = IntLayer("linear", (rng.integers(-127, 128, (10, 5 * 2 * 2)), 8, np.ones(10)),
                  rng.integers(-500, 500, 10), (np.float32(1), 2, 0, 255),
                  {"out_scale": np.full(10, 0.01, np.float32)})
    im = IntegerModel([QuantizeInput(*grid), conv1, IntMaxPool(2, 2), conv2, IntReLU(4),
                       IntMaxPool(3, 2), IntFlatten(), fc])
    x = rng.standard_normal((7, 1, 18, 18)).astype(np.float32) * 3   # 18 → 9 → 5 → 2
    _same_three_ways(im, x)
    stages = im.fast_stages(x.shape[1:])
    assert [isinstance(s, _LayerStage) and s.pool is not None for s in stages].count(True) == 1
    assert any(isinstance(s, _PoolStage) for s in stages)


@pytest.mark.parametrize("name,bits", [("lenet300", 8), ("lenet5", 8), ("lenet5", 3)])
def test_fast_forward_trained_models_agree_fully(rng, name, bits):
    """Real converted nets: the fused path gives the reference's logits bit for bit, so the
    predictions agree on 100 % of the images, at any batch size."""
    model, x = _digits_model(name, bits, rng)
    im = convert(model)
    fast = _same_three_ways(im, x)
    assert (fast.argmax(1) == im.forward_steps(x).argmax(1)).all()
    np.testing.assert_array_equal(np.concatenate([im.forward(x[i:i + 7]) for i in range(0, len(x), 7)]),
                                  fast)


def test_fast_forward_float64_fallback_layer(rng):
    """A layer with B ≥ 2^24 inside the fused path: float64 GEMM and the int64 requantisation."""
    grid = (np.float32(0.05), 7, 0, 255)
    wide = IntLayer("linear", (rng.integers(-127, 128, (12, 2000)), 8, np.ones(12)),
                    rng.integers(-1000, 1000, 12), grid, _requant_out(np.full(12, 3e-5), 3))
    last = IntLayer("linear", (rng.integers(-127, 128, (10, 12)), 8, np.ones(10)), np.zeros(10),
                    (np.float32(1), 3, 0, 255), {"out_scale": np.full(10, 0.5, np.float32)})
    assert wide.bound >= 2 ** 24 and wide.exact_dtype == np.float64
    im = IntegerModel([QuantizeInput(*grid), wide, last])
    _same_three_ways(im, rng.standard_normal((30, 2000)).astype(np.float32) * 4)


def test_fast_forward_sees_replaced_steps_and_threads(rng):
    """Replacing a step rebuilds the stages; two threads share no buffers."""
    from concurrent.futures import ThreadPoolExecutor
    model, x = _digits_model("lenet300", 8, rng)
    im = convert(model)
    before = im.forward(x)
    im.steps[0] = QuantizeInput(im.steps[0].delta * 2, im.steps[0].zero, im.steps[0].q_lo,
                                im.steps[0].q_hi)
    after = im.forward(x)
    assert not np.array_equal(before, after)
    np.testing.assert_array_equal(after, im.forward_steps(x))
    halves = [x[: len(x) // 2], x[len(x) // 2:]] * 20
    with ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(im.forward, halves))
    for xi, out in zip(halves, outs):
        np.testing.assert_array_equal(out, im.forward_steps(xi))


def test_fast_forward_exact_ties_round_half_up(rng):
    """M = ½ exactly: every odd accumulator is a tie k + ½, which the integer model rounds up
    (rint would round half of them down, to even). The stage must notice and use floor(· + ½)."""
    grid = (np.float32(1), 0, 0, 255)
    l1 = IntLayer("linear", (rng.integers(-1, 2, (8, 6)), 8, np.ones(8)), rng.integers(0, 9, 8),
                  grid, _requant_out(np.full(8, 0.5), 0))
    l2 = IntLayer("linear", (np.eye(10, 8, dtype=np.int64), 8, np.ones(10)), np.zeros(10),
                  (np.float32(1), 0, 0, 255), {"out_scale": np.ones(10, np.float32)})
    im = IntegerModel([QuantizeInput(*grid), l1, l2])
    x = rng.integers(0, 40, (200, 6)).astype(np.float32)
    acc = x.astype(np.int64) @ l1.q_w.T + l1.q_b
    assert np.any((acc % 2 == 1) & (acc > 0) & (acc < 500) & (acc // 2 % 2 == 0))  # rint ≠ half up
    assert im.fast_stages((6,))[1].ties
    _same_three_ways(im, x)


# ---- float32 requantisation, proved by enumeration; conv stages in chunks -----------------------
from minicompress.quantize import integer as integer_module  # noqa: E402
from minicompress.quantize import integer_stages  # noqa: E402
from minicompress.quantize.fixed_point import (M0_FLOAT32_SLACK, agreeing_m0, code_steps,  # noqa: E402
                                               float32_multiplier, m0_for_float32,
                                               requantize_float32)
from minicompress.quantize.integer_stages import _ConvStage, _PlaneConvStage  # noqa: E402


def _all_codes(m32, m0, n, bound, lo, hi):
    """Float32 and exact requantisation of every accumulator −B..B (no window: all of them)."""
    acc = np.arange(-bound, bound + 1)
    want = requantize(acc, m0, n, 0, lo, hi)
    got = requantize_float32(acc.astype(np.float32), np.float32(m32), np.float32(lo),
                             np.float32(hi), np.empty(acc.shape, np.float32))
    return got, want


def test_float32_multiplier_exact_for_every_accumulator(rng):
    """Whenever a float32 multiplier is returned, clip(rint(acc·m)) in float32 equals the integer
    requantisation for every |acc| ≤ B — checked here over all of them, not just the window."""
    found = 0
    for _ in range(60):
        m0, n = quantize_multiplier(np.exp(rng.uniform(np.log(1e-4), np.log(0.3))))
        bound = int(rng.integers(1000, 300_000))
        lo, hi = [(0, 255), (-128, 127), (-7, 8)][int(rng.integers(3))]
        m32 = float32_multiplier(m0, n, bound, lo, hi)
        if m32 is None:
            continue
        found += 1
        got, want = _all_codes(m32, int(m0), int(n), bound, lo, hi)
        np.testing.assert_array_equal(got, want)
    assert found > 30


def test_float32_multiplier_at_exact_ties():
    """M = ½: every odd acc is a tie k + ½, which the integer model rounds half up. rint (half to
    even) with fl32(½) gets half of them wrong. With a ReLU clip (lo = 0) the float32 number just
    above ½ is right everywhere — ties of positive acc land just above k + ½, negative ones clip
    to 0 — and is found; with negative codes allowed no float32 multiplier is exact."""
    m0, n = quantize_multiplier(0.5)
    m32 = float32_multiplier(m0, n, 1000, 0, 255)
    assert m32 == np.nextafter(np.float32(0.5), np.float32(1))
    got, want = _all_codes(m32, int(m0), int(n), 1000, 0, 255)
    np.testing.assert_array_equal(got, want)
    assert want[1000 + 3] == 2 and want[1000 + 5] == 3           # 1.5 → 2, 2.5 → 3 (half up)
    assert float32_multiplier(m0, n, 1000, -128, 127) is None


def test_code_steps_are_where_the_float32_codes_step_up(rng):
    """code_steps (found from ⌈(k − ½)/m⌉ and its neighbours) is exactly the set of accumulators
    where clip(rint(acc·m)) changes, by enumeration of every |acc| ≤ B."""
    for case in range(60):
        lo, hi = [(0, 255), (-128, 127), (-8, 7)][case % 3]
        m32 = np.float32(np.exp(rng.uniform(np.log(1e-4), np.log(0.5))))
        bound = int(rng.integers(1, 300_000))
        acc = np.arange(-bound, bound + 1)
        f = np.clip(np.rint(acc.astype(np.float32) * m32), lo, hi)
        np.testing.assert_array_equal(code_steps(m32, bound, lo, hi), acc[1:][f[1:] != f[:-1]])


def test_m0_for_float32_on_lenet300_first_layer():
    """The 8-bit PTQ lenet300's first layer (benchmarks/int_speed.py): M₀ = round(M·2^n) has no
    float32 multiplier (a few of its ~500,000 window accumulators lie within 2^(−23)·|acc·M| of
    a tie). m0_for_float32 moves M₀ by less than M₀·2^(−18) to the nearest M₀' that has one:
    exact for every |acc| ≤ B (all 6.7 million checked), and no M₀'' nearer has one."""
    m0, n, bound = 70692849, 37, 3363107
    assert float32_multiplier(m0, n, bound, 0, 255) is None
    moved = m0_for_float32(m0, n, bound, 0, 255)
    assert moved != m0 and abs(moved - m0) <= m0 * M0_FLOAT32_SLACK
    got, want = _all_codes(float32_multiplier(moved, n, bound, 0, 255), moved, n, bound, 0, 255)
    np.testing.assert_array_equal(got, want)
    d = abs(moved - m0)
    assert all(float32_multiplier(m0 + e, n, bound, 0, 255) is None for e in range(1 - d, d))


def test_m0_for_float32_keeps_or_moves_by_one():
    """M = ½ with a ReLU clip: fl32 just above ½ already works, M₀ is kept. With negative codes
    the odd accumulators are exact ties k + ½, which the integer model rounds up and rint to
    even: M₀ + 1 (M = ½ + 2^(−27)) has no ties left, and the float32 number just above ½ then
    gives its codes exactly. Allowed no move at all, it finds nothing: None."""
    m0, n = (int(v) for v in quantize_multiplier(0.5))
    assert m0_for_float32(m0, n, 1000, 0, 255) == m0
    moved = m0_for_float32(m0, n, 1000, -128, 127)
    assert moved == m0 + 1
    got, want = _all_codes(float32_multiplier(moved, n, 1000, -128, 127), moved, n, 1000, -128, 127)
    np.testing.assert_array_equal(got, want)
    assert m0_for_float32(m0, n, 1000, -128, 127, slack=2.0 ** -30) is None


@pytest.mark.parametrize("m0, n, bound, lo, hi", [
    (100405737, 40, 646216, -128, 127),     # works only with a multiplier 2 steps from fl32(M₀')
    (100487809, 40, 7188849, 0, 255),       # works only with an m outside fl32(M)·(1 ± slack)
    (119043533, 40, 6565805, 0, 255),
    (72212480, 40, 6002555, 0, 255)])
def test_m0_for_float32_is_the_nearest(m0, n, bound, lo, hi):
    """The M₀' returned is the nearest (the lower on a tie) for which float32_multiplier finds a
    multiplier, checked by trying every nearer one in turn; cases an earlier search missed."""
    moved = m0_for_float32(m0, n, bound, lo, hi)
    assert moved is not None and abs(moved - m0) <= m0 * M0_FLOAT32_SLACK
    assert float32_multiplier(moved, n, bound, lo, hi) is not None
    d = abs(moved - m0)
    nearer = [m0 + e for e in sorted(range(-d, d + 1), key=lambda e: (abs(e), e))]
    assert next(c for c in nearer if float32_multiplier(c, n, bound, lo, hi) is not None) == moved


def test_agreeing_m0_is_exactly_the_multipliers_that_agree_everywhere(rng):
    """agreeing_m0, which looks only at f's steps and the ends, marks exactly the M₀' whose exact
    codes equal clip(rint(acc·m)) for every |acc| ≤ B — compared with every M₀' in 1..4095 (11-bit
    M₀, so that whole runs of agreeing M₀' fit in the range), each over every accumulator."""
    candidates = np.arange(1, 4096, dtype=np.int64)
    some = 0
    for case in range(40):
        lo, hi = [(0, 15), (-8, 7), (0, 63)][case % 3]
        m0, n = int(rng.integers(1024, 2048)), int(rng.integers(14, 17))
        m32 = np.float32(m0 * 2.0 ** -n)
        for _ in range(int(rng.integers(0, 4))):             # a few float32 steps away, or not
            m32 = np.nextafter(m32, np.float32(np.inf))
        bound = int(rng.integers(50, 3000))
        got = agreeing_m0(m32, candidates, bound, n, lo, hi)
        acc = np.arange(-bound, bound + 1)
        f = np.clip(np.rint(acc.astype(np.float32) * m32), lo, hi)
        want = np.array([np.array_equal(requantize(acc, c, n, 0, lo, hi), f) for c in candidates])
        np.testing.assert_array_equal(got, want)
        some += bool(want.any())
    assert some >= 10
    # m = ½ with negative codes: rint takes the ties of odd acc to even, e rounds them up — or,
    # with M₀' ≠ ½·2^n, has none; either way some acc disagrees, for every M₀'
    assert not agreeing_m0(np.float32(0.5), candidates, 16, 12, -8, 7).any()


def test_convert_shares_the_moved_m0_between_equal_channels(monkeypatch):
    """_m0_for_float32 moves each distinct (M₀, n) once and writes it to every channel; if one
    channel finds no M₀', no channel moves (the layer stays float64 anyway)."""
    from minicompress.quantize.integer import _m0_for_float32
    out = {"m0": np.array([70692849, 70692849, 2 ** 26], np.int64),
           "shift": np.array([37, 37, 27], np.int64), "out_zero": 0, "out_lo": 0, "out_hi": 255}
    _m0_for_float32(out, 3363107)
    assert out["m0"][0] == out["m0"][1] == m0_for_float32(70692849, 37, 3363107, 0, 255) != 70692849
    assert out["m0"][2] == 2 ** 26                           # M = ½: fl32 just above ½ works
    out["m0"][:] = [70692849, 70692849, 2 ** 26]
    monkeypatch.setattr(integer_module, "m0_for_float32",
                        lambda m0, n, *a: None if m0 == 2 ** 26 else m0 + 1)
    _m0_for_float32(out, 3363107)
    np.testing.assert_array_equal(out["m0"], [70692849, 70692849, 2 ** 26])


def test_fast_forward_with_a_zero_multiplier(rng):
    """M₀ = 0 is allowed in a file (every code of that layer is then clip(z_y)): the fused
    stages give the steps' integers, without a warning (no division by M or by M₀'s bits)."""
    model = models.build("lenet300", 28, rng=rng)
    x = rng.random((8, 784)).astype(np.float32)
    fake = prepare(copy.deepcopy(model), 8, 8, input_kind="asymmetric")
    calibrate(fake, x)
    im = convert(fake)
    first = next(s for s in im.steps if isinstance(s, IntLayer) and "m0" in s.out)
    first.out["m0"][:] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(im.forward(x), im.forward_steps(x))


def test_fast_forward_float64_requantisation_when_float32_fails(rng):
    """A hidden layer whose multiplier has no exact float32 form (M = ½ with negative codes)
    takes the float64 requantisation inside the fused path, still bit for bit."""
    grid = (np.float32(1), 0, -128, 127)
    l1 = IntLayer("linear", (rng.integers(-3, 4, (8, 6)), 8, np.ones(8)), rng.integers(-9, 9, 8),
                  grid, _requant_out(np.full(8, 0.5), 0, out_lo=-128, out_hi=127))
    l2 = IntLayer("linear", (rng.integers(-3, 4, (10, 8)), 8, np.ones(10)), np.zeros(10),
                  (np.float32(1), 0, -128, 127), {"out_scale": np.ones(10, np.float32)})
    im = IntegerModel([QuantizeInput(*grid), l1, l2])
    x = rng.integers(-40, 40, (300, 6)).astype(np.float32)
    _same_three_ways(im, x)
    stage = im.fast_stages((6,))[1]
    assert stage.m32 is None and stage.ties


@pytest.mark.parametrize("chunk_floats", [1 << 18, 8640])
def test_fast_forward_conv_chunks_and_planes(rng, monkeypatch, chunk_floats):
    """One-channel conv as channel planes (stride 2, padding, per-channel multipliers, no pool)
    and a multi-channel conv with a 2x2 pool, a few images at a time: a tiny chunk size makes
    many chunks and a shorter last one."""
    monkeypatch.setattr(integer_stages, "CHUNK_FLOATS", chunk_floats)
    grid = (np.float32(0.05), 9, 0, 255)
    conv1 = IntLayer("conv2d", (rng.integers(-127, 128, (5, 1, 3, 3)), 8, np.ones(5)),
                     rng.integers(-500, 500, 5), grid,
                     _requant_out(rng.uniform(1e-4, 1e-2, 5), 3, out_lo=3), stride=2, padding=1)
    conv2 = IntLayer("conv2d", (rng.integers(-127, 128, (4, 5, 3, 3)), 8, np.ones(4)),
                     rng.integers(-500, 500, 4), (np.float32(1), 3, 0, 255),
                     _requant_out(np.full(4, 3e-3), 0), padding=1)
    fc = IntLayer("linear", (rng.integers(-127, 128, (10, 4 * 4 * 4)), 8, np.ones(10)),
                  rng.integers(-500, 500, 10), (np.float32(1), 0, 0, 255),
                  {"out_scale": np.full(10, 0.01, np.float32)})
    im = IntegerModel([QuantizeInput(*grid), conv1, conv2, IntMaxPool(2, 2), IntFlatten(), fc])
    x = rng.standard_normal((23, 1, 16, 16)).astype(np.float32) * 3      # 16 → 8 → 8 → 4
    _same_three_ways(im, x)
    stages = im.fast_stages(x.shape[1:])
    assert isinstance(stages[1], _PlaneConvStage) and stages[1].pool is None
    assert type(stages[2]) is _ConvStage and stages[2].pool is not None
    if chunk_floats < 10000:                                  # chunks of 15 and 3 images
        assert 23 % stages[1].chunk and 23 % stages[2].chunk and stages[2].chunk > 1


def test_input_clip_thresholds(rng):
    """x_hi is the largest float32 whose code rint(x/Δ) is ≤ hi (its successor's code is not),
    x_lo the smallest with code ≥ lo, for random steps and grids."""
    from minicompress.quantize.integer_stages import _QuantizeStage
    for _ in range(200):
        delta = np.float32(np.exp(rng.uniform(np.log(1e-4), np.log(10.0))))
        q_lo, q_hi = [(0, 255), (-128, 127), (0, 15)][int(rng.integers(3))]
        zero = int(rng.integers(q_lo, q_hi + 1))
        stage = _QuantizeStage(QuantizeInput(delta, zero, q_lo, q_hi), 0)
        x_lo, x_hi = np.float32(stage.x_lo), np.float32(stage.x_hi)
        assert (float(x_lo), float(x_hi)) == (stage.x_lo, stage.x_hi)     # float32 numbers
        up, down = np.nextafter(x_hi, np.float32(np.inf)), np.nextafter(x_lo, np.float32(-np.inf))
        assert np.rint(x_hi / delta) <= stage.hi < np.rint(up / delta)
        assert np.rint(down / delta) < stage.lo <= np.rint(x_lo / delta)


@pytest.mark.parametrize("chunk_floats", [1 << 18, 12000])
def test_fast_forward_banded_conv(rng, monkeypatch, chunk_floats):
    """Stride-1 convs with few filters run as the float Conv2d's eval mode runs them, a banded
    matmul (b output pixels per row, zeros outside the band): still exact, for one and for three
    input channels, with padding, a 2x2 pool (taken the float MaxPool2d's way for few channels),
    per-channel multipliers and a chunk size that leaves a shorter last chunk."""
    monkeypatch.setattr(integer_stages, "CHUNK_FLOATS", chunk_floats)
    grid = (np.float32(0.05), 9, 0, 255)
    conv1 = IntLayer("conv2d", (rng.integers(-127, 128, (3, 1, 5, 5)), 8, np.ones(3)),
                     rng.integers(-500, 500, 3), grid, _requant_out(np.full(3, 4e-3), 0), padding=2)
    conv2 = IntLayer("conv2d", (rng.integers(-127, 128, (10, 3, 5, 5)), 8, np.ones(10)),
                     rng.integers(-500, 500, 10), (np.float32(1), 0, 0, 255),
                     _requant_out(rng.uniform(1e-4, 1e-3, 10), 0), padding=2)
    fc = IntLayer("linear", (rng.integers(-127, 128, (10, 10 * 5 * 5)), 8, np.ones(10)),
                  rng.integers(-500, 500, 10), (np.float32(1), 0, 0, 255),
                  {"out_scale": np.full(10, 0.01, np.float32)})
    im = IntegerModel([QuantizeInput(*grid), conv1, conv2, IntMaxPool(2, 2), IntFlatten(), fc])
    x = rng.standard_normal((13, 1, 10, 10)).astype(np.float32) * 3
    _same_three_ways(im, x)
    first, stage = im.fast_stages(x.shape[1:])[1:3]
    assert type(first) is _ConvStage and first.band == 10       # one channel, 5x5: banded too
    assert type(stage) is _ConvStage and stage.band == 5 and stage.w.shape == (5 * 9 * 3, 50)
    if chunk_floats < 100000:                                 # chunks of 4 images
        assert 1 < stage.chunk < 13 and 13 % stage.chunk


def test_input_check_and_clip_small_and_large_batches(rng, monkeypatch):
    """A small input (≤ SMALL_INPUT elements) is checked with one dot product and always
    clipped; a large one with its min and max. Both must refuse NaN and ±inf wherever they
    are, and clip inputs far outside the grid exactly as the steps do — including finite
    inputs so large that their sum of squares overflows (the dot product's fallback)."""
    assert integer_module.SMALL_INPUT <= 2 ** 12 <= len(integer_module._SCALE)
    monkeypatch.setattr(integer_module, "SMALL_INPUT", 8 * 8 * 4)      # ≤ 4 digits is small
    model, xte = _digits_model("lenet300", 8, rng)
    im = convert(copy.deepcopy(model))
    for n in (1, 4, 5, 9):
        x = xte[:n].copy()
        big = np.finfo(np.float32).max                        # x/Δ overflows float32 here
        x[0, 0, 0, :5] = [-50.0, 1e30, -1e30, big, -big]
        x[-1, 0, 1, :2] = [-1e-3, 1e9]
        with warnings.catch_warnings():
            warnings.simplefilter("error")                   # no overflow or invalid warning
            _same_three_ways(im, x)
            wide, top = x.astype(np.float64), x.copy()
            wide[0, 0, 1, 1], top[0, 0, 1, 1] = 1e300, big  # beyond float32: clipped, not inf
            np.testing.assert_array_equal(im.forward(wide), im.forward(top))
            np.testing.assert_array_equal(im.forward_steps(wide), im.forward(top))
            for bad in (np.nan, np.inf, -np.inf):
                y = x.copy()
                y[-1, 0, 7, 7] = bad
                for run in (im.forward, im.forward_steps):
                    with pytest.raises(ValueError, match="NaN or inf"):
                        run(y)


def test_clip_into_is_np_clip(rng):
    """clip_into (the clip ufunc without np.clip's wrapper) gives np.clip's values, NaN and ±inf
    included, in place and into another array."""
    from minicompress.quantize.fixed_point import clip_into
    for size in (3, 300, 5000):
        a = (rng.standard_normal(size) * 200).astype(np.float32)
        a[rng.permutation(size)[:3]] = [np.nan, np.inf, -np.inf]
        lo, hi = np.array(-128, np.float32), np.array(127, np.float32)
        want = np.clip(a, lo, hi)
        out = np.empty_like(a)
        assert clip_into(a, lo, hi, out) is out
        np.testing.assert_array_equal(out, want)
        assert clip_into(a, lo, hi) is a
        np.testing.assert_array_equal(a, want)
        assert out.dtype == np.float32


def test_input_stage_equals_quantize_input_step(rng):
    """The fused input stage gives QuantizeInput.run's codes − z, with the range known (min and
    max) or not (a small batch), for grids whose thresholds are ordinary and for one whose x_hi is
    the largest float32 (Δ = 10^37: then it clips the codes, not x), on inputs up to ±the largest
    float32."""
    from minicompress.quantize.integer_stages import _QuantizeStage
    big = np.finfo(np.float32).max
    grids = [(np.float32(0.02), 7, 0, 255), (np.float32(3e-5), 0, -128, 127),
             (np.float32(1e37), 0, -128, 127)]
    for grid in grids:
        step = QuantizeInput(*grid)
        stage = _QuantizeStage(step, 0)
        assert stage.clip_x == (grid[0] < 1)
        x = np.clip(rng.standard_normal((6, 40)) * float(grid[0]) * 200, -big, big).astype(np.float32)
        x[0, :4] = [big, -big, 1e30, -1e30]
        want = step.run(x).astype(np.float32) - step.zero
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for x_range in (None, (x.min(), x.max())):
                np.testing.assert_array_equal(stage(x, x_range), want)
