"""Packing n-bit integer codes into bytes, so a 4-bit weight really takes half a byte.

An n-bit code (signed in two's complement, or unsigned) is written as its n lowest bits, and
the bit streams of all codes are concatenated and cut into bytes (``np.packbits``, big-endian
bit order inside a byte, the last byte zero-padded). So int4 stores two codes per byte, int2
four, int8 one, and any n in [1, 16] stores exactly ⌈N·n/8⌉ bytes for N codes.

Example, n = 4, codes [−1, 3]: two's-complement nibbles 1111 and 0011 → one byte 0xF3.
"""
from __future__ import annotations

import numpy as np

MAX_PACK_BITS = 16


def _check_bits(n_bits, where):
    if isinstance(n_bits, bool) or not isinstance(n_bits, (int, np.integer)) or not (
            1 <= n_bits <= MAX_PACK_BITS):
        raise ValueError(f"{where}: n_bits must be an integer in [1, {MAX_PACK_BITS}], got {n_bits!r}")
    return int(n_bits)


def code_range(n_bits, signed):
    """The codes an n-bit field holds: [−2^(n−1), 2^(n−1)−1] signed, [0, 2^n−1] unsigned."""
    n = _check_bits(n_bits, "code_range")
    return (-(2 ** (n - 1)), 2 ** (n - 1) - 1) if signed else (0, 2 ** n - 1)


def pack_bits(codes, n_bits, signed=True):
    """Integer codes (any shape) → uint8 array of ⌈size·n/8⌉ bytes.

    A code outside the n-bit range is an error (never silently wrapped).
    """
    n = _check_bits(n_bits, "pack_bits")
    codes = np.asarray(codes)
    if not np.issubdtype(codes.dtype, np.integer):
        raise TypeError(f"pack_bits: codes must be an integer array, got dtype {codes.dtype}")
    lo, hi = code_range(n, signed)
    if codes.size and (codes.min() < lo or codes.max() > hi):
        raise ValueError(f"pack_bits: codes must lie in [{lo}, {hi}] for {n}-bit "
                         f"{'signed' if signed else 'unsigned'} packing, got "
                         f"[{codes.min()}, {codes.max()}]")
    # two's complement: the low n bits of the int64 value
    u = codes.reshape(-1).astype(np.int64) & ((1 << n) - 1)
    shifts = np.arange(n - 1, -1, -1, dtype=np.int64)          # most significant bit first
    bits = ((u[:, None] >> shifts) & 1).astype(np.uint8)        # (size, n)
    return np.packbits(bits.reshape(-1))


def unpack_bits(packed, n_bits, count, signed=True):
    """Inverse of :func:`pack_bits`: the first ``count`` codes as a flat int32 array."""
    n = _check_bits(n_bits, "unpack_bits")
    packed = np.asarray(packed)
    if packed.dtype != np.uint8 or packed.ndim != 1:
        raise TypeError(f"unpack_bits: packed must be a 1-D uint8 array, got {packed.dtype} "
                        f"with shape {packed.shape}")
    need = -(-count * n // 8)
    if count < 0 or packed.size != need:
        raise ValueError(f"unpack_bits: {count} codes of {n} bits need {need} bytes, "
                         f"got {packed.size}")
    # (count, n) bits as uint8, then u = Σ_j bit_j · 2^(n−1−j) column by column: the only
    # temporaries are count·n bytes and two int32 arrays, whatever n is
    bits = np.unpackbits(packed)[:count * n].reshape(count, n)
    u = np.zeros(count, np.int32)
    for j in range(n):
        u <<= 1
        u |= bits[:, j]
    if signed:
        u[u >= (1 << (n - 1))] -= 1 << n                         # sign extension
    return u
