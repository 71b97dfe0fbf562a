"""Integer model vs float model: forward time per batch, dense and pruned nets, batch 1, 64, 256.

Three forward passes over the same batch are timed side by side:

* ``float``  the float model (``model.forward``, eval mode, pruning masks baked in),
* ``int``    the integer model's fused stages (``IntegerModel.forward``),
* ``steps``  the integer model's reference path, one step's ``run`` after another
  (``IntegerModel.forward_steps``, what ``forward`` was before the fused stages).

The machine is shared, so the three are *interleaved*: each round times every one of them over
the same number of calls (the order rotating from round to round), and the ratio int/float of that
round is kept; we report the median over the rounds (and the quartiles), both in wall time and in
CPU time of this process (``time.process_time``, which does not count time spent waiting for a
core that another job holds). The integer models are post-training quantised (8-bit weights and
activations, min–max over 1000 training images) from the cached dense nets; the pruned ones are
pruned by magnitude first (``remove`` bakes the zeros into the weights) or have their filters
removed (``shrink``), without fine-tuning: their accuracy is low and beside the point, the time
depends only on the shapes. Before timing, ``int`` and ``steps`` are checked to give bit-identical
logits on the whole test set.

    OPENBLAS_NUM_THREADS=1 python benchmarks/int_speed.py [--rounds 9] [--seconds 0.2]
writes benchmarks/results/int_speed.json
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

from minicompress import prune  # noqa: E402
from minicompress.quantize import calibrate, convert, prepare  # noqa: E402
from minicompress.quantize.integer import IntLayer  # noqa: E402

BATCHES = (1, 64, 256)
METHODS = ("float", "int", "steps")


def blas_info():
    """The BLAS library, kernel (``architecture``) and thread count NumPy really uses."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    keys = ("internal_api", "version", "architecture", "num_threads", "threading_layer")
    return [{k: i.get(k) for k in keys} for i in threadpool_info() if i.get("user_api") == "blas"]


def variants(name):
    """(label, float model) pairs: the dense net and its pruned versions."""
    dense = dense_model(name, progress=False)
    dense.eval()
    out = [("dense", dense)]
    if name == "lenet300":
        pruned = copy.deepcopy(dense)
        prune.prune_by_score(pruned, 0.98)
        out.append(("98% weights pruned", prune.remove(pruned)))
    else:
        pruned = copy.deepcopy(dense)
        prune.prune_by_score(pruned, 0.9)
        out.append(("90% weights pruned", prune.remove(pruned)))
        gated = copy.deepcopy(dense)
        prune.filter_prune(gated, 0.5)
        out.append(("50% filters removed", prune.shrink(gated)))
    for _, m in out:
        m.eval()
    return out


def integer_model(model, calib):
    fake = prepare(copy.deepcopy(model), 8, 8, input_kind="asymmetric")
    calibrate(fake, calib)
    return convert(fake)


def timed(fn, x, calls):
    """(wall seconds, CPU seconds) per call of ``fn(x)``, averaged over ``calls`` calls."""
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(calls):
        fn(x)
    return (time.perf_counter() - t0) / calls, (time.process_time() - c0) / calls


def measure(fns, x, rounds, seconds):
    """{method: (rounds, 2) array of (wall, CPU) seconds per call}, interleaved in rounds."""
    for fn in fns.values():
        fn(x)                                                # warm-up (and workspace allocation)
    per_call = max(timed(fn, x, 3)[0] for fn in fns.values())
    calls = max(3, int(seconds / per_call))
    times = {m: [] for m in fns}
    names = list(fns)
    for r in range(rounds):
        for m in names[r % len(names):] + names[:r % len(names)]:     # rotate the order
            times[m].append(timed(fns[m], x, calls))
    return {m: np.array(t) for m, t in times.items()}, calls


def summary(times, method):
    ratio = times[method] / times["float"]                  # per round, wall and CPU columns
    return {"ratio_median": float(np.median(ratio[:, 0])),
            "ratio_q25": float(np.percentile(ratio[:, 0], 25)),
            "ratio_q75": float(np.percentile(ratio[:, 0], 75)),
            "cpu_ratio_median": float(np.median(ratio[:, 1]))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--seconds", type=float, default=0.2, help="timed work per method and round")
    ap.add_argument("--models", default="lenet300,lenet5")
    args = ap.parse_args()
    (xtr, _), (xte, yte) = fashion()
    calib = xtr[np.random.default_rng(0).choice(len(xtr), 1000, replace=False)]
    rows = []
    for name in args.models.split(","):
        for label, model in variants(name):
            im = integer_model(model, calib)
            logits = im.forward(xte)
            if not np.array_equal(logits, im.forward_steps(xte)):
                raise SystemExit(f"int_speed: {name} {label}: fused stages differ from the steps")
            gemm = [np.dtype(s.exact_dtype).name for s in im.steps if isinstance(s, IntLayer)]
            fns = {"float": model.forward, "int": im.forward, "steps": im.forward_steps}
            for batch in BATCHES:
                times, calls = measure(fns, xte[:batch], args.rounds, args.seconds)
                row = {"model": name, "variant": label, "batch": batch, "calls": calls,
                       "accuracy_int": float((logits.argmax(1) == yte).mean()),
                       "identical_to_steps": True, "gemm": gemm,
                       **{f"{m}_us": float(np.median(times[m][:, 0]) * 1e6) for m in METHODS},
                       "int": summary(times, "int"), "steps": summary(times, "steps")}
                rows.append(row)
                print(f"{name:8s} {label:20s} batch {batch:3d}: float {row['float_us']:8.0f} us, "
                      f"int {row['int_us']:8.0f} us ({row['int']['ratio_median']:.2f}x, CPU "
                      f"{row['int']['cpu_ratio_median']:.2f}x), steps {row['steps_us']:8.0f} us "
                      f"({row['steps']['ratio_median']:.2f}x)", flush=True)
    save_result("int_speed" if args.models == "lenet300,lenet5" else
                f"int_speed_{args.models.replace(',', '_')}",
                {"rows": rows, "rounds": args.rounds, "seconds": args.seconds, "blas": blas_info(),
                 "note": "per-call forward time of one batch (the first `batch` test images); "
                         "ratios are medians of per-round ratios to the float model; pruned "
                         "variants are not fine-tuned (accuracy_int is low; speed depends on "
                         "shapes only)"})


if __name__ == "__main__":
    main()
