"""ONNX export: ONNX Runtime gives the integer model's logits bit for bit.

Every comparison is ``np.array_equal`` on float32 logits (the graph's last operations are the
same float32 cast and multiply as ``IntegerModel.forward``), under ONNX Runtime's default
SessionOptions, with all graph optimisations on, and with them off.
"""
import copy
import gzip
import json
import subprocess
import sys

import numpy as np
import pytest

from minicompress import models, nn
from minicompress.artifact import ArtifactError
from minicompress.data import load_dataset, normalize
from minicompress.prune import Mask, attach_mask
from minicompress.quantize import calibrate, convert, prepare
from minicompress.quantize import quantize_multiplier
from minicompress.quantize.integer import (IntegerModel, IntFlatten, IntLayer, IntMaxPool, IntReLU,
                                           QuantizeInput)
from minicompress.serialize import input_spec, save_integer_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from minicompress.export_onnx import (OnnxExportError, OnnxRunner, export_onnx,  # noqa: E402
                                      input_standardisation, integer_model_graph)

LEVELS = (None, "all", "disable")   # None: ONNX Runtime's default SessionOptions
MEAN, STD = np.float32(0.3), np.float32(0.37)


@pytest.fixture(scope="module")
def digits_raw():
    """The embedded digits test images in [0, 1] (not standardised) and their labels."""
    return load_dataset("digits", normalized=False)


def reference_logits(im, x_raw, mean=MEAN, std=STD):
    """What ``evaluate`` computes: standardise in float32, then the NumPy integer model."""
    return im.forward(normalize(x_raw, mean, std))


def assert_exact(path, im, x_raw, mean=MEAN, std=STD):
    ref = reference_logits(im, x_raw, mean, std)
    for level in LEVELS:
        runner = OnnxRunner(path, optimization=level)
        logits, labels = runner.run(x_raw)
        assert logits.dtype == np.float32 and logits.shape == ref.shape
        assert np.array_equal(logits, ref), f"logits differ under optimization={level}"
        assert np.array_equal(labels, ref.argmax(1))      # first index on ties, as numpy
    return ref


def prune(layer, keep):
    mask = Mask(layer.weight.data.shape)
    mask.set(keep)
    attach_mask(layer, mask)


def quantized(model, x, w_bits=4, a_bits=8, per_channel=False, input_kind="auto"):
    prepare(model, w_bits, a_bits, per_channel=per_channel, input_kind=input_kind, example_input=x,
            rng=np.random.default_rng(0))
    calibrate(model, x)
    return convert(model)


def export(im, tmp_path, name="m.onnx"):
    return export_onnx(im, tmp_path / name, mean=MEAN, std=STD)


# ---- whole models --------------------------------------------------------------------------------
def test_digits_artifact(tmp_path, digits_raw):
    """A pruned 4-bit lenet300 written as an artifact, exported from the file."""
    (xtr, _), (xte, yte) = digits_raw
    x = normalize(xtr, *input_standardisation({"meta": {"dataset": "digits"}}))
    model = models.lenet300(8, rng=np.random.default_rng(1))
    rng = np.random.default_rng(2)
    for layer in (model.fc1, model.fc2):
        prune(layer, rng.random(layer.weight.data.shape) > 0.8)
    im = quantized(model, x[:300])
    im.input = input_spec((1, 8, 8), *input_standardisation({"meta": {"dataset": "digits"}}))
    art = save_integer_model(im, tmp_path / "a.npz", meta={"dataset": "digits", "seed": 0})
    path = export_onnx(art, tmp_path / "a.onnx")
    mean, std = input_standardisation({"meta": {"dataset": "digits"}})
    assert_exact(path, im, xte, mean, std)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert OnnxRunner(path).meta["dataset"] == "digits"


@pytest.mark.parametrize("name,w_bits,a_bits,per_channel", [
    ("lenet300", 2, 8, False), ("lenet300", 8, 8, True), ("lenet5", 4, 8, False),
    ("lenet5", 8, 4, True), ("lenet5", 3, 2, False)])
def test_hand_built_models(tmp_path, digits_raw, name, w_bits, a_bits, per_channel):
    (xtr, _), (xte, _) = digits_raw
    model = models.build(name, 8, rng=np.random.default_rng(3))
    im = quantized(model, normalize(xtr[:300], MEAN, STD), w_bits, a_bits, per_channel)
    assert_exact(export(im, tmp_path), im, xte)


def test_conv_padding_stride_mask_and_signed_input(tmp_path, digits_raw):
    """Odd channel counts, stride 2, zero padding (the real 0 = code z_x), a sparse Linear; an
    asymmetric (z_x ≠ 0) and an unsigned input grid, and a signed one (codes −128…127, carried
    as uint8 with offset 128: the same model with its input grid moved by hand)."""
    (xtr, _), (xte, _) = digits_raw
    rng = np.random.default_rng(4)
    model = nn.Sequential(
        conv1=nn.Conv2d(1, 3, 3, padding=1, rng=rng), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(3, 5, 3, stride=2, padding=1, rng=rng), relu2=nn.ReLU(),
        flatten=nn.Flatten(), fc1=nn.Linear(20, 7, rng=rng), relu3=nn.ReLU(),
        fc2=nn.Linear(7, 10, bias=False, rng=rng))
    prune(model.fc1, rng.random((7, 20)) > 0.7)
    x = normalize(xtr[:300], MEAN, STD)
    for kind in ("asymmetric", "unsigned"):
        im = quantized(copy.deepcopy(model), x, 3, 4, per_channel=True, input_kind=kind)
        assert (im.steps[0].zero != 0) == (kind == "asymmetric")
        assert_exact(export(im, tmp_path, f"{kind}.onnx"), im, xte)
    first = im.steps[1]
    grid = (first.in_delta, -20, -128, 127)      # codes −128…127 with zero point −20
    im.steps[0] = QuantizeInput(*grid)
    im.steps[1] = IntLayer("conv2d", (first.q_w, first.w_bits, first.w_delta), first.q_b, grid,
                           first.out, first.stride, first.padding)
    assert_exact(export(im, tmp_path, "signed.onnx"), im, xte)


def hand_model(q_w1, q_b1, m, q_w2, in_grid=(np.float32(0.05), 7, 0, 255), out_zero=3,
               out_lo=0, out_hi=255, relu_step=False):
    """QuantizeInput → flatten → Linear (requantised with multiplier(s) m) → [ReLU] → Linear."""
    m0, n = quantize_multiplier(np.asarray(m, np.float64))
    o = q_w1.shape[0]
    out = {"m0": m0, "shift": n, "out_delta": np.float32(1), "out_zero": out_zero,
           "out_lo": out_lo, "out_hi": out_hi, "relu": 0}
    steps = [QuantizeInput(*in_grid), IntFlatten(),
             IntLayer("linear", (q_w1, 8, np.ones(o)), q_b1, in_grid, out)]
    if relu_step:
        steps.append(IntReLU(out_zero))
    steps.append(IntLayer("linear", (q_w2, 8, np.ones(q_w2.shape[0])), np.zeros(q_w2.shape[0]),
                          (np.float32(1), out_zero, out_lo, out_hi),
                          {"out_scale": np.full(q_w2.shape[0], 0.125, np.float32)}))
    return IntegerModel(steps)


def test_requantisation_edges(tmp_path, rng):
    """Negative accumulators, exact .5 ties (M = 2^−k), tiny and per-channel multipliers, saturation
    at both clip bounds and a separate ReLU step — the int64 floor division must equal >>."""
    d, o = 16, 6
    x = rng.uniform(0, 1, (400, 1, 4, 4)).astype(np.float32)
    x[:50] = np.round(x[:50] * 8) / 8      # many inputs on the grid: exact ties downstream
    q_w1 = rng.integers(-127, 128, (o, d))
    q_b1 = rng.integers(-5000, 5000, o)
    m = np.array([0.5, 0.25, 2 ** -10, 1e-9, 0.0371, 3.0])
    for relu_step, grid in ((False, (0, 255)), (True, (-128, 127))):
        im = hand_model(q_w1, q_b1, m, rng.integers(-127, 128, (10, o)), out_lo=grid[0],
                        out_hi=grid[1], relu_step=relu_step)
        assert_exact(export(im, tmp_path, f"r{relu_step}.onnx"), im, x)


def test_full_range_int8_weights_do_not_saturate(tmp_path):
    """Weights −128/127 against inputs at 255: a u8×s8 kernel that adds pairs of products in
    int16 would saturate (2·255·128 > 32767); the export's u8×u8 form must stay exact."""
    d = 64
    q_w1 = np.where(np.arange(d) % 2 == 0, 127, -128)[None, :].repeat(4, 0)
    q_w1[1] = -128
    q_w1[2] = 127
    x = np.ones((8, 1, 8, 8), np.float32)
    x[4:] = 0.0
    grid = (np.float32(1 / 255), 0, 0, 255)
    im = hand_model(q_w1, np.zeros(4), [2 ** -16] * 4, np.eye(10, 4, dtype=np.int64),
                    in_grid=grid, out_zero=128)
    mean, std = np.float32(0), np.float32(1)
    path = export_onnx(im, tmp_path / "sat.onnx", mean=mean, std=std)
    acc = im.steps[2].accumulate(im.steps[1].run(im.steps[0].run(x)))[0]
    assert np.abs(acc).max() >= 255 * 128 * 32        # far beyond int16
    ref = assert_exact(path, im, x, mean, std)
    # classes 4…9 have all-zero weights: tied logits, where ArgMax must pick the first, as numpy
    assert (ref == ref.max(1, keepdims=True)).sum(1).max() > 1


def test_maxpool_and_relu_steps_alone(tmp_path, digits_raw):
    """Steps the converter rarely emits on their own: a ReLU on codes, a max-pool of codes."""
    (_, _), (xte, _) = digits_raw
    grid = (np.float32(0.02), 100, 0, 255)
    rng = np.random.default_rng(5)
    conv = IntLayer("conv2d", (rng.integers(-7, 8, (2, 1, 3, 3)), 4, np.ones(2)), [3, -40], grid,
                    {"m0": [2 ** 26, 3 * 2 ** 25], "shift": [30, 31], "out_delta": np.float32(1),
                     "out_zero": 9, "out_lo": 0, "out_hi": 255, "relu": 0}, padding=1)
    fc = IntLayer("linear", (rng.integers(-7, 8, (10, 2 * 3 * 3)), 4, np.ones(10)), np.zeros(10),
                  (np.float32(1), 9, 0, 255), {"out_scale": np.full(10, 0.5, np.float32)})
    im = IntegerModel([QuantizeInput(*grid), IntReLU(100), conv, IntReLU(9), IntMaxPool(2, 2),
                       IntMaxPool(2, 1), IntFlatten(), fc])
    assert_exact(export(im, tmp_path), im, xte)


# ---- the file ------------------------------------------------------------------------------------
def test_file_is_checked_raw_and_small(tmp_path, digits_raw):
    (xtr, _), _ = digits_raw
    im = quantized(models.lenet300(8, rng=np.random.default_rng(6)), normalize(xtr[:200], MEAN, STD))
    path = export(im, tmp_path)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == 13
    # every constant stored as raw bytes, none as a list of numbers
    for t in proto.graph.initializer:
        assert t.raw_data and not (t.int32_data or t.int64_data or t.float_data)
    # one uint8 per weight (+ small constants): the raw file is ~ the dense uint8 weights
    n_weights = sum(s.q_w.size for s in im.steps if isinstance(s, IntLayer))
    assert n_weights <= path.stat().st_size <= n_weights + 8000
    assert len(gzip.compress(path.read_bytes())) < path.stat().st_size


# ---- bad input -----------------------------------------------------------------------------------
def test_damaged_artifact_is_a_clear_error(tmp_path, digits_raw):
    (xtr, _), _ = digits_raw
    im = quantized(models.lenet300(8, rng=np.random.default_rng(7)), normalize(xtr[:100], MEAN, STD))
    im.input = input_spec((1, 8, 8), MEAN, STD)
    art = save_integer_model(im, tmp_path / "a.npz", meta={"dataset": "digits"})
    blob = bytearray(art.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(blob))
    with pytest.raises(ArtifactError):
        export_onnx(bad, tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()
    r = subprocess.run([sys.executable, "-m", "minicompress", "export-onnx", str(bad), "--out",
                        str(tmp_path / "bad.onnx")], capture_output=True, text=True)
    assert r.returncode != 0 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "bad.npz" in r.stderr


def test_unexpressible_layers_are_clear_errors(tmp_path, digits_raw):
    """16-bit activations (MatMulInteger takes 8-bit inputs) and 16-bit weights are refused."""
    (xtr, _), _ = digits_raw
    x = normalize(xtr[:100], MEAN, STD)
    im = quantized(models.lenet300(8, rng=np.random.default_rng(8)), x, 4, 12)
    with pytest.raises(OnnxExportError, match=r"at most 8 bits"):
        integer_model_graph(im, MEAN, STD)
    im = quantized(models.lenet300(8, rng=np.random.default_rng(8)), x, 12, 8)
    with pytest.raises(OnnxExportError, match=r"12-bit weights"):
        integer_model_graph(im, MEAN, STD)
    im.input = input_spec((1, 8, 8), MEAN, STD)
    art = save_integer_model(im, tmp_path / "w12.npz", meta={"dataset": "digits"})
    r = subprocess.run([sys.executable, "-m", "minicompress", "export-onnx", str(art), "--out",
                        str(tmp_path / "w12.onnx")], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "12-bit weights" in r.stderr and not (tmp_path / "w12.onnx").exists()
    im.input = None
    with pytest.raises(OnnxExportError, match="standardisation"):
        export_onnx(im, tmp_path / "x.onnx")            # no recorded input, no data set, no mean/std


def test_not_an_onnx_file(tmp_path):
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"\x00not a protobuf at all" * 3)
    with pytest.raises(OnnxExportError, match="not a valid ONNX file"):
        OnnxRunner(bad)


# ---- command line --------------------------------------------------------------------------------
def test_cli_export_and_evaluate_with_predictions(tmp_path, digits_raw):
    """``export-onnx`` then ``evaluate`` on both files: same accuracy line, same saved labels."""
    (xtr, _), _ = digits_raw
    mean, std = input_standardisation({"meta": {"dataset": "digits"}})
    im = quantized(models.lenet5(8, rng=np.random.default_rng(9)), normalize(xtr[:300], mean, std))
    im.input = input_spec((1, 8, 8), mean, std)
    art = save_integer_model(im, tmp_path / "m.npz", meta={"dataset": "digits", "seed": 0})
    run = lambda *a: subprocess.run([sys.executable, "-m", "minicompress", *map(str, a)],
                                    capture_output=True, text=True, check=True).stdout
    run("export-onnx", art, "--out", tmp_path / "m.onnx")
    lines = [json.loads(run("evaluate", f, "--predictions", tmp_path / f"{f.stem}.{f.suffix[1:]}.npy"))
             for f in (art, tmp_path / "m.onnx")]
    assert lines[0]["accuracy"] == lines[1]["accuracy"] and lines[1]["test_images"] == 360
    p_npz, p_onnx = (np.load(tmp_path / n, allow_pickle=False) for n in ("m.npz.npy", "m.onnx.npy"))
    assert p_npz.dtype == np.int64 and p_npz.shape == (360,)
    assert np.array_equal(p_npz, p_onnx)


def test_missing_onnx_is_a_one_line_error(tmp_path, monkeypatch, digits_raw):
    """Without the optional packages: an ImportError that says what to install."""
    (xtr, _), _ = digits_raw
    im = quantized(models.lenet300(8, rng=np.random.default_rng(10)), normalize(xtr[:100], MEAN, STD))
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install onnx onnxruntime") as e:
        export(im, tmp_path)
    assert "\n" not in str(e.value)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"onnxruntime is not installed"):
        OnnxRunner(tmp_path / "m.onnx")


def test_invalid_graph_is_a_clear_error(tmp_path):
    """A well-formed protobuf whose graph ONNX Runtime rejects: one line naming the file."""
    h = onnx.helper
    graph = h.make_graph([h.make_node("NoSuchOp", ["images"], ["logits"])], "g",
                         [h.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [1])],
                         [h.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [1])])
    path = tmp_path / "odd.onnx"
    path.write_bytes(h.make_model(graph).SerializeToString())
    with pytest.raises(OnnxExportError, match="ONNX Runtime cannot load it") as e:
        OnnxRunner(path)
    assert "odd.onnx" in str(e.value) and "\n" not in str(e.value)


def test_recorded_standardisation_wins(tmp_path, digits_raw):
    """The artifact's recorded (mean, std) — not the data set's constants — go into the graph."""
    (xtr, _), (xte, _) = digits_raw
    im = quantized(models.lenet300(8, rng=np.random.default_rng(11)), normalize(xtr[:200], MEAN, STD))
    im.input = input_spec((1, 8, 8), MEAN, STD)
    assert (MEAN, STD) != input_standardisation({"meta": {"dataset": "digits"}})
    art = save_integer_model(im, tmp_path / "r.npz", meta={"dataset": "digits"})
    path = export_onnx(art, tmp_path / "r.onnx")
    assert_exact(path, im, xte, MEAN, STD)
    assert OnnxRunner(path).session.get_inputs()[0].shape == ["N", 1, 8, 8]
