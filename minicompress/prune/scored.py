"""Score-based pruning with fixed masks — §3.1.1 steps 1–3 and 6, one-shot or on a schedule.

``prune_by_score`` is one pruning event: masks initialised to ones (step 1), scores (step 2),
the lowest-scoring fraction set to 0 (step 3). Pruning is monotone: an entry that is already
pruned stays pruned (its score is taken as −∞), so calling it again with a larger sparsity
prunes *more*, as ``torch.nn.utils.prune`` does when prunings are stacked.

``scheduled_prune`` interleaves pruning events with Adam fine-tuning: the sparsity at step t is
``schedule(t)`` (a number, ``CubicSchedule`` or any callable), re-applied every ``every`` steps.
"""
from __future__ import annotations

import numpy as np

from .. import optim
from ..nn import cross_entropy
from ..train import fit, train_step
from .mask import Mask, attach_mask, get_mask, prunable_layers
from .schedule import as_schedule
from .scores import WEIGHT_SCORES, check_score, weight_scores
from .select import check_sparsity, select


def ensure_masks(model, layers=None):
    """Attach an all-ones :class:`Mask` to every prunable layer that has none (step 1)."""
    out = {}
    for name, layer in prunable_layers(model, layers):
        out[name] = get_mask(layer) or attach_mask(layer)
    return out


def prune_by_score(model, sparsity, score="magnitude", *, scope="global", layers=None,
                   data=None, rng=None, num_batches=8, loss_fn=cross_entropy):
    """One pruning event: set the masks so that exactly ``sparsity`` of the weights are pruned.

    Returns ``{layer_name: Mask}``. ``score`` is one of ``"magnitude"``, ``"gradient"``,
    ``"taylor"`` (the last two need ``data`` and ``rng``, see :func:`weight_scores`).
    """
    check_sparsity(sparsity)
    check_score(score, WEIGHT_SCORES)
    mks = ensure_masks(model, layers)
    scores = weight_scores(model, score, data=data, rng=rng, num_batches=num_batches,
                           loss_fn=loss_fn, layers=list(mks))
    # monotone: already pruned entries can never win back their place
    scores = {n: np.where(mks[n].keep, s.astype(np.float64), -np.inf) for n, s in scores.items()}
    for name, keep in select(scores, sparsity, scope).items():
        mks[name].set(keep)
    return mks


def scheduled_prune(model, data, schedule, epochs, *, rng, score="magnitude", every=None,
                    scope="global", layers=None, lr=1e-4, batch_size=128, loss_fn=cross_entropy,
                    num_batches=8, eval_data=None, on_epoch=None, progress=False):
    """Prune by ``score`` following ``schedule(step)`` while fine-tuning with Adam.

    A pruning event happens before step 0 and every ``every`` steps (default: once per epoch);
    each sets the sparsity to ``schedule(step)``. Weights are fine-tuned by Adam (lr ``lr``) with the
    masks attached, so pruned weights stay exactly zero. Returns the ``fit`` history.
    """
    schedule = as_schedule(schedule)
    x = data[0]
    steps_per_epoch = -(-len(x) // batch_size)
    every = every or steps_per_epoch
    ensure_masks(model, layers)

    def event(step):
        prune_by_score(model, schedule(step), score, scope=scope, layers=layers, data=data,
                       rng=rng, num_batches=num_batches, loss_fn=loss_fn)

    opt = optim.Adam(model.parameters(), lr=lr)
    state = {"step": 0}

    def step_fn(xb, yb):
        # the event runs *before* step t, so an evaluation after step t sees the net that
        # was fine-tuned since the last event, not one pruned a moment ago
        if state["step"] % every == 0:
            event(state["step"])
        state["step"] += 1
        return train_step(model, opt, xb, yb, loss_fn)

    return fit(model, opt, data, epochs=epochs, batch_size=batch_size, rng=rng,
               step_fn=step_fn, eval_data=eval_data, on_epoch=on_epoch, progress=progress,
               desc=f"prune[{score}]")
