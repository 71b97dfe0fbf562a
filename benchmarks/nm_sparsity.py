"""2:4 sparsity on Fashion-MNIST: magnitude vs Adam-learned N:M masks (``minicompress.prune.nm``).

Protocol: start from the cached dense nets (10 epochs, Adam 1e-3); every Linear and Conv2d is
pruned 2:4 along the rows of ``W.reshape(O, K)`` (conv: K = C_in·k·k in C order). LeNet-5's
convolutions have K = 25 and 150, not multiples of 4: their rows are padded (the last group of a
row keeps min(2, r) of its r real weights), so their sparsity is slightly under 50 %.

Arms:
  dense             the cached checkpoint, unchanged
  magnitude         2:4 by |W|, no training
  magnitude+ft      2:4 by |W|, mask fixed, weights fine-tuned with Adam (lr 1e-4) for EPOCHS
  learned           mask re-chosen every step from |W| + s, s learned by the same Adam
                    (score lr 1e-4, straight-through ∂L/∂s = ∂L/∂W_eff ⊙ W), weights lr 1e-4,
                    EPOCHS epochs, then the final mask fixed

Accuracy on the 10,000 test images; each arm × seed (the seed sets the batch order) is one run.

    OPENBLAS_NUM_THREADS=1 python benchmarks/nm_sparsity.py --net lenet300 --seeds 0,1,2
writes benchmarks/results/nm_sparsity.json (runs of other nets/arms/seeds are kept).
"""
from __future__ import annotations

import argparse
import copy
import time

import numpy as np

from common import add_run, dense_model, fashion, locked_results, mean_std, run_entries

from minicompress import optim, prune
from minicompress.train import TrainConfig, evaluate, fit

EPOCHS = 3
LR, SCORE_LR = 1e-4, 1e-4
ARMS = ("dense", "magnitude", "magnitude+ft", "learned")


def layer_report(model, pad):
    """Per layer: sparsity and whether every group of 4 has ≤ 2 non-zeros."""
    out = {}
    for name, layer in prune.prunable_layers(model):
        w = layer.effective_weight()
        out[name] = {"sparsity": float(np.mean(w == 0)), "is_2_4": prune.is_nm(w, 2, 4, pad=pad)}
    return out


def run(net, arm, seed, data, epochs, score_lr=SCORE_LR, lam=0.0, lr=LR):
    (xtr, ytr), (xte, yte) = data
    model = copy.deepcopy(dense_model(net, data=data))
    pad = net == "lenet5"
    config = TrainConfig(epochs, np.random.default_rng(seed), batch_size=128, desc=f"{arm}")
    t0 = time.perf_counter()
    if arm == "magnitude":
        prune.magnitude_nm(model, 2, 4, pad=pad)
    elif arm == "magnitude+ft":
        prune.magnitude_nm(model, 2, 4, pad=pad)
        fit(model, optim.Adam(model.parameters(), lr=lr), (xtr, ytr), config)
    elif arm == "learned":
        prune.nm_prune(model, (xtr, ytr), prune.NMPruning(2, 4, lr=lr, score_lr=score_lr, lam=lam,
                                                               pad=pad),
                       config)
    acc = evaluate(model, xte, yte)["accuracy"]
    layers = layer_report(model, pad)
    print(f"{net} {arm:13s} seed {seed}: accuracy {acc:.4f}  sparsity "
          f"{prune.sparsity(model):.4f}  ({time.perf_counter() - t0:.0f}s)", flush=True)
    return {"arm": arm, "seed": seed, "accuracy": acc, "sparsity": prune.sparsity(model),
            "all_groups_2_4": all(v["is_2_4"] for v in layers.values()), "layers": layers,
            "seconds": round(time.perf_counter() - t0, 1)}


def summarise():
    with locked_results("nm_sparsity") as data:
        for entry in run_entries(data):
            arms = {}
            for r in entry["runs"]:
                arms.setdefault(r["arm"], []).append(r["accuracy"])
            entry["summary"] = {a: mean_std(v) for a, v in arms.items()}
            dense = entry["summary"].get("dense", {}).get("mean")
            if dense is not None:
                for a, s in entry["summary"].items():
                    s["gap_to_dense_points"] = 100 * (dense - s["mean"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", choices=["lenet300", "lenet5"], default="lenet300")
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--lr", type=float, default=LR, help="Adam lr of the weights")
    ap.add_argument("--score-lr", type=float, default=SCORE_LR)
    ap.add_argument("--lam", type=float, default=0.0, help="λ of the L1 term on pruned weights")
    ap.add_argument("--tag", default="", help="results key <net><tag> (settings other than the "
                    "defaults go under their own key)")
    args = ap.parse_args()
    arms = args.arms.split(",")
    bad = [a for a in arms if a not in ARMS]
    if bad:
        ap.error(f"--arms: unknown {bad}; choose from {list(ARMS)}")
    data = fashion()
    settings = {"protocol": __doc__.split("    OPENBLAS")[0].strip(), "epochs": args.epochs,
                "lr": args.lr, "score_lr": args.score_lr, "lam": args.lam, "batch": 128}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for arm in arms:
            if arm in ("dense", "magnitude") and seed != int(args.seeds.split(",")[0]):
                continue  # no training: the seed changes nothing
            r = run(args.net, arm, seed, data, args.epochs, args.score_lr, args.lam, args.lr)
            r["command"] = (f"OPENBLAS_NUM_THREADS=1 python benchmarks/nm_sparsity.py --net "
                            f"{args.net} --arms {arm} --seeds {seed} --epochs {args.epochs} "
                            f"--lr {args.lr:g} --score-lr {args.score_lr:g} --lam {args.lam:g}"
                            + (f" --tag {args.tag}" if args.tag else ""))
            add_run("nm_sparsity", args.net + args.tag, r, ("arm", "seed"), settings)
    summarise()


if __name__ == "__main__":
    main()
