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
    if h["format"] != "minicompress-integer-model" or h["format_version"] not in (2, 3):
        raise ValueError("not a version-2 or version-3 minicompress artifact")
    return h, blob


def standardize(h, images):
    """x = (images − mean) / std in float32, with mean and std rounded to float32."""
    mean, std = np.float32(h["input"]["mean"]), np.float32(h["input"]["std"])
    return ((np.asarray(images, np.float32) - mean) / std).astype(np.float32)


def unpack(data, bits, count):
    u = np.unpackbits(np.frombuffer(data, np.uint8))[:count * bits].reshape(count, bits)
    u = u.astype(np.int64) @ (1 << np.arange(bits - 1, -1, -1, dtype=np.int64))
    return np.where(u >= 1 << (bits - 1), u - (1 << bits), u)


def huffman_block(data, lo, hi, count):
    """``count`` values from a Huffman block (FORMAT.md section 4): the 4-bit code-length table
    of the values lo..hi, then the canonical codes, read one bit at a time (slow but obvious)."""
    k = hi - lo + 1
    nibbles = np.frombuffer(data[:(k + 1) // 2], np.uint8)
    lengths = [int(v) for b in nibbles for v in (b >> 4, b & 15)][:k]
    used = [l for l in lengths if l]
    if not used or (len(used) == 1 and used[0] != 1) or \
            (len(used) > 1 and sum(2 ** (15 - l) for l in used) != 2 ** 15):
        raise ValueError("Huffman code lengths are not a prefix code (Kraft sum must be 1)")
    n_len = [lengths.count(l) if l else 0 for l in range(16)]
    first, code = [0] * 16, 0
    for l in range(2, 16):                  # first(l) = 2·(first(l−1) + N_{l−1})
        first[l] = code = 2 * (code + n_len[l - 1])
    symbol_of, next_code = {}, list(first)
    for j, l in enumerate(lengths):         # within a length, codes in increasing j
        if l:
            symbol_of[(l, next_code[l])] = lo + j
            next_code[l] += 1
    bits = np.unpackbits(np.frombuffer(data[(k + 1) // 2:], np.uint8))
    out, pos = [], 0
    for _ in range(count):
        l = c = 0
        while (l, c) not in symbol_of:      # read until the bits are a code
            if l == 15 or pos >= len(bits):
                raise ValueError("Huffman bitstream: no code here, or truncated")
            c, l, pos = 2 * c + int(bits[pos]), l + 1, pos + 1
        out.append(symbol_of[(l, c)])
    if len(data) - (k + 1) // 2 != (pos + 7) // 8 or bits[pos:].any():
        raise ValueError("Huffman bitstream: wrong length or non-zero padding")
    return np.array(out, np.int64)


def positions(index):
    """sparse_gaps index bytes → the marked positions."""
    gaps = np.asarray(index, np.int64)
    return (np.cumsum(np.where(gaps == 255, 255, gaps + 1)) - 1)[gaps != 255]


def tensor(blob, ref):
    data = blob[ref["offset"]:ref["offset"] + ref["nbytes"]]
    shape = tuple(ref["shape"])
    n = int(np.prod(shape))
    if ref["encoding"] == "raw":
        return np.frombuffer(data, np.dtype(ref["dtype"])).reshape(shape)
    if ref["encoding"] == "packed":
        return unpack(data, ref["bits"], n).reshape(shape)
    if ref["encoding"] == "huffman":
        return huffman_block(data, ref["lo"], ref["hi"], n).reshape(shape)
    if ref["encoding"] == "sparse_huffman":         # Huffman-coded gap bytes, then codes
        split = ref["index_nbytes"]
        index = huffman_block(data[:split], ref["index_lo"], ref["index_hi"], ref["index_bytes"])
        out = np.zeros(n, np.int64)
        out[positions(index)] = huffman_block(data[split:], ref["lo"], ref["hi"], ref["nnz"])
        return out.reshape(shape)
    if ref["encoding"] == "sparse":                 # bitmask, then the non-zero codes
        split = ref["mask_bytes"]
        where = np.flatnonzero(np.unpackbits(np.frombuffer(data[:split], np.uint8))[:n])
    else:                                           # "sparse_gaps": gap bytes, then the codes
        split = ref["index_bytes"]
        where = positions(np.frombuffer(data[:split], np.uint8))
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
