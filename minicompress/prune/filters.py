"""Filter pruning and physical removal — document §3.1.2 (滤波器剪枝).

A filter mask has one entry per output filter of a Conv2d (per output neuron of a Linear). It is
applied to the layer's *output*, ``y[:, o] ← m_o · y[:, o]``, by a :class:`ChannelGate` placed
right after the layer. Masking the output rather than the weight also silences the bias: a
filter with zero weights still outputs its bias b_o, which the next layer would see (and, after a
padded convolution, not as a constant that could be folded into its bias). With the gate, the
masked network computes exactly what the physically smaller network computes.

Steps, as in the document: (1) a mask entry per filter, (2) filter scores (``"l1"``, ``"l2"``,
``"median"`` of |w|, ``"taylor"``), (3) the lowest-scoring ratio set to 0, (4) Adam optimises the
mask (:func:`learned_filter_prune`: learned scores, straight-through top-k, weights trained
together, as for weights in ``learned.py``), (5) the zero filters are **removed**: :func:`shrink`
builds a new, smaller Conv2d/Linear and shrinks the input side of the next weighted layer:

* Conv2d → (ReLU, pool) → Conv2d: drop input channels of the next conv's weight (O', C, k, k);
* Conv2d → (ReLU, pool) → Flatten → Linear: Flatten orders features channel by channel (C-order of
  (C, H, W)), so channel c owns the block of H·W consecutive input columns [c·HW, (c+1)·HW);
* Linear → (ReLU) → Linear: drop input columns.

The Taylor filter score (Molchanov et al. 2017) is the first-order loss change when the filter's
output a is set to 0:  (1/B) Σ_b |Σ_{n,h,w} a ⊙ ∂L/∂a|  — exactly the gate's gradient.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Dict, Union

import numpy as np

from .. import optim
from ..data import batches
from ..nn import (AvgPool2d, Conv2d, Flatten, Linear, MaxPool2d, Module, Parameter, ReLU,
                  Sequential, cross_entropy)
from ..train import Hook, evaluation, fit
from ..nn.checks import check_module
from .schedule import CubicSchedule
from .scores import FILTER_SCORES, check_score, filter_norm_scores
from .select import check_sparsity, kept_count, topk_mask

PASS_THROUGH = (ReLU, MaxPool2d, AvgPool2d)  # act on each channel separately


class ChannelGate(Module):
    """``y = x ⊙ m`` along axis 1 (channels / features); m ∈ {0, 1}^C, one entry per filter.

    Backward: ∂L/∂x = ∂L/∂y ⊙ m. With learned scores s (``learned=True``), straight-through:
    ∂L/∂s_c := ∂L/∂m_c = Σ_{n,h,w} x ⊙ ∂L/∂y. ``record_taylor=True`` accumulates |∂L/∂m_c| per
    backward pass (the Taylor filter score).
    """

    def __init__(self, channels, learned=False):
        self.mask = Parameter(np.ones(channels, np.float32), requires_grad=False)
        if learned:
            self.scores = Parameter(np.zeros(channels, np.float32))
        self.record_taylor = False
        self.taylor_sum, self.taylor_count = np.zeros(channels), 0

    @property
    def channels(self):
        return self.mask.data.size

    @property
    def keep(self):
        return self.mask.data != 0

    def _shape(self, x):
        return (1, -1) + (1,) * (x.ndim - 2)

    def forward(self, x):
        if x.shape[1] != self.channels:
            raise ValueError(f"ChannelGate({self.channels}): input has {x.shape[1]} channels "
                             f"(shape {x.shape})")
        self._x = x
        return x * self.mask.data.reshape(self._shape(x))

    def backward(self, grad_out):
        if hasattr(self, "scores") or self.record_taylor:
            axes = (0,) + tuple(range(2, grad_out.ndim))
            dm = (grad_out * self._x).sum(axis=axes)  # ∂L/∂m_c
            if hasattr(self, "scores"):
                self.scores.grad += dm
            if self.record_taylor:
                self.taylor_sum += np.abs(dm)
                self.taylor_count += 1
        return grad_out * self.mask.data.reshape(self._shape(grad_out))

    def extra_repr(self):
        return f"{self.channels}, kept={int(self.keep.sum())}"


# ---- finding layers -----------------------------------------------------------------------------
def _check_sequential(model, where):
    if not isinstance(model, Sequential):
        raise TypeError(f"{where}: filter pruning needs a Sequential model, got {type(model).__name__}")


def _next_layer(model, name):
    """Name of the weighted layer fed by ``name``'s outputs, and whether a Flatten lies between.

    Only channel-wise modules may lie between (ReLU, pooling, gates, one Flatten after a conv);
    anything else makes the layer's filters impossible to remove cleanly — a clear error.
    """
    names = model.names()
    layer = model[name]
    flattened = False
    for nxt in names[names.index(name) + 1:]:
        m = model[nxt]
        if isinstance(m, (Conv2d, Linear)):
            if isinstance(m, Conv2d) and flattened:
                raise ValueError(f"cannot prune filters of {name!r}: Flatten before conv {nxt!r}")
            if isinstance(layer, Linear) and isinstance(m, Conv2d):
                raise ValueError(f"cannot prune neurons of {name!r}: it feeds a Conv2d ({nxt!r})")
            return nxt, flattened
        if isinstance(m, Flatten) and isinstance(layer, Conv2d) and not flattened:
            flattened = True
        elif not isinstance(m, PASS_THROUGH + (ChannelGate,)):
            raise ValueError(f"cannot prune filters of {name!r}: it is followed by "
                             f"{type(m).__name__} ({nxt!r}), which mixes channels")
    raise ValueError(f"cannot prune filters of {name!r}: it is the last weighted layer (its "
                     f"outputs are the model's outputs)")


def filter_layers(model):
    """Names of the layers whose filters/neurons can be pruned (every Conv2d/Linear but the last)."""
    _check_sequential(model, "filter_layers")
    out = []
    for name in model.names():
        if isinstance(model[name], (Conv2d, Linear)):
            try:
                _next_layer(model, name)
                out.append(name)
            except ValueError:
                pass
    return out


def _gate_name(name):
    return f"{name}_gate"


def gates(model):
    """``{layer_name: ChannelGate}`` for the gated layers of ``model``."""
    check_module(model)
    return {n[:-len("_gate")]: m for n, m in model.named_children()
            if isinstance(m, ChannelGate) and n.endswith("_gate")}


def attach_gates(model, layers, learned=False):
    """Insert a :class:`ChannelGate` after each named layer (step 1: all ones). In place."""
    _check_sequential(model, "attach_gates")
    out = {}
    existing = gates(model)
    for name in layers:
        if name not in model.names() or not isinstance(model[name], (Conv2d, Linear)):
            raise ValueError(f"layer {name!r} cannot be filter-pruned: valid layers are "
                             f"{filter_layers(model)}")
        _next_layer(model, name)  # raises when the filters could not be removed
        if name in existing:
            raise ValueError(f"layer {name!r} already has a gate")
        layer = model[name]
        c = layer.out_channels if isinstance(layer, Conv2d) else layer.out_features
        gate = ChannelGate(c, learned=learned)
        model.insert_after(name, _gate_name(name), gate)
        out[name] = gate
    return out


# ---- scores and one-shot pruning --------------------------------------------------------------
def _filter_layer_names(model, layers):
    """``layers`` as a list, checked: names of Conv2d/Linear children of ``model``."""
    check_module(model)
    if isinstance(layers, str) or not isinstance(layers, (list, tuple)):
        raise TypeError(f"layers must be a list of layer names, got {layers!r}")
    valid = filter_layers(model)
    for name in layers:
        if not isinstance(name, str) or name not in valid:
            raise ValueError(f"layer {name!r} cannot be filter-pruned: valid layers are {valid}")
    return list(layers)


def filter_scores(model, score="l1", layers=None, *, data=None, rng=None, num_batches=8,
                  batch_size=128, loss_fn=cross_entropy):
    """``{layer_name: (O,) scores}``; ``"taylor"`` needs gates and calibration ``data``, ``rng``."""
    check_score(score, FILTER_SCORES)
    layers = _filter_layer_names(model, layers) if layers is not None \
        else list(gates(model)) or filter_layers(model)
    if score != "taylor":
        return {n: filter_norm_scores(model[n].effective_weight(), score) for n in layers}
    if data is None or rng is None:
        raise ValueError("score 'taylor' needs calibration data=(x, y) and rng=")
    existing = gates(model)
    added = attach_gates(model, [n for n in layers if n not in existing])
    gs = {**existing, **added}
    for g in gs.values():
        g.record_taylor, g.taylor_sum[...], g.taylor_count = True, 0.0, 0
    try:
        for i, (xb, yb) in enumerate(batches(*data, batch_size, rng=rng)):
            if i == num_batches:
                break
            _, grad = loss_fn(model(xb), yb)
            model.backward(grad)
        model.zero_grad()
    finally:
        for g in gs.values():
            g.record_taylor = False
        for name in added:  # leave the model as we found it
            _drop_children(model, [_gate_name(name)])
    return {n: gs[n].taylor_sum / max(1, gs[n].taylor_count) for n in layers}


def _kept(channels, ratio, name):
    check_sparsity(ratio, f"ratio of {name!r}")
    k = kept_count(channels, ratio)
    if k == 0:
        raise ValueError(f"pruning {ratio:g} of the {channels} filters of {name!r} would remove "
                         f"all of them; at least one must stay")
    return k


def _ratios(model, ratios):
    if isinstance(ratios, dict):
        return dict(ratios)
    return {n: ratios for n in filter_layers(model)}


def filter_prune(model, ratios, score="l1", *, data=None, rng=None, num_batches=8,
                 loss_fn=cross_entropy):
    """Steps 1–3: gate the layers and zero the lowest-scoring fraction of their filters, in place.

    ``ratios`` is ``{layer: fraction of its filters to prune}`` or one fraction for every
    prunable layer. Counts are exact (``O − round(ratio·O)`` kept, ties → lower index).
    """
    _check_sequential(model, "filter_prune")
    ratios = _ratios(model, ratios)
    existing = gates(model)
    attach_gates(model, [n for n in ratios if n not in existing])
    scores = filter_scores(model, score, list(ratios), data=data, rng=rng,
                           num_batches=num_batches, loss_fn=loss_fn)
    gs = gates(model)
    for name, ratio in ratios.items():
        keep = topk_mask(np.where(gs[name].keep, scores[name], -np.inf),
                         _kept(gs[name].channels, ratio, name))
        gs[name].mask.data[...] = keep
    return gs


@dataclass
class FilterPruning:
    """What :func:`learned_filter_prune` does.

    ratios : ``{layer: fraction of its filters to prune}``, or one fraction for every prunable layer.
    lr, score_lr : the learning rates of the two groups of the one Adam: weights and filter scores.
    init_score : the filter score ŝ the learned scores start from (``"l1"``, ``"l2"``, ``"median"``).
    ramp : the kept counts follow a cubic schedule over this fraction of the steps.
    """

    ratios: Union[float, Dict[str, float]]
    lr: float = 1e-3
    score_lr: float = 1e-2
    init_score: str = "l1"
    ramp: float = 0.5


class LearnedFilterMasks(Hook):
    """The gates' masks as the top-k of ŝ_c + s_c, k following each layer's cubic schedule from
    all filters down to ``finals[layer]``; updated before every step and at the end of each epoch."""

    def __init__(self, gates_, base, finals, schedules):
        self.gates, self.base, self.finals, self.schedules = gates_, base, finals, schedules

    def update(self, step):
        for n, g in self.gates.items():
            k = max(self.finals[n], kept_count(g.channels, self.schedules[n](step)))
            g.mask.data[...] = topk_mask(self.base[n] + g.scores.data, k)

    def before_step(self, trainer, batch):
        self.update(trainer.step)

    def end_of_epoch(self, trainer, record):
        self.update(trainer.step)


def learned_filter_prune(model, data, method, config, *, loss_fn=cross_entropy, eval_data=None,
                         hooks=()):
    """Step 4 for filters: Adam learns which filters to keep while the weights are fine-tuned.

    Each gated layer's mask is the top-k of  ŝ_c + s_c  where ŝ is the ``method.init_score``
    normalised to mean 1 in the layer and s the learned score (straight-through gradient
    Σ a ⊙ ∂L/∂a); k follows a cubic schedule from all filters to ``O − round(ratio·O)`` over the
    first ``method.ramp`` of the steps. ``method`` is a :class:`FilterPruning`, ``config`` a
    :class:`~minicompress.train.TrainConfig`; one Adam with the groups "weights" and "filter
    scores". Ends with fixed binary gates at exactly the requested counts; :func:`shrink` then
    removes the filters. Returns the history.
    """
    _check_sequential(model, "learned_filter_prune")
    ratios = _ratios(model, method.ratios)
    if gates(model):
        raise ValueError("learned_filter_prune: the model already has gates; shrink() it first")
    base = filter_scores(model, method.init_score, list(ratios))
    gs = attach_gates(model, list(ratios), learned=True)
    base = {n: s / max(float(s.mean()), 1e-12) for n, s in base.items()}
    finals = {n: _kept(gs[n].channels, r, n) for n, r in ratios.items()}
    total_steps = max(1, config.total_steps(len(data[0])))
    schedules = {n: CubicSchedule(0.0, r, max(1, int(method.ramp * total_steps)))
                 for n, r in ratios.items()}
    masks = LearnedFilterMasks(gs, base, finals, schedules)
    scores = [g.scores for g in gs.values()]
    ids = {id(p) for p in scores}
    optimizer = optim.Adam([
        {"params": [p for p in model.parameters() if id(p) not in ids], "lr": method.lr,
         "name": "weights"},
        {"params": scores, "lr": method.score_lr, "name": "filter scores"}])
    history = fit(model, optimizer, data, config, loss_fn=loss_fn,
                  hooks=[masks] + evaluation(eval_data) + list(hooks))
    masks.update(total_steps)  # exactly the final counts
    for g in gs.values():  # freeze: drop the learned scores
        del g.scores
    return history


# ---- physical removal ---------------------------------------------------------------------------
def _drop_children(model, names):
    kept = [(n, m) for n, m in model.named_children() if n not in names]
    model._modules = type(model._modules)(kept)


def _check_plain(layer, name):
    if layer.weight_transforms:
        raise ValueError(f"cannot remove filters of {name!r}: it has weight transforms "
                         f"{[type(t).__name__ for t in layer.weight_transforms]}; bake them in "
                         f"first (prune.remove) or prune filters before adding them")


def _new_like(layer, weight, bias):
    rng = np.random.default_rng(0)  # the values are overwritten right below
    if isinstance(layer, Conv2d):
        new = Conv2d(weight.shape[1], weight.shape[0], layer.kernel_size, layer.stride,
                     layer.padding, bias=bias is not None, rng=rng)
    else:
        new = Linear(weight.shape[1], weight.shape[0], bias=bias is not None, rng=rng)
    new.weight.data = np.ascontiguousarray(weight, np.float32)
    new.weight.grad = np.zeros_like(new.weight.data)
    if bias is not None:
        new.bias.data = np.ascontiguousarray(bias, np.float32)
        new.bias.grad = np.zeros_like(new.bias.data)
    new.training = layer.training
    return new


def remove_filters(model, name, keep, inplace=False):
    """Physically remove the filters (neurons) of layer ``name`` not listed in ``keep``.

    ``keep``: indices or a boolean array over the layer's outputs. Builds a smaller layer and
    shrinks the input side of the next weighted layer (see the module docstring). Returns the
    model (a new one unless ``inplace=True``; the original is then untouched).
    """
    _check_sequential(model, "remove_filters")
    if not inplace:
        model = copy.deepcopy(model)
    if name not in model.names() or not isinstance(model[name], (Conv2d, Linear)):
        raise ValueError(f"remove_filters: {name!r} is not a Conv2d/Linear child; "
                         f"valid layers are {filter_layers(model)}")
    layer = model[name]
    out_n = layer.weight.data.shape[0]
    keep = np.asarray(keep)
    if keep.dtype != bool and keep.dtype.kind not in "iu":
        # 1.7 would silently become filter 1; an object array of huge ints would overflow
        raise TypeError(f"remove_filters: keep must be integer indices or a boolean mask, got "
                        f"an array of {keep.dtype}")
    idx = np.flatnonzero(keep) if keep.dtype == bool else np.unique(keep.astype(np.int64))
    if keep.dtype == bool and keep.size != out_n:
        raise ValueError(f"remove_filters: keep has {keep.size} entries but {name!r} has {out_n} outputs")
    if idx.size == 0:
        raise ValueError(f"remove_filters: refusing to remove all {out_n} filters of {name!r}")
    if idx.min() < 0 or idx.max() >= out_n:
        raise ValueError(f"remove_filters: keep indices must be in [0, {out_n}), got {idx}")
    nxt_name, flattened = _next_layer(model, name)
    nxt = model[nxt_name]
    _check_plain(layer, name)
    _check_plain(nxt, nxt_name)
    bias = layer.bias.data[idx] if layer.bias is not None else None
    model[name] = _new_like(layer, layer.weight.data[idx], bias)
    w = nxt.weight.data
    if flattened:  # channel c owns columns [c·HW, (c+1)·HW) of the Linear's input
        if w.shape[1] % out_n:
            raise ValueError(f"remove_filters: {nxt_name!r} has {w.shape[1]} inputs, not a "
                             f"multiple of the {out_n} channels of {name!r}")
        hw = w.shape[1] // out_n
        cols = (idx[:, None] * hw + np.arange(hw)[None, :]).ravel()
        new_w = w[:, cols]
    else:
        new_w = w[:, idx]
    model[nxt_name] = _new_like(nxt, new_w, nxt.bias.data if nxt.bias is not None else None)
    return model


def shrink(model, inplace=False):
    """Step 5: remove every gated layer's zero filters physically, then drop the gates.

    The result computes the same outputs as the gated model (to float rounding) with smaller
    layers. Returns the shrunk model (a copy unless ``inplace=True``).
    """
    _check_sequential(model, "shrink")
    if not inplace:
        model = copy.deepcopy(model)
    gs = gates(model)
    if not gs:
        raise ValueError("shrink: the model has no filter gates (call filter_prune first)")
    for name in model.names():  # model order: each removal sees the already-shrunk layers
        if name in gs:
            remove_filters(model, name, gs[name].keep, inplace=True)
    _drop_children(model, [_gate_name(n) for n in gs])
    return model
