"""Training and evaluation loops: ``fit`` and ``evaluate``.

One training step is the whole story of the library:

    logits = model(x)                      # forward
    loss, grad = loss_fn(logits, y)        # loss and ∂L/∂logits
    model.backward(grad)                   # ∂L/∂θ added into every Parameter's .grad
    optimizer.step()                       # Adam (document §2.1)

Compression methods change only ``loss_fn`` (distillation), add a term and a callback
(pruning), or wrap the weights (quantization) — the loop stays the same.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from .data import batches
from .nn import Sequential, cross_entropy


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


def backward_from_logits(model, grad):
    """``model.backward(∂L/∂z)``; a Sequential skips ∂L/∂x of the images, never needed here."""
    if isinstance(model, Sequential):
        model.backward(grad, input_grad=False)
    else:
        model.backward(grad)


def train_step(model, optimizer, x, y, loss_fn=cross_entropy):
    """One step: zero grads, forward, loss, backward, Adam. Returns (loss, logits)."""
    check_batch(x, "train_step")
    optimizer.zero_grad()
    logits = model(x)
    check_logits(logits)
    loss, grad = loss_fn(logits, y)
    check_loss(loss)
    backward_from_logits(model, grad)
    optimizer.step()
    return loss, logits


def fit(model, optimizer, train_data, *, epochs, batch_size=128, rng, loss_fn=cross_entropy,
        step_fn=None, pass_index=False, eval_data=None, on_step=None, on_epoch=None,
        progress=True, desc="train", workers=1):
    """Train ``model`` for ``epochs`` passes over ``train_data = (x, y)``.

    ``step_fn(x, y) -> (loss, logits)`` replaces :func:`train_step` (distillation, pruning);
    with ``pass_index=True`` it is called ``step_fn(x, y, idx)``, ``idx`` the batch's positions
    in the training set (to look up per-image targets such as precomputed teacher logits);
    ``on_step(global_step)`` runs after each step (pruning schedules); ``on_epoch(epoch, record)``
    after each epoch. ``workers=2`` splits every batch across 2 threads (see
    :mod:`minicompress.parallel`; same result up to float rounding, faster on 2 cores).
    Returns the history: a list of per-epoch dicts (train loss/accuracy and, with ``eval_data``,
    test loss/accuracy).
    """
    if not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"fit: epochs must be an integer ≥ 0, got {epochs!r}")
    if not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"fit: workers must be an integer ≥ 1, got {workers!r}")
    if workers > 1:
        if step_fn is not None:
            raise ValueError("fit: workers > 1 applies to the default training step; a custom "
                             "step_fn must do its own splitting (see DataParallelStep)")
        from .parallel import DataParallelStep  # here: parallel.py builds on this module
        with DataParallelStep(model, optimizer, workers=workers, loss_fn=loss_fn) as step:
            return fit(model, optimizer, train_data, epochs=epochs, batch_size=batch_size,
                       rng=rng, step_fn=step, eval_data=eval_data, on_step=on_step,
                       on_epoch=on_epoch, progress=progress, desc=desc)
    x, y = train_data
    step_fn = step_fn or (lambda xb, yb: train_step(model, optimizer, xb, yb, loss_fn))
    if len(x) != len(y):
        raise ValueError(f"fit: x has {len(x)} items but y has {len(y)}")
    index = np.arange(len(x))
    history, global_step = [], 0
    steps_per_epoch = -(-len(x) // batch_size)
    for epoch in range(1, epochs + 1):
        model.train()
        bar = Progress(steps_per_epoch, f"{desc} epoch {epoch}/{epochs}", enabled=progress)
        total_loss, correct, seen = 0.0, 0, 0
        # batching the positions gives each batch's indices (same shuffle as batching y)
        for xb, idx in batches(x, index, batch_size, rng=rng):
            yb = y[idx]
            loss, logits = step_fn(xb, yb, idx) if pass_index else step_fn(xb, yb)
            if not np.isfinite(loss):
                raise FloatingPointError(f"training stopped at epoch {epoch}: the loss became {loss}")
            global_step += 1
            total_loss += float(loss) * len(yb)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(yb)
            if on_step is not None:
                on_step(global_step)
            bar.update(loss=total_loss / seen, acc=correct / seen)
        record = {"epoch": epoch, "train_loss": total_loss / seen, "train_accuracy": correct / seen}
        if eval_data is not None:
            ev = evaluate(model, *eval_data)
            record.update(test_loss=ev["loss"], test_accuracy=ev["accuracy"])
            bar.update(0, test_acc=ev["accuracy"])
        bar.close()
        history.append(record)
        if on_epoch is not None:
            on_epoch(epoch, record)
    return history
