"""How big and how costly a model really is: parameters, non-zeros, MACs, bytes, latency.

"My pruned model is not smaller or faster" is the usual complaint about pruning toolkits, so
every stage of the pipeline is measured here, on what the model actually stores and computes.

Sparse storage — why bitmask + values, and when CSR
---------------------------------------------------
A pruned weight tensor with n entries of which nnz are non-zero can be stored as

* **bitmask + values**: one bit per entry saying "non-zero here", then the nnz float32 values in
  C order:  ⌈n/8⌉ + 4·nnz bytes. Overhead: 1 bit per entry whatever the sparsity.
* **CSR** (rows = output units, i.e. W viewed as (O, C·k·k)): the nnz values, one column index per
  value (uint8/uint16/uint32, the smallest that fits the number of columns) and O + 1 row
  pointers:  4·nnz + b·nnz + p·(O + 1) bytes. Overhead: b bytes per *kept* entry.

With uint16 column indices (b = 2) the bitmask wins while ⌈n/8⌉ < 2·nnz, i.e. at density above
1/16 ≈ 6 % (sparsity below ≈ 94 %), and CSR wins beyond. ``format="auto"`` (the default) stores
each tensor in whichever of the two is smaller, or plain dense float32 when that is smaller still
(a dense layer must not grow) — what a real exporter does — and the chosen format
costs one flag byte plus the shape (4 bytes per dimension), counted too. Biases are stored dense.
:func:`encode_sparse` / :func:`decode_sparse` really build these arrays (the byte count is their
``nbytes``, not a formula), and the round trip is tested.
"""
from __future__ import annotations

import time

import numpy as np

from .nn import Conv2d, Linear, Sequential, WeightedLayer
from .nn.checks import check_module

SPARSE_FORMATS = ("auto", "bitmask", "csr", "dense")


# ---- counts ---------------------------------------------------------------------------------
def _layers(model):
    return [(n, m) for n, m in check_module(model).named_modules()
            if isinstance(m, WeightedLayer)]


def count_parameters(model):
    """Number of weight and bias entries of the Linear/Conv2d layers (mask buffers excluded)."""
    return int(sum(m.weight.data.size + (m.bias.data.size if m.bias is not None else 0)
                   for _, m in _layers(model)))


def count_nonzeros(model):
    """Non-zero entries of the *effective* weights (W_eff, after masks) and of the biases."""
    total = 0
    for _, m in _layers(model):
        total += int(np.count_nonzero(m.effective_weight()))
        if m.bias is not None:
            total += int(np.count_nonzero(m.bias.data))
    return total


def layer_shapes(model, input_shape):
    """``[(name, module, input shape, output shape)]`` for one sample of ``input_shape`` (C, H, W),
    found by running each child of a Sequential on zeros."""
    if not isinstance(model, Sequential):
        raise TypeError(f"layer_shapes: expected a Sequential model, got {type(model).__name__}")
    x = np.zeros((1, *input_shape), np.float32)
    out = []
    was_training = model.training
    model.eval()
    for name, m in model.named_children():
        y = m.forward(x)
        out.append((name, m, x.shape[1:], y.shape[1:]))
        x = y
    model.train(was_training)
    return out


def macs(model, input_shape, sparse=False):
    """Multiply-accumulates of one forward pass for one sample, per layer and in total.

    Linear: in·out;  Conv2d: O·C·k²·OH·OW.  With ``sparse=True`` only non-zero effective weights
    count (what a sparse kernel would do). Returns ``(total, {layer: macs})``.
    """
    per = {}
    for name, m, _, out_shape in layer_shapes(model, input_shape):
        if isinstance(m, (Linear, Conv2d)):
            w = m.effective_weight()
            count = int(np.count_nonzero(w)) if sparse else w.size
            positions = int(np.prod(out_shape[1:])) if isinstance(m, Conv2d) else 1
            per[name] = count * positions
    return int(sum(per.values())), per


# ---- bytes ----------------------------------------------------------------------------------
def _index_dtype(limit):
    for dt in (np.uint8, np.uint16, np.uint32):
        if limit <= np.iinfo(dt).max:
            return dt
    return np.uint64


def encode_sparse(w, format="auto"):
    """Encode a weight tensor: ``{"format", "shape", ...arrays}`` (see the module docstring)."""
    if format not in SPARSE_FORMATS:
        raise ValueError(f"encode_sparse: format must be one of {list(SPARSE_FORMATS)}, got {format!r}")
    w = np.asarray(w, dtype=np.float32)
    if format == "auto":
        options = [encode_sparse(w, f) for f in ("dense", "bitmask", "csr")]
        return min(options, key=encoded_bytes)  # first (dense) wins ties
    shape = np.asarray(w.shape, np.int32)
    if format == "dense":
        return {"format": "dense", "shape": shape, "values": w.ravel().copy()}
    if format == "bitmask":
        flat = w.ravel()
        nz = flat != 0
        return {"format": "bitmask", "shape": shape, "bits": np.packbits(nz),
                "values": flat[nz]}
    mat = w.reshape(w.shape[0], -1) if w.ndim > 1 else w.reshape(1, -1)
    rows, cols = np.nonzero(mat)  # C order: row by row
    indptr = np.zeros(mat.shape[0] + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=mat.shape[0]), out=indptr[1:])
    return {"format": "csr", "shape": shape, "values": mat[rows, cols],
            "indices": cols.astype(_index_dtype(mat.shape[1] - 1)),
            "indptr": indptr.astype(_index_dtype(len(rows)))}


def decode_sparse(enc):
    """Inverse of :func:`encode_sparse`: the dense float32 tensor."""
    shape = tuple(int(s) for s in enc["shape"])
    n = int(np.prod(shape))
    if enc["format"] == "dense":
        return enc["values"].reshape(shape).copy()
    if enc["format"] == "bitmask":
        nz = np.unpackbits(enc["bits"], count=n).astype(bool)
        flat = np.zeros(n, np.float32)
        flat[nz] = enc["values"]
        return flat.reshape(shape)
    if enc["format"] == "csr":
        rows_n = shape[0] if len(shape) > 1 else 1
        mat = np.zeros((rows_n, n // rows_n), np.float32)
        counts = np.diff(enc["indptr"].astype(np.int64))
        rows = np.repeat(np.arange(rows_n), counts)
        mat[rows, enc["indices"].astype(np.int64)] = enc["values"]
        return mat.reshape(shape)
    raise ValueError(f"decode_sparse: unknown format {enc['format']!r}; "
                     f"valid: 'bitmask', 'csr', 'dense'")


def encoded_bytes(enc):
    """Bytes of an encoding: its arrays plus one flag byte for the format."""
    return 1 + int(sum(v.nbytes for k, v in enc.items() if k != "format"))


def sparse_bytes(w, format="auto"):
    """Bytes of ``w`` stored sparse (see the module docstring)."""
    return encoded_bytes(encode_sparse(w, format))


def model_bytes(model, format="auto"):
    """Total storage of the model: effective weights sparse-encoded, biases dense float32."""
    total = 0
    for _, m in _layers(model):
        total += sparse_bytes(m.effective_weight(), format)
        if m.bias is not None:
            total += m.bias.data.size * 4
    return int(total)


def dense_bytes(model):
    """float32 bytes of all weights and biases (4 per parameter)."""
    return 4 * count_parameters(model)


# ---- time -----------------------------------------------------------------------------------
def median_seconds(fn, x, repeats=20, warmup=3):
    """Median wall-clock seconds of ``fn(x)`` over ``repeats`` calls, after ``warmup`` untimed ones."""
    if repeats < 1:
        raise ValueError(f"median_seconds: repeats must be ≥ 1, got {repeats!r}")
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def latency(model, x, repeats=20, warmup=3):
    """Median wall-clock seconds of ``model(x)`` in eval mode (``warmup`` untimed calls first)."""
    check_module(model)
    if repeats < 1:
        raise ValueError(f"latency: repeats must be ≥ 1, got {repeats!r}")
    was_training = model.training
    model.eval()
    try:
        return median_seconds(model, x, repeats, warmup)
    finally:
        model.train(was_training)


def report(model, input_shape, x=None, repeats=20):
    """Everything at once: parameters, non-zeros, dense and sparse MACs, dense and sparse bytes,
    and (when a batch ``x`` is given) the median forward latency in seconds."""
    out = {
        "parameters": count_parameters(model),
        "nonzeros": count_nonzeros(model),
        "macs": macs(model, input_shape)[0],
        "sparse_macs": macs(model, input_shape, sparse=True)[0],
        "dense_bytes": dense_bytes(model),
        "sparse_bytes": model_bytes(model),
    }
    if x is not None:
        out["latency_s"] = latency(model, x, repeats=repeats)
    return out
