"""Canonical Huffman coding: symbol counts → code lengths → codes → a packed bitstream, and back.

A prefix code gives symbol s a bit string of length l_s, no code the beginning of another. Such
lengths exist exactly when they satisfy the **Kraft inequality**

    K = Σ_s 2^(−l_s) ≤ 1            (sum over the symbols that occur, l_s ≥ 1)

and the code is *complete* (every bit string starts with some code) when K = 1. With symbol
probabilities p_s = n_s / Σn (n_s the counts), the average length L̄ = Σ p_s l_s is at least the
**entropy**

    H = −Σ_s p_s log₂ p_s          bits per symbol,

and Huffman's code (the optimal prefix code) has H ≤ L̄ < H + 1. The Shannon lengths
⌈−log₂ p_s⌉ satisfy Kraft and average < H + 1, so any optimal code does too — also one limited
to ``max_len`` bits, as long as every ⌈−log₂ p_s⌉ ≤ max_len.

Three steps, each a function below:

1. :func:`code_lengths` — optimal lengths limited to ``max_len`` (15) bits by the
   **package-merge** algorithm (Larmore & Hirschberg 1990). Without a limit a skewed
   distribution can need lengths up to n − 1; 15 keeps a length in 4 bits and the decoding table
   at 2^15 entries.
2. :func:`canonical_codes` — the codes follow from the lengths alone (the DEFLATE rule, RFC 1951
   §3.2.2): sort symbols by (length, symbol); the first symbol gets code 0 of its length, each
   next symbol the previous code + 1, shifted left by the difference in length. So a file stores
   only the lengths.
3. :func:`encode` / :func:`decode` — the codes concatenated most significant bit first, cut into
   bytes (bit 7 of byte 0 first), the last byte padded with zero bits.

Decoding is table driven and vectorised: for *every* bit position p the next ``max_len`` bits
look up (symbol, length) of the code that would start at p, so next(p) = p + length. The symbols
are the chain 0, next(0), next(next(0)), …, followed by pointer doubling (next∘next, …) in
log₂(C) NumPy passes over blocks of C bit positions — no Python loop per bit or per symbol (the
loops run over the ≤ 15 bits of a window, the doubling passes and the blocks). Measured: the
802,816 codes of a 256×3136 layer decode in ~0.1–0.2 s on the shared 2-core machine
(benchmarks/entropy_coding.py).

Every check a hostile file needs is here: lengths out of [0, 15], no symbol, an over-subscribed
(K > 1) or incomplete (K < 1) code, a bit pattern that is no code, a truncated stream, non-zero
padding, bytes after the last code. Each is one :class:`HuffmanError` (a ``ValueError``).
"""
from __future__ import annotations

import numpy as np

MAX_CODE_LENGTH = 15
BLOCK_BITS = 1 << 16    # bit positions decoded per vectorised block (memory O(BLOCK_BITS))


class HuffmanError(ValueError):
    """Code lengths that are no prefix code, or a bitstream that does not decode."""


# ---- 0. the bound -------------------------------------------------------------------------------
def entropy_bits(counts) -> float:
    """H = −Σ p_s log₂ p_s with p_s = n_s / Σn (bits per symbol; 0 for one symbol)."""
    n = np.asarray(counts, np.float64)
    p = n[n > 0] / n.sum()
    return float(-(p * np.log2(p)).sum())


def kraft_sum(lengths) -> float:
    """K = Σ 2^(−l_s) over the symbols with l_s > 0 (exact in float64 for l ≤ 52)."""
    l = np.asarray(lengths, np.int64)
    return float(np.ldexp(1.0, -l[l > 0]).sum())


# ---- 1. lengths ---------------------------------------------------------------------------------
def code_lengths(counts, max_len: int = MAX_CODE_LENGTH) -> np.ndarray:
    """Optimal prefix-code lengths of at most ``max_len`` bits for symbols with these counts.

    counts: (A,) non-negative integers; returns (A,) int64, 0 for a symbol that does not occur.
    One occurring symbol gets length 1 (as in DEFLATE: a code needs at least one bit).

    Package-merge, the "coin collector" view: every occurring symbol is a coin of weight n_s at
    each of the depths 1..max_len; choosing the 2(n − 1) lightest coins, where at each depth
    pairs of coins from the depth below are "packaged" into one, gives the optimal limited code,
    l_s = the number of depths at which s's coin is chosen. The chosen coins at each depth are a
    prefix of that depth's list sorted by weight, so only prefix lengths are tracked: a chosen
    prefix of m entries at one depth holding k leaves chooses the first 2(m − k) entries (the
    packages' contents) one depth below. Ties: a leaf before a package, lighter symbols by
    (count, symbol) — so the lengths, and the file, are deterministic.
    """
    counts = np.asarray(counts)
    if counts.ndim != 1 or (counts.size and (not np.issubdtype(counts.dtype, np.integer)
                                             or counts.min() < 0)):
        raise ValueError("code_lengths: counts must be a 1-D array of non-negative integers")
    used = np.flatnonzero(counts)
    lengths = np.zeros(counts.size, np.int64)
    n = len(used)
    if n == 0:
        return lengths
    if n == 1:
        lengths[used] = 1
        return lengths
    if n > 2 ** max_len:
        raise ValueError(f"code_lengths: {n} symbols do not fit in codes of at most {max_len} bits")
    order = used[np.lexsort((used, counts[used]))]        # lightest first, ties by symbol
    leaves = counts[order].astype(np.int64)
    # lists[d]: is-leaf flags of depth d's merged list (depth max_len is the leaves alone)
    flags, weights = [np.ones(n, bool)], leaves
    for _ in range(max_len - 1):
        packages = weights[:len(weights) // 2 * 2].reshape(-1, 2).sum(1)
        merged = np.concatenate([leaves, packages])
        by_weight = np.argsort(merged, kind="stable")     # stable: leaves before equal packages
        weights = merged[by_weight]
        flags.append(by_weight < n)
    chosen = 2 * (n - 1)                                  # the coin collector's budget at depth 1
    for is_leaf in reversed(flags):                       # depth 1, 2, ..., max_len
        k = int(is_leaf[:chosen].sum())                   # the k lightest symbols get one more bit
        lengths[order[:k]] += 1
        chosen = 2 * (chosen - k)
    return lengths


# ---- 2. codes -----------------------------------------------------------------------------------
def check_lengths(lengths, max_len: int = MAX_CODE_LENGTH) -> np.ndarray:
    """The lengths must be a usable prefix code: integers in [0, max_len], at least one > 0, and
    K = Σ 2^(−l) = 1 (complete) — except a single symbol, which must have length 1 (K = 1/2)."""
    l = np.asarray(lengths)
    if l.ndim != 1 or not np.issubdtype(l.dtype, np.integer) or \
            (l.size and (l.min() < 0 or l.max() > max_len)):
        raise HuffmanError(f"code lengths must be integers in [0, {max_len}]")
    l = l.astype(np.int64)
    used = np.count_nonzero(l)
    if used == 0:
        raise HuffmanError("the code lengths give no symbol a code")
    if used == 1:
        if l.max() != 1:
            raise HuffmanError(f"a code of one symbol must have length 1, got {l.max()}")
        return l
    # K·2^max_len as an exact integer: > 2^max_len over-subscribed, < incomplete
    k = int((np.int64(1) << (max_len - l[l > 0])).sum())
    if k != 1 << max_len:
        raise HuffmanError(f"the code lengths are {'over-subscribed' if k > 1 << max_len else 'incomplete'}"
                           f" (Kraft sum Σ2^−l = {k / (1 << max_len):.6g}, must be 1)")
    return l


def canonical_codes(lengths) -> np.ndarray:
    """Canonical codes of the lengths (RFC 1951 §3.2.2), as integers whose l_s low bits are the
    code, most significant bit first; 0 for an unused symbol. With N_l symbols of length l:

        first(1) = 0,  first(l) = (first(l−1) + N_{l−1}) · 2,
        code(s) = first(l_s) + (number of symbols of length l_s before s).

    Example: lengths a=1, b=2, c=3, d=3 → a=0, b=10, c=110, d=111."""
    l = np.asarray(lengths, np.int64)
    order = np.lexsort((np.arange(len(l)), l))
    order = order[l[order] > 0]
    counts = np.bincount(l, minlength=MAX_CODE_LENGTH + 2)
    first = np.zeros_like(counts)
    for bits in range(2, len(counts)):
        first[bits] = (first[bits - 1] + counts[bits - 1]) << 1
    codes = np.zeros(len(l), np.int64)
    ls = l[order]
    # rank within its length: position in the sorted list minus where that length starts
    start = np.searchsorted(ls, ls)
    codes[order] = first[ls] + np.arange(len(order)) - start
    return codes


# ---- 3. the bitstream ---------------------------------------------------------------------------
def encode(symbols, lengths) -> bytes:
    """Symbols (M,) in [0, A) → their canonical codes concatenated, most significant bit first,
    zero-padded to whole bytes: ⌈Σ l_{s_i} / 8⌉ bytes. Every symbol must have a code (l > 0)."""
    symbols = np.asarray(symbols, np.int64).ravel()
    l = check_lengths(lengths)
    if symbols.size and (symbols.min() < 0 or symbols.max() >= len(l) or
                         np.any(l[symbols] == 0)):
        raise ValueError("encode: every symbol must lie in [0, len(lengths)) and have a code")
    codes, lens = canonical_codes(l)[symbols], l[symbols]
    start = np.cumsum(lens) - lens
    bits = np.zeros(int(lens.sum()), np.uint8)
    for j in range(int(lens.max(initial=0))):           # bit j of every code at once
        has = lens > j
        bits[start[has] + j] = (codes[has] >> (lens[has] - 1 - j)) & 1
    return np.packbits(bits).tobytes()


def decode_table(lengths):
    """(table_symbol, table_length, width): for every ``width``-bit window w (width = the longest
    code), the symbol whose code is a prefix of w and that code's length; length 0 where no code
    is (an incomplete code of one symbol: the windows starting with bit 1)."""
    l = check_lengths(lengths)
    width = int(l.max())
    # In (length, symbol) order the canonical codes, left-aligned to ``width`` bits, are
    # increasing and adjacent: symbol s fills the next 2^(width − l_s) windows of the table.
    order = np.lexsort((np.arange(len(l)), l))
    order = order[l[order] > 0]
    reps = np.int64(1) << (width - l[order])
    filled = int(reps.sum())
    table_sym = np.zeros(1 << width, np.int64)
    table_len = np.zeros(1 << width, np.int64)
    table_sym[:filled] = np.repeat(order, reps)
    table_len[:filled] = np.repeat(l[order], reps)
    return table_sym, table_len, width


def _windows(data: np.ndarray, start_bit: int, count: int, width: int) -> np.ndarray:
    """The ``width`` bits starting at each of the bit positions start_bit … start_bit + count − 1
    as integers (bits past the end of ``data`` read as 0)."""
    first = start_bit // 8
    chunk = data[first:first + (start_bit % 8 + count + width + 7) // 8]
    bits = np.unpackbits(chunk)
    bits = np.concatenate([bits, np.zeros(start_bit % 8 + count + width - len(bits), np.uint8)]) \
        if len(bits) < start_bit % 8 + count + width else bits
    bits = bits[start_bit % 8:].astype(np.int64)
    w = np.zeros(count, np.int64)
    for j in range(width):
        w = (w << 1) | bits[j:j + count]
    return w


def _chain(step: np.ndarray, limit: int) -> np.ndarray:
    """Positions 0, step[0], step[step[0]], … below ``limit``, by pointer doubling: after r passes
    ``seq`` holds the first 2^r links and ``jump`` = step applied 2^r times. Positions ≥ limit
    (past the block, or a bad code sent there) map to themselves, so the chain stops there."""
    jump = np.concatenate([step, np.arange(limit, limit + 2 * MAX_CODE_LENGTH + 2)])
    jump = np.minimum(jump, limit + 2 * MAX_CODE_LENGTH + 1)
    seq = np.zeros(1, np.int64)
    while seq[-1] < limit:
        seq = np.concatenate([seq, jump[seq]])
        jump = jump[jump]
    return seq[seq < limit]


def decode(data, lengths, count: int) -> tuple[np.ndarray, int]:
    """Inverse of :func:`encode`: (the ``count`` symbols as int64, the number of bits they used).
    The stream must be exactly ⌈bits/8⌉ bytes with zero padding, every code valid.

    Works on blocks of BLOCK_BITS bit positions: each block's windows → (symbol, length) by table
    lookup, the chain of code starts by pointer doubling; the next block starts where the last
    code of this one ends. Memory O(BLOCK_BITS + count), whatever the stream claims."""
    data = np.frombuffer(bytes(data), np.uint8)
    table_sym, table_len, width = decode_table(lengths)
    total_bits = 8 * len(data)
    out = np.empty(count, np.int64)
    done, pos = 0, 0
    while done < count:
        if pos >= total_bits:
            raise HuffmanError(f"bitstream truncated: {done} of {count} symbols decoded when "
                               f"its {len(data)} bytes ran out")
        n = min(BLOCK_BITS, total_bits - pos)
        w = _windows(data, pos, n, width)
        length = table_len[w]
        bad = length == 0
        step = np.arange(n) + np.where(bad, n + 2 * MAX_CODE_LENGTH + 1, length)
        starts = _chain(step, n)[:count - done]
        if np.any(bad[starts]):
            at = pos + int(starts[np.argmax(bad[starts])])
            raise HuffmanError(f"bitstream holds no valid code at bit {at}")
        out[done:done + len(starts)] = table_sym[w[starts]]
        done += len(starts)
        last = int(starts[-1])              # position 0 of a block always starts a code
        pos += last + int(length[last])
    if pos > total_bits:
        raise HuffmanError(f"bitstream truncated: the last code ends at bit {pos}, after the "
                           f"stream's {total_bits} bits")
    if len(data) != -(-pos // 8):
        raise HuffmanError(f"bitstream is {len(data)} bytes but its {count} codes take "
                           f"{-(-pos // 8)}")
    if pos % 8 and data[-1] & ((1 << (8 - pos % 8)) - 1):
        raise HuffmanError("the padding bits after the last code must be 0")
    return out, pos


# ---- the code-length table as stored in a file --------------------------------------------------
def lengths_to_bytes(lengths) -> bytes:
    """K lengths (each 0..15) as 4-bit nibbles, high nibble first: ⌈K/2⌉ bytes, a last odd
    nibble padded with 0."""
    l = np.asarray(lengths, np.uint8)
    if len(l) % 2:
        l = np.append(l, 0)
    return (l[0::2] << 4 | l[1::2]).astype(np.uint8).tobytes()


def lengths_from_bytes(data, k: int) -> np.ndarray:
    """Inverse of :func:`lengths_to_bytes`: ``k`` lengths from ⌈k/2⌉ bytes (padding nibble 0)."""
    b = np.frombuffer(bytes(data), np.uint8)
    if len(b) != -(-k // 2):
        raise HuffmanError(f"a table of {k} code lengths takes {-(-k // 2)} bytes, got {len(b)}")
    l = np.stack([b >> 4, b & 15], 1).ravel().astype(np.int64)
    if k % 2 and l[-1]:
        raise HuffmanError("the padding nibble after the last code length must be 0")
    return l[:k]
