"""Score-based pruning with fixed masks — §3.1.1 steps 1–3 and 6, one-shot or on a schedule.

``prune_by_score`` is one pruning event: masks initialised to ones (step 1), scores (step 2),
the lowest-scoring fraction set to 0 (step 3). Pruning is monotone: an entry that is already
pruned stays pruned (its score is taken as −∞), so calling it again with a larger sparsity
prunes *more*, as ``torch.nn.utils.prune`` does when prunings are stacked.

``scheduled_prune`` interleaves pruning events with Adam fine-tuning: the sparsity at step t is
``schedule(t)`` (a number, ``CubicSchedule`` or any callable), re-applied every ``every`` steps.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import numpy as np

from .. import optim
from ..nn import cross_entropy
from ..train import Hook, evaluation, fit
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
                   data=None, rng=None, num_batches=8):
    """One pruning event: set the masks so that exactly ``sparsity`` of the weights are pruned.

    Returns ``{layer_name: Mask}``. ``score`` is one of ``"magnitude"``, ``"gradient"``,
    ``"taylor"`` (the last two need calibration ``data = (x, y)`` and ``rng``, and take the
    gradient of the cross-entropy of the labels, see :func:`weight_scores`).
    """
    check_sparsity(sparsity)
    check_score(score, WEIGHT_SCORES)
    mks = ensure_masks(model, layers)
    scores = weight_scores(model, score, data=data, rng=rng, num_batches=num_batches,
                           layers=list(mks))
    # monotone: already pruned entries can never win back their place
    scores = {n: np.where(mks[n].keep, s.astype(np.float64), -np.inf) for n, s in scores.items()}
    for name, keep in select(scores, sparsity, scope).items():
        mks[name].set(keep)
    return mks


@dataclass
class ScheduledPruning:
    """What :func:`scheduled_prune` does.

    schedule : the sparsity at step t, ``schedule(t)`` (a number, ``CubicSchedule`` or a callable).
    score : ``"magnitude"``, ``"gradient"`` or ``"taylor"`` (see :func:`prune_by_score`; the
        last two use ``num_batches`` calibration batches of the training data).
    every : steps between pruning events (default: once per epoch).
    lr : the Adam learning rate of the weights' fine-tuning.
    """

    schedule: Union[float, Callable]
    score: str = "magnitude"
    every: Optional[int] = None
    scope: str = "global"
    layers: Optional[Sequence[str]] = None
    lr: float = 1e-4
    num_batches: int = 8


class PruningEvents(Hook):
    """Before step t, when t is a multiple of ``every``: prune to ``schedule(t)`` by the score.

    The event runs *before* step t, so an evaluation after step t sees the net that was
    fine-tuned since the last event, not one pruned a moment ago."""

    def __init__(self, model, method, every, data):
        self.model, self.method, self.every, self.data = model, method, every, data
        self.schedule = as_schedule(method.schedule)

    def before_step(self, trainer, batch):
        if trainer.step % self.every == 0:
            m = self.method
            prune_by_score(self.model, self.schedule(trainer.step), m.score, scope=m.scope,
                           layers=m.layers, data=self.data, rng=trainer.config.rng,
                           num_batches=m.num_batches)


def scheduled_prune(model, data, method, config, *, loss_fn=cross_entropy, eval_data=None,
                    hooks=()):
    """Prune by ``method.score`` following ``method.schedule`` while fine-tuning with Adam.

    A pruning event happens before step 0 and every ``method.every`` steps (default: once per
    epoch); each sets the sparsity to ``schedule(step)``. The weights are fine-tuned by Adam
    (``method.lr``) with the masks attached, so pruned weights stay exactly zero. ``config`` is a
    :class:`~minicompress.train.TrainConfig`. Returns the history.
    """
    every = method.every or config.steps_per_epoch(len(data[0]))
    ensure_masks(model, method.layers)
    events = PruningEvents(model, method, every, data)
    optimizer = optim.Adam([{"params": model.parameters(), "lr": method.lr, "name": "weights"}])
    return fit(model, optimizer, data, config, loss_fn=loss_fn,
               hooks=[events] + evaluation(eval_data) + list(hooks))
