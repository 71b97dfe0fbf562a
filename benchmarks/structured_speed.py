"""Structured compression that pays in time: a physically smaller teacher CNN, ≥2x faster.

Filter pruning (document §3.1.2) of both convolutions and neuron pruning of the hidden Linear
layer, with one Adam learning the masks while the weights are fine-tuned
(``prune.learned_filter_prune``: L1-initialised scores, straight-through top-k, the kept counts
ramping down cubically over the first half of training, cosine learning rate), then ``shrink``:
the pruned filters and neurons are removed, leaving ordinary dense layers that are just smaller.
Nothing here trades bytes — the point is forward time at batch 256 against the dense float model
of the same architecture.

Two steps, so the (slow) training runs once and the latency can be re-measured:

    OPENBLAS_NUM_THREADS=1 python benchmarks/structured_speed.py train --keep conv1=16,conv2=32,fc1=128 --epochs 3
    OPENBLAS_NUM_THREADS=1 python benchmarks/structured_speed.py latency --rounds 21

``train`` saves the shrunk model to ``~/.cache/minicompress/structured/`` (an ``.npz`` state dict,
its size is the artifact's bytes) and its accuracy on the 10,000 test images; ``latency`` times
the dense and the shrunk model in alternating rounds (eval mode, batch 256) and records both
wall-clock and process CPU time (the CPU time is what the model costs; on a shared machine the
wall clock also counts waiting for a core). Both write ``benchmarks/results/structured_speed.json``.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time

import numpy as np

from common import RESULTS, blas_info, dense_model, fashion, prune_ratios, update_result

from minicompress import metrics, models, prune
from minicompress.data import cache_dir
from minicompress.distill import DistillationLoss
from minicompress.io import load_model, save_model
from minicompress.nn import cross_entropy
from minicompress.train import CosineLR, EveryEpoch, TrainConfig, evaluate, predict

NET = "teacher"


def parse_keep(text):
    """``"conv1=16,conv2=32"`` → ``{"conv1": 16, "conv2": 32}`` (filters/neurons kept per layer)."""
    try:
        keep = {k: int(v) for k, v in (item.split("=") for item in text.split(","))}
    except ValueError:
        sys.exit(f"--keep: expected layer=count pairs separated by commas, got {text!r}")
    return keep


def artifact_path(keep, key="train"):
    tag = "_".join(f"{k}{v}" for k, v in keep.items())
    suffix = "" if key == "train" else f"_{key}"
    return cache_dir() / "structured" / f"{NET}_{tag}{suffix}.npz"


def shrunk_shape(keep, seed=0):
    """A model with the shrunk layer shapes (weights to be loaded): kept filters 0..k−1."""
    model = models.build(NET, 28, rng=np.random.default_rng(seed))
    for name, k in keep.items():
        model = prune.remove_filters(model, name, np.arange(k))
    return model


def train(args):
    keep = parse_keep(args.keep)
    data = fashion()
    (xtr, ytr), (xte, yte) = data
    dense = dense_model(NET, data=data)
    ratios = prune_ratios(dense, keep)
    dense_acc = evaluate(dense, xte, yte)["accuracy"]
    model = copy.deepcopy(dense)
    config = TrainConfig(args.epochs, np.random.default_rng(args.seed))
    loss_fn = cross_entropy
    if args.kd_alpha > 0:  # distil from the dense model itself: its logits, precomputed once
        loss_fn = DistillationLoss(args.kd_t, args.kd_alpha, teacher_logits=predict(dense, xtr))
    t0 = time.perf_counter()
    hist = prune.learned_filter_prune(
        model, (xtr, ytr),
        prune.FilterPruning(ratios, lr=args.lr, score_lr=args.score_lr, init_score="l1"),
        config, loss_fn=loss_fn, eval_data=(xte, yte),
        hooks=[CosineLR(config.total_steps(len(xtr))),
               EveryEpoch(lambda e, r: print(f"  epoch {e}: test acc {r['test_accuracy']:.4f}",
                                             flush=True))])
    train_s = time.perf_counter() - t0
    small = prune.shrink(model)
    max_diff = float(np.abs(model(xte[:500]) - small(xte[:500])).max())
    small_acc = evaluate(small, xte, yte)["accuracy"]
    path = artifact_path(keep, args.key)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(small, path)
    mac_dense, mac_small = metrics.macs(dense, (1, 28, 28))[0], metrics.macs(small, (1, 28, 28))[0]
    res = {
        "net": NET, "keep": keep, "epochs": args.epochs, "lr": args.lr, "score_lr": args.score_lr,
        "lr_schedule": "cosine", "init_score": "l1", "seed": args.seed,
        "loss": (f"distillation from the dense model, T={args.kd_t:g}, alpha={args.kd_alpha:g}"
                 if args.kd_alpha > 0 else "cross-entropy"),
        "test_images": int(len(xte)),
        "dense_accuracy": dense_acc, "pruned_accuracy": small_acc,
        "accuracy_drop_points": round(100 * (dense_acc - small_acc), 2),
        "history": [r["test_accuracy"] for r in hist],
        "dense_macs": mac_dense, "pruned_macs": mac_small, "mac_ratio": mac_small / mac_dense,
        "dense_params": metrics.count_parameters(dense),
        "pruned_params": metrics.count_parameters(small),
        "dense_float32_bytes": 4 * metrics.count_parameters(dense),
        "artifact": f"~/.cache/minicompress/structured/{path.name}",
        "artifact_bytes": path.stat().st_size,
        "max_abs_logit_diff_gated_vs_shrunk": max_diff,
        "shrunk_weight_shapes": {n: list(m.weight.data.shape) for n, m in small.named_children()
                                 if hasattr(m, "weight")},
        "train_seconds": round(train_s, 1),
        "command": f"OPENBLAS_NUM_THREADS=1 python benchmarks/structured_speed.py train "
                   f"--keep {args.keep} --epochs {args.epochs} --lr {args.lr:g} "
                   f"--score-lr {args.score_lr:g} --seed {args.seed}"
                   + (f" --kd-alpha {args.kd_alpha:g} --kd-t {args.kd_t:g}" if args.kd_alpha > 0 else "")
                   + (f" --key {args.key}" if args.key != "train" else ""),
    }
    for k, v in res.items():
        print(f"{k}: {v}")
    update_result("structured_speed", args.key, res)


def timed_rounds(models_, x, rounds, clock):
    """Median seconds of one forward of each model under ``clock``, timed in alternating rounds
    (a busy moment of the shared machine hits every model alike), after 2 untimed calls each."""
    for m in models_:
        m.eval()
        m(x)
        m(x)
    times = [[] for _ in models_]
    for _ in range(rounds):
        for i, m in enumerate(models_):
            t0 = clock()
            m(x)
            times[i].append(clock() - t0)
    return [float(np.median(t)) for t in times]


def latency(args):
    results = RESULTS / "structured_speed.json"
    if not results.exists() or args.key not in json.loads(results.read_text()):
        sys.exit(f"latency: {results} has no {args.key!r} entry; run the train step first")
    trained = json.loads(results.read_text())[args.key]
    keep = {k: int(v) for k, v in trained["keep"].items()}
    path = artifact_path(keep, args.key)
    if not path.exists():
        sys.exit(f"latency: no trained model at {path}; run the train step first")
    dense = dense_model(NET)
    small = load_model(shrunk_shape(keep), path)
    x = fashion()[1][0][:args.batch]
    wall = timed_rounds([dense, small], x, args.rounds, time.perf_counter)
    cpu = timed_rounds([dense, small], x, args.rounds, time.process_time)
    res = {
        "net": NET, "trained": args.key, "keep": keep, "batch": args.batch, "rounds": args.rounds,
        "dense_wall_s": wall[0], "pruned_wall_s": wall[1], "speedup_wall": wall[0] / wall[1],
        "dense_cpu_s": cpu[0], "pruned_cpu_s": cpu[1], "speedup_cpu": cpu[0] / cpu[1],
        "mac_ratio": trained["mac_ratio"],
        "latency_over_mac_ratio_cpu": cpu[1] / cpu[0] / trained["mac_ratio"],
        "load_average_1min": float(open("/proc/loadavg").read().split()[0]),
        "blas": blas_info(),
        "command": f"OPENBLAS_NUM_THREADS=1 python benchmarks/structured_speed.py latency "
                   f"--rounds {args.rounds} --batch {args.batch}"
                   + (f" --key {args.key}" if args.key != "train" else ""),
    }
    for k, v in res.items():
        print(f"{k}: {v}")
    update_result("structured_speed", f"latency_{args.key}" if args.key != "train" else "latency",
                  res)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="step", required=True)
    t = sub.add_parser("train", help="prune, fine-tune, shrink, save; accuracy on the test set")
    t.add_argument("--keep", default="conv1=16,conv2=32,fc1=128",
                   help="layer=filters (neurons) kept, comma-separated")
    t.add_argument("--epochs", type=int, default=3)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--score-lr", type=float, default=1e-2)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--kd-alpha", type=float, default=0.0,
                   help="> 0: fine-tune on α·(soft targets of the dense model) + (1 − α)·CE")
    t.add_argument("--kd-t", type=float, default=4.0, help="distillation temperature T")
    t.add_argument("--key", default="train", help="results key (one per configuration)")
    t.set_defaults(run=train)
    lat = sub.add_parser("latency", help="forward time of the dense and the shrunk model")
    lat.add_argument("--rounds", type=int, default=21)
    lat.add_argument("--batch", type=int, default=256)
    lat.add_argument("--key", default="train", help="which trained configuration to time")
    lat.set_defaults(run=latency)
    args = ap.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
