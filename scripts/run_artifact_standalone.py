"""Run a minicompress artifact with NumPy alone — an independent reader of docs/FORMAT.md.

    python scripts/run_artifact_standalone.py model.npz images.npy      # prints predicted classes

``images.npy``: float images in [0, 1], shaped (N, C, H, W) (or (N, D)); they are standardised
with the mean and std recorded in the file. It does not import minicompress: everything it does
is written in docs/FORMAT.md. It checks only what it needs to run a well-formed file (the full
validation a reader must do is in the document, and minicompress does it). The test suite checks
that its logits equal minicompress's integer model bit for bit and that its accuracy equals
``python -m minicompress evaluate``, so the document cannot drift away from the code.
"""
import hashlib
import json
import sys

import numpy as np


def read(path):
    with np.load(path, allow_pickle=False) as f:
        if sorted(f.files) != ["blob", "checksum", "header"]:
            raise ValueError(f"unexpected members {sorted(f.files)}")
        header, blob, digest = (f[k].tobytes() for k in ("header", "blob", "checksum"))
    if hashlib.sha256(header + blob).digest() != digest:
        raise ValueError("checksum mismatch")
    h = json.loads(header)
    if h["format"] != "minicompress-integer-model" or h["format_version"] != 2:
        raise ValueError("not a version-2 minicompress artifact")
    return h, blob


def standardize(h, images):
    """x = (images − mean) / std in float32, with mean and std rounded to float32."""
    mean, std = np.float32(h["input"]["mean"]), np.float32(h["input"]["std"])
    return ((np.asarray(images, np.float32) - mean) / std).astype(np.float32)


def unpack(data, bits, count):
    u = np.unpackbits(np.frombuffer(data, np.uint8))[:count * bits].reshape(count, bits)
    u = u.astype(np.int64) @ (1 << np.arange(bits - 1, -1, -1, dtype=np.int64))
    return np.where(u >= 1 << (bits - 1), u - (1 << bits), u)


def tensor(blob, ref):
    data = blob[ref["offset"]:ref["offset"] + ref["nbytes"]]
    shape = tuple(ref["shape"])
    n = int(np.prod(shape))
    if ref["encoding"] == "raw":
        return np.frombuffer(data, np.dtype(ref["dtype"])).reshape(shape)
    if ref["encoding"] == "packed":
        return unpack(data, ref["bits"], n).reshape(shape)
    if ref["encoding"] == "sparse":                 # bitmask, then the non-zero codes
        split = ref["mask_bytes"]
        where = np.flatnonzero(np.unpackbits(np.frombuffer(data[:split], np.uint8))[:n])
    else:                                           # "sparse_gaps": gap bytes, then the codes
        split = ref["index_bytes"]
        gaps = np.frombuffer(data[:split], np.uint8).astype(np.int64)
        where = (np.cumsum(np.where(gaps == 255, 255, gaps + 1)) - 1)[gaps != 255]
    out = np.zeros(n, np.int64)
    out[where] = unpack(data[split:], ref["bits"], ref["nnz"])
    return out.reshape(shape)


def windows(x, k, s):
    """(N, H, W, C) → (N, OH, OW, k, k, C) by explicit offsets (slow but obvious)."""
    n, h, w, c = x.shape
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    out = np.empty((n, oh, ow, k, k, c), x.dtype)
    for i in range(k):
        for j in range(k):
            out[:, :, :, i, j, :] = x[:, i:i + s * (oh - 1) + 1:s, j:j + s * (ow - 1) + 1:s, :]
    return out


def run(h, blob, x):
    a = x.astype(np.float32)
    for st in h["steps"]:
        kind = st["kind"]
        if kind == "quantize_input":
            q = np.rint(a / np.float32(st["delta"])) + st["zero"]
            a = np.clip(q, st["q_lo"], st["q_hi"]).astype(np.int64)
            if a.ndim == 4:
                a = a.transpose(0, 2, 3, 1)
        elif kind == "flatten":
            a = (a.transpose(0, 3, 1, 2) if a.ndim == 4 else a).reshape(len(a), -1)
        elif kind == "relu":
            a = np.maximum(a, st["zero"])
        elif kind == "maxpool":
            a = windows(a, st["kernel_size"], st["stride"]).max(axis=(3, 4))
        elif kind in ("linear", "conv2d"):
            w = tensor(blob, st["weight"]).astype(np.int64)
            b = tensor(blob, st["bias"]).astype(np.int64)
            xc = a.astype(np.int64) - st["in_zero"]
            if kind == "linear":
                acc = xc @ w.T + b
            else:
                p, k = st["padding"], w.shape[2]
                xc = np.pad(xc, ((0, 0), (p, p), (p, p), (0, 0)))
                cols = windows(xc, k, st["stride"])                    # (N, OH, OW, k, k, C)
                acc = np.einsum("nhwijc,ocij->nhwo", cols, w) + b
            if "out.m0" in st:
                # int64 throughout: M0 and n are stored as int32, and 2^(n-1) overflows int32
                m0 = tensor(blob, st["out.m0"]).astype(np.int64)
                sh = tensor(blob, st["out.shift"]).astype(np.int64)
                y = ((acc * m0 + np.left_shift(np.ones_like(sh), sh - 1)) >> sh) + st["out.out_zero"]
                a = np.clip(y, st["out.out_lo"], st["out.out_hi"])
            else:
                a = acc.astype(np.float32) * tensor(blob, st["out.out_scale"]).astype(np.float32)
        else:
            raise ValueError(f"unknown step kind {kind!r}")
    return a


def predict(h, blob, images):
    """Classes of raw images in [0, 1]: argmax of the logits, a tie going to the lowest index."""
    return run(h, blob, standardize(h, images)).argmax(axis=1)


if __name__ == "__main__":
    header, blob = read(sys.argv[1])
    print(predict(header, blob, np.load(sys.argv[2], allow_pickle=False)))
