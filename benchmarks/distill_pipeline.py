"""What soft targets buy inside the pipeline: the fashion_10kb stages with the distillation loss
vs plain cross-entropy, same epochs, learning rates and seeds — the accuracy gap at the same bytes.

Both arms run the stages of ``recipes/fashion_10kb.json`` (a lenet300 trained from scratch,
learned-mask pruning to 98 %, W4A8 quantisation-aware training, export):

  kd   the recipe as written: every stage's task loss is α · T² KL(p_t ‖ p_s) + (1 − α) CE
       (T = 4, α = 0.7), the teacher's logits those of the cached 10-epoch teacher CNN;
  ce   the same stages with α = 0 (the soft term weighs zero, so the loss and its gradient are
       exactly the cross-entropy and no teacher is needed).

    OPENBLAS_NUM_THREADS=1 python benchmarks/distill_pipeline.py --arms kd,ce --seeds 0,1,2 \
        --distill-epochs 5 --prune-epochs 5 --quantize-epochs 1      # the recorded, reduced run

The recipe's own epochs (10 / 15 / 3) are the default; ``--*-epochs`` shortens both arms alike.
Each run is added to benchmarks/results/distill_pipeline.json (arms may run in parallel); the
summary is rebuilt from all runs with the same epochs.
"""
from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np

from common import add_run, fashion, locked_results, mean_std, run_entries

from minicompress import pipeline as P
from minicompress.data import cache_dir
from minicompress.recipe import load_recipe

NAME = "distill_pipeline"
RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "fashion_10kb.json"
TEACHER = cache_dir() / "checkpoints" / "teacher_fashion_e10_s0.npz"
TEACHER_CACHE = "teacher_fashion_e10_s0_train"


def arm_recipe(arm, seed, epochs):
    """The recipe for one arm: fashion_10kb with the given seed and epochs; α = 0 for 'ce'."""
    recipe = copy.deepcopy(load_recipe(RECIPE))
    recipe["seed"] = seed
    if arm == "kd":   # the ce arm loads no teacher
        recipe["teacher"]["checkpoint"] = str(TEACHER)
    for stage, n in zip(("distill", "prune", "quantize"), epochs):
        if n is not None:
            recipe[stage]["epochs"] = n
        if arm == "ce":
            recipe[stage]["alpha"] = 0.0
    return recipe


def run_arm(arm, seed, epochs, data):
    """Run the stages of one arm; returns the stage table (accuracy and bytes per stage)."""
    from minicompress import distill as D
    r = P.PipelineRun(arm_recipe(arm, seed, epochs), progress=False, data=data)
    if arm == "kd":
        P.stage_teacher(r)
        r.z_teacher = D.teacher_logits(r.teacher, r.x_train, cache=TEACHER_CACHE)  # computed once
    else:
        # α = 0: the soft term is multiplied by zero, so its teacher logits are never used;
        # zeros stand in for them and no teacher is loaded (the loss is exactly CE)
        r.teacher = "unused: alpha = 0"
        r.z_teacher = np.zeros((len(r.x_train), 10), np.float32)
    for stage in ("distill", "prune", "quantize"):
        P.STAGE_FUNCTIONS[stage](r)
    with tempfile.TemporaryDirectory() as tmp:
        P.stage_export(r, Path(tmp) / "model.npz")
    return [{k: row[k] for k in ("stage", "accuracy", "bytes", "nonzeros")} for row in r.rows]


def summarise():
    """Means and spreads per arm and stage; distillation's gain over cross-entropy, seed by seed."""
    with locked_results(NAME) as data:
        for entry in run_entries(data):
            entry["summary"] = _summary(entry["runs"])
    return data


def _summary(entry_runs):
    by_arm = {}
    for run in entry_runs:
        by_arm.setdefault(run["arm"], {})[run["seed"]] = run
    summary = {}
    for arm, runs in by_arm.items():
        stages = [row["stage"] for row in next(iter(runs.values()))["stages"]]
        summary[arm] = {s: {field: mean_std([_stage(r, s)[field] for r in runs.values()])
                            for field in ("accuracy", "bytes")}
                        for s in stages}
    common = sorted(set(by_arm.get("kd", {})) & set(by_arm.get("ce", {})))
    if common:
        gains = {s: [100 * (_acc(by_arm["kd"][k], s) - _acc(by_arm["ce"][k], s)) for k in common]
                 for s in ("distill", "prune", "quantize", "export")}
        summary["kd_minus_ce_points"] = {s: mean_std(v) for s, v in gains.items()}
        summary["paired_seeds"] = common
    return summary


def _stage(run, stage):
    """The row of ``stage`` in one run's stage table."""
    return next(row for row in run["stages"] if row["stage"] == stage)


def _acc(run, stage):
    return _stage(run, stage)["accuracy"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arms", default="kd,ce")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--distill-epochs", type=int, default=None)
    ap.add_argument("--prune-epochs", type=int, default=None)
    ap.add_argument("--quantize-epochs", type=int, default=None)
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args()
    arms = [a for a in args.arms.split(",") if a]
    if set(arms) - {"kd", "ce"}:
        raise SystemExit(f"{NAME}: --arms takes kd and/or ce, got {args.arms!r}")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s]
    except ValueError:
        raise SystemExit(f"{NAME}: --seeds is a comma-separated list of integers")
    epochs = (args.distill_epochs, args.prune_epochs, args.quantize_epochs)
    recipe = load_recipe(RECIPE)
    used = tuple(n if n is not None else recipe[s]["epochs"]
                 for n, s in zip(epochs, ("distill", "prune", "quantize")))
    key = "epochs_{}_{}_{}".format(*used)
    if "kd" in arms and not TEACHER.exists() and not args.summary_only:
        raise SystemExit(f"{NAME}: no teacher checkpoint {TEACHER}; run "
                         f"benchmarks/train_dense.py --models teacher first")
    if not args.summary_only:
        data = fashion()
        settings = {"recipe": "recipes/fashion_10kb.json",
                    "epochs": dict(zip(("distill", "prune", "quantize"), used)),
                    "reduced": used != tuple(recipe[s]["epochs"] for s in ("distill", "prune", "quantize"))}
        for seed in seeds:
            for arm in arms:
                t0 = time.perf_counter()
                stages = run_arm(arm, seed, epochs, data)
                run = {"arm": arm, "seed": seed, "stages": stages,
                       "seconds": time.perf_counter() - t0}
                print(f"{arm} seed={seed} " + "  ".join(
                    f"{s['stage']} {100 * s['accuracy']:.2f}% {s['bytes']}B" for s in stages)
                    + f" ({run['seconds']:.0f}s)", flush=True)
                add_run(NAME, key, run, ("arm", "seed"), settings)
    data = summarise()
    for key, entry in data.items():
        s = entry.get("summary", {})
        for arm in ("kd", "ce"):
            if arm in s:
                print(key, arm, "  ".join(f"{st} {100 * v['accuracy']['mean']:.2f}±"
                                          f"{100 * v['accuracy']['std']:.2f}% "
                                          f"{v['bytes']['mean']:.0f}B" for st, v in s[arm].items()))
        if "kd_minus_ce_points" in s:
            print(key, "kd − ce (points):", {k: f"{v['mean']:+.2f}±{v['std']:.2f}"
                                             for k, v in s["kd_minus_ce_points"].items()})


if __name__ == "__main__":
    main()
