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
# # Symmetric quantization — 对称量化, §3.2.1
#
# Quantisation stores each weight (and each activation) as a small integer $q$ plus one shared real step $\Delta$, so
# that $x \approx \Delta\,q$. §3.2.1 of the document gives the symmetric version in six steps; this notebook follows
# them on an eight-number vector first, then on a real layer, and ends with the integer model that really stores
# $n$-bit numbers.
#
# | step | document | code |
# | --- | --- | --- |
# | 1 | $r_{\max} = \max\lvert x\rvert$ | `quantize.functional.symmetric_delta` |
# | 2 | $\Delta = r_{\max}/(2^{n-1}-1)$ | `symmetric_delta`, observers in `quantize.observers` |
# | 3 | $q(x) = \mathrm{round}(x/\Delta)$ | `symmetric_quantize` (clipped), `symmetric_dequantize` ($\Delta q$) |
# | 4 | Adam minimises $\mathcal L(\Delta)=\mathcal L_{\text{task}}(q(W), q(A))$ | `WeightQuantizer`, `ActivationQuantizer` (STE + LSQ gradient), `train_quantized` |
# | 5 | Adam adapts the step of $\Delta$ | `optim.Adam` on the Parameter $\log\Delta$ |
# | 6 | store the integers | `quantize.convert` → `IntegerModel` (packed $n$-bit weights, integer inference) |
#
# **Where the document is silent or imprecise, and what we do**
#
# * Step 3 writes $q(x)=\mathrm{round}(x/\Delta)$ with no clipping. That is enough while $\Delta$ comes from
#   $r_{\max}$, but step 4 *learns* $\Delta$; as soon as it is smaller than $r_{\max}/(2^{n-1}-1)$ the largest values
#   round to integers that do not fit in $n$ bits. We always clip to $[-(2^{n-1}-1),\,2^{n-1}-1]$ (shown below).
# * Step 4's loss goes through $\mathrm{round}$, whose derivative is zero almost everywhere, so "Adam optimises
#   $\Delta$" (使用Adam优化算法优化量化间隔 $\Delta$) needs a surrogate gradient. We use the straight-through estimator for $x$ and the LSQ gradient for
#   $\Delta$ (Esser et al. 2020), explained in notebook 05.
# * $\Delta$ must stay positive; the document does not say how. We learn $\log\Delta$, so every value Adam produces is
#   a valid step, and Adam's step (≈ the learning rate, in parameter units) becomes a *relative* change of $\Delta$.
# * Rounding: we use round-half-to-even (`np.rint`, like `torch.round`); 四舍五入 (half away from zero) differs only
#   on exact ties.
# * The document says nothing about how activations are calibrated, nor which layers are quantised: we quantise
#   every weight layer and every ReLU output, and the (normalised) input at 8 bits.

# %%
import os, json, copy, runpy
from pathlib import Path
import numpy as np
from minicompress.check import check
import matplotlib.pyplot as plt
ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
from minicompress import models, optim
from minicompress.data import load_dataset
from minicompress.train import EveryStep, TrainConfig, fit, evaluate
from minicompress import quantize as Q
from minicompress.quantize.functional import symmetric_delta

FAST = os.environ.get("MINICOMPRESS_FAST") == "1"
FIGURES = os.environ.get("MINICOMPRESS_FIGURES")  # if set, a folder to also save the figures in

def save(fig, name):
    if FIGURES:
        fig.savefig(Path(FIGURES) / name, dpi=110, bbox_inches="tight")

np.set_printoptions(precision=4, suppress=True, linewidth=110)
print("fast mode (digits)" if FAST else "full mode (Fashion-MNIST)")

# %% [markdown]
# ## Steps 1–3 on a vector you can read
#
# Eight numbers, quantised to $n = 4$ bits: the integers go from $-7$ to $7$.

# %%
x = np.array([-0.70, -0.33, -0.05, 0.0, 0.12, 0.26, 0.49, 0.63], np.float32)
n = 4
r_max = np.abs(x).max()                       # step 1
delta = r_max / (2 ** (n - 1) - 1)            # step 2
q = np.rint(x / delta)                        # step 3
print("r_max =", r_max, "  Δ = r_max / 7 =", delta)
print("x / Δ      ", x / delta)
print("q          ", q.astype(int))
print("Δ·q        ", delta * q)
print("error x−Δq ", x - delta * q, "  (never more than Δ/2 =", delta / 2, ")")
q_lib, d_lib = Q.symmetric_quantize(x, n)
assert np.array_equal(q_lib, q) and np.isclose(d_lib.item(), delta)

# %% [markdown]
# **Exercise — `symmetric_delta`.** Steps 1–2 of §3.2.1. Write the body of the function
# (in the student edition it only raises `NotImplementedError`); the docstring states the equation and the shapes.
# The cell after it checks your function against numbers worked out by hand.

# %%
def symmetric_delta(w, n):
    """§3.2.1 steps 1–2, a number: Δ = r_max / (2^(n−1) − 1) with r_max = max |w| (w any shape)."""
    ### BEGIN SOLUTION
    return np.abs(w).max() / (2 ** (n - 1) - 1)
    ### END SOLUTION

# %%
check("symmetric_delta", symmetric_delta)

# %% [markdown]
# ### Why step 3 needs a clip once $\Delta$ is learned
#
# Suppose Adam has shrunk the step to $\Delta = 0.06$ (it often does: a finer grid for the many small values is worth
# more than representing the one largest value exactly). The document's formula then produces codes that do not
# fit in 4 bits; the clipped quantiser saturates them at ±7.

# %%
v = x / np.float32(0.06)                                   # float32, as the library computes
q_doc, _ = Q.symmetric_quantize(x, n, delta=0.06, clip=False)   # np.rint: a tie goes to the even integer
q_half_up = (np.sign(v) * np.floor(np.abs(v) + 0.5)).astype(int)   # 四舍五入: a tie goes away from zero
q_clip, _ = Q.symmetric_quantize(x, n, delta=0.06)
print("x/Δ                  ", np.round(v, 4))
print("np.rint(x/Δ)         ", q_doc, " (library, round half to even)")
print("四舍五入(x/Δ)        ", q_half_up, " (the document, round half up)")
print(f"largest |code| {np.abs(q_doc).max()}: more than the 4-bit range ±7, a symmetric code that large needs "
      f"{int(np.ceil(np.log2(np.abs(q_doc).max() + 1))) + 1} bits")
print("clip(np.rint(x/Δ),±7)", q_clip)

# %% [markdown]
# Look at the last entry: $0.63/0.06 = 10.5$ exactly (in float32 too), a **tie**. The document says 四舍五入, which
# rounds a tie up, to 11. NumPy's `np.rint` (and `np.round`, and Python's `round`) rounds a tie to the *even*
# integer, 10 — the library uses `np.rint`, as PyTorch and integer hardware do, because rounding half to even has no
# upward bias on average. The two rules differ only at exact ties, which are rare with trained weights but common in
# hand-made examples; the exercise `round_half_up` below writes the document's rule. Either way, −12 does not fit
# in 4 bits, and the clip is needed.

# %% [markdown]
# **Exercise — `round_half_up`.** The document says 四舍五入: a tie such as 10.5 goes *up* (away from zero) to 11. NumPy's `np.rint` and `np.round`, and Python's `round`, send a tie to the even integer (10.5 → 10) — that is why `np.rint` gave 10 for $0.63/0.06 = 10.5$ above. Write the document's rule. Write the body of the function
# (in the student edition it only raises `NotImplementedError`); the docstring states the equation and the shapes.
# The cell after it checks your function against numbers worked out by hand.

# %%
def round_half_up(x):
    """四舍五入, element-wise: the nearest integer, a tie (….5) rounded away from zero
    (2.5 → 3, −2.5 → −3). Returns floats of x's shape. (np.rint and np.round do *not* do this.)
    """
    ### BEGIN SOLUTION
    return np.sign(x) * np.floor(np.abs(x) + 0.5)
    ### END SOLUTION

# %%
check("round_half_up", round_half_up)

# %% [markdown]
# **Exercise — `symmetric_quantize`.** Step 3 with the clip that a learned $\Delta$ needs, rounding as the document does (四舍五入). Write the body of the function
# (in the student edition it only raises `NotImplementedError`); the docstring states the equation and the shapes.
# The cell after it checks your function against numbers worked out by hand.

# %%
def symmetric_quantize(w, delta, n):
    """§3.2.1 step 3: q = clip(四舍五入(w/Δ), −(2^(n−1) − 1), 2^(n−1) − 1), integers of w's shape
    (round half away from zero, as in round_half_up; write it inline so this function stands alone).
    """
    ### BEGIN SOLUTION
    v = w / delta
    q = np.sign(v) * np.floor(np.abs(v) + 0.5)
    Q = 2 ** (n - 1) - 1
    return np.clip(q, -Q, Q).astype(np.int64)
    ### END SOLUTION

# %%
check("symmetric_quantize", symmetric_quantize)

# %% [markdown]
# ## A real layer: the first weight matrix of LeNet-300-100
#
# The dense network trained for 10 epochs on Fashion-MNIST (in fast mode: a few epochs on the 8×8 digits). Its first
# layer's weights are bell-shaped with long tails; the grid of a 4-bit symmetric quantiser is drawn over the
# histogram. With min–max, $\Delta$ is set by the very largest weight, and most weights fall into the few central bins.

# %%
if FAST:
    (xtr, ytr), (xte, yte) = load_dataset("digits")
    rng = np.random.default_rng(0)
    dense = models.lenet300(8, rng=rng)
    fit(dense, optim.Adam(dense.parameters(), lr=1e-3), (xtr, ytr), TrainConfig(10, rng))
else:
    dense_model = runpy.run_path(str(ROOT / "benchmarks" / "common.py"))["dense_model"]  # cached dense nets
    (xtr, ytr), (xte, yte) = load_dataset("fashion-mnist")
    dense = dense_model("lenet300", progress=False)
print("float test accuracy:", evaluate(dense, xte, yte)["accuracy"])
W = dense.fc1.weight.data
print("fc1 weight", W.shape, " r_max =", np.abs(W).max(), " std =", W.std())

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
for ax, method in zip(axes, ("minmax", "mse")):
    d, _ = Q.observe(W, 4, "signed", method)
    d = d.item()
    ax.hist(W.ravel(), bins=200, color="0.6", log=True, label="fc1 weights")
    for k in range(-7, 8):
        ax.axvline(k * d, color="C3", lw=0.8, alpha=0.8, label="grid points kΔ" if k == -7 else None)
    ax.set_title(f"fc1 weights, 4-bit grid from {method}: Δ = {d:.4f}")
    ax.set_xlabel("weight value"); ax.set_ylabel("count (log)"); ax.legend(fontsize=8)
plt.tight_layout()
save(plt.gcf(), "quant_weight_histogram_grid.png")
plt.show()

# %% [markdown]
# ### Quantisation error against bits, for four ways of choosing $\Delta$
#
# Mean squared error $\langle (W-\Delta q)^2\rangle$ of the same weight matrix. Min–max is the document's rule;
# the percentile rule ignores the top 0.01 % of $\lvert W\rvert$; the MSE search tries clip ranges $\alpha\,r_{\max}$
# and keeps the best; LSQ's initialisation is $2\langle\lvert W\rvert\rangle/\sqrt{Q_P}$. Each extra bit divides the
# error by about 4 (the step halves, and uniform rounding noise is $\Delta^2/12$); at low bit widths, clipping the
# tails pays.

# %%
bits = list(range(2, 9))
errors = {}
for method in ("minmax", "percentile", "mse", "lsq"):
    errors[method] = []
    for b in bits:
        d, _ = Q.observe(W, b, "signed", method)
        q, _ = Q.symmetric_quantize(W, b, delta=d)
        errors[method].append(Q.quantization_mse(W, Q.symmetric_dequantize(q, d)))
plt.figure(figsize=(6, 3.8))
for method, e in errors.items():
    plt.semilogy(bits, e, "o-", label=method)
plt.xlabel("bits n"); plt.ylabel("MSE of fc1 weights"); plt.legend(); plt.grid(alpha=0.3)
plt.title("quantisation error vs bits")
plt.tight_layout()
save(plt.gcf(), "quant_error_vs_bits.png")
plt.show()
for method, e in errors.items():
    print(f"{method:10s}", "  ".join(f"{v:.2e}" for v in e))

# %% [markdown]
# ### Per tensor or per output channel
#
# One $\Delta$ for the whole matrix, or one per output neuron (row). Rows with small weights get a finer grid.

# %%
for b in (8, 4, 2):
    qt, dt = Q.symmetric_quantize(W, b)
    qc, dc = Q.symmetric_quantize(W, b, axis=0)
    print(f"{b}-bit  per-tensor MSE {Q.quantization_mse(W, dt * qt):.3e}   per-channel MSE "
          f"{Q.quantization_mse(W, dc * qc):.3e}   ({len(dc.ravel())} steps instead of 1)")

# %% [markdown]
# ## Steps 4–5: Adam learns $\Delta$ against the task loss
#
# We quantise every weight and activation of the trained network to 2 bits (ternary weights $\{-1,0,1\}\cdot\Delta$,
# activations $\{0,1,2,3\}\cdot\Delta$). With the document's min–max $\Delta$ the network is dead on Fashion-MNIST:
# $\Delta_w = r_{\max}$, so every weight smaller than $r_{\max}/2$ — nearly all of them — rounds to 0, and no
# gradient can bring it back. Where to *start* matters, so we start from the MSE-optimal $\Delta$ of each tensor
# (observers above) and then let Adam change only the steps (the weights stay frozen: post-training quantisation with a
# learned $\Delta$). The Parameters are $\log\Delta$; the gradient reaching them is LSQ's (notebook 05). The task
# loss falls and each $\Delta$ moves away from its starting value.

# %%
calib = xtr[np.random.default_rng(0).choice(len(xtr), min(1000, len(xtr)), replace=False)]
minmax = Q.prepare(copy.deepcopy(dense), 2, 2, example_input=xtr)
Q.calibrate(minmax, calib)
zero_frac = (minmax.fc1.effective_weight() == 0).mean()
print(f"2-bit, min–max Δ: test accuracy {evaluate(minmax, xte, yte)['accuracy']:.4f}, "
      f"{100 * zero_frac:.1f} % of fc1's weights round to 0")
model = Q.prepare(copy.deepcopy(dense), 2, 2, example_input=xtr)
Q.calibrate(model, calib, method="mse", weight_method="mse")
zero_frac = (model.fc1.effective_weight() == 0).mean()
print(f"2-bit, MSE-optimal Δ: test accuracy {evaluate(model, xte, yte)['accuracy']:.4f}, "
      f"{100 * zero_frac:.1f} % of fc1's weights round to 0")
wq, aq = Q.quantizers(model)
tracked = [(f"{n}.Δ_w", q) for n, _, q in wq] + [(n + ".Δ", q) for n, q in aq if n != "quant_input"]
trajectory, losses = {k: [q.delta[0]] for k, q in tracked}, []

def record(step):
    for k, q in tracked:
        trajectory[k].append(q.delta[0])

n_train = 3000 if FAST else 20000
hist = Q.train_quantized(model, (xtr[:n_train], ytr[:n_train]),
                         TrainConfig(3 if FAST else 1, np.random.default_rng(1), batch_size=128), lr_quant=1e-2,
                         hooks=[EveryStep(record)])
print("after Adam on log Δ:  test accuracy", evaluate(model, xte, yte)["accuracy"])

# %%
# the loss on a fixed batch along the way is recomputed cheaply by replaying the recorded Δ's
probe = (xtr[:1000], ytr[:1000])
steps = np.arange(len(next(iter(trajectory.values()))))
saved = {k: q.log_delta.data.copy() for k, q in tracked}
loss_curve = []
for s in steps[:: max(1, len(steps) // 40)]:
    for k, q in tracked:
        q.log_delta.data[...] = np.log(trajectory[k][s])
    loss_curve.append((s, evaluate(model, *probe)["loss"]))
for k, q in tracked:
    q.log_delta.data[...] = saved[k]

fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
for k, tr in trajectory.items():
    axes[0].plot(np.array(tr) / tr[0], label=k)
axes[0].set_xlabel("Adam step"); axes[0].set_ylabel("Δ / Δ_start"); axes[0].legend(fontsize=7)
axes[0].set_title("Δ under Adam (relative to its MSE-optimal start)")
axes[1].plot(*zip(*loss_curve), "o-")
axes[1].set_xlabel("Adam step"); axes[1].set_ylabel("loss on 1000 training images")
axes[1].set_title("task loss, 2-bit, weights frozen")
plt.tight_layout()
save(plt.gcf(), "quant_delta_trajectory.png")
plt.show()

# %% [markdown]
# **Exercise — `ste_grad`.** Rounding has derivative 0 almost everywhere, so Adam could never move a weight through it; the straight-through estimator passes $\partial L/\partial\hat w$ through unchanged inside the range and blocks it where the value was clipped. Write the body of the function
# (in the student edition it only raises `NotImplementedError`); the docstring states the equation and the shapes.
# The cell after it checks your function against numbers worked out by hand.

# %%
def ste_grad(w, delta, n, grad_out):
    """Straight-through estimator (§3.2.1 steps 4–5): ŵ = Δ·clip(round(w/Δ), −Q, Q), Q = 2^(n−1) − 1,
    is treated as ŵ = w inside the range, so

        ∂L/∂w = ∂L/∂ŵ  where −Q ≤ w/Δ ≤ Q,   0 where w/Δ is clipped.

    grad_out = ∂L/∂ŵ (shape of w). Returns ∂L/∂w, shape of w.
    """
    ### BEGIN SOLUTION
    Q = 2 ** (n - 1) - 1
    inside = np.abs(w / delta) <= Q
    return grad_out * inside
    ### END SOLUTION

# %%
check("ste_grad", ste_grad)

# %% [markdown]
# ## Step 6: store the integers
#
# `convert` turns the fake-quantised model into an `IntegerModel`: the weights become integer codes, bit-packed
# (2 bits: four per byte), biases int32, and inference runs in integer arithmetic (notebook 05 traces one neuron).
# It agrees with the fake-quantised model prediction for prediction, and it is really small:

# %%
im = Q.convert(model)
print(im)
from minicompress.train import predict
agree = (im.predict(xte) == predict(model, xte).argmax(1)).mean()
print(f"agreement with the fake-quantised model: {100 * agree:.2f} %   integer accuracy "
      f"{100 * (im.predict(xte) == yte).mean():.2f} %")
print(f"stored bytes {im.nbytes():,} vs float32 {im.float_bytes:,}  → {im.nbytes() / im.float_bytes:.4f} "
      f"(2/32 = {2 / 32:.4f})")

# %% [markdown]
# **Exercise — `pack_bits`.** How the integer model stores its codes: $\lceil N\cdot n/8\rceil$ bytes for $N$ codes of $n$ bits. Write the body of the function
# (in the student edition it only raises `NotImplementedError`); the docstring states the equation and the shapes.
# The cell after it checks your function against numbers worked out by hand.

# %%
def pack_bits(q, n):
    """Storage: N integer codes q (1-D) of n bits each, written as their n-bit two's-complement
    fields (the n lowest bits of q), most significant bit first, concatenated and cut into bytes;
    the last byte is padded with zeros. Returns a uint8 array of ⌈N·n/8⌉ bytes.
    Example: n = 4, q = [−1, 3] → 1111 0011 → [0xF3].
    """
    ### BEGIN SOLUTION
    u = np.asarray(q).astype(np.int64) & ((1 << n) - 1)        # two's complement: the low n bits
    shifts = np.arange(n - 1, -1, -1)                          # MSB first
    bits = ((u[:, None] >> shifts) & 1).astype(np.uint8)       # (N, n)
    return np.packbits(bits.ravel())
    ### END SOLUTION

# %%
check("pack_bits", pack_bits)

# %% [markdown]
# The benchmark results on Fashion-MNIST that belong here (the full protocol, every configuration, what met its goal and what did not) are in the appendix notebook `08_benchmark_results` and in `docs/RESULTS.md`.

# %% [markdown]
# ## Things to try, and questions
#
# 1. **Ties.** Find a weight vector and a Δ for which `np.rint` and 四舍五入 give different codes (the cell of step 3
#    has one). How often do exact ties occur in `fc1`'s weights at 4 bits with the min–max Δ?
# 2. **No clip.** Learn Δ for 2 bits with `clip=False` in your head: what happens to the codes of the largest weights
#    once Adam shrinks Δ, and how many bits would they need?
# 3. **Pack and count.** Pack the 4-bit codes of `fc1` with your `pack_bits` and compare the byte count with
#    $\lceil N\cdot 4/8\rceil$ and with the float32 size.
#    **Question:** why does the straight-through estimator pass the gradient *unchanged* inside the range?
