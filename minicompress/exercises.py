"""The classroom exercises: one registry, exercise name → the equation, hand-computed cases and the
typical mistakes the checker recognises.

Each notebook 01–07 (and 09) asks the student to write small NumPy functions (``adam_moments``,
``l1_penalty``, ``symmetric_quantize`` …) between ``### BEGIN SOLUTION`` / ``### END SOLUTION``.
:mod:`minicompress.check` calls those functions on the cases below and compares every output with
the value worked out by hand (the arithmetic is in the comments). When an output is wrong, each
``Mistake`` of the exercise recomputes the output the way a typical slip would; if the student's
value equals that, the message names the slip ("is the bias correction missing?").

Messages are ``{"en": ..., "zh": ...}`` dicts; a missing language falls back to English, but every hint
must have its Chinese (``tests/test_check_zh.py`` walks the registry). Values
are plain Python/NumPy literals so that the checker needs neither PyTorch nor the rest of the
library; ``tests/test_exercises.py`` checks that the library's own functions give the same numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Output:
    """One returned value: its symbol and the equation it must satisfy (for messages)."""
    name: str
    formula: dict


@dataclass(frozen=True)
class Case:
    """Keyword arguments and the expected outputs (a tuple, one entry per Output)."""
    args: dict
    expected: tuple


@dataclass(frozen=True)
class Mistake:
    """A typical slip: ``wrong(**args)`` returns the outputs it produces; ``hint`` names it."""
    key: str
    wrong: object
    hint: dict


@dataclass(frozen=True)
class Exercise:
    """One exercise: the function ``name`` of notebook ``notebook`` ("01" … "09"), the equation it
    implements, its outputs, the hand-computed cases and the mistakes recognised."""
    name: str
    notebook: str
    equation: str
    outputs: tuple
    cases: tuple
    mistakes: tuple = field(default=())


def _sm(z, T=1.0):
    """softmax(z/T) over the last axis, for the mistakes below."""
    z = np.asarray(z, np.float64) / T
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _half_up(x):
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


LN3 = float(np.log(3.0))
W5 = [[0.10, -0.80, 0.05, 0.30, -0.02],
      [-0.45, 0.07, 0.90, -0.12, 0.33],
      [0.01, -0.06, 0.22, -0.70, 0.15],
      [0.50, 0.04, -0.09, 0.11, -0.60],
      [-0.03, 0.26, 0.08, -0.18, 0.40]]
# the six largest |w| of W5: 0.90, 0.80, 0.70, 0.60, 0.50, 0.45
MASK5_75 = [[0, 1, 0, 0, 0],
            [1, 0, 1, 0, 0],
            [0, 0, 0, 1, 0],
            [1, 0, 0, 0, 1],
            [0, 0, 0, 0, 0]]

EXERCISES = {}


def _add(*exercises):
    for e in exercises:
        EXERCISES[e.name] = e


# ---- 01 Adam ---------------------------------------------------------------------------------
_add(
    Exercise(
        "adam_moments", "01", "m_t = β₁m_{t−1} + (1−β₁)g_t ; v_t = β₂v_{t−1} + (1−β₂)g_t²",
        (Output("m_t", {"en": "β₁·m_{t−1} + (1−β₁)·g_t", "zh": "β₁·m_{t−1} + (1−β₁)·g_t"}),
         Output("v_t", {"en": "β₂·v_{t−1} + (1−β₂)·g_t²", "zh": "β₂·v_{t−1} + (1−β₂)·g_t²"})),
        (  # 0.9·0 + 0.1·(−2) = −0.2 ; 0.999·0 + 0.001·4 = 0.004
            Case(dict(m=0.0, v=0.0, g=-2.0, beta1=0.9, beta2=0.999), (-0.2, 0.004)),
            # m: 0.9·1 + 0.1·3 = 1.2, 0.9·(−2) + 0 = −1.8 ; v: 0.75·0.5 + 0.25·9 = 2.625, 0.75·4 = 3
            Case(dict(m=np.array([1.0, -2.0]), v=np.array([0.5, 4.0]), g=np.array([3.0, 0.0]),
                      beta1=0.9, beta2=0.75), (np.array([1.2, -1.8]), np.array([2.625, 3.0])))),
        (Mistake("betas_swapped", lambda m, v, g, beta1, beta2: (
            (1 - beta1) * m + beta1 * g, (1 - beta2) * v + beta2 * g * g),
            {"en": "are β and 1−β swapped? β multiplies the old moment, 1−β the new gradient",
             "zh": "β 和 1−β 写反了? β 乘旧的矩估计, 1−β 乘新的梯度"}),
         Mistake("g_not_squared", lambda m, v, g, beta1, beta2: (
             beta1 * m + (1 - beta1) * g, beta2 * v + (1 - beta2) * g),
            {"en": "v averages the *square* of the gradient: g_t², element-wise",
             "zh": "二阶矩估计 v 平均的是梯度的*平方*: 逐元素的 g_t²"}),
         Mistake("abs_not_squared", lambda m, v, g, beta1, beta2: (
             beta1 * m + (1 - beta1) * g, beta2 * v + (1 - beta2) * np.abs(g)),
            {"en": "v averages g_t², not |g_t|",
             "zh": "v 平均的是 g_t²,不是 |g_t|"}))),
    Exercise(
        "bias_correction", "01", "m̂_t = m_t/(1−β₁^t) ; v̂_t = v_t/(1−β₂^t), t from 1",
        (Output("m̂_t", {"en": "m_t/(1−β₁^t)", "zh": "m_t/(1−β₁^t)"}),
         Output("v̂_t", {"en": "v_t/(1−β₂^t)", "zh": "v_t/(1−β₂^t)"})),
        (  # t = 1: 0.01/0.1 = 0.1 ; 0.0001/0.001 = 0.1
            Case(dict(m=0.01, v=0.0001, beta1=0.9, beta2=0.999, t=1), (0.1, 0.1)),
            # t = 2: 1 − 0.9² = 0.19 → 0.19/0.19 = 1 ; 1 − 0.999² = 0.001999 → 0.003998/0.001999 = 2
            Case(dict(m=np.array([0.19, -0.038]), v=np.array([0.003998, 0.001999]), beta1=0.9,
                      beta2=0.999, t=2), (np.array([1.0, -0.2]), np.array([2.0, 1.0])))),
        (Mistake("no_correction", lambda m, v, beta1, beta2, t: (m, v),
                 {"en": "is the bias correction missing? divide by 1−β^t",
                  "zh": "是不是漏了偏差修正? 要除以 1−β^t"}),
         Mistake("no_power", lambda m, v, beta1, beta2, t: (m / (1 - beta1), v / (1 - beta2)),
                 {"en": "the correction is 1−β^t with the power t, not 1−β",
                  "zh": "偏差修正是带 t 次幂的 1−β^t,不是 1−β"}),
         Mistake("power_t_minus_1", lambda m, v, beta1, beta2, t: (
             m / (1 - beta1 ** (t - 1)) if t > 1 else np.inf, v / (1 - beta2 ** (t - 1)) if t > 1 else np.inf),
            {"en": "t starts at 1: use β^t, not β^(t−1)",
             "zh": "t 从 1 开始: 用 β^t,不是 β^(t−1)"}))),
    Exercise(
        "adam_update", "01", "θ_{t+1} = θ_t − α·m̂_t/(√v̂_t + ε), ε outside the square root",
        (Output("θ_{t+1}", {"en": "θ_t − α·m̂_t/(√v̂_t + ε)", "zh": "θ_t − α·m̂_t/(√v̂_t + ε)"}),),
        (  # 1 − 1·0.5/(√0 + 0.25) = 1 − 2 = −1
            Case(dict(theta=1.0, m_hat=0.5, v_hat=0.0, alpha=1.0, eps=0.25), (-1.0,)),
            # 0 − 0.5·0.3/(0.3 + 0.1) = −0.375 ; 2 − 0.5·(−0.4)/(0.4 + 0.1) = 2.4
            Case(dict(theta=np.array([0.0, 2.0]), m_hat=np.array([0.3, -0.4]),
                      v_hat=np.array([0.09, 0.16]), alpha=0.5, eps=0.1), (np.array([-0.375, 2.4]),))),
        (Mistake("eps_inside_sqrt", lambda theta, m_hat, v_hat, alpha, eps: (
            theta - alpha * m_hat / np.sqrt(v_hat + eps),),
            {"en": "is ε inside the square root? the document (and PyTorch) write √v̂ + ε",
             "zh": "ε 放进了平方根里? 文档 (以及 PyTorch) 写的是 √v̂ + ε"}),
         Mistake("plus_sign", lambda theta, m_hat, v_hat, alpha, eps: (
             theta + alpha * m_hat / (np.sqrt(v_hat) + eps),),
            {"en": "the step goes *against* the gradient: θ − α·…, not θ + α·…",
             "zh": "更新方向与梯度*相反*: θ − α·…,不是 θ + α·…"}),
         Mistake("no_sqrt", lambda theta, m_hat, v_hat, alpha, eps: (
             theta - alpha * m_hat / (v_hat + eps),),
            {"en": "divide by √v̂ (a gradient size), not by v̂ (a squared size)",
             "zh": "除以 √v̂ (梯度的量级),不是除以 v̂ (平方的量级)"}))),
)

# ---- 02 weight pruning -----------------------------------------------------------------------
_WA = np.array([[0.5, -2.0], [1.0, 0.0]])
_MA = np.array([[1.0, 0.0], [0.5, 0.0]])
_GA = np.array([[0.2, 0.4], [-1.0, 3.0]])
_add(
    Exercise(
        "mask_gradients", "02", "W_eff = W ⊙ m ; ∂L/∂W = g ⊙ m ; ∂L/∂m = g ⊙ W, g = ∂L_task/∂W_eff",
        (Output("∂L/∂W", {"en": "g ⊙ m", "zh": "g ⊙ m"}),
         Output("∂L/∂m", {"en": "g ⊙ W", "zh": "g ⊙ W"})),
        (  # g⊙m = [[0.2, 0], [−0.5, 0]] ; g⊙W = [[0.1, −0.8], [−1, 0]]
            Case(dict(W=_WA, m=_MA, g=_GA), (np.array([[0.2, 0.0], [-0.5, 0.0]]),
                                             np.array([[0.1, -0.8], [-1.0, 0.0]]))),),
        (Mistake("swapped", lambda W, m, g: (g * W, g * m),
                 {"en": "swapped: W_eff = W ⊙ m, so ∂W_eff/∂W = m and ∂W_eff/∂m = W",
                  "zh": "写反了: W_eff = W ⊙ m,所以 ∂W_eff/∂W = m, ∂W_eff/∂m = W"}),
         Mistake("matmul", lambda W, m, g: (g @ m, g @ W),
                 {"en": "the product is element-wise (⊙, `*`), not a matrix product (`@`)",
                  "zh": "这里是逐元素乘积 (⊙, `*`),不是矩阵乘积 (`@`)"}))),
    Exercise(
        "l1_penalty", "02", "R(W, m) = λ‖W ⊙ (1 − m)‖₁ (the document's L1 term)",
        (Output("λ‖W⊙(1−m)‖₁", {"en": "λ·Σ|W ⊙ (1 − m)|", "zh": "λ·Σ|W ⊙ (1 − m)|"}),),
        (  # W⊙(1−m) = [[0, −2], [0.5, 0]] → 0.1·2.5 = 0.25
            Case(dict(W=_WA, m=_MA, lam=0.1), (0.25,)),
            Case(dict(W=np.array([-3.0, 1.0, 2.0]), m=np.array([0.0, 1.0, 0.75]), lam=2.0), (7.0,))),
        (Mistake("no_one_minus_m", lambda W, m, lam: (lam * np.abs(W).sum(),),
                 {"en": "the penalty is on the *dropped* part W ⊙ (1 − m), not on all of W",
                  "zh": "惩罚项作用于*被剪掉*的部分 W ⊙ (1 − m),不是整个 W"}),
         Mistake("w_times_m", lambda W, m, lam: (lam * np.abs(W * m).sum(),),
                 {"en": "the penalty is on W ⊙ (1 − m), the part the mask removes, not on W ⊙ m",
                  "zh": "惩罚项作用于剪枝掩码去掉的部分 W ⊙ (1 − m),不是 W ⊙ m"}),
         Mistake("norm_of_m", lambda W, m, lam: (lam * np.abs(m).sum(),),
                 {"en": "the document's term is λ‖W ⊙ (1 − m)‖₁, not λ‖m‖₁ (that is our replacement)",
                  "zh": "文档中的正则项是 λ‖W ⊙ (1 − m)‖₁,不是 λ‖m‖₁ (后者是我们的替代方案)"}),
         Mistake("no_abs", lambda W, m, lam: (lam * (W * (1 - m)).sum(),),
                 {"en": "the L1 norm sums absolute values |·|",
                  "zh": "L1 范数是绝对值 |·| 之和"}))),
    Exercise(
        "l1_penalty_grads", "02",
        "∂R/∂W = λ·sign(W⊙(1−m))⊙(1−m) ; ∂R/∂m = −λ·sign(W⊙(1−m))⊙W",
        (Output("∂R/∂W", {"en": "λ·sign(W⊙(1−m))⊙(1−m)", "zh": "λ·sign(W⊙(1−m))⊙(1−m)"}),
         Output("∂R/∂m", {"en": "−λ·sign(W⊙(1−m))⊙W", "zh": "−λ·sign(W⊙(1−m))⊙W"})),
        (  # sign(r) = [[0, −1], [1, 0]], 1−m = [[0, 1], [0.5, 1]]
            # ∂R/∂W = 0.1·[[0, −1], [0.5, 0]] ; ∂R/∂m = −0.1·[[0, 2], [1, 0]]
            Case(dict(W=_WA, m=_MA, lam=0.1), (np.array([[0.0, -0.1], [0.05, 0.0]]),
                                               np.array([[0.0, -0.2], [-0.1, 0.0]]))),),
        (Mistake("l1_sign", lambda W, m, lam: (
            lam * np.sign(W * (1 - m)) * (1 - m), lam * np.sign(W * (1 - m)) * W),
            {"en": "L1 sign: ∂(1−m)/∂m = −1, so ∂R/∂m = −λ|W| (for m < 1): the term pushes m *up*",
             "zh": "L1 的符号: ∂(1−m)/∂m = −1,所以 ∂R/∂m = −λ|W| (m < 1 时): 这一项把 m *往上*推"}),
         Mistake("no_chain_factor", lambda W, m, lam: (
             lam * np.sign(W * (1 - m)), -lam * np.sign(W * (1 - m))),
            {"en": "the chain rule: multiply sign(W⊙(1−m)) by ∂(W⊙(1−m))/∂W = 1−m and /∂m = −W",
             "zh": "链式法则: sign(W⊙(1−m)) 要乘以 ∂(W⊙(1−m))/∂W = 1−m 以及 /∂m = −W"}))),
    Exercise(
        "topk_mask", "02", "keep the k = n − round(s·n) largest scores (exact count, ties → lower index)",
        (Output("m", {"en": "1 at the k = n − round(s·n) largest scores, 0 elsewhere",
                      "zh": "得分最大的 k = n − round(s·n) 个位置为 1,其余为 0"}),),
        (  # 25 − round(0.75·25) = 25 − 19 = 6 kept: |w| = 0.90, 0.80, 0.70, 0.60, 0.50, 0.45
            Case(dict(scores=np.abs(np.array(W5)), sparsity=0.75), (np.array(MASK5_75, dtype=float),)),
            # 4 − round(0.5·4) = 2 kept; the three tied 1.0 → the lower index wins
            Case(dict(scores=np.array([3.0, 1.0, 1.0, 1.0]), sparsity=0.5),
                 (np.array([1.0, 1.0, 0.0, 0.0]),))),
        (Mistake("keeps_smallest", lambda scores, sparsity: (
            1.0 - _topk(scores, scores.size - round(sparsity * scores.size)),),
            {"en": "it keeps the smallest scores: the mask is 1 where the score is *large*",
             "zh": "保留的是得分最小的位置: 剪枝掩码应在得分*大*的位置为 1"}),
         Mistake("floor_count", lambda scores, sparsity: (
             _topk(scores, scores.size - int(sparsity * scores.size)),),
            {"en": "count: prune round(s·n) entries (0.75·25 = 18.75 → 19, keep 6), not int(s·n)",
             "zh": "数量: 剪掉 round(s·n) 个 (0.75·25 = 18.75 → 19,保留 6 个),不是 int(s·n)"}),
         Mistake("keeps_s_fraction", lambda scores, sparsity: (
             _topk(scores, round(sparsity * scores.size)),),
            {"en": "s is the fraction *pruned*: keep n − round(s·n), not round(s·n)",
             "zh": "s 是*被剪掉*的比例: 保留 n − round(s·n) 个,不是 round(s·n) 个"}))),
    Exercise(
        "cubic_sparsity", "02", "s_t = s_f + (s_i − s_f)(1 − (t − t₀)/(nΔt))³, s_i before t₀, s_f after t₀ + nΔt",
        (Output("s_t", {"en": "s_f + (s_i − s_f)(1 − (t − t₀)/(nΔt))³", "zh": "s_f + (s_i − s_f)(1 − (t − t₀)/(nΔt))³"}),),
        (  # 0.9 + (0 − 0.9)(1 − 5/10)³ = 0.9 − 0.9·0.125 = 0.7875
            Case(dict(t=5, s_i=0.0, s_f=0.9, t0=0, n=10, dt=1), (0.7875,)),
            # s_i = 0.2, s_f = 0.8, t − t₀ = 10 of nΔt = 20: 0.8 + (0.2 − 0.8)(1 − 10/20)³ = 0.725
            Case(dict(t=14, s_i=0.2, s_f=0.8, t0=4, n=4, dt=5), (0.725,)),
            Case(dict(t=2, s_i=0.1, s_f=0.9, t0=4, n=4, dt=5), (0.1,)),     # before t0: s_i
            Case(dict(t=30, s_i=0.0, s_f=0.9, t0=0, n=10, dt=2), (0.9,))),  # after t0 + nΔt: s_f
        (Mistake("square", lambda t, s_i, s_f, t0, n, dt: (
            s_f + (s_i - s_f) * (1 - min(max((t - t0) / (n * dt), 0), 1)) ** 2,),
            {"en": "the schedule is cubic: the power is 3",
             "zh": "稀疏度调度是三次的: 幂次是 3"}),
         Mistake("no_clamp", lambda t, s_i, s_f, t0, n, dt: (
             s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt)) ** 3,),
            {"en": "outside [t₀, t₀ + nΔt] the sparsity stays at s_i (before) or s_f (after): clamp the fraction to [0, 1]",
             "zh": "在 [t₀, t₀ + nΔt] 之外稀疏度保持为 s_i (之前) 或 s_f (之后): 把比例截断到 [0, 1]"}),
         Mistake("swapped_ends", lambda t, s_i, s_f, t0, n, dt: (
             s_i + (s_f - s_i) * (1 - min(max((t - t0) / (n * dt), 0), 1)) ** 3,),
            {"en": "s_i and s_f swapped: at t = t₀ the sparsity is s_i",
             "zh": "s_i 和 s_f 写反了: t = t₀ 时稀疏度为 s_i"}))),
)


def _topk(scores, k):
    """0/1 mask of the k largest scores, ties → lower flat index (for the mistakes)."""
    flat = np.asarray(scores, np.float64).ravel()
    order = np.argsort(-flat, kind="stable")
    keep = np.zeros(flat.size)
    keep[order[:max(k, 0)]] = 1.0
    return keep.reshape(np.shape(scores))


# ---- 03 filter pruning -----------------------------------------------------------------------
# two 1×2×2 filters (O = 2, C = 1, 2×2) and a third one; scores over the axes (C, kh, kw)
_F = np.array([[[[1.0, -1.0], [1.0, -1.0]]],       # L1 4, L2 2,     median |w| 1
               [[[3.0, 0.0], [0.0, 0.0]]],         # L1 3, L2 3,     median 0
               [[[0.5, 0.5], [-2.0, 0.5]]]])       # L1 3.5, L2 √4.75, median 0.5
_add(
    Exercise(
        "filter_scores", "03", "per filter j: L1 Σ|W_j| ; L2 √(Σ W_j²) ; median |W_j| (over C, kh, kw)",
        (Output("L1", {"en": "Σ_{c,h,w} |W[j,c,h,w]|", "zh": "Σ_{c,h,w} |W[j,c,h,w]|"}),
         Output("L2", {"en": "√(Σ_{c,h,w} W[j,c,h,w]²)", "zh": "√(Σ_{c,h,w} W[j,c,h,w]²)"}),
         Output("median", {"en": "median_{c,h,w} |W[j,c,h,w]|", "zh": "median_{c,h,w} |W[j,c,h,w]|"})),
        (Case(dict(W=_F), (np.array([4.0, 3.0, 3.5]), np.array([2.0, 3.0, np.sqrt(4.75)]),
                           np.array([1.0, 0.0, 0.5]))),),
        (Mistake("no_abs", lambda W: (W.reshape(len(W), -1).sum(1), np.sqrt((W.reshape(len(W), -1) ** 2).sum(1)),
                                      np.median(W.reshape(len(W), -1), 1)),
                 {"en": "take absolute values: a filter of +1 and −1 is not a zero filter",
                  "zh": "要取绝对值: 由 +1 和 −1 组成的滤波器并不是零滤波器"}),
         Mistake("l2_squared", lambda W: (np.abs(W).reshape(len(W), -1).sum(1), (W.reshape(len(W), -1) ** 2).sum(1),
                                          np.median(np.abs(W).reshape(len(W), -1), 1)),
                 {"en": "L2 is the square root of the sum of squares",
                  "zh": "L2 范数是平方和的平方根"}))),
    Exercise(
        "remove_filter", "03",
        "drop filter j of layer ℓ: W_ℓ[j], b_ℓ[j] go, and the next layer loses input channel j: W_{ℓ+1}[:, j]",
        (Output("W_ℓ", {"en": "W_ℓ without filter j (axis 0)", "zh": "去掉第 j 个滤波器 (axis 0) 的 W_ℓ"}),
         Output("b_ℓ", {"en": "b_ℓ without entry j", "zh": "去掉第 j 项的 b_ℓ"}),
         Output("W_{ℓ+1}", {"en": "W_{ℓ+1} without input channel j (axis 1)",
                            "zh": "去掉输入通道 j (axis 1) 的 W_{ℓ+1}"})),
        (  # W1 (3, 1, 1, 1) = filters 0, 1, 2 ; W2 (2, 3, 1, 1): entry [o, c] = 10·o + c
            Case(dict(W1=np.arange(3.0).reshape(3, 1, 1, 1), b1=np.array([0.5, 1.5, 2.5]),
                      W2=np.array([[0.0, 1.0, 2.0], [10.0, 11.0, 12.0]]).reshape(2, 3, 1, 1), j=1),
                 (np.array([0.0, 2.0]).reshape(2, 1, 1, 1), np.array([0.5, 2.5]),
                  np.array([[0.0, 2.0], [10.0, 12.0]]).reshape(2, 2, 1, 1))),),
        (Mistake("next_layer_rows", lambda W1, b1, W2, j: (
            np.delete(W1, j, 0), np.delete(b1, j), np.delete(W2, j, 0)),
            {"en": "the next layer keeps all its filters; it loses the *input channel* j (axis 1)",
             "zh": "下一层保留它所有的滤波器; 它去掉的是*输入通道* j (axis 1)"}),
         Mistake("zeroed", lambda W1, b1, W2, j: (
             np.where(np.arange(len(W1)).reshape(-1, 1, 1, 1) == j, 0, W1), np.where(np.arange(len(b1)) == j, 0, b1),
             W2),
            {"en": "remove the filter (smaller arrays), do not just set it to zero",
             "zh": "要删除该滤波器 (数组变小),而不只是把它置零"}))),
)

# ---- 04 symmetric quantisation ---------------------------------------------------------------
_add(
    Exercise(
        "symmetric_delta", "04", "Δ = r_max/(2^(n−1) − 1), r_max = max|w|",
        (Output("Δ", {"en": "max|w| / (2^(n−1) − 1)", "zh": "max|w| / (2^(n−1) − 1)"}),),
        (  # 0.63/(2³ − 1) = 0.09 ; 2.54/127 = 0.02
            Case(dict(w=np.array([0.63, -0.2, 0.1]), n=4), (0.09,)),
            Case(dict(w=np.array([[1.0, -2.54], [0.5, 2.0]]), n=8), (0.02,))),
        (Mistake("full_range", lambda w, n: (np.abs(w).max() / (2 ** n - 1),),
                 {"en": "symmetric: n bits give ±(2^(n−1) − 1), divide by 2^(n−1) − 1, not 2^n − 1",
                  "zh": "对称量化: n 位给出 ±(2^(n−1) − 1),应除以 2^(n−1) − 1,不是 2^n − 1"}),
         Mistake("no_minus_one", lambda w, n: (np.abs(w).max() / 2 ** (n - 1),),
                 {"en": "the largest code is 2^(n−1) − 1 (127 for 8 bits), not 2^(n−1)",
                  "zh": "最大的码是 2^(n−1) − 1 (8 位时为 127),不是 2^(n−1)"}),
         Mistake("max_not_abs", lambda w, n: (w.max() / (2 ** (n - 1) - 1),),
                 {"en": "r_max is the largest *absolute* value: max|w|",
                  "zh": "r_max 是最大的*绝对值*: max|w|"}))),
    Exercise(
        "round_half_up", "04", "四舍五入: round to the nearest integer, a tie .5 away from zero",
        (Output("round(x)", {"en": "the nearest integer, ties (….5) away from zero",
                             "zh": "最近的整数,.5 远离零舍入 (四舍五入)"}),),
        (Case(dict(x=np.array([0.5, 1.5, 2.5, -0.5, -2.5, 10.5, 2.4, -2.6, 0.0])),
              (np.array([1.0, 2.0, 3.0, -1.0, -3.0, 11.0, 2.0, -3.0, 0.0]),)),),
        (Mistake("half_even", lambda x: (np.rint(x),),
                 {"en": "np.rint / np.round / Python's round() round a tie to the *even* integer (2.5 → 2); "
                        "四舍五入 rounds it away from zero (2.5 → 3)",
                  "zh": "np.rint / np.round / Python 的 round() 把恰好 .5 的数舍入到*偶数* (2.5 → 2); 四舍五入则远离零舍入 (2.5 → 3)"}),
         Mistake("floor_plus_half", lambda x: (np.floor(x + 0.5),),
                 {"en": "floor(x + 0.5) rounds −2.5 up to −2; 四舍五入 rounds it to −3 (work on |x|, keep the sign)",
                  "zh": "floor(x + 0.5) 把 −2.5 舍入成 −2; 四舍五入得到 −3 (对 |x| 运算,再保留符号)"}),
         Mistake("truncate", lambda x: (np.trunc(x),),
                 {"en": "that truncates; add 0.5 to |x| before dropping the fraction",
                  "zh": "这是直接去掉小数部分 (trunc); 要先给 |x| 加 0.5,再去掉小数部分"}))),
    Exercise(
        "symmetric_quantize", "04", "q = clip(四舍五入(w/Δ), −(2^(n−1) − 1), 2^(n−1) − 1)",
        (Output("q", {"en": "clip(round_half_up(w/Δ), −(2^(n−1) − 1), 2^(n−1) − 1)",
                      "zh": "clip(四舍五入(w/Δ), −(2^(n−1) − 1), 2^(n−1) − 1)"}),),
        (  # w/Δ = [1.5, 2.5, −0.5, 12, −12, 0.4] → [2, 3, −1, 7, −7, 0] with n = 4 (±7)
            Case(dict(w=np.array([0.75, 1.25, -0.25, 6.0, -6.0, 0.2]), delta=0.5, n=4),
                 (np.array([2, 3, -1, 7, -7, 0]),)),),
        (Mistake("no_clip", lambda w, delta, n: (_half_up(w / delta),),
                 {"en": "w/Δ outside the range must be clipped to ±(2^(n−1) − 1)",
                  "zh": "超出范围的 w/Δ 必须截断到 ±(2^(n−1) − 1)"}),
         Mistake("half_even", lambda w, delta, n: (np.clip(np.rint(w / delta), -(2 ** (n - 1) - 1), 2 ** (n - 1) - 1),),
                 {"en": "round half to even (np.rint): the document's 四舍五入 rounds 2.5 to 3",
                  "zh": "这是四舍六入五成双 (np.rint): 文档中的四舍五入把 2.5 舍入为 3"}),
         Mistake("clip_minus_2n", lambda w, delta, n: (np.clip(_half_up(w / delta), -2 ** (n - 1), 2 ** (n - 1) - 1),),
                 {"en": "the symmetric range is ±(2^(n−1) − 1): −2^(n−1) is not used",
                  "zh": "对称量化的范围是 ±(2^(n−1) − 1): 不使用 −2^(n−1)"}),
         Mistake("times_delta", lambda w, delta, n: (np.clip(_half_up(w * delta), -(2 ** (n - 1) - 1), 2 ** (n - 1) - 1),),
                 {"en": "divide by Δ: q = w/Δ, rounded",
                  "zh": "要除以量化间隔 Δ: q = w/Δ,再取整"}))),
    Exercise(
        "ste_grad", "04", "straight-through: ∂L/∂w = ∂L/∂ŵ where |w/Δ| ≤ 2^(n−1) − 1, 0 where clipped",
        (Output("∂L/∂w", {"en": "∂L/∂ŵ · 1[−Q ≤ w/Δ ≤ Q], Q = 2^(n−1) − 1",
                          "zh": "∂L/∂ŵ · 1[−Q ≤ w/Δ ≤ Q], Q = 2^(n−1) − 1"}),),
        (  # w/Δ = [1, −3.5, 4, 2.9] with Q = 3: inside, clipped, clipped, inside
            Case(dict(w=np.array([0.5, -1.75, 2.0, 1.45]), delta=0.5, n=3,
                      grad_out=np.array([0.1, 0.2, -0.3, 0.4])), (np.array([0.1, 0.0, 0.0, 0.4]),)),),
        (Mistake("zero_grad", lambda w, delta, n, grad_out: (np.zeros_like(grad_out),),
                 {"en": "rounding has zero derivative almost everywhere; the straight-through estimator passes the "
                        "gradient as if round were the identity",
                  "zh": "取整函数几乎处处导数为零; 直通估计器 (STE) 把 round 当作恒等函数,直接传递梯度"}),
         Mistake("no_clip", lambda w, delta, n, grad_out: (grad_out,),
                 {"en": "where w/Δ is clipped, ŵ no longer depends on w: the gradient there is 0",
                  "zh": "在 w/Δ 被截断的位置, ŵ 不再依赖 w: 那里的梯度为 0"}),
         Mistake("times_delta", lambda w, delta, n, grad_out: (
             grad_out * (np.abs(w / delta) <= 2 ** (n - 1) - 1) / delta,),
            {"en": "ŵ = Δ·round(w/Δ) ≈ w: the Δ and 1/Δ cancel, no factor 1/Δ",
             "zh": "ŵ = Δ·round(w/Δ) ≈ w: Δ 与 1/Δ 相互抵消,没有 1/Δ 这个因子"}))),
    Exercise(
        "pack_bits", "04", "n-bit two's-complement codes, most significant bit first, in ⌈N·n/8⌉ bytes",
        (Output("bytes", {"en": "the codes' n-bit two's-complement fields, MSB first, cut into bytes (uint8, last zero-padded)",
                          "zh": "各码的 n 位补码,高位在前,按字节切分 (uint8,末字节补零)"}),),
        (  # 4 bits: −1 → 1111, 3 → 0011 → 0xF3 = 243
            Case(dict(q=np.array([-1, 3]), n=4), (np.array([243], np.uint8),)),
            # 3 bits: 1 → 001, −2 → 110, 0 → 000 → 00111000 0(0000000) → [56, 0]
            Case(dict(q=np.array([1, -2, 0]), n=3), (np.array([56, 0], np.uint8),)),
            Case(dict(q=np.array([-128, 127]), n=8), (np.array([128, 127], np.uint8),))),
        (Mistake("lsb_first", lambda q, n: (np.packbits(
            ((np.asarray(q).astype(np.int64)[:, None] & ((1 << n) - 1)) >> np.arange(n)) & 1),),
            {"en": "bit order: write each code's most significant bit first",
             "zh": "位序: 每个码先写最高有效位"}),
         Mistake("one_byte_per_code", lambda q, n: ((np.asarray(q).astype(np.int64) & ((1 << n) - 1)).astype(np.uint8),),
                 {"en": "pack the bits: N codes of n bits take ⌈N·n/8⌉ bytes, not one byte each",
                  "zh": "要把位紧密打包: N 个 n 位的码占 ⌈N·n/8⌉ 字节,而不是每个码一个字节"}))),
)

# ---- 05 asymmetric, zero point, LSQ, integer requantisation ----------------------------------
_add(
    Exercise(
        "asymmetric_params", "05", "r_min = min w ; Δ = (r_max − r_min)/(2^n − 1)",
        (Output("Δ", {"en": "(max w − min w)/(2^n − 1)", "zh": "(max w − min w)/(2^n − 1)"}),
         Output("r_min", {"en": "min w", "zh": "min w"})),
        (  # (1 − (−0.5))/(2² − 1) = 1.5/3 = 0.5 ; (2.3 − (−0.25))/255 = 0.01
            Case(dict(w=np.array([-0.5, 0.25, 1.0]), n=2), (0.5, -0.5)),
            Case(dict(w=np.array([[0.0, 2.3], [-0.25, 1.0]]), n=8), (0.01, -0.25))),
        (Mistake("signed_levels", lambda w, n: ((w.max() - w.min()) / (2 ** (n - 1) - 1), w.min()),
                 {"en": "asymmetric uses all 2^n levels: divide by 2^n − 1",
                  "zh": "非对称量化使用全部 2^n 个级别: 除以 2^n − 1"}),
         Mistake("no_minus_one", lambda w, n: ((w.max() - w.min()) / 2 ** n, w.min()),
                 {"en": "2^n levels have 2^n − 1 gaps: divide by 2^n − 1",
                  "zh": "2^n 个级别之间有 2^n − 1 个间隔: 除以 2^n − 1"}))),
    Exercise(
        "zero_point", "05", "z = clip(round(−r_min/Δ), 0, 2^n − 1), so that x = 0 is exactly the code z",
        (Output("z", {"en": "clip(round(−r_min/Δ), 0, 2^n − 1)", "zh": "clip(round(−r_min/Δ), 0, 2^n − 1)"}),),
        (  # −(−0.5)/0.5 = 1 ; 0.73/0.1 = 7.3 → 7 ; r_min > 0: −2 → clipped to 0 ; 300 → 255
            Case(dict(delta=0.5, r_min=-0.5, n=2), (1,)),
            Case(dict(delta=0.1, r_min=-0.73, n=8), (7,)),
            Case(dict(delta=0.1, r_min=0.2, n=8), (0,)),
            Case(dict(delta=0.01, r_min=-3.0, n=8), (255,))),
        (Mistake("zero_point_sign", lambda delta, r_min, n: (int(np.clip(np.rint(r_min / delta), 0, 2 ** n - 1)),),
                 {"en": "zero point sign: z = −r_min/Δ (r_min ≤ 0, so z ≥ 0); x = 0 must map to q = z",
                  "zh": "零点的符号: z = −r_min/Δ (r_min ≤ 0,所以 z ≥ 0); x = 0 必须映射到 q = z"}),
         Mistake("zero_point_sign_unclipped", lambda delta, r_min, n: (int(np.rint(r_min / delta)),),
                 {"en": "zero point sign: z = −r_min/Δ, then clip to [0, 2^n − 1]",
                  "zh": "零点的符号: z = −r_min/Δ,再截断到 [0, 2^n − 1]"}),
         Mistake("no_clip", lambda delta, r_min, n: (int(np.rint(-r_min / delta)),),
                 {"en": "z must be a code: clip it to [0, 2^n − 1]",
                  "zh": "零点 z 必须是一个码: 把它截断到 [0, 2^n − 1]"}),
         Mistake("not_rounded", lambda delta, r_min, n: (float(np.clip(-r_min / delta, 0, 2 ** n - 1)),),
                 {"en": "z is an integer: round −r_min/Δ",
                  "zh": "零点 z 是整数: 对 −r_min/Δ 取整"}))),
    Exercise(
        "affine_roundtrip", "05", "q = clip(round(x/Δ) + z, 0, 2^n − 1) ; x̂ = Δ(q − z)",
        (Output("q", {"en": "clip(round(x/Δ) + z, 0, 2^n − 1)", "zh": "clip(round(x/Δ) + z, 0, 2^n − 1)"}),
         Output("x̂", {"en": "Δ·(q − z)", "zh": "Δ·(q − z)"})),
        (  # Δ = 0.5, z = 1, n = 2: x/Δ = [−1, 0, 0.6, 2, 5] → +1 → [0, 1, 2, 3, 6 → 3]; x̂ = 0.5(q − 1)
            Case(dict(x=np.array([-0.5, 0.0, 0.3, 1.0, 2.5]), delta=0.5, z=1, n=2),
                 (np.array([0, 1, 2, 3, 3]), np.array([-0.5, 0.0, 0.5, 1.0, 1.0]))),),
        (Mistake("zero_point_sign", lambda x, delta, z, n: (
            np.clip(np.rint(x / delta) - z, 0, 2 ** n - 1), delta * (np.clip(np.rint(x / delta) - z, 0, 2 ** n - 1) + z)),
            {"en": "zero point sign: q = round(x/Δ) **+** z and x̂ = Δ(q **−** z)",
             "zh": "零点的符号: q = round(x/Δ) **+** z,而 x̂ = Δ(q **−** z)"}),
         Mistake("dequant_no_z", lambda x, delta, z, n: (
             np.clip(np.rint(x / delta) + z, 0, 2 ** n - 1), delta * np.clip(np.rint(x / delta) + z, 0, 2 ** n - 1)),
            {"en": "dequantising: subtract the zero point, x̂ = Δ(q − z)",
             "zh": "反量化: 减去零点, x̂ = Δ(q − z)"}),
         Mistake("no_clip", lambda x, delta, z, n: (np.rint(x / delta) + z, delta * np.rint(x / delta)),
                 {"en": "q must be a code in [0, 2^n − 1]: clip it",
                  "zh": "q 必须是 [0, 2^n − 1] 中的码: 要截断"}))),
    Exercise(
        "lsq_delta_grad", "05",
        "LSQ: v = w/Δ ; ∂ŵ/∂Δ = round(v) − v if −Q ≤ v ≤ Q, else −Q or Q (the clip bound), Q = 2^(n−1) − 1",
        (Output("∂ŵ/∂Δ", {"en": "round(v) − v inside [−Q, Q], the bound ±Q outside (v = w/Δ)",
                          "zh": "区间 [−Q, Q] 内为 round(v) − v,区间外为边界 ±Q (v = w/Δ)"}),),
        (  # Δ = 0.2, Q = 3: v = [1.3, −0.25, 10, −10] → [1 − 1.3, 0 + 0.25, 3, −3]
            Case(dict(w=np.array([0.26, -0.05, 2.0, -2.0]), delta=0.2, n=3),
                 (np.array([-0.3, 0.25, 3.0, -3.0]),)),),
        (Mistake("sign", lambda w, delta, n: (np.where(np.abs(w / delta) <= 2 ** (n - 1) - 1, w / delta - np.rint(w / delta),
                                                       -np.clip(w / delta, -(2 ** (n - 1) - 1), 2 ** (n - 1) - 1)),),
                 {"en": "sign: ŵ = Δ·round(v) with v = w/Δ, so ∂ŵ/∂Δ = round(v) + Δ·(∂round/∂v = 1)·(−w/Δ²) = round(v) − v",
                  "zh": "符号: ŵ = Δ·round(v),其中 v = w/Δ,所以 ∂ŵ/∂Δ = round(v) + Δ·(∂round/∂v = 1)·(−w/Δ²) = round(v) − v"}),
         Mistake("zero_outside", lambda w, delta, n: (np.where(np.abs(w / delta) <= 2 ** (n - 1) - 1,
                                                               np.rint(w / delta) - w / delta, 0.0),),
                 {"en": "outside the range ŵ = ±QΔ, so ∂ŵ/∂Δ = ±Q, not 0",
                  "zh": "范围之外 ŵ = ±QΔ,所以 ∂ŵ/∂Δ = ±Q,不是 0"}),
         Mistake("round_only", lambda w, delta, n: (np.clip(np.rint(w / delta), -(2 ** (n - 1) - 1), 2 ** (n - 1) - 1),),
                 {"en": "inside the range, round(v) − v: Δ also appears inside round(w/Δ) (straight-through gives −v)",
                  "zh": "范围之内为 round(v) − v: Δ 也出现在 round(w/Δ) 里面 (直通估计给出 −v)"}))),
    Exercise(
        "quantize_multiplier", "05", "M = M₀·2^(−shift), M₀ an integer in [2^(b−1), 2^b)",
        (Output("M₀", {"en": "round(f·2^b) where M = f·2^e, f ∈ [0.5, 1)", "zh": "round(f·2^b),其中 M = f·2^e, f ∈ [0.5, 1)"}),
         Output("shift", {"en": "b − e", "zh": "b − e"})),
        (  # 0.75 = 0.75·2⁰ → M₀ = 0.75·256 = 192, shift = 8 ; 0.1 = 0.8·2⁻³ → round(204.8) = 205, shift 11
            Case(dict(M=0.75, bits=8), (192, 8)),
            Case(dict(M=0.1, bits=8), (205, 11)),
            Case(dict(M=3.0, bits=8), (192, 6))),   # 3 = 0.75·2² → 192, 8 − 2 = 6
        (Mistake("truncated", lambda M, bits: (int(np.frexp(M)[0] * 2 ** bits), bits - int(np.frexp(M)[1])),
                 {"en": "M₀ is *rounded*: round(f·2^b), not truncated",
                  "zh": "M₀ 要*舍入*到最近的整数: round(f·2^b),不是直接舍去小数部分"}),
         Mistake("shift_sign", lambda M, bits: (int(np.rint(np.frexp(M)[0] * 2 ** bits)), bits + int(np.frexp(M)[1])),
                 {"en": "shift = b − e: M = f·2^e = (f·2^b)·2^(e−b)",
                  "zh": "移位量 shift = b − e: 因为 M = f·2^e = (f·2^b)·2^(e−b)"}))),
    Exercise(
        "requantize", "05", "q_y = clip(((acc·M₀ + 2^(shift−1)) >> shift) + z_y, q_lo, q_hi)",
        (Output("q_y", {"en": "clip(((acc·M₀ + 2^(shift−1)) >> shift) + z_y, q_lo, q_hi)",
                        "zh": "clip(((acc·M₀ + 2^(shift−1)) >> shift) + z_y, q_lo, q_hi)"}),),
        (  # M₀ = 205, shift = 11 (M ≈ 0.1): acc·205 + 1024 → >> 11 (floor division by 2048)
            # 100: 21524 // 2048 = 10 → 13 ; −100: −19476 // 2048 = −10 → −7 → clip 0 ;
            # 37: 8609 // 2048 = 4 → 7 ; 25: 6149 // 2048 = 3 → 6 ; 2000: 411024 // 2048 = 200 → 203
            Case(dict(acc=np.array([100, -100, 37, 25, 2000]), M0=205, shift=11, z=3, q_lo=0, q_hi=255),
                 (np.array([13, 0, 7, 6, 203]),)),
            Case(dict(acc=np.array([-30, 30, 5000]), M0=205, shift=11, z=0, q_lo=-127, q_hi=127),
                 (np.array([-3, 3, 127]),))),
        (Mistake("no_rounding_term", lambda acc, M0, shift, z, q_lo, q_hi: (
            np.clip(((acc * M0) >> shift) + z, q_lo, q_hi),),
            {"en": "add 2^(shift−1) before shifting, so that >> rounds instead of flooring",
             "zh": "移位前先加 2^(shift−1),这样 >> 才是舍入到最近的整数,而不是向下取整"}),
         Mistake("no_zero_point", lambda acc, M0, shift, z, q_lo, q_hi: (
             np.clip((acc * M0 + (1 << (shift - 1))) >> shift, q_lo, q_hi),),
            {"en": "add the output zero point z_y after the shift",
             "zh": "移位之后要加上输出的零点 z_y"}),
         Mistake("no_clip", lambda acc, M0, shift, z, q_lo, q_hi: (
             ((acc * M0 + (1 << (shift - 1))) >> shift) + z,),
            {"en": "clip to the output range [q_lo, q_hi]",
             "zh": "要截断到输出范围 [q_lo, q_hi]"}))),
)

# ---- 06 distillation -------------------------------------------------------------------------
_ZS = np.array([[0.0, 0.0], [1.0, -1.0]])
_ZT = np.array([[0.0, LN3], [2.0, 0.0]])
_add(
    Exercise(
        "softmax_t", "06", "p^T = softmax(z/T) = exp(z_i/T)/Σ_j exp(z_j/T), over the last axis",
        (Output("p^T", {"en": "exp(z_i/T)/Σ_j exp(z_j/T)", "zh": "exp(z_i/T)/Σ_j exp(z_j/T)"}),),
        (  # z = [0, ln 3]: T = 1 → [1, 3]/4 ; T = 2 → [1, √3]/(1 + √3)
            Case(dict(z=np.array([0.0, LN3]), T=1.0), (np.array([0.25, 0.75]),)),
            Case(dict(z=np.array([[0.0, LN3], [5.0, 5.0]]), T=2.0),
                 (np.array([[1 / (1 + np.sqrt(3)), np.sqrt(3) / (1 + np.sqrt(3))], [0.5, 0.5]]),)),
            Case(dict(z=np.array([1000.0, 1000.0 + LN3]), T=1.0), (np.array([0.25, 0.75]),))),
        (Mistake("no_temperature", lambda z, T: (_sm(z),), {"en": "divide the logits by T before the softmax",
                                                            "zh": "在 softmax 之前先把 logits 除以温度 T"}),
         Mistake("times_t", lambda z, T: (_sm(np.asarray(z) * T),),
                 {"en": "divide by T (a higher T flattens the distribution), do not multiply",
                  "zh": "要除以温度 T (T 越高,分布越平缓),不是乘以 T"}),
         Mistake("overflow", lambda z, T: (np.exp(np.asarray(z) / T) / np.exp(np.asarray(z) / T).sum(-1, keepdims=True),),
                 {"en": "exp overflows for large logits: subtract max(z/T) first (softmax does not change)",
                  "zh": "logits 很大时 exp 会溢出: 先减去 max(z/T) (softmax 结果不变)"}),
         Mistake("wrong_axis", lambda z, T: (np.exp(np.asarray(z) / T) / np.exp(np.asarray(z) / T).sum(0, keepdims=True),),
                 {"en": "normalise over the classes, the last axis (axis=-1)",
                  "zh": "在类别维度, 即最后一个轴 (axis=-1) 上归一化"}))),
    Exercise(
        "soft_target_loss", "06", "L_soft = T²·(1/N)Σ_n KL(p_t^T ‖ p_s^T) = T²·(1/N)Σ_n Σ_i p_t,i (log p_t,i − log p_s,i)",
        (Output("L_soft", {"en": "T²·(1/N)Σ_n Σ_i p_t^T (log p_t^T − log p_s^T)",
                           "zh": "T²·(1/N)Σ_n Σ_i p_t^T (log p_t^T − log p_s^T)"}),),
        (  # T = 1, N = 1: p_t = [.25, .75], p_s = [.5, .5] → .25 ln .5 + .75 ln 1.5 = 0.1308120...
            Case(dict(z_s=_ZS[:1], z_t=_ZT[:1], T=1.0), (0.1308120359411370,)),
            # T = 2, N = 2: row 2 has p_s = p_t (KL 0); row 1: KL = 0.0363407829 → 4·0.0363407829/2
            Case(dict(z_s=_ZS, z_t=_ZT, T=2.0), (0.07268156574094728,))),
        (Mistake("t_squared_missing", lambda z_s, z_t, T: (_kl(z_s, z_t, T),),
                 {"en": "T² missing: the soft-target loss is multiplied by T² so that its gradient keeps its size as T grows",
                  "zh": "漏了 T²: 软目标损失要乘以 T²,这样温度 T 增大时梯度的量级保持不变"}),
         Mistake("cross_entropy", lambda z_s, z_t, T: (T * T * -(_sm(z_t, T) * np.log(_sm(z_s, T))).sum(-1).mean(),),
                 {"en": "that is the cross-entropy: it differs from KL by the teacher's entropy (same gradient, other value)",
                  "zh": "这是交叉熵: 它与 KL 散度相差教师分布的熵 (梯度相同,数值不同)"}),
         Mistake("kl_reversed", lambda z_s, z_t, T: (T * T * _kl(z_t, z_s, T),),
                 {"en": "KL the wrong way round: KL(p_t ‖ p_s) weights the log-ratio by the *teacher's* p_t",
                  "zh": "KL 的方向反了: KL(p_t ‖ p_s) 用*教师*的 p_t 给对数比加权"}),
         Mistake("sum_not_mean", lambda z_s, z_t, T: (T * T * _kl(z_s, z_t, T) * len(np.atleast_2d(z_s)),),
                 {"en": "average over the N examples (1/N), do not sum",
                  "zh": "对 N 个样本取平均 (1/N),不是求和"}))),
    Exercise(
        "soft_target_grad", "06", "∂L_soft/∂z_s = T·(p_s^T − p_t^T)/N",
        (Output("∂L_soft/∂z_s", {"en": "T·(p_s^T − p_t^T)/N", "zh": "T·(p_s^T − p_t^T)/N"}),),
        (  # T = 3, N = 2: row 1: p_t = [1, 3^(1/3)]/(1 + 3^(1/3)) = [0.4094578, 0.5905422], p_s = [0.5, 0.5]
            # → 3·(0.5 − 0.4094578)/2 = 0.1358122 ; row 2: z_s and z_t differ by a constant → p_s = p_t → 0
            Case(dict(z_s=_ZS, z_t=_ZT, T=3.0),
                 (np.array([[0.13581215522081408, -0.13581215522081408], [0.0, 0.0]]),)),
            Case(dict(z_s=_ZS[:1], z_t=_ZT[:1], T=1.0), (np.array([[0.25, -0.25]]),))),
        (Mistake("t_squared", lambda z_s, z_t, T: (T * T * (_sm(z_s, T) - _sm(z_t, T)) / len(z_s),),
                 {"en": "T²·(1/T) = T: the T² of the loss times the 1/T of the chain rule through z/T",
                  "zh": "T²·(1/T) = T: 损失中的 T² 乘以经过 z/T 的链式法则带来的 1/T"}),
         Mistake("no_t", lambda z_s, z_t, T: ((_sm(z_s, T) - _sm(z_t, T)) / len(z_s),),
                 {"en": "T² missing: the loss's T² times the 1/T of z/T leaves a factor T",
                  "zh": "漏了 T²: 损失中的 T² 乘以 z/T 带来的 1/T,剩下一个因子 T"}),
         Mistake("sign", lambda z_s, z_t, T: (T * (_sm(z_t, T) - _sm(z_s, T)) / len(z_s),),
                 {"en": "sign: the gradient is p_s − p_t (student minus teacher)",
                  "zh": "符号: 梯度是 p_s − p_t (学生减教师)"}),
         Mistake("no_mean", lambda z_s, z_t, T: (T * (_sm(z_s, T) - _sm(z_t, T)),),
                 {"en": "divide by N: the loss is a mean over the batch",
                  "zh": "要除以 N: 损失是对整个批次的平均"}))),
    Exercise(
        "distillation_loss", "06", "L = α·L_soft + (1 − α)·CE(z_s, y), CE = −(1/N)Σ log softmax(z_s)[y]",
        (Output("L", {"en": "α·L_soft + (1 − α)·CE(z_s, y)", "zh": "α·L_soft + (1 − α)·CE(z_s, y)"}),),
        (  # L_soft (T = 2) = 0.0726815657 ; CE at T = 1 with y = [1, 0]: (ln 2 − ln 0.8807971)/2 = 0.4100376
            Case(dict(z_s=_ZS, z_t=_ZT, y=np.array([1, 0]), T=2.0, alpha=0.25), (0.325698588286331,)),),
        (Mistake("alpha_swapped", lambda z_s, z_t, y, T, alpha: ((1 - alpha) * T * T * _kl(z_s, z_t, T)
                                                                 + alpha * _ce(z_s, y),),
                 {"en": "α weights the soft-target loss, 1 − α the hard labels",
                  "zh": "α 是软目标损失的权重, 1 − α 是硬标签的权重"}),
         Mistake("ce_at_t", lambda z_s, z_t, y, T, alpha: (alpha * T * T * _kl(z_s, z_t, T) + (1 - alpha) * _ce(z_s / T, y),),
                 {"en": "the hard-label cross-entropy uses the plain logits (T = 1)",
                  "zh": "硬标签的交叉熵使用原始 logits (T = 1)"}),
         Mistake("t_squared_missing", lambda z_s, z_t, y, T, alpha: (alpha * _kl(z_s, z_t, T) + (1 - alpha) * _ce(z_s, y),),
                 {"en": "T² missing in the soft-target term",
                  "zh": "软目标损失项中漏了 T²"}))),
    Exercise(
        "hint_loss", "06", "L_hint = β·mean((F_s − F_t)²) ; ∂L_hint/∂F_s = 2β(F_s − F_t)/size",
        (Output("L_hint", {"en": "β·mean((F_s − F_t)²)", "zh": "β·mean((F_s − F_t)²)"}),
         Output("∂L_hint/∂F_s", {"en": "2β(F_s − F_t)/size", "zh": "2β(F_s − F_t)/size"})),
        (  # d = [[1, −2], [0, 3]]: mean d² = 14/4 = 3.5 → β = 0.5: 1.75 ; grad 2·0.5·d/4 = d/4
            Case(dict(f_s=np.array([[1.0, 0.0], [2.0, 3.0]]), f_t=np.array([[0.0, 2.0], [2.0, 0.0]]), beta=0.5),
                 (1.75, np.array([[0.25, -0.5], [0.0, 0.75]]))),),
        (Mistake("sum_not_mean", lambda f_s, f_t, beta: (beta * ((f_s - f_t) ** 2).sum(), 2 * beta * (f_s - f_t)),
                 {"en": "mean over all elements, not the sum",
                  "zh": "对所有元素取平均,不是求和"}),
         Mistake("no_two", lambda f_s, f_t, beta: (beta * ((f_s - f_t) ** 2).mean(), beta * (f_s - f_t) / f_s.size),
                 {"en": "d(x²)/dx = 2x: the gradient has a factor 2",
                  "zh": "d(x²)/dx = 2x: 梯度中有因子 2"}),
         Mistake("sign", lambda f_s, f_t, beta: (beta * ((f_s - f_t) ** 2).mean(), 2 * beta * (f_t - f_s) / f_s.size),
                 {"en": "sign: the gradient with respect to F_s is +2β(F_s − F_t)/size",
                  "zh": "符号: 对 F_s 的梯度是 +2β(F_s − F_t)/size"}))),
)


def _kl(z_s, z_t, T):
    """(1/N)Σ KL(softmax(z_t/T) ‖ softmax(z_s/T)), no T² (for the mistakes)."""
    pt, ps = _sm(z_t, T), _sm(z_s, T)
    return float((pt * (np.log(pt) - np.log(ps))).sum(-1).mean())


def _ce(z, y):
    p = _sm(z)
    return float(-np.log(p[np.arange(len(y)), y]).mean())


# ---- 07 the whole pipeline -------------------------------------------------------------------
_add(
    Exercise(
        "artifact_bytes", "07", "bitmask + packed codes: ⌈N/8⌉ + ⌈nnz·n/8⌉ + 4 (one float32 Δ) bytes",
        (Output("bytes", {"en": "⌈N/8⌉ + ⌈nnz·n/8⌉ + 4", "zh": "⌈N/8⌉ + ⌈nnz·n/8⌉ + 4"}),),
        (  # N = 235 200 (fc1 of LeNet-300-100), 5 % kept: nnz = 11 760, 4 bits:
            # 29 400 + 5 880 + 4 = 35 284
            Case(dict(N=235200, nnz=11760, n=4), (35284,)),
            # 100 weights, 7 kept, 3 bits: ⌈12.5⌉ = 13 + ⌈21/8⌉ = 3 + 4 = 20
            Case(dict(N=100, nnz=7, n=3), (20,))),
        (Mistake("floor", lambda N, nnz, n: (N // 8 + nnz * n // 8 + 4,),
                 {"en": "round the byte counts *up*: ⌈·⌉ (a partly used byte is still stored)",
                  "zh": "字节数要*向上*取整: ⌈·⌉ (只用了一部分的字节也要存储)"}),
         Mistake("dense_codes", lambda N, nnz, n: (-(-N // 8) + -(-N * n // 8) + 4,),
                 {"en": "only the nnz kept weights have codes; the bitmask says where they go",
                  "zh": "只有保留下来的 nnz 个权重有码; 位掩码记录它们的位置"}),
         Mistake("no_delta", lambda N, nnz, n: (-(-N // 8) + -(-nnz * n // 8),),
                 {"en": "the step size Δ is stored too: 4 bytes (float32)",
                  "zh": "量化间隔 Δ 也要存储: 4 字节 (float32)"}))),
)



# ---- 10 beyond the document: N:M sparsity ------------------------------------------------------
def _nm(scores, n, m, *, sign=1.0, transform=None, tie_high=False):
    """Per group of m consecutive entries of each row, 1 at the n largest (ties → lower index);
    the keyword arguments produce the mistakes below."""
    s = np.asarray(scores, np.float64)
    s = transform(s) if transform else s
    g = sign * s.reshape(s.shape[0], -1, m)
    if tie_high:   # ascending stable sort, last n: among equal scores the *higher* index wins
        top = np.argsort(g, axis=-1, kind="stable")[..., -n:]
    else:
        top = np.argsort(-g, axis=-1, kind="stable")[..., :n]
    keep = np.zeros(g.shape)
    np.put_along_axis(keep, top, 1.0, axis=-1)
    return keep.reshape(s.shape)


def _row_topk(scores, n, m):
    s = np.asarray(scores, np.float64)
    k = s.shape[1] * n // m
    top = np.argsort(-s, axis=-1, kind="stable")[:, :k]
    keep = np.zeros(s.shape)
    np.put_along_axis(keep, top, 1.0, axis=-1)
    return keep


NM_S = [[0.9, -0.1, 0.3, 0.5, 0.0, 0.2, 0.8, 0.7],
        [0.1, 0.4, 0.6, 0.2, 1.0, 0.9, -2.0, 0.3]]

_add(
    Exercise(
        "nm_mask", "10", "m = 1 at the N largest scores of every group of M consecutive entries of a row",
        (Output("m", {"en": "1 at the N largest scores of each group of M consecutive entries, 0 elsewhere",
                      "zh": "每行每组 M 个相邻元素中得分最大的 N 个位置为 1,其余为 0"}),),
        (  # groups (0.9 −0.1 0.3 0.5) (0.0 0.2 0.8 0.7) (0.1 0.4 0.6 0.2) (1.0 0.9 −2.0 0.3), keep 2 of 4
            Case(dict(scores=np.array(NM_S), n=2, m=4),
                 (np.array([[1, 0, 0, 1, 0, 0, 1, 1], [0, 1, 1, 0, 1, 1, 0, 0]], dtype=float),)),
            # 2 of every 4, not the 4 largest of the row: (5 4 3 2) → 5, 4 ; (1 0 −1 −2) → 1, 0
            Case(dict(scores=np.array([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0, -1.0, -2.0]]), n=2, m=4),
                 (np.array([[1, 1, 0, 0, 1, 1, 0, 0]], dtype=float),)),
            # ties: three equal scores in a group of 4, keep 1 → the lower index
            Case(dict(scores=np.array([[0.5, 0.5, 0.1, 0.5, 0.0, 0.0, 0.0, 0.0]]), n=1, m=4),
                 (np.array([[1, 0, 0, 0, 1, 0, 0, 0]], dtype=float),))),
        (Mistake("keeps_smallest", lambda scores, n, m: (_nm(scores, n, m, sign=-1.0),),
                 {"en": "it keeps the smallest scores of each group: the mask is 1 where the score is *large*",
                  "zh": "保留的是每组中得分最小的位置: 掩码应在得分*大*的位置为 1"}),
         Mistake("row_topk", lambda scores, n, m: (_row_topk(scores, n, m),),
                 {"en": "N:M chooses inside every group of M consecutive entries, not the N/M largest of the whole row",
                  "zh": "N:M 是在每组 M 个相邻元素内部选择,而不是在整行中选最大的 N/M 比例"}),
         Mistake("abs_scores", lambda scores, n, m: (_nm(scores, n, m, transform=np.abs),),
                 {"en": "the scores are already the importance: keep the largest score, not the largest |score|",
                  "zh": "得分本身就是重要性: 保留得分最大的,而不是绝对值最大的"}),
         Mistake("ties_high", lambda scores, n, m: (_nm(scores, n, m, tie_high=True),),
                 {"en": "ties: among equal scores keep the lower index (a stable sort of −scores, first N)",
                  "zh": "并列: 得分相同时保留下标较小的 (对 −scores 做稳定排序,取前 N 个)"}))),
)


# ---- 09 why isn't it faster? -----------------------------------------------------------------
def _out(size, k, stride, padding):
    return (size + 2 * padding - k) // stride + 1


_ELL_X = np.array([[1.0, 2.0, 3.0], [0.0, 3.0, 5.0]])
# W = [[0, 2, 0], [1, 0, −1]]: row 0 keeps column 1 (value 2) and is padded with (column 0, value 0)
_ELL_COLS, _ELL_VALS = np.array([[1, 0], [0, 2]]), np.array([[2.0, 0.0], [1.0, -1.0]])
_ELL_X1, _ELL_COLS1, _ELL_VALS1 = np.array([[2.0, -1.0, 0.5, 4.0]]), np.array([[3, 1], [0, 0]]), \
    np.array([[0.5, -2.0], [0.0, 0.0]])


def _ell_no_gather(cols, vals, x):
    """The slip: value k of row o multiplied by input feature k (cols ignored)."""
    k = vals.shape[1]
    return (x[:, :k] @ vals.T,)


_add(
    Exercise(
        "ell_forward", "09", "y[n, o] = Σ_k vals[o, k] · x[n, cols[o, k]]  (ELL storage of W)",
        (Output("y", {"en": "Σ_k vals[o, k]·x[n, cols[o, k]], shape (N, out)",
                      "zh": "Σ_k vals[o, k]·x[n, cols[o, k]], 形状 (N, out)"}),),
        (  # n = 0: o = 0: 2·x[0,1] + 0 = 4 ; o = 1: 1·x[0,0] − 1·x[0,2] = 1 − 3 = −2
            #  n = 1: o = 0: 2·3 = 6 ; o = 1: 0 − 5 = −5
            Case(dict(cols=_ELL_COLS, vals=_ELL_VALS, x=_ELL_X), (np.array([[4.0, -2.0], [6.0, -5.0]]),)),
            # 0.5·x[3] − 2·x[1] = 2 + 2 = 4 ; the all-padding row gives 0
            Case(dict(cols=_ELL_COLS1, vals=_ELL_VALS1, x=_ELL_X1), (np.array([[4.0, 0.0]]),))),
        (Mistake("no_gather", _ell_no_gather,
                 {"en": "value vals[o, k] belongs to input feature cols[o, k], not to feature k: "
                        "gather x[:, cols] first",
                  "zh": "vals[o, k] 对应的是输入特征 cols[o, k], 不是特征 k: 先取 x[:, cols]"}),
         Mistake("transposed", lambda cols, vals, x: (np.einsum("nok,ok->on", x[:, cols], vals),),
                 {"en": "the output is (N, out), one row per input row: transpose it",
                  "zh": "输出的形状是 (N, out), 每个输入样本一行: 请转置"}))),
    Exercise(
        "ell_density", "09", "ELL work share = K / in, K = the largest number of nonzeros in a row of W",
        (Output("K/in", {"en": "max_o nnz(W[o, :]) / in", "zh": "max_o nnz(W[o, :]) / in"}),),
        (  # row nonzeros 2, 0, 1 → K = 2 ; in = 4 → 0.5   (nnz/size would be 3/12 = 0.25)
            Case(dict(w=np.array([[0.0, 1.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0]])), (0.5,)),
            # row nonzeros 1, 3 → K = 3 ; in = 5 → 0.6   (nnz/size = 0.4, K/out = 1.5)
            Case(dict(w=np.array([[1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 2.0, 3.0, 0.0, 4.0]])), (0.6,))),
        (Mistake("nnz_density", lambda w: (np.count_nonzero(w) / w.size,),
                 {"en": "ELL pads every row to the longest one: use K = the largest row count, not nnz",
                  "zh": "ELL 把每一行都补齐到最长的一行: 用 K = 最多的一行非零个数, 不是 nnz"}),
         Mistake("per_output", lambda w: ((w != 0).sum(1).max() / w.shape[0],),
                 {"en": "divide by the number of inputs (columns of W), the length of a dense row",
                  "zh": "要除以输入个数 (W 的列数), 即稠密一行的长度"}))),
    Exercise(
        "conv_macs", "09", "MACs = O·C·k²·OH·OW,  OH = ⌊(H + 2p − k)/s⌋ + 1,  OW = ⌊(W + 2p − k)/s⌋ + 1",
        (Output("MACs", {"en": "O·C·k²·OH·OW (one image), OH = ⌊(H + 2p − k)/s⌋ + 1",
                         "zh": "O·C·k²·OH·OW (一张图像), OH = ⌊(H + 2p − k)/s⌋ + 1"}),),
        (  # LeNet-5 conv1: OH = (28 + 4 − 5)/1 + 1 = 28 ; 6·1·25·784 = 117,600
            Case(dict(O=6, C=1, k=5, H=28, W=28, stride=1, padding=2), (117600,)),
            # filter-pruned conv2 (10 of 16 filters, 3 input channels left): OH = 14 − 5 + 1 = 10 ;
            # 10·3·25·100 = 75,000
            Case(dict(O=10, C=3, k=5, H=14, W=14, stride=1, padding=0), (75000,)),
            # stride 2, padding 1, 9x11, k = 5: OH = ⌊(9 + 2 − 5)/2⌋ + 1 = 4, OW = ⌊8/2⌋ + 1 = 5 ;
            # 4·2·25·20 = 4,000
            Case(dict(O=4, C=2, k=5, H=9, W=11, stride=2, padding=1), (4000,))),
        (Mistake("input_size", lambda O, C, k, H, W, stride, padding: (O * C * k * k * H * W,),
                 {"en": "count the *output* positions OH·OW (one dot product of length C·k² each), "
                        "not the input's H·W",
                  "zh": "要数*输出*位置 OH·OW (每个位置一次长度为 C·k² 的点积),不是输入的 H·W"}),
         Mistake("no_padding", lambda O, C, k, H, W, stride, padding: (
             O * C * k * k * _out(H, k, stride, 0) * _out(W, k, stride, 0),),
             {"en": "the padding p adds 2p rows and columns before the windows are counted: "
                    "OH = ⌊(H + 2p − k)/s⌋ + 1",
              "zh": "填充 p 在数窗口之前增加了 2p 行和 2p 列: OH = ⌊(H + 2p − k)/s⌋ + 1"}),
         Mistake("no_stride", lambda O, C, k, H, W, stride, padding: (
             O * C * k * k * _out(H, k, 1, padding) * _out(W, k, 1, padding),),
             {"en": "with stride s the window moves s pixels at a time: divide by s (rounding down) "
                    "before adding 1",
              "zh": "步长为 s 时窗口每次移动 s 个像素: 先除以 s (向下取整) 再加 1"}),
         Mistake("k_not_squared", lambda O, C, k, H, W, stride, padding: (
             O * C * k * _out(H, k, stride, padding) * _out(W, k, stride, padding),),
             {"en": "a k×k window has k² weights per input channel",
              "zh": "k×k 的窗口每个输入通道有 k² 个权重"}),
         Mistake("no_channels", lambda O, C, k, H, W, stride, padding: (
             O * k * k * _out(H, k, stride, padding) * _out(W, k, stride, padding),),
             {"en": "each filter sums over all C input channels: the dot product has length C·k²",
              "zh": "每个滤波器对全部 C 个输入通道求和: 点积的长度是 C·k²"}))),
)


# ---- 10 beyond the document: entropy coding ---------------------------------------------------
def _canonical(lengths, shift=True, skip_zero=True, descending=False):
    """Canonical codes of the lengths, or one of the slips below (for the mistakes)."""
    lengths = [int(l) for l in lengths]
    n_len = [0] * 17
    for l in lengths:
        if l or not skip_zero:
            n_len[l] += 1
    first, code = [0] * 17, 0
    if not skip_zero:
        first[1] = code = 2 * n_len[0]
    for l in range(2, 17):
        code = 2 * (code + n_len[l - 1]) if shift else code + n_len[l - 1]
        first[l] = code
    order = sorted(range(len(lengths)), key=lambda s: (lengths[s], -s if descending else s))
    codes, nxt = [0] * len(lengths), list(first)
    for s in order:
        if lengths[s]:
            codes[s], nxt[lengths[s]] = nxt[lengths[s]], nxt[lengths[s]] + 1
    return (np.array(codes),)


_add(
    Exercise(
        "canonical_codes", "10",
        "first(1) = 0, first(l) = 2·(first(l−1) + N_{l−1}); code(s) = first(l_s) + rank of s among "
        "the symbols of length l_s (N_l: symbols of length l > 0)",
        (Output("codes", {"en": "first(l_s) + (symbols of length l_s before s), first(l) = 2·(first(l−1) + N_{l−1})",
                          "zh": "first(l_s) + (长度为 l_s 且排在 s 之前的符号个数), first(l) = 2·(first(l−1) + N_{l−1})"}),),
        (  # a b c d with lengths 2 1 3 3: N₁ = N₂ = 1, N₃ = 2; first(2) = 2·(0 + 1) = 2,
            # first(3) = 2·(2 + 1) = 6 → b = 0, a = 10 = 2, c = 110 = 6, d = 111 = 7
            Case(dict(lengths=np.array([2, 1, 3, 3])), (np.array([2, 0, 6, 7]),)),
            # RFC 1951's example, A…H with lengths 3 3 3 3 3 2 4 4: N₂ = 1, N₃ = 5, N₄ = 2;
            # first(3) = 2·(0 + 1) = 2, first(4) = 2·(2 + 5) = 14 → F = 00, A…E = 010…110, G H = 1110 1111
            Case(dict(lengths=np.array([3, 3, 3, 3, 3, 2, 4, 4])),
                 (np.array([2, 3, 4, 5, 6, 0, 14, 15]),)),
            # a length 0 is "no code" (value 0 by convention) and is not counted: N₁ = 1, N₂ = 2
            Case(dict(lengths=np.array([0, 1, 2, 2])), (np.array([0, 0, 2, 3]),))),
        (Mistake("no_shift", lambda lengths: _canonical(lengths, shift=False),
                 {"en": "a code one bit longer is the shorter code shifted left: first(l) = 2·(first(l−1) + N_{l−1})",
                  "zh": "长一位的码是短码左移一位: first(l) = 2·(first(l−1) + N_{l−1})"}),
         Mistake("zero_counted", lambda lengths: _canonical(lengths, skip_zero=False),
                 {"en": "symbols of length 0 have no code and are not counted (N₀ = 0)",
                  "zh": "长度为 0 的符号没有码, 不计入个数 (N₀ = 0)"}),
         Mistake("descending", lambda lengths: _canonical(lengths, descending=True),
                 {"en": "within one length, codes go up in increasing symbol order",
                  "zh": "同一长度内, 码按符号从小到大依次递增"}))),
)


# ---- 10 beyond the document: AdaRound and GPTQ -----------------------------------------------
def _rs(V, zeta=1.1, gamma=-0.1):
    return np.clip(1 / (1 + np.exp(-np.asarray(V, np.float64))) * (zeta - gamma) + gamma, 0, 1)


def _sig(V):
    return 1 / (1 + np.exp(-np.asarray(V, np.float64)))


_V4 = np.array([0.0, LN3, 10.0, -10.0])
# H⁻¹ of H = [[2, 1, 0], [1, 2, 1], [0, 1, 2]]: ¼·[[3, −2, 1], [−2, 4, −2], [1, −2, 3]]
_HINV3 = np.array([[3.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 3.0]]) / 4
_HINV2 = np.array([[0.5, 0.25], [0.25, 1.0]])
_W2 = np.array([[0.9, 0.0], [-1.3, 0.2]])


def _gptq_step(w, h_inv, delta, q_lo, q_hi, **slip):
    """One GPTQ column step; ``slip`` (clip, scale, sign, divide) switches on the mistakes."""
    clip, scale = slip.get("clip", True), slip.get("scale", True)
    sign, divide = slip.get("sign", 1.0), slip.get("divide", True)
    w = np.asarray(w, np.float64)
    v = np.rint(w[:, 0] / delta)
    q = np.clip(v, q_lo, q_hi) if clip else v
    err = w[:, 0] - (delta * q if scale else q)
    coef = h_inv[0, 1:] / h_inv[0, 0] if divide else h_inv[0, 1:]
    return q, w[:, 1:] - sign * np.outer(err, coef)


_add(
    Exercise(
        "rectified_sigmoid", "10", "h(V) = clip(σ(V)(ζ − γ) + γ, 0, 1), ζ = 1.1, γ = −0.1",
        (Output("h(V)", {"en": "clip(σ(V)·(ζ − γ) + γ, 0, 1)", "zh": "clip(σ(V)·(ζ − γ) + γ, 0, 1)"}),),
        (  # σ(0) = ½ → ½·1.2 − 0.1 = 0.5 ; σ(ln 3) = ¾ → 0.9 − 0.1 = 0.8 ;
            # σ(10) ≈ 0.99995 → 1.09995 → clip 1 ; σ(−10) ≈ 0.00005 → −0.09995 → clip 0
            Case(dict(V=_V4), (np.array([0.5, 0.8, 1.0, 0.0]),)),
            # σ(−ln 3) = ¼ → 0.3 − 0.1 = 0.2
            Case(dict(V=np.array([[-LN3]])), (np.array([[0.2]]),))),
        (Mistake("no_clip", lambda V: (np.asarray(V, np.float64) * 0 + _sig(V) * 1.2 - 0.1,),
                 {"en": "clip to [0, 1]: the stretched sigmoid reaches −0.1 and 1.1, and h must reach 0 and 1 exactly",
                  "zh": "要截断到 [0, 1]: 拉伸后的 sigmoid 取值在 −0.1 到 1.1 之间, 而 h 必须能精确取到 0 和 1"}),
         Mistake("plain_sigmoid", lambda V: (_sig(V),),
                 {"en": "stretch the sigmoid first: σ(V)·(ζ − γ) + γ, then clip",
                  "zh": "先拉伸 sigmoid: σ(V)·(ζ − γ) + γ, 再截断"}),
         Mistake("zeta_gamma_swapped", lambda V: (_rs(V, -0.1, 1.1),),
                 {"en": "ζ = 1.1 and γ = −0.1: the factor is ζ − γ = 1.2 and the shift is γ",
                  "zh": "ζ = 1.1, γ = −0.1: 乘的是 ζ − γ = 1.2, 加的是 γ"}))),
    Exercise(
        "rounding_regularizer", "10",
        "f_reg = Σ (1 − |2h − 1|^β) ; ∂f_reg/∂h = −2β·|2h − 1|^(β−1)·sign(2h − 1)",
        (Output("f_reg", {"en": "Σ (1 − |2h − 1|^β)", "zh": "Σ (1 − |2h − 1|^β)"}),
         Output("∂f_reg/∂h", {"en": "−2β·|2h − 1|^(β−1)·sign(2h − 1)",
                               "zh": "−2β·|2h − 1|^(β−1)·sign(2h − 1)"})),
        (  # β = 2: 1 − |−1|² = 0, 1 − 1 = 0, 1 − 0 = 1, 1 − ¼ = ¾ → 1.75 ;
            # ∂: −4·(−1)·(−1)… = 4 (h = 0), −4 (h = 1), 0, −4·½·(−1) = 2 (h = ¼)
            Case(dict(h=np.array([0.0, 1.0, 0.5, 0.25]), beta=2.0), (1.75, np.array([4.0, -4.0, 0.0, 2.0]))),
            # β = 3: |2h − 1| = ½ → 1 − ⅛ = 0.875 twice, + 1 → 2.75 ; ∂ = −6·¼·sign = ±1.5, 0
            Case(dict(h=np.array([0.25, 0.75, 0.5]), beta=3.0), (2.75, np.array([1.5, -1.5, 0.0])))),
        (Mistake("no_one_minus", lambda h, beta: (
            float(np.sum(np.abs(2 * h - 1) ** beta)),
            -2 * beta * np.abs(2 * h - 1) ** (beta - 1) * np.sign(2 * h - 1)),
            {"en": "f_reg sums 1 − |2h − 1|^β: it is 0 when h is 0 or 1 and largest at h = ½",
             "zh": "f_reg 求和的是 1 − |2h − 1|^β: h 为 0 或 1 时为 0, h = ½ 时最大"}),
         Mistake("chain_rule_two", lambda h, beta: (
             float(np.sum(1 - np.abs(2 * h - 1) ** beta)),
             -beta * np.abs(2 * h - 1) ** (beta - 1) * np.sign(2 * h - 1)),
            {"en": "chain rule: d(2h − 1)/dh = 2, so the gradient has a factor 2β, not β",
             "zh": "链式法则: d(2h − 1)/dh = 2, 所以梯度的系数是 2β, 不是 β"}),
         Mistake("gradient_sign", lambda h, beta: (
             float(np.sum(1 - np.abs(2 * h - 1) ** beta)),
             2 * beta * np.abs(2 * h - 1) ** (beta - 1) * np.sign(2 * h - 1)),
            {"en": "sign: f_reg falls as h moves towards 0 or 1, so ∂f/∂h < 0 for h > ½",
             "zh": "符号: h 向 0 或 1 靠近时 f_reg 减小, 所以 h > ½ 时 ∂f/∂h < 0"}))),
    Exercise(
        "gptq_column_update", "10",
        "q = clip(round(w₁/Δ), q_lo, q_hi) ; w_j ← w_j − (w₁ − Δq)·H⁻¹_{1j}/H⁻¹_{11} for j > 1",
        (Output("q", {"en": "clip(round(w₁/Δ), q_lo, q_hi), one code per row",
                      "zh": "clip(round(w₁/Δ), q_lo, q_hi), 每行一个码"}),
         Output("w_rest", {"en": "w_j − (w₁ − Δq)·H⁻¹_{1j}/H⁻¹_{11}, j = 2 … K",
                           "zh": "w_j − (w₁ − Δq)·H⁻¹_{1j}/H⁻¹_{11}, j = 2 … K"})),
        (  # the notebook's 1×3 layer: q₁ = round(0.4) = 0, error 0.4 ;
            # w₂ = 0.3 − 0.4·(−½)/(¾) = 17/30 ; w₃ = 0.2 − 0.4·(¼)/(¾) = 1/15
            Case(dict(w=np.array([[0.4, 0.3, 0.2]]), h_inv=_HINV3, delta=1.0, q_lo=-7, q_hi=7),
                 (np.array([0]), np.array([[17 / 30, 1 / 15]]))),
            # two rows, Δ = 0.5, codes in [−1, 1]: 1.8 → 2 → clip 1, error 0.9 − 0.5 = 0.4 → 0 − 0.4·0.25/0.5 = −0.2 ;
            # −2.6 → −3 → clip −1, error −1.3 + 0.5 = −0.8 → 0.2 + 0.8·0.5 = 0.6
            Case(dict(w=_W2, h_inv=_HINV2, delta=0.5, q_lo=-1, q_hi=1),
                 (np.array([1, -1]), np.array([[-0.2], [0.6]])))),
        (Mistake("no_clip", lambda w, h_inv, delta, q_lo, q_hi: _gptq_step(w, h_inv, delta, q_lo, q_hi, clip=False),
                 {"en": "clip the code to [q_lo, q_hi]: it has to fit in n bits",
                  "zh": "要把码截断到 [q_lo, q_hi]: 它必须能用 n 比特存下"}),
         Mistake("error_in_codes", lambda w, h_inv, delta, q_lo, q_hi: _gptq_step(w, h_inv, delta, q_lo, q_hi,
                                                                                 scale=False),
                 {"en": "the error is w₁ − Δ·q (a weight minus its quantised value), not w₁ − q",
                  "zh": "误差是 w₁ − Δ·q (权重减去它的量化值), 不是 w₁ − q"}),
         Mistake("sign", lambda w, h_inv, delta, q_lo, q_hi: _gptq_step(w, h_inv, delta, q_lo, q_hi, sign=-1.0),
                 {"en": "sign: the free weights move by −(w₁ − Δq)·H⁻¹_{1j}/H⁻¹_{11}",
                  "zh": "符号: 未量化的权重移动 −(w₁ − Δq)·H⁻¹_{1j}/H⁻¹_{11}"}),
         Mistake("no_divide", lambda w, h_inv, delta, q_lo, q_hi: _gptq_step(w, h_inv, delta, q_lo, q_hi,
                                                                            divide=False),
                 {"en": "divide by the diagonal entry H⁻¹_{11}",
                  "zh": "要除以对角元 H⁻¹_{11}"}))),
)


def notebook_exercises(notebook):
    """Names of the exercises of a notebook ("01" … "10"), in registry order."""
    return [name for name, e in EXERCISES.items() if e.notebook == notebook]
