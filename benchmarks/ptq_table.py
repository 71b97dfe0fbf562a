"""Post-training quantisation table on Fashion-MNIST: round-to-nearest, learned Δ, AdaRound, GPTQ.

Protocol: start from the cached dense nets (10 epochs); no weight retraining; 1000 calibration
images drawn from the training set (seed s of the draw, s = 0, 1, 2: mean ± std over the draws);
activations 8-bit (after every ReLU unsigned, the input asymmetric), calibrated min–max on the
calibration images; weights signed, one Δ per output channel, on the two's-complement grid
[−2^(n−1), 2^(n−1) − 1] (at 2 bits {−2, −1, 0, 1}·Δ); every model is converted to the integer
model, written as an artifact file and read back; the accuracy is the integer model's on the
10,000 test images.

Rows:
  rtn-minmax    round-to-nearest, Δ = max|w|/(2^(n−1) − 1) per channel (the document's Δ)
  rtn-mse       round-to-nearest, Δ per channel from the MSE search (observers.mse_observer)
  learned-delta §3.2.1 steps 4–5 with the weights frozen: Adam on log Δ (and the input offset),
                task loss on the calibration images only: 61 passes in batches of 128 (488 steps,
                about the quant table's one epoch of 469 steps), lr 2e-3, from the MSE Δ
  adaround      Δ from the MSE search, then AdaRound layer after layer (1000 Adam steps per
                layer, lr 3e-2, λ = 0.01, β 20 → 2 after a 20 % warm-up)
  gptq          Δ from the MSE search, then GPTQ layer after layer (damping 0.01·mean diag H)

    OPENBLAS_NUM_THREADS=1 nice python benchmarks/ptq_table.py lenet300 [--rows gptq,adaround]
        [--bits 4,3,2] [--seeds 0,1,2] [--granularity per-channel|per-tensor]
writes benchmarks/results/ptq_table_<net>.json: every (row, bits, granularity) entry holds the runs
of each seed (a run already there for the same seed is replaced) and their mean ± std.
"""
from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import RESULTS, add_run, dense_model, fashion, locked_results, mean_std  # noqa: E402

from minicompress.data import standardization  # noqa: E402
from minicompress.quantize import (QuantizerOptions, calibrate, convert, prepare,  # noqa: E402
                                   train_quantized)
from minicompress.quantize.adaround import AdaRoundConfig, adaround  # noqa: E402
from minicompress.quantize.gptq import gptq  # noqa: E402
from minicompress.serialize import input_spec, load_integer_model, save_integer_model  # noqa: E402
from minicompress.train import TrainConfig, evaluate  # noqa: E402

ROWS = ("rtn-minmax", "rtn-mse", "learned-delta", "adaround", "gptq")
CALIBRATION_IMAGES = 1000
LEARNED_STEPS, LEARNED_BATCH, LEARNED_LR = 469, 128, 2e-3   # = 1 epoch of 60k, the quant table's


def calibration_set(xtr, ytr, seed):
    idx = np.random.default_rng(seed).choice(len(xtr), CALIBRATION_IMAGES, replace=False)
    return xtr[idx], ytr[idx]


def quantized_model(dense, row, bits, calib, seed, per_channel, adaround_iterations):
    """The dense net prepared (bits-bit weights, 8-bit activations), calibrated and put through
    the row's method; returns (model, seconds spent in the method itself)."""
    (xc, yc) = calib
    model = copy.deepcopy(dense)
    prepare(model, bits, 8, per_channel=per_channel, input_kind="asymmetric",
            options=QuantizerOptions(narrow_range=False))
    calibrate(model, xc, method="minmax",
              weight_method="minmax" if row == "rtn-minmax" else "mse")
    t0 = time.perf_counter()
    if row == "learned-delta":
        # as many images seen as the quant table's one epoch (469 steps of 128): 61 passes over 1000
        epochs = -(-LEARNED_STEPS * LEARNED_BATCH // len(xc))
        train_quantized(model, (xc, yc), TrainConfig(epochs, np.random.default_rng(seed + 1),
                                                     batch_size=LEARNED_BATCH, progress=False),
                        lr_quant=LEARNED_LR)
    elif row == "adaround":
        adaround(model, xc, AdaRoundConfig(iterations=adaround_iterations))
    elif row == "gptq":
        gptq(model, xc)
    return model, time.perf_counter() - t0


def artifact_round_trip(model, xte, yte, path):
    """convert → artifact file → read back; the read-back integer model's accuracy and bytes."""
    im = convert(model)
    im.input = input_spec(xte.shape[1:], *standardization("fashion-mnist"))
    save_integer_model(im, path, meta={"dataset": "fashion-mnist"})
    back = load_integer_model(path)
    pred = back.predict(xte)
    return {"int_accuracy": float((pred == yte).mean()), "artifact_bytes": path.stat().st_size,
            "stored_bytes": im.nbytes(), "weight_bytes": im.weight_bytes()}


def cli_evaluate(path):
    """``python -m minicompress evaluate FILE``: the accuracy the command line reports."""
    out = subprocess.run([sys.executable, "-m", "minicompress", "evaluate", str(path)],
                         capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])["accuracy"]


def summarize(name):
    """mean ± std over the seeds of every entry, for the tables."""
    with locked_results(name) as data:
        for key, entry in data.items():
            if isinstance(entry, dict) and "runs" in entry:
                for field in ("accuracy", "int_accuracy", "method_seconds"):
                    entry[field] = mean_std([r[field] for r in entry["runs"]])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", choices=["lenet300", "lenet5"])
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--bits", default="4,3,2")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--granularity", choices=["per-channel", "per-tensor"], default="per-channel")
    ap.add_argument("--adaround-iterations", type=int, default=1000)
    ap.add_argument("--cli-check", action="store_true",
                    help="also run `python -m minicompress evaluate` on each seed-0 artifact")
    args = ap.parse_args()
    rows = args.rows.split(",")
    bad = [r for r in rows if r not in ROWS]
    if bad:
        ap.error(f"--rows: unknown {bad}; valid: {','.join(ROWS)}")
    try:
        bits_list = [int(b) for b in args.bits.split(",")]
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        ap.error(f"--bits and --seeds take comma-separated integers, got {args.bits!r} and {args.seeds!r}")
    if not all(2 <= b <= 8 for b in bits_list) or min(seeds) < 0:
        ap.error(f"--bits must be in [2, 8] and --seeds ≥ 0, got {args.bits!r} and {args.seeds!r}")
    (xtr, ytr), (xte, yte) = fashion()
    dense = dense_model(args.model, data=((xtr, ytr), (xte, yte)))
    float_acc = evaluate(dense, xte, yte)["accuracy"]
    name = f"ptq_table_{args.model}"
    with locked_results(name) as data:
        data.update(model=args.model, float_accuracy=float_acc,
                    protocol=__doc__.split("Rows:")[0].strip())
    print(f"{args.model}: float {float_acc:.4f}", flush=True)
    per_channel = args.granularity == "per-channel"
    with tempfile.TemporaryDirectory() as tmp:
        for bits in bits_list:
            for row in rows:
                for seed in seeds:
                    calib = calibration_set(xtr, ytr, seed)
                    model, seconds = quantized_model(dense, row, bits, calib, seed, per_channel,
                                                     args.adaround_iterations)
                    run = {"seed": seed, "accuracy": evaluate(model, xte, yte)["accuracy"],
                           "method_seconds": seconds}
                    path = Path(tmp) / f"{row}_{bits}_{seed}.npz"
                    run.update(artifact_round_trip(model, xte, yte, path))
                    if args.cli_check and seed == seeds[0]:
                        run["cli_accuracy"] = cli_evaluate(path)
                    settings = {"row": row, "bits": bits, "granularity": args.granularity,
                                "calibration_images": CALIBRATION_IMAGES}
                    if row == "adaround":
                        settings["adaround_iterations"] = args.adaround_iterations
                    add_run(name, f"{row}/{bits}/{args.granularity}", run, ("seed",), settings)
                    print(f"{row:14s} {bits}-bit seed {seed}: fake {run['accuracy']:.4f}  int "
                          f"{run['int_accuracy']:.4f}  {run['artifact_bytes']} B  "
                          f"{seconds:.1f}s", flush=True)
                summarize(name)
    print(f"wrote {RESULTS / (name + '.json')}")


if __name__ == "__main__":
    main()
