"""Filter pruning (document §3.1.2) on Fashion-MNIST, with physical removal and measured latency.

Start from the cached dense net; gate the chosen layers, let Adam learn which filters to keep
(``learned_filter_prune``: L1-initialised scores + straight-through top-k, weights fine-tuned with
them, the kept count ramping down cubically over the first half of training), then ``shrink``: a
physically smaller network. Reports accuracy before/after, MACs, parameters and the forward
latency of the dense and the shrunk net (median over interleaved rounds, batch 256, one BLAS
thread), and checks that the shrunk net's outputs equal the gated net's. ``--latency-only``
re-times the shapes alone, and, when PyTorch is installed, the same two networks in PyTorch
(one thread) beside them: the reference framework's latency ratio for the same shapes.

    OPENBLAS_NUM_THREADS=1 python benchmarks/prune_filters.py --net lenet5 --keep conv1=3,conv2=10 --epochs 3
    OPENBLAS_NUM_THREADS=1 python benchmarks/prune_filters.py --net teacher --keep conv1=24,conv2=32 --epochs 2
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np

from common import blas_info, dense_model, fashion, prune_ratios, save_result, update_result

from minicompress import metrics, prune
from minicompress.train import EveryEpoch, TrainConfig, evaluate


def interleaved_latency(models_, x, rounds=15, repeats=3):
    """Median seconds per forward of each model, timed in alternating rounds so that a busy
    moment of the (shared) machine hits every model alike."""
    for m in models_:
        metrics.latency(m, x, repeats=1, warmup=2)
    times = [[] for _ in models_]
    for _ in range(rounds):
        for i, m in enumerate(models_):
            times[i].append(metrics.latency(m, x, repeats=repeats, warmup=0))
    return [float(np.median(t)) for t in times]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", default="lenet5")
    ap.add_argument("--keep", default="conv1=3,conv2=10", help="layer=filters kept, comma-separated")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--score-lr", type=float, default=1e-2)
    ap.add_argument("--init-score", default="l1")
    ap.add_argument("--batch", type=int, default=256, help="batch size of the latency measurement")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--latency-only", action="store_true",
                    help="only re-measure latency: dense net vs a net of the shrunk shapes")
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    if args.latency_only:
        return latency_only(args)
    data = fashion()
    (xtr, ytr), (xte, yte) = data
    dense = dense_model(args.net, data=data)
    keep = {k: int(v) for k, v in (item.split("=") for item in args.keep.split(","))}
    ratios = prune_ratios(dense, keep)
    dense_acc = evaluate(dense, xte, yte)["accuracy"]
    model = copy.deepcopy(dense)
    t0 = time.perf_counter()
    hist = prune.learned_filter_prune(
        model, (xtr, ytr),
        prune.FilterPruning(ratios, lr=args.lr, score_lr=args.score_lr, init_score=args.init_score),
        TrainConfig(args.epochs, np.random.default_rng(args.seed)), eval_data=(xte, yte),
        hooks=[EveryEpoch(lambda e, r: print(f"  epoch {e}: test acc {r['test_accuracy']:.4f}",
                                             flush=True))])
    train_s = time.perf_counter() - t0
    small = prune.shrink(model)
    gated_logits, small_logits = model(xte[:500]), small(xte[:500])
    max_diff = float(np.abs(gated_logits - small_logits).max())
    small_acc = evaluate(small, xte, yte)["accuracy"]
    shape = (1, 28, 28)
    x = xte[:args.batch]
    lat_dense, lat_small = interleaved_latency([dense, small], x, rounds=args.rounds)
    mac_dense, mac_small = metrics.macs(dense, shape)[0], metrics.macs(small, shape)[0]
    mac_ratio, lat_ratio = mac_small / mac_dense, lat_small / lat_dense
    layers = {n: list(m.weight.data.shape) for n, m in small.named_children() if hasattr(m, "weight")}
    res = {
        "net": args.net, "keep": keep, "epochs": args.epochs, "lr": args.lr,
        "score_lr": args.score_lr, "init_score": args.init_score,
        "dense_accuracy": dense_acc, "pruned_accuracy": small_acc,
        "accuracy_drop_points": round(100 * (dense_acc - small_acc), 2),
        "history": [r["test_accuracy"] for r in hist],
        "dense_macs": mac_dense, "pruned_macs": mac_small, "mac_ratio": mac_ratio,
        "dense_params": metrics.count_parameters(dense),
        "pruned_params": metrics.count_parameters(small),
        "latency_batch": args.batch, "dense_latency_s": lat_dense, "pruned_latency_s": lat_small,
        "latency_ratio": lat_ratio, "latency_over_mac_ratio": lat_ratio / mac_ratio,
        "max_abs_logit_diff_gated_vs_shrunk": max_diff, "shrunk_weight_shapes": layers,
        "train_seconds": round(train_s, 1),
        "command": f"OPENBLAS_NUM_THREADS=1 python benchmarks/prune_filters.py --net {args.net} "
                   f"--keep {args.keep} --epochs {args.epochs} --lr {args.lr:g} "
                   f"--score-lr {args.score_lr:g} --init-score {args.init_score}",
    }
    for k, v in res.items():
        print(f"{k}: {v}")
    save_result(f"prune_filters_{args.net}", res)


def interleaved_cpu_time(models_, x, rounds=15):
    """Median process CPU seconds per forward of each model (eval mode), alternating rounds. With
    one BLAS thread this is the work the forward pass does; on a shared machine the wall clock
    also counts the time spent waiting for a core."""
    for m in models_:
        m.eval()
        m(x)
    times = [[] for _ in models_]
    for _ in range(rounds):
        for i, m in enumerate(models_):
            t0 = time.process_time()
            m(x)
            times[i].append(time.process_time() - t0)
    return [float(np.median(t)) for t in times]


def torch_reference(models_, x, rounds, mac_ratio):
    """The same two networks in PyTorch (its CPU build, one thread, inference mode), timed the
    same way — the reference framework's answer to the same question — or None without PyTorch.
    The twins get our weights (``torch_state_dict``), and their logits are compared with ours."""
    try:
        import torch
    except ImportError:
        return None
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import torch_modules

    from minicompress.torch_state import torch_state_dict
    torch.set_num_threads(1)
    twins, diffs = [], []
    for m in models_:
        state, arch = torch_state_dict(m)
        net = torch_modules.load_state(torch_modules.build(arch),
                                       {k: torch.from_numpy(v) for k, v in state.items()})
        with torch.inference_mode():
            diffs.append(float(np.abs(net(torch.from_numpy(x)).numpy() - m(x)).max()))
        twins.append(net)
    with torch.inference_mode():
        cpu_dense, cpu_small = interleaved_cpu_time(twins, torch.from_numpy(x), rounds=rounds)
    return {"version": torch.__version__, "threads": torch.get_num_threads(),
            "dense_cpu_s": cpu_dense, "pruned_cpu_s": cpu_small,
            "cpu_time_ratio": cpu_small / cpu_dense,
            "cpu_time_over_mac_ratio": cpu_small / cpu_dense / mac_ratio,
            "max_abs_logit_diff_vs_ours": max(diffs)}


def latency_only(args):
    """Forward latency of the dense net and of a net with the shrunk *shapes* (which filters are
    kept does not change the cost of dense matmuls), without training. Saved under
    "latency_only" in ``prune_filters_<net>.json``, beside the trained run's numbers."""
    from minicompress import models
    dense = models.build(args.net, 28, rng=np.random.default_rng(args.seed))
    small = dense
    for name, k in (item.split("=") for item in args.keep.split(",")):
        small = prune.remove_filters(small, name, np.arange(int(k)))
    x = np.random.default_rng(1).standard_normal((args.batch, 1, 28, 28)).astype(np.float32)
    lat_dense, lat_small = interleaved_latency([dense, small], x, rounds=args.rounds)
    cpu_dense, cpu_small = interleaved_cpu_time([dense, small], x, rounds=args.rounds)
    mac_ratio = metrics.macs(small, (1, 28, 28))[0] / metrics.macs(dense, (1, 28, 28))[0]
    reference = torch_reference([dense, small], x, args.rounds, mac_ratio)
    res = {"net": args.net, "keep": args.keep, "latency_batch": args.batch, "rounds": args.rounds,
           "dense_latency_s": lat_dense, "pruned_latency_s": lat_small,
           "latency_ratio": lat_small / lat_dense, "mac_ratio": mac_ratio,
           "latency_over_mac_ratio": lat_small / lat_dense / mac_ratio,
           "dense_cpu_s": cpu_dense, "pruned_cpu_s": cpu_small,
           "cpu_time_ratio": cpu_small / cpu_dense,
           "cpu_time_over_mac_ratio": cpu_small / cpu_dense / mac_ratio,
           "torch": reference,
           "load_average_1min": float(open("/proc/loadavg").read().split()[0]),
           "blas": blas_info(),
           "command": f"OPENBLAS_NUM_THREADS=1 python benchmarks/prune_filters.py --net {args.net} "
                      f"--keep {args.keep} --latency-only --rounds {args.rounds}"}
    for k, v in res.items():
        print(f"{k}: {v}")
    update_result(f"prune_filters_{args.net}", "latency_only", res)


if __name__ == "__main__":
    main()
