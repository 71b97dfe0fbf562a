"""Importance scores — §3.1.1 step 2 (weights) and §3.1.2 step 2 (filters).

Weight scores (one per weight, shape of W), with g = ∂L/∂W_eff on a calibration batch b:

* ``"magnitude"``  |W|                          — small weights matter little (the document's
                                                   "权重绝对值");
* ``"gradient"``   (1/B) Σ_b |g_b|              — the document's "梯度范数", per weight;
* ``"taylor"``     (1/B) Σ_b |W ⊙ g_b|          — first-order Taylor estimate of the change of the
                                                   loss when the weight is set to 0
                                                   (L(W) − L(W − w_i e_i) ≈ w_i g_i).

Scores are accumulated over B calibration batches (a single batch is noisy); the absolute value is
taken per batch so that opposite signs on different batches do not cancel.

Filter scores (one per output filter of a Conv2d / per neuron of a Linear, shape (O,)):
``"l1"`` Σ|W_o|, ``"l2"`` ‖W_o‖₂, ``"median"`` median |W_o| (the document's "绝对中值"), and
``"taylor"`` (1/B) Σ_b |Σ_{n,h,w} a ⊙ ∂L/∂a| of the filter's output activation a (Molchanov et al.
2017), the loss change when the whole filter is removed.
"""
from __future__ import annotations

import numpy as np

from ..data import batches
from ..nn import WeightTransform, cross_entropy
from .mask import prunable_layers

WEIGHT_SCORES = ("magnitude", "gradient", "taylor")
FILTER_SCORES = ("l1", "l2", "median", "taylor")


def check_score(name, valid):
    if name not in valid:
        raise ValueError(f"unknown score {name!r}; valid scores are {list(valid)}")
    return name


class _GradientProbe(WeightTransform):
    """Identity weight transform that records g = ∂L/∂W_eff (put last in the chain)."""

    def __init__(self):
        self.abs_g = None
        self.abs_wg = None

    def forward(self, w):
        self._w = w
        return w

    def backward(self, g):
        ag, awg = np.abs(g), np.abs(g * self._w)
        self.abs_g = ag if self.abs_g is None else self.abs_g + ag
        self.abs_wg = awg if self.abs_wg is None else self.abs_wg + awg
        return g


def _calibration_batches(data, num_batches, batch_size, rng):
    x, y = data
    out = []
    for i, b in enumerate(batches(x, y, batch_size, rng=rng)):
        if i == num_batches:
            break
        out.append(b)
    return out


def weight_scores(model, score="magnitude", *, data=None, num_batches=8, batch_size=128,
                  rng=None, loss_fn=cross_entropy, layers=None):
    """``{layer_name: score array (shape of W)}`` for the prunable layers.

    ``"gradient"`` and ``"taylor"`` need ``data=(x, y)`` and ``rng`` (calibration batches);
    model Parameters' ``.grad`` are left zeroed. Scores use the *effective* weight, so entries that
    a mask already removed score |0| = 0 for magnitude and Taylor.
    """
    check_score(score, WEIGHT_SCORES)
    named = prunable_layers(model, layers)
    if score == "magnitude":
        return {name: np.abs(layer.effective_weight()) for name, layer in named}
    if data is None or rng is None:
        raise ValueError(f"score {score!r} needs calibration data=(x, y) and rng=")
    probes = {}
    for name, layer in named:
        probes[name] = layer.add_weight_transform(_GradientProbe())
    try:
        batches_ = _calibration_batches(data, num_batches, batch_size, rng)
        model.zero_grad()
        for xb, yb in batches_:
            loss, grad = loss_fn(model(xb), yb)
            model.backward(grad)
        model.zero_grad()
    finally:
        for name, layer in named:
            layer.remove_weight_transform(probes[name])
    key = "abs_g" if score == "gradient" else "abs_wg"
    return {name: getattr(probes[name], key) / len(batches_) for name, _ in named}


# ---- filters -----------------------------------------------------------------------------------
def filter_norm_scores(weight, score):
    """Per-output-filter score of a weight (O, ...) from its values alone: l1 / l2 / median."""
    check_score(score, ("l1", "l2", "median"))
    w = np.abs(weight.reshape(weight.shape[0], -1))
    if score == "l1":
        return w.sum(axis=1)
    if score == "l2":
        return np.sqrt((w * w).sum(axis=1))
    return np.median(w, axis=1)
