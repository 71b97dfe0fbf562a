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
  :func:`float32_multiplier` has *proved* exact for every accumulator, by comparing both sides
  where the float32 codes step up (:func:`agreeing_m0`); :func:`m0_for_float32` picks, at
  conversion, an M₀ for which such an m exists.
"""

import numpy as np

from ..nn.checks import real_array

M0_BITS = 27


def quantize_multiplier(m, bits=M0_BITS):
    """``M = 2^(−n) · M₀`` with M₀ ∈ [2^(b−1), 2^b) an integer: returns (M₀, n) as int64 arrays.

    ``M`` (positive, any shape): frexp writes M = f · 2^e with f ∈ [0.5, 1); M₀ = round(f · 2^b),
    n = b − e. Relative error of M₀·2^(−n) ≤ 2^(−b). Jacob et al. use b = 31 (an int32 M₀);
    we use b = 27 so that acc·M₀ < 2^24 · 2^27 = 2^51 is also exact in float64 (fast path below).
    """
    m = real_array(m, "quantize_multiplier: M", np.float64)
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


# The clip ufunc itself, without np.clip's Python wrapper (argument checks and dispatch, ~1.5 µs
# a call): np.clip computes with exactly this ufunc. It is not public; if a NumPy moves it,
# np.clip is used instead (the same values, a little slower).
try:
    from numpy._core.umath import clip as _clip_ufunc                 # NumPy 2
except ImportError:                                                    # pragma: no cover
    try:
        from numpy.core.umath import clip as _clip_ufunc              # NumPy 1.17 – 1.26
    except ImportError:
        _clip_ufunc = np.clip


def clip_into(a, lo, hi, out=None):
    """``out ← clip(a, lo, hi)`` (in place when ``out`` is None), in one call to the clip ufunc:
    measured here 0.8 against np.clip's 2.1 µs for 300 elements, 34 against 40 µs for 200,704.
    NaN stays NaN, as with np.clip."""
    return _clip_ufunc(a, lo, hi, out=a if out is None else out)


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
    multiply. (In float32 the product acc·M is rounded — acc·M₀ can need ~51 bits — so it is
    exact only where :func:`float32_multiplier` shows it is.)
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


def float32_multiplier(m0, shift, bound, lo, hi, ulps=2):
    """A float32 m — fl32(M), M = M₀·2^(−n), or one of its neighbours up to ``ulps`` steps away —
    for which ``clip(rint(acc·m), lo, hi)`` computed in float32 equals the exact
    ``clip((acc·M₀ + 2^(n−1)) >> n, lo, hi)`` for *every* integer |acc| ≤ ``bound``; else None.

    The float32 product acc·m is rounded (acc·M₀ can need ~51 bits), so no error bound proves
    this; :func:`agreeing_m0` checks it, exactly, at the accumulators where the codes step up.
    It fails when some acc·M lies within ~2^(−23)·|acc·M| of a tie k + ½ (a few in ~10⁵ of the
    accumulators of the 8-bit nets where the code changes). A neighbouring float32 moves every
    product a little — it mostly adds errors, but where fl32(M) misses one or two accumulators
    it may hit them — so the nearest ``2·ulps`` neighbours are tried too; the first one that
    agrees everywhere is returned.
    """
    for m32 in _float32_neighbours(np.float32(int(m0) * 2.0 ** -int(shift)), ulps):
        if agreeing_m0(m32, [m0], bound, shift, lo, hi)[0]:
            return m32
    return None


def agreeing_m0(m32, candidates, bound, shift, lo, hi):
    """Which ``candidates`` M₀' (int64 array) give, for every integer |acc| ≤ B, exactly the
    float32 codes of m32: e(acc) = clip(⌊(acc·M₀' + 2^(n−1)) / 2^n⌋, lo, hi) equal to
    f(acc) = clip(rint(fl32(acc·m32)), lo, hi). A boolean array like ``candidates``.

    Both are non-decreasing step functions of acc, so they agree everywhere once they agree at
    both sides of every step of f and at the ends −B and B: between two neighbouring such points
    f is constant, and e, equal to it at both, cannot move. f has at most hi − lo steps
    (:func:`code_steps`), and e is computed exactly, in int64, at those ≤ 2(hi − lo) + 2 points
    only (|acc·M₀'| < 2^24·2^27) — not at the ~(hi − lo)/M accumulators between them.
    """
    steps = code_steps(m32, bound, lo, hi)
    points = np.unique(np.concatenate([[-bound, bound], steps, steps - 1]))
    want = np.clip(np.rint(points.astype(np.float32) * m32), lo, hi)   # exact: |acc| < 2^24
    got = requantize(points[None, :], np.asarray(candidates, np.int64)[:, None], shift, 0, lo, hi)
    return np.all(got == want, axis=1)


def code_steps(m32, bound, lo, hi):
    """The accumulators −B < acc ≤ B where f(acc) = clip(rint(fl32(acc·m32)), lo, hi) steps up,
    f(acc) > f(acc − 1): for each code k in (lo, hi] that f reaches after −B, the first acc with
    f(acc) ≥ k (int64, sorted; several codes may share one).

    Exactly, acc·m32 ≥ k − ½ from acc = ⌈(k − ½)/m32⌉ on; the float32 product differs from the
    exact one by less than 2^(−24)·|acc·m32|, about 2^(−24)·|k| there, far less than one
    accumulator's worth, so f's first acc is that one or a neighbour, and it is found by stepping
    from there while f says so (f is non-decreasing because m32 ≥ 0).
    """
    if not (np.isfinite(m32) and m32 >= 0):
        raise ValueError(f"code_steps: m32 must be a finite float32 ≥ 0, got {m32}")
    if m32 == 0:                                     # M₀ = 0 (allowed in a file): f = clip(0)
        return np.empty(0, np.int64)
    k = np.arange(lo + 1, hi + 1)

    def reaches(acc):                                # f(acc) ≥ k, and "yes" past B
        inside = np.clip(acc, -bound, bound).astype(np.float32)
        return (acc > bound) | (np.clip(np.rint(inside * m32), lo, hi) >= k)

    first = np.clip(np.ceil((k - 0.5) / float(m32)), -bound, bound + 1).astype(np.int64)
    while True:
        up = ~reaches(first)
        down = (first > -bound) & reaches(first - 1)
        if not (up.any() or down.any()):
            return np.unique(first[(first > -bound) & (first <= bound)])
        first += up.astype(np.int64) - down


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


def m0_for_float32(m0, shift, bound, lo, hi, slack=M0_FLOAT32_SLACK, ulps=2):
    """The M₀' nearest to M₀ (the lower on a tie), among the integers in [2^26, 2^27) within
    M₀·``slack`` of it, for which :func:`float32_multiplier` finds a float32 multiplier (so the
    layer requantises in three float32 passes instead of five float64 ones): M₀ itself if it has
    one, None if no M₀' does.

    ``float32_multiplier(M₀')`` tries the float32 numbers m within ``ulps`` steps of
    fl32(M₀'·2^(−n)). So each float32 m in reach is tried once, with :func:`agreeing_m0`, on the
    M₀' that would try it; m's are taken outwards from fl32(M), and one whose M₀' are all
    farther than the best found so far is skipped. (When the stages are built,
    ``float32_multiplier`` checks the stored M₀ again; a layer it fails stays exact, in float64.)
    """
    m0, shift, bound = int(m0), int(shift), int(bound)
    if float32_multiplier(m0, shift, bound, lo, hi, ulps) is not None:
        return m0
    reach = int(m0 * slack)
    candidates = np.arange(max(m0 - reach, 2 ** (M0_BITS - 1)), min(m0 + reach, 2 ** M0_BITS - 1) + 1)
    if candidates.size == 0:
        return None
    tried = _float32_bits(candidates * 2.0 ** -shift)  # fl32(M₀'·2^(−n)) of each, as ordered ints
    start = int(_float32_bits(m0 * 2.0 ** -shift))
    best = None
    for step in range(max(start - int(tried[0]), int(tried[-1]) - start) + ulps + 1):
        for bits in {start - step, start + step}:
            near = candidates[np.abs(tried - bits) <= ulps]
            if near.size == 0 or (best is not None and np.abs(near - m0).min() > abs(best - m0)):
                continue
            m32 = np.array([bits], np.int32).view(np.float32)[0]
            for c in near[agreeing_m0(m32, near, bound, shift, lo, hi)].tolist():
                if best is None or (abs(c - m0), c) < (abs(best - m0), best):
                    best = c
    return best


def _float32_bits(x):
    """The float32 numbers nearest to x (≥ 0) as int64s in the same order as the numbers."""
    return np.asarray(np.asarray(x, np.float64).astype(np.float32).view(np.int32), np.int64)
