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
# # Filter pruning — 滤波器剪枝, §3.1.2
#
# Weight pruning (notebook 02) leaves the layers their full size and fills them with zeros: the model only gets
# smaller if it is stored in a sparse format, and only faster with sparse kernels. Filter pruning removes whole
# convolution filters (whole neurons of a Linear layer); what is left is an ordinary dense network with fewer channels
# — smaller and faster with the very same code. The document gives five steps; one group of cells per step below,
# on LeNet-5 (Fashion-MNIST; the 8×8 digits in fast mode).
#
# | step | document | code |
# | --- | --- | --- |
# | 1 | one mask entry per filter | `prune.ChannelGate` after the layer, `prune.attach_gates` |
# | 2 | filter scores: norms, "absolute median" | `prune.filter_scores`: `"l1"`, `"l2"`, `"median"`, `"taylor"` |
# | 3 | set a ratio of the filters to 0 | `prune.filter_prune` (exact counts) |
# | 4 | Adam optimises the mask | `prune.learned_filter_prune` |
# | 5 | remove the zero filters | `prune.shrink`, `prune.remove_filters` (the next layer shrinks too) |
#
# **Where the document is ambiguous or silent, and what we do.**
# * Step 1 says the mask "has the shape of the convolution filter, each element one whole filter"
#   (剪枝掩码 $\boldsymbol{m}$ 的形状与卷积滤波器的形状相同,每个元素对应一个完整的滤波器): that is one entry
#   per *output filter*, shape (O,), not the filter's (C, k, k) shape. We read it that way.
# * The mask must also silence the filter's **bias**: a filter with zero weights still outputs $b_o$, which the next
#   layer sees (and, behind a padded convolution, not as a constant that could be folded into the next bias). So the
#   mask multiplies the layer's *output* channel, which zeroes weight and bias at once, and the masked network computes
#   exactly what the smaller network computes.
# * Step 5 says "remove" (永久性地移除) but not that the *next* layer must lose the matching inputs — for a conv followed by
#   Flatten → Linear, a whole block of H·W input columns per channel. We do it, and test that the outputs agree.
# * The "similar loss" (类似于权重剪枝的损失函数) of step 4 is read as for weights (notebook 02): the sparsity comes from a budget of kept
#   filters, reached with a cubic schedule; Adam learns scores that decide which filters stay.

# %%
import os, json, copy, runpy
from pathlib import Path
import numpy as np
from minicompress.check import check
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
from minicompress import models, optim, prune, metrics, nn
from minicompress.data import load_dataset
from minicompress.train import EveryEpoch, TrainConfig, fit, evaluate

FAST = os.environ.get("MINICOMPRESS_FAST") == "1"
FIGURES = os.environ.get("MINICOMPRESS_FIGURES")  # if set, a folder to also save the figures in

def save(fig, name):
    if FIGURES:
        fig.savefig(Path(FIGURES) / name, dpi=110, bbox_inches="tight")

np.set_printoptions(precision=3, suppress=True, linewidth=110)
if FAST:
    (xtr, ytr), (xte, yte) = load_dataset("digits")
    net = models.lenet5(8, rng=np.random.default_rng(0))
    fit(net, optim.Adam(net.parameters(), 1e-3), (xtr, ytr), TrainConfig(15, np.random.default_rng(1)))
    size, EPOCHS = 8, 6
else:
    common = runpy.run_path(str(ROOT / "benchmarks" / "common.py"))   # the cached dense reference nets
    dense_model, fashion = common["dense_model"], common["fashion"]
    (xtr, ytr), (xte, yte) = fashion()
    net = dense_model("lenet5", progress=False)
    size, EPOCHS = 28, 3
dense = copy.deepcopy(net)
print("fast mode (digits)" if FAST else "full mode (Fashion-MNIST)", "| dense test accuracy:", evaluate(dense, xte, yte)["accuracy"])

# %% [markdown]
# ## Step 1 — one mask entry per filter
#
# A `ChannelGate` after `conv2` holds a mask of ones, one entry per output filter. It multiplies channel $o$ of the
# layer's output by $m_o$; its backward pass gives $\partial L/\partial x = \partial L/\partial y\odot m$ and, for a
# learned mask, $\partial L/\partial m_o = \sum_{n,h,w} a\odot\partial L/\partial a$.

# %%
gated = copy.deepcopy(dense)
g = prune.attach_gates(gated, ["conv2"])["conv2"]
print("mask of conv2:", g.mask.data)
print(gated)

# %% [markdown]
# ## Step 2 — filter scores
#
# For filter $o$ with weights $W_o$ (all its $C\cdot k\cdot k$ entries): L1 norm $\sum\lvert W_o\rvert$, L2 norm
# $\lVert W_o\rVert_2$, the median of $\lvert W_o\rvert$ (the document's "absolute median", 绝对中值, robust to a few large
# weights), and the Taylor score $\frac1B\sum_b\lvert\sum_{n,h,w}a\odot\partial L/\partial a\rvert$ (Molchanov et al.
# 2017), the first-order change of the loss when the filter's output $a$ is set to 0. First, four filters of a tiny
# conv you can read (1 input channel, 2×2 kernels):

# %%
Wt = np.array([[[[0.5, -0.5], [0.5, -0.5]]],
               [[[0.1,  0.0], [0.0,  1.6]]],
               [[[0.2,  0.2], [-0.2, 0.2]]],
               [[[-0.9, 0.0], [0.0,  0.0]]]], dtype=np.float32)
for o in range(4):
    print(f"filter {o}: {Wt[o, 0].ravel()}")
for s in ("l1", "l2", "median"):
    v = prune.filter_norm_scores(Wt, s)
    print(f"{s:6s} {v}   ranking, most important first: {np.argsort(-v, kind='stable').tolist()}")

# %% [markdown]
# The three scores disagree on this example. L1 ranks filter 0 first: its four medium weights add up (2.0 against
# 1.7). L2 ranks filter 1 first: squaring lets its one large weight, 1.6, dominate. The median ranks filter 0 first
# and filter 3 last: three of filter 3's four weights are 0, so its one large weight, −0.9, does not count at all.
# Which filter goes first depends on the score you pick.

# %% [markdown]
# **Exercise — `filter_scores`.** The three norm scores of the cell above, for a weight of shape (O, C, kh, kw). Every score is computed over a filter's own C·kh·kw entries (axes 1, 2, 3). Write the body of the function
# (in the student edition it only raises `NotImplementedError`); the docstring states the equation and the shapes.
# The cell after it checks your function against numbers worked out by hand.

# %%
def filter_scores(W):
    """Scores of the filters of a convolution weight W of shape (O, C, kh, kw) (§3.1.2 step 2):
    for each filter j, over its C·kh·kw entries,

        L1_j = Σ |W[j]|,   L2_j = √(Σ W[j]²),   median_j = median |W[j]|

    Returns (L1, L2, median), three arrays of shape (O,).
    """
    ### BEGIN SOLUTION
    a = np.abs(W.reshape(W.shape[0], -1))
    return a.sum(axis=1), np.sqrt((a * a).sum(axis=1)), np.median(a, axis=1)
    ### END SOLUTION

# %%
check("filter_scores", filter_scores)

# %%
scores = {s: prune.filter_scores(dense, s, ["conv2"], data=(xtr, ytr), rng=np.random.default_rng(2))["conv2"]
          for s in prune.FILTER_SCORES}
fig, axes = plt.subplots(1, 4, figsize=(14, 2.8))
for ax, (s, v) in zip(axes, scores.items()):
    ax.bar(range(len(v)), v, color=["C3" if i in np.argsort(v)[:len(v) // 2] else "C0" for i in range(len(v))])
    ax.set_title(f"conv2 {s} score"); ax.set_xlabel("filter"); ax.set_ylabel("score")
axes[0].legend(handles=[plt.Rectangle((0, 0), 1, 1, color="C0", label="highest half"),
                        plt.Rectangle((0, 0), 1, 1, color="C3", label="lowest half")], fontsize=8)
plt.tight_layout()
save(fig, "prune_filter_scores.png")
plt.show()

# %% [markdown]
# ## Step 3 — set a ratio of the filters to zero
#
# Half the filters of `conv1` and `conv2` are switched off by their L1 score. Exact counts: 6 → 3 and 16 → 8.
# Without any retraining the accuracy drops — the next cells let Adam repair that.

# %%
for s in prune.FILTER_SCORES:
    m = copy.deepcopy(dense)
    prune.filter_prune(m, {"conv1": 0.5, "conv2": 0.5}, s, data=(xtr, ytr), rng=np.random.default_rng(3))
    kept = {n: np.flatnonzero(gt.keep).tolist() for n, gt in prune.gates(m).items()}
    print(f"{s:6s} kept filters {kept}  accuracy without fine-tuning {evaluate(m, xte, yte)['accuracy']:.4f}")

# %% [markdown]
# ## Step 4 — Adam optimises the filter mask
#
# `learned_filter_prune` gives every filter a learned score $s_o$ on top of its normalised L1 score, keeps the top-k
# filters per layer, lowers k along a cubic schedule during the first half of training, and trains the weights at
# the same time. The plot follows all 16 conv2 scores (normalised L1 + $s_o$); the mask is the top-k of these
# curves, and the filters kept at the end are drawn solid, the pruned ones dashed.
#
# **A pruned filter can never come back.** The gate sits between the convolution and its ReLU. Once a filter's gate
# is 0, the gate outputs 0, and the ReLU has slope 0 there, so $\partial L/\partial y_o = 0$ and the score's gradient
# $\sum_{n,h,w} a_o\odot\partial L/\partial y_o$ is exactly 0. After that, Adam only coasts on the momentum the score
# already had, and that momentum shrinks by $\beta_1$ at every step. A pruned *weight* (notebook 02) is different:
# $\partial L/\partial W_{\text{eff}}$ is computed for every entry, so its score keeps receiving a gradient. The last
# line of the cell measures this gradient on one batch.

# %%
learned = copy.deepcopy(dense)
RATIOS = {"conv1": 0.5, "conv2": 0.5}
trace = []
def on_epoch(epoch, record):
    gt = prune.gates(learned)["conv2"]
    trace.append(gt.scores.data.copy())
    print(f"epoch {epoch}: kept {int(gt.keep.sum())} conv2 filters, test accuracy {record['test_accuracy']:.4f}")
prune.learned_filter_prune(learned, (xtr, ytr), prune.FilterPruning(RATIOS), TrainConfig(EPOCHS, np.random.default_rng(4)),
                           eval_data=(xte, yte), hooks=[EveryEpoch(on_epoch)])
base = prune.filter_norm_scores(dense.conv2.weight.data, "l1"); base = base / base.mean()
curves = base[None, :] + np.array(trace)
gate = prune.gates(learned)["conv2"]
plt.figure(figsize=(6, 3.5))
for o in range(curves.shape[1]):
    kept_o = bool(gate.keep[o])
    plt.plot(range(1, len(trace) + 1), curves[:, o], marker="o", ms=3, ls="-" if kept_o else "--",
             color="C0" if kept_o else "C3", label=("kept" if kept_o else "pruned") if o in
             (np.flatnonzero(gate.keep)[0], np.flatnonzero(~gate.keep)[0]) else None)
plt.gca().xaxis.set_major_locator(MaxNLocator(integer=True))   # epochs are whole numbers
plt.xlabel("epoch"); plt.ylabel("normalised L1 + s"); plt.title("conv2 filter scores under Adam (16 filters)")
plt.legend(fontsize=8); plt.show()
print("kept conv2 filters:", np.flatnonzero(gate.keep).tolist())
# one batch: |∂L/∂m_c| = |Σ a ⊙ ∂L/∂y|, the gradient a learned score would receive (the gate records it)
gate.record_taylor, gate.taylor_sum[...], gate.taylor_count = True, 0.0, 0
_, dz = nn.cross_entropy(learned(xtr[:256]), ytr[:256]); learned.backward(dz)
gate.record_taylor = False
print(f"|∂L/∂s| on one batch: pruned filters {gate.taylor_sum[~gate.keep].max():.1e} (max), "
      f"kept filters {gate.taylor_sum[gate.keep].mean():.1e} (mean)")

# %% [markdown]
# ## Step 5 — remove the filters: a smaller network
#
# `shrink` builds new, smaller `Conv2d`/`Linear` layers and shrinks the input side of the layer after each one
# (`conv2` loses input channels; `fc1` loses the 5×5 block of columns that belonged to each removed `conv2` channel).
# The gated and the shrunk networks give the same outputs.

# %%
small = prune.shrink(learned)
print("max |logits(gated) − logits(shrunk)|:", float(np.abs(learned(xte[:500]) - small(xte[:500])).max()))
for n in ("conv1", "conv2", "fc1", "fc2", "fc3"):
    print(f"{n:6s} {str(dense[n].weight.shape):18s} → {small[n].weight.shape}")
shape = (1, size, size)
x = xte[:256]
rows = []
for label, m in (("dense", dense), ("shrunk", small)):
    rows.append((label, metrics.count_parameters(m), metrics.macs(m, shape)[0], metrics.latency(m, x, repeats=15),
                 evaluate(m, xte, yte)["accuracy"]))
for r in rows:
    print(f"{r[0]:7s} params {r[1]:>7,d}  MACs {r[2]:>9,d}  latency(256) {1e3 * r[3]:6.2f} ms  accuracy {r[4]:.4f}")
print(f"MAC ratio {rows[1][2] / rows[0][2]:.3f}, latency ratio {rows[1][3] / rows[0][3]:.3f} (one measurement here; "
      "the benchmark interleaves rounds)")

# %% [markdown]
# **Exercise — `remove_filter`.** Step 5 on two arrays: filter $j$ of one convolution produces channel $j$ of the next one's input, so both layers shrink. Write the body of the function
# (in the student edition it only raises `NotImplementedError`); the docstring states the equation and the shapes.
# The cell after it checks your function against numbers worked out by hand.

# %%
def remove_filter(W1, b1, W2, j):
    """Remove filter j of a convolution (§3.1.2 step 5): W1 (O1, C, kh, kw) and b1 (O1,) lose
    filter j, and the next convolution's weight W2 (O2, O1, kh, kw) loses input channel j — the
    channel that filter produced. Returns (W1 (O1−1, C, kh, kw), b1 (O1−1,), W2 (O2, O1−1, kh, kw)).
    """
    ### BEGIN SOLUTION
    return np.delete(W1, j, axis=0), np.delete(b1, j), np.delete(W2, j, axis=1)
    ### END SOLUTION

# %%
check("remove_filter", remove_filter)

# %% [markdown]
# The benchmark results on Fashion-MNIST that belong here (the full protocol, every configuration, what met its goal and what did not) are in the appendix notebook `08_benchmark_results` and in `docs/RESULTS.md`.

# %% [markdown]
# ## Things to try, and questions
#
# 1. **Make the scores disagree.** Change one weight of filter 3 in the small example so that the L1 and the median
#    rankings put filter 3 first. What is the smallest change?
# 2. **Taylor without fine-tuning.** In step 3, the Taylor score gives the lowest accuracy without fine-tuning. Run
#    it with more calibration batches (`num_batches=32`). Does it change the kept filters?
# 3. **Could a pruned filter come back?** Move the gate *after* the ReLU (in your head, or in a copy of the model).
#    Would the score of a pruned filter receive a gradient then?
#    **Question:** why must `remove_filter` shrink the *next* layer too, and which axis of its weight?
