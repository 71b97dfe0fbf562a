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
# * "Asymmetric quantisation can represent a larger range": both kinds spread $2^n$ (or $2^n-1$) levels over an
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
import matplotlib.pyplot as plt
ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
from minicompress import models, optim
from minicompress.data import load_dataset
from minicompress.train import fit, evaluate, predict
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
        fit(dense[name], optim.Adam(dense[name].parameters(), lr=1e-3), (xtr, ytr), epochs=10, rng=rng,
            progress=False)
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
axes[0].plot(xs, x_hat); axes[0].plot(xs, xs, "k:", lw=0.8); axes[0].set_title("x̂ (2-bit unsigned, Δ = 1)")
axes[1].plot(xs, gx); axes[1].set_title("∂x̂/∂x (STE)")
axes[2].plot(xs, grads_delta); axes[2].set_title("∂x̂/∂Δ (LSQ)")
for ax in axes:
    ax.set_xlabel("x"); ax.grid(alpha=0.3)
plt.tight_layout()
save(plt.gcf(), "quant_lsq_gradient.png")
plt.show()

# %% [markdown]
# ### Adam learns the input's step and offset
#
# A 4-bit asymmetric quantiser on the input image (here on its own, to see it move; the network's other quantisers
# are 8-bit), learned with frozen weights. The offset $\beta$ starts at the observed minimum and $\Delta$ at min–max;
# Adam trades clipping of the brightest pixels for a finer grid.

# %%
model = Q.prepare(copy.deepcopy(net), 8, 8, input_kind="asymmetric", input_bits=4)
Q.calibrate(model, calib)
qin = model["quant_input"]
print(f"start: Δ = {qin.delta[0]:.4f}, offset β = {qin.offset.data[0]:.4f}, z = {qin.zero_point()[0]},"
      f" accuracy {evaluate(model, xte, yte)['accuracy']:.4f}")
path = [(qin.delta[0], qin.offset.data[0])]
n_train = 3000 if FAST else 20000
Q.train_quantized(model, (xtr[:n_train], ytr[:n_train]), epochs=2 if FAST else 1, lr_quant=1e-2,
                  rng=np.random.default_rng(2), on_step=lambda s: path.append((qin.delta[0], qin.offset.data[0])))
print(f"end:   Δ = {qin.delta[0]:.4f}, offset β = {qin.offset.data[0]:.4f}, z = {qin.zero_point()[0]},"
      f" accuracy {evaluate(model, xte, yte)['accuracy']:.4f}")
path = np.array(path)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
axes[0].plot(path[:, 0]); axes[0].set_title("input Δ under Adam"); axes[0].set_xlabel("step")
axes[1].plot(path[:, 1]); axes[1].set_title("input offset β under Adam"); axes[1].set_xlabel("step")
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
# measures a small version on the digits here.

# %%
LABELS = {"ptq-minmax": "PTQ (min–max)", "ptq-learned": "PTQ + learned Δ", "qat-fixed": "QAT, fixed Δ",
          "qat-learned": "QAT + learned Δ", "qat-learned-fullrange": "QAT + learned Δ, 2-bit {−2..1}"}

def digits_rows(name):
    rows = []
    for row, bits_list, kw, train in [
            ("ptq-minmax", (8, 4, 3, 2), {}, None),
            ("ptq-learned", (8, 4, 3, 2), {"method": "mse"}, dict(epochs=3, lr_quant=1e-2)),
            ("qat-fixed", (4, 3, 2), {"learn": False}, dict(epochs=3, lr_weights=1e-3)),
            ("qat-learned", (4, 3, 2), {"method": "mse"}, dict(epochs=3, lr_weights=1e-3, lr_quant=1e-2))]:
        for b in bits_list:
            m = Q.prepare(copy.deepcopy(dense[name]), b, b, input_kind="asymmetric",
                          learn_delta=kw.get("learn", True))
            Q.calibrate(m, calib, method=kw.get("method", "minmax"), weight_method=kw.get("method", "minmax"))
            if train:
                Q.train_quantized(m, (xtr, ytr), rng=np.random.default_rng(0), **train)
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

fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for ax, (name, (fl, rows)) in zip(axes, results.items()):
    for key, label in LABELS.items():
        pts = sorted((r["bits"], r["accuracy"]) for r in rows if r["row"] == key)
        if pts:
            ax.plot(*zip(*pts), "o-", label=label)
    if fl is not None:
        ax.axhline(fl, color="k", ls=":", label="float")
    ax.set_ylim(max(0.0, (fl or 1) - 0.12), (fl or 1) + 0.02)
    ax.set_xlabel("bits (weights and activations)"); ax.set_ylabel("test accuracy"); ax.set_title(name)
    ax.grid(alpha=0.3)
axes[0].legend(fontsize=8)
plt.tight_layout()
save(plt.gcf(), "quant_accuracy_vs_bits.png")
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

# %%
agree = (im.predict(xte) == predict(m4, xte).argmax(1)).mean()
print(f"4-bit integer model: agreement with the fake-quantised model {100 * agree:.2f} %, "
      f"accuracy {100 * (im.predict(xte) == yte).mean():.2f} %")
arrays = im.to_arrays()
print(f"{len(arrays)} plain arrays, {im.nbytes():,} bytes ({im.weight_bytes():,} of packed weights) vs "
      f"{im.float_bytes:,} float32 bytes → {im.nbytes() / im.float_bytes:.4f} (4/32 = 0.125)")
for k in list(arrays)[:12]:
    print(f"   {k:32s} {arrays[k].dtype}  {arrays[k].shape}")
