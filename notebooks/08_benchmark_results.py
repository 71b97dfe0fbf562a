# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Appendix — benchmark results on Fashion-MNIST
#
# The teaching notebooks 01–07 show each method on small examples and one network. This appendix collects what the
# benchmark scripts in `benchmarks/` measured on Fashion-MNIST under the fixed benchmark protocol: sweeps, every
# configuration tried, and whether each goal was met. The cells only read the results files
# (`benchmarks/results/*.json`) and the figures the scripts drew; they train nothing, in fast or full mode. The same
# numbers, with how they were produced, are in `docs/RESULTS.md`.

# %%
import json
from pathlib import Path
import numpy as np
from IPython.display import Image, display

ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()

# %% [markdown]
# ## Weight pruning (notebook 02) — Accuracy against sparsity on Fashion-MNIST
#
# The benchmark protocol: from the 10-epoch dense nets, prune in steps to 50/75/90/95/98 % *global* sparsity with 2
# epochs of Adam fine-tuning per step (10 epochs in all). Measured by `benchmarks/prune_weights.py` (and the PyTorch
# reference by `benchmarks/prune_torch_reference.py`); the figure is drawn from those results files by
# `benchmarks/prune_figure.py`'s `draw_accuracy`, so its legend names exactly the runs the cell prints. The
# "control" is the dense net fine-tuned for the same 10 epochs without pruning, so a gain from extra training is not
# mistaken for a gain from pruning.

# %%
res = {}
for net_name in ("lenet300", "lenet5"):
    p = ROOT / "benchmarks" / "results" / f"prune_weights_{net_name}.json"
    if p.exists():
        res[net_name] = json.loads(p.read_text())
for net_name, r in res.items():
    print(f"{net_name}: dense {100 * r['dense_accuracy']:.1f} %")
    for key, run in sorted(r["runs"].items()):
        print(f"  {key:28s}", "  ".join(f"{100 * a:5.1f}" for a in run["accuracy"]))
if res:   # drawn here from the same results files, so every legend entry is a run printed above
    import runpy
    import matplotlib.pyplot as plt
    draw_accuracy = runpy.run_path(str(ROOT / "benchmarks" / "prune_figure.py"))["draw_accuracy"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, net_name in zip(axes, ("lenet300", "lenet5")):
        draw_accuracy(ax, net_name)
    fig.tight_layout()
    plt.show()

# %% [markdown]
# **Reading the numbers honestly.** The Adam-learned mask beats the reference table at 90, 95 and 98 % for both
# nets (lenet300: 89.3 / 88.7 / 88.3 %, lenet5: 89.8 / 89.2 / 86.7 % against 88.1 / 86.3 / 78.5 and 88.6 / 84.7 / 68.5).
# Most of that margin comes from two choices the reference did not make: Adam's learning rate 1e-3 instead of 1e-4,
# and sparsity that ramps up batch by batch instead of jumping at each step. Magnitude pruning given the same lr 1e-3
# is level with the learned mask at 90 %, within ±0.4 point at 95 % (0.3 ahead on lenet300, 0.4 behind on lenet5)
# and behind it by 1.1–1.5 points at 98 %: what learning the mask buys here shows at the highest sparsity. Our magnitude pruning at lr 1e-4 reproduces the PyTorch run made on
# this machine (lenet300 at 90/95/98 %: 88.3/86.9/81.8 vs 88.3/86.8/81.4), a check of the whole score → select →
# fine-tune path. The gradient-magnitude score is the worst: it keeps weights whose gradient is large *now*, which is
# not the same as weights the network needs. The control (no pruning, same 10 epochs) reaches 90.1 % (lenet300) and
# 91.2 % (lenet5) at lr 1e-4, so at 95–98 % sparsity the learned mask still costs 1.2–4.5 points against equal training (magnitude pruning of
# lenet300 at 95 %: 0.9 point).

# %% [markdown]
# ## Filter pruning (notebook 03) — Measured on Fashion-MNIST
#
# `benchmarks/prune_filters.py` prunes LeNet-5 and the teacher CNN to at most half their MACs and measures accuracy and
# forward latency (median of interleaved rounds, batch 256, one BLAS thread). Latency does not fall as fast as MACs:
# an im2col copy scales with a convolution's *input* channels, not with its filters, ReLU and pooling are memory-bound
# passes that MACs do not count, and a matmul with few columns runs at a lower rate than a wide one. The goal was a
# latency ratio within 1.3× of the MAC ratio. The run that trained the nets timed them with the code of that day
# (1.4–1.8×); `--latency-only` re-times the same shapes with the current eval-mode paths (notebook 09): the teacher
# meets the goal, LeNet-5 misses it — reported as such. The accuracy (≤ 1 point) and MAC (≤ 50 %) targets are met.

# %%
for name in ("lenet5", "teacher"):
    p = ROOT / "benchmarks" / "results" / f"prune_filters_{name}.json"
    if not p.exists():
        print(f"{name}: run benchmarks/prune_filters.py"); continue
    r = json.loads(p.read_text())
    print(f"{name}: keep {r['keep']}, accuracy {100 * r['dense_accuracy']:.2f} → {100 * r['pruned_accuracy']:.2f} % "
          f"(drop {r['accuracy_drop_points']:.2f} points), MAC ratio {r['mac_ratio']:.3f}, "
          f"latency ratio {r['latency_ratio']:.3f} (= {r['latency_over_mac_ratio']:.2f} × MAC ratio)")
    if "latency_only" in r:
        t = r["latency_only"]
        print(f"    re-timed ({t['machine']['date']}, commit {t['machine']['commit']}): latency ratio "
              f"{t['latency_ratio']:.3f} (= {t['latency_over_mac_ratio']:.2f} × MAC ratio; CPU time "
              f"{t['cpu_time_over_mac_ratio']:.2f} ×)")

# %% [markdown]
# ## Quantisation (notebook 04) — On Fashion-MNIST
#
# `benchmarks/quant_table.py` runs the benchmark protocol (dense 10-epoch nets; PTQ calibrated on 1000 training images;
# 3 epochs of Adam at lr 1e-4 for QAT). The rows compare the document's min–max $\Delta$, $\Delta$ learned by Adam with
# frozen weights, and $\Delta$ learned together with the weights (our LSQ). Notebook 05 plots them against the bits.

# %%
for name in ("lenet300", "lenet5"):
    p = ROOT / "benchmarks" / "results" / f"quant_table_{name}.json"
    if not p.exists():
        print(f"{name}: run benchmarks/quant_table.py {name}"); continue
    r = json.loads(p.read_text()); rows, fl = r["rows"], r["float_accuracy"]
    print(f"{name}: float {100 * fl:.2f} %")
    for row in rows:
        print(f"  {row['row']:24s} {row['bits']}-bit  {100 * row['accuracy']:6.2f} %   integer model "
              f"{100 * row['int_accuracy']:6.2f} %  bytes {row['bytes_ratio']:.4f} of float32")

# %% [markdown]
# ## Distillation (notebook 06) — the sweep: temperature, α and the learning-rate schedule
#
# **The problem.** A PyTorch run with the usual recipe (T = 4, α = 0.9, Adam 1e-3, 10 epochs) gave a distilled
# student that was slightly *worse* than the student trained alone (87.6 % vs 87.9 %). Distillation is not free: with
# α = 0.9 the student spends most of its small capacity imitating the teacher's soft outputs, and a fixed learning rate
# leaves it noisy at the end of a short budget.
#
# `benchmarks/distill_mlp.py` sweeps the temperature T ∈ {1, 2, 4, 8, 16} at α = 0.5 and the weight
# α ∈ {0.1, 0.25, 0.5, 0.75, 0.9, 1} at T = 4 (plus T = 2 with α = 0.25 and 0.75), for learning-rate schedules applied
# to **both** arms (constant 1e-3 as in the PyTorch run, and cosine decay from 3e-3), 3 seeds each, and
# draws the figures below. It takes tens of minutes on a shared machine, so the notebook only reads its results.

# %%
res_path = ROOT / "benchmarks" / "results" / "distill_mlp.json"
if res_path.exists():
    res = json.loads(res_path.read_text())
    print(f"teacher: {100 * res['teacher_test_accuracy']:.2f} %   seeds: {res['seeds']}")
    for sched, s in res["summary"].items():
        b = s["best"]
        print(f"[{sched}] student alone {100 * s['student_alone']['mean']:.2f} %; "
              f"best distilled T={b['T']:g}, α={b['alpha']}: {100 * b['mean']:.2f} % "
              f"(gain {s['gain_points']:+.2f} points); T=4, α=0.9: {100 * s['issue_recipe_T4_alpha0.9']:.2f} %")
        print("    " + "  ".join(f"{k}: {100 * v:.2f}" for k, v in s["table"].items()))
else:
    print("run benchmarks/distill_mlp.py to produce the sweep")

# %% [markdown]
# **What the sweep says.** Under every schedule the picture is the same and almost monotonic (α = 0.75 and 0.9 tie): the *higher* the
# temperature and the *larger* α, the *worse* the 64-unit student. The recipe we were asked to try (T = 4, α = 0.9, constant 1e-3)
# reproduces the PyTorch result — a little below the student alone. The only settings that do not lose are T = 1 with
# α = 0.5 (both schedules) and T = 2 with α = 0.25 (constant 1e-3), and they win by a fraction of a point, not the 0.5 point that was the goal. **The target is missed.**
#
# Why, as far as we can tell: the teacher is very sure of itself on the images it was trained on (it classifies 97.9 %
# of the training set correctly, and the median gap between its largest and smallest logit there is about 27). On
# those images its softened outputs carry little "dark knowledge", and at high T the $T^2$-scaled loss becomes logit
# matching — it asks a 64-unit network to reproduce logit gaps of 20–40, which spends its small capacity on the wrong
# thing. A lower temperature keeps only the useful part (which wrong class is the likely one). What is left to try,
# and what the literature suggests for this situation: teacher outputs on *new* inputs (mixup or augmentation,
# "function matching", Beyer et al. 2022) and much longer training; both change the budget, which the target fixes.

# %%
from IPython.display import Image, display
for name in ("distill_accuracy_vs_T.png", "distill_accuracy_vs_alpha.png"):
    path = ROOT / "figures" / name
    if path.exists():
        display(Image(filename=str(path), width=520))

# %% [markdown]
# ### The CNN students (lenet5), with hints and attention transfer

# %%
for name in ("distill_cnn.json",):
    res_path = ROOT / "benchmarks" / "results" / name
    if not res_path.exists():
        print(f"run benchmarks/distill_cnn.py to produce {name}")
        continue
    res = json.loads(res_path.read_text())
    print(f"lenet5 students ({name}), Fashion-MNIST, {res['epochs']} epochs, T={res['T']:g}, α={res['alpha']}, "
          f"{res['schedule']} learning rate from {res['lr']}; teacher {100 * res['teacher_test_accuracy']:.2f} %")
    print(f"  {'arm':10s} {'mean %':>8s} {'sd':>6s}  seeds")
    for arm, row in res["table"].items():
        print(f"  {arm:10s} {100 * row['mean']:8.2f} {100 * row['std']:6.2f}  {len(row['accs'])}")

# %% [markdown]
# **What the CNN runs say.** The table above is the current record: a teacher of the same architecture trained with
# a cosine schedule (93.00 %), T = 1, α = 0.5, 3 seeds, each distilled student with the same initialisation and batch
# order as its lenet5-alone twin. The distilled lenet5 is ahead of lenet5 alone by less than a tenth of a point on
# the mean, smaller than the seed-to-seed spread: nominally a win, in practice a tie. Earlier runs, kept in the git
# history of `benchmarks/results/` and summarised in `docs/RESULTS.md`, told the same story: at T = 4 distilling the
# logits cost lenet5 about half a point, and neither the FitNets hint (its loss falls steadily: notebook 06, §6) nor
# attention transfer closed the gap. With every label available, what the teacher knows is not what this student
# lacks; notebook 06 shows where it is (few labels, an unseen class).

# %% [markdown]
# ## The whole pipeline (notebook 07) — Every configuration tried
#
# `benchmarks/pipeline_sweep.py` runs several recipes on Fashion-MNIST; each point is an artifact file and the accuracy
# of the integer model read back from it. The dashed line is the Pareto front.

# %%
pareto = ROOT / "figures" / "pipeline_pareto.png"
if pareto.exists():
    display(Image(str(pareto)))
sweep = ROOT / "benchmarks" / "results" / "pipeline_sweep.json"
if sweep.exists():
    for c in sorted(json.loads(sweep.read_text())["configurations"], key=lambda c: c["bytes"]):
        print(f"{c['name']:<32} {c['bytes']:>8,} B  {c['ratio_vs_lenet300']:6.1f}x  {100 * c['accuracy']:.2f} %")
