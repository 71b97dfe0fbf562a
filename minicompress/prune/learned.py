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
* The weights are trained together with the scores (a second Adam, since scores and weights
  live on different scales — Adam's step is ≈ lr whatever the gradient's size).
* ``finalize`` binarises at exactly the requested sparsity and replaces every learned mask with
  a fixed :class:`~minicompress.prune.mask.Mask` (step 5 → 6); ``remove`` then bakes it in.

Because the mask is binary at every step, the network evaluated during training *is* the pruned
network: there is no rounding gap at the end.
"""
from __future__ import annotations

import numpy as np

from .. import optim
from ..nn import cross_entropy
from ..train import evaluate, fit
from .mask import LearnedMask, Mask, attach_mask, get_mask, prunable_layers
from .objective import l1_penalty
from .schedule import CubicSchedule, as_schedule
from .select import SCOPES, check_sparsity, select


class LearnedMaskPruner:
    """Attaches a :class:`LearnedMask` to each prunable layer and keeps the masks at budget.

    Use with any training loop::

        pruner = LearnedMaskPruner(model, schedule)          # schedule(step) -> sparsity
        pruner.update(step)      # before each forward: m = top-k(|W| + s) at schedule(step)
        ... forward, loss, backward ...
        pruner.add_penalty_grads()                            # the λ term, if λ > 0
        ... Adam steps on model weights and on pruner.parameters() ...
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


def _loss_caller(loss_fn, pass_inputs):
    if pass_inputs:
        return lambda logits, yb, xb: loss_fn(logits, yb, xb)
    return lambda logits, yb, xb: loss_fn(logits, yb)


def learned_mask_prune(model, data, sparsity, epochs, *, rng, loss_fn=cross_entropy,
                       pass_inputs=False, lr=1e-3, score_lr=1e-3, lam=0.0, scope="global",
                       layers=None, schedule="cubic", ramp=0.7, batch_size=128, eval_data=None,
                       on_epoch=None, progress=False):
    """Prune ``model`` in place to exactly ``sparsity`` with an Adam-learned mask.

    Parameters
    ----------
    data : (x, y) training arrays; y may be anything indexable per batch (see ``loss_fn``).
    sparsity : final fraction of pruned weights, in [0, 1).
    epochs : training epochs (weights and mask scores trained together).
    loss_fn : ``loss_fn(logits, y) -> (loss, ∂loss/∂logits)``; with ``pass_inputs=True`` it is
        called as ``loss_fn(logits, y, x)``, e.g. a distillation loss that runs the teacher on x.
        Another way to give per-example extra targets (precomputed teacher logits): pass
        ``data=(x, np.arange(len(x)))`` and let ``loss_fn`` look labels and teacher logits up by
        those indices.
    lr, score_lr : Adam learning rates for the weights and for the mask scores.
    lam : λ of the document's L1 term (0 = off).
    schedule : ``"cubic"`` (0 → sparsity over the first ``ramp`` fraction of the steps, then
        constant), ``"constant"`` (sparsity from the first step) or a callable step -> sparsity.

    Returns the ``fit`` history. On return every prunable layer carries a fixed binary
    :class:`Mask` at exactly ``sparsity``; call :func:`minicompress.prune.remove` to bake it in.
    """
    check_sparsity(sparsity)
    x, y = data
    total_steps = max(1, epochs * (-(-len(x) // batch_size)))
    if schedule == "cubic":
        schedule = CubicSchedule(0.0, sparsity, max(1, int(ramp * total_steps)))
    elif schedule == "constant":
        schedule = as_schedule(sparsity)
    elif not callable(schedule):
        raise ValueError(f"schedule must be 'cubic', 'constant' or a callable, got {schedule!r}")
    pruner = LearnedMaskPruner(model, schedule, scope=scope, layers=layers, lam=lam)
    score_ids = {id(p) for p in pruner.parameters()}
    weights = [p for p in model.parameters() if id(p) not in score_ids]
    opt_w = optim.Adam(weights, lr=lr)
    opt_s = optim.Adam(pruner.parameters(), lr=score_lr)
    call_loss = _loss_caller(loss_fn, pass_inputs)
    state = {"step": 0}

    def step_fn(xb, yb):
        pruner.update(state["step"])
        state["step"] += 1
        opt_w.zero_grad()
        opt_s.zero_grad()
        logits = model(xb)
        loss, grad = call_loss(logits, yb, xb)
        if not np.isfinite(loss):
            raise FloatingPointError(f"learned_mask_prune: the loss became {loss}; try a smaller lr")
        model.backward(grad)
        loss = loss + pruner.add_penalty_grads()
        opt_w.step()
        opt_s.step()
        return loss, logits

    def end_of_epoch(epoch, record):
        pruner.update(state["step"])  # the mask the next step would use, at this step's sparsity
        record["sparsity"] = pruner.sparsity
        if eval_data is not None:
            ev = evaluate(model, *eval_data)
            record.update(test_loss=ev["loss"], test_accuracy=ev["accuracy"])
        if on_epoch is not None:
            on_epoch(epoch, record)

    history = fit(model, opt_w, data, epochs=epochs, batch_size=batch_size, rng=rng,
                  step_fn=step_fn, on_epoch=end_of_epoch, progress=progress, desc="learned mask")
    pruner.finalize(sparsity)
    return history
