"""The document's quantisation equations (§3.2), one function each, in its symbols.

Symmetric quantisation — 对称量化, §3.2.1 (signed integers in [−(2^(n−1)−1), 2^(n−1)−1])::

    r_max = max |x|
    Δ     = r_max / (2^(n−1) − 1)
    q(x)  = round(x / Δ)               (the document stops here; we also clip, see below)
    x̂     = Δ · q

Asymmetric quantisation — 非对称量化, §3.2.2 (unsigned integers in [0, 2^n − 1])::

    Δ     = (r_max − r_min) / (2^n − 1)
    q(x)  = round((x − r_min) / Δ)
    x̂     = Δ · q + r_min

Integer zero-point form (Jacob et al. 2018), what integer inference needs::

    z = round(−r_min / Δ),   q = clip(round(x / Δ) + z, 0, 2^n − 1),   x̂ = Δ · (q − z)

The two asymmetric forms differ because ``r_min`` is real-valued: with the document's form the
real number 0.0 maps to ``round(−r_min/Δ)`` and back to ``Δ·round(−r_min/Δ) + r_min``, which is
*not* 0 in general. Zero padding, ReLU outputs and pruned weights are exact zeros, so integer
inference shifts the grid by up to Δ/2 to make 0.0 a grid point: that is the integer zero point z.

Clipping. With Δ computed from r_max, ``round(x/Δ)`` never leaves the range, so the document's
``q(x) = round(x/Δ)`` needs no clip. Once Δ is *learned* (steps 4–5) and becomes smaller than
r_max/(2^(n−1)−1), the largest |x| round to codes that do not fit in n bits: clipping is then part
of the quantiser, and ``clip=False`` exists only to show that.

Rounding is :func:`round_half_even` (``np.rint``, half to even, like ``torch.round``); 四舍五入
(half away from zero) differs only on exact .5 ties. It is the one rounding of the package: the
fake quantizers, the observers and the integer model's conversion all round through
:func:`grid_code` and :func:`round_half_even`, so changing it here changes it everywhere.

Every grid of the package is ``x̂ = Δ · (q − z)`` with integer codes q ∈ [q_lo, q_hi]:

    q  = clip(round(x / Δ) + z, q_lo, q_hi)       (grid_code, of v = x / Δ)
    x̂  = Δ · (q − z)                              (grid_value)

the symmetric grid being z = 0, [q_lo, q_hi] = [−(2^(n−1)−1), 2^(n−1)−1], the unsigned one
z = 0, [0, 2^n − 1], the asymmetric one z = round(−r_min/Δ), [0, 2^n − 1].

Per-tensor (``axis=None``) or per-channel (``axis=k``: one Δ per index along axis k, e.g. axis 0
of a weight (out, in) or (out, in, kh, kw)). Δ is returned with the shape that broadcasts
against x (keepdims), as float32.
"""
from __future__ import annotations

import numpy as np

MIN_BITS, MAX_BITS = 2, 16


# ---- argument checks -----------------------------------------------------------------------
def check_n_bits(n_bits, where="quantize"):
    """n_bits must be an integer in [2, 16]."""
    if isinstance(n_bits, bool) or not isinstance(n_bits, (int, np.integer)) or not (
            MIN_BITS <= n_bits <= MAX_BITS):
        raise ValueError(f"{where}: n_bits must be an integer in [{MIN_BITS}, {MAX_BITS}], "
                         f"got {n_bits!r}")
    return int(n_bits)


def check_finite_tensor(x, where="quantize", name="x"):
    """A tensor to quantise must be finite: r_max of a tensor holding inf or NaN is meaningless."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.number):
        raise TypeError(f"{where}: {name} must be a numeric array, got dtype {x.dtype}")
    if x.size == 0:
        raise ValueError(f"{where}: {name} is empty")
    if not np.all(np.isfinite(x)):
        bad = int(np.sum(~np.isfinite(x)))
        raise ValueError(f"{where}: {name} contains {bad} NaN/inf value(s); cannot quantise it")
    return x


def _reduce_axes(x, axis):
    if axis is None:
        return None
    if not isinstance(axis, (int, np.integer)) or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis must be None (per-tensor) or an int in [{-x.ndim}, {x.ndim - 1}] "
                         f"for an array of shape {x.shape}, got {axis!r}")
    axis = int(axis) % x.ndim
    return tuple(i for i in range(x.ndim) if i != axis)


def _check_delta(delta, where):
    delta = np.asarray(delta, dtype=np.float32)
    if not np.all(np.isfinite(delta)) or np.any(delta <= 0):
        raise ValueError(f"{where}: delta (Δ) must be positive and finite, got {delta}")
    return delta


# ---- the grid: rounding, codes, values, step size ------------------------------------------
def round_half_even(v):
    """round(v) of the document: the nearest integer, exact .5 ties to the even one (``np.rint``)."""
    return np.rint(v)


def grid_code(v, z, q_lo, q_hi):
    """``q = clip(round(v) + z, q_lo, q_hi)`` for ``v = x / Δ``: the integer code of x, as a
    float array (the caller picks the integer dtype)."""
    return np.clip(round_half_even(v) + z, q_lo, q_hi)


def grid_value(q, delta, z):
    """``x̂ = Δ · (q − z)`` in the dtype of Δ and q (no cast: training may run in float64)."""
    return delta * (q - z)


def step_size(r_lo, r_hi, q_lo, q_hi):
    """``Δ = (r_hi − r_lo) / (q_hi − q_lo)``, float32; Δ = 1 where the range is empty (r_hi = r_lo),
    since any Δ > 0 then quantises the constant exactly. Symmetric: r_lo = 0, q_lo = 0 gives the
    document's Δ = r_max / (2^(n−1) − 1); asymmetric: Δ = (r_max − r_min) / (2^n − 1)."""
    delta = (np.asarray(r_hi) - r_lo) / (q_hi - q_lo)
    ok = (delta > 0) & np.isfinite(delta)
    return np.where(ok, delta, 1.0).astype(np.float32)


# ---- integer ranges --------------------------------------------------------------------------
def symmetric_range(n_bits):
    """(q_min, q_max) = (−(2^(n−1)−1), 2^(n−1)−1): the document's symmetric range, e.g. ±127."""
    n = check_n_bits(n_bits, "symmetric_range")
    return -(2 ** (n - 1) - 1), 2 ** (n - 1) - 1


def unsigned_range(n_bits):
    """(0, 2^n − 1), e.g. [0, 255]."""
    n = check_n_bits(n_bits, "unsigned_range")
    return 0, 2 ** n - 1


# ---- §3.2.1 symmetric --------------------------------------------------------------------------
def symmetric_delta(x, n_bits, axis=None):
    """Steps 1–2: ``Δ = r_max / (2^(n−1) − 1)`` with ``r_max = max|x|``.

    An all-zero tensor has r_max = 0; any Δ > 0 then gives q = 0 exactly, and we return Δ = 1
    rather than divide by zero.
    """
    x = check_finite_tensor(x, "symmetric_delta")
    _, q_max = symmetric_range(n_bits)
    r_max = np.max(np.abs(x), axis=_reduce_axes(x, axis), keepdims=True).astype(np.float32)
    return step_size(0, r_max, 0, q_max)


def symmetric_quantize(x, n_bits, delta=None, axis=None, clip=True):
    """Step 3: ``q = round(x / Δ)``, clipped to [−(2^(n−1)−1), 2^(n−1)−1]. Returns (q, Δ).

    q is int32 with the shape of x; Δ broadcasts against x. ``delta=None`` computes Δ by
    :func:`symmetric_delta`; a given Δ (learned, say) must be > 0. ``clip=False`` returns the
    document's unclipped ``round(x/Δ)`` — out of range once Δ is smaller than r_max/(2^(n−1)−1).
    """
    x = check_finite_tensor(x, "symmetric_quantize")
    n_bits = check_n_bits(n_bits, "symmetric_quantize")
    delta = symmetric_delta(x, n_bits, axis) if delta is None else _check_delta(
        delta, "symmetric_quantize")
    q = grid_code(x / delta, 0, *symmetric_range(n_bits)) if clip else round_half_even(x / delta)
    return q.astype(np.int32 if clip else np.int64), delta


def symmetric_dequantize(q, delta):
    """``x̂ = Δ · q`` (float32)."""
    return grid_value(np.asarray(q, np.float32), np.asarray(delta, np.float32), 0).astype(np.float32)


# ---- §3.2.2 asymmetric -------------------------------------------------------------------------
def asymmetric_params(x, n_bits, axis=None):
    """Steps 1–2: ``r_min = min x``, ``Δ = (r_max − r_min) / (2^n − 1)``; returns (Δ, r_min).

    A constant tensor (r_max = r_min) would give Δ = 0. Any Δ > 0 then quantises every element
    to q = 0 and dequantises it exactly to r_min, so we return Δ = 1 instead of dividing by zero.
    """
    x = check_finite_tensor(x, "asymmetric_params")
    _, q_max = unsigned_range(n_bits)
    axes = _reduce_axes(x, axis)
    r_min = np.min(x, axis=axes, keepdims=True).astype(np.float32)
    r_max = np.max(x, axis=axes, keepdims=True).astype(np.float32)
    return step_size(r_min, r_max, 0, q_max), r_min


def asymmetric_quantize(x, n_bits, delta=None, r_min=None, axis=None, clip=True):
    """Step 3: ``q = round((x − r_min) / Δ)`` in [0, 2^n − 1]. Returns (q, Δ, r_min).

    Δ and r_min default to :func:`asymmetric_params`; pass both (learned values) or neither.
    """
    x = check_finite_tensor(x, "asymmetric_quantize")
    n_bits = check_n_bits(n_bits, "asymmetric_quantize")
    if (delta is None) != (r_min is None):
        raise ValueError("asymmetric_quantize: give both delta and r_min, or neither")
    if delta is None:
        delta, r_min = asymmetric_params(x, n_bits, axis)
    else:
        delta = _check_delta(delta, "asymmetric_quantize")
        r_min = check_finite_tensor(np.asarray(r_min, np.float32), "asymmetric_quantize", "r_min")
    v = (x - r_min) / delta
    q = grid_code(v, 0, *unsigned_range(n_bits)) if clip else round_half_even(v)
    return q.astype(np.int32 if clip else np.int64), delta, r_min


def asymmetric_dequantize(q, delta, r_min):
    """``x̂ = Δ · q + r_min`` (float32)."""
    return (np.asarray(q, np.float32) * np.asarray(delta, np.float32)
            + np.asarray(r_min, np.float32)).astype(np.float32)


# ---- integer zero-point form -------------------------------------------------------------------
def zero_point(delta, r_min, n_bits):
    """``z = round(−r_min / Δ)``, kept inside [0, 2^n − 1] so that 0.0 is a grid point.

    (If r_min > 0 the range does not contain 0; clipping z to 0 extends the range down to 0,
    which integer inference needs anyway for zero padding.)
    """
    delta = _check_delta(delta, "zero_point")
    return grid_code(-np.asarray(r_min, np.float32) / delta, 0, *unsigned_range(n_bits)).astype(np.int32)


def affine_quantize(x, n_bits, delta, z):
    """``q = clip(round(x / Δ) + z, 0, 2^n − 1)`` (integer zero-point form); returns int32 q."""
    x = check_finite_tensor(x, "affine_quantize")
    delta = _check_delta(delta, "affine_quantize")
    return grid_code(x / delta, np.asarray(z), *unsigned_range(n_bits)).astype(np.int32)


def affine_dequantize(q, delta, z):
    """``x̂ = Δ · (q − z)``: the real number 0.0 is exactly the code z."""
    return grid_value(np.asarray(q, np.float32), np.asarray(delta, np.float32),
                      np.asarray(z, np.float32)).astype(np.float32)


def quantization_mse(x, x_hat):
    """Mean squared quantisation error ⟨(x − x̂)²⟩."""
    return float(np.mean((np.asarray(x, np.float64) - np.asarray(x_hat, np.float64)) ** 2))
