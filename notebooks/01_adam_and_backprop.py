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
# # Adam — Adam优化算法, §2.1
#
# Every compression method in this project is trained by one optimizer: Adam. A pruning-mask score, a quantizer's
# step size Δ and an ordinary layer weight are all `Parameter`s, and one `Adam` updates them with the same five
# lines. This notebook takes those five lines apart:
#
# 1. the five equations on a toy problem, with every intermediate number printed;
# 2. why the bias correction is there (m and m̂ over the first steps);
# 3. Adam against plain gradient descent on an ill-conditioned quadratic, and on LeNet-300-100;
# 4. how we know that the hand-written backward passes (the gradients Adam consumes) are right: a gradient check.
#
# Code: `minicompress/optim.py` (`Adam`, `SGD`), `minicompress/nn/` (layers with hand-written `backward`).
# Tests: `tests/test_adam.py` (values worked out by hand), `tests/test_torch_oracle.py` (200 steps against
# `torch.optim.Adam`), `tests/test_layers_gradcheck.py`.

# %%
import os, time
from pathlib import Path
import numpy as np
from minicompress.check import check
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
from minicompress import models, nn, optim
from minicompress.nn import Parameter
from minicompress.data import load_dataset
from minicompress.train import TrainConfig, fit, evaluate

FAST = os.environ.get("MINICOMPRESS_FAST") == "1"
print("fast mode (8x8 digits, few epochs)" if FAST else "full mode (Fashion-MNIST)")

FIGURES = os.environ.get("MINICOMPRESS_FIGURES")  # if set, a folder to also save the figures in

def save(fig, name):
    if FIGURES:
        fig.savefig(Path(FIGURES) / name, dpi=110, bbox_inches="tight")


# %% [markdown]
# ## 1. The five equations
#
# With $g_t$ the gradient at step $t = 1, 2, \dots$ and $m_0 = v_0 = 0$:
#
# $$
# \begin{aligned}
# m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, g_t &&\text{running mean of the gradient (first moment)}\\
# v_t &= \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2 &&\text{running mean of its square (second moment), element-wise}\\
# \hat m_t &= m_t / (1-\beta_1^t) &&\text{bias correction}\\
# \hat v_t &= v_t / (1-\beta_2^t) &&\\
# \theta_{t+1} &= \theta_t - \alpha\, \hat m_t / (\sqrt{\hat v_t} + \epsilon) &&\text{the step}
# \end{aligned}
# $$
#
# The last line is the whole idea: each coordinate is moved by about $\alpha$ times "mean gradient divided by
# typical gradient size". A coordinate whose gradients are tiny but consistent moves as fast as one whose gradients
# are huge; a coordinate whose gradient keeps flipping sign moves little.
#
# **What the document leaves out, and what we do.** §2.1 writes the equations correctly but does not say that
# $m_0 = v_0 = 0$ and that $t$ starts at 1 (the bias correction only makes sense with both), that the square is
# element-wise, or what $\beta_1, \beta_2, \epsilon$ usually are. We use Kingma & Ba's defaults
# $\beta_1 = 0.9,\ \beta_2 = 0.999,\ \epsilon = 10^{-8}$, keep $\epsilon$ *outside* the square root as the document
# writes it (PyTorch does the same), and add no weight decay. The document calls $\alpha$ the "initial" learning
# rate (初始学习率); in these equations it is simply the step size — nothing changes it unless a schedule is added on top.
# It also calls $m_t$, $v_t$ unbiased estimates (计算梯度的指数加权无偏估计); they are not — $\hat m_t$, $\hat v_t$ are (for gradients
# with a steady mean), which is what section 2 below shows.
#
# Below, a scalar $\theta$ on $f(\theta) = \tfrac12(\theta-3)^2 \cdot 10$ (gradient $g = 10(\theta - 3)$), computed by
# hand in float64 and then by `minicompress.optim.Adam`.

# %%
alpha, b1, b2, eps = 0.5, 0.9, 0.999, 1e-8
grad_f = lambda theta: 10.0 * (theta - 3.0)

theta, m, v = 0.0, 0.0, 0.0
by_hand = []
print(f"{'t':>2} {'g_t':>9} {'m_t':>9} {'v_t':>10} {'m̂_t':>9} {'v̂_t':>9} {'step':>8} {'θ_t+1':>8}")
for t in range(1, 7):
    g = grad_f(theta)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat = m / (1 - b1 ** t)
    v_hat = v / (1 - b2 ** t)
    step = alpha * m_hat / (np.sqrt(v_hat) + eps)
    theta = theta - step
    by_hand.append(theta)
    print(f"{t:2d} {g:9.4f} {m:9.4f} {v:10.5f} {m_hat:9.4f} {v_hat:9.4f} {step:8.4f} {theta:8.4f}")

# the same with the library (float32)
p = Parameter(np.zeros(1))
opt = optim.Adam([p], lr=alpha, betas=(b1, b2), eps=eps)
ours = []
for t in range(6):
    p.grad[...] = grad_f(p.data)
    opt.step()
    ours.append(p.data.item())
print("\nminicompress.optim.Adam:", np.round(ours, 4))
assert np.allclose(ours, by_hand, atol=1e-5)

# %% [markdown]
# Read the first row: $m_1 = 0.1\,g_1$ and $v_1 = 0.001\,g_1^2$ are far from $g_1$ and $g_1^2$, but after dividing by
# $1-\beta_1 = 0.1$ and $1-\beta_2 = 0.001$, $\hat m_1 = g_1$ and $\hat v_1 = g_1^2$ exactly, so the first step is
# $\alpha\,g_1/|g_1| = \alpha\,\mathrm{sign}(g_1)$ (up to ε): **the size of the first step does not depend on the size
# of the gradient.** The next steps stay close to $\alpha$ while the gradients keep the same sign: they shrink only
# slowly (from $0.5$ to about $0.42$ in the six rows), because $\hat m_t$ and $\sqrt{\hat v_t}$ both shrink with the
# gradient. The six steps have not yet reached the minimum at 3; once $\theta$ passes it, the gradient's sign flips,
# $m_t$ has to turn round, and the steps shrink fast (*Try* 1 below).

# %% [markdown]
# **Exercise — `adam_moments`.** The two running means of §2.1. Write them for a scalar or an array (NumPy's `*` is element-wise). Write the body of the function
# (in the student edition it only raises `NotImplementedError`); the docstring states the equation and the shapes.
# The cell after it checks your function against numbers worked out by hand.

# %%
def adam_moments(m, v, g, beta1, beta2):
    """Adam's running moments, one step (§2.1), element-wise; every argument a float or an array of θ's shape.

        m_t = β₁·m_{t−1} + (1 − β₁)·g_t        (first moment: running mean of the gradient)
        v_t = β₂·v_{t−1} + (1 − β₂)·g_t²       (second moment: running mean of its square)

    Returns (m_t, v_t), shapes of g.
    """
    ### BEGIN SOLUTION
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    return m, v
    ### END SOLUTION

# %%
check("adam_moments", adam_moments)

# %% [markdown]
# **Exercise — `bias_correction`.** Divide by $1-\beta^t$. At $t=1$ this turns $m_1 = 0.1\,g_1$ back into $g_1$ (the first row of the table above). Write the body of the function
# (in the student edition it only raises `NotImplementedError`); the docstring states the equation and the shapes.
# The cell after it checks your function against numbers worked out by hand.

# %%
def bias_correction(m, v, beta1, beta2, t):
    """Bias correction at step t = 1, 2, … (m₀ = v₀ = 0):

        m̂_t = m_t / (1 − β₁^t),    v̂_t = v_t / (1 − β₂^t)

    Returns (m̂_t, v̂_t), shapes of m and v.
    """
    ### BEGIN SOLUTION
    return m / (1 - beta1 ** t), v / (1 - beta2 ** t)
    ### END SOLUTION

# %%
check("bias_correction", bias_correction)

# %% [markdown]
# **Exercise — `adam_update`.** The step itself. Keep $\epsilon$ *outside* the square root, as the document and PyTorch write it; the check uses a large $\epsilon$ so that the difference shows. Write the body of the function
# (in the student edition it only raises `NotImplementedError`); the docstring states the equation and the shapes.
# The cell after it checks your function against numbers worked out by hand.

# %%
def adam_update(theta, m_hat, v_hat, alpha, eps):
    """The step: θ_{t+1} = θ_t − α · m̂_t / (√v̂_t + ε), with ε outside the square root as the
    document writes it. Returns θ_{t+1}, shape of θ.
    """
    ### BEGIN SOLUTION
    return theta - alpha * m_hat / (np.sqrt(v_hat) + eps)
    ### END SOLUTION

# %%
check("adam_update", adam_update)

# %% [markdown]
# ## 2. Why bias correction matters
#
# Because $m_0 = 0$, the running mean starts at zero and needs about $1/(1-\beta_1) = 10$ steps to forget that start;
# $v$ needs about $1/(1-\beta_2) = 1000$. Unrolled, $m_t = (1-\beta_1)\sum_{i\le t}\beta_1^{t-i} g_i$, whose weights
# sum to $1-\beta_1^t$, not 1 — dividing by exactly that sum is the correction.
#
# Left: a noisy gradient with mean 1; $m_t$ creeps up from 0, $\hat m_t$ is on target from the first step.
# Right: the size of the step, in units of $\alpha$, with and without the correction. Without it, the first
# step is already $(1-\beta_1)/\sqrt{1-\beta_2} \approx 3.2$ times too large, and the next ones grow to about 6 times
# as $m$ catches up while $v$ still lags (it needs ~1000 steps); they stay too large for hundreds of steps —
# exactly when the weights are freshest, which is why Adam without the correction can blow up early.

# %%
rng = np.random.default_rng(0)
T = 200
g = 1.0 + 0.5 * rng.standard_normal(T)
m = v = 0.0
ms, m_hats, step_corr, step_raw = [], [], [], []
for t in range(1, T + 1):
    m = b1 * m + (1 - b1) * g[t - 1]
    v = b2 * v + (1 - b2) * g[t - 1] ** 2
    m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
    ms.append(m); m_hats.append(m_hat)
    step_corr.append(m_hat / (np.sqrt(v_hat) + eps))
    step_raw.append(m / (np.sqrt(v) + eps))

fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
steps = np.arange(1, T + 1)
ax[0].plot(steps[:50], g[:50], ".", color="0.6", label="$g_t$ (mean 1)")
ax[0].plot(steps[:50], ms[:50], label="$m_t$ (no correction)")
ax[0].plot(steps[:50], m_hats[:50], label=r"$\hat m_t = m_t/(1-\beta_1^t)$")
ax[0].axhline(1, color="k", lw=0.8, ls="--")
ax[0].set_xlabel("step t"); ax[0].set_ylabel("gradient, moment")
ax[0].set_title("first moment over the first 50 steps"); ax[0].legend()
ax[1].plot(steps, step_raw, label=r"$m_t/(\sqrt{v_t}+\epsilon)$  no correction")
ax[1].plot(steps, step_corr, label=r"$\hat m_t/(\sqrt{\hat v_t}+\epsilon)$  Adam")
ax[1].set_xlabel("step t"); ax[1].set_ylabel(r"step / $\alpha$"); ax[1].set_title("step size")
ax[1].legend()
fig.tight_layout(); save(fig, "adam_bias_correction.png"); plt.show()
print(f"step 1: corrected {step_corr[0]:.3f}·α, uncorrected {step_raw[0]:.3f}·α "
      f"(expected (1-β1)/sqrt(1-β2) = {(1 - b1) / np.sqrt(1 - b2):.3f})")

# %% [markdown]
# ## 3a. Adam vs gradient descent on an ill-conditioned quadratic
#
# $f(x, y) = \tfrac12 (x^2 + 50\,y^2)$: curvature 1 along $x$, 50 along $y$ (condition number 50). Gradient descent
# must keep its learning rate below $2/50$ or the $y$ direction diverges, and with such a small rate the $x$
# direction crawls. Adam divides each coordinate by its own gradient scale, so both move at about $\alpha$ per step.
# Same number of steps (150) for each; the learning rates are each method's reasonable best, not tuned to make a point.

# %%
curv = np.array([1.0, 50.0])
f = lambda z: 0.5 * np.sum(curv * z ** 2)
start = np.array([-4.0, 1.5])

def run(make_opt, steps=150):
    p = Parameter(start.copy())
    p.data = p.data.astype(np.float64); p.grad = np.zeros_like(p.data)
    opt = make_opt([p])
    path = [p.data.copy()]
    for _ in range(steps):
        p.grad[...] = curv * p.data
        opt.step()
        path.append(p.data.copy())
    return np.array(path)

runs = {
    "SGD, lr 0.035 (just under 2/50)": run(lambda ps: optim.SGD(ps, lr=0.035)),
    "SGD + momentum 0.9, lr 0.01": run(lambda ps: optim.SGD(ps, lr=0.01, momentum=0.9)),
    "Adam, lr 0.1": run(lambda ps: optim.Adam(ps, lr=0.1)),
}
fig, ax = plt.subplots(1, 2, figsize=(12, 4.2))
X, Y = np.meshgrid(np.linspace(-4.5, 1.5, 200), np.linspace(-2, 2, 200))
ax[0].contour(X, Y, 0.5 * (X ** 2 + 50 * Y ** 2), levels=np.geomspace(0.01, 100, 14), colors="0.8")
for label, path in runs.items():
    ax[0].plot(path[:, 0], path[:, 1], ".-", ms=3, lw=1, label=label)
    ax[1].semilogy([f(z) + 1e-16 for z in path], label=label)
ax[0].plot(0, 0, "k*", ms=10, label="minimum"); ax[0].set_title("trajectories from (-4, 1.5)")
ax[0].set_xlabel("x"); ax[0].set_ylabel("y"); ax[0].legend(fontsize=8)
ax[1].set_xlabel("step"); ax[1].set_ylabel("f"); ax[1].set_title("loss"); ax[1].legend(fontsize=8)
fig.tight_layout(); save(fig, "adam_vs_sgd_quadratic.png"); plt.show()
for label, path in runs.items():
    print(f"{label:34s} f after 150 steps = {f(path[-1]):.2e}")

# %% [markdown]
# What the numbers show, honestly. Adam's early steps are about α in *each* coordinate, so it first moves
# diagonally and reaches the bottom of the valley quickly; near the minimum it hovers at a scale set by α, because
# $\hat m/\sqrt{\hat v}$ stays of order 1 while the gradient flips sign. Plain gradient descent, held back by the
# stiff $y$ direction, ends more than an order of magnitude higher. But gradient descent *with momentum* does as
# well as Adam or better (both oscillate; which one is lower at step 150 is partly luck of the phase): on a smooth
# quadratic Adam is not the only good tool. Adam's per-coordinate scaling helps most when the stiff
# directions line up with the coordinate axes, as here. The cell below rotates the same valley by 45°: now no
# coordinate is "the stiff one", Adam's normalisation no longer matches the valley, and after 150 steps it is far
# behind both SGD variants. The document's claim that Adam converges "faster and more robustly" (Adam具有更快的收敛速度和更好的鲁棒性) is a tendency on
# neural-network losses (next section), not a theorem.

# %%
R = np.array([[np.cos(np.pi / 4), -np.sin(np.pi / 4)], [np.sin(np.pi / 4), np.cos(np.pi / 4)]])
H = R @ np.diag(curv) @ R.T          # the same valley, rotated by 45°
def run_rot(make_opt, steps=150):
    p = Parameter(start.copy()); p.data = p.data.astype(np.float64); p.grad = np.zeros_like(p.data)
    opt = make_opt([p])
    for _ in range(steps):
        p.grad[...] = H @ p.data
        opt.step()
    return 0.5 * p.data @ H @ p.data
for label, mk in [("SGD, lr 0.035", lambda ps: optim.SGD(ps, lr=0.035)),
                  ("SGD + momentum 0.9, lr 0.01", lambda ps: optim.SGD(ps, lr=0.01, momentum=0.9)),
                  ("Adam, lr 0.1", lambda ps: optim.Adam(ps, lr=0.1))]:
    print(f"rotated valley, {label:28s} f after 150 steps = {run_rot(mk):.2e}")

# %% [markdown]
# ## 3b. Adam vs SGD on LeNet-300-100
#
# The real use: LeNet-300-100 (784-300-100-10, ReLU) on Fashion-MNIST (in fast mode: the 8x8 digits), batch 128,
# same initial weights and the same batch order for every optimizer. Adam uses the default α = 10⁻³; SGD gets
# a learning rate 100 times larger (SGD with momentum 10 times larger), as is usual for them.

# %%
data_name, size = ("digits", 8) if FAST else ("fashion-mnist", 28)
(xtr, ytr), (xte, yte) = load_dataset(data_name)
epochs = 8 if FAST else 5
setups = {
    "Adam, α=1e-3": lambda ps: optim.Adam(ps, lr=1e-3),
    "SGD, lr=0.1": lambda ps: optim.SGD(ps, lr=0.1),
    "SGD + momentum 0.9, lr=0.01": lambda ps: optim.SGD(ps, lr=0.01, momentum=0.9),
}
histories = {}
for label, make in setups.items():
    model = models.lenet300(size, rng=np.random.default_rng(0))   # same initial weights
    t0 = time.perf_counter()
    histories[label] = fit(model, make(model.parameters()), (xtr, ytr),
                           TrainConfig(epochs, np.random.default_rng(1), batch_size=128), eval_data=(xte, yte))
    h = histories[label][-1]
    print(f"{label:30s} test accuracy after {epochs} epochs: {100 * h['test_accuracy']:.2f} %  "
          f"({time.perf_counter() - t0:.1f} s)")

fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
for label, hist in histories.items():
    ep = [r["epoch"] for r in hist]
    ax[0].plot(ep, [r["train_loss"] for r in hist], "o-", label=label)
    ax[1].plot(ep, [100 * r["test_accuracy"] for r in hist], "o-", label=label)
ax[0].set_xlabel("epoch"); ax[0].set_ylabel("training loss"); ax[0].legend(); ax[0].set_title("training loss")
ax[1].set_xlabel("epoch"); ax[1].set_ylabel("test accuracy (%)"); ax[1].legend(); ax[1].set_title("test accuracy")
for a in ax:
    a.xaxis.set_major_locator(MaxNLocator(integer=True))   # epochs are whole numbers
fig.suptitle(f"LeNet-300-100 on {data_name}")
fig.tight_layout(); save(fig, "adam_vs_sgd_lenet300.png"); plt.show()

# %% [markdown]
# ## 4. Backprop, and how we know the gradients are right
#
# There is no autograd here: every layer has a `forward` and a hand-written `backward` that returns $\partial L/\partial x$
# and *adds* $\partial L/\partial\theta$ into each Parameter's `.grad` — the $g_t$ Adam consumes. A wrong backward would
# still "train" a little, so each one is checked against central differences,
# $\partial L/\partial w \approx \big(L(w+h) - L(w-h)\big)/2h$, in float64. Here for a convolution with stride 2 and
# padding 1 (the im2col/col2im bookkeeping is where mistakes hide), with the scalar loss $L = \sum y \odot r$ for a
# fixed random $r$, so that $\partial L/\partial y = r$.

# %%
rng = np.random.default_rng(0)
conv = nn.Conv2d(2, 3, 3, stride=2, padding=1, rng=rng)
for p in conv.parameters():                      # float64 for the check
    p.data = p.data.astype(np.float64); p.grad = np.zeros_like(p.data)
x = rng.standard_normal((2, 2, 7, 6))
r = rng.standard_normal(conv(x).shape)

conv.zero_grad()
conv.forward(x)
dx = conv.backward(r)                            # hand-written backward
L = lambda: float(np.sum(conv.forward(x) * r))

def numerical(arr, h=1e-6):
    out = np.zeros_like(arr)
    for i in np.ndindex(arr.shape):
        old = arr[i]
        arr[i] = old + h; lp = L()
        arr[i] = old - h; lm = L()
        arr[i] = old
        out[i] = (lp - lm) / (2 * h)
    return out

rel = lambda a, b: np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b)))
print(f"∂L/∂x      max relative error {rel(dx, numerical(x)):.1e}")
print(f"∂L/∂weight max relative error {rel(conv.weight.grad, numerical(conv.weight.data)):.1e}")
print(f"∂L/∂bias   max relative error {rel(conv.bias.grad, numerical(conv.bias.data)):.1e}")

# %% [markdown]
# Relative errors of $10^{-6}$ or below mean the analytic and numerical gradients agree to the precision of the
# finite difference (the largest ones come from entries whose gradient is itself close to zero); a real mistake (a wrong transpose, a missed padding offset) shows up as an error of order 1.
# `tests/test_layers_gradcheck.py` runs this check for every layer (Linear, Conv2d with several strides, paddings and
# non-square inputs, both poolings, ReLU, Flatten, the loss, a whole small LeNet-5), and
# `tests/test_torch_oracle.py` compares forward and backward with `torch.nn` when PyTorch is installed.
#
# **Summary of where we depart from, or add to, §2.1:** $m_0 = v_0 = 0$ and $t$ from 1 (unstated in the document);
# defaults $\beta_1 = 0.9$, $\beta_2 = 0.999$, $\epsilon = 10^{-8}$ (unstated); ε outside the root (as written); no weight
# decay (not mentioned); $\alpha$ is a constant step size, not an "initial" rate; "faster and more robust" holds
# above against plain gradient descent on the axis-aligned valley (where momentum does as well or better) and on
# LeNet-300-100 (one seed), and fails on the rotated valley.

# %% [markdown]
# ## Things to try, and questions
#
# 1. **Past the minimum.** In the table of section 1, run 20 steps instead of 6 (`range(1, 21)`, and `range(20)` for
#    the library). At which step does $\theta$ first pass 3? What happens to $m_t$ and to the size of the step in
#    the steps after that?
# 2. **ε inside the square root.** In your `adam_update`, write $\sqrt{\hat v + \epsilon}$ instead of
#    $\sqrt{\hat v} + \epsilon$. With $\epsilon = 10^{-8}$, does the table change? For which gradient sizes would it
#    matter? (Why does the checker use $\epsilon = 0.25$?)
# 3. **Is the learning rate less critical with Adam?** The document says Adam "对初始学习率的选择不太敏感" (is not very
#    sensitive to the initial learning rate). In section 3b, train with Adam at α ∈ {1e-4, 1e-3, 1e-2} and with plain SGD at
#    lr ∈ {0.01, 0.1, 1}. Compare how far apart the final accuracies of each optimiser are.
#    **Question:** why is the first step exactly $\alpha\,\mathrm{sign}(g_1)$, whatever the size of $g_1$?
