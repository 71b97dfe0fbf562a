"""The integer model's steps — quantise the input, ReLU, max-pool, flatten, and the layer
(IntLayer: integer GEMM, bias, requantisation) — each with a ``run`` on integer codes, written for
reading: ``IntegerModel.forward_steps`` runs them one after another, the reference that the fused
stages (``integer_stages.py``) must equal bit for bit. See ``integer.py`` for the equations.
"""
from __future__ import annotations

import math

import numpy as np

from ..nn.im2col import im2col
from .bitpack import pack_bits, unpack_bits
from .fixed_point import requantize, requantize_exact_float

EXACT_FLOAT32 = 2 ** 24
INT32_LIMIT = 2 ** 31
GEMM_MODES = ("auto", "int64")


def code_dtype(q_lo, q_hi):
    """The smallest integer dtype holding codes in [q_lo, q_hi] (uint8 for 8-bit activations)."""
    for dt in (np.uint8, np.int8, np.uint16, np.int16):
        if np.iinfo(dt).min <= q_lo and q_hi <= np.iinfo(dt).max:
            return dt
    return np.int32


# ---- steps -----------------------------------------------------------------------------------
class QuantizeInput:
    """float input → codes ``clip(round(x/Δ) + z, q_lo, q_hi)``; NCHW images become NHWC."""

    kind = "quantize_input"

    def __init__(self, delta, zero, q_lo, q_hi):
        self.delta, self.zero = np.float32(delta), int(zero)
        self.q_lo, self.q_hi = int(q_lo), int(q_hi)

    def run(self, x):
        with np.errstate(over="ignore"):            # |x/Δ| beyond float32 is ±inf, clipped below
            q = np.divide(x, self.delta, dtype=np.float32)
        np.rint(q, out=q)
        # clip(round(v) + z, q_lo, q_hi) = clip(round(v), q_lo − z, q_hi − z) + z: the + z and the
        # cast to the integer dtype happen in one pass (the values are integers already)
        np.clip(q, self.q_lo - self.zero, self.q_hi - self.zero, out=q)
        codes = np.empty(q.shape, code_dtype(self.q_lo, self.q_hi))
        np.add(q, self.zero, out=codes, casting="unsafe")
        q = codes
        return q.transpose(0, 2, 3, 1) if q.ndim == 4 else q

    def arrays(self):
        return {"delta": np.float32(self.delta), "zero": np.int64(self.zero),
                "q_lo": np.int64(self.q_lo), "q_hi": np.int64(self.q_hi)}

    @classmethod
    def from_arrays(cls, a):
        return cls(a["delta"], a["zero"], a["q_lo"], a["q_hi"])


class IntReLU:
    """ReLU on codes: ``max(q, z)``, z the code of the real number 0."""

    kind = "relu"

    def __init__(self, zero):
        self.zero = int(zero)

    def run(self, q):
        return np.maximum(q, np.asarray(self.zero, q.dtype))

    def arrays(self):
        return {"zero": np.int64(self.zero)}

    @classmethod
    def from_arrays(cls, a):
        return cls(a["zero"])


class IntMaxPool:
    """k×k max-pool of NHWC codes (exact: quantisation is monotone)."""

    kind = "maxpool"

    def __init__(self, kernel_size, stride):
        self.kernel_size, self.stride = int(kernel_size), int(stride)

    def run(self, q):
        k, s = self.kernel_size, self.stride
        n, h, w, c = q.shape
        oh, ow = (h - k) // s + 1, (w - k) // s + 1
        out = None
        for i in range(k):
            for j in range(k):
                view = q[:, i:i + s * (oh - 1) + 1:s, j:j + s * (ow - 1) + 1:s, :]
                out = view.copy() if out is None else np.maximum(out, view, out=out)
        return out

    def arrays(self):
        return {"kernel_size": np.int64(self.kernel_size), "stride": np.int64(self.stride)}

    @classmethod
    def from_arrays(cls, a):
        return cls(a["kernel_size"], a["stride"])


class IntFlatten:
    """NHWC codes → (N, C·H·W) in the float model's (NCHW, C-order) feature order."""

    kind = "flatten"

    def run(self, q):
        if q.ndim == 4:
            q = q.transpose(0, 3, 1, 2)
        return q.reshape(q.shape[0], math.prod(q.shape[1:]))         # not -1: N may be 0

    def arrays(self):
        return {}

    @classmethod
    def from_arrays(cls, a):
        return cls()


class IntLayer:
    """An integer Linear or Conv2d: ``acc = Σ q_w (q_x − z_x) + q_b``, then requantise to the
    next activation grid, or (last layer) return real logits ``Δ_w Δ_x · acc``.

    Built from ``weight = (q_w, w_bits, w_delta)``, the quantised weight, and the input grid
    ``in_grid = (in_delta, in_zero, in_lo, in_hi)``.

    Attributes: ``q_w`` (O, in) or (O, C, k, k) int codes; ``w_bits``; ``w_delta`` (O,) float32;
    ``q_b`` (O,) int32; input grid ``in_delta, in_zero, in_lo, in_hi``; output ``m0, shift``
    (O,) int64 and ``out_zero, out_lo, out_hi`` (requantising layer) or ``out_scale`` (O,)
    float32 (logits layer); ``stride, padding`` for convolutions.
    """

    def __init__(self, kind, weight, q_b, in_grid, out=None, stride=1, padding=0, gemm="auto"):
        if kind not in ("linear", "conv2d"):
            raise ValueError(f"IntLayer: kind must be 'linear' or 'conv2d', got {kind!r}")
        if gemm not in GEMM_MODES:
            raise ValueError(f"IntLayer: gemm must be one of {GEMM_MODES}, got {gemm!r}")
        q_w, w_bits, w_delta = weight
        self.kind, self.w_bits = kind, int(w_bits)
        self.q_w = np.asarray(q_w, np.int32)
        o = self.q_w.shape[0]
        self.w_delta = np.broadcast_to(np.asarray(w_delta, np.float32).reshape(-1), (o,)).copy()
        self.q_b = np.asarray(q_b, np.int64).reshape(o)
        self.in_delta, self.in_zero, self.in_lo, self.in_hi = in_grid
        self.in_delta = np.float32(self.in_delta)
        self.stride, self.padding = int(stride), int(padding)
        if "m0" in out:
            out = dict(out, m0=np.broadcast_to(np.asarray(out["m0"], np.int64), (o,)).copy(),
                       shift=np.broadcast_to(np.asarray(out["shift"], np.int64), (o,)).copy())
            for k in ("out_zero", "out_lo", "out_hi", "relu"):
                out[k] = int(out[k])
        self.out = out
        # W as a matrix whose columns match im2col's (kh, kw, C) order
        w_mat = self.q_w if kind == "linear" else self.q_w.transpose(0, 2, 3, 1).reshape(o, -1)
        self.w_mat = np.ascontiguousarray(w_mat)
        self.bound = self.accumulator_bound()
        if self.bound >= INT32_LIMIT:
            raise OverflowError(f"IntLayer: the accumulator bound {self.bound} does not fit in "
                                f"int32; use fewer bits or a smaller input range")
        self.gemm = gemm
        self.exact_dtype = np.float32 if self.bound < EXACT_FLOAT32 else np.float64
        self._w_t = self.w_mat.T.astype(self.exact_dtype)     # (in, O), kept for the fast path
        # Σ q_w (q_x − z_x) = Σ q_w q_x − z_x Σ q_w: for a Linear the second term joins the bias
        # (one pass less over the input). Not for a Conv2d: its zero padding must be the real 0.
        self._fold_zero = kind == "linear" and self.in_zero != 0
        folded = self.q_b - (self.in_zero * self.w_mat.astype(np.int64).sum(axis=1)
                             if self._fold_zero else 0)
        self._b = folded.astype(self.exact_dtype)

    def accumulator_bound(self):
        """B = max_o Σ_k |q_w[o,k]| · max|q_x − z_x| + max|q_b|: no partial sum exceeds it."""
        x_max = max(abs(self.in_lo - self.in_zero), abs(self.in_hi - self.in_zero))
        rows = np.abs(self.w_mat.astype(np.int64)).sum(axis=1)
        bound = int(rows.max() * x_max + np.abs(self.q_b).max(initial=0))
        if self.kind == "linear" and self.in_zero:
            # folded form Σ q_w q_x + (q_b − z_x Σ q_w): bound its partial sums as well
            x_abs = max(abs(self.in_lo), abs(self.in_hi))
            folded = np.abs(self.q_b - self.in_zero * self.w_mat.astype(np.int64).sum(axis=1))
            bound = max(bound, int(rows.max() * x_abs + folded.max(initial=0)))
        return bound

    def _columns(self, xc):
        """(N, H, W, C) centred codes → im2col rows; (N, D) stays as it is."""
        if self.kind == "linear":
            return xc, None
        k = self.q_w.shape[2]
        cols, (oh, ow) = im2col(xc, k, self.stride, self.padding)
        return cols, (xc.shape[0], oh, ow)

    def accumulate(self, q):
        """acc = Σ q_w (q_x − z_x) + q_b, shape (rows, O) (+ the conv output shape).

        int64 (exact by construction) with ``gemm="int64"``; otherwise a BLAS product in
        ``exact_dtype``, whose entries are exact integers because no partial sum exceeds
        ``self.bound`` (see the module docstring)."""
        if self.gemm == "int64":
            cols, shape = self._columns(q.astype(np.int64) - self.in_zero)
            return cols @ self.w_mat.T.astype(np.int64) + self.q_b, shape
        xc = q.astype(self.exact_dtype)
        if self.in_zero and not self._fold_zero:
            xc -= self.in_zero
        cols, shape = self._columns(xc)
        acc = cols @ self._w_t
        acc += self._b
        return acc, shape

    def run(self, q):
        acc, shape = self.accumulate(q)
        o = self.out
        if "out_scale" in o:
            y = np.multiply(acc, np.asarray(o["out_scale"], np.float32), dtype=np.float32)
        else:
            args = (o["m0"], o["shift"], o["out_zero"], o["out_lo"], o["out_hi"])
            dtype = code_dtype(o["out_lo"], o["out_hi"])
            if acc.dtype == np.float32:           # |acc| < 2^24: exact float64 requantisation
                y = requantize_exact_float(acc, *args, out_dtype=dtype)
            else:
                y = requantize(acc.astype(np.int64), *args).astype(dtype)
        return y if shape is None else y.reshape(*shape, y.shape[-1])      # not -1: N may be 0

    def arrays(self):
        a = {"weight_packed": pack_bits(self.q_w, self.w_bits, signed=True),
             "weight_shape": np.array(self.q_w.shape, np.int64),
             "weight_bits": np.int64(self.w_bits), "weight_delta": self.w_delta,
             "bias": self.q_b.astype(np.int32),
             "in_delta": np.float32(self.in_delta), "in_zero": np.int64(self.in_zero),
             "in_lo": np.int64(self.in_lo), "in_hi": np.int64(self.in_hi),
             "stride": np.int64(self.stride), "padding": np.int64(self.padding)}
        a.update({f"out.{k}": _compact(v) for k, v in self.out.items()})
        a["weight_delta"] = _compact(self.w_delta)
        return a

    @classmethod
    def from_arrays(cls, a, kind, gemm="auto"):
        shape = tuple(int(s) for s in a["weight_shape"])
        bits = int(a["weight_bits"])
        q_w = unpack_bits(a["weight_packed"], bits, int(np.prod(shape)), signed=True).reshape(shape)
        o = shape[0]
        out = {k[4:]: (np.broadcast_to(v, (o,)).copy() if v.ndim else v[()])
               for k, v in a.items() if k.startswith("out.")}
        grid = (a["in_delta"], int(a["in_zero"]), int(a["in_lo"]), int(a["in_hi"]))
        return cls(kind, (q_w, bits, a["weight_delta"]), a["bias"], grid, out,
                   int(a["stride"]), int(a["padding"]), gemm)


def _compact(v):
    """A per-channel array whose entries are all equal (per-tensor Δ, M₀, n) is stored as (1,);
    m0/shift fit in int32."""
    v = np.asarray(v)
    if v.dtype == np.int64 and v.ndim:
        v = v.astype(np.int32)
    if v.ndim == 1 and v.size > 1 and np.all(v == v[0]):
        v = v[:1].copy()
    return v


def step_shape(step, shape):
    """Per-image shape after ``step`` given the one before ((C, H, W) images become (H, W, C)),
    and the elements of the largest temporary the step builds (im2col columns of a conv)."""
    if isinstance(step, QuantizeInput):
        return (tuple(shape[1:]) + tuple(shape[:1]) if len(shape) == 3 else tuple(shape)), 0
    if isinstance(step, IntFlatten):
        return (int(np.prod(shape)),), 0
    if isinstance(step, IntMaxPool):
        h, w, c = shape
        k, s = step.kernel_size, step.stride
        return ((h - k) // s + 1, (w - k) // s + 1, c), 0
    if isinstance(step, IntLayer):
        o = step.q_w.shape[0]
        if step.kind == "linear":
            return (o,), 0
        h, w, c = shape
        k, s, p = step.q_w.shape[2], step.stride, step.padding
        oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        return (oh, ow, o), oh * ow * k * k * c
    return tuple(shape), 0


def sample_shape_problem(steps, sample_shape):
    """Why the steps cannot take samples of ``sample_shape`` (x.shape[1:], images as (C, H, W)),
    as a phrase for an error message, or None if they can. Follows the per-sample shape through
    the steps as :func:`step_shape` does and checks what each layer and pool needs of it."""
    shape = tuple(sample_shape)
    for i, step in enumerate(steps):
        if isinstance(step, IntLayer):
            problem = _layer_shape_problem(step, shape)
            if problem:
                return f"step {i} ({step.kind}) needs {problem}"
        elif isinstance(step, IntMaxPool):
            k = step.kernel_size
            if len(shape) != 3 or shape[0] < k or shape[1] < k:
                return f"step {i} (max-pool {k}x{k}) needs images of at least {k}x{k}"
        shape, _ = step_shape(step, shape)
    return None


def _layer_shape_problem(layer, shape):
    """What ``layer`` needs of its per-sample input ``shape`` that ``shape`` does not have."""
    o, c = layer.q_w.shape[:2]
    if layer.kind == "linear":
        if shape == (c,):
            return None
        return f"{c} input features, gets " + (f"{shape[0]}" if len(shape) == 1 else
                                               f"samples of shape {shape} (no flatten before it)")
    k, p = layer.q_w.shape[2], layer.padding
    if len(shape) != 3 or shape[2] != c:
        return f"images (C, H, W) with C = {c}"
    if shape[0] + 2 * p < k or shape[1] + 2 * p < k:
        return f"images of at least {k - 2 * p}x{k - 2 * p} (a {k}x{k} kernel, padding {p})"
    return None


STEP_TYPES = {c.kind: c for c in (QuantizeInput, IntReLU, IntMaxPool, IntFlatten)}
