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
# # Asymmetric quantization — 非对称量化, §3.2.2, and the learned step
#
# The asymmetric quantiser maps the interval $[r_{\min}, r_{\max}]$ (instead of $[-r_{\max}, r_{\max}]$) onto the
# unsigned integers $0 \dots 2^n-1$. This notebook follows §3.2.2 on a small vector and on real activations, then
# shows how Adam can learn the step $\Delta$ and the offset $r_{\min}$ through a rounding function (LSQ / LSQ+),
# compares post-training quantisation, learned $\Delta$ and quantisation-aware training across bit widths, and
# finally traces the integer arithmetic of one neuron of the integer model.
#
# | step | document | code |
# | --- | --- | --- |
# | 1 | $r_{\min}=\min x$, $r_{\max}=\max x$ | `quantize.functional.asymmetric_params` |
# | 2 | $\Delta = (r_{\max}-r_{\min})/(2^n-1)$ | `asymmetric_params`, `quantize.observers` |
# | 3 | $q(x)=\mathrm{round}((x-r_{\min})/\Delta)$ | `asymmetric_quantize`, `asymmetric_dequantize` ($\Delta q + r_{\min}$) |
# | — | integer form $z=\mathrm{round}(-r_{\min}/\Delta)$ | `zero_point`, `affine_quantize`, `affine_dequantize` ($\Delta(q-z)$) |
# | 4 | Adam optimises $\Delta$ and $r_{\min}$ | `ActivationQuantizer(kind="asymmetric")`: Parameters `log_delta`, `offset` (LSQ+) |
# | 5 | store integers | `quantize.convert` → `IntegerModel` |
#
# **Where the document is imprecise, and what we do**
#
# * "Asymmetric quantisation can represent a larger range" (非对称量化相比对称量化可以表示更大范围的值): both kinds spread $2^n$ (or $2^n-1$) levels over an
#   interval; the asymmetric one puts the interval where the data is. For one-sided data — every activation after a
#   ReLU — the symmetric grid wastes its whole negative half, i.e. one bit. After a ReLU we therefore use the unsigned
#   grid ($r_{\min}=0$, no offset to store); the learned offset is used only where values can be negative (the
#   normalised input image).
# * The document's offset is a real number $r_{\min}$. Then the real number 0 is in general *not* on the grid:
#   $\Delta\,\mathrm{round}(-r_{\min}/\Delta)+r_{\min}\neq 0$. Zero padding, ReLU outputs and pruned weights are exact
#   zeros, and integer inference needs 0 to be an integer code, so we use the zero-point form: $z=\mathrm{round}
#   (-r_{\min}/\Delta)$, $\hat x = \Delta(q-z)$ (the grid moves by less than $\Delta/2$).
# * Step 4 needs the gradient of a rounding function with respect to $\Delta$ and $r_{\min}$; the document does not
#   say which. We use LSQ (Esser et al. 2020) for $\Delta$ and LSQ+ (Bhalgat et al. 2020) for the offset, below.

# %%
import os, json, copy, runpy
from pathlib import Path
import numpy as np
from minicompress.check import check
import matplotlib.pyplot as plt
ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
from minicompress import models, optim
from minicompress.data import load_dataset
from minicompress.train import EveryStep, TrainConfig, fit, evaluate, predict
from minicompress import quantize as Q

FAST = os.environ.get("MINICOMPRESS_FAST") == "1"
FIGURES = os.environ.get("MINICOMPRESS_FIGURES")  # if set, a folder to also save the figures in

def save(fig, name):
    if FIGURES:
        fig.savefig(Path(FIGURES) / name, dpi=110, bbox_inches="tight")

np.set_printoptions(precision=4, suppress=True, linewidth=110)
print("fast mode (digits)" if FAST else "full mode (Fashion-MNIST)")

# %% [markdown]
# ## Steps 1–3 on a small vector, and the zero point
#
# Eight numbers from $-0.33$ to $2.00$, quantised to 3 bits (codes 0…7).

# %%
x = np.array([-0.33, -0.10, 0.0, 0.25, 0.61, 0.90, 1.42, 2.00], np.float32)
n = 3
r_min, r_max = x.min(), x.max()                       # step 1
delta = (r_max - r_min) / (2 ** n - 1)                # step 2
q = np.rint((x - r_min) / delta)                      # step 3
print(f"r_min = {r_min}, r_max = {r_max}, Δ = (r_max − r_min)/7 = {delta:.4f}")
print("q            ", q.astype(int))
print("Δ·q + r_min  ", delta * q + r_min)
z = int(np.rint(-r_min / delta))
q_z = np.clip(np.rint(x / delta) + z, 0, 2 ** n - 1)
print(f"zero point z = round(−r_min/Δ) = round({-r_min / delta:.3f}) = {z}")
print("q (z form)   ", q_z.astype(int))
print("Δ·(q − z)    ", delta * (q_z - z))
print("the real 0.0 comes back as", delta * q[2] + r_min, "with the document's form, and as",
      delta * (q_z[2] - z), "with the zero point")
qa, da, ra = Q.asymmetric_quantize(x, n)
assert np.array_equal(qa, q) and Q.zero_point(da, ra, n) == z

# %% [markdown]
# **Exercise — `asymmetric_params`.** Steps 1–2 of §3.2.2. Write the body of the function
# (in the student edition it only raises `NotImplementedError`); the docstring states the equation and the shapes.
# The cell after it checks your function against numbers worked out by hand.

# %%
def asymmetric_params(w, n):
    """§3.2.2 steps 1–2: r_min = min w, r_max = max w, Δ = (r_max − r_min)/(2^n − 1).
    Returns (Δ, r_min), two numbers."""
    ### BEGIN SOLUTION
    r_min, r_max = w.min(), w.max()
    return (r_max - r_min) / (2 ** n - 1), r_min
    ### END SOLUTION

# %%
check("asymmetric_params", asymmetric_params)

# %% [markdown]
# **Exercise — `zero_point`.** The integer zero point of the cell above (the document writes $r_{\min}$ instead of an integer; an integer $z$ makes $x=0$ exact, which zero padding and ReLU need). Write the body of the function
# (in the student edition it only raises `NotImplementedError`); the docstring states the equation and the shapes.
# The cell after it checks your function against numbers worked out by hand.

# %%
def zero_point(delta, r_min, n):
    """The integer zero point: z = clip(round(−r_min/Δ), 0, 2^n − 1), an int, so that the real
    number 0 is exactly the code z (x̂ = Δ(q − z))."""
    ### BEGIN SOLUTION
    return int(np.clip(np.rint(-r_min / delta), 0, 2 ** n - 1))
    ### END SOLUTION

# %%
check("zero_point", zero_point)

# %% [markdown]
# **Exercise — `affine_roundtrip`.** Quantise with $z$, and back. Write the body of the function
# (in the student edition it only raises `NotImplementedError`); the docstring states the equation and the shapes.
# The cell after it checks your function against numbers worked out by hand.

# %%
def affine_roundtrip(x, delta, z, n):
    """Quantise with a zero point and back (x any shape, Δ > 0, z an int):

        q = clip(round(x/Δ) + z, 0, 2^n − 1),    x̂ = Δ·(q − z)

    Returns (q integers, x̂ floats), shapes of x. (No ties occur in the checks: np.rint is fine.)
    """
    ### BEGIN SOLUTION
    q = np.clip(np.rint(x / delta) + z, 0, 2 ** n - 1).astype(np.int64)
    return q, delta * (q - z)
    ### END SOLUTION

# %%
check("affine_roundtrip", affine_roundtrip)

# %% [markdown]
# ## Real activations: symmetric or asymmetric?
#
# The outputs of the first ReLU of LeNet-300-100 on 1000 training images, and the normalised input pixels. Quantised
# to 4 bits with min–max, the signed symmetric grid spends half its codes on negative numbers that never occur.

# %%
if FAST:
    (xtr, ytr), (xte, yte) = load_dataset("digits")
    rng = np.random.default_rng(0)
    dense = {}
    for name in ("lenet300", "lenet5"):
        dense[name] = models.build(name, 8, rng=rng)
        fit(dense[name], optim.Adam(dense[name].parameters(), lr=1e-3), (xtr, ytr), TrainConfig(10, rng))
else:
    dense_model = runpy.run_path(str(ROOT / "benchmarks" / "common.py"))["dense_model"]  # cached dense nets
    (xtr, ytr), (xte, yte) = load_dataset("fashion-mnist")
    dense = {name: dense_model(name, progress=False) for name in ("lenet300", "lenet5")}
net = dense["lenet300"]
calib = xtr[np.random.default_rng(0).choice(len(xtr), min(1000, len(xtr)), replace=False)]
net(calib, capture=("relu1",))
acts = {"relu1 output": net.features["relu1"], "input pixels": calib}
for label, a in acts.items():
    qs, ds = Q.symmetric_quantize(a, 4)
    qa, da, ra = Q.asymmetric_quantize(a, 4)
    print(f"{label:13s} range [{a.min():.3f}, {a.max():.3f}]   4-bit MSE: symmetric "
          f"{Q.quantization_mse(a, Q.symmetric_dequantize(qs, ds)):.2e}   asymmetric "
          f"{Q.quantization_mse(a, Q.asymmetric_dequantize(qa, da, ra)):.2e}   codes used: "
          f"{len(np.unique(qs))} vs {len(np.unique(qa))} of 15/16")

# %% [markdown]
# ## Step 4: the gradient of a rounding function (LSQ and LSQ+)
#
# With $v = x/\Delta$ and integer bounds $[q_{lo}, q_{hi}]$, the fake quantiser computes
# $\hat x = \Delta\cdot\mathrm{clip}(\mathrm{round}(v), q_{lo}, q_{hi})$. Its true derivative is zero almost everywhere
# in $x$, so training uses surrogates:
#
# * **STE for $x$**: $\partial\hat x/\partial x = 1$ inside the range, $0$ where $x$ is clipped;
# * **LSQ for $\Delta$**: $\partial\hat x/\partial\Delta = \mathrm{round}(v)-v$ inside, the clip bound ($q_{lo}$ or
#   $q_{hi}$) outside — the saw-tooth below. Inside, it says "moving $\Delta$ moves the rounding error"; outside,
#   "a bigger $\Delta$ brings the clipped values closer";
# * **LSQ+ for the offset** $\beta$ (the learned $r_{\min}$): $\partial\hat x/\partial\beta = 0$ inside, $1$ outside.
#
# These are exactly the derivatives of $\Delta\,(\mathrm{clip}((x-\beta)/\Delta) + c)+\beta$ with the rounding residual
# $c$ frozen; `tests/test_quant_fake.py` checks the code against central differences of that function, and,
# where $\hat x$ is really differentiable (clipped values), against the real one. LSQ also scales the $\Delta$
# gradient by $1/\sqrt{N Q_P}$; with Adam this hardly matters (Adam divides by the gradient's own size), but we keep
# it. $\Delta$ is learned as $\log\Delta$: positive by construction.

# %%
aq = Q.ActivationQuantizer(2, "unsigned", grad_scale=False)
aq.set_delta(1.0)
xs = np.linspace(-1, 5, 601).astype(np.float64)
for p in aq.parameters():
    p.data = p.data.astype(np.float64); p.grad = np.zeros_like(p.data)
x_hat = aq.forward(xs)
grads_delta = []
for i in range(len(xs)):                       # per-element ∂x̂/∂Δ, via a one-hot upstream gradient
    aq.forward(xs[i:i + 1]); aq.zero_grad(); aq.backward(np.ones(1))
    grads_delta.append(aq.log_delta.grad[0] / aq.delta[0])
aq.forward(xs); aq.zero_grad(); gx = aq.backward(np.ones_like(xs))
fig, axes = plt.subplots(1, 3, figsize=(13, 3.3))
axes[0].plot(xs, x_hat, label="x̂"); axes[0].plot(xs, xs, "k:", lw=0.8, label="x")
axes[0].set_title("x̂ (2-bit unsigned, Δ = 1)"); axes[0].set_ylabel("x̂")
axes[1].plot(xs, gx, label="∂x̂/∂x"); axes[1].set_title("∂x̂/∂x (STE)"); axes[1].set_ylabel("∂x̂/∂x")
axes[2].plot(xs, grads_delta, label="∂x̂/∂Δ"); axes[2].set_title("∂x̂/∂Δ (LSQ)"); axes[2].set_ylabel("∂x̂/∂Δ")
for ax in axes:
    ax.set_xlabel("x"); ax.grid(alpha=0.3); ax.legend(fontsize=8)
plt.tight_layout()
save(plt.gcf(), "quant_lsq_gradient.png")
plt.show()

# %% [markdown]
# **Exercise — `lsq_delta_grad`.** The gradient that lets Adam learn $\Delta$ (LSQ, Esser et al. 2020): the curve drawn above, for a weight quantiser. Derive it from $\hat w = \Delta\cdot\mathrm{clip}(\mathrm{round}(w/\Delta), -Q, Q)$ with round passed straight through. Write the body of the function
# (in the student edition it only raises `NotImplementedError`); the docstring states the equation and the shapes.
# The cell after it checks your function against numbers worked out by hand.

# %%
def lsq_delta_grad(w, delta, n):
    """LSQ (Esser et al.): the derivative of ŵ = Δ·clip(round(w/Δ), −Q, Q) with respect to Δ, with
    round passed straight through; v = w/Δ, Q = 2^(n−1) − 1:

        ∂ŵ/∂Δ = round(v) − v   if −Q ≤ v ≤ Q,      −Q if v < −Q,      Q if v > Q.

    Returns an array of w's shape.
    """
    ### BEGIN SOLUTION
    Q = 2 ** (n - 1) - 1
    v = w / delta
    return np.where(np.abs(v) <= Q, np.rint(v) - v, np.clip(v, -Q, Q))
    ### END SOLUTION

# %%
check("lsq_delta_grad", lsq_delta_grad)

# %% [markdown]
# ### Adam learns the input's step and offset
#
# A 4-bit asymmetric quantiser on the input image (here on its own, to see it move; the network's other quantisers
# are 8-bit), learned with frozen weights. The offset $\beta$ starts at the observed minimum and $\Delta$ at min–max.
# Adam settles a trade-off on the task loss: a smaller $\Delta$ gives a finer grid but clips the brightest pixels, a
# larger one covers more of the range with coarser steps. The cell prints which way it went: the range the 16 codes
# cover, $[\beta,\ \beta + 15\Delta]$, before and after.

# %%
model = Q.prepare(copy.deepcopy(net), 8, 8, input_kind="asymmetric", options=Q.QuantizerOptions(input_bits=4))
Q.calibrate(model, calib)
qin = model["quant_input"]
print(f"start: Δ = {qin.delta[0]:.4f}, offset β = {qin.offset.data[0]:.4f}, z = {qin.zero_point()[0]},"
      f" accuracy {evaluate(model, xte, yte)['accuracy']:.4f}")
path = [(qin.delta[0], qin.offset.data[0])]
n_train = 3000 if FAST else 20000
Q.train_quantized(model, (xtr[:n_train], ytr[:n_train]), TrainConfig(2 if FAST else 1, np.random.default_rng(2)),
                  lr_quant=1e-2, hooks=[EveryStep(lambda s: path.append((qin.delta[0], qin.offset.data[0])))])
print(f"end:   Δ = {qin.delta[0]:.4f}, offset β = {qin.offset.data[0]:.4f}, z = {qin.zero_point()[0]},"
      f" accuracy {evaluate(model, xte, yte)['accuracy']:.4f}")
path = np.array(path)
(d0, b0), (d1, b1) = path[0], path[-1]
print(f"covered range [{b0:.3f}, {b0 + 15 * d0:.3f}] → [{b1:.3f}, {b1 + 15 * d1:.3f}]: Δ {d1 / d0 - 1:+.1%}, "
      f"a {'coarser' if d1 > d0 else 'finer'} grid over a {'wider' if d1 > d0 else 'narrower'} range")
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
axes[0].plot(path[:, 0], label="Δ"); axes[0].set_title("input Δ under Adam"); axes[0].set_xlabel("Adam step")
axes[0].set_ylabel("Δ"); axes[0].legend()
axes[1].plot(path[:, 1], color="C1", label="β"); axes[1].set_title("input offset β under Adam")
axes[1].set_xlabel("Adam step"); axes[1].set_ylabel("β"); axes[1].legend()
plt.tight_layout(); plt.show()

# %% [markdown]
# ## Accuracy against bits: PTQ, learned $\Delta$, QAT
#
# * **PTQ (min–max)**: the document's $\Delta$ from the calibration data, nothing trained.
# * **PTQ + learned Δ**: Adam on the steps only (weights frozen), §3.2.1 step 4 taken literally.
# * **QAT, fixed Δ**: weights trained through min–max quantisers whose $\Delta$ stays fixed.
# * **QAT + learned Δ** (our LSQ): weights and steps trained together.
#
# Full mode reads the Fashion-MNIST numbers measured by `benchmarks/quant_table.py` (the benchmark protocol); fast mode
# measures a small version on the digits here. Where some points collapse to chance (10 classes: accuracy ≈ 0.1), the
# y axis is broken in two: the tall upper part holds the points near the float accuracy, the strip below those near
# chance, each at its own scale, so that every point is drawn.

# %%
LABELS = {"ptq-minmax": "PTQ (min–max)", "ptq-learned": "PTQ + learned Δ", "qat-fixed": "QAT, fixed Δ",
          "qat-learned": "QAT + learned Δ", "qat-learned-fullrange": "QAT + learned Δ, 2-bit {−2..1}"}

def digits_rows(name):
    rows = []
    for row, bits_list, kw, train in [
            ("ptq-minmax", (8, 4, 3, 2), {}, None),
            ("ptq-learned", (8, 4, 3, 2), {"method": "mse"}, dict(lr_quant=1e-2)),          # 3 epochs each
            ("qat-fixed", (4, 3, 2), {"learn": False}, dict(lr_weights=1e-3)),
            ("qat-learned", (4, 3, 2), {"method": "mse"}, dict(lr_weights=1e-3, lr_quant=1e-2))]:
        for b in bits_list:
            m = Q.prepare(copy.deepcopy(dense[name]), b, b, input_kind="asymmetric",
                          options=Q.QuantizerOptions(learn_delta=kw.get("learn", True)))
            Q.calibrate(m, calib, method=kw.get("method", "minmax"), weight_method=kw.get("method", "minmax"))
            if train:
                Q.train_quantized(m, (xtr, ytr), TrainConfig(3, np.random.default_rng(0)), **train)
            rows.append({"row": row, "bits": b, "accuracy": evaluate(m, xte, yte)["accuracy"]})
    return rows

results = {}
for name in ("lenet300", "lenet5"):
    if FAST:
        results[name] = (evaluate(dense[name], xte, yte)["accuracy"], digits_rows(name))
        continue
    rows, fl = [], None
    p = ROOT / "benchmarks" / "results" / f"quant_table_{name}.json"    # made by benchmarks/quant_table.py
    if p.exists():
        r = json.loads(p.read_text()); rows, fl = r["rows"], r["float_accuracy"]
    results[name] = (fl, rows)

def split_at_largest_gap(values, min_gap=0.15):
    """(low, high): the sorted values below and above the largest gap between neighbours, when that gap
    exceeds min_gap (then a broken y axis shows both groups at a readable scale); else (empty, all)."""
    v = np.sort(np.asarray(values, dtype=float))
    k = int(np.argmax(np.diff(v))) + 1 if len(v) > 1 else 0
    if k == 0 or v[k] - v[k - 1] <= min_gap:
        return v[:0], v
    return v[:k], v[k:]

def limits(v):
    """y limits around the values v, with a margin so that no marker is cut."""
    pad = max(0.01, 0.08 * (v.max() - v.min()))
    return v.min() - pad, v.max() + pad

def draw_rows(ax, rows, fl):
    for i, (key, label) in enumerate(LABELS.items()):   # earlier rows get bigger markers: equal points stay visible
        pts = sorted((r["bits"], r["accuracy"]) for r in rows if r["row"] == key)
        if pts:
            ax.plot(*zip(*pts), "o-", ms=9 - 1.2 * i, label=label)
    if fl is not None:
        ax.axhline(fl, color="k", ls=":", label="float")
    ax.grid(alpha=0.3)

fig = plt.figure(figsize=(12, 5))
grid = fig.add_gridspec(2, 2, height_ratios=(3, 1), hspace=0.06, wspace=0.2, left=0.07, right=0.98, bottom=0.1, top=0.93)
for col, (name, (fl, rows)) in enumerate(results.items()):
    drawn = [r["accuracy"] for r in rows if r["row"] in LABELS] + ([fl] if fl is not None else [])
    low, high = split_at_largest_gap(drawn)
    top = fig.add_subplot(grid[0, col]) if len(low) else fig.add_subplot(grid[:, col])
    draw_rows(top, rows, fl)
    top.set_ylim(*limits(high)); top.set_title(name); top.set_ylabel("test accuracy")
    top.legend(fontsize=7, loc="lower right")
    bottom = top
    if len(low):   # broken axis: the points near chance (10 classes: 0.1) get their own strip below
        bottom = fig.add_subplot(grid[1, col], sharex=top)
        draw_rows(bottom, rows, fl)
        bottom.set_ylim(*limits(low))
        top.spines["bottom"].set_visible(False); bottom.spines["top"].set_visible(False)
        top.tick_params(bottom=False, labelbottom=False)
        cut = dict(marker=[(-1, -0.5), (1, 0.5)], ms=10, ls="none", color="k", mew=1, clip_on=False)
        top.plot([0, 1], [0, 0], transform=top.transAxes, **cut)
        bottom.plot([0, 1], [1, 1], transform=bottom.transAxes, **cut)
    bottom.set_xlabel("bits (weights and activations)")
save(fig, "quant_accuracy_vs_bits.png")
plt.show()
for name, (fl, rows) in results.items():
    print(name, "float", fl)
    for r in rows:
        print(f"   {r['row']:24s} {r['bits']}-bit {100 * r['accuracy']:6.2f} %")

# %% [markdown]
# ## Step 5: the integer model, one neuron traced
#
# `convert` produces an `IntegerModel`. Take the 4-bit LeNet-300-100 and follow one neuron of `fc2` (the most active
# one) on one test image:
# its 300 inputs arrive as 4-bit unsigned codes $q_x$ (the grid of `relu1_quant`), its weights are 4-bit signed codes
# $q_w$, and everything real has been folded into one integer multiplier:
#
# $$\text{acc} = \sum_k q_w[k]\,(q_x[k]-z_x) + q_b,\qquad q_y = \mathrm{clip}\big(((\text{acc}\cdot M_0 + 2^{s-1}) \gg s) + z_y,\ z_y,\ 2^n-1\big)$$
#
# with $M = \Delta_w\Delta_x/\Delta_y = 2^{-s}M_0$ (Jacob et al. 2018). The lower clip bound $z_y$ *is* the ReLU.

# %%
m4 = Q.prepare(copy.deepcopy(net), 4, 4, input_kind="asymmetric")
Q.calibrate(m4, calib)
im = Q.convert(m4)
print(im)
x1 = xte[:1]
codes = x1
for step in im.steps:                       # run the integer model up to the input of fc2
    if step.kind == "linear" and step.q_w.shape[1] == 300:
        layer = step
        break
    codes = step.run(codes)
j = int(layer.run(codes)[0].argmax())         # the most active neuron of fc2 for this image
print("neuron", j)
q_x, q_w, q_b = codes[0].astype(np.int64), layer.q_w[j].astype(np.int64), int(layer.q_b[j])
acc = int(q_w @ (q_x - layer.in_zero)) + q_b
m0, s = int(layer.out["m0"][j]), int(layer.out["shift"][j])
q_y = min(max(((acc * m0 + (1 << (s - 1))) >> s) + layer.out["out_zero"], layer.out["out_lo"]),
          layer.out["out_hi"])
print(f"q_x (first 12 of 300): {q_x[:12]}   z_x = {layer.in_zero}")
print(f"q_w (first 12 of 300): {q_w[:12]}")
print(f"Σ q_w (q_x − z_x) = {acc - q_b},  q_b = round(b / (Δ_w Δ_x)) = {q_b},  acc = {acc}")
M = float(layer.w_delta[j]) * float(layer.in_delta) / float(layer.out["out_delta"])
print(f"M = Δ_w Δ_x / Δ_y = {M:.8f} = M₀·2^−s with M₀ = {m0}, s = {s}  (M₀·2^−s = {m0 * 2.0 ** -s:.8f})")
print(f"q_y = clip(((acc·M₀ + 2^(s−1)) >> s) + z_y) = {q_y}")
assert q_y == layer.run(codes)[0, j]
m4.eval(); m4(x1, capture=("relu2_quant",))
fake = m4.features["relu2_quant"][0, j]
print(f"fake-quantised model: x̂ = {fake:.6f} = Δ_y · {fake / m4['relu2_quant'].delta[0]:.4f}")

# %% [markdown]
# **Exercise — `quantize_multiplier`.** The integer model cannot multiply by a real number $M = \Delta_w\Delta_x/\Delta_y$; it multiplies by an integer $M_0$ and shifts right. Write the body of the function
# (in the student edition it only raises `NotImplementedError`); the docstring states the equation and the shapes.
# The cell after it checks your function against numbers worked out by hand.

# %%
def quantize_multiplier(M, bits):
    """A real multiplier M > 0 as an integer and a shift: M ≈ M₀·2^(−shift) with M₀ an integer in
    [2^(b−1), 2^b), b = bits. Write M = f·2^e with f ∈ [0.5, 1) (np.frexp); M₀ = round(f·2^b),
    shift = b − e. Returns (M₀, shift), two ints. (No case of the check rounds f·2^b up to 2^b.)
    """
    ### BEGIN SOLUTION
    f, e = np.frexp(M)
    return int(np.rint(f * 2 ** bits)), int(bits - e)
    ### END SOLUTION

# %%
check("quantize_multiplier", quantize_multiplier)

# %% [markdown]
# **Exercise — `requantize`.** With that $M_0$ and shift, the accumulator of the neuron traced above becomes an output code. Write the body of the function
# (in the student edition it only raises `NotImplementedError`); the docstring states the equation and the shapes.
# The cell after it checks your function against numbers worked out by hand.

# %%
def requantize(acc, M0, shift, z, q_lo, q_hi):
    """Integer requantisation (§3.2.1 step 6): an int32/int64 accumulator acc times M = M₀·2^(−shift),
    rounded half up by adding 2^(shift−1) before the arithmetic shift, plus the output zero point:

        q_y = clip(((acc·M₀ + 2^(shift−1)) >> shift) + z, q_lo, q_hi)

    Integers only (int64). Returns q_y, shape of acc.
    """
    ### BEGIN SOLUTION
    acc = np.asarray(acc, dtype=np.int64)
    out = (acc * M0 + (1 << (shift - 1))) >> shift
    return np.clip(out + z, q_lo, q_hi)
    ### END SOLUTION

# %%
check("requantize", requantize)

# %%
agree = (im.predict(xte) == predict(m4, xte).argmax(1)).mean()
print(f"4-bit integer model: agreement with the fake-quantised model {100 * agree:.2f} %, "
      f"accuracy {100 * (im.predict(xte) == yte).mean():.2f} %")
arrays = im.to_arrays()
print(f"{len(arrays)} plain arrays, {im.nbytes():,} bytes ({im.weight_bytes():,} of packed weights) vs "
      f"{im.float_bytes:,} float32 bytes → {im.nbytes() / im.float_bytes:.4f} (4/32 = 0.125)")
for k in list(arrays)[:12]:
    print(f"   {k:32s} {arrays[k].dtype}  {arrays[k].shape}")

# %% [markdown]
# ## Things to try, and questions
#
# 1. **Zero point sign.** Use $z = \mathrm{round}(r_{\min}/\Delta)$ (wrong sign) in the small example. Which real
#    value does the code $z$ then stand for? Is 0.0 still exact?
# 2. **LSQ by finite differences.** Check your `lsq_delta_grad` against $(\hat w(\Delta+h) - \hat w(\Delta-h))/2h$ for a
#    weight inside the range and one outside. Where do they disagree, and why is that expected?
# 3. **Fewer bits for M₀.** Requantise the traced neuron with `bits=8` in `quantize_multiplier` instead of 27. How many
#    output codes change?
#    **Question:** why is $z$ an integer, when the document's $r_{\min}$ is a real number?
