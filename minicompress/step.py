"""One training step, and what it is made of: a batch, a task loss, the checks, the backward call.

    optimizer.zero_grad()
    logits = model(batch.x)                   # forward
    loss, grad = loss_fn(logits, batch)       # the task loss and ∂L/∂logits
    model.backward(grad)                      # ∂L/∂θ added into every Parameter's .grad
    optimizer.step()                          # Adam (document §2.1)

A :class:`Batch` carries its images, their labels *and* their positions in the training set,
so a loss that needs more than the labels (the teacher's precomputed logits, §3.3) looks them up
by ``batch.index``; nothing travels through closures. Every loss of the library is a
:class:`TaskLoss`: ``loss(logits, batch) -> (L, ∂L/∂logits)``. A plain ``fn(logits, y)`` such
as :func:`~minicompress.nn.cross_entropy` is a loss of the labels (:func:`as_task_loss`).

This module is below both the training loop (``train.py``) and the data-parallel step
(``parallel.py``), which build on it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .nn import Sequential, cross_entropy


@dataclass
class Batch:
    """One mini-batch: images ``x`` (B, ...), integer labels ``y`` (B,), and ``index`` (B,),
    the positions of the images in the training set (default 0 … B−1: the batch is the set)."""

    x: np.ndarray
    y: np.ndarray
    index: Optional[np.ndarray] = None

    def __post_init__(self):
        if len(self.x) != len(self.y):
            raise ValueError(f"Batch: {len(self.x)} images but {len(self.y)} labels")
        if self.index is None:
            self.index = np.arange(len(self.x))

    def __len__(self):
        return len(self.x)

    def part(self, start, stop):
        """Rows [start, stop) of the batch (a shard for one thread)."""
        return Batch(self.x[start:stop], self.y[start:stop], self.index[start:stop])


class TaskLoss:
    """What a training step minimises: ``loss(logits, batch) -> (L, ∂L/∂logits)``.

    A loss that also looks *inside* the network (feature distillation) names the layers whose
    outputs it needs in ``capture``; the step then records them and calls
    ``with_features(logits, features, batch) -> (L, ∂L/∂logits, {layer: ∂L/∂F})`` instead.
    """

    capture = ()

    def __call__(self, logits, batch):
        raise NotImplementedError

    def with_features(self, logits, features, batch):
        loss, grad = self(logits, batch)
        return loss, grad, None


class LabelLoss(TaskLoss):
    """``fn(logits, batch.y)``: a loss of the labels alone (cross-entropy by default)."""

    def __init__(self, fn=cross_entropy):
        if not callable(fn):
            raise TypeError(f"LabelLoss: fn must be a function (logits, y) -> (loss, grad), "
                            f"got {type(fn).__name__}")
        self.fn = fn

    def __call__(self, logits, batch):
        return self.fn(logits, batch.y)


def as_task_loss(loss_fn):
    """A :class:`TaskLoss` as it is; a plain ``fn(logits, y) -> (loss, grad)`` as a loss of the labels."""
    return loss_fn if isinstance(loss_fn, TaskLoss) else LabelLoss(loss_fn)


# ---- checks -------------------------------------------------------------------------------------
def check_batch(x, where):
    if not np.all(np.isfinite(x)):
        raise FloatingPointError(f"{where}: the input batch contains NaN or inf")


def check_logits(logits):
    if not np.all(np.isfinite(logits)):
        raise FloatingPointError("training stopped: the network output contains NaN or inf "
                                 "(the weights diverged?); try a smaller learning rate")


def check_loss(loss):
    if not np.isfinite(loss):
        raise FloatingPointError(f"training stopped: the loss became {loss} (diverged); "
                                 f"try a smaller learning rate")


def backward_from_logits(model, grad, feature_grads=None):
    """``model.backward(∂L/∂z)``; a Sequential skips ∂L/∂x of the images, never needed here,
    and adds ``feature_grads`` ({layer: ∂L/∂F}) where those layers' outputs were captured."""
    if isinstance(model, Sequential):
        model.backward(grad, feature_grads=feature_grads, input_grad=False)
    elif feature_grads:
        raise ValueError("feature gradients need a Sequential model")
    else:
        model.backward(grad)


def train_step(model, optimizer, batch, loss_fn=cross_entropy):
    """One step: zero grads, forward, loss, backward, Adam. Returns (loss, logits).

    ``loss_fn`` is a :class:`TaskLoss` (or a plain ``fn(logits, y)``, see :func:`as_task_loss`).
    """
    loss_fn = as_task_loss(loss_fn)
    check_batch(batch.x, "train_step")
    optimizer.zero_grad()
    if loss_fn.capture:
        logits = model(batch.x, capture=tuple(loss_fn.capture))
        check_logits(logits)
        loss, grad, feature_grads = loss_fn.with_features(logits, model.features, batch)
    else:
        logits = model(batch.x)
        check_logits(logits)
        (loss, grad), feature_grads = loss_fn(logits, batch), None
    check_loss(loss)
    backward_from_logits(model, grad, feature_grads)
    optimizer.step()
    return loss, logits


class TrainStep:
    """:func:`train_step` for one model, optimizer and loss: ``step(batch) -> (loss, logits)``.
    :class:`~minicompress.parallel.DataParallelStep` is the same with the batch split across threads."""

    def __init__(self, model, optimizer, loss_fn=cross_entropy):
        self.model, self.optimizer, self.loss_fn = model, optimizer, as_task_loss(loss_fn)

    def __call__(self, batch):
        return train_step(self.model, self.optimizer, batch, self.loss_fn)

    def close(self):
        pass
