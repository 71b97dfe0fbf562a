"""Integer model ⇄ artifact file (the container of ``artifact.py``, specified in docs/FORMAT.md).

Writing: each step becomes a JSON object in the header — small scalars (Δ, zero points, bit
widths, strides) as JSON numbers, every array as a reference into the blob — and each weight
tensor is stored with whichever of the ``packed``, ``sparse``, ``sparse_gaps``, ``huffman`` and
``sparse_huffman`` encodings deflates smallest (the last two only when strictly smaller). The
file is then built three ways (without Huffman, per-tensor best, Huffman throughout) and the
smallest kept: no file is ever larger than its version-2 form.

Reading treats the file as hostile: every header value is checked against what the format
allows *before* anything is allocated or computed from it — field names, integer ranges, bit
widths, Δ finite and > 0, zero points inside their grids, M₀ and shift ranges, each layer's
shapes against the shape that reaches it, the worst-case accumulator against int32, tensor
byte counts against their shapes, declared sizes against limits — and a violation is one
:class:`ArtifactError` (a ``ValueError``) naming the step and field and what is accepted.
Loading is linear in the number of steps.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .artifact import (BASE_ENCODINGS, HUFFMAN_ENCODINGS, ArtifactError, BlobWriter,
                       artifact_bytes, check_entry, entry_shape, json_int, read_artifact,
                       read_tensor, show, uses_huffman, versioned, write_file_bytes)
from .quantize.fixed_point import M0_BITS
from .quantize.integer import FORMAT, IntegerModel
from .quantize.integer_steps import (INT32_LIMIT, IntFlatten, IntLayer, IntMaxPool, IntReLU,
                                     QuantizeInput, _compact, step_shape)

# ---- limits (docs/FORMAT.md, "Limits") ----------------------------------------------------------
MAX_STEPS = 10_000
MAX_MODEL_ELEMENTS = 2 ** 22          # all tensors' elements together (the teacher: 0.83 M)
MAX_SAMPLE_ELEMENTS = 2 ** 20         # largest per-image activation or im2col block (teacher: 56 k)
MAX_KERNEL = 64
CODE_MIN, CODE_MAX = -2 ** 15, 2 ** 16 - 1     # activation codes of at most 16 bits
MAX_SHIFT = 62                        # acc·M₀ + 2^(shift−1) < 2^58 + 2^61 < 2^63
FLOAT32_MAX = float(np.finfo(np.float32).max)
MAX_OUT_SCALE = FLOAT32_MAX / INT32_LIMIT      # |logit| = |acc|·scale stays finite in float32

HEADER_KEYS = {"format", "format_version", "model", "steps", "meta", "input"}
OPTIONAL_HEADER_KEYS = {"float_bytes"}
LAYER_KEYS = {"kind", "weight", "bias", "weight_delta", "weight_bits", "in_delta", "in_zero",
              "in_lo", "in_hi", "stride", "padding"}
REQUANT_KEYS = {"out.m0", "out.shift", "out.out_delta", "out.out_zero", "out.out_lo",
                "out.out_hi", "out.relu"}
LOGITS_KEYS = {"out.out_scale"}
STEP_KEYS = {"quantize_input": {"kind", "delta", "zero", "q_lo", "q_hi"},
             "flatten": {"kind"}, "relu": {"kind", "zero"},
             "maxpool": {"kind", "kernel_size", "stride"},
             "linear": None, "conv2d": None}   # layers: LAYER_KEYS + REQUANT_KEYS or LOGITS_KEYS


# ---- writing ------------------------------------------------------------------------------------
def _json_scalar(v):
    v = np.asarray(v)
    if v.dtype.kind == "f":
        return float(v)  # a float32 value is exactly representable as a JSON (double) number
    if v.dtype.kind in "iu":
        return int(v)
    raise TypeError(f"unsupported scalar dtype {v.dtype}")


def input_spec(shape, mean, std) -> dict:
    """The header's ``input`` object: per-image shape, and the standardisation (x − mean) / std
    the model was trained with (mean, std rounded to float32, as ``data.normalize`` uses them)."""
    mean, std = np.float32(mean), np.float32(std)
    if not (np.isfinite(mean) and np.isfinite(std) and std > 0):
        raise ValueError(f"input_spec: mean must be finite and std finite and > 0, got {mean}, {std}")
    return {"shape": [int(s) for s in shape], "mean": float(mean), "std": float(std)}


def _layer_fields(s: IntLayer) -> dict:
    """An IntLayer's scalars and small arrays, named as in the header (the weight codes aside).
    Per-channel arrays whose entries are all equal are stored as (1,); M₀ and shift as int32."""
    a = {"weight_bits": np.int64(s.w_bits), "weight_delta": _compact(s.w_delta),
         "bias": s.q_b.astype(np.int32),
         "in_delta": np.float32(s.in_delta), "in_zero": np.int64(s.in_zero),
         "in_lo": np.int64(s.in_lo), "in_hi": np.int64(s.in_hi),
         "stride": np.int64(s.stride), "padding": np.int64(s.padding)}
    a.update({f"out.{k}": _compact(v) for k, v in s.out.items()})
    return a


def encode_integer_model(im: IntegerModel, meta=None, encodings=None):
    """IntegerModel → (header dict, blob bytes). Weight codes go straight from ``q_w`` into the
    blob's encoding (no detour through a second packed form); ``encodings`` limits the weight
    encodings tried (default: all five)."""
    if im.input is None:
        raise ValueError("encode_integer_model: the model must record its input (im.input = "
                         "serialize.input_spec(shape, mean, std)); the file has to say how to "
                         "standardise images")
    blob = BlobWriter()
    steps = []
    for s in im.steps:
        step = {"kind": s.kind}
        if isinstance(s, IntLayer):
            step["weight"] = blob.add_codes(s.q_w, s.w_bits, encodings)
            fields = _layer_fields(s)
        else:
            fields = s.arrays()
        for name, v in sorted(fields.items()):
            v = np.asarray(v)
            step[name] = _json_scalar(v) if v.ndim == 0 else blob.add_raw(v)
        steps.append(step)
    header = {"model": FORMAT, "steps": steps, "meta": dict(meta or {}),
              "input": input_spec(im.input["shape"], im.input["mean"], im.input["std"])}
    if im.float_bytes is not None:
        header["float_bytes"] = int(im.float_bytes)
    return header, blob.getvalue()


# ---- reading: one step at a time, every field checked -------------------------------------------
class StepReader:
    """Reads the fields of ``steps[i]``; each accessor validates and names the field on error."""

    def __init__(self, i, step, blob):
        self.where, self.step, self.blob = f"steps[{i}] ({step.get('kind')})", step, blob

    def fail(self, name, message):
        return ArtifactError(f"{self.where} field '{name}': {message}")

    def int(self, name, lo, hi):
        v = self.step[name]
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise self.fail(name, f"must be an integer in [{lo}, {hi}], got {show(v)}")
        return v

    def float32(self, name, lo=0.0, hi=FLOAT32_MAX):
        """A JSON number that is a float32 value, finite, with lo < value ≤ hi."""
        v = self.step[name]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) \
            and (isinstance(v, int) or math.isfinite(v)) \
            and lo < v <= hi and float(np.float32(v)) == v         # a huge int: no isfinite
        if not ok:
            raise self.fail(name, f"must be a float32 number in ({lo:g}, {hi:g}], got {show(v)}")
        return np.float32(v)

    def tensor(self, name, dtypes=None, shapes=None, total=None):
        """A tensor reference, checked (keys, byte counts, dtype, shape) before it is decoded."""
        entry = self.step[name]
        try:
            check_entry(entry, len(self.blob))
            shape = entry_shape(entry)
        except ArtifactError as e:
            raise self.fail(name, str(e)) from None
        if dtypes is not None and (entry["encoding"] != "raw" or entry["dtype"] not in dtypes):
            raise self.fail(name, f"must be a raw tensor of dtype {' or '.join(dtypes)}, got "
                                  f"{entry['encoding']} {entry.get('dtype', '')}".rstrip())
        if shapes is not None and list(shape) not in shapes:
            raise self.fail(name, f"shape must be {' or '.join(map(str, shapes))}, got {list(shape)}")
        if total is not None:
            total.add(int(np.prod(shape)), self.where, name)
        try:
            return read_tensor(self.blob, entry)
        except ArtifactError as e:
            raise self.fail(name, str(e)) from None


class ElementBudget:
    """Running count of declared tensor elements against MAX_MODEL_ELEMENTS (checked before
    each tensor is decoded, so the declared sizes bound the memory)."""

    def __init__(self):
        self.count = 0

    def add(self, n, where, name):
        self.count += n
        if self.count > MAX_MODEL_ELEMENTS:
            raise ArtifactError(f"{where} field '{name}': the tensors declare more than "
                                f"{MAX_MODEL_ELEMENTS} elements in all; that is the limit")


def _check_keys(i, step):
    if not isinstance(step, dict):
        raise ArtifactError(f"steps[{i}] must be a JSON object, got {show(step)}")
    kind = step.get("kind")
    if not isinstance(kind, str) or kind not in STEP_KEYS:            # a list is not hashable
        raise ArtifactError(f"steps[{i}] field 'kind': must be one of {sorted(STEP_KEYS)}, "
                            f"got {show(kind)}")
    if STEP_KEYS[kind] is None:
        out = REQUANT_KEYS if "out.m0" in step else LOGITS_KEYS
        allowed = LAYER_KEYS | out
    else:
        allowed = STEP_KEYS[kind]
    if set(step) != allowed:
        missing, extra = sorted(allowed - set(step)), sorted(set(step) - allowed)
        raise ArtifactError(f"steps[{i}] ({kind}): "
                            + (f"missing field(s) {missing}" if missing else "")
                            + ("; " if missing and extra else "")
                            + (f"unknown field(s) {extra}" if extra else ""))
    return kind


class Grid:
    """What the reader knows about the codes flowing between steps: the step Δ and zero point z
    of their grid, the range [lo, hi] they can take (narrowed by a ReLU), the per-image shape."""

    def __init__(self, delta, zero, lo, hi, shape):
        self.delta, self.zero, self.lo, self.hi, self.shape = delta, zero, lo, hi, tuple(shape)


def _read_quantize_input(r: StepReader, shape):
    delta = r.float32("delta")
    q_lo = r.int("q_lo", CODE_MIN, CODE_MAX)
    q_hi = r.int("q_hi", q_lo, CODE_MAX)
    zero = r.int("zero", q_lo, q_hi)
    step = QuantizeInput(delta, zero, q_lo, q_hi)
    return step, Grid(delta, zero, q_lo, q_hi, step_shape(step, shape)[0])


def _read_relu(r: StepReader, g: Grid):
    z = r.int("zero", CODE_MIN, CODE_MAX)
    if z != g.zero:
        raise r.fail("zero", f"must be the zero point {g.zero} of the codes it receives, got {z}")
    g.lo, g.hi = max(g.lo, z), max(g.hi, z)
    return IntReLU(z)


def _read_maxpool(r: StepReader, g: Grid):
    if len(g.shape) != 3:
        raise r.fail("kind", f"max-pooling needs an image (H, W, C), it receives {list(g.shape)}")
    h, w, _ = g.shape
    k = r.int("kernel_size", 1, min(h, w, MAX_KERNEL))
    step = IntMaxPool(k, r.int("stride", 1, MAX_KERNEL))
    g.shape = step_shape(step, g.shape)[0]
    return step


def _read_flatten(r: StepReader, g: Grid):
    step = IntFlatten()
    g.shape = step_shape(step, g.shape)[0]
    return step


def _read_in_grid(r: StepReader, g: Grid):
    """(in_delta, in_zero, in_lo, in_hi): they must describe the codes that actually arrive."""
    in_lo = r.int("in_lo", CODE_MIN, CODE_MAX)
    in_hi = r.int("in_hi", in_lo, CODE_MAX)
    if not in_lo <= g.lo <= g.hi <= in_hi:
        raise r.fail("in_lo", f"[in_lo, in_hi] = [{in_lo}, {in_hi}] must contain the codes the "
                              f"layer receives, [{g.lo}, {g.hi}]")
    in_zero = r.int("in_zero", in_lo, in_hi)
    if in_zero != g.zero:
        raise r.fail("in_zero", f"must be the zero point {g.zero} of the codes it receives, "
                                f"got {in_zero}")
    in_delta = r.float32("in_delta")
    if in_delta != g.delta:
        raise r.fail("in_delta", f"must be the step {float(g.delta)!r} of the codes it receives, "
                                 f"got {float(in_delta)!r}")
    return in_delta, in_zero, in_lo, in_hi


def _read_geometry(r: StepReader, g: Grid):
    """(weight shape, weight bits, stride, padding), checked against the incoming shape —
    from the header alone, before any weight is decoded."""
    bits = r.int("weight_bits", 2, 16)
    entry = r.step["weight"]
    if not isinstance(entry, dict) or entry.get("encoding") not in BASE_ENCODINGS + HUFFMAN_ENCODINGS:
        raise r.fail("weight", "must be a packed, sparse, sparse_gaps, huffman or sparse_huffman "
                               "tensor reference")
    if entry.get("bits") != bits:
        raise r.fail("weight", f"bits must equal weight_bits = {bits}, got {show(entry.get('bits'))}")
    try:
        w_shape = entry_shape(entry)
    except ArtifactError as e:
        raise r.fail("weight", str(e)) from None
    if r.step["kind"] == "linear":
        if len(g.shape) != 1 or len(w_shape) != 2 or w_shape[1] != g.shape[0]:
            raise r.fail("weight", f"a linear layer receiving {list(g.shape)} needs shape "
                                   f"[O, {int(np.prod(g.shape))}] (flatten an image first), "
                                   f"got {list(w_shape)}")
        return w_shape, bits, r.int("stride", 1, 1), r.int("padding", 0, 0)
    if len(g.shape) != 3 or len(w_shape) != 4 or w_shape[1] != g.shape[2] \
            or w_shape[2] != w_shape[3] or w_shape[2] > MAX_KERNEL:
        raise r.fail("weight", f"a conv2d layer receiving (H, W, C) = {list(g.shape)} needs "
                               f"shape [O, {g.shape[-1]}, k, k] with k ≤ {MAX_KERNEL}, "
                               f"got {list(w_shape)}")
    k = w_shape[2]
    stride, padding = r.int("stride", 1, MAX_KERNEL), r.int("padding", 0, k - 1)
    h, w, _ = g.shape
    if min(h, w) + 2 * padding < k:
        raise r.fail("weight", f"kernel {k} is larger than the padded input {h}×{w} "
                               f"(padding {padding})")
    return w_shape, bits, stride, padding


def _check_worst_accumulator(r: StepReader, w_shape, bits, in_grid):
    """Worst |acc| from the header alone: fan-in · 2^(b−1) · max|q_x − z_x| must be < 2^31
    (the bias, an int32, is bounded with the actual weights by IntLayer)."""
    _, in_zero, in_lo, in_hi = in_grid
    fan_in = int(np.prod(w_shape[1:]))
    x_max = max(abs(in_lo - in_zero), abs(in_hi - in_zero))
    worst = fan_in * 2 ** (bits - 1) * x_max
    if worst >= INT32_LIMIT:
        raise r.fail("weight", f"worst-case accumulator {fan_in} (fan-in) × 2^{bits - 1} × "
                               f"{x_max} = {worst} does not fit in int32 (< 2^31)")


def _read_logits_out(r: StepReader, o, budget):
    scale = r.tensor("out.out_scale", ("<f4",), [[1], [o]], budget)
    if not np.all(np.isfinite(scale) & (scale > 0) & (scale <= MAX_OUT_SCALE)):
        raise r.fail("out.out_scale", f"every scale must be finite, > 0 and ≤ {MAX_OUT_SCALE:.3g}")
    return {"out_scale": np.broadcast_to(scale, (o,)).copy()}


def _read_requantize_out(r: StepReader, o, budget):
    """M₀, shift and the output grid of a requantising layer."""
    m0 = r.tensor("out.m0", ("<i4",), [[1], [o]], budget)
    shift = r.tensor("out.shift", ("<i4",), [[1], [o]], budget)
    if np.any((m0 < 0) | (m0 >= 2 ** M0_BITS)):
        raise r.fail("out.m0", f"every M₀ must be in [0, 2^{M0_BITS}), got [{m0.min()}, {m0.max()}]")
    if np.any((shift < 1) | (shift > MAX_SHIFT)):
        raise r.fail("out.shift", f"every shift must be in [1, {MAX_SHIFT}], got "
                                  f"[{shift.min()}, {shift.max()}]")
    out_lo = r.int("out.out_lo", CODE_MIN, CODE_MAX)
    out_hi = r.int("out.out_hi", out_lo, CODE_MAX)
    out_zero = r.int("out.out_zero", CODE_MIN, out_hi)
    relu = r.int("out.relu", 0, 1)
    if relu and out_lo < out_zero:
        raise r.fail("out.out_lo", f"with out.relu = 1 it must be ≥ out.out_zero = {out_zero}")
    return {"m0": m0, "shift": shift, "out_delta": r.float32("out.out_delta"),
            "out_zero": out_zero, "out_lo": out_lo, "out_hi": out_hi, "relu": relu}


def _read_layer(r: StepReader, g: Grid, last: bool, budget, gemm):
    """A linear/conv2d step: everything the header says is checked first (grids, shapes, the
    worst-case accumulator), then the tensors are decoded (each against the element budget),
    then the exact accumulator bound and the per-image size. Updates the grid ``g``."""
    logits = "out.out_scale" in r.step
    if logits != last:
        raise r.fail("out.out_scale" if logits else "out.m0",
                     "only the last step returns logits (out.out_scale); every other layer "
                     "requantises (out.m0, out.shift, ...)")
    in_grid = _read_in_grid(r, g)
    w_shape, bits, stride, padding = _read_geometry(r, g)
    _check_worst_accumulator(r, w_shape, bits, in_grid)
    o = w_shape[0]
    q_w = r.tensor("weight", total=budget)
    q_b = r.tensor("bias", ("<i4",), [[o]], budget)
    w_delta = r.tensor("weight_delta", ("<f4",), [[1], [o]], budget)
    if not np.all(np.isfinite(w_delta) & (w_delta > 0)):
        raise r.fail("weight_delta", "every Δ_w must be finite and > 0")
    out = _read_logits_out(r, o, budget) if logits else _read_requantize_out(r, o, budget)
    try:
        step = IntLayer(r.step["kind"], (q_w, bits, w_delta), q_b, in_grid, out, stride, padding,
                        gemm)
    except OverflowError:
        raise r.fail("bias", "the accumulator bound Σ|q_w|·max|q_x − z_x| + |q_b| of this "
                             "layer's weights and bias does not fit in int32") from None
    shape, work = step_shape(step, g.shape)
    if max(work, int(np.prod(shape))) > MAX_SAMPLE_ELEMENTS:
        raise r.fail("weight", f"one image would need {max(work, int(np.prod(shape)))} elements "
                               f"of activations; at most {MAX_SAMPLE_ELEMENTS} are accepted")
    g.shape = shape
    if not logits:   # the codes now live on the output grid, in [out_lo, out_hi]
        g.delta, g.zero = out["out_delta"], out["out_zero"]
        g.lo, g.hi = out["out_lo"], out["out_hi"]
    return step


def _read_input(header):
    spec = header["input"]
    if not isinstance(spec, dict) or set(spec) != {"shape", "mean", "std"}:
        raise ArtifactError(f"header field 'input': must be an object with exactly 'shape', "
                            f"'mean' and 'std', got {show(spec)}")
    try:
        shape = entry_shape(spec, "header field 'input.shape'")
    except ArtifactError as e:
        raise ArtifactError(str(e)) from None
    if len(shape) not in (1, 3) or int(np.prod(shape)) > MAX_SAMPLE_ELEMENTS:
        raise ArtifactError(f"header field 'input.shape': must be [D] or [C, H, W] with at most "
                            f"{MAX_SAMPLE_ELEMENTS} elements, got {list(shape)}")
    r = StepReader(0, spec, b"")
    r.where = "header"
    mean = r.float32("mean", -FLOAT32_MAX - 1.0)
    std = r.float32("std")
    return {"shape": list(shape), "mean": float(mean), "std": float(std)}


def decode_integer_model(header, blob, gemm="auto") -> IntegerModel:
    """(header, blob) → IntegerModel, each field validated (see the module docstring). Linear in
    the number of steps; memory bounded by the (capped) declared sizes."""
    if not isinstance(header, dict):
        raise ArtifactError(f"header must be a JSON object, got {show(header)}")
    keys = set(header)
    if not HEADER_KEYS <= keys <= HEADER_KEYS | OPTIONAL_HEADER_KEYS:
        raise ArtifactError(f"header: fields must be {sorted(HEADER_KEYS)} (and optionally "
                            f"{sorted(OPTIONAL_HEADER_KEYS)}), got {sorted(keys)}")
    if header["model"] != FORMAT:
        raise ArtifactError(f"header field 'model': must be {FORMAT!r}, got {show(header['model'])}")
    if not isinstance(header["meta"], dict):
        raise ArtifactError(f"header field 'meta': must be a JSON object, got {show(header['meta'])}")
    float_bytes = None
    if "float_bytes" in header:
        float_bytes = json_int(header["float_bytes"], "header field 'float_bytes' must be",
                               0, 2 ** 53)
    spec = _read_input(header)
    steps_in = header["steps"]
    if not isinstance(steps_in, list) or not 2 <= len(steps_in) <= MAX_STEPS:
        raise ArtifactError(f"header field 'steps': must be a list of 2 to {MAX_STEPS} steps, got "
                            + (f"{len(steps_in)}" if isinstance(steps_in, list) else show(steps_in)))
    _check_blob_tiling(steps_in, len(blob))
    budget, steps, grid = ElementBudget(), [], None
    for i, st in enumerate(steps_in):
        kind = _check_keys(i, st)
        r = StepReader(i, st, blob)
        if (kind == "quantize_input") != (i == 0):
            raise r.fail("kind", "the first step, and only the first, is quantize_input")
        if kind == "quantize_input":
            step, grid = _read_quantize_input(r, spec["shape"])
        elif kind in ("linear", "conv2d"):
            step = _read_layer(r, grid, i == len(steps_in) - 1, budget, gemm)
        else:
            step = {"relu": _read_relu, "maxpool": _read_maxpool, "flatten": _read_flatten}[kind](r, grid)
        steps.append(step)
    if not isinstance(steps[-1], IntLayer) or steps[-1].kind != "linear":
        raise ArtifactError(f"steps[{len(steps) - 1}] ({steps[-1].kind}): the last step must be a "
                            f"linear layer returning the logits (out.out_scale)")
    return IntegerModel(steps, float_bytes, input=spec)


def _check_blob_tiling(steps, blob_size):
    """The tensors must cover the blob back to back, in header order, without gaps or overlaps:
    every byte of the file has one meaning (and no tensor can be read twice to inflate sizes)."""
    end = 0
    for i, st in enumerate(steps):
        if not isinstance(st, dict):
            continue                      # reported with its field names by _check_keys
        for name in (["weight"] if "weight" in st else []) + sorted(k for k in st if k != "weight"):
            ref = st[name]
            if isinstance(ref, dict) and "offset" in ref:
                if ref["offset"] != end or isinstance(ref["offset"], bool):
                    raise ArtifactError(f"steps[{i}] ({st.get('kind')}) field '{name}': offset "
                                        f"must be {end} (tensors lie back to back in header "
                                        f"order), got {show(ref['offset'])}")
                n = ref.get("nbytes")
                if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                    raise ArtifactError(f"steps[{i}] ({st.get('kind')}) field '{name}': nbytes "
                                        f"must be an integer ≥ 0, got {show(n)}")
                end += n
    if end != blob_size:
        raise ArtifactError(f"blob: the tensors cover {end} bytes but the blob holds {blob_size}")


# ---- files --------------------------------------------------------------------------------------
def integer_model_bytes(im: IntegerModel, meta=None, encodings=None) -> bytes:
    """The artifact file's bytes. By default three files are built and the shortest kept (the
    earlier on a tie): the version-2 encodings only; each tensor's smallest of all five; each
    tensor's smaller of the two Huffman encodings. The per-tensor choice estimates each
    tensor's deflated size alone, while the file deflates the blob as a whole, so only the
    whole files' sizes can promise that Huffman coding never makes a file larger than its
    version-2 form. ``encodings`` forces a set of weight encodings instead."""
    if encodings is not None:
        return _file_bytes(*encode_integer_model(im, meta, encodings))
    best = _file_bytes(*encode_integer_model(im, meta, BASE_ENCODINGS))
    for allowed in (None, HUFFMAN_ENCODINGS):
        header, blob = encode_integer_model(im, meta, allowed)
        if uses_huffman(header):
            data = _file_bytes(header, blob)
            best = data if len(data) < len(best) else best
    return best


def _file_bytes(header, blob) -> bytes:
    return artifact_bytes(versioned(header), blob)


def save_integer_model(im: IntegerModel, path, meta=None, encodings=None) -> Path:
    """Write ``im`` as one artifact file (atomic, durable, deterministic, checksummed); see
    :func:`integer_model_bytes` for the choice of encodings."""
    return write_file_bytes(path, integer_model_bytes(im, meta, encodings))


def load_integer_model(path, gemm="auto") -> IntegerModel:
    """Read, validate and rebuild an integer model from an artifact file."""
    header, blob = read_artifact(path)
    try:
        return decode_integer_model(header, blob, gemm)
    except ArtifactError as e:
        raise ArtifactError(f"{path}: {e}") from None


def read_header(path) -> dict:
    """The header of a valid artifact (the whole file is validated first, so a caller such as
    ``info`` can trust every field)."""
    header, blob = read_artifact(path)
    try:
        decode_integer_model(header, blob)
    except ArtifactError as e:
        raise ArtifactError(f"{path}: {e}") from None
    return header


def integer_model_size(im: IntegerModel, meta=None) -> int:
    """Bytes of the artifact file ``im`` would be written as (everything in the file counted)."""
    return len(integer_model_bytes(im, meta))
