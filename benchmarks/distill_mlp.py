"""Distilling the teacher CNN into the student MLP 784-64-10 on Fashion-MNIST (document §3.3).

Sweeps the temperature T and the soft weight α (α = 0 is the student trained alone, through the
very same code path) for two learning-rate schedules, each applied to BOTH arms, 3 seeds each,
10 epochs, Adam, batch 128. The teacher's logits are computed once and cached.

    OPENBLAS_NUM_THREADS=1 python benchmarks/distill_mlp.py            # full sweep (~20 min)
    OPENBLAS_NUM_THREADS=1 python benchmarks/distill_mlp.py --quick    # 1 seed, small grid
    # the same, one process per schedule, then the summary and figures from both:
    python benchmarks/distill_mlp.py --schedules const-1e-3 --out distill_mlp_const --no-figures &
    python benchmarks/distill_mlp.py --schedules cosine-3e-3 --out distill_mlp_cosine --no-figures
    python benchmarks/distill_mlp.py --out distill_mlp \
        --runs-from benchmarks/results/distill_mlp_const.json,benchmarks/results/distill_mlp_cosine.json
    # (then delete the per-schedule files: benchmarks/results keeps one file per script)

Writes benchmarks/results/distill_mlp.json and figures/distill_accuracy_vs_T.png,
figures/distill_accuracy_vs_alpha.png, figures/distill_soft_targets.png.
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
from minicompress import models
from minicompress.train import CosineLR, TrainConfig, evaluate

FIGURES = Path(__file__).resolve().parent.parent / "figures"
SCHEDULES = {"const-1e-3": ("const", 1e-3), "cosine-3e-3": ("cosine", 3e-3),
             "cosine-1e-3": ("cosine", 1e-3)}


def train_student(data, z_t, T, alpha, schedule, seed, epochs=10, batch_size=128):
    """One 784-64-10 student, α·L_soft + (1 − α)·CE; returns (test accuracy, model)."""
    (xtr, ytr), (xte, yte) = data
    kind, lr = SCHEDULES[schedule]
    student = models.student(28, rng=np.random.default_rng(seed))
    config = TrainConfig(epochs, np.random.default_rng(1000 + seed), batch_size=batch_size)
    hooks = [CosineLR(config.total_steps(len(xtr)))] if kind == "cosine" else []
    kd = D.DistillationLoss(T, alpha, teacher_logits=z_t)
    D.fit_distill(student, (xtr, ytr), kd, config, lr=lr, hooks=hooks)
    return evaluate(student, xte, yte)["accuracy"], student


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="1 seed, few configurations")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--alpha-for-T", type=float, default=0.5,
                    help="α used on the temperature sweep")
    ap.add_argument("--T-for-alpha", type=int, default=4, help="T used on the α sweep")
    ap.add_argument("--extra", default="2:0.25,2:0.75", help="more T:α pairs, comma-separated")
    ap.add_argument("--only-extra", action="store_true", help="only the --extra pairs")
    ap.add_argument("--full-grid", action="store_true", help="every (T, α) pair, not just the cross")
    ap.add_argument("--schedules", default="const-1e-3,cosine-3e-3")
    ap.add_argument("--teacher", default="teacher", help="cached dense model used as the teacher")
    ap.add_argument("--out", default="distill_mlp", help="results/<out>.json")
    ap.add_argument("--figures", default="distill", help="figures/<figures>_*.png")
    ap.add_argument("--no-figures", action="store_true")
    ap.add_argument("--alone-only", action="store_true", help="only the α = 0 arm (no teacher needed)")
    ap.add_argument("--skip-alone", action="store_true", help="leave out the α = 0 arm")
    ap.add_argument("--runs-from", default="",
                    help="comma-separated result JSONs of earlier runs (e.g. one per schedule, run in "
                         "parallel): no training, just the summary and the figures")
    args = ap.parse_args()
    seeds = [0] if args.quick else list(range(args.seeds))
    temps = [1, 2, 4, 8, 16]
    alphas = [0.1, 0.25, 0.5, 0.75, 0.9, 1.0]
    if args.quick:
        temps, alphas = [2, 4], [0.5, 0.9]
    schedules = args.schedules.split(",")
    data = fashion()
    (xtr, ytr), (xte, yte) = data
    if args.alone_only:
        # α = 0 multiplies the soft term by zero: the student-alone arm needs no teacher
        teacher, teacher_acc, z_t = None, None, np.zeros((len(xtr), 10), np.float32)
    else:
        if args.teacher == "teacher":
            wait_for_teacher()
        teacher = D.freeze(dense_model(args.teacher, data=data))
        teacher_acc = evaluate(teacher, xte, yte)["accuracy"]
        t0 = time.perf_counter()
        z_t = D.teacher_logits(teacher, xtr, cache=f"{args.teacher}_fashion_e10_s0_train")
        print(f"teacher test accuracy {teacher_acc:.4f}; train logits in "
              f"{time.perf_counter() - t0:.1f}s", flush=True)

    if args.full_grid:
        configs = [(T, a) for T in temps for a in alphas]
    else:   # the cross: T sweep at one α, α sweep at one T (plus T = 4, α = 0.9, the PyTorch reference's setting)
        configs = [(T, args.alpha_for_T) for T in temps] + \
                  [(args.T_for_alpha, a) for a in alphas] + [(4, 0.9)]
    configs += [(float(T) if float(T) != int(float(T)) else int(T), float(a))
                for T, a in (pair.split(":") for pair in args.extra.split(",") if pair)]
    configs = list(dict.fromkeys(configs)) + [(1, 0.0)]   # α = 0: the student alone
    if args.only_extra:
        configs = [c for c in configs if c[1] > 0 and f"{c[0]}:{c[1]}" in args.extra.split(",")]
    if args.alone_only:
        configs = [(1, 0.0)]
    elif args.skip_alone:
        configs = configs[:-1]
    runs = []
    if args.runs_from:
        for path in args.runs_from.split(","):
            loaded = json.loads(Path(path).read_text())
            runs += loaded["runs"] if isinstance(loaded, dict) else loaded
        schedules = list(dict.fromkeys(r["schedule"] for r in runs))
        configs = list(dict.fromkeys((r["T"], r["alpha"]) for r in runs if r["alpha"] > 0))
        configs.append((1, 0.0))
        seeds = sorted(set(r["seed"] for r in runs))
    partial = RESULTS / f"{args.out}.partial.json"
    for schedule in (schedules if not args.runs_from else []):
        for T, alpha in configs:
            for seed in seeds:
                t1 = time.perf_counter()
                acc, _ = train_student(data, z_t, T, alpha, schedule, seed)
                runs.append({"schedule": schedule, "T": T, "alpha": alpha, "seed": seed,
                             "test_accuracy": acc, "seconds": time.perf_counter() - t1})
                print(f"{schedule:12s} T={T:<3} alpha={alpha:<5} seed={seed} acc={acc:.4f} "
                      f"({runs[-1]['seconds']:.1f}s)", flush=True)
            partial.write_text(json.dumps(runs))

    def mean_acc(schedule, T, alpha):
        accs = [r["test_accuracy"] for r in runs
                if (r["schedule"], r["T"], r["alpha"]) == (schedule, T, alpha)]
        return float(np.mean(accs)), float(np.std(accs)), accs

    summary = {}
    for schedule in schedules:
        alone, alone_sd, alone_accs = mean_acc(schedule, 1, 0.0)
        # only configurations run with every seed compete for "best" (no winner by a lucky seed)
        table = {f"T={T},alpha={a}": mean_acc(schedule, T, a)[0] for T, a in configs
                 if a > 0 and len(mean_acc(schedule, T, a)[2]) == len(seeds)}
        if not table or not any(r["alpha"] == 0 for r in runs if r["schedule"] == schedule):
            print(f"[{schedule}] {alone:.4f} (partial run: no summary)" if not table else
                  f"[{schedule}] no α = 0 runs: no summary")
            continue
        best = max(table, key=table.get)
        T_b, a_b = [float(v.split("=")[1]) for v in best.split(",")]
        best_mean, best_sd, best_accs = mean_acc(schedule, int(T_b), a_b)
        summary[schedule] = {
            "student_alone": {"mean": alone, "std": alone_sd, "accs": alone_accs},
            "best": {"T": T_b, "alpha": a_b, "mean": best_mean, "std": best_sd, "accs": best_accs},
            "gain_points": 100 * (best_mean - alone),
            "target_met": bool(best_mean >= 0.885 and best_mean - alone >= 0.005),
            "issue_recipe_T4_alpha0.9": mean_acc(schedule, 4, 0.9)[0] if (4, 0.9) in configs else None,
            "table": table,
        }
        print(f"[{schedule}] alone {alone:.4f}  best {best} {best_mean:.4f}  gain "
              f"{100 * (best_mean - alone):+.2f} points  target met: {summary[schedule]['target_met']}")

    save_result(args.out, {
        "teacher": args.teacher,
        "task": "teacher CNN -> student MLP 784-64-10, Fashion-MNIST, 10 epochs, batch 128, Adam",
        "teacher_test_accuracy": teacher_acc, "seeds": seeds, "temperatures": temps,
        "alphas": alphas, "schedules": {k: list(SCHEDULES[k]) for k in schedules},
        "alpha_for_T": args.alpha_for_T, "T_for_alpha": args.T_for_alpha,
        "summary": summary, "runs": runs, "quick": args.quick,
    })
    partial.unlink(missing_ok=True)
    if not args.quick and not args.no_figures:
        make_figures(runs, summary, temps, alphas, data, z_t, teacher, args)


def make_figures(runs, summary, temps, alphas, data, z_t, teacher, args):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    FIGURES.mkdir(exist_ok=True)

    def curve(schedule, key, values, fixed):
        m, s = [], []
        for v in values:
            sel = [r["test_accuracy"] for r in runs if r["schedule"] == schedule
                   and r[key] == v and r["alpha" if key == "T" else "T"] == fixed]
            m.append(100 * np.mean(sel))
            s.append(100 * np.std(sel))
        return np.array(m), np.array(s)

    for key, values, name in (("T", temps, "T"), ("alpha", alphas, "alpha")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for schedule, style in zip(summary, ("-o", "--s", "-.^")):
            fixed = args.alpha_for_T if key == "T" else args.T_for_alpha
            m, s = curve(schedule, key, values, fixed)
            label = f"{schedule}, {'α' if key == 'T' else 'T'}={fixed}"
            line = ax.errorbar(values, m, yerr=s, fmt=style, capsize=3, label=label)
            ax.axhline(100 * summary[schedule]["student_alone"]["mean"], color=line[0].get_color(),
                       ls=":", lw=1, label=f"student alone ({schedule})")
        if key == "T":
            ax.set_xscale("log", base=2)
            ax.set_xticks(temps, [str(t) for t in temps])
        ax.set_xlabel("temperature T" if key == "T" else "α (weight of the soft-target loss)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"Student 784-64-10 distilled from the CNN teacher: accuracy vs {name}\n"
                     f"(Fashion-MNIST, 10 epochs, mean ± sd of {len(set(r['seed'] for r in runs))} seeds)",
                     fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(FIGURES / f"{args.figures}_accuracy_vs_{name}.png", dpi=120)
        plt.close(fig)

    # soft distributions of teacher and distilled student on a few test images
    schedule = max(summary, key=lambda s: summary[s]["best"]["mean"])
    best = summary[schedule]["best"]
    _, student = train_student(data, z_t, int(best["T"]), best["alpha"], schedule, seed=0)
    (_, _), (xte, yte) = data
    images = [0, 1, 2, 12]
    zt, zs = teacher(xte[images]), student(xte[images])
    classes = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
               "Bag", "Boot"]
    fig, axes = plt.subplots(len(images), 4, figsize=(12, 2.2 * len(images)))
    for row, i in enumerate(images):
        axes[row, 0].imshow(xte[i, 0], cmap="gray")
        axes[row, 0].set_title(f"test #{i}: {classes[yte[i]]}", fontsize=8)
        axes[row, 0].axis("off")
        for col, T in enumerate((1, 4, 16), start=1):
            ax = axes[row, col]
            ax.bar(np.arange(10) - 0.2, D.softmax_with_temperature(zt[row], T), 0.4, label="teacher")
            ax.bar(np.arange(10) + 0.2, D.softmax_with_temperature(zs[row], T), 0.4, label="student")
            ax.set_ylim(0, 1)
            ax.set_xticks(range(10), classes, rotation=90, fontsize=6)
            ax.set_title(f"softmax(z/T), T={T}", fontsize=8)
            if row == 0 and col == 1:
                ax.legend(fontsize=7)
    fig.suptitle(f"Teacher vs distilled student (T={best['T']:g}, α={best['alpha']}) soft outputs",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(FIGURES / f"{args.figures}_soft_targets.png", dpi=110)
    plt.close(fig)
    print("figures written")


if __name__ == "__main__":
    main()
