"""The document's pruning objective, written literally — §3.1.1 step 4.

    L(W, m) = L_task(W ⊙ m) + λ ‖W ⊙ (1 − m)‖₁

Gradients, derived by hand (g = ∂L_task/∂W_eff at W_eff = W ⊙ m; sign(0) = 0):

    ∂L/∂W = g ⊙ m  + λ · sign(W ⊙ (1 − m)) ⊙ (1 − m)
    ∂L/∂m = g ⊙ W  − λ · sign(W ⊙ (1 − m)) ⊙ W

For m ∈ [0, 1) the penalty parts are  +λ·sign(W)(1 − m)  and  −λ|W|.  What the L1 term does
alone (gradient descent / Adam *subtract* the gradient):

* on m: −(−λ|W|) = +λ|W| ≥ 0, so every mask entry is pushed **up**, toward keeping its weight
  (the bigger the weight, the harder). The term is smallest at m = 1, where it vanishes.
* on W: −λ·sign(W)(1 − m) shrinks a weight toward 0 exactly where the mask is dropping it.

So the penalty never *creates* sparsity in m. It makes a dropped weight harmless (it decays to
0, after which the mask value no longer matters), but the decision of *which* and *how many*
weights to drop must come from elsewhere. We take it from a budget: an exact top-k of learned
scores at the sparsity given by a schedule (``learned.py``), and keep λ as an option that decays
the weights the mask currently drops.
"""
from __future__ import annotations

import numpy as np


def l1_penalty(w, m, lam):
    """λ‖W ⊙ (1 − m)‖₁ and its gradients: returns (value, ∂/∂W, ∂/∂m), shapes of W."""
    if lam < 0:
        raise ValueError(f"l1_penalty: lam (λ) must be ≥ 0, got {lam!r}")
    r = w * (1.0 - m)
    s = np.sign(r)
    value = lam * np.abs(r).sum()
    return value, lam * s * (1.0 - m), -lam * s * w


def pruning_objective(w, m, lam, task_loss):
    """The whole objective L(W, m) for one weight tensor.

    ``task_loss(W_eff) -> (L_task, g)`` evaluates the task loss at the effective weight and returns
    g = ∂L_task/∂W_eff (for a network: forward, loss, backward). Returns (L, ∂L/∂W, ∂L/∂m).
    """
    w_eff = w * m
    task, g = task_loss(w_eff)
    pen, dw_pen, dm_pen = l1_penalty(w, m, lam)
    return task + pen, g * m + dw_pen, g * w + dm_pen
