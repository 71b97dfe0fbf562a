"""Fake quantisation with a learned step Δ (and offset): the quantisers that training sees.

Forward (integer zero-point form, codes in [q_lo, q_hi], z = 0 except for ``asymmetric``)::

    v     = x / Δ
    code  = clip(round(v) + z, q_lo, q_hi)        the integer that will be stored
    x̂     = Δ · (code − z)                         what the next layer computes with

Backward. ``round`` has zero derivative almost everywhere, so training uses surrogate
gradients, the straight-through estimator (STE) and LSQ / LSQ+:

* ∂x̂/∂x = 1 inside the range (q_lo ≤ v + z ≤ q_hi), 0 where x was clipped (STE);
* ∂x̂/∂Δ = round(v) − v inside, and the clip bound (code − z for symmetric / unsigned grids,
  code for the asymmetric grid, as in LSQ+) outside (LSQ, Esser et al. 2020), times an optional
  gradient scale g = 1/√(N·Q_P) with N the number of values sharing this Δ;
* ∂x̂/∂β = 0 inside, 1 outside (LSQ+, Bhalgat et al. 2020), β the offset (= r_min).

These are exactly the derivatives of the *surrogate* ``Δ·(clip((x − β)/Δ, q_lo', q_hi') + c) + β``
with the rounding residual c = round(v) − v held constant; the tests check the code against
central differences of that surrogate (in float64).

Δ > 0 by construction: the Parameter is ``log_delta`` and Δ = exp(log Δ), so
∂L/∂(log Δ) = Δ · ∂L/∂Δ and an Adam step changes Δ by a *relative* amount of about lr (Δ spans
orders of magnitude between layers, and Adam's step size is in parameter units). Note that Adam
divides by √v̂, so the LSQ gradient scale changes Adam's steps only through ε; we keep it for
SGD and for parity with LSQ.

The offset β (asymmetric grid) is a Parameter ``offset``; the forward pass uses the nearest value
that keeps 0.0 on the grid, β̃ = −Δ·z with z = round(−β/Δ), so the fake-quantised model is
exactly what the integer model computes. The STE passes the gradient of β̃ straight to β.
"""
from __future__ import annotations

import numpy as np

from ..nn import Module, Parameter, WeightTransform
from .functional import check_n_bits, grid_code, grid_value, round_half_even
from .observers import KINDS, ActivationRecorder, integer_bounds, observe


class _StepSizeQuantizer:
    """Shared state and arithmetic of the weight and activation quantizers."""

    def _setup(self, n_bits, kind, narrow_range, grad_scale, channels, learn_delta):
        self.n_bits = check_n_bits(n_bits, type(self).__name__)
        if kind not in KINDS:
            raise ValueError(f"{type(self).__name__}: kind must be one of {KINDS}, got {kind!r}")
        self.kind, self.narrow_range = kind, bool(narrow_range)
        self.q_lo, self.q_hi = integer_bounds(self.n_bits, kind, narrow_range)
        self.grad_scale = bool(grad_scale)
        self.log_delta = Parameter(np.zeros(channels, np.float32), requires_grad=learn_delta)
        self.enabled = True
        self.initialized = False

    # ---- Δ and z ----------------------------------------------------------------------------
    @property
    def delta(self):
        """Δ = exp(log Δ) > 0, shape (channels,)."""
        return np.exp(self.log_delta.data)

    def set_delta(self, delta, r_min=None):
        """Set Δ (and the offset r_min for an asymmetric grid), e.g. from an observer."""
        delta = np.asarray(delta, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(delta)) or np.any(delta <= 0):
            raise ValueError(f"{type(self).__name__}.set_delta: Δ must be positive and finite, "
                             f"got {delta}")
        self.log_delta.data[...] = np.log(delta).astype(self.log_delta.data.dtype)
        if self.kind == "asymmetric":
            if r_min is None:
                raise ValueError(f"{type(self).__name__}.set_delta: an asymmetric grid needs r_min")
            self.offset.data[...] = np.asarray(r_min, np.float32).reshape(-1)
        self.initialized = True

    def zero_point(self):
        """z = clip(round(−β/Δ), q_lo, q_hi) (0 for signed and unsigned grids), int array."""
        if self.kind != "asymmetric":
            return np.zeros(self.log_delta.shape, np.int64)
        return grid_code(-self.offset.data / self.delta, 0, self.q_lo, self.q_hi).astype(np.int64)

    def _values_per_delta(self, x):
        raise NotImplementedError

    # ---- the quantiser ------------------------------------------------------------------------
    def _quantize(self, x, delta, z):
        """codes and x̂ for broadcastable Δ and z; keeps what backward needs."""
        v = x / delta
        shifted = v + z
        inside = (shifted >= self.q_lo) & (shifted <= self.q_hi)
        code = grid_code(v, z, self.q_lo, self.q_hi)
        x_hat = grid_value(code, delta, z)
        self._cache = (v, code, z, inside, delta)
        return x_hat.astype(x.dtype, copy=False)

    def codes(self, x):
        """The integer codes of x (int64), as the integer model stores them."""
        delta, z = self._broadcast(x)
        return grid_code(x / delta, z, self.q_lo, self.q_hi).astype(np.int64)

    def _backward(self, grad_out, reduce_axes):
        v, code, z, inside, delta = self._cache
        grad_x = grad_out * inside
        if self.log_delta.requires_grad:
            # ∂x̂/∂Δ: round(v) − v inside; the clip bound outside
            bound = code if self.kind == "asymmetric" else code - z
            d_delta = np.where(inside, round_half_even(v) - v, bound)
            g = np.sum(grad_out * d_delta, axis=reduce_axes).reshape(self.log_delta.shape)
            if self.grad_scale:
                g = g / np.sqrt(self._values_per_delta(grad_out) * self.q_hi)
            self.log_delta.grad += (g * self.delta).astype(self.log_delta.grad.dtype)
        if self.kind == "asymmetric" and self.offset.requires_grad:
            g_off = np.sum(grad_out * ~inside, axis=reduce_axes).reshape(self.offset.shape)
            self.offset.grad += g_off.astype(self.offset.grad.dtype)
        return grad_x


class WeightQuantizer(_StepSizeQuantizer, WeightTransform):
    """Symmetric signed fake quantisation of a weight, ``Ŵ = Δ·clip(round(W/Δ), −Q_N, Q_P)``
    (§3.2.1), per tensor or per output channel (axis 0), Δ learned as log Δ.

    As a weight transform it composes with others already on the layer: after a pruning mask,
    ``W_eff = quant(W ⊙ m)`` — a pruned weight 0 stays exactly 0 (code 0).
    """

    def __init__(self, n_bits=8, per_channel=False, out_channels=None, narrow_range=True,
                 grad_scale=True, learn_delta=True):
        if per_channel and not (isinstance(out_channels, (int, np.integer)) and out_channels > 0):
            raise ValueError("WeightQuantizer: per_channel=True needs out_channels, a positive int")
        self.per_channel = bool(per_channel)
        self._setup(n_bits, "signed", narrow_range, grad_scale,
                    int(out_channels) if per_channel else 1, learn_delta)

    def _broadcast(self, w):
        if self.per_channel:
            if w.shape[0] != self.log_delta.shape[0]:
                raise ValueError(f"WeightQuantizer: weight has {w.shape[0]} output channels, "
                                 f"the quantizer {self.log_delta.shape[0]}")
            shape = (-1,) + (1,) * (w.ndim - 1)
            return self.delta.reshape(shape).astype(w.dtype), 0
        return self.delta.reshape(()).astype(w.dtype), 0

    def _values_per_delta(self, w):
        return w.size // self.log_delta.data.size

    def observe(self, w, method="minmax"):
        """Set Δ from the (transformed) weight with an observer."""
        delta, _ = observe(w, self.n_bits, "signed", method,
                           axis=0 if self.per_channel else None, narrow_range=self.narrow_range)
        self.set_delta(delta)

    def forward(self, w):
        if not self.enabled:
            return w
        if not self.initialized:
            self.observe(w)
        delta, z = self._broadcast(w)
        return self._quantize(w, delta, z)

    def backward(self, grad_w_eff):
        if not self.enabled:
            return grad_w_eff
        axes = tuple(range(1, grad_w_eff.ndim)) if self.per_channel else None
        return self._backward(grad_w_eff, axes)

    def extra_repr(self):
        return (f"n_bits={self.n_bits}, per_channel={self.per_channel}, "
                f"range=[{self.q_lo}, {self.q_hi}]")


class ActivationQuantizer(_StepSizeQuantizer, Module):
    """Per-tensor fake quantisation of an activation, inserted after a ReLU (``unsigned``,
    codes [0, 2^n − 1]) or on the input (``asymmetric`` with a learned offset if the input can
    be negative, else ``unsigned``).

    Modes: ``observing`` (calibration: record statistics, pass x through unchanged),
    ``enabled`` (quantise; otherwise identity).
    """

    def __init__(self, n_bits=8, kind="unsigned", grad_scale=True, learn_delta=True,
                 learn_offset=True, rng=None):
        self._setup(n_bits, kind, True, grad_scale, 1, learn_delta)
        if kind == "asymmetric":
            self.offset = Parameter(np.zeros(1, np.float32), requires_grad=learn_offset)
        self.observing = False
        self._rng = rng if rng is not None else np.random.default_rng(0)
        self.recorder = None

    def _broadcast(self, x):
        delta = self.delta.reshape(()).astype(x.dtype)
        return delta, self.zero_point().reshape(()).astype(x.dtype)

    def _values_per_delta(self, x):
        # LSQ: the number of features of the layer (per example)
        return x[0].size if x.ndim > 1 else x.size

    def start_observing(self):
        self.observing, self.recorder = True, ActivationRecorder(self._rng)

    def stop_observing(self, method="minmax", **kwargs):
        """End calibration: set Δ (and offset) from what was recorded."""
        values = self.recorder.values()
        delta, r_min = observe(values, self.n_bits, self.kind, method, **kwargs)
        self.set_delta(delta, r_min)
        self.observing, self.recorder = False, None

    def forward(self, x):
        if self.observing:
            self.recorder.record(x)
            self._cache = None
            return x
        if not self.enabled:
            self._cache = None
            return x
        if not self.initialized:
            raise RuntimeError("ActivationQuantizer: Δ is not set; calibrate the model first "
                               "(minicompress.quantize.calibrate) or call set_delta")
        delta, z = self._broadcast(x)
        return self._quantize(x, delta, z)

    def backward(self, grad_out):
        if self._cache is None:
            return grad_out
        return self._backward(grad_out, None)

    def extra_repr(self):
        return f"n_bits={self.n_bits}, kind={self.kind!r}, range=[{self.q_lo}, {self.q_hi}]"


class BiasQuantizer(Module):
    """What the integer model does at the accumulator's scale s = Δ_w Δ_x, emulated after the
    layer in the fake-quantised model (channel axis 1):

    * the bias is stored as int32, ``q_b = round(b / s)``: add ``b̂ − b`` with ``b̂ = s · q_b``;
    * ``snap_output`` (the last layer, whose output is not re-quantised): the integer model's
      logits are s · acc with acc an integer; the float32 sum has a rounding noise ≪ s, which we
      remove with ``y ← s · round(y / s)``. Then two classes whose integer logits tie exactly
      also tie here and ``argmax`` picks the same one.

    Without the bias term the rounding of b shifts some outputs across a rounding boundary of the
    next quantizer (at 2 bits that changed ~1 % of predictions). Backward is the identity (STE:
    ∂b̂/∂b ≈ 1; no gradient to Δ through these small corrections). The layer and quantizers are
    held in a tuple, so they are not children and their Parameters are not counted twice.
    """

    def __init__(self, layer, weight_quantizer, input_quantizer, snap_output=False):
        self._refs = (layer, weight_quantizer, input_quantizer)
        self.snap_output = bool(snap_output)
        self.enabled = True

    def accumulator_scale(self):
        """s = Δ_w Δ_x, shape (O,) (per-tensor Δ_w broadcast)."""
        layer, wq, aq = self._refs
        s = (wq.delta.astype(np.float64) * np.float64(aq.delta[0])).astype(np.float32)
        return np.broadcast_to(s, (layer.weight.shape[0],))

    def active(self):
        layer, wq, aq = self._refs
        return (self.enabled and wq.enabled and wq.initialized and aq.enabled and aq.initialized
                and not aq.observing)

    def forward(self, y):
        if not self.active():
            return y
        shape = (1, -1) + (1,) * (y.ndim - 2)
        s = self.accumulator_scale().astype(y.dtype).reshape(shape)
        bias = self._refs[0].bias
        if bias is not None:
            b = bias.data.astype(y.dtype).reshape(shape)
            y = y + (s * round_half_even(b / s) - b)
        if self.snap_output:
            y = s * round_half_even(y / s)
        return y

    def backward(self, grad_out):
        return grad_out
