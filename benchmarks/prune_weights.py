"""Weight pruning on Fashion-MNIST, the protocol of docs/RESULTS.md (document §3.1.1).

Start from the cached dense net (10 epochs); prune in steps to 50/75/90/95/98 % *global* sparsity,
2 epochs of Adam fine-tuning per step (10 epochs in all), test accuracy measured at the end of each
step. Methods: magnitude, gradient, Taylor (fixed masks, one pruning event per step), the
Adam-learned mask (``learned_mask_prune``; inside each step the sparsity ramps cubically from the
previous target to the new one over the first half of the step, the mask is re-chosen at every
batch from |W| + s), and the control: the dense net fine-tuned for the same 10 epochs, unpruned.

    OPENBLAS_NUM_THREADS=1 python benchmarks/prune_weights.py --net lenet300 --lr 1e-4 \
        --methods magnitude,gradient,taylor,learned,control

Results are merged into ``benchmarks/results/prune_weights_<net>.json`` under "<method>@lr<lr>".
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from common import RESULTS, dense_model, fashion, save_result

from minicompress import optim, prune
from minicompress.metrics import model_bytes
from minicompress.train import EveryEpoch, TrainConfig, evaluate, fit

TARGETS = (0.5, 0.75, 0.9, 0.95, 0.98)
EPOCHS_PER_STEP = 2
BATCH = 128


def step_schedule(steps_per_phase, ramp=0.0):
    """sparsity(step): TARGETS[phase]; with ramp > 0 a cubic ramp from the previous target over
    the first ``ramp`` fraction of each phase (used by the learned mask)."""
    def schedule(step):
        phase = min(step // steps_per_phase, len(TARGETS) - 1)
        prev = TARGETS[phase - 1] if phase else 0.0
        if ramp <= 0:
            return TARGETS[phase]
        t = step - phase * steps_per_phase
        return prune.cubic_sparsity(t, prev, TARGETS[phase], 0, max(1, int(ramp * steps_per_phase)))
    return schedule


def run(net, method, lr, data, seed, score_lr, lam):
    (xtr, ytr), (xte, yte) = data
    model = dense_model(net, data=data)
    rng = np.random.default_rng(seed)
    spe = -(-len(xtr) // BATCH)
    epochs = EPOCHS_PER_STEP * len(TARGETS)
    accs, sizes = [], []

    def on_epoch(epoch, record):
        if epoch % EPOCHS_PER_STEP == 0:
            acc = evaluate(model, xte, yte)["accuracy"]
            accs.append(acc)
            sizes.append(model_bytes(model))
            print(f"  {net} {method} lr={lr} epoch {epoch}: sparsity "
                  f"{prune.sparsity(model):.4f} acc {acc:.4f}", flush=True)

    t0 = time.perf_counter()
    config, hooks = TrainConfig(epochs, rng, batch_size=BATCH), [EveryEpoch(on_epoch)]
    if method == "control":
        fit(model, optim.Adam(model.parameters(), lr=lr), (xtr, ytr), config, hooks=hooks)
    elif method == "learned":
        schedule = step_schedule(EPOCHS_PER_STEP * spe, ramp=0.5)
        prune.learned_mask_prune(model, (xtr, ytr),
                                 prune.MaskPruning(TARGETS[-1], lr=lr, score_lr=score_lr, lam=lam,
                                                   schedule=schedule), config, hooks=hooks)
    else:
        method_ = prune.ScheduledPruning(step_schedule(EPOCHS_PER_STEP * spe), method,
                                         every=EPOCHS_PER_STEP * spe, lr=lr)
        prune.scheduled_prune(model, (xtr, ytr), method_, config, hooks=hooks)
    return {"accuracy": accs, "bytes": sizes, "seconds": round(time.perf_counter() - t0, 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", default="lenet300")
    ap.add_argument("--methods", default="magnitude,gradient,taylor,learned,control")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--score-lr", type=float, default=1e-3)
    ap.add_argument("--lam", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    data = fashion()
    dense = dense_model(args.net, data=data)
    path = RESULTS / f"prune_weights_{args.net}.json"
    payload = json.loads(path.read_text()) if path.exists() else {}
    payload.update(net=args.net, targets=list(TARGETS), epochs_per_step=EPOCHS_PER_STEP,
                   dense_accuracy=evaluate(dense, *data[1])["accuracy"],
                   dense_bytes=model_bytes(dense))
    runs = payload.setdefault("runs", {})
    for method in args.methods.split(","):
        key = f"{method}@lr{args.lr:g}" + (f"_slr{args.score_lr:g}" if method == "learned" else "")
        key += (f"_lam{args.lam:g}" if args.lam and method == "learned" else "") + args.tag
        res = run(args.net, method, args.lr, data, args.seed, args.score_lr, args.lam)
        res.update(lr=args.lr, seed=args.seed,
                   command=f"python benchmarks/prune_weights.py --net {args.net} --methods {method} "
                           f"--lr {args.lr:g} --score-lr {args.score_lr:g} --lam {args.lam:g}")
        runs[key] = res
        # re-read and merge: several runs of this script may write the same file
        latest = json.loads(path.read_text()) if path.exists() else {}
        latest.setdefault("runs", {}).update(runs)
        payload["runs"] = latest["runs"]
        save_result(f"prune_weights_{args.net}", payload)


if __name__ == "__main__":
    main()
