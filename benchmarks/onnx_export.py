"""Exported artifacts in ONNX Runtime: same predictions and logits as ``evaluate``? How big, how fast?
And the PyTorch round trip of a float and a fake-quantised lenet5 on Fashion-MNIST.

    OPENBLAS_NUM_THREADS=1 python benchmarks/onnx_export.py ART.npz [ART.npz ...] [--torch]

For each artifact (Fashion-MNIST, 10,000 test images): export to ONNX, run the graph on the raw
[0, 1] images under ONNX Runtime's default SessionOptions, with every graph optimisation on
(ORT_ENABLE_ALL) and with none, and compare with the NumPy integer model on the standardised
images — labels (``evaluate``'s predictions) and float32 logits, bit for bit. Sizes: the
artifact, the .onnx file raw and gzip-compressed (level 9). Latency: the median of 20 batches of
256 images, NumPy integer model vs ONNX Runtime (1 thread, and its default thread count).

``--torch``: lenet5 trained 1 epoch (cached), then 4-bit weights/8-bit activations with a 50 %
random mask, calibrated: both networks through ``save_torch_state`` → torch.nn (strict load) →
.pt → back; predictions on the 10,000 test images compared.
An artifact's ``<name>_report.json`` beside it (``compress --report``), if present, adds the
recipe it was made with to the result.
Targets: all agreements 100 %; ``onnx.checker`` passes; the fashion_10kb export ≤ 16 KB gzip.
Result → ``benchmarks/results/onnx_export.json``.
"""
import argparse
import gzip
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import dense_model, fashion, save_result
from minicompress.data import load_dataset
from minicompress.export_onnx import OnnxRunner, export_onnx
from minicompress.metrics import median_seconds
from minicompress.serialize import load_integer_model, read_header

ROOT = Path(__file__).resolve().parent.parent
BATCH, REPEATS = 256, 20


def artifact_row(path, out_dir, x_raw, x_std, y):
    import onnx
    path = Path(path)
    onnx_path = export_onnx(path, Path(out_dir) / (path.stem + ".onnx"))
    onnx.checker.check_model(onnx.load(str(onnx_path)), full_check=True)
    im = load_integer_model(path)
    ref = np.concatenate([im.forward(x_std[i:i + 1000]) for i in range(0, len(x_std), 1000)])
    row = {"artifact": path.name, "steps": [s["kind"] for s in read_header(path)["steps"]],
           "test_images": int(len(y)), "checker": "passed",
           "artifact_bytes": path.stat().st_size,
           "onnx_bytes": onnx_path.stat().st_size,
           "onnx_gzip_bytes": len(gzip.compress(onnx_path.read_bytes(), 9)),
           "integer_model_accuracy": float((ref.argmax(1) == y).mean())}
    for level in ("default", "all", "disable"):
        runner = OnnxRunner(onnx_path, optimization=None if level == "default" else level)
        outs = [runner.run(x_raw[i:i + 1000]) for i in range(0, len(x_raw), 1000)]
        logits = np.concatenate([o[0] for o in outs])
        labels = np.concatenate([o[1] for o in outs])
        row[f"ort_{level}"] = {
            "labels_equal": float((labels == ref.argmax(1)).mean()),
            "logits_bit_equal": bool(np.array_equal(logits, ref)),
            "max_abs_logit_difference": float(np.abs(logits - ref).max()),
            "accuracy": float((labels == y).mean())}
    xb_std, xb_raw = x_std[:BATCH], x_raw[:BATCH]
    row["latency_ms_batch256"] = {
        "numpy_integer_model": 1e3 * median_seconds(im.forward, xb_std, REPEATS, 3),
        "onnxruntime_1_thread": 1e3 * median_seconds(OnnxRunner(onnx_path, threads=1).forward,
                                                     xb_raw, REPEATS, 3),
        "onnxruntime_default_threads": 1e3 * median_seconds(OnnxRunner(onnx_path).forward,
                                                            xb_raw, REPEATS, 3)}
    report = path.with_name(path.stem + "_report.json")      # written by `compress --report`
    if report.exists():
        import json
        r = json.loads(report.read_text())
        row["recipe"] = r.get("recipe")
        row["stages"] = [{k: s[k] for k in ("stage", "accuracy", "bytes")} for s in r.get("stages", [])]
    print(f"{path.name}: artifact {row['artifact_bytes']:,} B, onnx {row['onnx_bytes']:,} B "
          f"(gzip {row['onnx_gzip_bytes']:,} B); labels equal {row['ort_default']['labels_equal']:.4f}, "
          f"logits bit-equal {row['ort_default']['logits_bit_equal']} "
          f"(all: {row['ort_all']['logits_bit_equal']}, none: {row['ort_disable']['logits_bit_equal']}); "
          f"latency {row['latency_ms_batch256']}", flush=True)
    return row


def torch_round_trip(data):
    import copy

    import torch
    sys.path.insert(0, str(ROOT / "scripts"))
    import torch_modules
    from minicompress import models
    from minicompress.prune import Mask, attach_mask
    from minicompress.quantize import calibrate, convert, prepare
    from minicompress.torch_state import load_torch_state, save_torch_state
    from minicompress.train import predict
    torch.set_num_threads(1)
    (xtr, _), (xte, yte) = data
    float_model = dense_model("lenet5", epochs=1, data=data, progress=False)
    fake = copy.deepcopy(float_model)
    rng = np.random.default_rng(0)
    for layer in (fake.conv2, fake.fc1, fake.fc2):
        mask = Mask(layer.weight.data.shape)
        mask.set(rng.random(layer.weight.data.shape) < 0.5)
        attach_mask(layer, mask)
    prepare(fake, 4, 8, example_input=xtr[:1000], rng=np.random.default_rng(1))
    calibrate(fake, xtr[:1000])
    rows = {}
    for name, model in (("float", float_model), ("fake_quantized", fake)):
        with tempfile.TemporaryDirectory() as d:
            save_torch_state(model, Path(d) / "s.npz")
            net, arch = torch_modules.from_npz(Path(d) / "s.npz")
            torch_modules.save_pt(net, arch, Path(d) / "m.pt")
            net, arch = torch_modules.load_pt(Path(d) / "m.pt")
            with torch.no_grad():
                t_logits = np.concatenate([net(torch.from_numpy(xte[i:i + 1000])).numpy()
                                           for i in range(0, len(xte), 1000)])
            ours = predict(model, xte)
            torch_modules.to_npz(net, arch, Path(d) / "back.npz")
            back = models.lenet5(28, rng=np.random.default_rng(7))     # fresh weights
            if name == "fake_quantized":                                 # fresh quantizers, no mask
                prepare(back, 4, 8, example_input=xtr[:1000], rng=np.random.default_rng(8))
            load_torch_state(back, Path(d) / "back.npz")
            ours_back = predict(back, xte)
        row = {"predictions_equal_torch_vs_ours": float((t_logits.argmax(1) == ours.argmax(1)).mean()),
               "predictions_equal_after_way_back": float((ours_back.argmax(1) == ours.argmax(1)).mean()),
               "max_abs_logit_difference_torch": float(np.abs(t_logits - ours).max()),
               "accuracy": float((ours.argmax(1) == yte).mean())}
        if name == "fake_quantized":
            a, b = convert(model).to_arrays(), convert(back).to_arrays()
            row["integer_model_identical_after_way_back"] = bool(
                a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a))
        rows[name] = row
        print(f"torch round trip ({name}): {row}", flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts", nargs="*", help="Fashion-MNIST artifacts (.npz)")
    parser.add_argument("--torch", action="store_true", help="also the PyTorch round trip")
    parser.add_argument("--out-dir", default=None, help="where the .onnx files go (default: temp)")
    parser.add_argument("--note", help="how the artifacts were made, kept in the results file")
    args = parser.parse_args()
    (_, _), (x_raw, y) = load_dataset("fashion-mnist", normalized=False)
    data = fashion()
    x_std = data[1][0]
    result = {"onnx": [], "batch": BATCH, "repeats": REPEATS}
    if args.note:
        result["note"] = args.note
    import onnx
    import onnxruntime
    result["versions"] = {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.artifacts:
            result["onnx"].append(artifact_row(path, args.out_dir or tmp, x_raw, x_std, y))
    if args.torch:
        result["torch_round_trip"] = torch_round_trip(data)
    save_result("onnx_export", result)


if __name__ == "__main__":
    main()
