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
# # minicompress — overview: 基于Adam优化的模型压缩方法
#
# The source document, *Model compression based on Adam optimisation*, describes three ways to make a trained network
# smaller — **pruning** (剪枝), **quantization** (量化) and **knowledge distillation** (知识蒸馏) — and proposes to drive
# every one of them with the **Adam** optimizer (Adam优化算法). This library writes each of its equations as a few
# lines of NumPy, with every gradient derived by hand (no autograd), so that you can read the code beside the math.
#
# ## The one idea that holds the library together
#
# Everything trainable is a `Parameter` (`.data`, `.grad`). Layer weights, pruning-mask scores, quantization step
# sizes Δ and offsets, distillation regressors: all are Parameters, and **one `Adam` class updates them all the same
# way**. That is the document's thesis (§2.2) made literal. Pruning masks and weight quantizers are *weight
# transforms*, $W_{\text{eff}} = q(W \odot m)$, whose chain rule is written once, in the transform.
#
# ## Map: document → code → notebook → tests
#
# | document | term | code | notebook | tests |
# | --- | --- | --- | --- | --- |
# | §2.1 Adam | Adam优化算法 | `minicompress/optim.py` (`Adam`), `minicompress/nn/` | `01_adam_and_backprop` | `test_adam.py`, `test_layers_gradcheck.py` |
# | §3.1.1 weight pruning | 权重剪枝 | `minicompress/prune/` (`mask`, `scores`, `objective`, `learned`) | `02_weight_pruning` | `test_prune*.py` |
# | §3.1.2 filter pruning | 滤波器剪枝 | `minicompress/prune/filters.py`, `minicompress/metrics.py` | `03_filter_pruning` | `test_prune*.py`, `test_metrics.py` |
# | §3.2.1 symmetric quantization | 对称量化 | `minicompress/quantize/functional.py`, `fake.py` | `04_symmetric_quantization` | `test_quant*.py` |
# | §3.2.2 asymmetric quantization | 非对称量化 | `minicompress/quantize/` (`observers`, `prepare`, `integer`) | `05_asymmetric_and_learned_step` | `test_quant*.py` |
# | §3.3 knowledge distillation | 知识蒸馏 | `minicompress/distill.py` | `06_distillation` | `test_distill.py` |
# | §1, §2.2 all three together | — | `minicompress/pipeline.py`, `artifact.py`, `__main__.py` | `07_full_pipeline` | `test_pipeline.py` |
# | appendix: the benchmarks on Fashion-MNIST | — | `benchmarks/` (results in `benchmarks/results/`), `docs/RESULTS.md` | `08_benchmark_results` | `test_docs.py` (results files) |
#
# Where the document is wrong, ambiguous or silent, each notebook says what the document says, what we do, and why.
# Three examples: the pruning objective's L1 term, taken alone, pushes the mask *up* rather than down (notebook 02);
# `q(x) = round(x/Δ)` needs clipping once Δ is learned (notebook 04); the text stops in the middle of the soft-target
# formula, which we complete from Hinton et al. 2015 (notebook 06).

# %% [markdown]
# ## Glossary — 术语表
#
# The document's words, the symbols it writes, and the names the notebooks and the code use. A Chinese edition of
# every notebook, with the same code, is in `notebooks/zh/`.
#
# | 文档用语 (document) | English (notebooks) | symbol | code |
# | --- | --- | --- | --- |
# | 剪枝 / 权重剪枝 / 滤波器剪枝 | pruning / weight pruning / filter pruning | | `minicompress.prune` |
# | 剪枝掩码 | pruning mask | $m$ ($m_{ij}\in\{0,1\}$) | `Mask`, `attach_mask` |
# | 重要性得分 | importance score | $s$ | `weight_scores`, `LearnedMask` |
# | 权重绝对值 | weight magnitude | $\lvert W\rvert$ | `weight_scores(score="magnitude")` |
# | 梯度范数 | gradient norm | $\lVert g\rVert$ | `weight_scores(score="gradient")` |
# | 滤波器范数 / 绝对中值 | filter norm / absolute median | $\lVert W_o\rVert_1$, $\lVert W_o\rVert_2$ / $\operatorname{median}\lvert W_o\rvert$ | `filter_norm_scores`, `filter_scores` |
# | 正则化系数 | regularisation coefficient | $\lambda$ | `lam` (`l1_penalty`) |
# | 任务损失函数 | task loss | $\mathcal{L}_{\text{task}}$ | |
# | 量化 / 对称量化 / 非对称量化 | quantization / symmetric / asymmetric | | `minicompress.quantize` |
# | 量化间隔 | quantization step (step size) | $\Delta$ | `delta` (`symmetric_delta`) |
# | 偏移量 | offset, zero point | $r_{\min}$; integer zero point $z$ | `r_min`, `zero_point` |
# | 量化比特宽度 | bit width | $n$ | `n_bits` |
# | 四舍五入函数 | rounding | $\text{round}(\cdot)$ | `np.rint` (halves to even) |
# | 最大绝对值 / 最小值 / 最大值 | largest magnitude / minimum / maximum | $r_{\max}$, $r_{\min}$ | `minicompress/quantize/observers.py` |
# | 激活值 | activations | $\boldsymbol{A}$ | |
# | 一阶矩估计 / 二阶矩估计 | first / second moment estimate | $\boldsymbol{m}_t$, $\boldsymbol{v}_t$ | `Adam` |
# | 指数衰减率 | exponential decay rates | $\beta_1$, $\beta_2$ | `betas` |
# | 初始学习率 | (initial) learning rate | $\alpha$ | `lr` |
# | 一个很小的常数 | small constant | $\epsilon$ | `eps` |
# | 知识蒸馏 | knowledge distillation | | `minicompress.distill` |
# | 教师模型 / 学生模型 | teacher / student | $T$, $S$ | |
# | 知识传递损失 | knowledge-transfer (distillation) loss | $\mathcal{L}_{\text{KD}}$ | |
# | 软目标损失 | soft-target loss | $\mathcal{L}_{\text{KD}}^{\text{soft}}$, temperature $T$ | `soft_target_loss` |
# | 特征映射 | feature maps (hints) | | |

# %%
import json, tempfile
from pathlib import Path
from IPython.display import Image, display
ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
import minicompress
print("minicompress", minicompress.__version__)
print(sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb")))

# %% [markdown]
# ## The whole pipeline in one run (embedded digits, a few seconds)
#
# `python -m minicompress demo` runs this recipe: a CNN teacher, distilled into a small MLP, pruned with an Adam-learned
# mask, quantized with Adam-learned step sizes, converted to an integer model and written to one file.

# %%
from minicompress import pipeline
from minicompress.recipe import load_recipe, DEMO_RECIPE
recipe = load_recipe(DEMO_RECIPE)
with tempfile.TemporaryDirectory() as tmp:          # the artifact file is not kept
    result = pipeline.run(recipe, out=Path(tmp) / "demo.npz", progress=False)
print(pipeline.format_table(result["stages"]))

# %% [markdown]
# ## The result in one figure (Fashion-MNIST)
#
# Every configuration that `benchmarks/pipeline_sweep.py` tried: the accuracy of the integer model read back from its
# artifact file against the file's size, with the Pareto front and the targets. The float32 LeNet-300-100 is the
# reference: 1,066,440 bytes, 88.9 % (the benchmark's dense net; the copy the notebooks cache, retrained on the current
# code, scores 88.8 %).

# %%
pareto = ROOT / "figures" / "pipeline_pareto.png"
if pareto.exists():
    display(Image(str(pareto)))
sweep = ROOT / "benchmarks" / "results" / "pipeline_sweep.json"
if sweep.exists():
    for c in sorted(json.loads(sweep.read_text())["configurations"], key=lambda c: c["bytes"]):
        print(f"{c['name']:<32} {c['bytes']:>8,} B  {c['ratio_vs_lenet300']:6.1f}x smaller  {100 * c['accuracy']:.2f} %")
