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
# # Beyond the document: rounding for the layer (AdaRound, GPTQ), 2:4 sparsity, mixed precision
#
# The document's quantiser (§3.2.1) rounds every weight to the nearest point of the grid $\Delta\cdot q$ and lets Adam
# learn $\Delta$ (steps 4–5). Rounding to nearest is the best choice for each weight *alone*. It is not the best
# choice for the layer: the errors of the weights add up in the layer's output, and at 2–3 bits they add up to a lot.
# This notebook follows two post-training methods from the literature. Both keep $\Delta$ and choose, for each
# weight, whether to round down or up, so that the *layer's output* on about a thousand calibration images changes
# as little as possible. The weights are not retrained.
#
# | method | how it chooses | code |
# | --- | --- | --- |
# | round-to-nearest | each weight alone: $q=\mathrm{clip}(\mathrm{round}(w/\Delta))$ | `quantize.functional.grid_code` |
# | GPTQ (Frantar et al. 2022) | one column at a time; the weights not yet rounded absorb the error | `quantize.gptq` |
# | AdaRound (Nagel et al. 2020) | Adam learns a continuous "round up" variable per weight, pushed to 0 or 1 | `quantize.adaround` |
#
# Both need the same thing from the data, the matrix $H$ below (`quantize.layerwise`). The rounded model goes through
# the same integer model and artifact file as every other model of the library. Sections 6 and 7 leave the document
# in two other directions: N:M (2:4) sparsity with a learned mask, and one bit width per layer under a byte budget.

# %%
import os, json, copy, runpy, itertools, time
from pathlib import Path
import numpy as np
from minicompress.check import check
import matplotlib.pyplot as plt
ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
from minicompress import models, optim
from minicompress.data import load_dataset
from minicompress.train import TrainConfig, fit, evaluate
from minicompress import quantize as Q
from minicompress.quantize.adaround import AdaRoundConfig, adaround, adaround_codes
from minicompress.quantize.adaround import rectified_sigmoid as lib_rectified_sigmoid
from minicompress.quantize.adaround import rounding_regularizer as lib_rounding_regularizer
from minicompress.quantize.gptq import gptq, gptq_codes, inverse_cholesky_upper
from minicompress.quantize.layerwise import (input_gram, layer_inputs, nearest_codes,
                                             reconstruction_error, weight_grid, weight_matrix)

FAST = os.environ.get("MINICOMPRESS_FAST") == "1"
FIGURES = os.environ.get("MINICOMPRESS_FIGURES")  # if set, a folder to also save the figures in

def save(fig, name):
    if FIGURES:
        fig.savefig(Path(FIGURES) / name, dpi=110, bbox_inches="tight")

np.set_printoptions(precision=4, suppress=True, linewidth=110)
print("fast mode (digits)" if FAST else "full mode (Fashion-MNIST)")

# %% [markdown]
# ## 1. What both methods minimise: the error of the layer's output
#
# A Linear layer computes $Y = XW^\top$: $X$ holds one input per row (rows × K), $W$ is the (O × K) weight matrix. A
# convolution is the same product over image patches (im2col, notebook 01), so everything below holds for it too.
# Quantising $W$ to $\hat W$ changes the output by $X(W-\hat W)^\top$. With $e_o = w_o - \hat w_o$ the error of
# output row $o$, the mean squared change of the output is a quadratic form:
#
# $$\frac{1}{\text{rows}}\,\lVert XW^\top - X\hat W^\top\rVert^2 \;=\; \sum_o e_o\,H\,e_o^\top,
# \qquad H = X^\top X/\text{rows}\quad(K\times K).$$
#
# If the inputs were uncorrelated ($H$ diagonal), each weight would count alone and rounding to nearest would be
# best. Real inputs are correlated: neighbouring pixels, or the features of a ReLU layer. Then an error on one weight
# can be partly cancelled by an error of the opposite effect on a correlated one.
#
# A 1 × 3 layer shows it. Take $H=\begin{pmatrix}2&1&0\\1&2&1\\0&1&2\end{pmatrix}$, $w=(0.4,\,0.3,\,0.2)$ and
# $\Delta = 1$. Each weight can round down (to 0) or up (to 1): eight choices in all.

# %%
w = np.array([[0.4, 0.3, 0.2]])
H = np.array([[2.0, 1.0, 0.0], [1.0, 2.0, 1.0], [0.0, 1.0, 2.0]])
for choice in itertools.product([0, 1], repeat=3):
    q = np.array([choice], float)
    tag = "  ← round-to-nearest" if choice == (0, 0, 0) else ""
    print(f"q = {choice}: output error (w − q) H (w − q)ᵀ = {reconstruction_error(w, q, H):.2f}{tag}")

# %% [markdown]
# Rounding to nearest gives $(0,0,0)$ with error 0.94. The best choice, $(0,1,0)$, rounds $w_2 = 0.3$ *up* and has
# error 0.54. Trying every choice costs $2^K$ evaluations per output row; for the 784 inputs of LeNet-300-100's first
# layer that is out of the question. GPTQ and AdaRound are two ways to find a good choice without trying them all.
#
# ## 2. GPTQ: round one column, let the others absorb the error
#
# **The optimal brain quantizer step.** Round one weight, $w_1 \to q_1$. The weights not yet rounded (the set $F$)
# may still move. The move that minimises the output error is
#
# $$\delta_F = -\frac{w_1 - q_1}{[H_F^{-1}]_{11}}\,[H_F^{-1}]_{F,1},$$
#
# where $H_F$ is $H$ restricted to $F$ (including weight 1). Then weight 1 leaves $F$ and the next one is rounded.
# On the 1 × 3 layer, $H^{-1} = \tfrac14\begin{pmatrix}3&-2&1\\-2&4&-2\\1&-2&3\end{pmatrix}$:

# %%
Hinv = np.linalg.inv(H)
w_now = w.copy()
q1 = int(np.round(w_now[0, 0]))
err1 = w_now[0, 0] - q1
w_now[0, 1:] -= err1 * Hinv[0, 1:] / Hinv[0, 0]
print(f"column 1: q₁ = {q1}, error {err1:.2f} → w₂ = {w_now[0, 1]:.4f} (17/30), w₃ = {w_now[0, 2]:.4f} (1/15)")
H23inv = np.linalg.inv(H[1:, 1:])            # the Hessian of the weights still free: H restricted to {2, 3}
q2 = int(np.round(w_now[0, 1]))
err2 = w_now[0, 1] - q2
w_now[0, 2] -= err2 * H23inv[0, 1] / H23inv[0, 0]
q3 = int(np.round(w_now[0, 2]))
print(f"column 2: q₂ = {q2} (round-to-nearest gave 0), error {err2:.4f} → w₃ = {w_now[0, 2]:.4f}")
print(f"column 3: q₃ = {q3}")
print("GPTQ by hand:   ", (q1, q2, q3))
print("library gptq_codes:", gptq_codes(w, H, np.array([[1.0]]), -7, 7, damp=0.0).astype(int))

# %% [markdown]
# Here GPTQ finds the best of the eight choices. That is not guaranteed in general: it is greedy, one column after
# the other, and never revisits a column.
#
# **Exercise — `gptq_column_update`.** One step for a whole column: every row of $W$ rounds its first weight, and the
# other weights of the row take the update above. $H^{-1}$ is the inverse Hessian of the weights still free
# (column 0 is the one being rounded). Write the body of the function (in the student edition it only raises
# `NotImplementedError`); the docstring states the equation and the shapes. The cell after it checks your function
# against numbers worked out by hand.

# %%
def gptq_column_update(w, h_inv, delta, q_lo, q_hi):
    """One GPTQ step. w: (O, K) weights still free, column 0 to be rounded; h_inv: (K, K) inverse
    Hessian of these K weights; Δ > 0; codes in [q_lo, q_hi].

        q      = clip(round(w[:, 0] / Δ), q_lo, q_hi)                       shape (O,)
        w_rest = w[:, 1:] − (w[:, 0] − Δ·q) · H⁻¹[0, 1:] / H⁻¹[0, 0]      shape (O, K − 1)

    Returns (q, w_rest)."""
    ### BEGIN SOLUTION
    q = np.clip(np.rint(w[:, 0] / delta), q_lo, q_hi)
    err = w[:, 0] - delta * q
    return q, w[:, 1:] - np.outer(err, h_inv[0, 1:] / h_inv[0, 0])
    ### END SOLUTION

# %%
check("gptq_column_update", gptq_column_update)

# %% [markdown]
# **GPTQ's three changes.** The OBQ step needs $H_F^{-1}$ for a set $F$ that shrinks by one weight each step, and
# in OBQ each row picks its own order. GPTQ makes it cheap:
#
# 1. every row rounds its columns in the same order $1, 2, \dots, K$, so all rows share the same $H_F$ and one
#    update handles a whole column;
# 2. the rows $[H_F^{-1}]_{i,F}/\sqrt{[H_F^{-1}]_{ii}}$ for $F=\{i,\dots,K\}$ are the rows of the **upper Cholesky
#    factor** $U$ of $H^{-1}$ ($H^{-1}=U^\top U$). One Cholesky factorisation replaces the $K$ inverses, and the
#    step becomes $\text{err} = (w_i - \Delta q_i)/U_{ii}$, $w_j \mathrel{-}= \text{err}\cdot U_{ij}$ for $j>i$;
# 3. the updates can be applied to far columns in blocks (lazy batches), for memory traffic on a GPU. It gives the
#    same numbers up to float rounding, and `quantize.gptq` keeps the plain loop.
#
# $H$ is only positive semi-definite (a pixel that is always the same, fewer images than inputs), so GPTQ first
# adds $\lambda I$ with $\lambda = 0.01\cdot\mathrm{mean}(\mathrm{diag}\,H)$. The check of change 2 on our $H$:

# %%
U = inverse_cholesky_upper(H)
print("U (upper, H⁻¹ = UᵀU):\n", U)
for i in range(3):
    g = np.linalg.inv(H[i:, i:])
    print(f"row {i + 1}: U[i, i:] = {U[i, i:]},  H_F⁻¹[0]/√H_F⁻¹[0,0] = {g[0] / np.sqrt(g[0, 0])}")

# %% [markdown]
# ## 3. AdaRound: learn, with Adam, which way each weight rounds
#
# AdaRound writes every weight as its lower grid point plus a learned fraction of a step:
#
# $$\tilde W = \Delta\cdot\mathrm{clip}\big(\lfloor W/\Delta\rfloor + h(V),\; q_{\min},\, q_{\max}\big),
# \qquad h(V) = \mathrm{clip}\big(\sigma(V)(\zeta-\gamma)+\gamma,\;0,\;1\big),\quad \zeta=1.1,\ \gamma=-0.1.$$
#
# $h$ is the **rectified sigmoid**: a sigmoid stretched to $(-0.1,\,1.1)$ and clipped, so that it reaches 0 and 1
# exactly with a finite $V$. At the end, $h\ge\tfrac12$ (that is $V\ge 0$) rounds up and $h<\tfrac12$ rounds down.
#
# **Exercise — `rectified_sigmoid`.** Write the body of the function (in the student edition it only raises
# `NotImplementedError`); the docstring states the equation and the shapes. The cell after it checks your function
# against numbers worked out by hand.

# %%
def rectified_sigmoid(V):
    """h(V) = clip(σ(V)·(ζ − γ) + γ, 0, 1) with ζ = 1.1, γ = −0.1, σ(V) = 1/(1 + e^(−V)).
    V: an array of any shape; returns h of the same shape."""
    ### BEGIN SOLUTION
    zeta, gamma = 1.1, -0.1
    return np.clip(1 / (1 + np.exp(-V)) * (zeta - gamma) + gamma, 0, 1)
    ### END SOLUTION

# %%
check("rectified_sigmoid", rectified_sigmoid)

# %% [markdown]
# The objective of one layer adds a **rounding regulariser** to the output error:
#
# $$L(V) = \sum_o (w_o-\tilde w_o)\,H\,(w_o-\tilde w_o)^\top + \lambda\, f_{\text{reg}}(V),\qquad
# f_{\text{reg}} = \sum_{ij} 1 - |2h(V_{ij}) - 1|^{\beta}.$$
#
# $f_{\text{reg}}$ is 0 only when every $h$ is exactly 0 or 1, that is, a true rounding. $\beta$ is annealed. A large
# $\beta$ (20) makes $f_{\text{reg}}$ flat except very close to 0 and 1, so $h$ moves freely to reduce the output
# error. A small $\beta$ (2) pulls every $h$ towards its nearer end. AdaRound first runs a warm-up (20 % of the
# iterations) with $\lambda = 0$, then lowers $\beta$ from 20 to 2.

# %%
hh = np.linspace(0, 1, 201)
VV = np.linspace(-6, 6, 241)
fig, ax = plt.subplots(1, 2, figsize=(10, 3.4))
ax[0].plot(VV, lib_rectified_sigmoid(VV), label="h(V), rectified")
ax[0].plot(VV, 1 / (1 + np.exp(-VV)), "--", label="σ(V)")
ax[0].set_xlabel("V"); ax[0].set_ylabel("h"); ax[0].legend(); ax[0].set_title("h reaches 0 and 1 at |V| ≈ 2.4")
for beta in (20, 8, 2):
    ax[1].plot(hh, 1 - np.abs(2 * hh - 1) ** beta, label=f"β = {beta}")
ax[1].set_xlabel("h"); ax[1].set_ylabel("1 − |2h − 1|^β"); ax[1].legend()
ax[1].set_title("the regulariser of one weight")
fig.tight_layout(); save(fig, "10_rectified_sigmoid.png"); plt.show()

# %% [markdown]
# **Exercise — `rounding_regularizer`.** The value and its derivative. The derivative has a factor 2 from the chain
# rule ($\mathrm d(2h-1)/\mathrm dh = 2$). Write the body of the function (in the student edition it only raises
# `NotImplementedError`); the docstring states the equation and the shapes. The cell after it checks your function
# against numbers worked out by hand.

# %%
def rounding_regularizer(h, beta):
    """f_reg = Σ (1 − |2h − 1|^β) (a number) and ∂f_reg/∂h = −2β·|2h − 1|^(β−1)·sign(2h − 1)
    (the shape of h). Returns (f_reg, grad)."""
    ### BEGIN SOLUTION
    d = 2 * h - 1
    return float(np.sum(1 - np.abs(d) ** beta)), -2 * beta * np.abs(d) ** (beta - 1) * np.sign(d)
    ### END SOLUTION

# %%
check("rounding_regularizer", rounding_regularizer)

# %% [markdown]
# **AdaRound on the 1 × 3 layer.** $V$ starts where $h(V)$ equals the fractional part of $w/\Delta$, so
# $\tilde W = W$ at the start and the output error is 0. The gradient of $L$ is written by hand in
# `quantize.adaround.adaround_objective` (checked against finite differences in `tests/test_ptq.py`). Adam
# (`optim.Adam`) updates $V$.
#
# A word on $\lambda$. The paper's $\lambda = 0.01$ is meant for real layers, where one weight's share of the output
# error is tiny (of order $\Delta^2 H_{ii}$, about $10^{-4}$). In this toy layer it is of order 1, so we take
# $\lambda = 1$ to give the regulariser the same relative weight.

# %%
hist = []
codes_ada = adaround_codes(w, H, np.array([[1.0]]), -7, 7,
                           AdaRoundConfig(iterations=300, reg_weight=1.0), history=hist)
print("AdaRound codes:", codes_ada.astype(int), f" output error {reconstruction_error(w, codes_ada, H):.2f}")
print("iteration   output error   f_reg (β = 2)")
for t, rec, freg in hist:
    print(f"{t:9d}   {rec:12.4f}   {freg:10.4f}")

# %% [markdown]
# At the start $h = (0.4, 0.3, 0.2)$ reproduces $w$ exactly. During the warm-up the output error stays near 0.
# Once the regulariser starts, the $h$ are pushed towards 0 or 1, and the output error rises to the cost of a real
# rounding. AdaRound also ends at $(0, 1, 0)$, the best of the eight choices.
#
# ## 4. On the real networks
#
# Sequential, as in both papers: layer $\ell$'s inputs $X$ come from the calibration images run through the model
# *with layers $1..\ell-1$ already quantised*, so each layer also makes up for part of the error before it. The
# chosen codes are written back as the weight itself, $W\leftarrow\Delta q$. Then the layer's quantiser returns
# exactly those codes, and `quantize.convert` and the artifact file carry them.
#
# A short live run. LeNet-300-100 at 3 bits, one $\Delta$ per output channel from the MSE search, 8-bit activations,
# 1000 calibration images. For each layer, the output error $\sum_o e_oHe_o^\top$ of the three roundings:

# %%
if FAST:
    (xtr, ytr), (xte, yte) = load_dataset("digits")
    rng = np.random.default_rng(0)
    dense = models.build("lenet300", 8, rng=rng)
    fit(dense, optim.Adam(dense.parameters(), lr=1e-3), (xtr, ytr), TrainConfig(5, rng, progress=False))
else:
    dense_model = runpy.run_path(str(ROOT / "benchmarks" / "common.py"))["dense_model"]  # cached dense nets
    (xtr, ytr), (xte, yte) = load_dataset("fashion-mnist")
    dense = dense_model("lenet300", progress=False)
calib = xtr[np.random.default_rng(0).choice(len(xtr), min(1000, len(xtr)), replace=False)]

def prepared(bits=3):
    m = Q.prepare(copy.deepcopy(dense), bits, 8, per_channel=True, input_kind="asymmetric",
                  options=Q.QuantizerOptions(narrow_range=False))
    return Q.calibrate(m, calib, method="minmax", weight_method="mse")

rtn = prepared()
# the output error of round-to-nearest, layer by layer, with the same sequential inputs
rtn_err = {}
for name in ("fc1", "fc2", "fc3"):
    layer = getattr(rtn, name)
    _, d, lo, hi = weight_grid(layer)
    h = input_gram(layer, layer_inputs(rtn, layer, calib))
    wm = weight_matrix(layer).astype(np.float64)
    rtn_err[name] = reconstruction_error(wm, d * nearest_codes(wm, d, lo, hi), h)
t0 = time.perf_counter()
g = prepared(); gptq_err = gptq(g, calib); t_gptq = time.perf_counter() - t0
t0 = time.perf_counter()
ada_steps = 100 if FAST else 300
a = prepared(); ada_err = adaround(a, calib, AdaRoundConfig(iterations=ada_steps)); t_ada = time.perf_counter() - t0
print(f"layer   round-to-nearest      GPTQ   AdaRound ({ada_steps} steps per layer)")
for name in rtn_err:
    print(f"{name:5s} {rtn_err[name]:18.4f} {gptq_err[name]:9.4f} {ada_err[name]:10.4f}")
acc = {k: evaluate(m, xte, yte)["accuracy"] for k, m in (("float", dense), ("round-to-nearest", rtn),
                                                        ("GPTQ", g), ("AdaRound", a))}
print("test accuracy:", ", ".join(f"{k} {100 * v:.2f} %" for k, v in acc.items()))
print(f"time: GPTQ {t_gptq:.1f} s, AdaRound {t_ada:.1f} s (shared machine)")
im = Q.convert(g)
print(f"GPTQ's integer model: {100 * (im.predict(xte) == yte).mean():.2f} %, {im.nbytes():,} bytes of arrays")

# %% [markdown]
# Both methods cut the output error of every layer well below round-to-nearest's. For the layers after the first,
# the round-to-nearest column is measured on the inputs of the round-to-nearest model, so the columns compare whole
# models, not one layer on identical inputs. Here AdaRound runs only 300 steps per layer; the table below uses 1000.
#
# **The table.** `benchmarks/ptq_table.py` runs every method at 4, 3 and 2 bits on both networks. Three draws of
# 1000 calibration images, mean ± std; the accuracy is that of the integer model read back from its artifact file,
# on the 10,000 test images. All rows use one $\Delta$ per output channel and the two's-complement grid (2 bits:
# $\{-2,-1,0,1\}\cdot\Delta$). The learned-$\Delta$ row is the document's §3.2.1 steps 4–5 with the weights frozen,
# trained on the same 1000 images. For reference, the quantisation-aware training rows of
# `benchmarks/quant_table.py` (weights retrained on all 60,000 images, so not post-training) are listed too.

# %%
def load_result(name):
    path = ROOT / "benchmarks" / "results" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None

ROW_NAMES = {"rtn-minmax": "round-to-nearest, min–max Δ", "rtn-mse": "round-to-nearest, MSE Δ",
             "learned-delta": "learned Δ (Adam, §3.2.1)", "adaround": "AdaRound", "gptq": "GPTQ"}
tables = {}
for net in ("lenet300", "lenet5"):
    res = load_result(f"ptq_table_{net}")
    if res is None:
        print(f"{net}: no results file yet (run benchmarks/ptq_table.py {net})")
        continue
    tables[net] = res
    print(f"\n{net}: float {100 * res['float_accuracy']:.2f} %   (integer model, mean ± std over 3 calibration draws)")
    print(f"{'method':32s}" + "".join(f"{b}-bit".rjust(16) for b in (4, 3, 2)))
    for row, label in ROW_NAMES.items():
        cells = []
        for b in (4, 3, 2):
            e = res.get(f"{row}/{b}/per-channel")
            if e and "int_accuracy" in e:
                a = e["int_accuracy"]
                cells.append(f"{100 * a['mean']:.2f} ± {100 * a['std']:.2f}" if a["n"] > 1
                             else f"{100 * a['mean']:.2f} (1 draw)")
            else:
                cells.append("—")
        print(f"{label:32s}" + "".join(c.rjust(16) for c in cells))
    qt = load_result(f"quant_table_{net}")
    if qt:
        for row, label in (("qat-learned", "QAT, learned Δ (per tensor)"),
                           ("qat-learned-perchannel", "QAT, learned Δ (per channel)")):
            acc_b = {r["bits"]: r["int_accuracy"] for r in qt["rows"] if r["row"] == row}
            print(f"{label:32s}" + "".join((f"{100 * acc_b[b]:.2f}" if b in acc_b else "—").rjust(16)
                                           for b in (4, 3, 2)))

# %% [markdown]
# ## 5. Accuracy against bytes
#
# Every point is an artifact file: its size in bytes on disk, and its integer model's test accuracy. The PTQ points
# are LeNet-300-100 and LeNet-5 at 4, 3 and 2 bits. The pipeline's points are the configurations of
# `benchmarks/pipeline_sweep.py` (pruning, distillation and quantisation together, notebook 07). The lines are the
# Pareto fronts: no other point of the same group is both smaller and more accurate.

# %%
def pareto(points):
    """The points (bytes, accuracy) not beaten by a smaller and more accurate one, sorted by bytes."""
    front, best = [], -1.0
    for b, a in sorted(points):
        if a > best:
            front.append((b, a)); best = a
    return front

fig, ax = plt.subplots(figsize=(9, 5))
markers = {"rtn-minmax": "x", "rtn-mse": "+", "learned-delta": "s", "adaround": "o", "gptq": "^"}
ptq_points = []
for net, res in tables.items():
    for row, label in ROW_NAMES.items():
        pts = [(res[k]["runs"][0]["artifact_bytes"], res[k]["int_accuracy"]["mean"])
               for k in (f"{row}/{b}/per-channel" for b in (4, 3, 2)) if k in res and "int_accuracy" in res[k]]
        if pts:
            ax.scatter(*zip(*pts), marker=markers[row], label=f"{label} ({net})" if net == "lenet5" else None,
                       color=f"C{list(ROW_NAMES).index(row)}", alpha=0.8 if net == "lenet5" else 0.45)
            ptq_points += pts
sweep = load_result("pipeline_sweep")
if sweep:
    pipe = [(c["bytes"], c["accuracy"]) for c in sweep["configurations"]]
    ax.scatter(*zip(*pipe), marker="D", color="k", s=18, label="pipeline (prune + distil + quantise)")
    ax.plot(*zip(*pareto(pipe)), "k-", lw=1, label="pipeline: Pareto front")
if ptq_points:
    shown = [p for p in ptq_points if p[1] >= 0.80]          # the front of the points on the chart
    ax.plot(*zip(*pareto(shown)), "C3--", lw=1, label="post-training rounding: Pareto front")
ax.set_xscale("log"); ax.set_ylim(0.80, 0.93)
ax.set_xlabel("artifact file size (bytes, log scale)"); ax.set_ylabel("test accuracy (integer model)")
ax.set_title("Fashion-MNIST: accuracy against bytes (faded: LeNet-300-100, solid: LeNet-5)")
ax.legend(fontsize=7, loc="lower right"); ax.grid(alpha=0.3)
fig.tight_layout(); save(fig, "10_accuracy_vs_bytes.png"); plt.show()

# %% [markdown]
# Points below 80 % (round-to-nearest with the min–max $\Delta$ at 2 bits) are off the chart. Post-training rounding
# alone cannot reach the pipeline's sizes: without pruning, even 2-bit LeNet-5 stores all of its 61,470 weights.
# What it gives is in the table above: at 4 and 3 bits AdaRound and GPTQ stay within 0.6 point of the float networks,
# and at 2 bits AdaRound comes within a point of quantisation-aware training, from 1000 images, in seconds to
# minutes, with no retraining. GPTQ and AdaRound do not even use the labels: their objective is the layer's output.

# %% [markdown]
# ## 6. N:M sparsity — the learned mask of §3.1.1 with a rule for *where* the zeros go
#
# The learned mask of notebook 02 (§3.1.1, 权重剪枝) may drop any weight. The zeros then sit anywhere, and a
# processor gains little from them: it still has to fetch the weights around them. **N:M sparsity** keeps the
# learned mask but fixes the pattern: in every group of $M$ consecutive weights along the input dimension, at most
# $N$ are non-zero. With 2:4, half the weights go, and sparse tensor cores run such a layer at up to twice the
# dense speed, because a group of 4 is stored as its 2 values plus two 2-bit positions.
#
# Which weights form a group. A weight is read as rows, one per output unit: `W.reshape(O, K)`.
#
# * Linear, $W$ of shape $(O, I)$: $K = I$; a group is 4 consecutive inputs of one neuron.
# * Conv2d, $W$ of shape $(O, C_{in}, k, k)$: $K = C_{in}\cdot k\cdot k$, flattened in C order (index
#   $c\,k^2 + i\,k + j$), the row of the filter that multiplies an im2col column; a group may span two input channels.
#
# The rule, for the scores $S$ of the weights and every group $g$:
#
# $$m_i = 1\big[\,S_i \text{ is among the } N \text{ largest of } S_g\,\big]\quad(\text{ties: the lower index}).$$
#
# Step by step on a $2\times 8$ weight: two rows, two groups of 4 in each.

# %%
import json
from pathlib import Path
import numpy as np
from minicompress import nn, prune
from minicompress.check import check
from minicompress.quantize import mixed

ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
np.set_printoptions(precision=3, suppress=True, linewidth=110)

W = np.array([[0.9, -0.1, 0.3, -0.5, 0.0, 0.2, -0.8, 0.7],
              [0.1, -0.4, 0.6, 0.2, 1.0, -0.9, 0.75, 0.3]])
S = np.abs(W)                                   # magnitude scores to start with
groups = S.reshape(2, -1, 4)                    # (O, K/M, M) = (2, 2, 4)
print("groups of 4 (rows × groups × entries):\n", groups)
order = np.argsort(-groups, axis=-1, kind="stable")   # largest first; equal scores keep index order
print("largest first, positions inside each group:\n", order)
top = order[..., :2]                            # the N = 2 winners of every group
keep = np.zeros(groups.shape, dtype=bool)
np.put_along_axis(keep, top, True, axis=-1)
m = keep.reshape(W.shape)
print("mask m:\n", m.astype(int))
print("non-zeros per group:\n", (W * m != 0).reshape(2, -1, 4).sum(-1))
print("W ⊙ m:\n", W * m)
unstructured = prune.topk_mask(S, 8)           # 50 % of the matrix, anywhere
print("unstructured 50 %, for comparison:\n", unstructured.astype(int))

# %% [markdown]
# Every group keeps exactly 2: the sparsity is exactly 50 %, in every row of every layer. Unstructured pruning at
# 50 % keeps the 8 largest $|W|$ of the whole matrix instead. In the first row both rules agree; in the second,
# unstructured pruning keeps three weights of the last group ($1.0, -0.9, 0.75$) and drops $-0.4$, while 2:4 must drop
# $0.75$ — larger than the $-0.4$ it keeps in the weaker group. That is the price of the pattern, and the reason to
# let training choose (and adapt the weights to) the mask.
#
# **Exercise.** Write the mask from scores for any $N$, $M$: a score matrix of shape $(O, K)$ with $K$ a multiple of
# $M$; return the 0/1 mask of the same shape. Reshape to $(O, K/M, M)$ and sort inside the last axis, as above.

# %%
def nm_mask(scores, n, m):
    """N:M mask: for every row of `scores` (shape (O, K), K a multiple of M) and every group of
    M consecutive entries, 1 at the N largest scores (among equal scores the lower index), 0 elsewhere.
    Returns an array of the shape of `scores`."""
    ### BEGIN SOLUTION
    s = np.asarray(scores, dtype=np.float64)
    g = s.reshape(s.shape[0], -1, m)                           # (O, K/M, M)
    top = np.argsort(-g, axis=-1, kind="stable")[..., :n]      # stable: ties → lower index
    keep = np.zeros(g.shape)
    np.put_along_axis(keep, top, 1.0, axis=-1)
    return keep.reshape(s.shape)
    ### END SOLUTION

# %%
check("nm_mask", nm_mask)

# %% [markdown]
# ### Learning the mask with Adam
#
# As in notebook 02, the mask is not fixed once: each weight has a learned score $s$ (a Parameter that the one
# Adam updates like a weight), the mask is re-chosen before every training step from $S = |W| + s$, and the gradient
# reaches $s$ by the straight-through rule the project uses for its learned masks:
#
# $$\frac{\partial L}{\partial s} := \frac{\partial L}{\partial m} = \frac{\partial L}{\partial W_{\text{eff}}} \odot W, \qquad W_{\text{eff}} = W \odot m .$$
#
# A dropped weight whose return would lower the loss ($\partial L/\partial m < 0$) sees its score rise and may win its
# group back. With $s = 0$ this is magnitude N:M. Only the rule that turns scores into a mask differs from the global
# top-$k$ of notebook 02: the sparsity is fixed by $N{:}M$, so there is no sparsity schedule. Below, one layer with the
# weights above: the library's mask is ours, and a score moved by hand changes who wins a group.

# %%
layer = nn.Linear(8, 2, rng=np.random.default_rng(0))
layer.weight.data[...] = W
pruner = prune.NMPruner(nn.Sequential(fc=layer), 2, 4)        # attaches a learned mask, s = 0
mk = prune.get_mask(layer)
print("library mask = ours:", np.array_equal(mk.keep, m))
mk.scores.data[1, 4:] = [0.0, 0.0, 0.2, 0.0]                   # |W| + s in row 1, group 2: 1.0 0.9 0.95 0.3
pruner.update()
print("row 1 after raising one score:", mk.keep[1].astype(int))

# one backward pass: the score gradient is ∂L/∂W_eff ⊙ W
x = np.array([[1.0, 2, 0, -1, 1, 0, 2, 1]], dtype=np.float32)
g = np.array([[1.0, -1.0]], dtype=np.float32)                 # ∂L/∂y for the two outputs
layer.zero_grad(); layer.forward(x); layer.backward(g)
print("∂L/∂s:\n", mk.scores.grad)
print("= (gᵀx) ⊙ W:", np.allclose(mk.scores.grad, (g.T @ x) * layer.weight.data))

# %% [markdown]
# **What the rows of LeNet-5 do to 2:4.** A convolution's row has $K = C_{in}k^2$ weights: 25 for the first
# convolution of LeNet-5, 150 for the second — not multiples of 4. `nm_mask` refuses such a row with a clear error;
# `pad=True` pads it with entries that are never kept, so the last, partial group of $r < 4$ real weights keeps
# $\min(2, r)$ of them (a hardware kernel pads the same way). LeNet-5's convolutions are therefore a little under 50 %
# sparse; all its Linear layers, and all of LeNet-300-100's ($K$ = 784, 300, 100), are exactly 50 %.

# %%
print(prune.nm_mask(np.arange(5.0)[None], 2, 4, pad=True).astype(int), "  (row of 5: the lone last weight is kept)")
try:
    prune.nm_mask(np.ones((6, 1, 5, 5)), 2, 4)
except ValueError as e:
    print("ValueError:", e)

# %% [markdown]
# ### 2:4 on the real networks
#
# `benchmarks/nm_sparsity.py` starts from the 10-epoch dense nets and compares, on the 10,000 test images:
# magnitude 2:4 with no training; magnitude 2:4 with the mask fixed and the weights fine-tuned by Adam; and the
# learned 2:4 mask, scores and weights trained together by one Adam. The cell reads its results file.

# %%
nm_path = ROOT / "benchmarks" / "results" / "nm_sparsity.json"
nm_res = json.loads(nm_path.read_text()) if nm_path.exists() else {}
for key, e in nm_res.items():                   # "lenet300", "lenet5", then other settings
    if "summary" not in e:
        continue
    print(f"{key}: {e['epochs']} epochs of Adam (weights lr {e['lr']:g}, scores lr {e['score_lr']:g}, "
          f"λ {e.get('lam') or 0:g})")
    for arm, s in e["summary"].items():
        d = s.get("gap_to_dense_points")
        gap = "" if d is None or arm == "dense" else f", {abs(d):.2f} points {'below' if d > 0 else 'above'} dense"
        print(f"  {arm:14s} {100 * s['mean']:6.2f} %  (n = {s['n']} seed(s){gap})")

# %% [markdown]
# **Reading the numbers.** Magnitude 2:4 with no training costs LeNet-300-100 about 4 points and LeNet-5 about 19:
# LeNet-5's small layers have few weights to spare in a group of 4. Three epochs of Adam with the mask in place win it
# back: both networks end within about half a point of the dense net, LeNet-300-100 even above it (a few more epochs at
# a small learning rate help a dense net too, as the control run of the weight-pruning benchmark shows in notebook 08).
#
# The learned mask, free to move the zeros inside each group, ends **level with** magnitude 2:4 plus fine-tuning, not
# ahead of it. At 50 % sparsity in groups of 4 the weights that magnitude keeps are mostly the ones worth keeping;
# what counts is that the remaining weights adapt to the mask. Two settings mattered more than the mask itself:
#
# * the scores' learning rate: at 1e-3 (the unstructured learned mask's) Adam can move a score by about 0.5 in one
#   epoch, several times a typical $|W|$ (0.05–0.16 here), and the mask keeps changing, so weights that were just
#   trained keep dropping out — LeNet-5 ended about a point lower (rows `lenet5_slr1e-3`; the L1 term with $\lambda = 10^{-4}$ recovered part of it, `lenet5_lam1e-4`). At
#   1e-4, $s$ stays on the scale of $|W|$ and changes the mask only where the gradient insists;
# * the weights' learning rate: at 1e-3 instead of 1e-4 LeNet-5 ends within about a tenth of a point of dense with
#   either mask (rows `lenet5_lr1e-3`).

# %% [markdown]
# ## 7. Mixed precision under a byte budget
#
# Notebooks 04–05 give every layer the same number of bits. Layers differ, though: some lose little at 2 bits, some
# much, and they differ in size. Give each layer $l$ its own $b_l \in \{2, 3, 4, 8\}$ and spend a budget of $B$ bytes
# where it helps most:
#
# $$\min_{b_1..b_L}\ \sum_l S_l(b_l)\qquad\text{subject to}\qquad \sum_l \Big\lceil \frac{n_l\, b_l}{8} \Big\rceil \le B .$$
#
# * $\lceil n_l b_l / 8\rceil$ is what the artifact stores for layer $l$'s $n_l$ weight codes packed at $b_l$ bits
#   (notebook 07); biases, scales and header do not depend on $b_l$ and stay out of the budget.
# * $S_l(b)$, the **sensitivity**, is measured: the increase of the mean cross-entropy on 5,000 *training* images (never
#   the test set) when only layer $l$ is quantised to $b$ bits — or estimated from the Fisher information (below).
#   Adding the $S_l$ assumes the layers' errors add up — a model, checked below by the accuracy of the whole net.
#
# This is a knapsack with one choice per layer. First by hand, three layers A, B, C of 16, 8 and 4 weights, bits 2 or
# 4, budget 10 bytes (all at 4 bits take 8 + 4 + 2 = 14, so 4 bytes must go):
#
# | layer | bytes at 4 / 2 bits | $S$ at 4 / 2 bits | cost per byte saved |
# | --- | --- | --- | --- |
# | A | 8 / 4 | 0 / 1.0 | 1.0 / 4 = 0.25 |
# | B | 4 / 2 | 0 / 0.4 | 0.4 / 2 = 0.20 |
# | C | 2 / 1 | 0 / 0.9 | 0.9 / 1 = 0.90 |
#
# A **greedy** rule lowers first the layer whose step costs least per byte saved: B (0.20) → 12 bytes, still over;
# then A → 8 bytes, total sensitivity 1.4. The **optimum** lowers only A: 4 + 4 + 2 = 10 bytes, sensitivity 1.0. Greedy
# spent B's cheap step on bytes it did not need once A had to go anyway.

# %%
sizes = {"A": {2: 4, 4: 8}, "B": {2: 2, 4: 4}, "C": {2: 1, 4: 2}}
sens = {"A": {2: 1.0, 4: 0.0}, "B": {2: 0.4, 4: 0.0}, "C": {2: 0.9, 4: 0.0}}
for name, rule in (("greedy", mixed.greedy_bits), ("knapsack (DP)", mixed.knapsack_bits)):
    bits = rule(sens, sizes, 10)
    print(f"{name:14s} {bits}  bytes {mixed.total(sizes, bits)}  summed S {mixed.total(sens, bits):.1f}")

# %% [markdown]
# **The dynamic programme.** Let $f_l(c)$ be the least summed sensitivity of layers $1..l$ in at most $c$ bytes.
# Then $f_0(c) = 0$ and
#
# $$f_l(c) = \min_b\ f_{l-1}\big(c - \text{bytes}_l(b)\big) + S_l(b)\qquad(+\infty \text{ if } c < \text{bytes}_l(b)).$$
#
# $f_L(B)$ is the optimum; the $b$ that won at each layer, read back from $c = B$, gives the bits. Time
# $O(L\cdot|\text{bits}|\cdot B)$: for LeNet-300-100 at $B \approx 10^5$ bytes, a fraction of a second. The table of the
# example, one row per layer:

# %%
f = np.zeros(11)                                   # f_0(c) = 0, c = 0..10
for name in ("A", "B", "C"):
    cand = np.full((2, 11), np.inf)
    for i, b in enumerate((2, 4)):
        w = sizes[name][b]
        cand[i, w:] = f[:11 - w] + sens[name][b]
    f = cand.min(axis=0)
    print(f"f after {name}:", f)
print("f_C(10) =", f[10], " (the optimum: only A at 2 bits)")

# %% [markdown]
# ### A second sensitivity: the Fisher estimate
#
# Measuring $S_l(b)$ asks the whole net for its loss once per layer and bit width, and for a small layer at 3 or 4 bits
# the answer is a difference of two nearly equal numbers — noise of either sign. A second-order Taylor expansion of the
# loss around the trained weights gives an estimate instead. At a minimum the gradient is $\approx 0$, so the first
# term drops, and the Hessian is replaced by the **empirical Fisher**, the mean of the squared per-image gradients —
# of which only the diagonal is kept:
#
# $$S_l(b) \approx \tfrac12 \sum_{ij} F_{ij}\,\big(Q_b(W)_{ij} - W_{ij}\big)^2,\qquad
#   F_{ij} = \frac1N \sum_n \Big(\frac{\partial \ell_n}{\partial W_{ij}}\Big)^2 .$$
#
# Each weight's rounding error counts as much as the loss cares about that weight. For a Linear layer
# $y_n = W x_n + b$ the per-image gradient is an outer product, $\partial \ell_n / \partial W = \delta_n x_n^\top$ with
# $\delta_n = \partial \ell_n / \partial y_n$, so $\sum_n (\partial \ell_n / \partial W_{ij})^2 = \sum_n \delta_{ni}^2 x_{nj}^2$ —
# one matrix product $(\delta\odot\delta)^\top (x\odot x)$, no loop over images. With cross-entropy,
# $\delta_n = \mathrm{softmax}(z_n) - \mathrm{onehot}(y_n)$. By hand on a one-layer net, four images:

# %%
fi_net = nn.Sequential(fc=nn.Linear(3, 2, rng=np.random.default_rng(0)))
fi_x = np.array([[1.0, 0.5, -1.0], [0.0, 2.0, 1.0], [-1.0, 1.0, 0.5], [0.5, -0.5, 2.0]], dtype=np.float32)
fi_y = np.array([0, 1, 1, 0])
fi_z = fi_net(fi_x)
fi_p = np.exp(fi_z - fi_z.max(1, keepdims=True)); fi_p /= fi_p.sum(1, keepdims=True)
fi_delta = fi_p - np.eye(2)[fi_y]                                  # δ_n = softmax(z_n) − onehot(y_n)
fi_per_image = fi_delta[:, :, None] * fi_x[:, None, :]             # (4, 2, 3): ∂ℓ_n/∂W = δ_n x_nᵀ
fi_F = (fi_per_image ** 2).mean(axis=0)
print("F by hand:\n", fi_F)
print("fisher_diagonal:\n", mixed.fisher_diagonal(fi_net, (fi_x, fi_y))["fc"])
for b in (2, 4, 8):
    s_b = mixed.fisher_sensitivity(fi_net, (fi_x, fi_y), bits=[b])["fc"][b]
    print(f"S({b}) ≈ ½ Σ F (Q_b(W) − W)² = {s_b:.2e}")

# %% [markdown]
# With two classes $\delta_{n2} = -\delta_{n1}$, so both rows of $F$ are equal. The estimate is never negative and, here
# as on the real nets, falls with every added bit — what the measured increase does not guarantee for a small layer.
#
# ### On the real networks
#
# `benchmarks/mixed_precision.py` computes both sensitivities of LeNet-300-100 and LeNet-5, solves the knapsack with
# each at the byte budgets of uniform 3- and 4-bit weights and at the midpoints between the 2/3- and 3/4-bit budgets,
# and compares the test accuracy with uniform bits at the same (or fewer) bytes, $\pm$ the paired standard error of
# the difference (both nets judged on the same 10,000 images). All arms use the same post-training quantiser:
# per-tensor symmetric weights, $\Delta$ from the MSE search, round to nearest, activations in float. The uniform
# 2-bit budget is the least any choice can take, so there the knapsack can only return uniform 2-bit.

# %%
mp_path = ROOT / "benchmarks" / "results" / "mixed_precision.json"
mp_res = json.loads(mp_path.read_text()) if mp_path.exists() else {}
for net in ("lenet300", "lenet5"):
    if net not in mp_res:
        continue
    e = mp_res[net]
    print(f"{net}: float {100 * e['float_accuracy']:.2f} %;  S_l(b) on {e['calibration_images']} training images,"
          " measured | Fisher:")
    for layer, s in e["sensitivity"].items():
        print(f"  {layer:6s}", "  ".join(f"{b}b {v:+.4f}" for b, v in s.items()), " | ",
              "  ".join(f"{b}b {v:.4f}" for b, v in e.get("fisher_sensitivity", {}).get(layer, {}).items()))
    for r in e["rows"]:
        u = r["uniform"]
        line = f"  {r['budget']:15s} {r['budget_bytes']:7d} B  uniform {100 * u['test_accuracy']:6.2f} %"
        for arm, label in (("knapsack", "measured"), ("knapsack_fisher", "Fisher")):
            if arm in r:
                k = r[arm]
                bits = "/".join(str(b) for b in k["bits"].values())
                line += (f" | {label} {bits} {100 * k['test_accuracy']:6.2f} %"
                         f" ({k.get('minus_uniform_points', 0):+.2f} ± {k.get('paired_se_points', 0):.2f})")
        print(line)

# %% [markdown]
# **Reading the numbers.** LeNet-5 is where mixed precision pays: its two convolutions hold only 2,550 of its
# 61,470 weights but are the most sensitive at 2 bits, by a factor of 2 to 8 by either measure, so the knapsack gives
# them 8 bits and pays for it by putting the large fc1 (48,000 weights) at 2 or 3 bits. At the byte budget of uniform
# 3-bit weights that is 89.1 % against 84.8 %, and at the 4-bit budget 90.5 % against 90.2 % (float: 90.4 %).
#
# LeNet-300-100 leaves little to choose: fc1 holds 88 % of its weights, so at a uniform budget the only question is
# how to spend the other 12 %, and the choices that fit differ by a few tenths of a point — the size of the test set's
# noise (the $\pm$ column). The measured sensitivity of fc3 (1,000 weights) is such noise: lower at 3 bits than at 4.
# With it, the knapsack's optimum at the 3-bit budget *is* uniform 3-bit. The Fisher estimate ranks fc3 at 3 bits as
# costly and chooses 3/2/8, 0.36 point above uniform; at the midway 3/4 budget both choose 3/4/8, 0.19 point *below*
# uniform 3-bit. And at the midway 2/3 budget the greedy choice 2/2/8 beats both knapsacks' 2/4/8 by 2.2 points. The
# knapsack is exact for the objective it is given; the objective — a *sum* of one-layer-at-a-time sensitivities on
# training images — is a model of the network, and these rows show where the model is wrong.

# %% [markdown]
# ## 8. Entropy coding of the weight codes (Huffman)
#
# The document stops at pruning, quantization and distillation. Deep Compression (Han et al. 2016), the paper the
# pipeline's order comes from, has a third step after pruning and quantization: **Huffman coding**. After 4-bit
# quantization every kept weight costs 4 bits, but the 16 codes are far from equally likely — small magnitudes are
# much more frequent than ±7 — and the gaps between kept weights are mostly small. A code that gives frequent values
# short bit strings and rare values long ones stores the same numbers in fewer bits, **without changing a single
# weight**: the model, its accuracy and its logits stay exactly the same.
#
# Two facts bound what any such code can do. For symbols with probabilities $p_s$ and code lengths $l_s$ (bits):
#
# * **Kraft inequality**: a *prefix code* (no code is the beginning of another, so a bit string decodes without
#   separators) with lengths $l_s$ exists exactly when $K = \sum_s 2^{-l_s} \le 1$; it is *complete* when $K = 1$.
# * **Entropy bound**: the average length $\bar L = \sum_s p_s l_s$ is at least the entropy
#   $H = -\sum_s p_s \log_2 p_s$ bits per symbol, and Huffman's code, the optimal prefix code, has
#   $H \le \bar L < H + 1$.
#
# `minicompress/huffman.py` implements it in NumPy, in three steps: **counts → lengths** (the code tree),
# **lengths → codes** (the canonical rule), **codes → bitstream** (and back). We do it by hand on four symbols first.

# %%
import heapq
import numpy as np
from minicompress import huffman
from minicompress.check import check

hf_symbols = ["a", "b", "c", "d"]
hf_counts = np.array([5, 2, 1, 1])                  # the message has 9 symbols: a five times, b twice, c and d once
hf_p = hf_counts / hf_counts.sum()
print("p =", {name: round(float(p), 3) for name, p in zip(hf_symbols, hf_p)})
print(f"H = −Σ p log2 p = {huffman.entropy_bits(hf_counts):.4f} bits/symbol")

# Huffman's algorithm: repeatedly merge the two lightest subtrees; each merge puts its symbols one level deeper.
heap = [(int(c), name) for c, name in zip(hf_counts, hf_symbols)]
heapq.heapify(heap)
while len(heap) > 1:
    (w1, t1), (w2, t2) = heapq.heappop(heap), heapq.heappop(heap)
    print(f"merge {t1}({w1}) + {t2}({w2}) → ({t1}{t2})({w1 + w2})")
    heapq.heappush(heap, (w1 + w2, t1 + t2))

hf_lengths = huffman.code_lengths(hf_counts)       # depth of each symbol in that tree
print("lengths:", {name: int(l) for name, l in zip(hf_symbols, hf_lengths)})
print(f"Kraft sum K = Σ 2^-l = {huffman.kraft_sum(hf_lengths)}")
print(f"average length = {np.dot(hf_p, hf_lengths):.4f} bits/symbol (H ≤ this < H + 1)")

# %% [markdown]
# ### Counts → lengths: the tree, limited to 15 bits
#
# The merges above build the tree: *c* and *d* first (weight 2), then *b* with them (4), then *a* (9). A symbol's
# code length is its depth: *a* 1, *b* 2, *c* and *d* 3. On average $1\cdot\frac59 + 2\cdot\frac29 + 3\cdot\frac29
# = \frac{15}{9} \approx 1.667$ bits per symbol, against $H \approx 1.658$ — and against 2 bits for a fixed-length code
# of four symbols.
#
# A skewed distribution can make the tree very deep (counts that grow like the Fibonacci numbers give one code per
# level). The file stores each length in 4 bits, so lengths are limited to 15: `code_lengths` uses the
# **package-merge** algorithm, which finds the best code among those with lengths ≤ 15 (it equals Huffman's whenever
# Huffman's is no deeper).
#
# ### Lengths → codes: the canonical rule
#
# The tree has many mirror images with the same lengths. The **canonical** code (the rule of DEFLATE, the format of
# zip and PNG) picks one, so that a file needs to store **only the lengths**. With $N_l$ the number of symbols of
# length $l$ (length 0 = the symbol does not occur, and is not counted):
#
# $$\text{first}(1) = 0,\qquad \text{first}(l) = 2\,\big(\text{first}(l-1) + N_{l-1}\big),$$
#
# and the symbols of length $l$, in increasing symbol order, get the $l$-bit codes first($l$), first($l$) + 1, …
# Doubling appends a bit: the codes of length $l$ begin right after the last prefix used by the shorter codes.
# For the example: $N_1 = N_2 = 1$, $N_3 = 2$; first(2) = 2·(0 + 1) = 2 = `10`, first(3) = 2·(2 + 1) = 6 = `110`,
# so *a* = `0`, *b* = `10`, *c* = `110`, *d* = `111`.
#
# **Exercise.** Write `canonical_codes(lengths)`: for an integer array of code lengths (0 = no code), return the
# array of canonical codes as integers (the code `110` is the integer 6; a symbol of length 0 gets 0).

# %%
def canonical_codes(lengths):
    """Canonical prefix codes from code lengths (the DEFLATE rule).

    lengths: (A,) integers ≥ 0. Returns (A,) integers: code(s) = first(l_s) + (number of symbols of length l_s
    before s), with first(1) = 0 and first(l) = 2·(first(l−1) + N_{l−1}); 0 where l_s = 0.
    """
    ### BEGIN SOLUTION
    lengths = np.asarray(lengths, dtype=np.int64)
    n_len = np.bincount(lengths[lengths > 0], minlength=16)     # N_l, length 0 not counted
    first = np.zeros(len(n_len), np.int64)
    for l in range(2, len(n_len)):
        first[l] = 2 * (first[l - 1] + n_len[l - 1])
    codes = np.zeros(len(lengths), np.int64)
    next_code = first.copy()
    for s in np.lexsort((np.arange(len(lengths)), lengths)):    # by (length, symbol)
        if lengths[s] > 0:
            codes[s] = next_code[lengths[s]]
            next_code[lengths[s]] += 1
    return codes
    ### END SOLUTION

# %%
check("canonical_codes", canonical_codes)

# %% [markdown]
# ### Codes → bitstream, and back
#
# The file writes the codes one after the other, most significant bit first, and pads the last byte with zeros.
# Decoding reads bits until they form a code — since no code is the beginning of another, the first match is the
# symbol. The library decodes without a Python loop per bit: for *every* bit position it looks up, in a table of
# $2^{15}$ entries, which code would start there and how long it is; the positions where codes really start are then
# the chain 0 → 0 + length → …, followed for all symbols at once by pointer doubling.

# %%
hf_message = np.array([0, 1, 0, 2, 3, 0, 0, 1, 0])       # a b a c d a a b a: the counts 5, 2, 1, 1 above
hf_codes = huffman.canonical_codes(hf_lengths)
hf_bits = "".join(format(int(hf_codes[s]), f"0{int(hf_lengths[s])}b") for s in hf_message)
hf_stream = huffman.encode(hf_message, hf_lengths)
print("codes:", {n: format(int(c), f"0{int(l)}b") for n, c, l in zip(hf_symbols, hf_codes, hf_lengths)})
print("bits:  ", hf_bits, f"({len(hf_bits)} bits; fixed 2-bit codes would take {2 * len(hf_message)})")
print("bytes: ", hf_stream.hex(" "), f"= {len(hf_stream)} bytes (the last padded with zeros)")
hf_decoded, hf_used = huffman.decode(hf_stream, hf_lengths, len(hf_message))
print("decoded:", "".join(hf_symbols[s] for s in hf_decoded), f"({hf_used} bits read)")

# %% [markdown]
# ### On a real artifact
#
# In the artifact (format version 3, `docs/FORMAT.md` §4) a Huffman-coded tensor is a table of 4-bit code lengths
# followed by the bitstream. Two encodings use it: `huffman` codes every weight code (zeros included); `sparse_huffman`
# codes the gap bytes of the kept positions and, separately, the kept codes — at 75–98 % sparsity the better one.
# The writer takes one only where the whole file gets **smaller** than with the version-2 encodings, so Huffman coding
# can never make an artifact larger (and a file that uses neither stays a version-2 file, byte for byte).
#
# Below: the digits pipeline (the `demo` recipe; shortened in fast mode), its artifact re-encoded without retraining —
# loaded, then written with and without Huffman — and, per weight tensor, the entropy bound in bytes:
# $N\cdot H/8$ for all codes, or (gap bytes)·$H_\text{gaps}/8$ + nnz·$H_\text{codes}/8$ for the sparse form.

# %%
import os, tempfile
from pathlib import Path
from minicompress import pipeline
from minicompress.artifact import BASE_ENCODINGS, encode_codes, gap_bytes, read_artifact
from minicompress.quantize.integer import IntLayer
from minicompress.recipe import DEMO_RECIPE, load_recipe
from minicompress.serialize import integer_model_bytes, load_integer_model

hf_recipe = load_recipe(DEMO_RECIPE)
if os.environ.get("MINICOMPRESS_FAST") == "1":
    for stage, epochs in (("teacher", 3), ("distill", 5), ("prune", 3), ("quantize", 1)):
        hf_recipe[stage]["epochs"] = epochs
hf_dir = Path(tempfile.mkdtemp())
hf_path = Path(pipeline.run(hf_recipe, out=hf_dir / "digits.npz", progress=False)["artifact"]["path"])
hf_model = load_integer_model(hf_path)
hf_meta = read_artifact(hf_path)[0]["meta"]


def entropy_bytes(values):
    values = np.asarray(values, np.int64)
    return len(values) * huffman.entropy_bits(np.bincount(values - values.min())) / 8 if len(values) else 0.0


print(f"{'layer':10s} {'shape':>12s} {'kept':>6s} {'4-bit raw':>9s} {'version 2':>18s} {'huffman':>8s} "
      f"{'sparse_huffman':>14s} {'bound':>7s}")
for i, step in enumerate(hf_model.steps):
    if isinstance(step, IntLayer):
        q = step.q_w.astype(np.int64).ravel()
        kept = np.flatnonzero(q)
        v2_data, v2 = encode_codes(step.q_w, step.w_bits, BASE_ENCODINGS)
        dense = len(encode_codes(step.q_w, step.w_bits, ("huffman",))[0])
        sparse = len(encode_codes(step.q_w, step.w_bits, ("sparse_huffman",))[0])
        bound = min(entropy_bytes(q),
                    entropy_bytes(np.frombuffer(gap_bytes(kept), np.uint8)) + entropy_bytes(q[kept]))
        print(f"{step.kind:10s} {str(step.q_w.shape):>12s} {len(kept):6d} {-(-q.size * step.w_bits // 8):9d} "
              f"{v2['encoding']:>11s} {len(v2_data):6d} {dense:8d} {sparse:14d} {bound:7.0f}")

hf_v2 = integer_model_bytes(hf_model, hf_meta, BASE_ENCODINGS)
hf_best = integer_model_bytes(hf_model, hf_meta)
print(f"\nwhole file: version 2 {len(hf_v2):,} B → with Huffman {len(hf_best):,} B "
      f"({100 * (len(hf_v2) - len(hf_best)) / len(hf_v2):.1f} % smaller)")
(hf_dir / "v3.npz").write_bytes(hf_best)
hf_x = np.random.default_rng(0).random((5, 1, 8, 8)).astype(np.float32)
assert np.array_equal(load_integer_model(hf_dir / "v3.npz").forward(hf_x), hf_model.forward(hf_x))
print("the re-encoded file gives the same logits, bit for bit")

# %% [markdown]
# The table's byte counts are before the zip's own compression (deflate, itself a Huffman coder over bytes plus
# repeated-string matching), which the whole file goes through; the file sizes at the bottom include it. So the gain
# is what a per-tensor, per-symbol code adds on top of deflate — less than the raw-versus-Huffman columns suggest.
#
# The Fashion-MNIST artifacts, re-encoded the same way by `benchmarks/entropy_coding.py` (numbers in
# `benchmarks/results/entropy_coding.json`):

# %%
import json
ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
hf_results = json.loads((ROOT / "benchmarks" / "results" / "entropy_coding.json").read_text())
print(f"{'artifact':28s} {'version 2':>10s} {'with Huffman':>13s} {'saved':>7s} {'weights: entropy bound':>23s}")
for a in hf_results["artifacts"]:
    print(f"{a['artifact']:28s} {a['file_bytes_v2']:>8,} B {a['file_bytes_with_huffman']:>11,} B "
          f"{a['saved_percent']:>6.1f} % {a['weight_entropy_bound_bytes']:>21,.0f} B")

# %% [markdown]
# What the numbers say:
#
# * On the pruned 4-bit Fashion-MNIST models Huffman coding takes a further **6–9 %** off the file (`fashion_10kb` of
#   notebook 07's recipe: 9,348 → 8,750 B, accuracy 88.76 % before and after). Almost all of it comes from
#   `sparse_huffman`: the gaps between kept weights and the kept codes are each far from uniform, and a code fitted to
#   each tensor captures that better than deflate does on the bytes. On the tiny digits demo it is 2 %.
# * The Huffman-coded weights of the Fashion-MNIST models land within 2–6 % of their entropy bound (9 % on the digits
#   demo, whose length tables weigh more); what is left is the rounding of each length to whole bits, the length
#   tables and the byte padding.
# * On a dense 8-bit model (`fashion_lenet5_int8`) the gain is small (0.4 %): deflate already squeezes one-byte codes
#   nearly as well.
# * It is **lossless**: the same integers, the same logits. Unlike pruning and quantization it cannot cost accuracy —
#   only decoding time when the file is loaded.

# %% [markdown]
# ## Things to try, and questions
#
# 1. **Column order.** GPTQ's result depends on the order of the columns. In the 1 × 3 example, round the columns in
#    the order 3, 2, 1 (permute $w$ and $H$ the same way). Do you still get $(0,1,0)$? (The GPTQ paper also tries
#    "act-order": columns with the largest $H_{ii}$ first.)
# 2. **λ in the toy layer.** Run AdaRound on the 1 × 3 layer with $\lambda = 0.01$. Which codes come out, and what
#    is $f_{\text{reg}}$ at the end? Why does the final threshold $V \ge 0$ then decide almost at random?
# 3. **Damping.** Set `damp=0` and `damp=1` in `gptq_codes` on the 1 × 3 layer. What does a very large damping
#    turn GPTQ into?
#    **Question:** the objective $\sum_o e_oHe_o^\top$ never looks at the labels. What does that mean for the number
#    of calibration images needed, compared with learning $\Delta$ on the task loss?
