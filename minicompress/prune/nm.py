"""N:M semi-structured sparsity with a learned mask — §3.1.1's learned mask under an N:M rule.

Unstructured pruning (``learned.py``) may drop any weight; hardware gains little from it, since
the zeros sit anywhere. N:M sparsity constrains *where* the zeros are: in every group of M
consecutive weights along the input dimension at most N are non-zero (2:4 is what sparse tensor
cores run at twice the dense speed). The sparsity is exactly 1 − N/M, in every layer.

Grouping. A weight is viewed as rows, one per output unit: ``W.reshape(O, K)``.

* Linear (O, I):            K = I, groups are I/M runs of M consecutive inputs of one neuron;
* Conv2d (O, C_in, k, k):   K = C_in·k·k flattened in C order (index c·k² + i·k + j), the row of
  the filter that the convolution multiplies with an im2col column; groups are M consecutive
  entries of that row (a group may span two input channels).

A row of length K not divisible by M is an error by default. With ``pad=True`` the row is padded
with virtual entries whose score is −∞ (never kept) to a multiple of M: the last, partial group
of r < M real weights keeps min(N, r) of them, so it still has at most N non-zeros, as a padded
dense row would on hardware. LeNet-5's convolutions need this (K = 25 and 150).

The mask from scores S (shape of W), per group g of M entries:

    m_g = 1[ S_i is among the N largest of S_g ]        (ties → the lower index)

computed for all groups at once (reshape to (O, K/M, M), argsort along the last axis).

Learning it, as the project's learned mask does (``learned.py``, ``mask.LearnedMask``): the
scores are S = |W| + s with a learned s (a Parameter, updated by the one Adam), the mask is
re-chosen from S before every step, and the gradient reaches s by the straight-through rule

    ∂L/∂s := ∂L/∂m = ∂L/∂W_eff ⊙ W

With s = 0 the mask is magnitude N:M. The document's λ‖W ⊙ (1 − m)‖₁ term is available as in
``learned.py`` (``lam``); the N:M rule, not the penalty, fixes how many weights are kept.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ..nn import cross_entropy
from ..nn.checks import real_array
from ..train import evaluation, fit
from .learned import LearnedMaskPruner, weights_and_scores_adam
from .mask import LearnedMask, attach_mask, get_mask, prunable_layers


def check_nm(n, m):
    """N and M as ints with 1 ≤ N < M (N = M would prune nothing)."""
    for name, v in (("N", n), ("M", m)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"N:M sparsity: {name} must be an int, got {v!r}")
    if not 1 <= n < m:
        raise ValueError(f"N:M sparsity: need 1 ≤ N < M, got N={n}, M={m}")
    return int(n), int(m)


def nm_rows(shape, m, pad=False, what="weight"):
    """(O, K, K_padded): the rows a weight of ``shape`` is grouped along (see the module doc)."""
    if len(shape) < 2:
        raise ValueError(f"N:M sparsity: {what} must have ≥ 2 dimensions (O, K...), got shape "
                         f"{tuple(shape)}")
    o, k = int(shape[0]), int(np.prod(shape[1:]))
    if k % m and not pad:
        raise ValueError(f"N:M sparsity: {what} of shape {tuple(shape)} has rows of K = {k} "
                         f"weights, not divisible by M = {m}; pass pad=True to pad each row "
                         f"to {-(-k // m) * m}")
    return o, k, -(-k // m) * m


def nm_mask(scores, n=2, m=4, *, pad=False, what="weight"):
    """Boolean mask of ``scores``' shape (O, ...): in each group of M consecutive entries of a row
    (``scores.reshape(O, K)``), True at the N largest scores (ties → lower index).

    With ``pad=True`` a row of K not divisible by M gets −∞ padding (never kept), so its last
    group of r < M keeps min(N, r) entries.
    """
    n, m = check_nm(n, m)
    scores = real_array(scores, f"N:M sparsity: scores of {what}", np.float64)
    o, k, kp = nm_rows(scores.shape, m, pad, what)
    if np.isnan(scores).any():
        raise ValueError(f"N:M sparsity: scores of {what} contain NaN")
    rows = np.full((o, kp), -np.inf)
    rows[:, :k] = scores.reshape(o, k)
    groups = rows.reshape(o, kp // m, m)                         # (O, K/M, M)
    # stable sort of −S: largest first, equal scores in index order → the lower index wins
    top = np.argsort(-groups, axis=-1, kind="stable")[..., :n]   # (O, K/M, N)
    keep = np.zeros(groups.shape, dtype=bool)
    np.put_along_axis(keep, top, True, axis=-1)
    return keep.reshape(o, kp)[:, :k].reshape(scores.shape)     # padding dropped


def group_counts(w, m=4, *, pad=False):
    """Non-zeros per group, shape (O, ⌈K/M⌉): what an N:M check looks at."""
    w = np.asarray(w)
    o, k, kp = nm_rows(w.shape, m, pad)
    rows = np.zeros((o, kp), dtype=bool)
    rows[:, :k] = w.reshape(o, k) != 0
    return rows.reshape(o, kp // m, m).sum(axis=-1)


def is_nm(w, n=2, m=4, *, pad=False):
    """True when every group of M has at most N non-zeros."""
    n, m = check_nm(n, m)
    return bool((group_counts(w, m, pad=pad) <= n).all())


def _check_layers(named, m, pad):
    for name, layer in named:
        nm_rows(layer.weight.data.shape, m, pad, what=f"layer {name!r} weight")
    return named


def magnitude_nm(model, n=2, m=4, *, layers=None, pad=False):
    """One-shot magnitude N:M: a fixed :class:`Mask` keeping the N largest |W| of every group
    (an existing mask's pruned entries score 0, as in ``scores.weight_scores``). Returns
    ``{name: Mask}``."""
    n, m = check_nm(n, m)
    out = {}
    for name, layer in _check_layers(prunable_layers(model, layers), m, pad):
        keep = nm_mask(np.abs(layer.effective_weight()), n, m, pad=pad, what=f"layer {name!r} weight")
        mk = get_mask(layer) or attach_mask(layer)
        mk.set(keep)
        out[name] = mk
    return out


class NMPruner(LearnedMaskPruner):
    """Learned N:M masks: a :class:`LearnedMask` on each layer, re-chosen before every step as
    ``nm_mask(|W| + s)``. A hook of the training loop like :class:`LearnedMaskPruner`, whose
    score Parameters, λ term and ``finalize`` it shares; only the rule that turns scores into a
    mask differs (per group of M instead of a global top-k), so there is no sparsity schedule."""

    def __init__(self, model, n=2, m=4, *, layers=None, lam=0.0, pad=False):
        if lam < 0:
            raise ValueError(f"lam (λ) must be ≥ 0, got {lam!r}")
        self.n, self.m = check_nm(n, m)
        self.model, self.lam, self.pad = model, float(lam), bool(pad)
        self.layers = {}
        for name, layer in _check_layers(prunable_layers(model, layers), self.m, self.pad):
            old = get_mask(layer)
            if old is not None:  # an existing mask is replaced: N:M decides afresh
                layer.remove_weight_transform(old)
            self.layers[name] = (layer, attach_mask(layer, LearnedMask(layer.weight.data.shape)))
        self.sparsity = None
        self.update()

    def set_sparsity(self, sparsity):
        raise TypeError("NMPruner: the sparsity is fixed by N:M (1 − N/M per group); "
                        "there is no sparsity to set")

    def update(self, step=None):
        """m ← nm_mask(|W| + s) for every layer; records the exact fraction pruned."""
        pruned = total = 0
        for name, scores in self.scores().items():
            keep = nm_mask(scores, self.n, self.m, pad=self.pad, what=f"layer {name!r} weight")
            self.layers[name][1].set(keep)
            pruned += keep.size - int(keep.sum())
            total += keep.size
        self.sparsity = pruned / total

    def finalize(self, sparsity=None):
        """The mask of the final scores, fixed (scores dropped). Returns ``{name: Mask}``."""
        if sparsity is not None:
            self.set_sparsity(sparsity)
        self.update()
        return super().finalize()


@dataclass
class NMPruning:
    """What :func:`nm_prune` does.

    n, m : keep N of every M consecutive weights (2:4 by default).
    lr, score_lr : learning rates of the one Adam's two groups, weights and mask scores.
    lam : λ of the document's L1 term (0 = off).
    layers : names of the layers to prune (default: every Linear/Conv2d).
    pad : pad rows whose length is not a multiple of M (see the module doc) instead of failing.
    """

    n: int = 2
    m: int = 4
    lr: float = 1e-4
    score_lr: float = 1e-3
    lam: float = 0.0
    layers: Optional[Sequence[str]] = None
    pad: bool = False


def nm_prune(model, data, method, config, *, loss_fn=cross_entropy, eval_data=None, hooks=()):
    """Prune ``model`` in place to N:M with an Adam-learned mask, fine-tuning the weights with it.

    ``data = (x, y)``; ``method`` an :class:`NMPruning`; ``config`` a
    :class:`~minicompress.train.TrainConfig`. One Adam with the groups "weights" (``method.lr``)
    and "mask scores" (``method.score_lr``). On return every pruned layer carries a fixed
    N:M :class:`Mask`; returns the history.
    """
    pruner = NMPruner(model, method.n, method.m, layers=method.layers, lam=method.lam,
                      pad=method.pad)
    history = fit(model, weights_and_scores_adam(model, pruner, method.lr, method.score_lr), data,
                  config, loss_fn=pruner.objective(loss_fn),
                  hooks=[pruner] + evaluation(eval_data) + list(hooks))
    pruner.finalize()
    return history
