"""Observers: choosing the initial step Δ (and offset) from data, before or instead of learning it.

All of them pick a clipping range and divide it by the number of integer steps:

* ``minmax``     — the document's own rule (§3.2.1 steps 1–2, §3.2.2 steps 1–2): Δ = r_max/Q_P
                   (signed / unsigned) or Δ = (r_max − r_min)/(2^n − 1) (asymmetric).
* ``percentile`` — r_max replaced by a high percentile of |x| (or of x), so one outlier does
                   not stretch the grid for everyone.
* ``mse``        — the clip range α·r_max (α on a grid in (0, 1]) that minimises ⟨(x − x̂)²⟩.
* ``lsq``        — LSQ's initialisation (Esser et al. 2020): Δ = 2⟨|x|⟩ / √Q_P.

Three kinds of integer grid are used (``kind``):

* ``"signed"``     symmetric, codes [−Q_N, Q_P] (weights; zero point 0);
* ``"unsigned"``   codes [0, 2^n − 1], r_min = 0 (activations after a ReLU);
* ``"asymmetric"`` codes [0, 2^n − 1] with an offset r_min (an input that can be negative).

Every function returns ``(Δ, r_min)``: Δ float32 broadcastable against x, r_min float32 for
``asymmetric`` and ``None`` otherwise. A zero range (constant tensor) gives Δ = 1, never a
division by zero.
"""
from __future__ import annotations

import numpy as np

from .functional import (_reduce_axes, check_finite_tensor, check_n_bits, grid_code, grid_value,
                         step_size)

KINDS = ("signed", "unsigned", "asymmetric")
METHODS = ("minmax", "percentile", "mse", "lsq")


def integer_bounds(n_bits, kind, narrow_range=True):
    """(q_lo, q_hi) of the grid. ``narrow_range`` keeps signed grids symmetric (±(2^(n−1)−1),
    the document's choice); ``False`` uses the full two's-complement range [−2^(n−1), 2^(n−1)−1]
    (at 2 bits: {−2, −1, 0, 1} instead of the ternary {−1, 0, 1})."""
    n = check_n_bits(n_bits, "integer_bounds")
    if kind not in KINDS:
        raise ValueError(f"integer_bounds: kind must be one of {KINDS}, got {kind!r}")
    if kind == "signed":
        return (-(2 ** (n - 1) - 1) if narrow_range else -(2 ** (n - 1))), 2 ** (n - 1) - 1
    return 0, 2 ** n - 1


def _ranges(x, kind, axes, percentile=None):
    """(r_lo, r_hi) per channel: exact extremes, or percentiles of them."""
    if kind == "signed":
        a = np.abs(x)
        r = np.max(a, axis=axes, keepdims=True) if percentile is None else np.percentile(
            a, percentile, axis=axes, keepdims=True)
        return -r, r
    if kind == "unsigned":
        hi = np.max(x, axis=axes, keepdims=True) if percentile is None else np.percentile(
            x, percentile, axis=axes, keepdims=True)
        return np.zeros_like(hi), np.maximum(hi, 0)
    if percentile is None:
        lo, hi = np.min(x, axis=axes, keepdims=True), np.max(x, axis=axes, keepdims=True)
    else:
        lo = np.percentile(x, 100 - percentile, axis=axes, keepdims=True)
        hi = np.percentile(x, percentile, axis=axes, keepdims=True)
    # the integer zero-point form needs 0.0 inside [r_min, r_max]
    return np.minimum(lo, 0), np.maximum(hi, 0)


def _delta_from_range(r_lo, r_hi, n_bits, kind, narrow_range):
    q_lo, q_hi = integer_bounds(n_bits, kind, narrow_range)
    if kind == "asymmetric":
        return step_size(r_lo, r_hi, q_lo, q_hi), r_lo.astype(np.float32)
    # symmetric and unsigned grids: Δ = r_max / Q_P (the positive half of a signed grid)
    return step_size(0, r_hi, 0, q_hi), None


def minmax_observer(x, n_bits, kind="signed", axis=None, narrow_range=True):
    """The document's Δ: r_max / Q_P, or (r_max − r_min)/(2^n − 1)."""
    x = check_finite_tensor(x, "minmax_observer")
    lo, hi = _ranges(x.astype(np.float32), kind, _reduce_axes(x, axis))
    return _delta_from_range(lo, hi, n_bits, kind, narrow_range)


def percentile_observer(x, n_bits, kind="signed", axis=None, percentile=99.99, narrow_range=True):
    """Like min–max, with r_max (and r_min) replaced by the given percentile."""
    x = check_finite_tensor(x, "percentile_observer")
    if not 50 < percentile <= 100:
        raise ValueError(f"percentile_observer: percentile must be in (50, 100], got {percentile!r}")
    lo, hi = _ranges(x.astype(np.float32), kind, _reduce_axes(x, axis), percentile)
    return _delta_from_range(lo, hi, n_bits, kind, narrow_range)


def fake_quantize(x, delta, n_bits, kind="signed", r_min=None, narrow_range=True):
    """x̂ for a given Δ (and r_min): Δ·clip(round(x/Δ) + z, q_lo, q_hi) − Δz, z = round(−r_min/Δ)."""
    q_lo, q_hi = integer_bounds(n_bits, kind, narrow_range)
    z = 0 if r_min is None else grid_code(-r_min / delta, 0, q_lo, q_hi)
    return grid_value(grid_code(x / delta, z, q_lo, q_hi), delta, z)


def mse_observer(x, n_bits, kind="signed", axis=None, narrow_range=True, grid=80):
    """Search the clip range α·[r_min, r_max], α ∈ (0, 1], for the least ⟨(x − x̂)²⟩.

    One pass over the tensor per candidate α (``grid`` of them); per-channel picks the best α
    for each channel separately.
    """
    x = check_finite_tensor(x, "mse_observer").astype(np.float32)
    axes = _reduce_axes(x, axis)
    lo, hi = _ranges(x, kind, axes)
    best_err, best = None, None
    for alpha in np.linspace(1.0 / grid, 1.0, grid, dtype=np.float32):
        delta, r_min = _delta_from_range(alpha * lo, alpha * hi, n_bits, kind, narrow_range)
        err = np.mean((x - fake_quantize(x, delta, n_bits, kind, r_min, narrow_range)) ** 2,
                      axis=axes, keepdims=True)
        if best_err is None:
            best_err, best = err, (delta, r_min)
            continue
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best = (np.where(better, delta, best[0]).astype(np.float32),
                None if r_min is None else np.where(better, r_min, best[1]).astype(np.float32))
    return best


def lsq_observer(x, n_bits, kind="signed", axis=None, narrow_range=True):
    """LSQ initial step: Δ = 2⟨|x|⟩ / √Q_P (Esser et al. 2020). For ``asymmetric`` the offset
    is the observed minimum and ⟨|x − r_min|⟩ is used."""
    x = check_finite_tensor(x, "lsq_observer").astype(np.float32)
    axes = _reduce_axes(x, axis)
    _, q_p = integer_bounds(n_bits, kind, narrow_range)
    r_min = None
    if kind == "asymmetric":
        r_min = np.minimum(np.min(x, axis=axes, keepdims=True), 0).astype(np.float32)
        x = x - r_min
    # LSQ's Δ is not a range over a number of steps; step_size only guards Δ = 0 (an all-zero x)
    delta = step_size(0, 2 * np.mean(np.abs(x), axis=axes, keepdims=True) / np.sqrt(q_p), 0, 1)
    return delta, r_min


OBSERVERS = {"minmax": minmax_observer, "percentile": percentile_observer,
             "mse": mse_observer, "lsq": lsq_observer}


def observe(x, n_bits, kind="signed", method="minmax", axis=None, narrow_range=True, **kwargs):
    """Dispatch to one of :data:`METHODS`; returns (Δ, r_min)."""
    if method not in OBSERVERS:
        raise ValueError(f"observe: method must be one of {METHODS}, got {method!r}")
    return OBSERVERS[method](x, n_bits, kind, axis=axis, narrow_range=narrow_range, **kwargs)


class ActivationRecorder:
    """Collects what an activation quantizer sees over a few calibration batches: the exact
    minimum and maximum, and a random subsample (at most ``max_samples`` values) for the
    percentile / MSE / LSQ observers, so calibration memory stays small."""

    def __init__(self, rng, max_samples=200_000):
        self.rng, self.max_samples = rng, max_samples
        self.samples, self.lo, self.hi = [], np.inf, -np.inf

    def record(self, x):
        check_finite_tensor(x, "calibration", "activation")
        flat = x.reshape(-1)
        self.lo, self.hi = min(self.lo, float(flat.min())), max(self.hi, float(flat.max()))
        take = min(flat.size, self.max_samples // 4)
        self.samples.append(flat[self.rng.choice(flat.size, take, replace=False)]
                            if take < flat.size else flat.copy())

    def values(self):
        """The subsample, with the exact extremes included (min–max must see them)."""
        if not self.samples:
            raise RuntimeError("calibration: this quantizer saw no data")
        s = np.concatenate(self.samples)
        if s.size > self.max_samples:
            s = s[self.rng.choice(s.size, self.max_samples, replace=False)]
        return np.concatenate([s, np.array([self.lo, self.hi], dtype=s.dtype)])
