"""Forward time of the integer model vs the float model (document §3.2.1 step 6), Fashion-MNIST test set.

The machine is shared, so the two are timed *interleaved*: each round runs the float model over
the 10 000 test images (batches of 1000), then the integer model, and the ratio of that round is
kept; we report the median ratio over the rounds (and the median times), both in wall time and in
CPU time of this process (``time.process_time``, which does not count time spent waiting for a
core that another job holds). Speed does not depend on
the training of Δ, only on shapes, bits and the exact-GEMM dtype chosen per layer, so the models
here are PTQ (min–max, 1000 calibration images) from the cached dense nets.

    OPENBLAS_NUM_THREADS=1 python benchmarks/quant_speed.py [--rounds 15]
writes benchmarks/results/quant_speed.json
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import dense_model, fashion, save_result  # noqa: E402

from minicompress.quantize import calibrate, convert, prepare  # noqa: E402
from minicompress.quantize.integer import IntLayer  # noqa: E402


def run_all(fn, x, batch=1000):
    """(wall seconds, CPU seconds of this process) for a forward pass over x."""
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, len(x), batch):
        fn(x[i:i + batch])
    return time.perf_counter() - t0, time.process_time() - c0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--models", default="lenet300,lenet5")
    args = ap.parse_args()
    (xtr, _), (xte, _) = fashion()
    calib = xtr[np.random.default_rng(0).choice(len(xtr), 1000, replace=False)]
    rows = []
    for name in args.models.split(","):
        dense = dense_model(name)
        dense.eval()
        for bits in (8, 4, 2):
            fake = prepare(copy.deepcopy(dense), bits, bits, input_kind="asymmetric")
            calibrate(fake, calib)
            im = convert(fake)
            run_all(dense.forward, xte)
            run_all(im.forward, xte)            # warm-up
            tf, ti = [], []
            for _ in range(args.rounds):
                tf.append(run_all(dense.forward, xte))
                ti.append(run_all(im.forward, xte))
            tf, ti = np.array(tf), np.array(ti)       # columns: wall, CPU
            ratios, cpu_ratios = ti[:, 0] / tf[:, 0], ti[:, 1] / tf[:, 1]
            row = {"model": name, "bits": bits, "float_s": float(np.median(tf[:, 0])),
                   "int_s": float(np.median(ti[:, 0])), "ratio_median": float(np.median(ratios)),
                   "ratio_q25": float(np.percentile(ratios, 25)),
                   "ratio_q75": float(np.percentile(ratios, 75)),
                   "float_cpu_s": float(np.median(tf[:, 1])), "int_cpu_s": float(np.median(ti[:, 1])),
                   "cpu_ratio_median": float(np.median(cpu_ratios)),
                   "gemm": [np.dtype(s.exact_dtype).name for s in im.steps
                            if isinstance(s, IntLayer)]}
            rows.append(row)
            print(f"{name} {bits}-bit: float {row['float_s'] * 1e3:.0f} ms, integer "
                  f"{row['int_s'] * 1e3:.0f} ms, wall ratio {row['ratio_median']:.2f} "
                  f"[{row['ratio_q25']:.2f}, {row['ratio_q75']:.2f}], CPU-time ratio "
                  f"{row['cpu_ratio_median']:.2f}  {row['gemm']}", flush=True)
    save_result("quant_speed" if args.models == "lenet300,lenet5" else
                f"quant_speed_{args.models.replace(',', '_')}", {"rows": rows, "rounds": args.rounds,
                                "note": "10 000 test images, batch 1000, OPENBLAS_NUM_THREADS as "
                                        "set by the caller; median of per-round ratios"})


if __name__ == "__main__":
    main()
