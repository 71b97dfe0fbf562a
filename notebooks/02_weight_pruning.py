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
# # Weight pruning — 权重剪枝, §3.1.1
#
# Pruning removes weights that the network can do without. §3.1.1 of the document describes it in six numbered
# steps; this notebook follows them one group of cells per step, first on a 5×5 matrix small enough to read, then on
# a real network (LeNet-300-100 on Fashion-MNIST; on the 8×8 digits in fast mode).
#
# | step | document | code |
# | --- | --- | --- |
# | 1 | mask $\boldsymbol m$ of ones, shape of $\boldsymbol W$ | `prune.Mask`, `prune.attach_mask` (a weight transform: $W_{\text{eff}} = W\odot m$) |
# | 2 | importance scores | `prune.weight_scores`: $\lvert W\rvert$, $\lvert\partial L/\partial W\rvert$, $\lvert W\cdot\partial L/\partial W\rvert$ |
# | 3 | set a ratio of the mask to 0 | `prune.select`, `prune.topk_mask` (exact counts, global or per layer) |
# | 4 | Adam on $\mathcal L(W,m)=\mathcal L_{\text{task}}(W\odot m)+\lambda\lVert W\odot(1-m)\rVert_1$ | `prune.pruning_objective`, `prune.l1_penalty`, `prune.LearnedMaskPruner` |
# | 5 | Adam adapts each mask entry | `prune.learned_mask_prune` |
# | 6 | remove the zero weights for good | `prune.remove`, `metrics.model_bytes` (sparse storage) |
#
# **Where the document is silent or ambiguous, and what we do** (details in the cells):
# * It does not say how many weights to prune in total, nor how the mask, optimised by Adam as a real number, becomes
#   0/1 again. Taken alone, its L1 term does not produce sparsity at all (step 4 shows why). We keep the mask binary at
#   every step (a top-k of learned scores at an exact budget) and reach the target sparsity gradually with the cubic
#   schedule of Zhu & Gupta.
# * "A ratio" (一定比例) could be per layer or over the whole network: both are implemented; the benchmark uses *global*.
# * "Gradient norm" as a score of a single weight is the magnitude of its gradient; we average it over several
#   calibration batches, and add the first-order Taylor score $\lvert w\,\partial L/\partial w\rvert$, which estimates
#   the change of the loss when the weight is removed.

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
print("fast mode (digits, few epochs)" if FAST else "full mode (Fashion-MNIST)")

# %% [markdown]
# ## Step 1 — a mask of ones, the shape of the weight
#
# The mask is not stored *in* the weight: it is a small transform attached to the layer, and the layer computes with
# $W_{\text{eff}} = W\odot m$. Its backward pass is the chain rule $\partial L/\partial W = \partial L/\partial W_{\text{eff}}\odot m$,
# so a pruned weight receives no gradient. Here is a 5×5 weight of a `Linear(5, 5)` and its fresh mask.

# %%
W5 = np.array([[ 0.10, -0.80,  0.05,  0.30, -0.02],
               [-0.45,  0.07,  0.90, -0.12,  0.33],
               [ 0.01, -0.06,  0.22, -0.70,  0.15],
               [ 0.50,  0.04, -0.09,  0.11, -0.60],
               [-0.03,  0.26,  0.08, -0.18,  0.40]], dtype=np.float32)
layer = nn.Linear(5, 5, rng=np.random.default_rng(0))
layer.weight.data[...] = W5
mask = prune.attach_mask(layer)
print("W =\n", layer.weight.data)
print("m =\n", mask.mask.data)
print("weight transforms of the layer:", layer.weight_transforms)

# %% [markdown]
# **Exercise — `mask_gradients`.** The layer computes with $W_{\text{eff}} = W\odot m$. Given $g=\partial L/\partial W_{\text{eff}}$ from the layer's backward, write the two gradients of the chain rule; the second is the one Adam will use for the mask scores in step 5. Write the body of the function
# (in the student edition it only raises `NotImplementedError`); the docstring states the equation and the shapes.
# The cell after it checks your function against numbers worked out by hand.

# %%
def mask_gradients(W, m, g):
    """Chain rule through the mask (§3.1.1 step 1): the layer computes with W_eff = W ⊙ m, and
    g = ∂L_task/∂W_eff (shape of W) comes from the layer's backward. Returns

        ∂L_task/∂W = g ⊙ m,    ∂L_task/∂m = g ⊙ W        (both of W's shape; ⊙ is element-wise)
    """
    ### BEGIN SOLUTION
    return g * m, g * W
    ### END SOLUTION

# %%
check("mask_gradients", mask_gradients)

# %% [markdown]
# ## Step 2 — importance scores
#
# Three scores, all of the shape of $W$ (with $g=\partial L/\partial W_{\text{eff}}$ on a calibration batch $b$):
#
# * magnitude $\lvert W\rvert$ — needs no data;
# * gradient $\frac1B\sum_b\lvert g_b\rvert$ — how strongly the loss reacts to the weight right now;
# * Taylor $\frac1B\sum_b\lvert W\odot g_b\rvert$ — first-order estimate of how much the loss changes if the weight is set
#   to 0, since $L(W)-L(W-w_ie_i)\approx w_i g_i$.
#
# For the 5×5 layer we make up a small classification task (20 random inputs, 5 classes) to get gradients.

# %%
rng = np.random.default_rng(1)
x5 = rng.standard_normal((20, 5)).astype(np.float32)
y5 = rng.integers(0, 5, 20)
tiny = nn.Sequential(fc=layer)
for name in prune.WEIGHT_SCORES:
    s = prune.weight_scores(tiny, name, data=(x5, y5), rng=np.random.default_rng(2), num_batches=1, batch_size=20)
    print(f"{name} score:\n{s['fc']}\n")

# %% [markdown]
# ### The real network
#
# The dense LeNet-300-100 trained for 10 epochs (cached by `benchmarks/common.py`; in fast mode trained here on the
# digits). The three scores disagree mostly on the weights near the cut: the figure compares them on `fc2`.

# %%
if FAST:
    (xtr, ytr), (xte, yte) = load_dataset("digits")
    net = models.lenet300(8, rng=np.random.default_rng(0))
    fit(net, optim.Adam(net.parameters(), 1e-3), (xtr, ytr), TrainConfig(10, np.random.default_rng(1)))
    input_shape, EPOCHS = (1, 8, 8), 6
else:
    common = runpy.run_path(str(ROOT / "benchmarks" / "common.py"))   # the cached dense reference nets
    dense_model, fashion = common["dense_model"], common["fashion"]
    (xtr, ytr), (xte, yte) = fashion()
    net = dense_model("lenet300", progress=False)
    input_shape, EPOCHS = (1, 28, 28), 6
dense = copy.deepcopy(net)
print("dense test accuracy:", evaluate(net, xte, yte)["accuracy"])
sc = {k: prune.weight_scores(net, k, data=(xtr, ytr), rng=np.random.default_rng(3))["fc2"].ravel()
      for k in prune.WEIGHT_SCORES}
fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
ax[0].loglog(sc["magnitude"], sc["gradient"], ",", alpha=0.5, label="one weight of fc2")
ax[0].set_xlabel("|W|"); ax[0].set_ylabel("gradient score"); ax[0].set_title("gradient vs magnitude")
ax[1].loglog(sc["magnitude"], sc["taylor"], ",", alpha=0.5, label="one weight of fc2")
ax[1].set_xlabel("|W|"); ax[1].set_ylabel("Taylor score"); ax[1].set_title("Taylor vs magnitude")
for a in ax:
    a.legend(fontsize=8, markerscale=20)
fig.suptitle("fc2: three importance scores of the same weights"); plt.tight_layout(); plt.show()

# %% [markdown]
# ## Step 3 — set a ratio of the mask to zero
#
# At 75 % sparsity, 25 − round(0.75·25) = **6** weights of the 5×5 matrix stay: the six largest $\lvert w\rvert$.
# Counts are exact, and ties are broken toward the lower index so the same scores always give the same mask.

# %%
prune.prune_by_score(tiny, 0.75, "magnitude", scope="layer")
print("m at 75 % sparsity =\n", mask.mask.data)
print("W ⊙ m =\n", layer.effective_weight())
print("kept:", int(mask.keep.sum()), "of", mask.mask.data.size)

# %% [markdown]
# **Exercise — `topk_mask`.** Step 3 with exact counts: on $\lvert W_5\rvert$ at 75 % your mask must be the one printed above. Write the body of the function
# (in the student edition it only raises `NotImplementedError`); the docstring states the equation and the shapes.
# The cell after it checks your function against numbers worked out by hand.

# %%
def topk_mask(scores, sparsity):
    """§3.1.1 step 3: prune a fraction `sparsity` s of the entries. Keep exactly
    k = n − round(s·n) entries (n = scores.size): those with the k largest scores; among equal
    scores the lower flat index is kept. Returns the mask m (0/1 floats or booleans), shape of scores.
    """
    ### BEGIN SOLUTION
    flat = np.asarray(scores, dtype=np.float64).ravel()
    k = flat.size - round(sparsity * flat.size)
    order = np.argsort(-flat, kind="stable")      # stable: equal scores keep index order
    keep = np.zeros(flat.size)
    keep[order[:k]] = 1.0
    return keep.reshape(np.shape(scores))
    ### END SOLUTION

# %%
check("topk_mask", topk_mask)

# %% [markdown]
# On the real network, *global* selection (one threshold for all layers, as `torch.nn.utils.prune.global_unstructured`)
# and *per-layer* selection (each layer loses the same fraction) give different layers different sparsities at the
# same total — global prunes the big, redundant first layer hardest and spares the 10-output last layer.

# %%
for scope in ("global", "layer"):
    m = copy.deepcopy(dense)
    prune.prune_by_score(m, 0.9, "magnitude", scope=scope)
    per = {n: round(1 - float(mk.mask.data.mean()), 3) for n, mk in prune.masks(m).items()}
    print(f"{scope:6s} 90 %: per-layer sparsity {per}, total {prune.sparsity(m):.4f}, "
          f"accuracy without fine-tuning {evaluate(m, xte, yte)['accuracy']:.4f}")

# %% [markdown]
# ## Step 4 — the document's objective, and what its L1 term really does
#
# $$\mathcal{L}(W, m) = \mathcal{L}_{\text{task}}(W \odot m) + \lambda \lVert W \odot (1 - m)\rVert_1$$
#
# With $g = \partial\mathcal L_{\text{task}}/\partial W_{\text{eff}}$, the gradients (derived by hand in
# `prune/objective.py`, checked by central differences in `tests/test_prune.py`) are, for $0\le m<1$:
#
# $$\frac{\partial\mathcal L}{\partial W} = g\odot m + \lambda\,\mathrm{sign}(W)\odot(1-m),\qquad
#   \frac{\partial\mathcal L}{\partial m} = g\odot W - \lambda\,\lvert W\rvert .$$
#
# The document says the L1 term "encourages more weights to be pruned" (第二项是 $L_1$ 范数正则化项,用于促使更多的权重被剪枝).
# Look at its two gradients: on $m$ it is
# $-\lambda\lvert W\rvert\le 0$, so a descent step **raises** every mask entry (toward *keeping* the weight), and the
# term vanishes at $m=1$. On $W$ it is $\lambda\,\mathrm{sign}(W)(1-m)$: it shrinks a weight toward 0 exactly where the
# mask is dropping it. So the term cleans up after the mask — a dropped weight decays to zero, after which the mask no
# longer matters — but it never decides *which* or *how many* weights go.
#
# **First, the document's method literally.** Step 1 sets $m = 1$; steps 4–5 let Adam optimise $W$ and the
# real-valued $m$ together on the whole objective. On the 5×5 layer and its small task (step 2), for three values of
# $\lambda$, 500 Adam steps ($\alpha = 0.01$ for both):

# %%
def task_loss_5x5(w_eff):
    """L_task of the 5×5 layer on (x5, y5) and g = ∂L_task/∂W_eff (bias fixed)."""
    logits = x5 @ w_eff.T + layer.bias.data
    loss, dz = nn.cross_entropy(logits, y5)
    return loss, dz.T @ x5

for lam in (0.001, 0.01, 0.1):
    pw, pm = nn.Parameter(W5.copy()), nn.Parameter(np.ones((5, 5), np.float32))   # step 1: m = 1
    opt = optim.Adam([pw, pm], lr=0.01)
    for t in range(500):
        loss, dw, dm = prune.pruning_objective(pw.data, pm.data, lam, task_loss_5x5)
        pw.grad[...], pm.grad[...] = dw, dm
        opt.step()
    m = pm.data
    print(f"λ = {lam:<5}  loss {loss:.3f}   m in [{m.min():.3f}, {m.max():.3f}]   "
          f"entries with m < 0.5: {int((m < 0.5).sum())} of 25   with m = 0: {int((m == 0).sum())}")

# %% [markdown]
# No entry of $m$ reaches 0, whatever $\lambda$: the literal method gives **no sparsity**. At $m = 1$ the L1 term
# is zero and its gradient on $m$ is $-\lambda\lvert W\rvert$ (pushing $m$ up), so the only force on $m$ is the
# task gradient $g\odot W$, and a real-valued mask simply becomes another scale factor on each weight — it can
# grow well above 1 or drift below it, but nothing drives it to 0. The next cell isolates the L1 term: Adam minimises it
# alone, starting from $m=0.5$ everywhere.

# %%
w0 = np.random.default_rng(4).standard_normal((8, 8)).astype(np.float32)
pw, pm = nn.Parameter(w0.copy()), nn.Parameter(np.full((8, 8), 0.5, np.float32))
opt = optim.Adam([pw, pm], lr=0.01)
trace_m, trace_w = [], []
for t in range(150):
    _, dw, dm = prune.l1_penalty(pw.data, pm.data, lam=0.1)
    pw.grad[...], pm.grad[...] = dw, dm
    opt.step()
    trace_m.append(pm.data.ravel()[:6].copy()); trace_w.append(np.abs(pw.data.ravel()[:6]))
fig, ax = plt.subplots(1, 2, figsize=(10, 3.2))
ax[0].plot(trace_m, label=[f"entry {i}" for i in range(6)]); ax[0].set_title("m under the L1 term alone: pushed up")
ax[0].set_xlabel("Adam step"); ax[0].set_ylabel("m"); ax[0].legend(fontsize=7)
ax[1].plot(trace_w, label=[f"entry {i}" for i in range(6)]); ax[1].set_title("|W| where m < 1: pushed to 0")
ax[1].set_xlabel("Adam step"); ax[1].set_ylabel("|W|"); ax[1].legend(fontsize=7)
plt.tight_layout()
save(fig, "prune_l1_term_alone.png")
plt.show()
print("all m went up:", bool(np.all(pm.data > 0.5)), "| all |W| went down:", bool(np.all(np.abs(pw.data) < np.abs(w0))))

# %% [markdown]
# **Exercise — `l1_penalty`.** The document's L1 term, as a number. Write the body of the function
# (in the student edition it only raises `NotImplementedError`); the docstring states the equation and the shapes.
# The cell after it checks your function against numbers worked out by hand.

# %%
def l1_penalty(W, m, lam):
    """The document's L1 term (§3.1.1 step 4), a number:

        R(W, m) = λ ‖W ⊙ (1 − m)‖₁ = λ Σ |W ⊙ (1 − m)|        (W, m of the same shape; λ ≥ 0)
    """
    ### BEGIN SOLUTION
    return lam * np.abs(W * (1 - m)).sum()
    ### END SOLUTION

# %%
check("l1_penalty", l1_penalty)

# %% [markdown]
# **Exercise — `l1_penalty_grads`.** Its two gradients. Before writing them, predict the sign of $\partial R/\partial m$ for $0\le m<1$; the figure above is the answer. Write the body of the function
# (in the student edition it only raises `NotImplementedError`); the docstring states the equation and the shapes.
# The cell after it checks your function against numbers worked out by hand.

# %%
def l1_penalty_grads(W, m, lam):
    """Gradients of R(W, m) = λ‖W ⊙ (1 − m)‖₁ (sign(0) = 0), both of W's shape:

        ∂R/∂W = λ · sign(W ⊙ (1 − m)) ⊙ (1 − m)
        ∂R/∂m = −λ · sign(W ⊙ (1 − m)) ⊙ W

    Returns (∂R/∂W, ∂R/∂m).
    """
    ### BEGIN SOLUTION
    s = np.sign(W * (1 - m))
    return lam * s * (1 - m), -lam * s * W
    ### END SOLUTION

# %%
check("l1_penalty_grads", l1_penalty_grads)

# %% [markdown]
# **What we do instead.** Sparsity has to come from a *budget*. Each weight gets a learned score $s$ (a `Parameter`,
# updated by Adam like any weight), and the mask used in the forward pass is already binary:
#
# $$m = \mathbb 1\big[\,\lvert W\rvert + s \text{ is among the } k \text{ largest}\,\big],\qquad k = n-\mathrm{round}(s_t\,n),$$
#
# with the target sparsity $s_t$ following the cubic schedule $s_t = s_f + (s_i-s_f)\,(1-(t-t_0)/(n\Delta t))^3$
# (Zhu & Gupta 2017). The score's gradient is the document's own $\partial\mathcal L_{\text{task}}/\partial m = g\odot W$,
# passed straight through the top-k (as in movement pruning, Sanh et al. 2020): a pruned weight that would lower the
# loss if it came back sees its score rise and can re-enter. Why this rather than a relaxed $m=\sigma(s)$: a relaxed mask
# must be rounded at the end, which changes the network the optimiser had been looking at, and needs a penalty whose
# strength decides the final sparsity only indirectly. With the top-k, the sparsity is exact at every step and the net
# we evaluate is the net we train. The λ term stays available (`lam=`) to decay the weights the mask currently drops.

# %% [markdown]
# **One Adam step on the scores, by hand.** The 5×5 layer at 75 % sparsity, scores $s = 0$, so the mask is the
# magnitude mask of step 3. The score gradient is $\partial L/\partial s := g\odot W$ for *every* entry, kept or
# pruned ($g = \partial L_{\text{task}}/\partial W_{\text{eff}}$ is computed for all entries; only $W_{\text{eff}}$ is
# zero where $m = 0$): that is why a pruned weight can come back. At $t=1$, $\hat m_1 = g_1$ and $\hat v_1 = g_1^2$, so
# Adam moves every score by exactly $-\alpha\,\mathrm{sign}(g\odot W)$ (section 1 of notebook 01). With $\alpha=0.05$
# (the last line says whether any entry crossed the cut; *Try* 3 below asks for a larger $\alpha$):

# %%
s5 = np.zeros((5, 5), np.float32)
m5 = prune.topk_mask(np.abs(W5) + s5, 6).astype(np.float32)        # 25 − round(0.75·25) = 6 kept
_, g5 = task_loss_5x5(W5 * m5)
ds = g5 * W5                                                       # ∂L/∂s = g ⊙ W
s_by_hand = s5 - 0.05 * ds / (np.abs(ds) + 1e-8)                   # −α·m̂/(√v̂ + ε) with m̂ = g, v̂ = g²
ps = nn.Parameter(s5.copy()); ps.grad[...] = ds
optim.Adam([ps], lr=0.05).step()
print("∂L/∂s = g ⊙ W =\n", ds)
print("s after one Adam step (by hand = library):", np.allclose(s_by_hand, ps.data, atol=1e-6))
print("|W| + s =\n", np.abs(W5) + ps.data)
m5_new = prune.topk_mask(np.abs(W5) + ps.data, 6)
print("entries that left the mask:", np.argwhere(m5.astype(bool) & ~m5_new).tolist(),
      " entered:", np.argwhere(~m5.astype(bool) & m5_new).tolist())

# %%
sched = prune.CubicSchedule(0.0, 0.9, steps=100)
plt.figure(figsize=(5, 3)); plt.plot([sched(t) for t in range(120)], label="$s_i = 0$, $s_f = 0.9$"); plt.legend()
plt.xlabel("step"); plt.ylabel("sparsity $s_t$"); plt.title("cubic schedule, 0 → 90 % over 100 steps"); plt.show()

# %% [markdown]
# **Exercise — `cubic_sparsity`.** The schedule drawn above, as a function of the step $t$ (continuous: the library updates it only every $\Delta t$ steps, the checks use steps where both agree). Write the body of the function
# (in the student edition it only raises `NotImplementedError`); the docstring states the equation and the shapes.
# The cell after it checks your function against numbers worked out by hand.

# %%
def cubic_sparsity(t, s_i, s_f, t0, n, dt):
    """Zhu & Gupta's gradual pruning schedule, a number: the sparsity at step t,

        s_t = s_f + (s_i − s_f) · (1 − (t − t₀)/(n·Δt))³      for t₀ ≤ t ≤ t₀ + n·Δt,

    s_i before t₀ and s_f after t₀ + n·Δt (clamp (t − t₀)/(n·Δt) to [0, 1]).
    """
    ### BEGIN SOLUTION
    frac = min(max((t - t0) / (n * dt), 0.0), 1.0)
    return s_f + (s_i - s_f) * (1.0 - frac) ** 3
    ### END SOLUTION

# %%
check("cubic_sparsity", cubic_sparsity)

# %% [markdown]
# ## Step 5 — Adam optimises the mask on the real network
#
# `learned_mask_prune` trains weights and scores together (one Adam with two parameter groups, each with its own
# learning rate, because a score and a weight live on different scales and Adam's step is ≈ its learning rate whatever
# the gradient's size), reaching 90 % global sparsity
# along the cubic schedule. We watch a few mask scores $\lvert W\rvert+s$ of `fc2` that start near the cut, and count how
# many mask entries differ from plain magnitude pruning at the same sparsity. The plot follows the 12 entries of `fc2`
# closest to the final magnitude cut: solid blue if the learned mask keeps the weight at the end, dashed red if it
# prunes it (the key says how many of each). Two counts, because two things move
# during training: the weights $W$ (Adam trains them too, so the magnitude ranking of the *trained* weights is not
# that of the dense ones) and the scores $s$. Against magnitude pruning of the **dense** weights the count mixes
# both; against magnitude pruning of the **final** weights it is what the learned scores alone changed.

# %%
learned = copy.deepcopy(dense)
SP = 0.9
mag = copy.deepcopy(dense); prune.prune_by_score(mag, SP)
w_fc2 = np.abs(dense.fc2.weight.data).ravel()
all_w = np.sort(np.abs(np.concatenate([l.weight.data.ravel() for _, l in prune.prunable_layers(dense)])))
thr = all_w[int(SP * all_w.size)]  # the final global magnitude threshold
watch = np.argsort(np.abs(w_fc2 - thr))[:12]  # entries of fc2 closest to the final magnitude cut
trace, flips = [], []

def on_epoch(epoch, record):
    mk = prune.get_mask(learned.fc2)
    trace.append((np.abs(learned.fc2.weight.data).ravel() + mk.scores.data.ravel())[watch])
    print(f"epoch {epoch}: sparsity {record['sparsity']:.3f} test accuracy {record['test_accuracy']:.4f}")

trace.append(w_fc2[watch])
hist = prune.learned_mask_prune(learned, (xtr, ytr), prune.MaskPruning(SP, lr=1e-3, score_lr=1e-3),
                                TrainConfig(EPOCHS, np.random.default_rng(5)), eval_data=(xte, yte),
                                hooks=[EveryEpoch(on_epoch)])
learned_keep = {n: mk.keep for n, mk in prune.masks(learned).items()}
diff = sum(int((learned_keep[n] != mk.keep).sum()) for n, mk in prune.masks(mag).items())
final_keep = prune.select({n: np.abs(l.weight.data) for n, l in prune.prunable_layers(learned)}, SP, "global")
diff_scores = sum(int((learned_keep[n] != final_keep[n]).sum()) for n in learned_keep)
print(f"mask entries (of {sum(k.size for k in learned_keep.values()):,}) that differ from magnitude pruning of the "
      f"dense weights: {diff:,} (weights moved + scores moved); of the final weights: {diff_scores:,} (scores alone)")
curves, kept_end = np.array(trace), learned_keep["fc2"].ravel()[watch]   # (epochs + 1, 12), (12,)
plt.figure(figsize=(6, 3.5))
for j in range(len(watch)):   # solid blue: kept by the learned mask at the end; dashed red: pruned at the end
    first = j == np.flatnonzero(kept_end == kept_end[j])[0]
    plt.plot(range(len(curves)), curves[:, j], marker="o", ms=3, ls="-" if kept_end[j] else "--",
             color="C0" if kept_end[j] else "C3",
             label=(f"kept at the end ({int(kept_end.sum())})" if kept_end[j] else
                    f"pruned at the end ({int((~kept_end).sum())})") if first else None)
plt.axhline(thr, color="k", ls=":", lw=0.8, label="final magnitude cut (dense |W|)")
plt.gca().xaxis.set_major_locator(MaxNLocator(integer=True))
plt.xlabel("epoch (0: dense weights, s = 0)"); plt.ylabel("|W| + s")
plt.title(f"{len(watch)} fc2 mask scores near the cut, moved by Adam")
plt.legend(fontsize=8)
save(plt.gcf(), "prune_mask_scores_under_adam.png")
plt.show()

# %% [markdown]
# ## Step 6 — remove the pruned weights for good, and measure
#
# `prune.remove` bakes $W\odot m$ into the weight and detaches the mask. While a model is still being fine-tuned the
# mask must stay attached: Adam's moments keep moving the *stored* value of a just-pruned weight for a few steps, and
# only the mask keeps its *effective* value exactly 0 (`tests/test_prune.py::test_pruned_weights_stay_exactly_zero_through_adam`).
#
# Storage uses whichever is smallest per tensor: dense float32, **bitmask + values** ($\lceil n/8\rceil+4\,nnz$ bytes),
# or **CSR** ($4\,nnz$ + a 2-byte column index per value + row pointers). The bitmask costs 1 bit per entry whatever the
# sparsity; CSR costs 2 bytes per *kept* entry, so the bitmask wins up to ≈ 94 % sparsity and CSR beyond. The
# encodings are really built (`metrics.encode_sparse`) and round-trip exactly.

# %%
final = prune.remove(learned, inplace=False)
rep_d, rep_p = metrics.report(dense, input_shape), metrics.report(final, input_shape)
for k in ("parameters", "nonzeros", "sparse_macs", "dense_bytes", "sparse_bytes"):
    print(f"{k:13s} dense {rep_d[k]:>9,d}   pruned {rep_p[k]:>9,d}")
print("formats:", {n: metrics.encode_sparse(l.weight.data)["format"] for n, l in prune.prunable_layers(final)})
# the dense net: what each weight tensor costs beyond its 4 bytes per value (format flag + shape)
extra = {n: metrics.sparse_bytes(l.weight.data) - l.weight.data.nbytes for n, l in prune.prunable_layers(dense)}
print("dense net, formats:", {n: metrics.encode_sparse(l.weight.data)["format"] for n, l in prune.prunable_layers(dense)},
      f" sparse − dense bytes: {rep_d['sparse_bytes'] - rep_d['dense_bytes']} = {' + '.join(map(str, extra.values()))}",
      {n: tuple(l.weight.data.shape) for n, l in prune.prunable_layers(dense)})
print(f"pruned/dense bytes: {rep_p['sparse_bytes'] / rep_d['dense_bytes']:.3f}, test accuracy {evaluate(final, xte, yte)['accuracy']:.4f}")
fig, ax = plt.subplots(1, 2, figsize=(10, 3.2))
ax[0].hist(dense.fc1.weight.data.ravel(), bins=100, label="all weights"); ax[0].set_title("fc1 weights, dense")
w = final.fc1.weight.data.ravel(); ax[1].hist(w[w != 0], bins=100, color="C1", label="non-zero weights")
ax[1].set_title("fc1 non-zero weights after pruning")
for a in ax:
    a.set_xlabel("weight value"); a.set_ylabel("count"); a.legend(fontsize=8)
plt.tight_layout()
save(fig, "prune_weight_histograms.png")
plt.show()

# %% [markdown]
# **Why the dense net is 27 bytes *larger* in sparse storage than in dense storage.** `dense_bytes` counts 4 bytes per
# parameter and nothing else. `sparse_bytes` (`metrics.model_bytes`) counts what a reader needs to decode each weight
# tensor: the encoding chosen for it (dense float32, bitmask + values or CSR, whichever is smallest) plus **one flag
# byte** saying which encoding it is and **the tensor's shape as int32, 4 bytes per dimension**
# (`metrics.encoded_bytes`). The dense net has no zero weights, so every tensor is stored as dense float32 (a bitmask
# would add ⌈n/8⌉ bytes that mark nothing), and each of its three 2-D weight tensors (`fc1`, `fc2`, `fc3`, shapes
# printed above) costs its $4n$ value bytes plus $1 + 2\cdot 4 = 9$ bytes: $3\times 9 = 27$, the difference printed
# above (1,066,467 − 1,066,440). The biases are counted as plain float32 in both. The pruned net
# carries the same 27 bytes inside its total. (The integer artifact of notebook 07 records the same facts, each
# tensor's encoding and shape, as fields of its JSON header: `docs/FORMAT.md`, section 4.)

# %% [markdown]
# The benchmark results on Fashion-MNIST that belong here (the full protocol, every configuration, what met its goal and what did not) are in the appendix notebook `08_benchmark_results` and in `docs/RESULTS.md`.

# %% [markdown]
# ## Things to try, and questions
#
# 1. **Change λ and watch m.** In the cell that runs the literal method, try λ = 1 and λ = 10, and print `pm.data`.
#    Does any entry of $m$ go to 0? What happens to $W$?
# 2. **Clip the mask.** Clip $m$ to $[0, 1]$ after every Adam step (`np.clip(pm.data, 0, 1, out=pm.data)`), as a
#    relaxed mask would be. Does the literal method now give sparsity?
# 3. **Predict before you run.** Before running the one-step-by-hand cell, predict from $g\odot W$ which scores go up
#    and which go down. With $\alpha = 0.2$ instead of 0.05, which entries swap in and out of the mask?
#    **Question:** in step 5, why do we count the differing mask entries twice?
