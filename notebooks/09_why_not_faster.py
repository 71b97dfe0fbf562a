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
# # Why isn't it faster? — compression and speed
#
# The document says that compression reduces a model's memory *and* its computation (减小模型的内存占用和计算量) and
# gives higher inference performance (更高的推理性能). The memory half is easy to measure: notebooks 02–07 shrink
# LeNet-300-100 from 1 MB to under 10 KB. The speed half surprises most people who try it: a 98 %-pruned network runs exactly as fast as the dense one, an 8-bit model is
# *slower* than its float version, and a sparse matrix library can be slower than multiplying the zeros. This
# notebook measures each complaint on this machine, explains it with the hardware (how many multiply-adds, how many
# bytes moved, how many calls), and then shows what does pay.
#
# | complaint | measured in | why |
# | --- | --- | --- |
# | "98 % pruned, same speed" | (a) | a mask $W\odot m$ is a dense matrix with zeros in it; BLAS multiplies them all |
# | "the sparse format is slower" | (b) | skipping a zero costs an index load and a gather; a multiply-add costs a fraction of a nanosecond |
# | "int8 is slower than float32" | (c) | NumPy has fast matrix products only for floats; integer products run a plain loop |
# | "the GEMM got faster, the net didn't" | (d) | ReLU, pooling and im2col move bytes; they do not shrink with the weights |
#
# Every time below is the median of several runs, in CPU time of this process on one thread, printed by the cell.
# Numbers move by 10–30 % from run to run on a shared machine; the *ratios* and where the lines cross are what to read.

# %%
import os
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # one BLAS thread, set before NumPy starts: steadier times
import copy, json, time
from pathlib import Path
import numpy as np
import matplotlib.pyplot as plt
from minicompress.check import check
from minicompress import models, prune, metrics
from minicompress.nn import Conv2d, MaxPool2d, ReLU
from minicompress.nn.im2col import im2col
from minicompress.nn.sparse_linear import compact_form, compact_matmul, ell_form, ell_matmul, for_inference
ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()

FAST = os.environ.get("MINICOMPRESS_FAST") == "1"
FIGURES = os.environ.get("MINICOMPRESS_FIGURES")  # if set, a folder to also save the figures in

def save(fig, name):
    if FIGURES:
        fig.savefig(Path(FIGURES) / name, dpi=110, bbox_inches="tight")

def timings(kernels, *args, rounds=3 if FAST else 7, budget=0.002, clock=time.process_time):
    """{name: median µs per call}: every round times each kernel once (after one untimed call),
    n calls per sample with n chosen so that a sample lasts about `budget` seconds. Interleaving
    the kernels round by round means a busy moment of the machine hits all of them alike.
    The clock is the CPU time of this process: with one thread it does not count the time other
    programs held the core (on a shared machine, most of the wall time)."""
    n = {}
    for name, f in kernels.items():
        f(*args)
        t0 = clock(); f(*args); one = clock() - t0
        n[name] = max(1, int(budget / max(one, 1e-6)))
    samples = {name: [] for name in kernels}
    for _ in range(rounds):
        for name, f in kernels.items():
            f(*args)
            t0 = clock()
            for _ in range(n[name]):
                f(*args)
            samples[name].append((clock() - t0) / n[name])
    return {name: 1e6 * float(np.median(s)) for name, s in samples.items()}

try:
    from threadpoolctl import threadpool_info
    blas = [(i["internal_api"], i.get("architecture"), i["num_threads"]) for i in threadpool_info()
            if i["user_api"] == "blas"]
except ImportError:
    blas = "threadpoolctl not installed"
print("BLAS (library, kernel, threads):", blas, "| fast mode" if FAST else "| full mode")

# %% [markdown]
# The network is LeNet-300-100 (784 → 300 → 100 → 10). Speed depends on the shapes and on *where* the zeros are, not on
# the values, so in fast mode we use a freshly initialised net; in full mode the trained Fashion-MNIST net cached by the
# other notebooks (if it is there), whose pruned first layer has the pattern of a real image model: the border pixels
# carry no information and lose all their weights.

# %%
net = models.lenet300(rng=np.random.default_rng(0))
ckpt = Path.home() / ".cache" / "minicompress" / "checkpoints" / "lenet300_fashion_e10_s0.npz"
if not FAST and ckpt.exists():
    from minicompress.io import load_model
    load_model(net, ckpt)
    print("trained lenet300 loaded from the cache")
else:
    print("freshly initialised lenet300 (timing depends on shapes and the zero pattern only)")
net.eval()
rng = np.random.default_rng(1)
x1 = rng.standard_normal((1, 784)).astype(np.float32)
x256 = rng.standard_normal((256, 784)).astype(np.float32)

def pruned_copy(model, sparsity):
    """A copy with a mask of the given sparsity on every layer (magnitude, layer by layer)."""
    m = copy.deepcopy(model)
    prune.prune_by_score(m, sparsity, "magnitude", scope="layer")
    m.eval()
    return m

# %% [markdown]
# ## (a) A masked model is a dense model
#
# Pruning in this library (and in `torch.nn.utils.prune`) attaches a mask: the layer computes
# $y = x\,(W\odot m)^\top + b$. $W\odot m$ is still a 300 × 784 array; the zeros are stored, loaded and multiplied like
# any other number. We time the forward pass of the dense net, the net with a mask of 0 % and of 98 %, and the 98 %
# net after `prune.remove` (mask baked into the weight: a dense matrix with 98 % zeros).

# %%
masked0, masked98 = pruned_copy(net, 0.0), pruned_copy(net, 0.98)
baked98 = prune.remove(copy.deepcopy(masked98))
four = {"dense": net.forward, "mask 0 %": masked0.forward, "mask 98 %": masked98.forward,
        "98 %, mask baked in": baked98.forward}
t1, t = timings(four, x1), timings(four, x256)
macs_dense = metrics.macs(net, (784,))[0]
macs_kept = metrics.macs(baked98, (784,), sparse=True)[0]
print("                       batch 1              batch 256")
for name in four:
    print(f"{name:22s} {t1[name]:6.0f} µs ({t1[name] / t1['dense']:4.2f}x)   {t[name]:7.0f} µs ({t[name] / t['dense']:4.2f}x)")
print(f"multiply-adds per image: {macs_dense:,} done by BLAS in every case; {macs_kept:,} are not zero "
      f"({100 * macs_kept / macs_dense:.1f} %)")

# %% [markdown]
# 98 % of zeros change nothing: the masked nets take the same time at 0 % and at 98 %, and the baked-in 98 % net the
# same time as the dense one, up to the noise of the machine. The masked ones are *slower* than the dense one, because
# the mask is applied at every call ($W\odot m$ is one more pass over 235 200 numbers), which at batch 1 costs several
# times the product itself. The work BLAS does is fixed by the shapes, 266 200 multiply-adds per image, whatever their
# values. A mask is the right tool for *training* (Adam keeps updating
# $W$ while $m$ holds the pruned entries at zero, notebook 02) and for *storage* (the artifact of notebook 07 stores only
# the nonzeros), not for speed. To be faster, the zeros must leave the computation: either the weight is stored in a
# sparse format and a kernel skips the zeros (b), or whole rows and columns are removed and the matrices become
# smaller (the last part).

# %% [markdown]
# ## (b) Unstructured sparsity: skipping a zero costs more than multiplying it
#
# A sparse kernel does only the nonzero multiply-adds, but each one needs the *column index* of its weight and a load
# of the input at that index — a gather, which the processor cannot stream the way BLAS streams a dense row. The
# simplest vectorised layout is **ELL** (ELLPACK): every output row $o$ keeps the same number $K$ of
# (column, value) pairs — $K$ is the longest row's count — and shorter rows are padded with value 0:
#
# $$y_{n,o} = \sum_{k=1}^{K} \mathrm{vals}_{o,k}\; x_{n,\ \mathrm{cols}_{o,k}}$$
#
# In NumPy that is one gather `x[:, cols]` of shape (N, out, K) and one contraction with `vals`: no Python loop.
#
# **Exercise — `ell_forward`.** Write the ELL product above. Write the body of the function (in the student edition it
# only raises `NotImplementedError`); the docstring states the equation and the shapes. The cell after it checks your
# function against numbers worked out by hand.

# %%
def ell_forward(cols, vals, x):
    """y[n, o] = Σ_k vals[o, k] · x[n, cols[o, k]].
    cols (out, K) integer column indices, vals (out, K) the weights (0 where padded), x (N, in).
    Returns y (N, out)."""
    ### BEGIN SOLUTION
    return np.einsum("nok,ok->no", x[:, cols], vals)
    ### END SOLUTION

# %%
check("ell_forward", ell_forward)

# %% [markdown]
# **Exercise — `ell_density`.** How much of the dense work does the ELL kernel still do? Every row is padded to $K$
# entries, so it does $\mathrm{out}\cdot K$ multiply-adds instead of $\mathrm{out}\cdot\mathrm{in}$: the share is
# $K/\mathrm{in}$, with $K$ the largest number of nonzeros in a row — not the fraction of nonzeros. Write it.

# %%
def ell_density(w):
    """Share of the dense multiply-adds done by the ELL kernel of the (out, in) weight w:
    K / in, K = the largest number of nonzeros in one row of w. Returns a number."""
    ### BEGIN SOLUTION
    return (w != 0).sum(axis=1).max() / w.shape[1]
    ### END SOLUTION

# %%
check("ell_density", ell_density)

# %% [markdown]
# Now the measurement: the first layer (784 → 300) pruned to 90 … 99.9 %, at batch 1 and 256, NumPy dense against
# three ways to skip zeros: the library's ELL kernel (`sparse_linear.ell_matmul`, the same gather done on $x^\top$ so
# that each gathered item is a contiguous row of the batch), a CSR form (the nonzeros row after row, summed with
# `np.add.reduceat`), and **compact**: remove the all-zero rows (dead neurons) and all-zero columns (dead inputs) and
# multiply the smaller dense matrix that is left (`sparse_linear.compact_matmul`). The last column, $c$, is the share of
# the matrix that compact keeps.

# %%
def csr_matmul(w, x):
    """CSR: gather x[:, col] · value for all nonzeros, then sum each row's run (np.add.reduceat)."""
    rows, cols = np.nonzero(w)
    counts = np.bincount(rows, minlength=w.shape[0])
    live = np.flatnonzero(counts)
    y = np.zeros((x.shape[0], w.shape[0]), np.float32)
    y[:, live] = np.add.reduceat(x[:, cols] * w[rows, cols], (np.cumsum(counts) - counts)[live], axis=1)
    return y

sparsities = (0.9, 0.98, 0.995, 0.999) if FAST else (0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
crossover = {1: [], 256: []}
print("sparsity  nnz/size  ELL K/in  compact c | batch 1: dense  ELL   CSR  compact (µs) |"
      " batch 256: dense    ELL    CSR  compact (µs)")
for s in sparsities:
    w = prune.remove(pruned_copy(net, s)).fc1.weight.data
    form, cform = ell_form(w), compact_form(w)
    parts = {"dense": lambda x: x @ w.T, "ELL": lambda x: ell_matmul(form, x), "CSR": lambda x: csr_matmul(w, x),
             "compact": lambda x: compact_matmul(cform, x)}
    t1, t256 = timings(parts, x1), timings(parts, x256, rounds=3)
    for b, tt in ((1, t1), (256, t256)):
        crossover[b].append({k: v / tt["dense"] for k, v in tt.items()})
    print(f"{100 * s:7.1f} %  {np.count_nonzero(w) / w.size:8.4f}  {form.density:8.4f}  {cform.density:9.3f} |"
          f" {t1['dense']:14.0f} {t1['ELL']:4.0f} {t1['CSR']:5.0f} {t1['compact']:8.0f}      |"
          f" {t256['dense']:16.0f} {t256['ELL']:6.0f} {t256['CSR']:6.0f} {t256['compact']:8.0f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
pos = np.arange(len(sparsities))            # equally spaced: 90, 95, 98, 99 ... are what matter
for ax, b in zip(axes, (1, 256)):
    for name, style in (("ELL", "o-"), ("CSR", "s--"), ("compact", "^-")):
        ax.plot(pos, [r[name] for r in crossover[b]], style, label=f"NumPy {name}")
    ax.axhline(1, color="k", lw=0.8, label="NumPy dense")
    ax.set_yscale("log")
    ax.set_xticks(pos, [f"{100 * s:g}" for s in sparsities])
    ax.set_xlabel("sparsity of fc1 (%)"); ax.set_title(f"fc1 784→300, batch {b}")
axes[0].set_ylabel("time / dense time (log; < 1 is faster)"); axes[0].legend()
fig.suptitle("the crossover, measured in this notebook")
fig.tight_layout(); save(fig, "09_crossover_fc1.png"); plt.show()

# %% [markdown]
# Read the figure from the right: skipping the zeros wins only at the highest sparsities; below that the dense product,
# zeros and all, is faster. Four things decide it:
#
# * **the gather.** A dense multiply-add streamed by BLAS costs a fraction of a nanosecond; a gathered one costs several
#   (an index, a load from a scattered address, a write to a temporary array). The sparse kernel must skip *more than*
#   that ratio of the work to break even — a crossover in the high 90s, not at 50 %.
# * **the padding of ELL.** A trained net's rows are very unequal (a few neurons keep many inputs), so $K/\mathrm{in}$ is
#   several times the fraction of nonzeros: at 98 % sparsity the trained fc1 keeps 2 % of its weights, but its ELL
#   kernel does about 9 % of the dense work. CSR has no padding, but `np.add.reduceat` over hundreds of short runs is
#   slow.
# * **compact keeps BLAS.** It skips only whole dead rows and columns, so it does more multiply-adds than ELL, but at
#   BLAS speed: it wins as soon as enough neurons and inputs are dead — which unstructured pruning of a trained net does
#   produce at the highest sparsities (border pixels, neurons that lost every input). It is structured pruning found
#   after the fact.
# * **the call overhead at batch 1.** Each NumPy call costs about a microsecond before any arithmetic, and at batch 1
#   the whole dense layer takes only 10–20 µs; a kernel of several NumPy calls has little room to win there.
#
# The benchmark `benchmarks/sparse_crossover.py` measures the same for every layer, the whole forward, batch 1, 64
# and 256, more sparse forms and PyTorch, all in one run; its figure (whole 3-layer forward, one BLAS thread):

# %%
from IPython.display import Image, display
results_path = ROOT / "benchmarks" / "results" / "sparse_crossover.json"
if (ROOT / "figures" / "sparse_crossover.png").exists():
    display(Image(filename=str(ROOT / "figures" / "sparse_crossover.png")))
if results_path.exists():
    entry = json.loads(results_path.read_text())["threads_1"]
    print("best kernel of the whole forward (ratio to NumPy dense), recorded run:")
    for r in entry["rows"]:
        if r["case"] == "net" and r["sparsity"] in (0.9, 0.98, 0.995, 0.999):
            best = min(((k, v) for k, v in r["kernels"].items() if not k.startswith("model")),
                       key=lambda kv: kv[1]["ratio_to_numpy_dense"])
            numpy_best = min(((k, v) for k, v in r["kernels"].items()
                              if k in ("csr_reduceat", "ell", "ell_t", "compact")),
                             key=lambda kv: kv[1]["ratio_to_numpy_dense"])
            print(f"  {100 * r['sparsity']:5.1f} %, batch {r['batch']:3d}: best NumPy sparse "
                  f"{numpy_best[0]:12s} {numpy_best[1]['ratio_to_numpy_dense']:6.2f}x | best of all "
                  f"{best[0]:12s} {best[1]['ratio_to_numpy_dense']:6.2f}x")

# %% [markdown]
# A compiled sparse kernel (PyTorch's `torch.sparse` CSR, SciPy's CSR) does the same gathers in a tight C loop, with no
# temporary arrays and no per-call overhead of several NumPy operations, so its crossover comes much earlier. If PyTorch
# is installed, here it is on the 98 % first layer at batch 256 (the notebook runs without PyTorch; the cell then says so).

# %%
try:
    import torch
except ImportError:
    torch = None
    print("PyTorch is not installed: skipped")
if torch is not None:
    import warnings
    torch.set_num_threads(1)
    w98 = baked98.fc1.weight.data
    tw = torch.from_numpy(w98)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")              # "sparse CSR support is in beta"
        tcsr = tw.to_sparse_csr()
    tx = torch.from_numpy(x256)
    tt = timings({"NumPy dense": lambda: x256 @ w98.T, "torch dense": lambda: tx @ tw.T,
                  "torch.sparse CSR": lambda: (tcsr @ tx.T).T})
    for name, us in tt.items():
        print(f"{name:18s} {us:7.0f} µs   ({us / tt['NumPy dense']:.2f}x NumPy dense)")

# %% [markdown]
# ## (c) int8 through float BLAS
#
# An 8-bit weight is a quarter of the bytes of a float32 one, so an 8-bit model "should" be up to 4× faster. Time the
# first layer's product at batch 64 with the operands stored as int8, int32, int64, float32 and float64:

# %%
a_f = rng.standard_normal((64, 784)).astype(np.float32)
b_f = rng.standard_normal((784, 300)).astype(np.float32)
a_i = rng.integers(-127, 128, (64, 784), dtype=np.int8)
b_i = rng.integers(-127, 128, (784, 300), dtype=np.int8)
operands = {"int8": (a_i, b_i), "int32": (a_i.astype(np.int32), b_i.astype(np.int32)),
            "int64": (a_i.astype(np.int64), b_i.astype(np.int64)), "float32": (a_f, b_f),
            "float64": (a_f.astype(np.float64), b_f.astype(np.float64))}
tm = timings({k: (lambda a=a, b=b: np.matmul(a, b)) for k, (a, b) in operands.items()}, rounds=3)
for k, us in tm.items():
    print(f"{k:8s} {us:9.0f} µs   ({us / tm['float32']:6.1f}x float32)")

# %% [markdown]
# NumPy hands float32 and float64 products to BLAS (OpenBLAS here), which is written in assembly for this processor's
# vector units. For integer dtypes NumPy has no BLAS to call and runs a generic loop, many times slower — and the int8
# product even *overflows* (its result is int8, so this table times a wrong answer). Fast integer GEMMs exist (int8 ×
# int8 → int32 with VNNI instructions, in oneDNN, FBGEMM or ONNX Runtime), but not in NumPy. This is why the library's
# integer model (notebook 05, `quantize.integer`) computes its exact integer sums with *float* BLAS: every product of
# codes and their sums are integers below $2^{24}$, which float32 represents exactly, so the float32 GEMM returns the
# exact integer accumulator (float64 when the bound is larger). The integer model is a model of what an int8 chip
# computes, bit for bit; through NumPy its products run at float32 speed, not at int8 speed, so the most it can hope
# for is the float model's time — the section below shows how close it gets.

# %% [markdown]
# ### The integer model through float BLAS, without overheads
#
# The integer model of notebook 05 (`quantize.convert`, what `python -m minicompress evaluate` runs on an `.npz`
# artifact) computes every layer with integers only:
#
# $$\mathrm{acc}_o = \sum_k q_w[o,k]\,(q_x[k]-z_x) + q_b[o],\qquad
#   q_y = \mathrm{clip}\big(((\mathrm{acc}\cdot M_0 + 2^{n-1}) \gg n) + z_y,\ q_{lo},\ q_{hi}\big).$$
#
# NumPy has no fast int8 matrix product (`@` on integer arrays runs a plain C loop, not BLAS). But a float32 product
# of integers is **exact** as long as no partial sum leaves the range where float32 holds every integer, $|s| < 2^{24}$
# (24-bit significand). In whatever order BLAS adds, every partial sum of row $o$ is bounded by
#
# $$B = \max_o \sum_k |q_w[o,k]| \cdot \max|q_x - z_x| + \max|q_b| ,$$
#
# which `IntLayer` computes once per layer from the real weights. $B < 2^{24}$: float32 BLAS, exact. Otherwise float64
# BLAS, exact below $2^{53}$ (and $B < 2^{31}$ is required anyway: the accumulator is an int32). The textbook
# worst case $K\cdot 127\cdot 255$ is too pessimistic: for LeNet-300-100's first layer it is $784\cdot127\cdot255
# \approx 2.5\cdot 10^7 > 2^{24}$, but the real rows of 8-bit weights sum to far less than $784\cdot 127$.

# %%
import copy, time
import numpy as np
from minicompress import models
from minicompress.data import cache_dir, load_dataset
from minicompress.io import load_model
from minicompress.quantize import calibrate, convert, prepare
from minicompress.quantize.integer import IntegerModel, IntLayer, QuantizeInput

(xtr, _), (xte, yte) = load_dataset("fashion-mnist")
float_model = models.build("lenet300", 28, rng=np.random.default_rng(0))
ckpt = cache_dir() / "checkpoints" / "lenet300_fashion_e10_s0.npz"   # made by benchmarks/train_dense.py
if ckpt.exists():
    float_model = load_model(float_model, ckpt)
else:
    print("no trained checkpoint: untrained weights (the speed depends only on the shapes)")
float_model.eval()
fake = prepare(copy.deepcopy(float_model), 8, 8, input_kind="asymmetric")    # 8-bit weights and activations
calibrate(fake, xtr[:1000])                                                   # post-training: min-max ranges
im = convert(fake)

print(f"{'layer':>10} {'K':>5} {'K·127·255':>11} {'bound B':>10} {'2^24':>10}  GEMM")
for s in im.steps:
    if isinstance(s, IntLayer):
        k = s.w_mat.shape[1]
        print(f"{str(s.q_w.shape):>10} {k:5d} {k * 127 * 255:11,d} {s.bound:10,d} {2 ** 24:10,d}  "
              f"{np.dtype(s.exact_dtype).name}")

# %% [markdown]
# ### What made it slow, and what was removed
#
# Exact is not yet fast. The straightforward version — each step's `run`, kept as `IntegerModel.forward_steps` —
# took about 1.5 times the float model's time on LeNet-300-100, although its matrix products are the same float32
# GEMMs. The extra time was everything around them:
#
# * **dtype round trips**: the codes left every layer as uint8 and were cast back to float32 before the next GEMM;
#   the requantisation ran in float64 over six passes, two of them mixed float32·float64 operations, which NumPy
#   runs through its slow casting loop, and recomputed $M = M_0 2^{-n}$ on every call;
# * **zero points**: $q_x - z_x$ took a pass of its own (or a bias correction);
# * **fresh temporaries** on every call (for a 1 MB array: page faults every time), an `isfinite` pass over the
#   input and a clip of the input codes that is almost never needed.
#
# `IntegerModel.forward` now computes the same integers in a few fused stages, built once per input shape:
#
# * activations stay float32 **centred codes** $c = q - z$ between layers (exact: $|c| < 2^{16}$), so there is no
#   cast before a GEMM and no $-z_x$ pass, and a convolution's zero padding is simply $c = 0$;
# * the weights are unpacked once, when the model is loaded, and stored as a float32 $(K, O)$ matrix in C order —
#   a layout OpenBLAS multiplies by 10–20 % faster than the float layer's transposed view (the sums are exact in any
#   order, so we may pick the fastest);
# * the bias is added to the exact float32 accumulators, and the requantisation is five passes of one dtype each:
#   cast to float64, multiply by $M$, round, cast to float32, clip. It is exact because $M_0 < 2^{27}$ and
#   $|\mathrm{acc}| < 2^{24}$ make $\mathrm{acc}\cdot M = (\mathrm{acc}\cdot M_0)\,2^{-n}$ a multiple of $2^{-n}$ with a
#   numerator below $2^{51}$ — exact in float64. Round half up, $\lfloor \mathrm{acc}\cdot M + \tfrac12\rfloor$, is
#   NumPy's `rint` (half to even) unless some $\mathrm{acc}\cdot M$ is an exact tie $k+\tfrac12$; that needs
#   $\mathrm{acc}\cdot M_0$ to end in exactly $n-1$ zero bits, impossible when $B < 2^{n-1-t}$ ($t$ the trailing zero
#   bits of $M_0$) — checked per layer, otherwise the "$+\tfrac12$, floor" pair is used;
# * better still, three float32 passes, $\mathrm{clip}(\mathrm{rint}(\mathrm{acc}\cdot m))$ with $m$ the float32
#   number nearest $M$ (or a neighbour of it), wherever that is exact. No error bound proves it — the float32
#   product is rounded — but a check at a few accumulators does: both sides are non-decreasing step functions of
#   acc, so they agree for every $|\mathrm{acc}| \le B$ once they agree at both sides of each step of the float32
#   codes and at $\pm B$. A step to code $k$ sits at $\lceil (k-\tfrac12)/m \rceil$ or next to it, so that is at
#   most $2(q_{hi}-q_{lo})+2$ accumulators, checked once, when the stages are built. It fails when some
#   $\mathrm{acc}\cdot M$ lies within $\approx 2^{-23}|\mathrm{acc}\cdot M|$ of a tie — in `benchmarks/int_speed.py`
#   for LeNet-300-100's first layer (3 of the ~500,000 accumulators where its codes change). Then `convert` moves
#   $M_0$ itself, by at most $M_0\cdot 2^{-18}$, to the nearest value for which some float32 $m$ near $M$ is exact,
#   by the same check. For that layer $M_0$ moves by 113 in 70,692,849, which shifts every product
#   $\mathrm{acc}\cdot M$ that matters by less than 0.001 of a code step, and now every hidden layer requantises in
#   float32 (a model saved before keeps the float64 passes);
# * a max-pool right after a layer is taken on the accumulators *before* the requantisation (which is
#   non-decreasing, so the two commute): a 2×2 pool leaves a quarter of the values to requantise;
# * a convolution runs a few images at a time, as the float `Conv2d` does in eval mode, so that its GEMM, pool
#   and requantisation find the chunk in cache; a stride-1 convolution with few filters is the same *banded*
#   matmul as the float layer's (exact: the extra products are code · 0, so no partial sum exceeds $B$), and a
#   max-pool over few channels is taken the float `MaxPool2d`'s way;
# * every intermediate array is reused from call to call (one set per thread), and a batch whose min and max lie
#   within two thresholds found once needs no clip of its input codes;
# * at batch 1, where each NumPy call costs about a microsecond, the calls themselves are made cheaper: bounds and
#   multipliers are 0-d arrays (cheaper operands than NumPy scalars), products go through `np.dot` and clips through
#   the clip ufunc itself (less Python around each call than `np.matmul` and `np.clip`), and a small input is
#   checked for NaN and $\pm\infty$ with one dot product instead of a min and a max: $\sum_i x_i\,2^{-13}$ is finite
#   exactly when every $x_i$ is ($\infty \cdot 2^{-13} = \infty$), and it cannot overflow for up to $2^{12}$ numbers.
#   Its codes are then always clipped, one call cheaper than the second reduction.
#
# Every trick keeps the numbers bit-identical; below we check it on the whole test set and time the float model,
# the step-by-step path and the fused one, interleaved in rounds (process CPU time, median of the rounds).

# %%
def cpu_seconds(fn, x, calls):
    t0 = time.process_time()
    for _ in range(calls):
        fn(x)
    return (time.process_time() - t0) / calls

same = np.array_equal(im.forward(xte), im.forward_steps(xte))
print(f"fused stages == step by step on {len(xte)} test images: {same}")
assert same

paths = {"float": float_model.forward, "integer, step by step": im.forward_steps, "integer, fused": im.forward}
rows = []
for batch, calls in ((1, 400), (256, 8)):
    x = xte[:batch]
    times = {name: [] for name in paths}
    for fn in paths.values():
        fn(x)                                                    # warm-up: buffers, caches
    for _ in range(9):
        for name, fn in paths.items():
            times[name].append(cpu_seconds(fn, x, calls))
    med = {name: np.median(t) for name, t in times.items()}
    for name in paths:
        rows.append((batch, name, med[name] * 1e6, med[name] / med["float"]))
print(f"{'batch':>5}  {'path':<22} {'µs / batch':>11} {'÷ float':>8}")
for batch, name, us, ratio in rows:
    print(f"{batch:5d}  {name:<22} {us:11.0f} {ratio:8.2f}")

# %% [markdown]
# Read the ratios, not the microseconds: the machine is shared and the times move by tens of percent from run to
# run. At batch 1 every NumPy call costs about a microsecond whatever its size, so there the number of calls counts;
# at batch 256 the GEMMs dominate. On LeNet-300-100 the fused path is at parity with the float model at batch 256
# (1.00–1.03 in `benchmarks/int_speed.py`'s runs, which find it ~15 % faster at batch 64): its GEMMs take the float
# model's time, and what is left is work the float model does not have — checking and quantising the input (min
# and max, $x/\Delta$ and `rint`: four passes over 784 numbers per image, and a division is slow) — against three
# requantisation passes per hidden layer that cost about what the float model's freshly allocated ReLU output
# does. On LeNet-5 the fused path is a little
# *faster* than the float model, although the float model fuses its Conv2d → ReLU → MaxPool2d blocks the same way
# (section (d)): the same banded convolutions in cache-sized chunks, the max-pool taken on the accumulators before
# requantising, and float32 requantisation along whole image rows save a little more than quantising the input
# costs. `benchmarks/int_speed.py` measures
# both nets, dense and pruned, at batch 1, 64 and 256 (`benchmarks/results/int_speed.json`).
#
# And the fallback: a layer whose bound does not fit float32 — here 2000 inputs with 8-bit weights — is computed with
# float64 BLAS, still exact (compared with NumPy's own int64 product):

# %%
rng = np.random.default_rng(0)
q_w = rng.integers(-127, 128, size=(10, 2000))
wide = IntLayer("linear", (q_w, 8, np.ones(10)), np.zeros(10), (np.float32(1), 0, 0, 255),
                {"out_scale": np.ones(10, np.float32)})
x_codes = rng.integers(0, 256, size=(5, 2000))
print(f"bound {wide.bound:,} ≥ 2^24 = {2 ** 24:,}: GEMM in {np.dtype(wide.exact_dtype).name}")
assert np.array_equal(wide.run(x_codes), (x_codes @ q_w.T).astype(np.float32))

# %% [markdown]
# ## (d) Memory-bound passes
#
# A GEMM does many multiply-adds per number it reads: the (256 × 784) × (784 × 300) product reads 0.44 M numbers and
# does 60 M multiply-adds. A ReLU does one comparison per number it reads and writes; a max-pool one per input; an im2col
# copy none at all. Their time is set by bytes moved, and pruning the weights does not touch the activations they move.
# The second convolution of LeNet-5 (6 → 16 channels, 5 × 5, on 14 × 14 inputs) at batch 256, part by part:

# %%
conv = Conv2d(6, 16, 5, rng=np.random.default_rng(0))
xc = rng.standard_normal((256, 6, 14, 14)).astype(np.float32)
x_nhwc = np.ascontiguousarray(xc.transpose(0, 2, 3, 1))
cols, _ = im2col(x_nhwc, 5, 1, 0)
w_mat = conv.weight.data.transpose(0, 2, 3, 1).reshape(16, -1)
yc = conv.forward(xc)
relu, pool = ReLU(), MaxPool2d(2)
parts = {"conv forward (all)": lambda: conv.forward(xc), "im2col copy": lambda: im2col(x_nhwc, 5, 1, 0),
         "GEMM cols @ Wᵀ": lambda: cols @ w_mat.T, "ReLU": lambda: relu.forward(yc),
         "max-pool 2×2": lambda: pool.forward(yc)}
tp = timings(parts, rounds=3 if FAST else 5)
moved = {"im2col copy": cols.nbytes + x_nhwc.nbytes, "GEMM cols @ Wᵀ": cols.nbytes + yc.nbytes,
         "ReLU": 2 * yc.nbytes, "max-pool 2×2": yc.nbytes * 5 // 4}
macs_conv = 16 * 10 * 10 * 6 * 25 * 256
for k, us in tp.items():
    extra = f"  {moved[k] / 1e6:5.1f} MB moved, {moved[k] / us / 1e3:5.1f} GB/s" if k in moved else ""
    print(f"{k:20s} {us:8.0f} µs{extra}")
print(f"GEMM: {macs_conv / 1e6:.0f} M multiply-adds, {macs_conv / tp['GEMM cols @ Wᵀ'] / 1e3:.1f} G per second")

# %% [markdown]
# The GEMM is only part of the convolution's time: the copy that builds its input (im2col) costs about as much as the
# GEMM itself, pooling a good fraction of it, and these passes run at the speed of memory (a few GB/s here), not of
# arithmetic. Pruning 98 % of the
# conv weights could at best remove the GEMM; im2col, ReLU and pooling stay, so the layer cannot become 50× faster. Only
# removing whole *filters* shrinks them too: fewer output channels, fewer activations to write, pool and copy.
#
# A pass over memory can also be removed without pruning anything. In eval mode a `Sequential` runs each
# Conv2d → ReLU → MaxPool2d **fused** (`nn/fused.py`): a few images at a time, so that the convolution's output is
# pooled while it is still in the cache and never goes to memory; the bias and the ReLU come after the pool, on a
# quarter of the numbers. That gives exactly the same values: with $z_j$ the products of one window and $b$ the bias,
#
# $$\max_j \mathrm{ReLU}(\mathrm{fl}(z_j + b)) = \mathrm{ReLU}(\mathrm{fl}(\max_j z_j + b)),$$
#
# because rounding and ReLU never change the order of two numbers (both are non-decreasing), so the same $z_j$ wins
# on both sides. It pays where the convolution's output is larger than the cache: below, the teacher CNN's first block
# (1 → 32 channels, 3 × 3, on 28 × 28 images; a 26 MB output at batch 256) in eval mode, one after another and fused.
# (The convolution above writes only 1.6 MB, which stays in the cache anyway: there fusion gains little.)

# %%
from minicompress.nn.fused import conv_relu_pool
conv_e, relu_e, pool_e = Conv2d(1, 32, 3, padding=1, rng=np.random.default_rng(0)), ReLU(), MaxPool2d(2)
for layer in (conv_e, relu_e, pool_e):
    layer.eval()
xi = rng.standard_normal((256, 1, 28, 28)).astype(np.float32)
one_by_one = pool_e.forward(relu_e.forward(conv_e.forward(xi)))
print("fused == one after another:", np.array_equal(conv_relu_pool(conv_e, pool_e, xi), one_by_one))
tf = timings({"one after another": lambda: pool_e.forward(relu_e.forward(conv_e.forward(xi))),
              "fused": lambda: conv_relu_pool(conv_e, pool_e, xi)}, rounds=3 if FAST else 5)
for k, us in tf.items():
    print(f"{k:20s} {us:8.0f} µs")

# %% [markdown]
# ## What pays (1): physical removal of filters and neurons
#
# A pruning mask makes zeros, but a dense matmul multiplies a zero as fast as any other number. Structured pruning
# (document §3.1.2, notebook 03) removes whole **filters** of a convolution and whole **neurons** (hidden units) of a
# Linear layer, and then *removes them physically* (`prune.shrink`): the layer's weight loses rows, the next layer
# loses the matching input channels or columns. What is left is an ordinary dense network with fewer channels — the
# same code runs it, with smaller matrices.
#
# For neurons the removal is three slices. To keep only the units `keep` of hidden layer $\ell$,
#
# $$W^{(\ell)} \leftarrow W^{(\ell)}[\text{keep}, :],\qquad b^{(\ell)} \leftarrow b^{(\ell)}[\text{keep}],\qquad
#   W^{(\ell+1)} \leftarrow W^{(\ell+1)}[:, \text{keep}],$$
#
# and the multiply-accumulates (MACs) of both layers fall with the number of units: $d_{in}\cdot h \to d_{in}\cdot h'$ and
# $h\cdot d_{out} \to h'\cdot d_{out}$. `prune.learned_neuron_prune`
# learns which units to keep with Adam exactly as `prune.learned_filter_prune` does for filters (a mask entry per unit,
# straight-through scores, the weights fine-tuned together); `prune.remove_neurons` does the slicing.
#
# Does the time follow the MACs? Below: the dense LeNet-5 against the filter-pruned one of `benchmarks/prune_filters.py`
# (3 of 6 filters in conv1, 10 of 16 in conv2), and LeNet-300-100 against a neuron-pruned one (100 of 300 and 50 of
# 100 hidden units). Which filters or units are kept does not change the cost of a dense layer, so random weights
# of the right shapes are timed. Times are process CPU time (on a shared machine the wall clock would also count the
# time spent waiting for a core), the median of alternating rounds, batch 256, eval mode: the whole forward pass
# (LeNet-5's blocks fused), and each layer run on its own to see where the time goes.

# %%
import time
import numpy as np
from minicompress import metrics, models, prune, nn

def shrunk(model, keep):
    """The model with only the first k filters/units of each named layer (the shapes matter, not which)."""
    for name, k in keep.items():
        model = prune.remove_filters(model, name, np.arange(k))
    return model

def forward_ms(models_, x, rounds=9):
    """Median CPU milliseconds of each model's forward pass ("whole"), and of each child layer run on its own, in
    alternating rounds."""
    per = [dict() for _ in models_]
    for m in models_:
        m.eval(); m(x)
    for _ in range(rounds):
        for i, m in enumerate(models_):
            t0 = time.process_time()
            m(x)
            per[i].setdefault("whole", []).append(time.process_time() - t0)
            h = x
            for name, layer in m.named_children():
                t0 = time.process_time()
                h = layer(h)
                per[i].setdefault(name, []).append(time.process_time() - t0)
    return [{n: 1e3 * float(np.median(t)) for n, t in d.items()} for d in per]

rng = np.random.default_rng(0)
pairs = {
    "LeNet-5, filters": (models.lenet5(rng=rng), {"conv1": 3, "conv2": 10}, (1, 28, 28)),
    "LeNet-300-100, neurons": (models.lenet300(rng=rng), {"fc1": 100, "fc2": 50}, (1, 28, 28)),
}
x = np.random.default_rng(1).standard_normal((256, 1, 28, 28)).astype(np.float32)
table = {}
for label, (dense, keep, shape) in pairs.items():
    small = shrunk(dense, keep)
    t_dense, t_small = forward_ms([dense, small], x)
    macs_dense, macs_small = metrics.macs(dense, shape), metrics.macs(small, shape)
    table[label] = (dense, small, t_dense, t_small, macs_dense, macs_small)
    print(f"{label}: MACs {macs_dense[0]:,} → {macs_small[0]:,} ({macs_small[0] / macs_dense[0]:.2f}×),"
          f" forward pass {t_dense['whole']:.1f} → {t_small['whole']:.1f} ms"
          f" ({t_small['whole'] / t_dense['whole']:.2f}×)")

# %% [markdown]
# Per layer, for LeNet-5, each layer run on its own (ReLU and pooling have no MACs but do cost time: each is a pass over
# the whole activation; in the whole forward pass they are fused with the convolution before them):

# %%
dense, small, t_dense, t_small, macs_dense, macs_small = table["LeNet-5, filters"]
print(f"{'layer':8s} {'MACs dense':>11s} {'MACs pruned':>12s} {'ms dense':>9s} {'ms pruned':>10s}")
for name in [n for n in t_dense if n != "whole"]:
    md, ms = macs_dense[1].get(name, 0), macs_small[1].get(name, 0)
    print(f"{name:8s} {md:11,d} {ms:12,d} {t_dense[name]:9.2f} {t_small[name]:10.2f}")

# %%
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(6, 3))
labels = list(table)
mac_ratio = [table[k][5][0] / table[k][4][0] for k in labels]
time_ratio = [table[k][3]["whole"] / table[k][2]["whole"] for k in labels]
pos = np.arange(len(labels))
ax.bar(pos - 0.2, mac_ratio, 0.4, label="MACs pruned / dense")
ax.bar(pos + 0.2, time_ratio, 0.4, label="time pruned / dense")
ax.axhline(1.0, color="gray", lw=0.8)
ax.set_xticks(pos); ax.set_xticklabels(labels)
ax.set_ylabel("pruned / dense"); ax.set_title("Physical removal: MACs and measured time (batch 256)")
ax.legend(); plt.tight_layout(); plt.show()

# %% [markdown]
# **Reading the numbers.** For the MLP the time falls nearly as much as the MACs: each Linear layer is one matmul of
# shape (256, $d_{in}$)·($d_{in}$, $h'$), and almost all the work is in it. For the CNN the time falls less than the MACs. In
# training a convolution is computed as im2col (copy every $k\times k$ window into a row of a matrix) and one matmul; the
# copy grows with the *input* channels and the output size, not with the number of filters, and a matmul with only a
# few columns (one per filter) costs about as much as reading its other operand, however few the columns. So in eval
# mode a layer with few filters is computed as a *banded* matmul (`nn/banded.py`): one row holds the input of $b$
# neighbouring output pixels, the weight matrix has $b\cdot O$ columns and zeros outside the band; the copy is smaller,
# and the extra multiplications by zero cost in proportion to the filters. With 3 filters the band must span 14 output
# pixels to give 42 columns, and then 3.6 times as many products are computed as are needed (with 6 filters, 7 pixels and
# 2.2 times): the pruned first convolution takes about 0.7 of the dense one's time for half its MACs. Fusion removed the
# passes over memory, so what is left of LeNet-5's gap is BLAS on tiny shapes. For a larger network the passes matter
# more than the shapes: the teacher CNN's pruned time is 1.23–1.33× its MAC ratio with fusion, 1.33–1.38× without
# (`benchmarks/prune_filters.py --latency-only`, which also times the same two networks in PyTorch when it is
# installed). PyTorch shows the same gap: on one machine, one thread, its pruned LeNet-5 took 1.54–1.56× its MAC ratio
# where this library's took 1.45–1.50×. A pruned CNN needs a smaller MAC ratio than the speed-up you want. The recorded run
# of `benchmarks/structured_speed.py` below prunes the teacher CNN's filters and its hidden units together (16 of 32
# and 32 of 64 filters, 128 of 256 units), fine-tuned for 3 epochs, to about a quarter of the MACs:

# %%
import json
from pathlib import Path
ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
record = json.loads((ROOT / "benchmarks" / "results" / "structured_speed.json").read_text())
run, timing = record["train"], record["latency"]
print(f"kept: {run['keep']}")
print(f"MACs: {run['pruned_macs']:,} of {run['dense_macs']:,} ({run['mac_ratio']:.0%})")
print(f"accuracy (10,000 test images): {100 * run['dense_accuracy']:.2f} % dense, {100 * run['pruned_accuracy']:.2f} % pruned")
print(f"forward pass, batch 256: {1e3 * timing['dense_cpu_s']:.0f} ms dense, {1e3 * timing['pruned_cpu_s']:.0f} ms pruned "
      f"(CPU time): {timing['speedup_cpu']:.2f}x faster")
print(f"artifact: {run['artifact_bytes']:,} bytes (the dense float32 weights: {run['dense_float32_bytes']:,})")

# %% [markdown]
# **Exercise — `conv_macs`.** Count the multiply-accumulates of one convolution for one image: each output
# position of each of the $O$ filters is a dot product of length $C\cdot k^2$, and there are $OH\cdot OW$ output
# positions, with $OH = \lfloor (H + 2p - k)/s \rfloor + 1$ (the same for $OW$ with $W$). Write the body of the function
# (in the student edition it only raises `NotImplementedError`); the cell after it checks it against numbers worked
# out by hand.

# %%
def conv_macs(O, C, k, H, W, stride, padding):
    """Multiply-accumulates of a Conv2d with O filters of shape (C, k, k) on one (C, H, W) input:

        MACs = O · C · k² · OH · OW,   OH = ⌊(H + 2p − k)/s⌋ + 1,   OW = ⌊(W + 2p − k)/s⌋ + 1

    Returns an int.
    """
    ### BEGIN SOLUTION
    oh = (H + 2 * padding - k) // stride + 1
    ow = (W + 2 * padding - k) // stride + 1
    return O * C * k * k * oh * ow
    ### END SOLUTION

# %%
check("conv_macs", conv_macs)

# %% [markdown]
# The same at batch 1: LeNet-300-100 with its hidden layers narrowed further (a neuron removed = a row of $W_1$ and a
# column of $W_2$ deleted), dense NumPy at batch 1 and 256:

# %%
def mlp(h1, h2):
    w = [rng.standard_normal(s).astype(np.float32) * 0.05 for s in ((h1, 784), (h2, h1), (10, h2))]
    def forward(x):
        x = np.maximum(x @ w[0].T, 0)
        x = np.maximum(x @ w[1].T, 0)
        return x @ w[2].T
    return forward, 784 * h1 + h1 * h2 + h2 * 10

widths = ((300, 100), (150, 50), (75, 25), (30, 10))
nets = {f"{h1}-{h2}": mlp(h1, h2) for h1, h2 in widths}
tb1 = timings({k: f for k, (f, _) in nets.items()}, x1)
tb256 = timings({k: f for k, (f, _) in nets.items()}, x256)
base = nets["300-100"][1]
print("hidden   MACs/image  share | batch 1: µs  share | batch 256: µs  share")
for k, (_, m) in nets.items():
    print(f"{k:8s} {m:10,d} {m / base:6.2f} | {tb1[k]:11.1f} {tb1[k] / tb1['300-100']:6.2f} |"
          f" {tb256[k]:13.0f} {tb256[k] / tb256['300-100']:6.2f}")

# %% [markdown]
# At batch 256 the time shrinks with the MACs (not perfectly: a small GEMM runs at a lower rate than a large one). At
# batch 1 it hits a floor of a few microseconds per layer — the cost of calling NumPy at all: the 30-10 net does 9 % of
# the MACs and takes about a quarter of the time. Compressing a model that is already this small buys memory more than
# latency at batch 1.

# %% [markdown]
# ## What pays (2): a sparse kernel only where it wins
#
# `minicompress.nn.sparse_linear.for_inference(model)` copies a (masked or pruned) model for inference and replaces
# each Linear with a `SparseLinear`: it stores the weight dense, compact and in ELL form, and at each call
# `choose_kernel(K/in, batch, shape, c)` picks the kernel by the rule measured with `benchmarks/sparse_crossover.py`:
# dense below batch 64 and for small layers; compact when $c \le 0.6$; ELL when $K/\mathrm{in}$ is below the measured
# crossover for that batch (0.03 at batch 64, 0.02 at 256); dense otherwise. So the model is not slower than its dense
# self (up to the noise of the machine), and equals it up to float32 summation order. On the 98 % model of (a):

# %%
fast98 = for_inference(masked98)
for xb in (x1, x256):
    tt = timings({"masked model": masked98.forward, "mask baked (dense)": baked98.forward,
                  "for_inference": fast98.forward}, xb)
    fast98.forward(xb)
    chosen = {n: fast98[n].last_kernel for n in ("fc1", "fc2", "fc3")}
    diff = float(np.abs(fast98.forward(xb) - baked98.forward(xb)).max())
    print(f"batch {len(xb):3d}: " + ", ".join(f"{k} {v:.0f} µs" for k, v in tt.items())
          + f" | kernels {chosen} | max |difference| {diff:.1e}")
print("ELL density K/in:", {n: round(fast98[n].ell.density, 3) for n in ("fc1", "fc2", "fc3")},
      "| compact c:", {n: round(fast98[n].compact.density, 3) for n in ("fc1", "fc2", "fc3")})

# %% [markdown]
# ## Summary
#
# * A mask is for training and storage. At inference it is a dense matrix, as fast as the unpruned one.
# * Unstructured sparsity pays in NumPy only at very high sparsity and large batches; compiled sparse kernels pay
#   earlier, but still need a large batch. At batch 1 a small network is bound by call overhead, not arithmetic.
# * NumPy has no integer BLAS: an integer model is a faithful model of integer hardware, not a faster program here.
# * Activations are dense whatever the weights are: ReLU, pooling and im2col cost the same after weight pruning.
#   Passes over memory can be removed by fusing layers, a few images at a time, so that an output never leaves the
#   cache.
# * What makes the dense kernels do less work is removing whole neurons and filters (structured pruning); then the time
#   follows the MACs at a large enough batch.
#
# ## Things to try, and questions
#
# 1. **Predict the crossover.** Before running it, guess at which sparsity ELL beats dense for fc2 (300 → 100) at batch
#    256, and whether it is earlier or later than for fc1. Then change the cell of (b) to use `fc2` and check.
# 2. Prune `net` with `scope="global"` instead of layer by layer. Which layer becomes sparsest, and how does that change
#    its $K/\mathrm{in}$ and the crossover?
# 3. The ELL padding: sort fc1's rows by their number of nonzeros and split them into two groups, each padded to its
#    own longest row. How much work does that save at 98 %? Is it faster?
# 4. Time the (c) cell with `OPENBLAS_NUM_THREADS=2` (restart the kernel first). Which rows change, and why not the
#    integer ones?
# 5. Why does (d)'s GEMM reach a far higher rate in multiply-adds per second than (b)'s sparse kernels, although it does
#    more of them?
