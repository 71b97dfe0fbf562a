"""Few labels plus a transfer set (Hinton et al. 2015 §3): where distillation visibly pays.

The student gets N labelled Fashion-MNIST training images (class-balanced, drawn with the seed)
and the teacher's logits on all 60,000 training images; the other 60,000 − N images are the
unlabelled *transfer set*. Three arms, each 3 seeds, Adam lr 1e-3, batch 128, the same number
of optimizer steps (``--epochs`` passes over 60,000 images = 469 steps each):

  alone      cross-entropy on the N labelled images only (same steps: many passes over them)
  distilled  α · T² KL(p_t ‖ p_s) + (1 − α) CE on the labelled images, the soft term alone on
             the unlabelled ones (``minicompress.transfer.masked_distillation_loss``)
  all        cross-entropy on all 60,000 labels (the ceiling)

    OPENBLAS_NUM_THREADS=1 python benchmarks/distill_few_labels.py --model student
    OPENBLAS_NUM_THREADS=1 python benchmarks/distill_few_labels.py --model lenet5 --labels 1000
    python benchmarks/distill_few_labels.py --figure-only     # summary + figure from the file

Each run is added to benchmarks/results/distill_few_labels.json under its model (so arms can run
in separate processes); the summary (means, spreads, targets) and figures/distill_few_labels.png
are rebuilt from all the runs in the file.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from common import add_run, dense_model, fashion, locked_results, run_entries

from minicompress import distill as D
from minicompress import models, optim
from minicompress import transfer as X
from minicompress.train import EveryStep, TrainConfig, evaluate, fit

NAME = "distill_few_labels"
FIGURE = Path(__file__).resolve().parent.parent / "figures" / f"{NAME}.png"
TEACHER_CACHE = "teacher_fashion_e10_s0_train"     # the logits cache shared with distill_mlp.py


def teacher_train_logits(data):
    """z_t (60000, 10) of the cached 10-epoch teacher on the training images (computed once)."""
    teacher = D.freeze(dense_model("teacher", data=data, progress=False))
    z_t = D.teacher_logits(teacher, data[0][0], cache=TEACHER_CACHE)
    return z_t, evaluate(teacher, *data[1])["accuracy"]


def train_arm(arm, model_name, data, z_t, n_labels, seed, *, epochs, T, alpha, lr=1e-3,
              batch_size=128, curve=None):
    """One student; returns its test accuracy. Every arm takes epochs · ⌈60000/128⌉ Adam steps.

    ``curve`` (a list) of the 'alone' arm receives (step, test accuracy) after every 469 steps: a
    check that the long budget does not hurt the student alone (it reads test labels, so it is
    recorded beside the result, never used to choose it)."""
    (xtr, ytr), (xte, yte) = data
    steps = epochs * -(-len(xtr) // batch_size)
    model = models.build(model_name, 28, rng=np.random.default_rng(seed))
    opt = optim.Adam(model.parameters(), lr=lr)
    fit_rng = np.random.default_rng(1000 + seed)
    if arm == "all":
        fit(model, opt, (xtr, ytr), TrainConfig(epochs, fit_rng, batch_size=batch_size))
        return evaluate(model, xte, yte)["accuracy"]
    labelled = X.balanced_label_subset(ytr, n_labels, np.random.default_rng(500 + seed))
    if arm == "alone":
        b = min(batch_size, n_labels)
        per_epoch = -(-n_labels // b)

        def record(step):
            if curve is not None and step % 469 == 0:
                curve.append((step, evaluate(model, xte, yte)["accuracy"]))
        fit(model, opt, (xtr[labelled], ytr[labelled]),
            TrainConfig(-(-steps // per_epoch), fit_rng, batch_size=b), hooks=[EveryStep(record)])
    elif arm == "distilled":
        kd = X.MaskedDistillationLoss(T, alpha, teacher_logits=z_t)
        D.fit_distill(model, (xtr, X.hide_labels(ytr, labelled)), kd,
                      TrainConfig(epochs, fit_rng, batch_size=batch_size), lr=lr)
    else:
        raise ValueError(f"unknown arm {arm!r}")
    return evaluate(model, xte, yte)["accuracy"]


def summarise(data):
    """Means and spreads per (model, arm, N); the targets of the experiment."""
    for entry in run_entries(data):
        cells = {}
        for r in entry["runs"]:
            cells.setdefault(f"{r['arm']}/{r['labels']}", []).append(r["test_accuracy"])
        summary = {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "seeds": len(v)}
                   for k, v in sorted(cells.items())}
        targets = {}
        all_key = "all/60000"

        def mean(key):
            return summary[key]["mean"] if key in summary else None

        for n, gain in ((1000, 5.0), (100, 15.0)):
            a, d = mean(f"alone/{n}"), mean(f"distilled/{n}")
            if a is not None and d is not None:
                targets[f"gain_over_alone_{n}"] = {"points": 100 * (d - a), "target": gain,
                                                   "met": bool(100 * (d - a) >= gain)}
        if mean("distilled/1000") is not None and mean(all_key) is not None:
            gap = 100 * (mean(all_key) - mean("distilled/1000"))
            targets["gap_to_all_labels_1000"] = {"points": gap, "target": 1.5, "met": bool(gap <= 1.5)}
        entry["summary"], entry["targets"] = summary, targets
    return data


def make_figure(data):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    styles = {"student": ("tab:blue", "784-64-10 MLP"), "lenet5": ("tab:orange", "LeNet-5")}
    for model_name, (color, label) in styles.items():
        s = data.get(model_name, {}).get("summary")
        if not s:
            continue
        label = f"{label} ({data[model_name].get('steps_per_run', '?')} steps)"
        for arm, fmt, what in (("distilled", "-o", "distilled (labels + transfer set)"),
                               ("alone", "--s", "labels alone")):
            ns = sorted(int(k.split("/")[1]) for k in s if k.startswith(arm + "/"))
            if ns:
                m = [100 * s[f"{arm}/{n}"]["mean"] for n in ns]
                e = [100 * s[f"{arm}/{n}"]["std"] for n in ns]
                ax.errorbar(ns, m, yerr=e, fmt=fmt, color=color, capsize=3,
                            label=f"{label}: {what}")
        if "all/60000" in s:
            ax.axhline(100 * s["all/60000"]["mean"], color=color, ls=":",
                       label=f"{label}: all 60,000 labels")
    teacher = next((e.get("teacher_test_accuracy") for e in data.values()
                    if isinstance(e, dict) and e.get("teacher_test_accuracy")), None)
    if teacher:
        ax.axhline(100 * teacher, color="gray", ls="-.", lw=1, label="teacher CNN (all labels)")
    ax.set_xscale("log")
    ax.set_xlabel("number of labelled training images N (class-balanced)")
    ax.set_ylabel("Fashion-MNIST test accuracy (%)")
    ax.set_title("Few labels + the teacher's soft targets on the other 60,000 − N images\n"
                 "(mean ± sd over the seeds; every arm of a network takes the same number of Adam steps)", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    FIGURE.parent.mkdir(exist_ok=True)
    tmp = FIGURE.with_name(FIGURE.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(FIGURE)
    print(f"wrote {FIGURE}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="student", choices=["student", "lenet5"])
    ap.add_argument("--labels", default="100,1000,5000", help="comma-separated N")
    ap.add_argument("--arms", default="alone,distilled,all")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=10, help="passes over 60,000 images (steps budget)")
    ap.add_argument("--T", type=float, default=4.0)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--figure-only", action="store_true")
    ap.add_argument("--curve", action="store_true",
                    help="record the alone arm's test accuracy every 469 steps (a check, not a result)")
    args = ap.parse_args()
    try:
        labels = [int(n) for n in args.labels.split(",") if n]
        seeds = [int(s) for s in args.seeds.split(",") if s]
    except ValueError:
        raise SystemExit(f"{NAME}: --labels and --seeds are comma-separated integers")
    arms = [a for a in args.arms.split(",") if a]
    bad = sorted(set(arms) - {"alone", "distilled", "all"})
    if bad:
        raise SystemExit(f"{NAME}: unknown arm(s) {bad}; valid: alone, distilled, all")
    if not args.figure_only:
        data = fashion()
        z_t, teacher_acc = (teacher_train_logits(data) if "distilled" in arms else (None, None))
        settings = {"task": f"{args.model} on N labelled Fashion-MNIST images (+ the teacher's "
                            f"soft targets on the rest), Adam 1e-3, batch 128",
                    "epochs_equivalent": args.epochs, "T": args.T, "alpha": args.alpha,
                    "steps_per_run": args.epochs * -(-len(data[0][1]) // 128)}
        if teacher_acc is not None:
            settings["teacher_test_accuracy"] = teacher_acc
        for arm in arms:
            for n in ([60000] if arm == "all" else labels):
                for seed in seeds:
                    t0 = time.perf_counter()
                    curve = [] if args.curve and arm == "alone" else None
                    acc = train_arm(arm, args.model, data, z_t, n, seed, epochs=args.epochs,
                                    T=args.T, alpha=args.alpha, curve=curve)
                    run = {"arm": arm, "labels": n, "seed": seed, "test_accuracy": acc,
                           "seconds": time.perf_counter() - t0}
                    if curve:
                        run["test_accuracy_every_469_steps"] = curve
                    print(f"{args.model} {arm:9s} N={n:<6} seed={seed} acc={acc:.4f} "
                          f"({run['seconds']:.0f}s)", flush=True)
                    add_run(NAME, args.model, run, ("arm", "labels", "seed"), settings)
    with locked_results(NAME) as data:
        summarise(data)
        result = json.loads(json.dumps(data))
    for model_name, entry in result.items():
        for k, v in entry.get("summary", {}).items():
            print(f"{model_name:8s} {k:16s} {100 * v['mean']:6.2f} ± {100 * v['std']:.2f} "
                  f"({v['seeds']} seeds)")
        for k, v in entry.get("targets", {}).items():
            print(f"{model_name:8s} {k}: {v['points']:+.2f} points (target {v['target']}) "
                  f"met={v['met']}")
    make_figure(result)


if __name__ == "__main__":
    main()
