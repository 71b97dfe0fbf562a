"""A small CNN student (lenet5) distilled from the teacher CNN, with and without feature hints
(issue #6), Fashion-MNIST, 10 epochs, Adam, batch 128, same schedule for every arm.

Arms (each a few seeds):
  alone      lenet5 on the labels (α = 0)
  kd         logits only: α·L_soft + (1 − α)·CE
  kd+hint    + β·MSE(r(F_s), F_t), r = 1x1 Conv2d(6 → 32), student pool1 (6x14x14) →
             teacher pool1 (32x14x14) — FitNets' guided/hint layers, trained in one stage
  kd+at      + attention transfer between the same two maps (no regressor)

    OPENBLAS_NUM_THREADS=1 python benchmarks/distill_cnn.py --arms alone --out distill_cnn_alone
    OPENBLAS_NUM_THREADS=1 python benchmarks/distill_cnn.py --arms kd,kd+hint,kd+at \
        --merge benchmarks/results/distill_cnn_alone.json

Writes benchmarks/results/distill_cnn.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from common import RESULTS, dense_model, fashion, save_result
from distill_wait import wait_for_teacher

from minicompress import distill as D
from minicompress import models, optim
from minicompress.nn import Conv2d
from minicompress.train import evaluate


def run(arm, data, teacher, z_t, T, alpha, beta, schedule, lr, seed, epochs=10, batch_size=128):
    (xtr, ytr), (xte, yte) = data
    student = models.lenet5(28, rng=np.random.default_rng(seed))
    hint = None
    if arm == "kd+hint":
        hint = D.HintLoss(Conv2d(6, 32, 1, rng=np.random.default_rng(500 + seed)),
                          "pool1", "pool1", beta=beta)
    elif arm == "kd+at":
        hint = D.AttentionTransferLoss("pool1", "pool1", beta=beta)
    params = student.parameters() + (hint.parameters() if hint is not None else [])
    opt = optim.Adam(params, lr=lr)
    steps = epochs * -(-len(xtr) // batch_size)
    on_step = D.cosine_lr(opt, lr, steps) if schedule == "cosine" else None
    kd = D.DistillationLoss(T, 0.0 if arm == "alone" else alpha, teacher_logits=z_t,
                            teacher=teacher if hint is not None else None)
    hist = D.fit_distill(student, opt, (xtr, ytr), kd, epochs=epochs, batch_size=batch_size,
                         rng=np.random.default_rng(1000 + seed), hint=hint, on_step=on_step,
                         progress=False)
    return evaluate(student, xte, yte)["accuracy"], hist[-1]["train_loss"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", type=float, default=4.0)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--beta-hint", type=float, default=1.0)
    ap.add_argument("--beta-at", type=float, default=100.0)
    ap.add_argument("--schedule", choices=["const", "cosine"], default="cosine")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--arms", default="alone,kd,kd+hint,kd+at")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--out", default="distill_cnn", help="results/<out>.json")
    ap.add_argument("--merge", default=None,
                    help="an earlier results JSON whose runs (same schedule, lr, epochs) join the table")
    args = ap.parse_args()

    arms = args.arms.split(",")
    data = fashion()
    (xtr, ytr), (xte, yte) = data
    if arms == ["alone"]:
        # α = 0 multiplies the soft term by zero: the teacher is not needed for this arm
        teacher, teacher_acc, z_t = None, None, np.zeros((len(xtr), 10), np.float32)
    else:
        wait_for_teacher()
        teacher = D.freeze(dense_model("teacher", data=data))
        teacher_acc = evaluate(teacher, xte, yte)["accuracy"]
        z_t = D.teacher_logits(teacher, xtr, cache="teacher_fashion_e10_s0_train")
    runs = []
    partial = RESULTS / f"{args.out}.partial.json"
    for seed in range(args.seeds):
        for arm in arms:
            beta = args.beta_hint if arm == "kd+hint" else args.beta_at
            t0 = time.perf_counter()
            acc, train_loss = run(arm, data, teacher, z_t, args.T, args.alpha, beta, args.schedule,
                                  args.lr, seed, epochs=args.epochs)
            runs.append({"arm": arm, "seed": seed, "test_accuracy": acc,
                         "seconds": time.perf_counter() - t0})
            print(f"{arm:8s} seed={seed} acc={acc:.4f} ({runs[-1]['seconds']:.0f}s)", flush=True)
            partial.write_text(json.dumps(runs))
    if args.merge:
        old = json.loads(Path(args.merge).read_text())
        if (old["schedule"], old["lr"], old["epochs"]) != (args.schedule, args.lr, args.epochs):
            raise ValueError(f"--merge {args.merge}: different schedule/lr/epochs")
        runs = [r for r in old["runs"] if r["arm"] not in arms] + runs
        arms = list(dict.fromkeys([r["arm"] for r in runs]))
    table = {}
    for arm in arms:
        accs = [r["test_accuracy"] for r in runs if r["arm"] == arm]
        table[arm] = {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "accs": accs}
        print(f"{arm:8s} {100 * np.mean(accs):.2f} ± {100 * np.std(accs):.2f}")
    save_result(args.out, {
        "task": "teacher CNN -> lenet5, Fashion-MNIST, batch 128, Adam",
        "teacher_test_accuracy": teacher_acc, "T": args.T, "alpha": args.alpha,
        "beta_hint": args.beta_hint, "beta_at": args.beta_at, "schedule": args.schedule,
        "lr": args.lr, "epochs": args.epochs, "seeds": args.seeds, "table": table, "runs": runs,
        "hint": "student pool1 (6x14x14) -> 1x1 conv -> teacher pool1 (32x14x14)",
    })
    partial.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
