"""The fixed-point multiplier of the integer model, and requantisation with it.

A requantising layer turns its int32 accumulator acc into the next layer's code with the real
factor M = Δ_w Δ_x / Δ_y, written as an integer and a shift, M = M₀ · 2^(−n)
(:func:`quantize_multiplier`)::

    q_y = clip(((acc · M₀ + 2^(n−1)) >> n) + z_y, q_lo, q_hi)          (round half up)

:func:`requantize` is that formula in int64: the reference. The others compute the same integers
with faster float hardware, each exact under a condition stated in its docstring:

* :func:`requantize_exact_float` and :func:`requantize_centred` — float64, exact because
  acc·M₀ < 2^24 · 2^27 = 2^51 fits a float64 significand;
* :func:`requantize_float32` — float32, three passes, with a multiplier m that
  :func:`float32_multiplier` has *proved* exact by enumerating every accumulator where the code
  changes; :func:`m0_for_float32` picks, at conversion, an M₀ for which such an m exists.
"""
import math

import numpy as np

M0_BITS = 27
M0_BITS = 27


def quantize_multiplier(m, bits=M0_BITS):
    """``M = 2^(−n) · M₀`` with M₀ ∈ [2^(b−1), 2^b) an integer: returns (M₀, n) as int64 arrays.

    ``M`` (positive, any shape): frexp writes M = f · 2^e with f ∈ [0.5, 1); M₀ = round(f · 2^b),
    n = b − e. Relative error of M₀·2^(−n) ≤ 2^(−b). Jacob et al. use b = 31 (an int32 M₀);
    we use b = 27 so that acc·M₀ < 2^24 · 2^27 = 2^51 is also exact in float64 (fast path below).
    """
    m = np.asarray(m, dtype=np.float64)
    if not np.all(np.isfinite(m)) or np.any(m <= 0) or np.any(m >= 2 ** (bits - 2)):
        # M < 2^(b−2) keeps the shift n ≥ 1 (the rounding term 2^(n−1) is an integer)
        raise ValueError(f"quantize_multiplier: M must be in (0, 2^{bits - 2}), got {m}")
    f, e = np.frexp(m)
    m0 = np.rint(f * 2.0 ** bits).astype(np.int64)
    carry = m0 == 2 ** bits                     # f rounded up to 1.0
    m0 = np.where(carry, m0 // 2, m0)
    n = (bits - e - carry).astype(np.int64)
    # tiny M: keep the shift ≤ 62 so acc·M₀ + 2^(n−1) stays in int64 (M₀ loses low bits)
    over = np.maximum(n - 62, 0)
    return m0 >> over, n - over


def requantize(acc, m0, shift, zero, q_lo, q_hi):
    """``clip(((acc · M₀ + 2^(n−1)) >> n) + z, q_lo, q_hi)`` in int64 (round half up).

    acc (..., O) int64 with |acc| < 2^31; m0, shift (O,) int64 broadcast over the last axis.
    Every operand is made int64 first: with an int32 ``shift`` (as stored) NumPy would compute
    2^(n−1) in int32 — for n = 32 that is −2^31 — and NumPy 1.x also demotes an ``np.int64(1)``
    scalar to the array's int32 (value-based casting; NumPy 2 keeps int64, NEP 50).
    """
    m0, shift = np.asarray(m0, np.int64), np.asarray(shift, np.int64)
    out = np.asarray(acc, np.int64) * m0
    out += np.left_shift(np.ones_like(shift), shift - 1)
    np.right_shift(out, shift, out=out)         # arithmetic shift = floor division by 2^n
    out += zero
    np.clip(out, q_lo, q_hi, out=out)
    return out


def requantize_exact_float(acc, m0, shift, zero, q_lo, q_hi, out_dtype=None):
    """The same integers as :func:`requantize`, computed with float64 hardware (faster here).

    Valid when |acc| < 2^24 and M₀ < 2^27: M = M₀ · 2^(−n) is exact in float64, the product
    acc · M = (acc · M₀) · 2^(−n) has a numerator below 2^51, so it is exact, and so is + 0.5
    (if n ≥ 53 the value is in (0.25, 0.75) and floor gives 0 either way). floor(acc·M + 0.5)
    is therefore exactly (acc·M₀ + 2^(n−1)) >> n.

    ``out_dtype`` (an integer dtype holding [q_lo, q_hi]) returns the codes in that dtype. With
    z = 0 and q_lo ≥ 0 the floor pass is skipped: clip(floor(y)) = floor(clip(y)) for integer
    bounds, and the cast truncates a non-negative number, which *is* floor.
    """
    m = np.ldexp(np.asarray(m0, np.float64), -np.asarray(shift, np.int64))  # M = M₀·2^(−n)
    out = np.multiply(acc, m, dtype=np.float64)           # float32 acc → float64, exact
    out += 0.5
    if out_dtype is not None and q_lo >= 0 and not np.any(zero):
        np.clip(out, q_lo, q_hi, out=out)
        return out.astype(out_dtype)
    np.floor(out, out=out)
    if np.any(zero):                                      # skip a pass when z = 0 (after ReLU)
        out += zero
    np.clip(out, q_lo, q_hi, out=out)
    return out if out_dtype is None else out.astype(out_dtype)


# np.clip's Python wrapper costs ~1.5 µs a call: below this many elements a maximum and a minimum
# (two passes, no wrapper) are faster; above it the single clip pass is (measured here)
CLIP_SMALL = 4096


def clip_into(a, lo, hi, out=None):
    """``out ← clip(a, lo, hi)`` (in place when ``out`` is None), whichever way is faster for
    a's size."""
    out = a if out is None else out
    if a.size < CLIP_SMALL:
        np.maximum(a, lo, out=a)
        return np.minimum(a, hi, out=out)
    return np.clip(a, lo, hi, out=out)


def requantize_centred(acc, m, lo, hi, out, work, ties=True):
    """Centred output codes ``clip(floor(acc·M + ½), lo, hi)`` into ``out`` (float32), with
    lo = q_lo − z_y, hi = q_hi − z_y: the same integers as
    ``requantize(acc, M₀, n, z_y, q_lo, q_hi) − z_y``.

    acc float32 holding exact integers (the bias included); m = M₀·2^(−n) (float64, a scalar or
    broadcasting against acc); work float64 shaped like acc; out float32 of acc's shape, any
    strides (a conv stage writes channel planes into an NHWC array through it). ``ties=False``
    when no acc·M can be a tie k + ½ (:meth:`_LayerStage.ties_possible`): then ``rint`` (half to
    even) is floor(· + ½).

    Exact when |acc| ≤ B < 2^24 (the float32 GEMM's condition): M₀ < 2^27 makes
    acc·M = (acc·M₀)·2^(−n) a multiple of 2^(−n) with a numerator below 2^51, exact in float64.
    + ½ is needed only when ties are possible, which needs n ≤ 51 (B ≥ 2^(n−1−27)), so the sum's
    numerator acc·M₀ + 2^(n−1) stays below 2^52: exact, and floor gives exactly
    (acc·M₀ + 2^(n−1)) >> n. The float32 cast may round an integer beyond 2^24, but rounding is
    non-decreasing and the clip bounds are float32 numbers, so nothing crosses a bound.

    Each pass is between arrays of one dtype, except the final cast: a float32 · float64 multiply
    would run NumPy's casting loop, several times slower than a cast followed by an in-place
    multiply. (Exact float32 requantisation is impossible: acc·M₀ can need ~51 bits.)
    """
    np.copyto(work, acc)                          # float32 → float64, exact
    work *= m
    if ties:
        work += 0.5
        np.floor(work, out=work)
    else:
        np.rint(work, out=work)
    np.copyto(out, work, casting="same_kind")
    return clip_into(out, lo, hi)                 # in float32: half the bytes of a float64 clip


# Enumerating more accumulators than this per layer (when looking for a float32 multiplier) would
# make building the stages slow; such a layer keeps the float64 requantisation.
FLOAT32_CHECK_LIMIT = 1 << 22


def float32_multiplier(m0, shift, bound, lo, hi, ulps=2):
    """fl32(M), M = M₀·2^(−n), if ``clip(rint(acc·m), lo, hi)`` computed in float32 equals the
    exact ``clip((acc·M₀ + 2^(n−1)) >> n, lo, hi)`` for *every* integer |acc| ≤ ``bound``;
    else None.

    The float32 product acc·m is rounded (acc·M₀ can need ~51 bits), so no error bound proves
    this; enumeration does. Both sides are non-decreasing in acc, so if they agree on a window
    [a₁, a₂] where the exact side is lo at a₁ and hi at a₂ (or a₁ = −B, a₂ = B), they agree below
    it (both lo) and above it (both hi). The window holds about (hi − lo + 2)/M accumulators.
    It fails when some acc·M lies within ~2^(−23)·|acc·M| of a tie k + ½ (a few in ~10⁵ windows
    of the 8-bit nets). A neighbouring float32 moves every product a little — it mostly adds
    errors, but where fl32(M) misses one or two accumulators it may hit them — so the nearest
    ``2·ulps`` neighbours are tried too; the first one that agrees everywhere is returned.
    """
    m0, shift = int(m0), int(shift)
    m = m0 * 2.0 ** -shift
    a1 = max(-bound, math.floor((lo - 1) / m))       # a₁·M ≤ lo − 1: the exact code is lo
    a2 = min(bound, math.ceil((hi + 1) / m))
    if a2 - a1 + 1 > FLOAT32_CHECK_LIMIT:
        return None
    acc = np.arange(a1, a2 + 1, dtype=np.int64)
    want = requantize(acc, m0, shift, 0, lo, hi).astype(np.float32)
    if (a1 > -bound and want[0] != lo) or (a2 < bound and want[-1] != hi):
        return None                                   # not a window (cannot happen; be safe)
    acc = acc.astype(np.float32)                      # |acc| ≤ B < 2^24: exact in float32
    got = np.empty_like(acc)
    for m32 in _float32_neighbours(np.float32(m), ulps):
        np.multiply(acc, m32, out=got)
        np.rint(got, out=got)
        np.clip(got, lo, hi, out=got)
        if np.array_equal(got, want):
            return m32
    return None


def _float32_neighbours(m, ulps):
    """m, then the float32 numbers 1, 1, 2, 2, ... ulps above and below it."""
    yield m
    up = down = m
    for _ in range(ulps):
        up, down = np.nextafter(up, np.float32(np.inf)), np.nextafter(down, np.float32(0))
        yield up
        yield down


def requantize_float32(acc, m, lo, hi, out):
    """Centred codes ``clip(rint(acc·m), lo, hi)`` into ``out``, all in float32 (acc is
    overwritten): exact when m came from :func:`float32_multiplier` for this layer's bound.
    Three passes instead of the float64 route's five, and half the bytes per pass."""
    np.multiply(acc, m, out=acc)
    np.rint(acc, out=acc)
    return clip_into(acc, lo, hi, out)


# At conversion M₀ may move this far, relative, from round(M·2^n) so that a float32 multiplier
# exists (:func:`m0_for_float32`). Every product acc·M that matters (|acc·M| ≤ q_hi − q_lo + 1 ≤
# 256 for 8 bits) then moves by less than 256 · 2^(−18) < 0.001 of a code step, so a code can
# change only where acc·M lies within 0.001 of a rounding boundary. M itself is a product of
# float32 steps, known to about 2^(−23).
M0_FLOAT32_SLACK = 2 ** -18


def m0_for_float32(m0, shift, bound, lo, hi, slack=M0_FLOAT32_SLACK):
    """The M₀' nearest to M₀, within M₀·``slack``, for which :func:`float32_multiplier` finds a
    float32 multiplier (so the layer requantises in three float32 passes instead of five float64
    ones): M₀ itself if it has one, M₀ too if no M₀' does.

    Each float32 m near M is tried (~2^(−23)·M apart, so ~2·2^23·slack of them). The float32
    codes f(acc) = clip(rint(fl32(acc·m)), lo, hi) and the exact e(acc) = clip(⌊(acc·M₀' +
    2^(n−1)) / 2^n⌋, lo, hi) are both non-decreasing in acc, so they agree for every |acc| ≤ B
    exactly when they step up at the same accumulators: for every level k in (lo, hi], the first
    acc_k with f(acc_k) ≥ k must also be the first with e ≥ k. As e(acc) ≥ k ⟺ acc·M₀' ≥ c_k =
    (2k − 1)·2^(n−1), that is two linear conditions on M₀',

        acc_k·M₀' ≥ c_k    and    (acc_k − 1)·M₀' < c_k

    (just B·M₀' < c_k if f never reaches k; just −B·M₀' ≥ c_k if f(−B) ≥ k already), which leave
    an interval of integers. M₀' is also kept within 1.5 float32 steps of m, so that
    :func:`float32_multiplier` (which tries fl32(M₀'·2^(−n)) and its two neighbours each way)
    meets m when the stages are built; it checks the choice again, accumulator by accumulator.
    """
    m0, shift, bound = int(m0), int(shift), int(bound)
    if float32_multiplier(m0, shift, bound, lo, hi) is not None:
        return m0
    m = m0 * 2.0 ** -shift
    a1 = max(-bound, math.floor((lo - 1) / m))       # below a₁ every code is lo, above a₂ hi
    a2 = min(bound, math.ceil((hi + 1) / m))
    if a2 - a1 + 1 > FLOAT32_CHECK_LIMIT:
        return m0
    acc = np.arange(a1, a2 + 1, dtype=np.int64).astype(np.float32)   # exact: |acc| ≤ B < 2^24
    reach = int(m0 * slack)
    best = m0
    m32, last = np.float32(m * (1 - slack)), np.float32(m * (1 + slack))
    while m32 <= last:
        low, high = _near(m32, shift)
        low, high = max(low, m0 - reach, 2 ** (M0_BITS - 1)), min(high, m0 + reach, 2 ** M0_BITS - 1)
        if low <= high:
            low, high = m0_interval(m32, acc, bound, shift, lo, hi, low, high)
            nearest = min(max(m0, low), high)
            if low <= high and (best == m0 or abs(nearest - m0) < abs(best - m0)):
                best = nearest
        m32 = np.nextafter(m32, np.float32(np.inf))
    if best != m0 and float32_multiplier(best, shift, bound, lo, hi) is None:
        return m0                                    # cannot happen; be safe
    return best


def m0_interval(m32, acc, bound, shift, lo, hi, low, high):
    """[low, high] narrowed to the M₀' whose exact codes e equal the float32 codes f of m32 for
    every |acc| ≤ B (see :func:`m0_for_float32`); ``acc`` the window of consecutive accumulators
    (float32) outside which f is lo (below) and hi (above) unless it reaches ∓B. Empty: low > high."""
    f = np.clip(np.rint(acc * m32), lo, hi)
    a1, a2 = int(acc[0]), int(acc[-1])
    if not ((a1 == -bound or f[0] == lo) and (a2 == bound or f[-1] == hi)):
        return 1, 0                                  # not a window for this m
    levels = np.arange(lo + 1, hi + 1)
    for k, i in zip(levels.tolist(), np.searchsorted(f, levels).tolist()):
        c = (2 * k - 1) << (shift - 1)
        if i == len(f):                              # f never reaches k (the window ends at B)
            low, high = _at_least(-bound, 1 - c, low, high)          # B·M₀' < c
            continue
        low, high = _at_least(a1 + i, c, low, high)                  # acc_k·M₀' ≥ c
        if i > 0:                                                    # (acc_k − 1)·M₀' < c
            low, high = _at_least(-(a1 + i - 1), 1 - c, low, high)
        if low > high:
            break
    return low, high


def _near(m32, shift):
    """The integers M₀' with M₀'·2^(−n) within 1.5 float32 steps of m32 (exact in float64)."""
    step = min(m32 - np.nextafter(m32, np.float32(0)), np.nextafter(m32, np.float32(np.inf)) - m32)
    centre, width = float(m32), 1.5 * float(step)
    return math.ceil(math.ldexp(centre - width, shift)), math.floor(math.ldexp(centre + width, shift))


def _at_least(a, c, low, high):
    """[low, high] narrowed to the integers M with a·M ≥ c (empty as low > high)."""
    if a > 0:
        return max(low, -(-c // a)), high            # M ≥ ⌈c / a⌉
    if a < 0:
        return low, min(high, c // a)                # M ≤ ⌊c / a⌋ (dividing by a < 0 flips ≥)
    return (low, high) if c <= 0 else (1, 0)
