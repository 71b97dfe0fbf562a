"""Data parallelism on one machine: each half of a batch on its own thread.

Why this works in Python at all. NumPy releases the GIL inside BLAS calls and inside the loops of
large element-wise operations, so two Python threads really do run the forward and backward of
two halves of a batch at the same time, each on its own core. Splitting the *batch* is better
than letting one BLAS call use both cores: the matrices of a small CNN are too small for BLAS to
parallelise well, and everything that is not a matmul (im2col, col2im, pooling, ReLU) is
single-threaded in NumPy anyway. On this project's 2-core machine it makes a lenet5 step about
1.5x faster (``benchmarks/speed.py``).

The gradient of a mean loss over a batch of N = N₁ + N₂ examples is

    ∂L/∂θ = (1/N) Σ_n ∂ℓ_n/∂θ = Σ_shards  Σ_{n in shard} (1/N) ∂ℓ_n/∂θ,

so each thread backpropagates its rows of the *full-batch* ∂L/∂z (the loss is computed once on the
concatenated logits, so any loss works, distillation included) and the shards' parameter
gradients are simply added. The result equals the single-threaded step up to float rounding.

Each thread needs its own copy of the layers' forward caches (im2col matrices, ReLU masks, ...),
so every extra thread gets a *replica* of the network (:func:`replicate`): the same Parameter
arrays — nothing is copied, Adam's in-place update is seen by all replicas — but its own ``.grad``
and its own caches.
"""
from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .nn import Module, Parameter, cross_entropy
from .step import as_task_loss, backward_from_logits, check_batch, check_logits, check_loss


def replicate(module: Module, _memo=None) -> Module:
    """A twin of ``module`` for another thread: Parameters that share ``.data`` with the original
    (but own a zeroed ``.grad``), and its own attributes for forward caches.

    Every other attribute (pruning masks, hyper-parameters) is shared, not copied: a mask changed
    *in place* is seen by both. Replicate again after changing the network's structure.
    """
    memo = {} if _memo is None else _memo
    twin = copy.copy(module)  # shallow: new attribute dict, same attribute values
    for name, value in vars(module).items():
        setattr(twin, name, _replicate_value(value, memo))
    return twin


def _replicate_value(value, memo):
    if isinstance(value, Parameter):
        if id(value) not in memo:  # a Parameter used twice stays one Parameter in the twin
            shadow = copy.copy(value)
            shadow.grad = np.zeros_like(value.data)
            memo[id(value)] = shadow
        return memo[id(value)]
    if isinstance(value, Module):
        return replicate(value, memo)
    if isinstance(value, list) and any(isinstance(v, Module) for v in value):
        return [_replicate_value(v, memo) for v in value]
    if isinstance(value, dict) and any(isinstance(v, Module) for v in value.values()):
        return type(value)((k, _replicate_value(v, memo)) for k, v in value.items())
    return value


def _blas_single_thread():
    """A context manager that limits BLAS to 1 thread (each of our threads is one core), or None
    when threadpoolctl is not installed (then set ``OPENBLAS_NUM_THREADS=1`` yourself)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=1, user_api="blas")


class DataParallelStep:
    """A training step (zero grads, forward, loss, backward, optimizer step) with the batch
    split across ``workers`` threads. A drop-in for :class:`minicompress.step.TrainStep`:

        step = DataParallelStep(model, optimizer, workers=2)
        loss, logits = step(batch)

    Any :class:`~minicompress.step.TaskLoss` works (it sees the whole batch's logits), except
    one that captures feature maps (each thread has its own).

    The model's structure must not change while the step is in use (call :meth:`refresh` after
    pruning filters away, for example); in-place changes of weights and masks are fine.
    """

    def __init__(self, model: Module, optimizer, *, workers: int = 2, loss_fn=cross_entropy):
        if not isinstance(workers, (int, np.integer)) or workers < 1:
            raise ValueError(f"DataParallelStep: workers must be an integer ≥ 1, got {workers!r}")
        self.model, self.optimizer, self.loss_fn = model, optimizer, as_task_loss(loss_fn)
        if self.loss_fn.capture:
            raise ValueError("DataParallelStep: a loss that captures feature maps "
                             f"({list(self.loss_fn.capture)}) needs workers=1")
        self.workers = int(workers)
        self._pool = ThreadPoolExecutor(max_workers=self.workers - 1) if self.workers > 1 else None
        self._limits = None
        self.refresh()

    def refresh(self):
        """Rebuild the replicas from the model (after a change of structure)."""
        self.replicas = [self.model] + [replicate(self.model) for _ in range(self.workers - 1)]

    def _run(self, fn, args_per_replica):
        """fn(*args) for every replica: the first on this thread, the others on the pool."""
        futures = [self._pool.submit(fn, *args) for args in args_per_replica[1:]]
        first = fn(*args_per_replica[0])
        return [first] + [f.result() for f in futures]

    def __call__(self, batch):
        x = batch.x
        if len(x) == 0:
            raise ValueError("DataParallelStep: need a non-empty batch with one label per image, "
                             "got 0 images and 0 labels")
        check_batch(x, "DataParallelStep")
        if self._limits is None and self.workers > 1:
            self._limits = _blas_single_thread()  # held until close(): one thread = one core
        self.optimizer.zero_grad()
        for r in self.replicas[1:]:
            r.zero_grad()
            # follow the model's train/eval mode, module by module (a replica copied the flags
            # when it was made; model.train()/eval() since then set them on the model only)
            for m, twin in zip(self.model.modules(), r.modules()):
                twin.training = m.training
        # shards of (almost) equal size; a batch smaller than the number of workers uses fewer
        bounds = np.linspace(0, len(x), min(self.workers, len(x)) + 1).astype(int)
        shards = list(zip(bounds[:-1], bounds[1:]))
        replicas = self.replicas[:len(shards)]
        parts = self._run(lambda r, xs: r(xs), [(r, x[a:b]) for r, (a, b) in zip(replicas, shards)])
        logits = np.concatenate(parts)
        check_logits(logits)
        loss, grad = self.loss_fn(logits, batch)  # the full-batch loss: ∂L/∂z already carries 1/N
        check_loss(loss)
        self._run(backward_from_logits, [(r, grad[a:b]) for r, (a, b) in zip(replicas, shards)])
        # the shards' gradients add up to the full batch's (see the module docstring)
        own = self.model.parameters()
        for r in replicas[1:]:
            for p, q in zip(own, r.parameters()):
                p.grad += q.grad
        self.optimizer.step()
        return loss, logits

    def close(self):
        """Stop the worker threads and give BLAS its threads back."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._limits is not None:
            self._limits.restore_original_limits()
            self._limits = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
