"""Neuron pruning of an MLP's hidden layers — the document's filter method (§3.1.2) on Linear layers.

A hidden unit j of a Linear layer l is the layer's filter: its row W⁽ˡ⁾[j, :] and bias b⁽ˡ⁾_j make
the activation a_j, and the next layer reads it through its column W⁽ˡ⁺¹⁾[:, j]. The five steps are
those of ``filters.py``, one mask entry m_j per unit instead of per filter:

1. a mask entry per hidden unit, applied to the layer's output: a_j ← m_j · a_j
   (a :class:`~minicompress.prune.filters.ChannelGate` on the (N, units) activations);
2. unit scores from the row alone — ``"l1"`` Σ_i |W[j, i]|, ``"l2"``, ``"median"`` — or
   ``"taylor"``, the first-order loss change (1/B) Σ_b |Σ_n a_j ∂L/∂a_j| when a_j is set to 0;
3. the lowest-scoring fraction of the units set to m_j = 0;
4. Adam optimises the mask: learned scores s_j on top of the normalised initial score ŝ_j, the
   mask the top-k of ŝ_j + s_j, straight-through gradient ∂L/∂s_j := ∂L/∂m_j = Σ_n a_j ∂L/∂a'_j,
   trained together with the weights on the task loss L_task(W, m) — as for filters;
5. physical removal: drop row j of W⁽ˡ⁾, entry j of b⁽ˡ⁾ and column j of W⁽ˡ⁺¹⁾. The network is
   then an ordinary, smaller MLP: (N, d) → (N, h') → ... with h' kept units, and its matmuls do
   h'/h of the work. This is what makes neuron pruning pay in time, where an unstructured mask
   only makes zeros that a dense matmul still multiplies.

Only the checks and names are specific to Linear layers here; the gates, scores, learned masks and
removal are the filter machinery of ``filters.py``, which treats a Linear's outputs as filters.
"""
from __future__ import annotations

import copy

from ..nn import Linear, cross_entropy
from .filters import (FilterPruning, filter_layers, filter_prune, learned_filter_prune,
                      remove_filters, shrink)

NeuronPruning = FilterPruning  # the same settings: ratios, lr, score_lr, init_score, ramp


def neuron_layers(model):
    """Names of the Linear layers whose hidden units can be removed: every Linear that feeds
    another Linear through unit-wise modules only (ReLU, gates) — all but the output layer."""
    return [n for n in filter_layers(model) if isinstance(model[n], Linear)]


def _check_neuron_layers(model, layers, where):
    valid = neuron_layers(model)
    for name in layers:
        if name not in valid:
            kind = type(model[name]).__name__ if name in model.names() else "no such layer"
            raise ValueError(f"{where}: {name!r} ({kind}) has no removable hidden units; "
                             f"valid layers are {valid}")


def _ratios(model, ratios, where):
    if isinstance(ratios, dict):
        _check_neuron_layers(model, ratios, where)
        return dict(ratios)
    return {n: ratios for n in neuron_layers(model)}


def neuron_prune(model, ratios, score="l1", *, data=None, rng=None, num_batches=8,
                 loss_fn=cross_entropy):
    """Steps 1–3: gate the hidden layers and zero the lowest-scoring fraction of their units.

    ``ratios``: ``{layer: fraction of its units to prune}``, or one fraction for every hidden
    Linear layer. In place; returns ``{layer: ChannelGate}``. ``"taylor"`` needs ``data``, ``rng``.
    """
    return filter_prune(model, _ratios(model, ratios, "neuron_prune"), score, data=data, rng=rng,
                        num_batches=num_batches, loss_fn=loss_fn)


def learned_neuron_prune(model, data, method, config, *, loss_fn=cross_entropy, eval_data=None,
                         hooks=()):
    """Step 4: one Adam learns which hidden units to keep while the weights are fine-tuned.

    ``method`` is a :class:`NeuronPruning` (= ``FilterPruning``) whose ratios name Linear layers
    only; see :func:`~minicompress.prune.filters.learned_filter_prune`. Ends with fixed binary
    gates at exactly the requested counts; :func:`shrink` then removes the units.
    """
    ratios = _ratios(model, method.ratios, "learned_neuron_prune")
    method = copy.copy(method)
    method.ratios = ratios
    return learned_filter_prune(model, data, method, config, loss_fn=loss_fn,
                                eval_data=eval_data, hooks=hooks)


def remove_neurons(model, name, keep, inplace=False):
    """Step 5 for one layer: keep only the hidden units ``keep`` (indices or a boolean mask) of
    Linear layer ``name``:  W⁽ˡ⁾ ← W⁽ˡ⁾[keep, :],  b⁽ˡ⁾ ← b⁽ˡ⁾[keep],  W⁽ˡ⁺¹⁾ ← W⁽ˡ⁺¹⁾[:, keep].

    Returns the model (a new one unless ``inplace=True``).
    """
    _check_neuron_layers(model, [name], "remove_neurons")
    return remove_filters(model, name, keep, inplace=inplace)

