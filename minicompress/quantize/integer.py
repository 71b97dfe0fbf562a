"""The integer model: n-bit weights stored packed, integer-only inference (Jacob et al. 2018).

A fake-quantised layer computes, in real numbers (Δ_x, z_x the input grid, Δ_w the weight step,
Δ_y, z_y the grid of the activation quantizer that follows)::

    y = Σ_k (Δ_w q_w[k]) · (Δ_x (q_x[k] − z_x)) + b
    q_y = clip(round(y / Δ_y) + z_y, q_lo, q_hi)

Everything real can be pulled out of the sum, leaving integers only::

    acc = Σ_k q_w[k] · (q_x[k] − z_x) + q_b,     q_b = round(b / (Δ_w Δ_x))   (int32)
    q_y = clip(((acc · M₀ + 2^(n−1)) >> n) + z_y, q_lo, q_hi),   M = Δ_w Δ_x / Δ_y = 2^(−n) · M₀

with M₀ an integer in [2^26, 2^27): the requantisation is one integer multiply, one add and
one shift (round half up). (Jacob et al. use a 31-bit M₀; 27 bits keep acc·M₀ below 2^51, so the
same integers can also be computed exactly with float64 hardware, which NumPy does faster than
int64 — see :func:`requantize_exact_float`. M's relative precision is still 2^(−27).)
The last layer returns real logits Δ_w Δ_x · acc instead.

ReLU on codes is ``max(q, z_y)`` (z_y is the code of 0.0) — after a layer it is fused into the
requantisation's clip (lower bound z_y) — and max-pooling codes is exact, because quantisation
is monotone.

Fast path. NumPy has no int8 matrix product, but a float32 product of integers is *exact* as
long as every partial sum stays below 2^24 in magnitude (float32 has a 24-bit significand).
Whatever order BLAS adds in, each partial sum is bounded by

    B = max_o Σ_k |q_w[o, k]| · max |q_x − z_x|  +  max |q_b|,

which we compute per layer at conversion. B < 2^24: float32 BLAS (exact). Otherwise float64 BLAS,
exact below 2^53 (and we require B < 2^31, the int32 accumulator, or refuse to convert).
``gemm="int64"`` forces NumPy's (slow, non-BLAS) integer product, to test that the fast path
gives bit-identical results.

Two ways through the steps. ``IntegerModel.forward_steps`` runs each step's ``run`` on integer
codes, one after another: the reference, written for reading. ``IntegerModel.forward`` computes
the same integers, bit for bit, in fused stages built once per input shape (float32 centred codes
between layers, weights stored once in the layout BLAS is fastest with, a three-pass float32
requantisation where a check at every step of the codes proves it exact (:func:`float32_multiplier`;
``convert`` picks M₀ so that it is, :func:`m0_for_float32`) and a five-pass float64 one otherwise
(:func:`requantize_centred`), max-pooling before
requantising, convolutions a few images at a time, banded where the float Conv2d is); see
``integer_stages.py``. The steps themselves are in ``integer_steps.py``; this file holds the
model (storage, the two forward paths) and ``convert``.

Storage (``to_arrays``): weights bit-packed (int8: one per byte; int4: two; int2: four), int32
biases, float32 steps, int32 M₀ / n (one value when per-tensor), int64 zero points — plain
numeric and string arrays, saved with
``allow_pickle=False``.
"""
from __future__ import annotations

import math

import numpy as np

from ..nn import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential
from .fake import ActivationQuantizer, BiasQuantizer, WeightQuantizer
from .fixed_point import m0_for_float32, quantize_multiplier
from .integer_stages import fast_stages
from .integer_steps import (INT32_LIMIT, STEP_TYPES, IntFlatten, IntLayer, IntMaxPool, IntReLU,
                            QuantizeInput, sample_shape_problem, step_shape)
from .prepare import weight_before_quantizer

FORMAT = "minicompress.IntegerModel/1"
PREDICT_ELEMENTS = 2 ** 24
# Inputs up to this many elements (a batch of 5 Fashion-MNIST images) are checked with one dot
# product instead of a min and a max (see IntegerModel._checked_input): at batch 1 (784 floats)
# 1.2 µs against 4.0, plus 0.8 µs for the clip it then always does (measured here).
SMALL_INPUT = 4096
_SCALE = np.full(SMALL_INPUT, 2.0 ** -13, np.float32)              # SMALL_INPUT ≤ 2^12
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _finite_small(x):
    """Whether every element of the small float32 array x is finite, in one BLAS call:
    s = Σ x·2^(−13) is NaN or ±inf if one element is (inf·2^(−13) is inf, NaN stays NaN), and
    finite otherwise — it cannot overflow, since |s| ≤ SMALL_INPUT · max|x| · 2^(−13) is at
    most half the largest float32. (Σ 0·x would not overflow either, but 0·inf raises
    NumPy's "invalid value" warning; x·x overflows for finite |x| > 2^64.)"""
    flat = x.reshape(-1)
    return math.isfinite(np.dot(flat, _SCALE[:flat.size]))


class IntegerModel:
    """A list of integer steps; ``forward(x_float32) -> logits`` quantises the input itself."""

    def __init__(self, steps, float_bytes=None, input=None):
        if not steps or not isinstance(steps[0], QuantizeInput):
            raise ValueError("IntegerModel: the first step must quantise the input")
        self.steps = list(steps)
        self.float_bytes = float_bytes
        # what the model expects: {"shape": per-sample shape, "mean": m, "std": s} — inputs are
        # images in [0, 1] standardised as (x − m) / s (see :meth:`standardize`); None if unknown
        self.input = input
        self._stages = {}               # per-sample input shape → fused stages (fast_stages)
        self._stages_of = None                           # the steps they were built from

    def standardize(self, x):
        """Raw images in [0, 1] → the model's input ``(x − m) / s`` in float32 (m, s float32),
        exactly as ``data.normalize`` did for the training data."""
        if self.input is None:
            raise ValueError("IntegerModel.standardize: this model does not record its input "
                             "standardisation (set .input or load it from an artifact)")
        m, s = np.float32(self.input["mean"]), np.float32(self.input["std"])
        return ((np.asarray(x, np.float32) - m) / s).astype(np.float32)

    def sample_elements(self):
        """The largest per-image array the forward pass builds (im2col columns or an
        activation), in elements; None without a recorded input shape."""
        if self.input is None:
            return None
        shape, largest = tuple(self.input["shape"]), 1
        for step in self.steps:
            shape, work = step_shape(step, shape)
            largest = max(largest, work, int(np.prod(shape)))
        return largest

    def _checked_input(self, x, where):
        """x as float32 and its (min, max), or None for a small x — the finiteness check and,
        for the fast path, the test whether the input codes need clipping. min and max
        propagate NaN and see ±inf: two fast reductions instead of isfinite's boolean array.
        A small float32 x (at most ``SMALL_INPUT`` elements, where a call costs more than its
        pass) takes one call instead, :func:`_finite_small`, and its codes are always clipped
        (one more call, cheaper than a second reduction)."""
        x = np.asarray(x)
        if x.dtype.kind != "f":
            raise TypeError(f"IntegerModel.{where}: x must be a float array, got {x.dtype}")
        x_range = None
        small = x.size <= SMALL_INPUT and x.dtype == np.float32
        if not (small and _finite_small(x)):
            x_range = (np.minimum.reduce(x, axis=None), np.maximum.reduce(x, axis=None)) \
                if x.size else (0.0, 0.0)
            if not (math.isfinite(x_range[0]) and math.isfinite(x_range[1])):
                raise ValueError(f"IntegerModel.{where}: x contains NaN or inf")
        if self.input is not None and tuple(x.shape[1:]) != tuple(self.input["shape"]):
            raise ValueError(f"IntegerModel.{where}: x must have shape (N, "
                             f"{', '.join(map(str, self.input['shape']))}), got {x.shape}")
        if x_range is not None and max(-float(x_range[0]), float(x_range[1])) > _FLOAT32_MAX:
            # finite but beyond float32 (a float64 x): the cast would overflow to ±inf with a
            # warning; its codes are clipped to the ends of the grid either way
            x = np.clip(x, -_FLOAT32_MAX, _FLOAT32_MAX)
        return x.astype(np.float32, copy=False), x_range

    def fast_stages(self, sample_shape):
        """The fused stages for inputs of this per-sample shape (built once), or None. Replacing
        a step (``im.steps[i] = ...``) rebuilds them; a step's own arrays must not be changed."""
        if self._stages_of != self.steps:
            # list equality compares the steps by identity (they define no __eq__): cheaper per
            # call than a tuple of their ids
            self._stages, self._stages_of = {}, list(self.steps)
        key = tuple(sample_shape)
        if key not in self._stages:
            self._check_sample_shape(key, "forward")            # once per sample shape
            self._stages[key] = fast_stages(self.steps, key)
        return self._stages[key]

    def _check_sample_shape(self, sample_shape, where):
        """A one-line ValueError if the steps cannot take samples of this shape."""
        problem = sample_shape_problem(self.steps, sample_shape)
        if problem:
            raise ValueError(f"IntegerModel.{where}: x has samples of shape "
                             f"{tuple(sample_shape)}, but {problem}")

    def forward(self, x):
        """Logits (N, classes) float32 of float inputs x, through the fused stages (see
        :func:`fast_stages`): the integers of :meth:`forward_steps`, bit for bit, with less work."""
        a, x_range = self._checked_input(x, "forward")
        stages = self.fast_stages(a.shape[1:])              # checks the sample shape, once
        if stages is None or not a.size:
            return self._run_steps(a)
        a = stages[0](a, x_range)                           # quantise the input
        for stage in stages[1:]:
            a = stage(a)
        return a

    def forward_steps(self, x):
        """The reference path: each step's ``run`` on integer codes, one step after another."""
        a = self._checked_input(x, "forward_steps")[0]
        self._check_sample_shape(a.shape[1:], "forward_steps")
        return self._run_steps(a)

    def _run_steps(self, a):
        for step in self.steps:
            a = step.run(a)
        return a

    __call__ = forward

    def predict(self, x, batch_size=1000):
        """Class indices (``argmax``: on a tie the lowest index), computed in batches small
        enough that no intermediate array exceeds ``PREDICT_ELEMENTS`` elements."""
        per_image = self.sample_elements()
        if per_image:
            batch_size = max(1, min(batch_size, PREDICT_ELEMENTS // per_image))
        # an empty x still goes through forward once: its dtype and shape are checked
        return np.concatenate([self.forward(x[i:i + batch_size]).argmax(1)
                               for i in range(0, max(len(x), 1), batch_size)])

    # ---- plain-array form -------------------------------------------------------------------
    def to_arrays(self):
        """``{name: ndarray}``, numbers and short strings only (no objects, no pickle):
        ``format``, ``num_steps``, ``steps.<i>.kind`` and each step's fields under
        ``steps.<i>.<field>`` (see each step's ``arrays()``)."""
        d = {"format": np.array(FORMAT), "num_steps": np.array(len(self.steps), np.int64)}
        if self.float_bytes is not None:
            d["float_bytes"] = np.array(self.float_bytes, np.int64)
        for i, step in enumerate(self.steps):
            d[f"steps.{i}.kind"] = np.array(step.kind)
            for k, v in step.arrays().items():
                d[f"steps.{i}.{k}"] = np.asarray(v)
        return d

    @classmethod
    def from_arrays(cls, d, gemm="auto"):
        """Rebuild from :meth:`to_arrays` output (e.g. ``io.load_npz``), validating as it goes."""
        if "format" not in d or str(np.asarray(d["format"])) != FORMAT:
            raise ValueError(f"IntegerModel.from_arrays: not a {FORMAT} dict "
                             f"(format={d.get('format')!r})")
        # group the keys by step once: looking every step's keys up among all keys would make
        # loading quadratic in the number of steps
        by_step = {}
        for k, v in d.items():
            if k.startswith("steps."):
                index, _, field = k[len("steps."):].partition(".")
                by_step.setdefault(index, {})[field] = np.asarray(v)
        steps = []
        for i in range(int(d["num_steps"])):
            fields = dict(by_step.get(str(i), {}))
            if "kind" not in fields:
                raise ValueError(f"IntegerModel.from_arrays: step {i} has no kind")
            kind = str(fields.pop("kind"))
            if kind in ("linear", "conv2d"):
                steps.append(IntLayer.from_arrays(fields, kind, gemm))
            elif kind in STEP_TYPES:
                steps.append(STEP_TYPES[kind].from_arrays(fields))
            else:
                raise ValueError(f"IntegerModel.from_arrays: step {i} has unknown kind {kind!r}")
        fb = int(d["float_bytes"]) if "float_bytes" in d else None
        return cls(steps, fb)

    def nbytes(self):
        """Bytes of every stored array (weights, biases, scales, metadata)."""
        return int(sum(np.asarray(v).nbytes for v in self.to_arrays().values()))

    def weight_bytes(self):
        return int(sum(s.arrays()["weight_packed"].nbytes for s in self.steps
                       if isinstance(s, IntLayer)))

    def __repr__(self):
        lines = [f"IntegerModel({self.nbytes()} bytes"]
        for s in self.steps:
            extra = ""
            if isinstance(s, IntLayer):
                extra = (f" {tuple(s.q_w.shape)} int{s.w_bits}, bound {s.bound} → "
                         f"{np.dtype(s.exact_dtype).name if s.gemm == 'auto' else 'int64'}"
                         f"{' + relu' if s.out.get('relu') else ''}")
            lines.append(f"  {s.kind}{extra}")
        return "\n".join(lines) + "\n)"


# ---- conversion -------------------------------------------------------------------------------
def _grid(q: ActivationQuantizer):
    return (np.float32(q.delta[0]), int(q.zero_point()[0]), q.q_lo, q.q_hi)


def _weight_quantizer(name, layer):
    qs = [t for t in layer.weight_transforms if isinstance(t, WeightQuantizer)]
    if len(qs) != 1 or layer.weight_transforms[-1] is not qs[0]:
        raise ValueError(f"convert: layer '{name}' must have exactly one WeightQuantizer, last "
                         f"in its weight transforms (got {layer.weight_transforms})")
    return qs[0]


def convert(model, gemm="auto"):
    """Fake-quantised Sequential (after :func:`prepare` + calibration/training) → IntegerModel.

    Supported children: the input ActivationQuantizer first, then Linear / Conv2d (each
    optionally followed by its BiasQuantizer), ReLU, ActivationQuantizer, MaxPool2d, Flatten.
    A Linear/Conv2d must be followed by an activation quantizer (optionally with a ReLU in
    between), except the last one, which gives the logits.
    Works for any shapes (e.g. after filter pruning) and any weight transforms before the
    quantizer (e.g. a pruning mask).
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"convert: expected a Sequential, got {type(model).__name__}")
    children = list(model.named_children())
    if not children or not isinstance(children[0][1], ActivationQuantizer):
        raise ValueError("convert: the first child must be the input ActivationQuantizer "
                         "(run quantize.prepare first)")
    float_bytes = 4 * sum(p.data.size for n, p in model.named_parameters()
                          if n.endswith(".weight") or n.endswith(".bias"))
    first = children[0][1]
    if not first.initialized:
        raise ValueError("convert: the quantizers are not calibrated")
    grid = _grid(first)
    steps, consumed = [QuantizeInput(*grid)], {0}
    for i, (name, m) in enumerate(children):
        if i in consumed:
            continue
        if isinstance(m, (Linear, Conv2d)):
            steps_i, grid = _convert_layer(children, i, grid, consumed, gemm)
            steps.extend(steps_i)
        elif isinstance(m, ReLU):
            steps.append(IntReLU(grid[1]))
        elif isinstance(m, MaxPool2d):
            steps.append(IntMaxPool(m.kernel_size, m.stride))
        elif isinstance(m, Flatten):
            steps.append(IntFlatten())
        elif isinstance(m, BiasQuantizer):
            raise ValueError(f"convert: bias quantizer '{name}' must directly follow its layer")
        elif isinstance(m, ActivationQuantizer):
            raise ValueError(f"convert: activation quantizer '{name}' does not follow a "
                             f"Linear/Conv2d (optionally through a ReLU); unsupported")
        else:
            raise ValueError(f"convert: child '{name}' is a {type(m).__name__}; the integer model "
                             f"supports Linear, Conv2d, ReLU, MaxPool2d, Flatten and quantizers")
    if not isinstance(steps[-1], IntLayer) or "out_scale" not in steps[-1].out:
        raise ValueError("convert: the model must end with a Linear/Conv2d giving the logits")
    return IntegerModel(steps, float_bytes)


def _m0_for_float32(out, bound):
    """Move each channel's M₀ (in ``out``) by at most M₀·2^(−18) where that lets the fast path
    requantise in three float32 passes (:func:`m0_for_float32`); channels sharing (M₀, n) share
    the choice. The layer is float32 only if every channel is, so if one channel finds no such
    M₀, none is moved."""
    lo, hi = out["out_lo"] - out["out_zero"], out["out_hi"] - out["out_zero"]
    chosen = {}
    for key in zip(out["m0"].tolist(), out["shift"].tolist()):
        if key not in chosen:
            chosen[key] = m0_for_float32(*key, bound, lo, hi)
            if chosen[key] is None:
                return
    out["m0"][:] = [chosen[key] for key in zip(out["m0"].tolist(), out["shift"].tolist())]


def _convert_layer(children, i, grid, consumed, gemm):
    name, layer = children[i]
    wq = _weight_quantizer(name, layer)
    w = weight_before_quantizer(layer, wq)
    q_w = wq.codes(w)
    w_delta = wq.delta.astype(np.float32)                 # (1,) or (O,)
    in_delta = grid[0]
    acc_scale = (np.float64(in_delta) * w_delta.astype(np.float64)).reshape(-1)
    bias = layer.bias.data if layer.bias is not None else np.zeros(q_w.shape[0], np.float32)
    q_b = np.rint(bias / acc_scale)
    if np.any(np.abs(q_b) >= INT32_LIMIT):
        raise OverflowError(f"convert: bias of '{name}' does not fit in int32 at scale Δ_w·Δ_x")
    kind = "linear" if isinstance(layer, Linear) else "conv2d"
    extra = {} if kind == "linear" else {"stride": layer.stride, "padding": layer.padding}
    # look ahead: [BiasQuantizer] [ReLU] ActivationQuantizer → requantise to that grid
    j, relu = i + 1, False
    if j < len(children) and isinstance(children[j][1], BiasQuantizer):
        consumed.add(j)
        j += 1
    if j < len(children) and isinstance(children[j][1], ReLU):
        j, relu = j + 1, True
    if j < len(children) and isinstance(children[j][1], ActivationQuantizer):
        aq = children[j][1]
        out_grid = _grid(aq)
        m0, shift = quantize_multiplier(acc_scale / np.float64(out_grid[0]))
        o = q_w.shape[0]
        # a ReLU between the layer and the quantizer is max(q, z_y): fused into the clip's lower
        # bound (exact, because quantisation is monotone and z_y is the code of 0.0)
        lo = max(out_grid[2], out_grid[1]) if relu else out_grid[2]
        out = {"m0": np.broadcast_to(m0, (o,)).copy(), "shift": np.broadcast_to(shift, (o,)).copy(),
               "out_delta": np.float32(out_grid[0]), "out_zero": int(out_grid[1]),
               "out_lo": int(lo), "out_hi": int(out_grid[3]), "relu": int(relu)}
        step = IntLayer(kind, (q_w, wq.n_bits, w_delta), q_b, grid, out, gemm=gemm, **extra)
        if step.exact_dtype == np.float32:
            _m0_for_float32(step.out, step.bound)
        consumed.update(range(i + 1, j + 1))
        return [step], out_grid
    if j == len(children) and not relu:
        out = {"out_scale": np.broadcast_to(acc_scale.astype(np.float32), (q_w.shape[0],)).copy()}
        return [IntLayer(kind, (q_w, wq.n_bits, w_delta), q_b, grid, out, gemm=gemm, **extra)], None
    raise ValueError(f"convert: layer '{name}' must be followed by an ActivationQuantizer "
                     f"(optionally after a ReLU) or be the last layer")
