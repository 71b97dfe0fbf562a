"""Mixed-precision weights under a byte budget (``minicompress.quantize.mixed``) vs uniform bits.

Protocol: start from the cached dense net (10 epochs). Weights only: per-tensor symmetric
narrow-range quantisers, Δ from the MSE search (``observe(..., "mse")``), round to nearest, no
training (the same post-training method for both arms); activations stay float.

1. Sensitivity S_l(b), b ∈ {2, 3, 4, 8}, on 5,000 training images (a seeded random slice of the
   training set, which the net was trained on; never test images), two ways: *measured*, the
   increase of the mean cross-entropy when only layer l is quantised to b bits; *Fisher*, the
   estimate ½ Σ F (Q_b(W) − W)² with F the diagonal empirical Fisher (``mixed`` module doc).
2. Budgets: the weight bytes Σ_l ⌈n_l·b/8⌉ of uniform 3- and 4-bit weights, and the midpoints of
   the uniform 2/3- and 3/4-bit budgets (compared with the uniform width below them, which takes
   fewer bytes). The uniform 2-bit budget itself is also listed: it is the least any choice can
   take, so there the knapsack can only pick uniform 2-bit.
3. At each budget the exact knapsack (DP over bytes) picks the bits for each sensitivity; the
   greedy rule (measured sensitivity) is shown for comparison. Accuracy on the 10,000 test images
   of the whole net with the chosen bits, and of uniform bits at the same (or fewer) bytes, with
   the paired standard error of each difference to uniform (the two nets judged on the same test
   images: se = std(c_a − c_u)/√N with c the 0/1 correctness per image).
4. The quantiser does not depend on the calibration images, so other calibration slices
   (``--seeds``) can change only the chosen bits; their choices and accuracies are recorded too.

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


def correct_with(dense, choice, xte, yte, batch_size=1000):
    """0/1 per test image: is the net with ``choice`` bits right?"""
    model = copy.deepcopy(dense)
    mixed.apply_bits(model, choice)
    model.eval()
    pred = np.concatenate([model(xte[i:i + batch_size]).argmax(axis=1)
                           for i in range(0, len(xte), batch_size)])
    return (pred == yte).astype(np.float64)


def paired_se(c_a, c_b):
    """Standard error of mean(c_a) − mean(c_b) on the same images, in points."""
    return 100 * float(np.std(c_a - c_b) / np.sqrt(len(c_a)))


def calib_loss_with(dense, choice, calib):
    model = copy.deepcopy(dense)
    mixed.apply_bits(model, choice)
    return mixed.mean_loss(model, *calib)


BUDGETS = ("uniform 2-bit", "midway 2/3-bit", "uniform 3-bit", "midway 3/4-bit", "uniform 4-bit")


def budgets(sizes):
    """[(label, budget bytes, the uniform width that fits)] for the labels in BUDGETS."""
    u = {b: mixed.uniform_bytes(sizes, b) for b in mixed.BITS}
    return [("uniform 2-bit", u[2], 2), ("midway 2/3-bit", (u[2] + u[3]) // 2, 2),
            ("uniform 3-bit", u[3], 3), ("midway 3/4-bit", (u[3] + u[4]) // 2, 3),
            ("uniform 4-bit", u[4], 4)]


def calibration(xtr, ytr, seed):
    idx = np.random.default_rng(seed).choice(len(xtr), CALIB, replace=False)
    return xtr[idx], ytr[idx]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", choices=["lenet300", "lenet5"], default="lenet300")
    ap.add_argument("--seeds", default="0,1,2",
                    help="calibration slices; the first gives the full table, the others the bits")
    args = ap.parse_args()
    seeds = [int(v) for v in args.seeds.split(",")]
    (xtr, ytr), (xte, yte) = data = fashion()
    dense = dense_model(args.net, data=data)
    sizes = mixed.layer_bytes(dense)
    cache = {}

    def correct(choice):
        key = tuple(choice.values())
        if key not in cache:
            cache[key] = correct_with(dense, choice, xte, yte)
        return cache[key]

    entry = {"protocol": __doc__.split("    OPENBLAS")[0].strip(), "calibration_images": CALIB,
             "calibration_seed": seeds[0], "float_accuracy": evaluate(dense, xte, yte)["accuracy"],
             "layer_bytes": sizes, "other_seeds": {}}
    for seed in seeds:
        calib = calibration(xtr, ytr, seed)
        t0 = time.perf_counter()
        sens = mixed.sensitivity(dense, calib)
        t1 = time.perf_counter()
        fisher = mixed.fisher_sensitivity(dense, calib)
        t2 = time.perf_counter()
        base_loss = mixed.mean_loss(dense, *calib)
        rows = []
        for label, budget, ub in budgets(sizes):
            uni = {n: ub for n in sizes}
            arms = (("knapsack", mixed.knapsack_bits(sens, sizes, budget)),
                    ("knapsack_fisher", mixed.knapsack_bits(fisher, sizes, budget)),
                    ("greedy", mixed.greedy_bits(sens, sizes, budget)), ("uniform", uni))
            row = {"budget": label, "budget_bytes": budget}
            for arm, choice in arms:
                c = correct(choice)
                row[arm] = {"bits": choice, "bytes": mixed.total(sizes, choice),
                            "test_accuracy": float(c.mean())}
                if seed == seeds[0]:
                    row[arm].update(summed_sensitivity=mixed.total(sens, choice),
                                    summed_fisher=mixed.total(fisher, choice),
                                    measured_loss_increase=calib_loss_with(dense, choice, calib)
                                    - base_loss)
                if arm != "uniform":
                    row[arm]["minus_uniform_points"] = 100 * (c.mean() - correct(uni).mean())
                    row[arm]["paired_se_points"] = paired_se(c, correct(uni))
            row["knapsack_minus_uniform_points"] = row["knapsack"]["minus_uniform_points"]
            print(f"{args.net} seed {seed} {label:15s} {budget:7d} B  "
                  + "  ".join(f"{arm} {list(row[arm]['bits'].values())} "
                              f"{100 * row[arm]['test_accuracy']:.2f}" for arm, _ in arms), flush=True)
            rows.append(row)
        if seed == seeds[0]:
            entry.update(float_calibration_loss=base_loss, sensitivity=sens, fisher_sensitivity=fisher,
                         sensitivity_seconds=round(t1 - t0, 1), fisher_seconds=round(t2 - t1, 1),
                         rows=rows)
        else:
            entry["other_seeds"][str(seed)] = {r["budget"]: {arm: {k: r[arm][k] for k in
                                               ("bits", "test_accuracy", "minus_uniform_points")
                                               if k in r[arm]} for arm in
                                               ("knapsack", "knapsack_fisher", "greedy")}
                                               for r in rows}
    entry["command"] = (f"OPENBLAS_NUM_THREADS=1 python benchmarks/mixed_precision.py --net {args.net}"
                        f" --seeds {args.seeds}")
    entry["machine"] = _machine()
    with locked_results("mixed_precision") as results:
        results[args.net] = entry


if __name__ == "__main__":
    main()
