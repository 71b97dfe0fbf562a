"""Quantisation table on Fashion-MNIST (document §3.2): PTQ, Adam-learned Δ, QAT, per-channel, and the
integer model (agreement, bytes, forward time) for every row.

Protocol (the same as the PyTorch reference table's): start from the cached dense nets (10 epochs);
weights signed symmetric, activations after ReLU unsigned, per tensor unless stated; the input
8-bit asymmetric (it is normalised, so it has negative values); PTQ calibrated with min–max on
1000 training images; QAT 3 epochs, Adam lr 1e-4 for the weights.

Rows:
  ptq-minmax        calibrated Δ only (no training)
  ptq-learned       Δ's (and the input offset) learned by Adam on the task loss, weights frozen
                    (§3.2.1 steps 4–5): 1 epoch, lr 2e-3 on log Δ, from an MSE-calibrated start
  qat-fixed         weights trained 3 epochs at lr 1e-4 through min–max Δ's that stay fixed
  qat-learned       weights (lr 1e-4) and log Δ (lr 1e-3) trained together, 3 epochs: our LSQ
  *-fullrange       2-bit weights on the full two's-complement grid {−2, −1, 0, 1}·Δ instead of
                    the document's symmetric {−1, 0, 1}·Δ
  *-perchannel      the same with one Δ per output channel for the weights

    OPENBLAS_NUM_THREADS=1 python benchmarks/quant_table.py lenet5 [--rows ptq,qat-learned] [--fast]
writes benchmarks/results/quant_table_<model>.json; a row already in the file is replaced, the
others are kept, so ``--rows`` adds to the table.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import RESULTS, dense_model, fashion, save_result  # noqa: E402

from minicompress.quantize import (QuantizerOptions, calibrate, convert, prepare,  # noqa: E402
                                   train_quantized)
from minicompress.train import TrainConfig, evaluate, predict  # noqa: E402

# (row name, bits, kwargs for prepare, calibration method, training)
ROWS = {
    "ptq-minmax": dict(bits=[8, 4, 2], method="minmax", train=None),
    "ptq-learned": dict(bits=[8, 4, 2], method="mse", train=dict(epochs=1, lr_quant=2e-3)),
    "qat-fixed": dict(bits=[4, 3, 2], method="minmax", learn_delta=False,
                      train=dict(epochs=3, lr_weights=1e-4)),
    "qat-learned": dict(bits=[4, 3, 2], method="mse",
                        train=dict(epochs=3, lr_weights=1e-4, lr_quant=1e-3)),
    "qat-learned-fullrange": dict(bits=[2], method="mse", narrow_range=False,
                                  train=dict(epochs=3, lr_weights=1e-4, lr_quant=1e-3)),
    "qat-learned-fullrange-perchannel": dict(bits=[2], method="mse", narrow_range=False,
                                             per_channel=True,
                                             train=dict(epochs=3, lr_weights=1e-4, lr_quant=1e-3)),
    "ptq-minmax-perchannel": dict(bits=[8, 4, 2], method="minmax", per_channel=True, train=None),
    "qat-learned-perchannel": dict(bits=[4, 2], method="mse", per_channel=True,
                                   train=dict(epochs=3, lr_weights=1e-4, lr_quant=1e-3)),
}


def time_forward(fn, x, repeats=5, batch=1000):
    """Median wall time of a forward pass over x in batches of 1000 (one warm-up)."""
    def run():
        for i in range(0, len(x), batch):
            fn(x[i:i + batch])
    run()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def integer_report(fake, xte, yte, float_model, time_repeats=5):
    im = convert(fake)
    fake_logits = predict(fake, xte)
    int_logits = np.concatenate([im.forward(xte[i:i + 1000]) for i in range(0, len(xte), 1000)])
    fake_pred, int_pred = fake_logits.argmax(1), int_logits.argmax(1)
    # an image whose integer logits tie exactly at the top may be broken either way by float noise
    tie = int_logits[np.arange(len(xte)), fake_pred] == int_logits.max(1)
    float_bytes = im.float_bytes
    timing = {}
    if time_repeats:
        t_float = time_forward(lambda b: float_model.forward(b), xte, time_repeats)
        t_int = time_forward(im.forward, xte, time_repeats)
        timing = {"float_forward_s": t_float, "int_forward_s": t_int, "time_ratio": t_int / t_float}
    return {**timing,
        "int_accuracy": float((int_pred == yte).mean()),
        "agreement": float((int_pred == fake_pred).mean()),
        "agreement_ties_counted": float(((int_pred == fake_pred) | tie).mean()),
        "max_abs_logit_diff": float(np.abs(int_logits - fake_logits).max()),
        "stored_bytes": im.nbytes(), "weight_bytes": im.weight_bytes(), "float32_bytes": float_bytes,
        "bytes_ratio": im.nbytes() / float_bytes,
        "gemm": [np.dtype(s.exact_dtype).name for s in im.steps if hasattr(s, "exact_dtype")],
    }


def run_row(name, spec, bits, dense, data, rng_seed, fast, time_repeats=5):
    (xtr, ytr), (xte, yte) = data
    model = copy.deepcopy(dense)
    options = QuantizerOptions(narrow_range=spec.get("narrow_range", True),
                               learn_delta=spec.get("learn_delta", True))
    prepare(model, bits, bits, per_channel=spec.get("per_channel", False), input_kind="asymmetric",
            options=options)
    calib = xtr[np.random.default_rng(rng_seed).choice(len(xtr), 1000, replace=False)]
    calibrate(model, calib, method=spec["method"], weight_method=spec["method"])
    t0 = time.perf_counter()
    row = {"row": name, "bits": bits, "calibrated_accuracy": evaluate(model, xte, yte)["accuracy"]}
    history = []
    if spec["train"] is not None:
        tr = dict(spec["train"])
        if fast:
            tr["epochs"] = 1
        config = TrainConfig(tr.pop("epochs"), np.random.default_rng(rng_seed + 1),
                             desc=f"{name}-{bits}")
        history = train_quantized(model, (xtr, ytr), config, **tr)
    row["accuracy"] = evaluate(model, xte, yte)["accuracy"]
    row["train_seconds"] = time.perf_counter() - t0
    row["history"] = history
    row.update(integer_report(model, xte, yte, dense, time_repeats))
    print(f"{name:24s} {bits}-bit  calibrated {row['calibrated_accuracy']:.4f}  final "
          f"{row['accuracy']:.4f}  int {row['int_accuracy']:.4f}  agree {row['agreement']:.4f} "
          f"({row['agreement_ties_counted']:.4f})  bytes {row['bytes_ratio']:.4f}  time x"
          f"{row.get('time_ratio', float('nan')):.2f}  ({row['train_seconds']:.0f}s)", flush=True)
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=["lenet300", "lenet5"])
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--fast", action="store_true", help="1 epoch of training, 10k train images")
    ap.add_argument("--time-repeats", type=int, default=5,
                    help="timed forward passes per row (0: skip; quant_speed.py measures speed "
                         "properly, interleaved)")
    args = ap.parse_args()
    data = fashion()
    (xtr, ytr), (xte, yte) = data
    if args.fast:
        data = ((xtr[:10000], ytr[:10000]), (xte, yte))
    dense = dense_model(args.model, data=fashion())
    result = {"model": args.model, "float_accuracy": evaluate(dense, xte, yte)["accuracy"],
              "protocol": __doc__.split("Rows:")[0].strip(), "rows": []}
    print(f"{args.model}: float {result['float_accuracy']:.4f}", flush=True)
    out = f"quant_table_{args.model}"
    previous = RESULTS / f"{out}.json"
    kept = json.loads(previous.read_text())["rows"] if previous.exists() else []
    for name in args.rows.split(","):
        spec = ROWS[name]
        for bits in spec["bits"]:
            row = run_row(name, spec, bits, dense, data, 0, args.fast, args.time_repeats)
            kept = [r for r in kept if (r["row"], r["bits"]) != (name, bits)]
            result["rows"].append(row)
            save_result(out, dict(result, rows=kept + result["rows"]))


if __name__ == "__main__":
    main()
