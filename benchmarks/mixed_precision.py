"""Mixed-precision weights under a byte budget (``minicompress.quantize.mixed``) vs uniform bits.

Protocol: start from the cached dense net (10 epochs). Weights only: per-tensor symmetric
narrow-range quantisers, Δ from the MSE search (``observe(..., "mse")``), round to nearest, no
training (the same post-training method for both arms); activations stay float.

1. Sensitivity S_l(b), b ∈ {2, 3, 4, 8}: the increase of the mean cross-entropy on 5,000 training
   images (a seeded random slice of the training set, which the net was trained on; never test
   images) when only layer l is quantised to b bits.
2. Budgets: the weight bytes Σ_l ⌈n_l·b/8⌉ of uniform 3- and 4-bit weights, and the midpoint of
   the uniform 2- and 3-bit budgets (2.5 bits a weight on average; compared with uniform 2-bit,
   which takes fewer bytes). The uniform 2-bit budget itself is also listed: it is the least any
   choice can take, so there the knapsack can only pick uniform 2-bit.
3. At each budget the exact knapsack (DP over bytes) picks the bits; the greedy rule is shown for
   comparison. Accuracy on the 10,000 test images of the whole net with the chosen bits, and of
   uniform bits at the same (or fewer) bytes.

    OPENBLAS_NUM_THREADS=1 python benchmarks/mixed_precision.py --net lenet300
writes benchmarks/results/mixed_precision.json (the other net's entry is kept).
"""
from __future__ import annotations

import argparse
import copy
import time

import numpy as np

from common import dense_model, fashion, locked_results, _machine

from minicompress.quantize import mixed
from minicompress.train import evaluate

CALIB = 5000


def accuracy_with(dense, choice, xte, yte):
    model = copy.deepcopy(dense)
    mixed.apply_bits(model, choice)
    return evaluate(model, xte, yte)["accuracy"]


def calib_loss_with(dense, choice, calib):
    model = copy.deepcopy(dense)
    mixed.apply_bits(model, choice)
    return mixed.mean_loss(model, *calib)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", choices=["lenet300", "lenet5"], default="lenet300")
    ap.add_argument("--seed", type=int, default=0, help="chooses the calibration slice")
    args = ap.parse_args()
    (xtr, ytr), (xte, yte) = data = fashion()
    dense = dense_model(args.net, data=data)
    idx = np.random.default_rng(args.seed).choice(len(xtr), CALIB, replace=False)
    calib = (xtr[idx], ytr[idx])
    t0 = time.perf_counter()
    sizes = mixed.layer_bytes(dense)
    sens = mixed.sensitivity(dense, calib)
    t_sens = time.perf_counter() - t0
    uniform = {b: mixed.uniform_bytes(sizes, b) for b in mixed.BITS}
    budgets = [("uniform 2-bit", uniform[2], 2), ("midway 2/3-bit", (uniform[2] + uniform[3]) // 2, 2),
               ("uniform 3-bit", uniform[3], 3), ("uniform 4-bit", uniform[4], 4)]
    base_loss = mixed.mean_loss(dense, *calib)
    rows = []
    for label, budget, ub in budgets:
        t1 = time.perf_counter()
        best = mixed.knapsack_bits(sens, sizes, budget)
        t_dp = time.perf_counter() - t1
        greedy = mixed.greedy_bits(sens, sizes, budget)
        uni = {n: ub for n in sizes}
        row = {"budget": label, "budget_bytes": budget, "dp_seconds": round(t_dp, 4)}
        for arm, choice in (("knapsack", best), ("greedy", greedy), ("uniform", uni)):
            row[arm] = {"bits": choice, "bytes": mixed.total(sizes, choice),
                        "summed_sensitivity": mixed.total(sens, choice),
                        "measured_loss_increase": calib_loss_with(dense, choice, calib) - base_loss,
                        "test_accuracy": accuracy_with(dense, choice, xte, yte)}
        row["knapsack_minus_uniform_points"] = 100 * (row["knapsack"]["test_accuracy"]
                                                      - row["uniform"]["test_accuracy"])
        print(f"{args.net} {label:15s} {budget:7d} B  knapsack {best} "
              f"{row['knapsack']['test_accuracy']:.4f}  greedy {row['greedy']['test_accuracy']:.4f}  "
              f"uniform {ub}-bit {row['uniform']['test_accuracy']:.4f}", flush=True)
        rows.append(row)
    entry = {"protocol": __doc__.split("    OPENBLAS")[0].strip(), "calibration_images": CALIB,
             "calibration_seed": args.seed, "float_accuracy": evaluate(dense, xte, yte)["accuracy"],
             "float_calibration_loss": base_loss, "layer_bytes": sizes, "sensitivity": sens,
             "sensitivity_seconds": round(t_sens, 1), "rows": rows,
             "command": f"OPENBLAS_NUM_THREADS=1 python benchmarks/mixed_precision.py --net {args.net}"
                        f" --seed {args.seed}", "machine": _machine()}
    with locked_results("mixed_precision") as results:
        results[args.net] = entry


if __name__ == "__main__":
    main()
