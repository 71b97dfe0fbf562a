"""Integer model ⇄ artifact file (the format of ``artifact.py``, specified in docs/FORMAT.md).

``IntegerModel.to_arrays()`` gives plain arrays per step; here each step becomes a JSON object in
the header — small scalars (steps Δ, zero points, bit widths, strides) as JSON numbers, every
array as a reference into the blob — and each weight tensor is stored with the smaller of the
``packed`` and ``sparse`` encodings, so a pruned layer pays for its non-zeros plus one bit per
weight, not for its zeros.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from .artifact import ArtifactError, BlobWriter, read_artifact, read_tensor, write_artifact
from .quantize.bitpack import pack_bits, unpack_bits
from .quantize.integer import IntegerModel

_WEIGHT = "weight_packed"


def _json_scalar(v):
    v = np.asarray(v)
    if v.dtype.kind == "f":
        return float(v)  # a float32 value is exactly representable as a JSON (double) number
    if v.dtype.kind in "iu":
        return int(v)
    raise TypeError(f"unsupported scalar dtype {v.dtype}")


def encode_integer_model(im: IntegerModel, meta=None):
    """IntegerModel → (header dict, blob bytes)."""
    arrays = im.to_arrays()
    blob = BlobWriter()
    steps = []
    for i in range(int(arrays["num_steps"])):
        prefix = f"steps.{i}."
        fields = {k[len(prefix):]: np.asarray(v) for k, v in arrays.items() if k.startswith(prefix)}
        step = {"kind": str(fields.pop("kind"))}
        if _WEIGHT in fields:
            shape = [int(s) for s in fields["weight_shape"]]
            bits = int(fields["weight_bits"])
            codes = unpack_bits(fields.pop(_WEIGHT), bits, int(np.prod(shape)), signed=True)
            step["weight"] = blob.add_codes(codes.reshape(shape), bits)
            fields.pop("weight_shape")
        for name, v in sorted(fields.items()):
            step[name] = _json_scalar(v) if v.ndim == 0 else blob.add_raw(v)
        steps.append(step)
    header = {"model": str(arrays["format"]), "steps": steps, "meta": dict(meta or {})}
    if "float_bytes" in arrays:
        header["float_bytes"] = int(arrays["float_bytes"])
    return header, blob.getvalue()


def decode_integer_model(header, blob, gemm="auto") -> IntegerModel:
    """(header, blob) → IntegerModel, via the plain-array form ``IntegerModel.from_arrays``."""
    try:
        d = {"format": np.array(header["model"]), "num_steps": np.int64(len(header["steps"]))}
        if "float_bytes" in header:
            d["float_bytes"] = np.int64(header["float_bytes"])
        for i, step in enumerate(header["steps"]):
            prefix = f"steps.{i}."
            d[prefix + "kind"] = np.array(step["kind"])
            for name, v in step.items():
                if name == "kind":
                    continue
                if name == "weight":
                    codes = read_tensor(blob, v)
                    d[prefix + _WEIGHT] = pack_bits(codes, int(v["bits"]), signed=True)
                    d[prefix + "weight_shape"] = np.array(codes.shape, np.int64)
                elif isinstance(v, dict):
                    d[prefix + name] = read_tensor(blob, v)
                else:
                    d[prefix + name] = np.asarray(v)
        return IntegerModel.from_arrays(d, gemm=gemm)
    except ArtifactError:
        raise
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise ArtifactError(f"artifact header does not describe a valid integer model: "
                            f"{type(e).__name__}: {e}") from None


def save_integer_model(im: IntegerModel, path, meta=None) -> Path:
    """Write ``im`` as one artifact file (atomic, deterministic, checksummed)."""
    header, blob = encode_integer_model(im, meta)
    return write_artifact(path, header, blob)


def load_integer_model(path, gemm="auto") -> IntegerModel:
    """Read, validate and rebuild an integer model from an artifact file."""
    header, blob = read_artifact(path)
    return decode_integer_model(header, blob, gemm)


def read_header(path) -> dict:
    return read_artifact(path)[0]


def integer_model_size(im: IntegerModel, meta=None) -> int:
    """Bytes of the artifact file ``im`` would be written as (everything in the file counted)."""
    with tempfile.TemporaryDirectory() as d:
        return save_integer_model(im, Path(d) / "m.npz", meta).stat().st_size
