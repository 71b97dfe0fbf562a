"""The integer model as an ONNX graph that ONNX Runtime runs bit-exactly (see docs/ONNX.md).

The graph takes what the data loaders give *before* standardisation — float32 images
(N, 1, H, W) with values in [0, 1] — and returns the same float32 logits (N, O) as
:meth:`IntegerModel.forward` on the standardised images, bit for bit, plus the predicted
labels (N,) int64. Everything in between is the integer model of the artifact
(docs/FORMAT.md), written with ONNX's integer operators:

* standardise and quantise the input, in float32 exactly as NumPy does it::

      x̃ = (x − μ) / σ,    q_x = clip(round_half_even(x̃ / Δ_x) + z_x, q_lo, q_hi)

* each Linear / Conv2d: ``MatMulInteger`` / ``ConvInteger`` on uint8 codes with zero points
  (int32 accumulation), then ``+ q_b`` (int32)::

      acc = Σ_k (u_w − 128) · (u_x − (z_x + o_x)) + q_b,   u_w = q_w + 128,  u_x = q_x + o_x

  Both operands are *unsigned* 8-bit (weights shifted by 128, activations by o_x ∈ {0, 128}):
  the u8×s8 kernels of x86 CPUs without VNNI add pairs of products in saturating int16 and can
  lose the top bits for full-range int8 weights; the u8×u8 kernels widen to 16 bits first.

* the fixed-point requantisation in int64, with the arithmetic right shift written as an exact
  division of a *non-negative* number (ONNX ``Div`` on integers truncates towards zero, ``BitShift``
  takes unsigned types only)::

      q_y = clip(⌊(acc · M₀ + 2^(n−1) + 2^62) / 2^n⌋ − 2^(62−n) + z_y, lo, hi)

  |acc| < 2^31 and M₀ < 2^27, so the dividend lies in (0, 2^63): truncation is floor, and
  ⌊(v + 2^62) / 2^n⌋ − 2^(62−n) = ⌊v / 2^n⌋ = v >> n.

* the last layer: ``float32(acc) · out_scale`` (float32, as NumPy), then ``ArgMax`` (first
  index on ties, as ``numpy.argmax``).

``onnx`` and ``onnxruntime`` are optional: they are imported inside the functions here.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .quantize.integer import (IntegerModel, IntFlatten, IntLayer, IntMaxPool, IntReLU,
                               QuantizeInput)

OPSET = 13          # MatMulInteger/ConvInteger (10), Round (11), integer Clip (12), Pad-13
IR_VERSION = 7      # the IR version that goes with opset 13: readable by ONNX Runtime ≥ 1.6
INPUT, LOGITS, LABELS = "images", "logits", "labels"
SHIFT_OFFSET_BITS = 62   # the 2^62 that makes the dividend of the floor division non-negative
WEIGHT_OFFSET = 128      # int8 codes q_w → uint8 q_w + 128, zero point 128
PIP_HINT = "pip install onnx onnxruntime  (or: pip install -e .[onnx])"


class OnnxExportError(ValueError):
    """The model cannot be written as an ONNX graph (or a file is not one of ours)."""


def require(module):
    """Import ``onnx`` or ``onnxruntime``, or raise a one-line ImportError saying how to install."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{module} is not installed; ONNX export and evaluation need the optional "
                          f"packages: {PIP_HINT}") from None


# ---- the input standardisation -----------------------------------------------------------------
def input_standardisation(header_or_meta, model=None):
    """(μ, σ) as float32: the standardisation ``evaluate`` applies before the integer model.

    In order: the model's own record (``model.input["mean"/"std"]``), the artifact header's
    (``header["input"]``, or ``mean``/``std`` in ``meta``), else the constants of the data set
    the artifact names — the numbers ``data.load_dataset`` uses. The one place that decides.
    """
    from . import data
    h = dict(header_or_meta or {})
    for where in (getattr(model, "input", None), h.get("input"), h.get("meta"), h):
        if isinstance(where, dict) and "mean" in where and "std" in where:
            return np.float32(where["mean"]), np.float32(where["std"])
    meta = h.get("meta", h)
    name = meta.get("dataset") if isinstance(meta, dict) else None
    if name in INPUT_SIZE:
        mean, std = data.standardization(name)
        return np.float32(mean), np.float32(std)
    raise OnnxExportError(f"export-onnx: cannot tell the input standardisation: the model records "
                          f"none and names no known data set (dataset={name!r}; known: "
                          f"{', '.join(INPUT_SIZE)}); pass mean= and std=")


INPUT_SIZE = {"digits": 8, "fashion-mnist": 28, "mnist": 28}


def input_shape(header, model=None):
    """The graph input's shape: ("N",) + the recorded per-image shape (C, H, W) or (D,), else
    (N, 1, H, W) with H = W known from the data set, else symbolic H, W."""
    for where in (getattr(model, "input", None), (header or {}).get("input")):
        if isinstance(where, dict) and where.get("shape"):
            return ["N"] + [int(d) for d in where["shape"]]
    size = INPUT_SIZE.get((header or {}).get("meta", {}).get("dataset"))
    return ["N", 1, size or "H", size or "W"]


# ---- graph building ----------------------------------------------------------------------------
class GraphBuilder:
    """Collects nodes and initializers; every constant is stored as raw bytes (from_array)."""

    def __init__(self, onnx):
        self.onnx, self.helper = onnx, onnx.helper
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, hint):
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, hint, value, dtype):
        from onnx import numpy_helper
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type, inputs, hint=None, **attrs):
        out = self.name(hint or op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out


def uint8_offset(q_lo, q_hi, where):
    """o with [q_lo + o, q_hi + o] ⊂ [0, 255]: 0 for unsigned codes, 128 for signed ones."""
    for o in (0, 128):
        if 0 <= q_lo + o and q_hi + o <= 255:
            return o
    raise OnnxExportError(f"export-onnx: {where} has activation codes in [{q_lo}, {q_hi}]; ONNX's "
                          f"MatMulInteger/ConvInteger take 8-bit inputs, so activations must have "
                          f"at most 8 bits")


def add_standardise_and_quantize(g, x, step: QuantizeInput, mean, std):
    """x float32 in [0, 1] → uint8 u = q_x + o (codes of the input grid, shifted into [0, 255]).

    float32 throughout, each operation the one NumPy does: (x − μ), / σ, / Δ, round half to even,
    clip to [q_lo − z, q_hi − z] (then + z + o is exact: small integers)."""
    o = uint8_offset(step.q_lo, step.q_hi, "the input quantizer")
    f32 = np.float32
    x = g.op("Sub", [x, g.const("mean", mean, f32)], "centred")
    x = g.op("Div", [x, g.const("std", std, f32)], "standardised")
    x = g.op("Div", [x, g.const("in_delta", step.delta, f32)], "scaled")
    x = g.op("Round", [x], "rounded")
    x = g.op("Clip", [x, g.const("lo", step.q_lo - step.zero, f32),
                      g.const("hi", step.q_hi - step.zero, f32)], "clipped")
    x = g.op("Add", [x, g.const("zero", step.zero + o, f32)], "codes_f32")
    return g.op("Cast", [x], "codes_u8", to=g.onnx.TensorProto.UINT8), o


def channel_shape(layer: IntLayer, v):
    """Per-output-channel constants broadcast over (N, O) or (N, O, OH, OW); one number when all
    channels share it (a per-tensor M₀, n, Δ), so the file does not repeat it O times."""
    v = np.asarray(v).reshape(-1)
    if v.size > 1 and np.all(v == v[0]):
        return v[:1]
    return v if layer.kind == "linear" else v.reshape(-1, 1, 1)


def add_accumulate(g, u, o_x, layer: IntLayer, i):
    """uint8 codes → int32 acc = Σ (u_w − 128)(u_x − z_x − o_x) + q_b (MatMulInteger/ConvInteger)."""
    if layer.w_bits > 8:
        raise OnnxExportError(f"export-onnx: step {i} ({layer.kind}) has {layer.w_bits}-bit weights; "
                              f"ONNX's MatMulInteger/ConvInteger take at most 8-bit weights")
    if layer.bound >= 2 ** 31:
        raise OnnxExportError(f"export-onnx: step {i}: accumulator bound {layer.bound} ≥ 2^31")
    x_zp = g.const(f"x_zero_{i}", layer.in_zero + o_x, np.uint8)
    w_zp = g.const(f"w_zero_{i}", WEIGHT_OFFSET, np.uint8)
    w_u8 = (layer.q_w.astype(np.int64) + WEIGHT_OFFSET).astype(np.uint8)
    if layer.kind == "linear":
        w = g.const(f"weight_{i}", np.ascontiguousarray(w_u8.T), np.uint8)    # (D, O)
        acc = g.op("MatMulInteger", [u, w, x_zp, w_zp], f"acc_{i}")
    else:
        p = layer.padding
        if p:   # pad with the code of the real 0 (z_x + o), as the integer model pads q_x − z_x by 0
            pads = g.const(f"pads_{i}", [0, 0, p, p, 0, 0, p, p], np.int64)
            u = g.op("Pad", [u, pads, x_zp], f"padded_{i}", mode="constant")
        w = g.const(f"weight_{i}", w_u8, np.uint8)                               # (O, C, k, k)
        acc = g.op("ConvInteger", [u, w, x_zp, w_zp], f"acc_{i}",
                   strides=[layer.stride, layer.stride])
    bias = g.const(f"bias_{i}", channel_shape(layer, layer.q_b), np.int32)
    return g.op("Add", [acc, bias], f"acc_bias_{i}")


def add_requantize(g, acc, layer: IntLayer, i):
    """int32 acc → uint8 u_y = clip(((acc·M₀ + 2^(n−1)) >> n) + z_y, lo, hi) + o_y."""
    out = layer.out
    m0, n = out["m0"].astype(np.int64), out["shift"].astype(np.int64)
    if np.any(n < 1) or np.any(n > SHIFT_OFFSET_BITS) or np.any(m0 >= 2 ** 27) or np.any(m0 < 0):
        raise OnnxExportError(f"export-onnx: step {i}: requantisation (M₀={m0}, n={n}) is outside "
                              f"M₀ < 2^27, 1 ≤ n ≤ {SHIFT_OFFSET_BITS}")
    o_y = uint8_offset(out["out_lo"], out["out_hi"], f"step {i} ({layer.kind})")
    big = np.int64(1) << np.int64(SHIFT_OFFSET_BITS)
    add_before = (np.int64(1) << (n - 1)) + big             # 2^(n−1) + 2^62
    divisor = np.int64(1) << n                               # 2^n
    add_after = out["out_zero"] + o_y - (big >> n)           # z_y + o − 2^(62−n)
    v = g.op("Cast", [acc], f"acc64_{i}", to=g.onnx.TensorProto.INT64)
    v = g.op("Mul", [v, g.const(f"m0_{i}", channel_shape(layer, m0), np.int64)], f"scaled_{i}")
    v = g.op("Add", [v, g.const(f"round_{i}", channel_shape(layer, add_before), np.int64)])
    v = g.op("Div", [v, g.const(f"two_pow_n_{i}", channel_shape(layer, divisor), np.int64)],
             f"shifted_{i}")
    v = g.op("Add", [v, g.const(f"zero_{i}", channel_shape(layer, add_after), np.int64)])
    v = g.op("Clip", [v, g.const(f"lo_{i}", out["out_lo"] + o_y, np.int64),
                      g.const(f"hi_{i}", out["out_hi"] + o_y, np.int64)], f"clipped_{i}")
    return g.op("Cast", [v], f"codes_{i}", to=g.onnx.TensorProto.UINT8), o_y


def add_logits(g, acc, layer: IntLayer, i):
    """int32 acc → float32 logits ``float32(acc) · out_scale``."""
    y = g.op("Cast", [acc], f"acc_f32_{i}", to=g.onnx.TensorProto.FLOAT)
    scale = g.const(f"out_scale_{i}", channel_shape(layer, layer.out["out_scale"]), np.float32)
    return g.op("Mul", [y, scale], f"logits_{i}")


def integer_model_graph(im: IntegerModel, mean, std, in_shape=("N", 1, "H", "W"), meta=None):
    """IntegerModel → onnx.ModelProto (checked). ``in_shape``: the input's shape, names for
    symbolic dimensions."""
    onnx = require("onnx")
    g = GraphBuilder(onnx)
    steps = im.steps
    if not isinstance(steps[0], QuantizeInput):
        raise OnnxExportError("export-onnx: the first step must quantise the input")
    u, o = add_standardise_and_quantize(g, INPUT, steps[0], mean, std)
    logits = None
    for i, step in enumerate(steps[1:], start=1):
        if logits is not None:
            raise OnnxExportError(f"export-onnx: step {i} ({step.kind}) follows the logits layer")
        if isinstance(step, IntFlatten):
            u = g.op("Flatten", [u], f"flat_{i}", axis=1)     # NCHW → (N, C·H·W): PyTorch's order
        elif isinstance(step, IntReLU):
            u = g.op("Max", [u, g.const(f"relu_zero_{i}", step.zero + o, np.uint8)], f"relu_{i}")
        elif isinstance(step, IntMaxPool):
            k, s = step.kernel_size, step.stride
            u = g.op("MaxPool", [u], f"pool_{i}", kernel_shape=[k, k], strides=[s, s])
        elif isinstance(step, IntLayer):
            acc = add_accumulate(g, u, o, step, i)
            if "out_scale" in step.out:
                logits = add_logits(g, acc, step, i)
            else:
                u, o = add_requantize(g, acc, step, i)
        else:
            raise OnnxExportError(f"export-onnx: step {i} is a {getattr(step, 'kind', type(step))!r}"
                                  f" step, which has no ONNX translation (supported: quantize_input, "
                                  f"flatten, relu, maxpool, linear, conv2d)")
    if logits is None:
        raise OnnxExportError("export-onnx: the model does not end with a logits layer")
    h = onnx.helper
    g.nodes.append(h.make_node("Identity", [logits], [LOGITS], name=LOGITS))
    g.nodes.append(h.make_node("ArgMax", [LOGITS], [LABELS], name=LABELS, axis=1, keepdims=0,
                                   select_last_index=0))   # first maximum, as numpy.argmax
    n_out = steps[-1].q_w.shape[0]
    graph = h.make_graph(
        g.nodes, "minicompress_integer_model",
        [h.make_tensor_value_info(INPUT, onnx.TensorProto.FLOAT, list(in_shape))],
        [h.make_tensor_value_info(LOGITS, onnx.TensorProto.FLOAT, ["N", n_out]),
         h.make_tensor_value_info(LABELS, onnx.TensorProto.INT64, ["N"])],
        initializer=g.inits)
    graph.doc_string = ("Input: float32 images (N, 1, H, W) in [0, 1], not standardised. Outputs: "
                        "the integer model's logits (float32) and argmax labels (int64).")
    model = h.make_model(graph, producer_name="minicompress", ir_version=IR_VERSION,
                         opset_imports=[h.make_opsetid("", OPSET)])
    meta = dict(meta or {})
    meta.update({"input_mean": float(mean), "input_std": float(std)})
    h.set_model_props(model, {"minicompress.meta": json.dumps(meta, sort_keys=True)})
    onnx.checker.check_model(model, full_check=True)
    return model


# ---- public entry points -----------------------------------------------------------------------
def export_onnx(source, out_path, *, mean=None, std=None, meta=None) -> Path:
    """Write the integer model of ``source`` (artifact path or IntegerModel) as an ONNX file.

    ``mean``/``std``: the input standardisation (default: :func:`input_standardisation` of the
    artifact's header). Written atomically; returns the path.
    """
    from .io import atomic_write
    if isinstance(source, IntegerModel):
        im, header = source, {"meta": dict(meta or {})}
    else:
        from .serialize import load_integer_model, read_header
        path = Path(source)
        im, header = load_integer_model(path), read_header(path)
    meta = dict(header.get("meta", {}), **(meta or {}))
    if mean is None or std is None:
        mean, std = input_standardisation(header, im)
    if not (np.isfinite(mean) and np.isfinite(std) and std > 0):
        raise OnnxExportError(f"export-onnx: the standardisation must have finite mean and std > 0, "
                              f"got mean={mean!r}, std={std!r}")
    model = integer_model_graph(im, np.float32(mean), np.float32(std),
                                input_shape(dict(header, meta=meta), im), meta)
    with atomic_write(out_path) as f:
        f.write(model.SerializeToString())
    return Path(out_path)


class OnnxRunner:
    """An exported file in ONNX Runtime: ``forward(x)`` → logits, ``predict(x)`` → labels.

    ``optimization``: None keeps ONNX Runtime's default SessionOptions; or one of "disable",
    "basic", "extended", "all" (GraphOptimizationLevel)."""

    def __init__(self, path, optimization=None, threads=None):
        ort = require("onnxruntime")
        onnx = require("onnx")
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such ONNX file")
        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as e:   # protobuf's DecodeError and friends
            raise OnnxExportError(f"{path}: not a valid ONNX file ({type(e).__name__})") from None
        props = {p.key: p.value for p in proto.metadata_props}
        try:
            self.meta = dict(json.loads(props.get("minicompress.meta", "{}")))
        except (ValueError, TypeError):
            self.meta = {}                      # not written by us: no data set to default to
        opts = ort.SessionOptions()
        if optimization is not None:
            levels = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
                      "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
            opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, levels[optimization])
        if threads:
            opts.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(proto.SerializeToString(), opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:   # onnxruntime's own error types (invalid graph, unknown op, …)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise OnnxExportError(f"{path}: ONNX Runtime cannot load it: {first}") from None
        self.path = path

    def run(self, x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        return self.session.run([LOGITS, LABELS], {INPUT: x})

    def forward(self, x):
        return self.run(x)[0]

    def predict(self, x, batch_size=1000):
        return np.concatenate([self.run(x[i:i + batch_size])[1]
                               for i in range(0, len(x), batch_size)])


__all__ = ["OnnxExportError", "OnnxRunner", "export_onnx", "input_standardisation",
           "integer_model_graph"]
