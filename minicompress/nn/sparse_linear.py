"""A pruned Linear layer that runs a sparse kernel only where a measured rule says it is faster.

A pruned weight W_eff = W ⊙ m (document §3.1.1) still has out × in entries, and ``x @ W_effᵀ``
multiplies all of them, zeros included: a masked model is exactly as slow as the dense one. To
skip the zeros the weight must be *stored* differently. Two forms, both vectorised (no Python
loop over rows):

* **compact** — remove the all-zero rows (dead neurons) and all-zero columns (dead inputs) and keep
  the smaller dense matrix: y[:, rows] = x[:, cols] · W[rows][:, cols]ᵀ (:func:`compact_matmul`).
  Still a BLAS GEMM, so it pays as soon as enough rows and columns are dead.
* **ELL** (ELLPACK) — every output row keeps the same number K of (column, value) pairs, the
  longest row's nnz; shorter rows are padded with column 0 and value 0:

      cols[o, k], vals[o, k]   (out, K)            K = max_o nnz(W_eff[o, :])
      y[n, o] = Σ_k vals[o, k] · x[n, cols[o, k]] + b[o]

  one gather and one contraction (:func:`ell_matmul`); the gather is done on xᵀ (features ×
  batch), so that each gathered item is a contiguous row of the batch.

Of the NumPy forms measured by ``benchmarks/sparse_crossover.py`` (CSR with ``np.add.reduceat``,
ELL on x, ELL on xᵀ, compact, dense) these two won most often. A gathered multiply-add costs
many times a BLAS one, so a sparse form wins only when little is left *and* the batch is large
enough to pay its fixed cost — :func:`choose_kernel` is that measured rule, and dense is the
default everywhere else. :func:`for_inference` turns a trained (masked or pruned) model into one
whose Linear layers choose their kernel per call: the same function as the dense model (up to
float32 summation order), and not slower than it.
"""
from __future__ import annotations

import copy
from typing import NamedTuple

import numpy as np

from .checks import check_input
from .linear import Linear
from .module import Module, Sequential


class EllForm(NamedTuple):
    """ELL storage of a weight W (out, in): ``cols`` int32 (out, K), ``vals`` float32 (out, K)."""

    cols: np.ndarray
    vals: np.ndarray
    in_features: int

    @property
    def density(self) -> float:
        """Stored entries (padding included) / dense entries = K / in: the share of the dense
        multiply-adds the ELL kernel still does."""
        return self.cols.shape[1] / self.in_features


def ell_form(w) -> EllForm:
    """ELL form of a 2-D weight: each row's nonzeros, in column order, padded to the longest row.

    ``w`` (out, in); the result has K = max(1, max_o nnz(w[o])) columns, so that a weight with no
    nonzero at all still has a valid (all-padding) form.
    """
    w = np.asarray(w)
    if w.ndim != 2 or w.size == 0:
        raise ValueError(f"ell_form: w must be a non-empty 2-D weight (out, in), got shape {w.shape}")
    nonzero = w != 0
    k = max(1, int(nonzero.sum(axis=1).max()))
    # a stable sort of "is zero" puts each row's nonzero columns first, in increasing order
    cols = np.argsort(~nonzero, axis=1, kind="stable")[:, :k]
    vals = np.take_along_axis(w, cols, axis=1).astype(np.float32)
    cols = np.where(vals != 0, cols, 0).astype(np.int32)     # padding points at column 0
    return EllForm(cols, vals, w.shape[1])


def dense_from_ell(form: EllForm) -> np.ndarray:
    """The dense (out, in) float32 weight back from its ELL form (padding adds zeros)."""
    out = np.zeros((form.cols.shape[0], form.in_features), np.float32)
    np.add.at(out, (np.arange(form.cols.shape[0])[:, None], form.cols), form.vals)
    return out


def ell_matmul(form: EllForm, x) -> np.ndarray:
    """``x W_effᵀ`` from the ELL form: x (N, in) -> (N, out).

    Gather on xᵀ: ``xt[cols]`` is (out, K, N), item (o, k) being the batch's values of input
    feature cols[o, k] — a contiguous row — then contract k with ``vals``:
    yᵀ[o, n] = Σ_k vals[o, k] · xᵀ[cols[o, k], n].
    """
    xt = np.ascontiguousarray(x.T)
    return np.einsum("okn,ok->on", xt[form.cols], form.vals).T


class CompactForm(NamedTuple):
    """W with its all-zero rows and columns removed: ``w`` = W[rows][:, cols], a smaller dense
    matrix. A row of zeros is a dead neuron (output = bias), a column of zeros a dead input (a
    border pixel nobody looks at). High unstructured sparsity leaves many of both."""

    rows: np.ndarray
    cols: np.ndarray
    w: np.ndarray
    shape: tuple

    @property
    def density(self) -> float:
        """Entries of the compact matrix / dense entries: the share of the dense GEMM still done."""
        return self.w.size / (self.shape[0] * self.shape[1])


def compact_form(w) -> CompactForm:
    """The dense sub-matrix of the live rows and columns of a 2-D weight ``w`` (out, in)."""
    w = np.asarray(w)
    if w.ndim != 2 or w.size == 0:
        raise ValueError(f"compact_form: w must be a non-empty 2-D weight (out, in), got shape {w.shape}")
    rows, cols = np.flatnonzero((w != 0).any(axis=1)), np.flatnonzero((w != 0).any(axis=0))
    return CompactForm(rows, cols, np.ascontiguousarray(w[np.ix_(rows, cols)], np.float32), w.shape)


def compact_matmul(form: CompactForm, x) -> np.ndarray:
    """``x W_effᵀ`` with dead rows and columns skipped: x (N, in) -> (N, out), zero in dead rows.
    y[:, rows] = x[:, cols] · w_compactᵀ — one column gather of x and one smaller BLAS GEMM."""
    y = np.zeros((x.shape[0], form.shape[0]), np.result_type(x, form.w))
    y[:, form.rows] = x[:, form.cols] @ form.w.T
    return y


# ---- the measured rule ---------------------------------------------------------------------------
# benchmarks/sparse_crossover.py, one BLAS thread, CPU time, median of interleaved rounds, the
# cached lenet300 magnitude-pruned layer by layer (benchmarks/results/sparse_crossover.json,
# "threads_1"); time / dense time of one layer:
# * compact (dead rows and columns removed), c = compact density:
#       batch 64:  fc1 c 0.62 → 0.78, c 0.82 → 1.09;  fc2 c 0.49 → 0.66, c 0.74 → 1.26
#       batch 256: fc1 c 0.62 → 0.90, c 0.82 → 1.16;  fc2 c 0.49 → 0.83, c 0.74 → 1.17
#   batch 1: fc2 (a 3 µs GEMM) lost at every c, down to 0.02 (1.19).
# * ELL, d = K/in:
#       batch 64:  fc1 d 0.036 → 0.81, d 0.052 → 1.36;  fc2 d 0.020 → 0.50, d 0.053 → 0.96
#       batch 256: fc1 d 0.014 → 0.64, d 0.036 → 1.76;  fc2 d 0.020 → 0.66, d 0.053 → 1.49
#   so the ELL crossover falls with the batch (its gathered (out, K, N) temporary grows with N).
#   On these trained layers compact was faster than ELL wherever both won.
# * fc3 (10 x 100): 2-22 µs in all; nothing to gain that the noise would not hide.
# The thresholds below sit at or under the measured crossovers (dense when in doubt).
COMPACT_MAX_DENSITY = 0.6
ELL_MAX_DENSITY = ((64, 0.03), (256, 0.02))     # (smallest batch, largest d = K/in) — d*(batch)
MIN_BATCH = 64                                   # not measured between 1 and 64: dense there
MIN_SIZE = 10_000                                # out·in below this (fc3, 10x100): dense


def choose_kernel(density: float, batch: int, shape, compact_density: float = 1.0) -> str:
    """``"dense"``, ``"compact"`` or ``"ell"`` for a Linear of weight shape (out, in) at this batch.

    ``density`` is the ELL density K/in, ``compact_density`` the share of W left after removing its
    all-zero rows and columns. The rule, measured (see the table above ``COMPACT_MAX_DENSITY``):

    * dense when batch < 64 or out·in < 10 000 (the kernels' fixed cost is the whole budget);
    * else compact when compact_density ≤ 0.6;
    * else ELL when density ≤ d*(batch): 0.03 for batch 64–255, 0.02 from 256 on;
    * else dense — the safe default: a wrong "dense" costs what the unpruned model costs, a wrong
      sparse choice can cost 10x.
    """
    out, inp = shape
    if batch < MIN_BATCH or out * inp < MIN_SIZE:
        return "dense"
    if compact_density <= COMPACT_MAX_DENSITY:
        return "compact"
    threshold = 0.0
    for b, d in ELL_MAX_DENSITY:
        if batch >= b:
            threshold = d
    return "ell" if density <= threshold else "dense"


class SparseLinear(Module):
    """Inference-only ``y = x W_effᵀ + b`` that picks dense, compact or ELL per call
    (:func:`choose_kernel`).

    Built from a trained :class:`Linear` (``from_linear``): W_eff is the weight after its transforms
    (mask, quantizer), frozen. Shapes as Linear: x (N, in) -> y (N, out). No backward: to train,
    use the Linear it came from.
    """

    def __init__(self, weight, bias=None):
        self.weight = np.ascontiguousarray(weight, dtype=np.float32)
        self.bias = None if bias is None else np.asarray(bias, np.float32).copy()
        self.out_features, self.in_features = self.weight.shape
        self.ell = ell_form(self.weight)
        self.compact = compact_form(self.weight)
        self.last_kernel = None   # which kernel the last forward used (for tests and notebooks)
        self._chosen = {}         # batch size -> kernel: the rule is asked once per batch size

    @classmethod
    def from_linear(cls, layer: Linear) -> "SparseLinear":
        return cls(layer.effective_weight(), None if layer.bias is None else layer.bias.data)

    def kernel(self, batch: int) -> str:
        return choose_kernel(self.ell.density, batch, self.weight.shape, self.compact.density)

    def forward(self, x):
        check_input(f"SparseLinear({self.in_features}, {self.out_features})", x, 2, 1,
                    self.in_features)
        self.last_kernel = self._chosen.get(len(x)) or self._chosen.setdefault(len(x), self.kernel(len(x)))
        if self.last_kernel == "ell":
            y = ell_matmul(self.ell, x)
        elif self.last_kernel == "compact":
            y = compact_matmul(self.compact, x)
        else:
            y = x @ self.weight.T
        if self.bias is not None:
            y += self.bias          # y is a new array whatever the kernel: add in place
        return y

    def backward(self, grad_out):
        raise RuntimeError("SparseLinear is inference-only: train the Linear it was built from")

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"ell_density={self.ell.density:.4f}, compact_density={self.compact.density:.4f}")


def for_inference(model: Sequential) -> Sequential:
    """A copy of ``model`` for inference, each top-level Linear replaced by a :class:`SparseLinear`
    of its effective (masked) weight; other layers are copied unchanged. The copy computes the same
    function (up to float32 summation order) and uses the sparse kernel only where it measured
    faster. The original model is not changed (it can still be trained)."""
    if not isinstance(model, Sequential):
        raise TypeError(f"for_inference: expected a Sequential model, got {type(model).__name__}")
    out = copy.deepcopy(model)
    for name in out.names():
        if isinstance(out[name], Linear):
            out[name] = SparseLinear.from_linear(out[name])
    out.eval()
    return out
