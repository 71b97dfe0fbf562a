"""Canonical Huffman coding (minicompress/huffman.py): hand-worked codes, optimality against an
exhaustive search and against Huffman's own algorithm, round trips, the entropy bounds, and
every way a hostile table or bitstream can be wrong."""
import heapq
import itertools

import numpy as np
import pytest

from minicompress import huffman
from minicompress.huffman import (HuffmanError, canonical_codes, check_lengths, code_lengths,
                                  decode, encode, entropy_bits, kraft_sum, lengths_from_bytes,
                                  lengths_to_bytes)


def test_counts_5_2_1_1_by_hand():
    """a:5 b:2 c:1 d:1. Huffman merges c+d (2), then b+(cd) (4), then a+(bcd) (9): depths
    a 1, b 2, c 3, d 3. Canonical: N₁ = N₂ = 1, N₃ = 2; first(1) = 0, first(2) = 2·(0 + 1) = 2,
    first(3) = 2·(2 + 1) = 6 → a = 0, b = 10, c = 110, d = 111. Average 1·5/9 + 2·2/9 + 3·2/9
    = 15/9 bits against H = 1.6577 bits."""
    lengths = code_lengths(np.array([5, 2, 1, 1]))
    assert list(lengths) == [1, 2, 3, 3]
    assert list(canonical_codes(lengths)) == [0b0, 0b10, 0b110, 0b111]
    # a b a c d → 0 10 0 110 111 = 0100 1101 11(00 0000) → 0x4D 0xC0
    assert encode([0, 1, 0, 2, 3], lengths) == bytes([0x4D, 0xC0])
    symbols, bits = decode(bytes([0x4D, 0xC0]), lengths, 5)
    assert list(symbols) == [0, 1, 0, 2, 3] and bits == 10
    assert entropy_bits([5, 2, 1, 1]) == pytest.approx(1.6577, abs=1e-4)


def test_canonical_codes_by_hand():
    """Lengths (2, 1, 3, 3, 0): N₁ = 1, N₂ = 1, N₃ = 2 → the length-1 symbol 1 gets 0, the
    length-2 symbol 0 gets 10, symbols 2 and 3 get 110 and 111 (increasing symbol order within a
    length); symbol 4 has no code. Equal lengths (2, 2, 2, 2) → 00, 01, 10, 11."""
    assert list(canonical_codes([2, 1, 3, 3, 0])) == [0b10, 0b0, 0b110, 0b111, 0]
    assert list(canonical_codes([2, 2, 2, 2])) == [0, 1, 2, 3]
    assert list(code_lengths(np.array([1, 1, 1, 1]))) == [2, 2, 2, 2]


def test_one_symbol_gets_one_bit_and_absent_symbols_none():
    assert list(code_lengths(np.array([0, 7, 0]))) == [0, 1, 0]
    assert encode([1, 1, 1], [0, 1, 0]) == bytes([0])
    assert list(decode(bytes([0]), [0, 1, 0], 3)[0]) == [1, 1, 1]
    assert list(code_lengths(np.array([0, 0]))) == [0, 0]


def _cost(counts, lengths):
    return int(np.dot(counts, lengths))


def _huffman_cost(counts):
    """Huffman's algorithm (merge the two lightest) — the unlimited optimum: total cost is the
    sum of the merged weights."""
    heap = [int(c) for c in counts if c > 0]
    heapq.heapify(heap)
    total = 0
    while len(heap) > 1:
        merged = heapq.heappop(heap) + heapq.heappop(heap)
        total += merged
        heapq.heappush(heap, merged)
    return total


@pytest.mark.parametrize("seed", range(6))
def test_package_merge_is_optimal_under_a_length_limit(seed):
    """Exhaustive search over all lengths in [1, L]^n with Kraft sum ≤ 1 (n = 6, L = 3: 729
    candidates): package-merge's cost is the minimum."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 50, 6) ** 2
    best = min(_cost(counts, ls) for ls in itertools.product(range(1, 4), repeat=6)
               if sum(2.0 ** -l for l in ls) <= 1)
    lengths = code_lengths(counts, max_len=3)
    assert lengths.max() <= 3 and kraft_sum(lengths) <= 1
    assert _cost(counts, lengths) == best


@pytest.mark.parametrize("seed", range(5))
def test_without_a_binding_limit_the_cost_is_huffmans(seed):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 1000, rng.integers(2, 300))
    counts[:2] += 1
    assert _cost(counts, code_lengths(counts, max_len=40)) == _huffman_cost(counts)


def test_a_skewed_distribution_is_limited_to_15_bits():
    """Fibonacci counts make Huffman's tree a path: 29 bits deep unlimited; limited to 15 the
    code stays complete and costs a little more than unlimited Huffman."""
    fib = [1, 1]
    while len(fib) < 30:
        fib.append(fib[-1] + fib[-2])
    counts = np.array(fib)
    assert code_lengths(counts, max_len=40).max() == 29
    lengths = code_lengths(counts)
    assert lengths.max() == 15 and kraft_sum(lengths) == 1.0
    assert _cost(counts, lengths) > _huffman_cost(counts)


@pytest.mark.parametrize("alphabet, n, concentration", [
    (2, 1000, 1.0), (16, 50_000, 0.3), (256, 200_000, 2.0), (16, 20_000, 5.0), (5000, 30_000, 1.0)])
def test_round_trip_kraft_and_entropy_bounds(alphabet, n, concentration):
    """Random symbols: decode(encode(x)) = x; the code is complete (K = 1); and
    H ≤ average length < H + 1, which holds for the 15-bit limited code because every Shannon
    length ⌈−log₂ p⌉ of these counts is ≤ 15 (the test checks that premise)."""
    rng = np.random.default_rng(alphabet + n)
    p = rng.dirichlet(np.full(alphabet, concentration))
    x = rng.choice(alphabet, size=n, p=p)
    counts = np.bincount(x, minlength=alphabet)
    lengths = code_lengths(counts)
    data = encode(x, lengths)
    y, bits = decode(data, lengths, n)
    np.testing.assert_array_equal(y, x)
    assert len(data) == -(-bits // 8) and bits == _cost(counts, lengths)
    if np.count_nonzero(counts) > 1:
        assert kraft_sum(lengths) == 1.0
    q = counts[counts > 0] / n
    assert np.ceil(-np.log2(q)).max() <= 15
    h = entropy_bits(counts)
    assert h <= bits / n < h + 1


def test_decoding_across_many_blocks(monkeypatch):
    """Blocks of 64 bit positions: codes straddle block ends all the time."""
    monkeypatch.setattr(huffman, "BLOCK_BITS", 64)
    rng = np.random.default_rng(7)
    x = rng.choice(40, size=3000, p=rng.dirichlet(np.full(40, 0.4)))
    lengths = code_lengths(np.bincount(x, minlength=40))
    np.testing.assert_array_equal(decode(encode(x, lengths), lengths, len(x))[0], x)


def test_length_table_nibbles():
    assert lengths_to_bytes([1, 2, 3, 3]) == bytes([0x12, 0x33])
    assert lengths_to_bytes([1, 2, 2]) == bytes([0x12, 0x20])
    assert list(lengths_from_bytes(bytes([0x12, 0x20]), 3)) == [1, 2, 2]
    with pytest.raises(HuffmanError, match="padding nibble"):
        lengths_from_bytes(bytes([0x12, 0x21]), 3)
    with pytest.raises(HuffmanError, match="takes 2 bytes"):
        lengths_from_bytes(bytes([0x12]), 3)


@pytest.mark.parametrize("lengths, message", [
    ([1, 2, 3, 2], "over-subscribed"),           # 1/2 + 1/4 + 1/8 + 1/4 > 1
    ([1, 1, 1], "over-subscribed"),
    ([1, 2, 3, 4], "incomplete"),                # 15/16 < 1
    ([2, 2, 2, 0], "incomplete"),
    ([0, 0, 0], "no symbol"),
    ([0, 2, 0], "one symbol must have length 1"),
    ([1, 16], r"integers in \[0, 15\]"),
    ([1, -1], r"integers in \[0, 15\]"),
])
def test_bad_code_lengths_are_rejected(lengths, message):
    with pytest.raises(HuffmanError, match=message):
        check_lengths(np.array(lengths))
    with pytest.raises(HuffmanError, match=message):
        decode(bytes([0]), np.array(lengths), 1)


def test_bad_bitstreams_are_rejected():
    lengths = [1, 2, 3, 3]                       # a = 0, b = 10, c = 110, d = 111
    good = encode([0, 1, 0, 2, 3], lengths)      # 10 bits: 0x4D 0xC0
    with pytest.raises(HuffmanError, match="truncated"):
        decode(good[:1], lengths, 5)             # the last code runs past the end
    with pytest.raises(HuffmanError, match="truncated"):
        decode(good, lengths, 20)                # more symbols than bits
    with pytest.raises(HuffmanError, match="3 bytes but"):
        decode(good + b"\0", lengths, 5)         # a byte after the last code
    with pytest.raises(HuffmanError, match="padding"):
        decode(bytes([0x4D, 0xC1]), lengths, 5)
    with pytest.raises(HuffmanError, match="no valid code at bit 2"):
        decode(bytes([0b00100000]), [1, 0], 3)   # one-symbol code: a bit 1 is no code


def test_decoding_memory_is_bounded_by_the_block_not_the_claim():
    """A stream of 1 MB of 0xFF bits with the code {0, 1}: decoding stops at the count asked
    for and rejects the trailing bytes instead of decoding 8 M symbols first."""
    with pytest.raises(HuffmanError, match="bytes but its 10 codes take 2"):
        decode(bytes([0xFF]) * 2 ** 20, [1, 1], 10)


def test_bad_arguments():
    with pytest.raises(ValueError, match="non-negative integers"):
        code_lengths(np.array([1.5, 2.0]))
    with pytest.raises(ValueError, match="do not fit"):
        code_lengths(np.ones(9, np.int64), max_len=3)
    with pytest.raises(ValueError, match="have a code"):
        encode([2], [1, 1, 0])


# ---- in the artifact ----------------------------------------------------------------------------
ENCODINGS = ("packed", "sparse", "sparse_gaps", "huffman", "sparse_huffman")


@pytest.mark.parametrize("density, scale", [(1.0, 1.0), (1.0, 3.0), (0.3, 2.0), (0.03, 2.0)])
def test_each_encoding_round_trips_and_huffman_wins_only_when_strictly_smaller(density, scale):
    """Weight-like 4-bit codes (rounded Gaussians, some zeroed): every encoding decodes to the
    codes; the chosen one deflates to the least, and a Huffman one only when strictly less
    than every version-2 encoding."""
    import zlib
    from minicompress.artifact import decode_codes, encode_codes
    rng = np.random.default_rng(int(100 * density + scale))
    q = np.clip(np.rint(rng.normal(0, scale, (64, 90))), -8, 7).astype(np.int64)
    q[rng.random(q.shape) > density] = 0
    q[0, 0] = 5                                           # at least one non-zero code
    sizes = {}
    for e in ENCODINGS:
        data, entry = encode_codes(q, 4, (e,))
        assert entry["encoding"] == e
        np.testing.assert_array_equal(decode_codes(data, entry), q)
        sizes[e] = len(zlib.compress(data, 9))
    chosen = encode_codes(q, 4)[1]["encoding"]
    assert sizes[chosen] == min(sizes.values())
    if chosen in ("huffman", "sparse_huffman"):
        assert sizes[chosen] < min(sizes[e] for e in ENCODINGS[:3])


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.95])
def test_no_file_grows_and_a_file_without_huffman_is_version_2(tmp_path, digits, sparsity):
    """The writer keeps the shortest of the version-2 file and two Huffman files: the default
    file is never longer than the version-2 one, and is that file, byte for byte, whenever it
    is version 2."""
    from minicompress import models
    from minicompress.artifact import BASE_ENCODINGS, read_artifact
    from minicompress.data import standardization
    from minicompress.quantize import calibrate, convert, prepare
    from minicompress.serialize import input_spec, load_integer_model, save_integer_model
    (xtr, _), (xte, _) = digits
    rng = np.random.default_rng(11)
    model = models.lenet5(8, rng=rng)
    for layer in (model.fc1, model.fc2, model.conv2):
        layer.weight.data *= rng.random(layer.weight.data.shape) >= sparsity
    prepare(model, 4, 8, input_kind="auto", example_input=xtr[:200])
    calibrate(model, xtr[:200])
    im = convert(model)
    im.input = input_spec((1, 8, 8), *standardization("digits"))
    plain = save_integer_model(im, tmp_path / "v2.npz", encodings=BASE_ENCODINGS)
    best = save_integer_model(im, tmp_path / "best.npz")
    assert best.stat().st_size <= plain.stat().st_size
    if read_artifact(best)[0]["format_version"] == 2:
        assert best.read_bytes() == plain.read_bytes()
    np.testing.assert_array_equal(load_integer_model(best).forward(xte[:50]), im.forward(xte[:50]))


def test_the_notebook_exercise_agrees_with_the_library():
    """The hand-computed cases of the ``canonical_codes`` exercise are the library's codes."""
    from minicompress.check import run_exercise
    from minicompress.exercises import EXERCISES
    for case in EXERCISES["canonical_codes"].cases:
        np.testing.assert_array_equal(canonical_codes(case.args["lengths"]), case.expected[0])
    assert run_exercise("canonical_codes", canonical_codes)[0]
