"""Adam-optimised pruning masks — §3.1.1 steps 4–6 (and §3.1.2 step 4 for filters).

The document asks Adam to optimise the mask m under  L_task(W ⊙ m) + λ‖W ⊙ (1 − m)‖₁.  A literal
relaxed m ∈ [0, 1] does not give sparsity (``objective.py`` shows the L1 term pushes m *up*), and
a relaxed m that ends anywhere between 0 and 1 must still be rounded, which changes the network
the optimiser was looking at. What we do instead:

* Each mask entry has a learned score ``s`` (a Parameter, updated by Adam like any weight). The
  mask used in the forward pass is already binary:

      m = 1[ |W| + s  is among the k largest ],   k = n − round(s_t · n)

  where the sparsity s_t follows a schedule (cubic by default, Zhu & Gupta) and the top-k is
  global over layers (or per layer). With s = 0 this is gradual magnitude pruning; Adam moves s
  so that the mask departs from magnitude where the loss says so.
* The score gradient is the straight-through estimate ∂L/∂s := ∂L/∂m = ∂L/∂W_eff ⊙ W (the
  document's ∂L_task/∂m, see ``mask.LearnedMask``); the optional λ term adds its own −λ|W| to
  ∂L/∂s and +λ·sign(W)(1 − m) to ∂L/∂W, decaying the weights the mask currently drops.
* The weights are trained together with the scores by ONE Adam with two parameter groups, each
  with its own learning rate, since scores and weights live on different scales — Adam's step
  is ≈ lr whatever the gradient's size.
* ``finalize`` binarises at exactly the requested sparsity and replaces every learned mask with
  a fixed :class:`~minicompress.prune.mask.Mask` (step 5 → 6); ``remove`` then bakes it in.

Because the mask is binary at every step, the network evaluated during training *is* the pruned
network: there is no rounding gap at the end.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import numpy as np

from .. import optim
from ..nn import cross_entropy
from ..step import TaskLoss, as_task_loss
from ..train import Hook, evaluation, fit
from .mask import LearnedMask, Mask, attach_mask, get_mask, prunable_layers
from .objective import l1_penalty
from .schedule import CubicSchedule, as_schedule
from .select import SCOPES, check_sparsity, select


class LearnedMaskPruner(Hook):
    """Attaches a :class:`LearnedMask` to each prunable layer and keeps the masks at budget.

    A hook of the training loop (:mod:`minicompress.train`)::

        pruner = LearnedMaskPruner(model, schedule)          # schedule(step) -> sparsity
        before each step:  m = top-k(|W| + s) at schedule(step)          (before_step)
        the loss:          pruner.objective(task_loss) adds the λ term
        Adam:              one optimizer, groups model weights and pruner.parameters()
        pruner.finalize()                                    # exact final sparsity, fixed masks
    """

    def __init__(self, model, schedule, *, scope="global", layers=None, lam=0.0):
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {list(SCOPES)}, got {scope!r}")
        if lam < 0:
            raise ValueError(f"lam (λ) must be ≥ 0, got {lam!r}")
        self.model, self.scope, self.lam = model, scope, float(lam)
        self.schedule = as_schedule(schedule)
        self.layers = {}
        for name, layer in prunable_layers(model, layers):
            old = get_mask(layer)
            mk = LearnedMask(layer.weight.data.shape)
            if old is not None:  # continue from an existing mask: keep its pruned entries out
                mk.mask.data[...] = old.mask.data
                layer.remove_weight_transform(old)
            attach_mask(layer, mk)
            self.layers[name] = (layer, mk)
        self.sparsity = None

    def parameters(self):
        """The score Parameters s (one per masked weight tensor), for their own Adam."""
        return [mk.scores for _, mk in self.layers.values()]

    def scores(self):
        """``{name: |W| + s}``: the quantity whose top-k is the mask."""
        return {n: np.abs(layer.weight.data) + mk.scores.data for n, (layer, mk) in self.layers.items()}

    def set_sparsity(self, sparsity):
        """m ← top-k of the scores at exactly ``sparsity`` (binary, deterministic ties)."""
        self.sparsity = check_sparsity(sparsity)
        for name, keep in select(self.scores(), sparsity, self.scope).items():
            self.layers[name][1].set(keep)

    def update(self, step):
        self.set_sparsity(self.schedule(step))

    def before_step(self, trainer, batch):
        self.update(trainer.step)

    def end_of_epoch(self, trainer, record):
        self.update(trainer.step)  # the mask the next step would use, at this step's sparsity
        record["sparsity"] = self.sparsity

    def objective(self, task_loss):
        """The document's L_task(W ⊙ m) + λ‖W ⊙ (1 − m)‖₁ as a task loss (``task_loss`` alone
        when λ = 0)."""
        return task_loss if self.lam == 0 else PrunedObjective(task_loss, self)

    def add_penalty_grads(self):
        """Add the document's λ‖W ⊙ (1 − m)‖₁ gradients (straight-through for s). Returns its value."""
        if self.lam == 0:
            return 0.0
        total = 0.0
        for layer, mk in self.layers.values():
            value, dw, dm = l1_penalty(layer.weight.data, mk.mask.data, self.lam)
            layer.weight.grad += dw
            mk.scores.grad += dm
            total += value
        return total

    def finalize(self, sparsity=None):
        """Binarise at exactly ``sparsity`` (default: the schedule's last value) and swap every
        learned mask for a fixed :class:`Mask` (scores are dropped). Returns ``{name: Mask}``."""
        if sparsity is not None:
            self.set_sparsity(sparsity)
        out = {}
        for name, (layer, mk) in self.layers.items():
            fixed = Mask(mk.mask.data.shape)
            fixed.set(mk.keep)
            layer.remove_weight_transform(mk)
            attach_mask(layer, fixed)
            out[name] = fixed
        self.layers = {}
        return out


class PrunedObjective(TaskLoss):
    """L_task + λ‖W ⊙ (1 − m)‖₁: the task loss, plus the L1 term whose gradients are added into
    the weights' and scores' ``.grad`` here (the step zeroed them before the forward pass, and
    backward adds the task's gradients to them)."""

    def __init__(self, task_loss, pruner):
        self.task, self.pruner = as_task_loss(task_loss), pruner

    @property
    def capture(self):
        return self.task.capture

    def __call__(self, logits, batch):
        loss, grad = self.task(logits, batch)
        return loss + self.pruner.add_penalty_grads(), grad

    def with_features(self, logits, features, batch):
        loss, grad, feature_grads = self.task.with_features(logits, features, batch)
        return loss + self.pruner.add_penalty_grads(), grad, feature_grads


@dataclass
class MaskPruning:
    """What :func:`learned_mask_prune` does.

    sparsity : final fraction of pruned weights, in [0, 1).
    lr, score_lr : the learning rates of the two groups of the one Adam: weights and mask scores.
    lam : λ of the document's L1 term (0 = off).
    scope : ``"global"`` top-k over all layers or ``"layer"`` (each layer at ``sparsity``).
    layers : names of the layers to prune (default: every Linear/Conv2d).
    schedule : ``"cubic"`` (0 → sparsity over the first ``ramp`` fraction of the steps, then
        constant), ``"constant"`` (sparsity from the first step) or a callable step -> sparsity.
    """

    sparsity: float
    lr: float = 1e-3
    score_lr: float = 1e-3
    lam: float = 0.0
    scope: str = "global"
    layers: Optional[Sequence[str]] = None
    schedule: Union[str, Callable] = "cubic"
    ramp: float = 0.7

    def sparsity_schedule(self, total_steps):
        """``schedule(step) -> sparsity`` for a run of ``total_steps`` steps."""
        if self.schedule == "cubic":
            return CubicSchedule(0.0, self.sparsity, max(1, int(self.ramp * total_steps)))
        if self.schedule == "constant":
            return as_schedule(self.sparsity)
        if callable(self.schedule):
            return self.schedule
        raise ValueError(f"schedule must be 'cubic', 'constant' or a callable, got {self.schedule!r}")


def weights_and_scores_adam(model, pruner, lr, score_lr):
    """One Adam with two parameter groups: "weights" (every model parameter that is not a mask
    score, learning rate ``lr``) and "mask scores" (the pruner's scores, ``score_lr``) — steps 4–5
    train both at once, each at its own rate."""
    scores = {id(p) for p in pruner.parameters()}
    return optim.Adam([
        {"params": [p for p in model.parameters() if id(p) not in scores], "lr": lr,
         "name": "weights"},
        {"params": pruner.parameters(), "lr": score_lr, "name": "mask scores"}])


def learned_mask_prune(model, data, method, config, *, loss_fn=cross_entropy, eval_data=None,
                       hooks=()):
    """Prune ``model`` in place to exactly ``method.sparsity`` with an Adam-learned mask.

    ``data = (x, y)``; ``method`` a :class:`MaskPruning`; ``config`` a
    :class:`~minicompress.train.TrainConfig` (weights and mask scores are trained together for
    ``config.epochs``); ``loss_fn`` the task loss (cross-entropy, or e.g. a
    :class:`~minicompress.distill.DistillationLoss`). The training loop with the pruner as a
    hook, the λ term in the loss, and one Adam with the groups "weights" and "mask scores".

    Returns the history (with each epoch's sparsity). On return every prunable layer carries a
    fixed binary :class:`Mask` at exactly ``sparsity``; :func:`minicompress.prune.remove` bakes it in.
    """
    check_sparsity(method.sparsity)
    schedule = method.sparsity_schedule(max(1, config.total_steps(len(data[0]))))
    pruner = LearnedMaskPruner(model, schedule, scope=method.scope, layers=method.layers,
                               lam=method.lam)
    history = fit(model, weights_and_scores_adam(model, pruner, method.lr, method.score_lr), data,
                  config, loss_fn=pruner.objective(loss_fn),
                  hooks=[pruner] + evaluation(eval_data) + list(hooks))
    pruner.finalize(method.sparsity)
    return history
