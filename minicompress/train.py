"""The training loop: ``fit`` (one loop for every method) and ``evaluate``.

One training step is the whole story of the library (``step.py``):

    logits = model(batch.x)                 # forward
    loss, grad = loss_fn(logits, batch)     # loss and ∂L/∂logits
    model.backward(grad)                    # ∂L/∂θ added into every Parameter's .grad
    optimizer.step()                        # Adam (document §2.1), one optimizer for all

The loop repeats it over shuffled batches for ``config.epochs`` epochs. Compression methods are
short compositions of this loop: they choose the task loss (distillation: the teacher's soft
targets; pruning: plus the document's L1 term), the parameter groups of the one Adam (weights,
mask scores, step sizes Δ, offsets, hint regressors — each with its own learning rate), and a
few **hooks**, called at three points:

    before_step(trainer, batch)     before the step: a pruning mask follows its schedule
    after_step(trainer, batch)      after Adam's update: a learning-rate schedule
    end_of_epoch(trainer, record)   after each epoch: evaluate, log, fix the masks

``trainer.step`` counts the steps done so far (so it is t − 1 in ``before_step`` of step t and
t in ``after_step``); hooks run in the order they are given.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np

from .data import batches
from .nn import cross_entropy
from .nn.checks import check_module
from .parallel import DataParallelStep
from .step import Batch, TrainStep, as_task_loss


class Progress:
    """A single updating line on stderr (no dependency on tqdm).

    On a terminal the line is redrawn (``\\r``) as steps go by; when stderr is a file or a pipe
    (a log, CI) nothing is written until :meth:`close`, which writes the final state once — one
    line per epoch instead of thousands of carriage-return updates."""

    def __init__(self, total, desc="", enabled=True, stream=None):
        self.total, self.desc, self.enabled = total, desc, enabled
        self.stream = stream or sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.live = bool(enabled and isatty is not None and isatty())
        self.n, self.start, self._last = 0, time.perf_counter(), 0.0
        self.info = {}

    def _line(self):
        frac = self.n / max(self.total, 1)
        bar = "#" * int(20 * frac)
        extra = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in self.info.items())
        return (f"{self.desc} [{bar:<20}] {self.n}/{self.total} "
                f"{time.perf_counter() - self.start:5.1f}s {extra}")

    def update(self, n=1, **info):
        self.n += n
        self.info.update(info)
        now = time.perf_counter()
        if not self.live or (now - self._last < 0.2 and self.n < self.total):
            return
        self._last = now
        self.stream.write(f"\r{self._line()}   ")
        self.stream.flush()

    def close(self):
        if self.enabled:
            self.stream.write("\n" if self.live else self._line() + "\n")
            self.stream.flush()


def predict(model, x, batch_size=1000):
    """Logits for ``x``, computed in batches, model in eval mode."""
    check_module(model)
    if not np.all(np.isfinite(x)):
        raise FloatingPointError("predict: the input contains NaN or inf")
    was_training = model.training
    model.eval()
    out = [model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def evaluate(model, x, y, batch_size=1000, loss_fn=cross_entropy):
    """Mean loss and accuracy of ``model`` on (x, y): returns ``{"loss": ..., "accuracy": ...}``."""
    logits = predict(model, x, batch_size)
    loss, _ = loss_fn(logits, y)
    return {"loss": float(loss), "accuracy": float((logits.argmax(1) == y).mean())}


@dataclass
class TrainConfig:
    """How long and in which order to train: ``epochs`` passes over the data in shuffled batches
    of ``batch_size`` (shuffled by ``rng``, a seeded ``np.random.Generator``). ``workers=2`` splits
    every batch across 2 threads (:mod:`minicompress.parallel`: the same result up to float
    rounding, faster on 2 cores). ``progress`` draws a progress line named ``desc`` on stderr."""

    epochs: int
    rng: np.random.Generator
    batch_size: int = 128
    workers: int = 1
    progress: bool = False
    desc: str = "train"

    def __post_init__(self):
        for name, low in (("epochs", 0), ("batch_size", 1), ("workers", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"TrainConfig: {name} must be an integer ≥ {low}, got {value!r}")
        if not isinstance(self.rng, np.random.Generator):
            raise TypeError(f"TrainConfig: rng must be a numpy Generator (np.random.default_rng), "
                            f"got {type(self.rng).__name__}")

    def steps_per_epoch(self, n):
        """⌈n / batch_size⌉ steps for a training set of n images."""
        return -(-n // self.batch_size)

    def total_steps(self, n):
        return self.epochs * self.steps_per_epoch(n)


class Hook:
    """Something the loop calls at fixed points; override what you need (see the module docstring)."""

    def before_step(self, trainer, batch):
        pass

    def after_step(self, trainer, batch):
        pass

    def end_of_epoch(self, trainer, record):
        pass


class Evaluate(Hook):
    """At the end of each epoch, add ``test_loss`` and ``test_accuracy`` on ``data = (x, y)``."""

    def __init__(self, data):
        self.data = data

    def end_of_epoch(self, trainer, record):
        ev = evaluate(trainer.model, *self.data)
        record.update(test_loss=ev["loss"], test_accuracy=ev["accuracy"])


def evaluation(eval_data):
    """``[Evaluate(eval_data)]``, or no hook when there is nothing to evaluate on."""
    return [] if eval_data is None else [Evaluate(eval_data)]


class EveryStep(Hook):
    """``fn(step)`` after every step (``step`` = steps done): a plain function as a hook."""

    def __init__(self, fn):
        self.fn = fn

    def after_step(self, trainer, batch):
        self.fn(trainer.step)


class EveryEpoch(Hook):
    """``fn(epoch, record)`` at the end of every epoch: a plain function as a hook."""

    def __init__(self, fn):
        self.fn = fn

    def end_of_epoch(self, trainer, record):
        self.fn(record["epoch"], record)


class CosineLR(Hook):
    """Cosine learning rate for every parameter group, from its α₀ (its lr when training starts):

        α_t = α_min + ½ (α₀ − α_min)(1 + cos(π t / T)),   t = steps done, capped at T.
    """

    def __init__(self, total_steps, lr_min=0.0):
        if isinstance(total_steps, bool) or not isinstance(total_steps, (int, np.integer)) \
                or total_steps < 1:
            raise ValueError(f"CosineLR: total_steps must be an integer ≥ 1, got {total_steps!r}")
        self.total_steps, self.lr_min = int(total_steps), float(lr_min)
        self.lr0 = None

    def before_step(self, trainer, batch):
        if self.lr0 is None:
            self.lr0 = [g["lr"] for g in trainer.optimizer.param_groups]

    def after_step(self, trainer, batch):
        t = min(trainer.step, self.total_steps)
        for group, lr0 in zip(trainer.optimizer.param_groups, self.lr0):
            group["lr"] = float(self.lr_min + 0.5 * (lr0 - self.lr_min)
                                * (1.0 + np.cos(np.pi * t / self.total_steps)))


class Trainer:
    """The training loop: ``Trainer(model, optimizer, config, loss_fn=..., hooks=[...]).fit(data)``.

    ``loss_fn`` is a :class:`~minicompress.step.TaskLoss` or a plain ``fn(logits, y)``;
    ``trainer.step`` counts the steps done, ``trainer.epoch`` the current epoch.
    """

    def __init__(self, model, optimizer, config, *, loss_fn=cross_entropy, hooks=()):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"Trainer: config must be a TrainConfig, got {type(config).__name__}")
        self.model, self.optimizer, self.config = model, optimizer, config
        self.loss_fn = as_task_loss(loss_fn)
        self.hooks = list(hooks)
        self.step, self.epoch = 0, 0

    def fit(self, data):
        """Train on ``data = (x, y)``; returns the history, one dict per epoch (train loss and
        accuracy, and whatever the hooks add: test loss/accuracy, sparsity ...)."""
        x, y = data
        if len(x) != len(y):
            raise ValueError(f"fit: x has {len(x)} items but y has {len(y)}")
        c = self.config
        step = (DataParallelStep(self.model, self.optimizer, workers=c.workers, loss_fn=self.loss_fn)
                if c.workers > 1 else TrainStep(self.model, self.optimizer, self.loss_fn))
        try:
            history = []
            for epoch in range(1, c.epochs + 1):
                self.epoch = epoch
                history.append(self._one_epoch(step, x, y))
            return history
        finally:
            step.close()

    def _one_epoch(self, step, x, y):
        c = self.config
        self.model.train()
        bar = Progress(c.steps_per_epoch(len(x)), f"{c.desc} epoch {self.epoch}/{c.epochs}",
                       enabled=c.progress)
        total_loss, correct, seen = 0.0, 0, 0
        # batching the positions gives each batch's indices (same shuffle as batching y)
        for xb, idx in batches(x, np.arange(len(x)), c.batch_size, rng=c.rng):
            batch = Batch(xb, y[idx], idx)
            for h in self.hooks:
                h.before_step(self, batch)
            loss, logits = step(batch)
            self.step += 1
            total_loss += float(loss) * len(batch)
            correct += int((logits.argmax(1) == batch.y).sum())
            seen += len(batch)
            for h in self.hooks:
                h.after_step(self, batch)
            bar.update(loss=total_loss / seen, acc=correct / seen)
        record = {"epoch": self.epoch, "train_loss": total_loss / seen,
                  "train_accuracy": correct / seen}
        for h in self.hooks:
            h.end_of_epoch(self, record)
        if "test_accuracy" in record:
            bar.update(0, test_acc=record["test_accuracy"])
        bar.close()
        return record


def fit(model, optimizer, train_data, config, *, loss_fn=cross_entropy, hooks=(), eval_data=None):
    """Train ``model`` on ``train_data = (x, y)`` with ``optimizer`` as ``config`` says.

    ``loss_fn``: a :class:`~minicompress.step.TaskLoss` or a plain ``fn(logits, y)``
    (default cross-entropy). ``eval_data = (x, y)`` adds test loss/accuracy to every epoch's
    record (before the other ``hooks`` run). Returns the history (one dict per epoch).
    """
    check_module(model)
    hooks = evaluation(eval_data) + list(hooks)
    return Trainer(model, optimizer, config, loss_fn=loss_fn, hooks=hooks).fit(train_data)
