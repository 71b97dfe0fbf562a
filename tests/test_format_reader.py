"""docs/FORMAT.md is complete enough to run a model: ``scripts/run_artifact_standalone.py``, a
reader written from the document that does not import minicompress, gives the integer model's
logits bit for bit and the accuracy ``python -m minicompress evaluate`` reports, reading the
input standardisation from the file."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from minicompress import models, optim
from minicompress.__main__ import main
from minicompress.data import load_dataset, standardization
from minicompress.quantize import calibrate, convert, prepare
from minicompress.artifact import BASE_ENCODINGS, HUFFMAN_ENCODINGS
from minicompress.serialize import input_spec, load_integer_model, save_integer_model
from minicompress.train import TrainConfig, fit

ALL_ENCODINGS = BASE_ENCODINGS + HUFFMAN_ENCODINGS
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import run_artifact_standalone as standalone  # noqa: E402


def _artifact(path, model, dataset, x_train, sparsity=0.0, rng=None, encodings=None):
    """Quantise a (trained) float model to W4A8 and write it with its data set's
    standardisation; some weights zeroed first so the sparse encodings are exercised."""
    if sparsity:
        for layer in (m for _, m in model.named_children() if hasattr(m, "weight")):
            layer.weight.data *= rng.random(layer.weight.data.shape) >= sparsity
    prepare(model, 4, 8, input_kind="auto", example_input=x_train[:500])
    calibrate(model, x_train[:500])
    im = convert(model)
    im.input = input_spec(x_train.shape[1:], *standardization(dataset))
    return im, save_integer_model(im, path, meta={"dataset": dataset}, encodings=encodings)


def _check_reader(path, im, dataset, capsys):
    """Standalone logits == IntegerModel logits (bit for bit) on the raw test images, and the
    standalone accuracy == evaluate's."""
    _, (raw, y) = load_dataset(dataset, normalized=False)
    header, blob = standalone.read(path)
    x = standalone.standardize(header, raw)
    np.testing.assert_array_equal(x, load_dataset(dataset)[1][0])   # the training standardisation
    logits = standalone.run(header, blob, x)
    reloaded = load_integer_model(path)
    assert logits.dtype == np.float32
    np.testing.assert_array_equal(logits, reloaded.forward(reloaded.standardize(raw)))
    np.testing.assert_array_equal(logits, im.forward(x))
    assert main(["evaluate", str(path)]) == 0
    reported = json.loads(capsys.readouterr().out)["accuracy"]
    assert float((standalone.predict(header, blob, raw) == y).mean()) == reported
    return reported


def test_standalone_reader_on_a_digits_cnn(tmp_path, digits, capsys):
    (xtr, ytr), _ = digits
    rng = np.random.default_rng(0)
    model = models.lenet5(8, rng=rng)
    fit(model, optim.Adam(model.parameters(), lr=3e-3), (xtr, ytr), TrainConfig(2, rng, batch_size=64))
    im, path = _artifact(tmp_path / "digits.npz", model, "digits", xtr, 0.5, rng)
    encodings = {s["weight"]["encoding"] for s in standalone.read(path)[0]["steps"] if "weight" in s}
    assert encodings - {"packed"}                          # a sparse encoding is read too
    assert _check_reader(path, im, "digits", capsys) > 0.3


@pytest.mark.fashion
def test_standalone_reader_on_a_fashion_mnist_mlp(tmp_path, fashion, capsys):
    (xtr, ytr), _ = fashion
    rng = np.random.default_rng(0)
    model = models.student(28, hidden=32, rng=rng)
    fit(model, optim.Adam(model.parameters(), lr=1e-3), (xtr[:10000], ytr[:10000]),
        TrainConfig(1, rng, batch_size=128))
    im, path = _artifact(tmp_path / "fashion.npz", model, "fashion-mnist", xtr, 0.5, rng)
    assert _check_reader(path, im, "fashion-mnist", capsys) > 0.3


@pytest.mark.parametrize("encoding", ["huffman", "sparse_huffman"])
def test_standalone_reader_decodes_huffman_weights(tmp_path, digits, capsys, encoding):
    """Every weight forced into one Huffman encoding (format version 3): the reader written
    from the document's Huffman-block rules gives the same logits, bit for bit."""
    (xtr, ytr), _ = digits
    rng = np.random.default_rng(3)
    model = models.lenet5(8, rng=rng)
    fit(model, optim.Adam(model.parameters(), lr=3e-3), (xtr, ytr), TrainConfig(1, rng, batch_size=64))
    im, path = _artifact(tmp_path / f"{encoding}.npz", model, "digits", xtr, 0.7, rng,
                         encodings=(encoding,))
    header = standalone.read(path)[0]
    assert header["format_version"] == 3
    assert {s["weight"]["encoding"] for s in header["steps"] if "weight" in s} == {encoding}
    _check_reader(path, im, "digits", capsys)


def test_the_documents_huffman_example(tmp_path):
    """FORMAT.md's worked example: values −1..2 with counts 5, 2, 1, 1 → lengths 1, 2, 3, 3,
    table 0x12 0x33; the codes [−1, 0, −1, 1] → the byte 0x4C. Both readers decode it."""
    from minicompress.artifact import huffman_block
    block, table = huffman_block(np.array([0, 1, 0, 2, 0, 0, 0, 1, 3]), 4)   # counts 5, 2, 1, 1
    assert block[:table] == bytes([0x12, 0x33])
    from minicompress.huffman import encode
    assert encode([0, 1, 0, 2], [1, 2, 3, 3]) == bytes([0x4C])
    assert list(standalone.huffman_block(bytes([0x12, 0x33, 0x4C]), -1, 2, 4)) == [-1, 0, -1, 1]
    for bad in (bytes([0x12, 0x32, 0x4C]),          # Kraft sum 1/2 + 1/4 + 1/8 + 1/4 > 1
                bytes([0x12, 0x34, 0x4C]),          # 1/2 + 1/4 + 1/8 + 1/16 < 1
                bytes([0x12, 0x33, 0x4C, 0x00]),    # a byte after the last code
                bytes([0x12, 0x33, 0x4D])):         # non-zero padding
        with pytest.raises(ValueError):
            standalone.huffman_block(bad, -1, 2, 4)


def test_argmax_ties_go_to_the_lowest_index(tmp_path, digits):
    """Equal logits → the lowest class index, in minicompress and in the reader alike."""
    (xtr, _), (xte, _) = digits
    rng = np.random.default_rng(1)
    model = models.student(8, hidden=8, rng=rng)
    model.fc2.weight.data[...] = 0                         # every logit = its bias ...
    model.fc2.bias.data[...] = 0                           # ... = 0: a ten-way tie
    im, path = _artifact(tmp_path / "tie.npz", model, "digits", xtr)
    header, blob = standalone.read(path)
    assert np.all(standalone.run(header, blob, xte[:5]) == 0)
    assert list(standalone.predict(header, blob, xte[:5])) == [0] * 5
    assert list(im.predict(xte[:5])) == [0] * 5


def _encode_via_plain_arrays(im, meta):
    """The earlier writer: IntegerModel.to_arrays() (weights bit-packed), unpacked again and
    re-encoded for the file. Kept here to pin that the direct writer gives the same bytes."""
    from minicompress.artifact import BlobWriter
    from minicompress.quantize.bitpack import unpack_bits
    arrays = im.to_arrays()
    blob, steps = BlobWriter(), []
    for i in range(int(arrays["num_steps"])):
        prefix = f"steps.{i}."
        fields = {k[len(prefix):]: np.asarray(v) for k, v in arrays.items() if k.startswith(prefix)}
        step = {"kind": str(fields.pop("kind"))}
        if "weight_packed" in fields:
            shape = [int(s) for s in fields.pop("weight_shape")]
            bits = int(fields["weight_bits"])
            codes = unpack_bits(fields.pop("weight_packed"), bits, int(np.prod(shape)), signed=True)
            step["weight"] = blob.add_codes(codes.reshape(shape), bits)
        for name, v in sorted(fields.items()):
            step[name] = (float(v) if v.dtype.kind == "f" else int(v)) if v.ndim == 0 else blob.add_raw(v)
        steps.append(step)
    header = {"model": str(arrays["format"]), "steps": steps, "meta": dict(meta),
              "input": im.input, "float_bytes": int(arrays["float_bytes"])}
    return header, blob.getvalue()


def test_direct_writer_gives_the_bytes_of_the_plain_array_route(tmp_path, digits):
    """The file is written straight from the integer model's codes (one in-memory form, no
    pack → unpack detour) and reads back into the same model: same header, same blob, same
    logits — and a second save of the loaded model gives the same file, byte for byte."""
    from minicompress.artifact import write_artifact
    from minicompress.serialize import encode_integer_model
    (xtr, _), (xte, _) = digits
    rng = np.random.default_rng(2)
    im, path = _artifact(tmp_path / "a.npz", models.lenet5(8, rng=rng), "digits", xtr, 0.6, rng)
    meta = {"dataset": "digits"}
    assert encode_integer_model(im, meta) == _encode_via_plain_arrays(im, meta)
    write_artifact(tmp_path / "b.npz", *_encode_via_plain_arrays(im, meta))
    every = save_integer_model(im, tmp_path / "every.npz", meta, encodings=ALL_ENCODINGS)
    assert (tmp_path / "b.npz").read_bytes() == every.read_bytes()
    again = save_integer_model(load_integer_model(path), tmp_path / "c.npz", meta=meta)
    assert again.read_bytes() == path.read_bytes()
    np.testing.assert_array_equal(load_integer_model(again).forward(xte), im.forward(xte))


def test_images_of_the_wrong_shape_are_a_clear_error(tmp_path, digits):
    """A digits model (8x8 input, recorded in the file) given 28x28 images."""
    (xtr, _), _ = digits
    _, path = _artifact(tmp_path / "d.npz", models.student(8, hidden=8,
                        rng=np.random.default_rng(0)), "digits", xtr)
    with pytest.raises(ValueError, match=r"shape \(N, 1, 8, 8\)"):
        load_integer_model(path).forward(np.zeros((2, 1, 28, 28), np.float32))
