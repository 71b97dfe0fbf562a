"""Hostile artifacts: a file whose checksum is valid but whose values are not must be rejected
with one ValueError naming the field, before anything is allocated from it.

Each case starts from a valid small model (a LeNet-5 on the 8x8 digits, two layers pruned so
that all three weight encodings occur), changes one header field or payload, and writes the
file again with ``write_artifact`` — which recomputes the checksum, so the checksum cannot save
the reader.
"""
import copy
import io
import json
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

from minicompress import models
from minicompress import huffman
from minicompress.__main__ import main
from minicompress.artifact import (BASE_ENCODINGS, MAX_BLOB_BYTES, ArtifactError, artifact_bytes,
                                   read_artifact)
from minicompress.data import standardization
from minicompress.quantize import calibrate, convert, prepare
from minicompress.serialize import (MAX_STEPS, input_spec, read_header,
                                    load_integer_model, save_integer_model)


@pytest.fixture(scope="module")
def valid(tmp_path_factory, digits):
    """(path, header, blob, x) of a valid version-2 artifact: conv, maxpool, flatten, linear
    layers; the weights of fc1 at 95 % sparsity (sparse_gaps) and fc2 at 50 % (sparse bitmask)."""
    (xtr, _), (xte, _) = digits
    rng = np.random.default_rng(0)
    model = models.lenet5(8, rng=rng)
    for layer, keep in ((model.fc1, 0.05), (model.fc2, 0.5)):
        w = layer.weight.data
        w *= rng.random(w.shape) < keep
    prepare(model, 4, 8, input_kind="auto", example_input=xtr[:200])
    calibrate(model, xtr[:200])
    im = convert(model)
    im.input = input_spec((1, 8, 8), *standardization("digits"))
    path = save_integer_model(im, tmp_path_factory.mktemp("hostile") / "valid.npz",
                              meta={"dataset": "digits"}, encodings=BASE_ENCODINGS)
    header, blob = read_artifact(path)
    encodings = {s["weight"]["encoding"] for s in header["steps"] if "weight" in s}
    assert encodings == {"packed", "sparse", "sparse_gaps"}, encodings
    return path, header, blob, xte[:20]


def _step(header, kind, nth=0):
    """The nth step of a kind (e.g. the first conv2d)."""
    return [s for s in header["steps"] if s["kind"] == kind][nth]


def _by_encoding(header, encoding):
    return next(s["weight"] for s in header["steps"] if "weight" in s
                and s["weight"]["encoding"] == encoding)


def _put(blob, entry, values):
    """Overwrite a raw tensor's bytes in the blob."""
    data = np.asarray(values, np.dtype(entry["dtype"])).tobytes()
    assert len(data) <= entry["nbytes"]
    return blob[:entry["offset"]] + data + blob[entry["offset"] + len(data):]


def _set(kind, field, value, nth=0):
    def change(h, b):
        _step(h, kind, nth)[field] = value
        return h, b
    return change


def _set_raw(kind, field, values, nth=0):
    def change(h, b):
        return h, _put(b, _step(h, kind, nth)[field], values)
    return change


def _edit(fn):
    def change(h, b):
        fn(h)
        return h, b
    return change


def _swap_first_steps(h):
    h["steps"][0], h["steps"][1] = h["steps"][1], h["steps"][0]


def _shift_packed_bits(h):
    layer = _step(h, "linear", 2)
    layer["weight_bits"] = layer["weight"]["bits"] = 8    # nbytes stays that of 4 bits


def _accumulator_overflow(h):
    conv = _step(h, "conv2d", 1)                           # fan-in 6·3·3 = 54
    conv["weight_bits"] = conv["weight"]["bits"] = 16
    conv["in_hi"] = 65535                                  # 54 · 2^15 · 65535 ≥ 2^31


def _drop_last_step(h, b):
    last = h["steps"].pop()
    return h, b[:min(v["offset"] for v in last.values() if isinstance(v, dict))]


def _flip_mask_bit(h, b):
    w = _by_encoding(h, "sparse")
    i = w["offset"]
    return h, b[:i] + bytes([b[i] ^ 0x80]) + b[i + 1:]


def _gap_index_trailing_escape(h, b):
    w = _by_encoding(h, "sparse_gaps")
    i = w["offset"] + w["index_bytes"] - 1
    return h, b[:i] + b"\xff" + b[i + 1:]


# (id, change(header, blob) -> (header, blob), what the message must name)
CASES = [
    # the header as a whole
    ("version-1", _edit(lambda h: h.update(format_version=1)), "format version 1"),
    ("unknown-top-field", _edit(lambda h: h.update(extra=1)), "header: fields"),
    ("no-input", _edit(lambda h: h.pop("input")), "header: fields"),
    ("model-name", _edit(lambda h: h.update(model="x")), "'model'"),
    ("meta-not-object", _edit(lambda h: h.update(meta=[1])), "'meta'"),
    ("float-bytes-negative", _edit(lambda h: h.update(float_bytes=-1)), "'float_bytes'"),
    ("input-std-zero", _edit(lambda h: h["input"].update(std=0.0)), "field 'std'"),
    ("input-std-negative", _edit(lambda h: h["input"].update(std=-0.5)), "field 'std'"),
    ("input-mean-not-float32", _edit(lambda h: h["input"].update(mean=0.1)), "field 'mean'"),
    ("input-mean-string", _edit(lambda h: h["input"].update(mean="0.3")), "field 'mean'"),
    ("input-shape-huge", _edit(lambda h: h["input"].update(shape=[1, 2 ** 20, 2 ** 20])),
     "input.shape"),
    ("input-shape-2d", _edit(lambda h: h["input"].update(shape=[8, 8])), "input.shape"),
    ("input-shape-mismatch", _edit(lambda h: h["input"].update(shape=[1, 12, 12])),
     r"steps\[6\] \(linear\) field 'weight'"),
    ("steps-empty", _edit(lambda h: h.update(steps=[])), "'steps'"),
    ("steps-not-list", _edit(lambda h: h.update(steps={})), "'steps'"),
    ("steps-too-many", _edit(lambda h: h.update(steps=h["steps"][:1] + [{"kind": "relu",
     "zero": h["steps"][0]["zero"]}] * MAX_STEPS + h["steps"][1:])), "'steps'"),
    ("step-not-object", _edit(lambda h: h["steps"].insert(2, 7)), r"steps\[2\] must be"),
    ("kind-unknown", _set("maxpool", "kind", "softmax"), "field 'kind'"),
    ("kind-list", _set("maxpool", "kind", ["maxpool"]), "field 'kind'"),   # not hashable
    ("first-not-quantize", _edit(_swap_first_steps), "field 'kind'"),
    ("missing-field", _edit(lambda h: _step(h, "conv2d").pop("in_zero")), r"missing.*in_zero"),
    ("unknown-field", _set("maxpool", "dilation", 2), r"unknown.*dilation"),
    ("last-not-logits", lambda h, b: _drop_last_step(h, b), "out.m0"),
    # quantize_input
    ("delta-zero", _set("quantize_input", "delta", 0.0), "field 'delta'"),
    ("delta-negative", _set("quantize_input", "delta", -0.01), "field 'delta'"),
    ("delta-overflows-float32", _set("quantize_input", "delta", 1e39), "field 'delta'"),
    ("delta-string", _set("quantize_input", "delta", "0.01"), "field 'delta'"),
    ("delta-400-digit-int", _set("quantize_input", "delta", 10 ** 400), "field 'delta'"),
    ("q-lo-above-q-hi", _set("quantize_input", "q_lo", 300), "field 'q_hi'"),
    ("q-hi-too-wide", _set("quantize_input", "q_hi", 2 ** 20), "field 'q_hi'"),
    ("zero-outside-grid", _set("quantize_input", "zero", 256), "field 'zero'"),
    ("zero-bool", _set("quantize_input", "zero", True), "field 'zero'"),
    ("q-lo-float", _set("quantize_input", "q_lo", 0.0), "field 'q_lo'"),
    # relu / maxpool
    ("relu-wrong-zero", _edit(lambda h: h["steps"].insert(1, {"kind": "relu", "zero": 3})),
     "field 'zero'"),
    ("pool-kernel-zero", _set("maxpool", "kernel_size", 0), "field 'kernel_size'"),
    ("pool-kernel-larger-than-image", _set("maxpool", "kernel_size", 100), "field 'kernel_size'"),
    ("pool-stride-zero", _set("maxpool", "stride", 0), "field 'stride'"),
    # layers: grids
    ("in-zero-mismatch", _set("conv2d", "in_zero", 77), "field 'in_zero'"),
    ("in-delta-mismatch", _set("conv2d", "in_delta", 0.5), "field 'in_delta'"),
    ("in-range-too-narrow", _set("conv2d", "in_hi", 100), "field 'in_lo'"),
    ("weight-bits-17", _set("linear", "weight_bits", 17), "field 'weight_bits'"),
    ("weight-bits-1", _set("linear", "weight_bits", 1), "field 'weight_bits'"),
    ("weight-bits-mismatch", _set("linear", "weight_bits", 8), "field 'weight'"),
    ("packed-nbytes-for-other-bits", _edit(_shift_packed_bits), "nbytes"),
    ("accumulator-overflow", _edit(_accumulator_overflow), "worst-case accumulator"),
    ("bias-overflow", _set_raw("linear", "bias", [2 ** 31 - 1]), "field 'bias'"),
    # layers: shapes
    ("weight-shape-huge", _edit(lambda h: _step(h, "linear")["weight"].update(
        shape=[100_000, 100_000])), "field 'weight'"),
    ("weight-fan-in-mismatch", _edit(lambda h: _step(h, "linear", 1)["weight"].update(
        shape=[84, 121])), "field 'weight'"),
    ("weight-zero-dim", _edit(lambda h: _step(h, "linear", 2)["weight"].update(shape=[0, 84])),
     "field 'weight'"),
    ("conv-not-square", _edit(lambda h: _step(h, "conv2d")["weight"].update(shape=[6, 1, 9, 1])),
     "field 'weight'"),
    ("conv-padding-too-large", _set("conv2d", "padding", 3), "field 'padding'"),
    ("conv-stride-zero", _set("conv2d", "stride", 0), "field 'stride'"),
    ("linear-stride", _set("linear", "stride", 2), "field 'stride'"),
    ("bias-shape", _edit(lambda h: _step(h, "linear")["bias"].update(shape=[119])), "field 'bias'"),
    ("bias-dtype-f8", _edit(lambda h: _step(h, "linear")["bias"].update(dtype="<f8")),
     "field 'bias'"),
    ("bias-dtype-object", _edit(lambda h: _step(h, "linear")["bias"].update(dtype="|O")),
     "field 'bias'"),
    ("m0-int64", _edit(lambda h: _step(h, "linear")["out.m0"].update(dtype="<i8")),
     "field 'out.m0'"),
    # layers: values in the blob
    ("weight-delta-zero", _set_raw("conv2d", "weight_delta", [0.0]), "field 'weight_delta'"),
    ("weight-delta-nan", _set_raw("conv2d", "weight_delta", [np.nan]), "field 'weight_delta'"),
    ("m0-negative", _set_raw("conv2d", "out.m0", [-5]), "field 'out.m0'"),
    ("m0-too-large", _set_raw("conv2d", "out.m0", [2 ** 27]), "field 'out.m0'"),
    ("shift-zero", _set_raw("conv2d", "out.shift", [0]), "field 'out.shift'"),
    ("shift-63", _set_raw("conv2d", "out.shift", [63]), "field 'out.shift'"),
    ("out-scale-inf", _set_raw("linear", "out.out_scale", [np.inf], 2), "field 'out.out_scale'"),
    ("out-scale-negative", _set_raw("linear", "out.out_scale", [-1.0], 2), "field 'out.out_scale'"),
    ("out-lo-above-out-hi", _set("conv2d", "out.out_lo", 256), "field 'out.out_hi'"),
    ("relu-flag-2", _set("conv2d", "out.relu", 2), "field 'out.relu'"),
    ("relu-below-zero", _set("conv2d", "out.out_zero", 5), "field 'out.out_lo'"),
    ("out-delta-zero", _set("conv2d", "out.out_delta", 0.0), "field 'out.out_delta'"),
    # tensor references and payloads
    ("encoding-unknown", _edit(lambda h: _step(h, "linear", 2)["weight"].update(encoding="zstd")),
     "field 'weight'"),
    ("encoding-object", _edit(lambda h: _step(h, "linear")["bias"].update(encoding={})),
     "field 'bias'"),
    ("offset-out-of-order", _edit(lambda h: _step(h, "linear")["bias"].update(offset=0)),
     "offset must be"),
    ("blob-trailing-bytes", lambda h, b: (h, b + b"\0" * 10), "blob: the tensors cover"),
    ("nnz-mismatch", _edit(lambda h: _by_encoding(h, "sparse").update(
        nnz=_by_encoding(h, "sparse")["nnz"] + 1)), "field 'weight'"),
    ("mask-bytes-wrong", _edit(lambda h: _by_encoding(h, "sparse").update(mask_bytes=3)),
     "mask_bytes"),
    ("mask-bit-flipped", _flip_mask_bit, "field 'weight'"),
    ("gap-index-escape", _gap_index_trailing_escape, "field 'weight'"),
    ("index-bytes-too-many", _edit(lambda h: _by_encoding(h, "sparse_gaps").update(
        index_bytes=10 ** 9)), "field 'weight'"),
]


def _write(path, header, blob):
    """The file of this header (format and version kept as they are, even wrong ones) and blob,
    with a valid checksum."""
    path.write_bytes(artifact_bytes(header, blob))
    return path


def _checksum_is_valid(path):
    import hashlib
    with np.load(path, allow_pickle=False) as f:
        return hashlib.sha256(f["header"].tobytes() + f["blob"].tobytes()).digest() \
            == f["checksum"].tobytes()


@pytest.mark.parametrize("name, change, field", CASES, ids=[c[0] for c in CASES])
def test_hostile_header_is_rejected_naming_the_field(valid, tmp_path, name, change, field):
    path, header, blob, _ = valid
    h, b = change(copy.deepcopy(header), blob)
    bad = _write(tmp_path / f"{name}.npz", h, b)
    assert _checksum_is_valid(bad)                         # the checksum is valid...
    with pytest.raises(ValueError, match=field) as err:   # ...the values are not
        load_integer_model(bad)
    assert isinstance(err.value, ArtifactError)
    assert "\n" not in str(err.value) and str(bad) in str(err.value)
    with pytest.raises(ArtifactError, match=field):       # `info` reads the header: same checks
        read_header(bad)


def test_the_unmodified_file_loads_and_runs(valid):
    path, header, blob, x = valid
    im = load_integer_model(path)
    assert im.forward(x).shape == (len(x), 10)
    assert _write(path.with_name("again.npz"), copy.deepcopy(header), blob).read_bytes() \
        == path.read_bytes()                               # the helper writes the same bytes


# ---- the Huffman encodings (format version 3) ----------------------------------------------------
@pytest.fixture(scope="module")
def valid_huffman(valid, tmp_path_factory):
    """The same model with every weight Huffman coded: the convs and fc2 ``huffman``, the sparse
    fc1 ``sparse_huffman`` (both occur)."""
    path = save_integer_model(load_integer_model(valid[0]), tmp_path_factory.mktemp("huff") / "h.npz",
                              meta={"dataset": "digits"}, encodings=("huffman", "sparse_huffman"))
    header, blob = read_artifact(path)
    assert header["format_version"] == 3
    encodings = {s["weight"]["encoding"] for s in header["steps"] if "weight" in s}
    assert encodings == {"huffman", "sparse_huffman"}, encodings
    return path, header, blob, valid[3]


def _resize(h, b, entry, data):
    """Replace a tensor's bytes by ``data`` (another length), moving every later tensor."""
    start, old = entry["offset"], entry["nbytes"]
    for st in h["steps"]:
        for ref in st.values():
            if isinstance(ref, dict) and ref.get("offset", -1) > start:
                ref["offset"] += len(data) - old
    entry["nbytes"] = len(data)
    return b[:start] + data + b[start + old:]


def _bytes_of(b, entry):
    return b[entry["offset"]:entry["offset"] + entry["nbytes"]]


def _with_table(encoding, table_fn, block="values"):
    """Rewrite the code-length nibbles of a Huffman block with table_fn(lengths) (same size)."""
    def change(h, b):
        w = _by_encoding(h, encoding)
        data = bytearray(_bytes_of(b, w))
        start, k = 0, w["hi"] - w["lo"] + 1
        if block == "index":
            k = w["index_hi"] - w["index_lo"] + 1
        elif encoding == "sparse_huffman":
            start = w["index_nbytes"]
        n = -(-k // 2)
        lengths = huffman.lengths_from_bytes(bytes(data[start:start + n]), k)
        data[start:start + n] = huffman.lengths_to_bytes(table_fn(lengths.copy()))
        return h, _resize(h, b, w, bytes(data))
    return change


def _oversubscribe(lengths):
    lengths[np.argmax(lengths)] -= 1            # a longest code one bit shorter: K > 1
    return lengths


def _incomplete(lengths):
    lengths[np.argmax(lengths)] += 1            # a longest code one bit longer: K < 1
    return lengths


def _first_length_15(lengths):
    lengths[0] = 15                             # the longest a nibble (and the format) allows
    return lengths


def _truncate(encoding):
    def change(h, b):
        w = _by_encoding(h, encoding)
        return h, _resize(h, b, w, _bytes_of(b, w)[:-1])
    return change


def _append_byte(encoding):
    def change(h, b):
        w = _by_encoding(h, encoding)
        return h, _resize(h, b, w, _bytes_of(b, w) + b"\0")
    return change


def _set_padding_bit(h, b):
    """Set the last padding bit of a huffman tensor whose stream does not end on a byte."""
    for st in h["steps"]:
        w = st.get("weight", {})
        if w.get("encoding") != "huffman":
            continue
        k = w["hi"] - w["lo"] + 1
        data = _bytes_of(b, w)
        lengths = huffman.lengths_from_bytes(data[:-(-k // 2)], k)
        _, bits = huffman.decode(data[-(-k // 2):], lengths, int(np.prod(w["shape"])))
        if bits % 8:
            return h, _resize(h, b, w, data[:-1] + bytes([data[-1] | 1]))
    raise AssertionError("no huffman tensor with padding bits")


def _shift_index_values(h):
    """Decoded gap bytes all one larger: the positions run past the tensor (or change count)."""
    w = _by_encoding(h, "sparse_huffman")
    w["index_lo"] += 1
    w["index_hi"] += 1


HUFFMAN_CASES = [
    ("version-2-with-huffman", _edit(lambda h: h.update(format_version=2)), "version-2 file"),
    ("lo-above-hi", _edit(lambda h: _by_encoding(h, "huffman").update(
        hi=_by_encoding(h, "huffman")["lo"] - 1)), "hi must be"),
    ("lo-below-code-range", _edit(lambda h: _by_encoding(h, "huffman").update(lo=-9)),
     r"lo must be an integer in \[-8, 7\]"),
    ("hi-above-code-range", _edit(lambda h: _by_encoding(h, "huffman").update(hi=8)), "hi must be"),
    ("lo-string", _edit(lambda h: _by_encoding(h, "huffman").update(lo="0")), "lo must be"),
    ("missing-key", _edit(lambda h: _by_encoding(h, "sparse_huffman").pop("index_nbytes")),
     "exactly the keys"),
    ("nnz-zero", _edit(lambda h: _by_encoding(h, "sparse_huffman").update(nnz=0)), "nnz must be"),
    ("nnz-huge", _edit(lambda h: _by_encoding(h, "sparse_huffman").update(nnz=10 ** 12)),
     "nnz must be"),
    ("nnz-beyond-the-bytes", _edit(lambda h: _by_encoding(h, "sparse_huffman").update(
        nnz=int(np.prod(_by_encoding(h, "sparse_huffman")["shape"])),
        index_bytes=int(np.prod(_by_encoding(h, "sparse_huffman")["shape"])))), "index_nbytes"),
    ("index-bytes-huge", _edit(lambda h: _by_encoding(h, "sparse_huffman").update(
        index_bytes=10 ** 9)), "index_bytes must be"),
    ("index-nbytes-past-the-tensor", _edit(lambda h: _by_encoding(h, "sparse_huffman").update(
        index_nbytes=_by_encoding(h, "sparse_huffman")["nbytes"])), "values.*block"),
    ("index-hi-256", _edit(lambda h: _by_encoding(h, "sparse_huffman").update(index_hi=256)),
     "index_hi must be"),
    ("lengths-over-subscribed", _with_table("huffman", _oversubscribe), "over-subscribed"),
    ("lengths-incomplete", _with_table("huffman", _incomplete), "incomplete"),
    ("lengths-all-zero", _with_table("huffman", lambda l: l * 0), "no symbol"),
    ("index-lengths-over-subscribed", _with_table("sparse_huffman", _oversubscribe, "index"),
     "sparse_huffman index: .*over-subscribed"),
    ("values-lengths-incomplete", _with_table("sparse_huffman", _incomplete),
     "sparse_huffman values: .*incomplete"),
    ("bitstream-truncated", _truncate("huffman"), "truncated|no valid code"),
    ("values-truncated", _truncate("sparse_huffman"), "truncated|no valid code"),
    ("byte-after-last-code", _append_byte("huffman"), "bytes but its"),
    ("padding-bit-set", _set_padding_bit, "padding bits"),
    ("index-symbols-out-of-range", _edit(_shift_index_values), "sparse index gives"),
]


@pytest.mark.parametrize("name, change, field", HUFFMAN_CASES, ids=[c[0] for c in HUFFMAN_CASES])
def test_hostile_huffman_tensor_is_rejected(valid_huffman, tmp_path, capsys, name, change, field):
    """As above, for the Huffman encodings; and the command line prints one line, no
    traceback, and exits 2."""
    path, header, blob, _ = valid_huffman
    h, b = change(copy.deepcopy(header), blob)
    bad = _write(tmp_path / f"{name}.npz", h, b)
    with pytest.raises(ArtifactError, match=field) as err:
        load_integer_model(bad)
    assert "\n" not in str(err.value) and str(bad) in str(err.value)
    capsys.readouterr()
    assert main(["evaluate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "error:" in err


def test_a_length_raised_to_15_breaks_the_kraft_sum(valid_huffman, tmp_path):
    """A nibble holds at most 15, the longest code length allowed, so no table can state a
    longer one; raising one length to 15 leaves K ≠ 1, which is rejected."""
    path, header, blob, _ = valid_huffman
    h, b = _with_table("huffman", _first_length_15)(copy.deepcopy(header), blob)
    with pytest.raises(ArtifactError, match="over-subscribed|incomplete"):
        load_integer_model(_write(tmp_path / "l15.npz", h, b))


def test_the_huffman_file_runs_like_the_packed_one(valid, valid_huffman, capsys):
    """Same logits from the version-2 file and the version-3 file of the same model."""
    im2, im3 = load_integer_model(valid[0]), load_integer_model(valid_huffman[0])
    np.testing.assert_array_equal(im3.forward(valid[3]), im2.forward(valid[3]))
    assert main(["evaluate", str(valid_huffman[0])]) == 0


def test_a_huffman_claim_allocates_nothing_big(valid_huffman, tmp_path):
    """A sparse_huffman tensor declaring 2^22 codes in the bytes of a few hundred is refused
    from the header (1 to 15 bits per code), before anything is decoded."""
    path, header, blob, _ = valid_huffman
    h = copy.deepcopy(header)
    _by_encoding(h, "sparse_huffman").update(shape=[2 ** 24, 120])
    bad = _write(tmp_path / "big.npz", h, blob)
    assert _peak_bytes(lambda: load_integer_model(bad)) < 4 * len(blob) + 2 ** 20


# ---- the container ------------------------------------------------------------------------------
def _zip(path, members):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _npy(array):
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _members_raw(hb, blob=b""):
    import hashlib
    return {"blob.npy": _npy(np.frombuffer(blob, np.uint8)),
            "checksum.npy": _npy(np.frombuffer(hashlib.sha256(hb + blob).digest(), np.uint8)),
            "header.npy": _npy(np.frombuffer(hb, np.uint8))}


def _members(header, blob, digest=None):
    import hashlib
    hb = json.dumps(header).encode()
    return {"blob.npy": _npy(np.frombuffer(blob, np.uint8)),
            "checksum.npy": _npy(np.frombuffer(digest or hashlib.sha256(hb + blob).digest(), np.uint8)),
            "header.npy": _npy(np.frombuffer(hb, np.uint8))}


@pytest.mark.parametrize("name, members, message", [
    ("extra-member", lambda m: dict(m, **{"x.npy": m["blob.npy"]}), "members"),
    ("missing-member", lambda m: {k: v for k, v in m.items() if k != "blob.npy"}, "members"),
    ("header-int32", lambda m: dict(m, **{"header.npy": _npy(np.zeros(3, np.int32))}), "uint8"),
    ("checksum-short", lambda m: dict(m, **{"checksum.npy": _npy(np.zeros(3, np.uint8))}),
     "checksum"),
    ("header-not-object", lambda m: _members([1, 2], b""), "JSON object"),
    ("header-nan", lambda m: _members({"a": float("nan")}, b""), "not valid JSON"),
    ("header-duplicate-key", lambda m: _members_raw(b'{"a":1,"a":2}'), "duplicate key"),
    ("header-deep", lambda m: {**_members({}, b""), "header.npy": None}, "not valid JSON"),
])
def test_hostile_container_is_rejected(valid, tmp_path, name, members, message):
    import hashlib
    path, header, blob, _ = valid
    m = members(_members(header, blob))
    if m["header.npy"] is None:                           # nesting past Python's recursion limit
        hb = b"[" * 100_000 + b"]" * 100_000
        m = {"blob.npy": _npy(np.zeros(0, np.uint8)), "header.npy": _npy(np.frombuffer(hb, np.uint8)),
             "checksum.npy": _npy(np.frombuffer(hashlib.sha256(hb).digest(), np.uint8))}
    with pytest.raises(ArtifactError, match=message):
        load_integer_model(_zip(tmp_path / f"{name}.npz", m))


# ---- sizes: memory bounded by the declared sizes, time linear in the file ------------------------
def _peak_bytes(fn):
    """Peak Python+NumPy allocation (tracemalloc follows NumPy's buffers) while fn runs."""
    tracemalloc.start()
    try:
        fn()
    except ValueError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_decompression_bomb_is_refused_before_inflating(valid, tmp_path):
    """A blob member that inflates to 2 × MAX_BLOB_BYTES of zeros (a ~70 KB file) is refused from
    its declared size, and the reader allocates a small fraction of it."""
    path, header, blob, _ = valid
    zeros = bytes(2 * MAX_BLOB_BYTES)
    bomb = _zip(tmp_path / "bomb.npz", _members(header, zeros))
    assert bomb.stat().st_size < MAX_BLOB_BYTES // 100
    with pytest.raises(ArtifactError, match="'blob.npy' declares .* at most"):
        load_integer_model(bomb)
    assert _peak_bytes(lambda: load_integer_model(bomb)) < MAX_BLOB_BYTES // 8


@pytest.mark.parametrize("change", [
    lambda h: _step(h, "linear")["weight"].update(shape=[100_000, 100_000]),
    lambda h: h["input"].update(shape=[1, 2 ** 20, 2 ** 20]),
    lambda h: _by_encoding(h, "sparse_gaps").update(shape=[2 ** 24, 120]),
], ids=["weight", "input", "sparse-gaps"])
def test_oversized_declarations_allocate_nothing_big(valid, tmp_path, change):
    path, header, blob, _ = valid
    h = copy.deepcopy(header)
    change(h)
    bad = _write(tmp_path / "big.npz", h, blob)
    peak = _peak_bytes(lambda: load_integer_model(bad))
    assert peak < 4 * len(blob) + 2 ** 20, peak           # about the file itself, not the claim


def _many_steps(header, blob, n, path):
    """A valid model with n extra ReLU steps after the first conv (no-ops: its output is
    already ReLU'd, codes ≥ its zero point)."""
    h = copy.deepcopy(header)
    assert h["steps"][1]["out.relu"] == 1
    relu = {"kind": "relu", "zero": h["steps"][1]["out.out_zero"]}
    h["steps"] = h["steps"][:2] + [dict(relu) for _ in range(n)] + h["steps"][2:]
    return _write(path, h, blob)


def test_loading_is_linear_in_the_number_of_steps(valid, tmp_path):
    """Work per step must not grow with the number of steps: loading 8× the steps takes well
    under 8² / 8 × the time (the quadratic reader took 64× — 35 s for 10k steps). The ratio of
    two timings on the same machine is compared, not a wall-clock limit."""
    path, header, blob, x = valid
    small = _many_steps(header, blob, MAX_STEPS // 8 - len(header["steps"]), tmp_path / "s.npz")
    large = _many_steps(header, blob, MAX_STEPS - len(header["steps"]), tmp_path / "l.npz")

    def best(p):
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            im = load_integer_model(p)
            times.append(time.perf_counter() - t0)
        return min(times), im
    t_small, _ = best(small)
    t_large, im = best(large)
    assert len(im.steps) == MAX_STEPS
    np.testing.assert_array_equal(im.forward(x), load_integer_model(path).forward(x))
    assert t_large / t_small < 32, (t_small, t_large)
