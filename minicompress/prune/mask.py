"""The pruning mask as a reparametrisation of a weight — §3.1.1 steps 1 and 6.

Document §3.1.1 (权重剪枝) prunes with a mask m of the same shape as W and uses the weight

    W_eff = W ⊙ m

Here the mask is a :class:`~minicompress.nn.WeightTransform` attached to a Linear or Conv2d layer
(``layer.weight_transforms``), as ``torch.nn.utils.prune`` does with ``weight_orig * weight_mask``.
The chain rule through it is  ∂L/∂W = ∂L/∂W_eff ⊙ m,  so a pruned weight gets exactly zero
gradient from the task loss.

Why a pruned weight stays exactly zero through any number of Adam steps: the layer never uses W
directly, only W ⊙ m. Adam's first moment may still move the *stored* W of a pruned entry for a
while after it was pruned (m_t decays geometrically, it is not reset), but its *effective* value is
``W · 0 = 0`` whatever W becomes. Zeroing W itself would not be enough — that is the bug this
design avoids. :func:`remove` bakes ``W ⊙ m`` into the weight when training is over (step 6).

The mask is always put first in the chain (``W_eff = quant(W ⊙ m)``), so a quantizer added before
or after it sees the masked weight; a quantizer that maps 0 to 0 keeps pruned weights at zero.
"""
from __future__ import annotations

import copy

import numpy as np

from ..nn import Conv2d, Linear, Parameter, WeightedLayer, WeightTransform
from ..nn.checks import check_module

PRUNABLE = (Linear, Conv2d)


class Mask(WeightTransform):
    """Fixed binary mask, ``W_eff = W ⊙ m`` (m ∈ {0, 1}, same shape as W).

    ``mask`` is a Parameter with ``requires_grad=False``: saved in ``state_dict`` as
    ``<layer>.weight_transforms.0.mask`` but never changed by an optimizer.
    """

    def __init__(self, shape):
        self.mask = Parameter(np.ones(shape, dtype=np.float32), requires_grad=False)  # step 1

    def set(self, keep):
        """Set m from a boolean/0-1 array of W's shape (True = keep)."""
        keep = np.asarray(keep)
        if keep.shape != self.mask.data.shape:
            raise ValueError(f"Mask.set: mask shape {keep.shape} does not match the weight "
                             f"shape {self.mask.data.shape}")
        self.mask.data[...] = keep.astype(np.float32)

    @property
    def keep(self):
        """Boolean array, True where the weight is kept."""
        return self.mask.data != 0

    def forward(self, w):
        self._w = w  # kept for LearnedMask's score gradient
        return w * self.mask.data

    def backward(self, grad_w_eff):
        # ∂L/∂W = ∂L/∂W_eff ⊙ m : a pruned weight gets no gradient from the task loss
        return grad_w_eff * self.mask.data

    def extra_repr(self):
        m = self.mask.data
        return f"shape={m.shape}, sparsity={1 - m.mean():.4f}"


class LearnedMask(Mask):
    """A binary mask chosen from learned scores s (§3.1.1 steps 4–5, optimised by Adam).

    Forward: W_eff = W ⊙ m with m = 1[s among the top-k] (set by the pruner, see ``learned.py``).
    Backward (straight-through estimator, as in movement pruning, Sanh et al. 2020): the
    binarisation has zero derivative almost everywhere, so its derivative is replaced by 1 and the
    score receives the derivative of the loss w.r.t. the relaxed mask,

        ∂L/∂s := ∂L/∂m = ∂L/∂W_eff ⊙ W          (shape of W)

    which is also the document's ∂L_task/∂m (see ``objective.py``). A pruned entry whose weight
    would lower the loss if it came back (negative ∂L/∂m) sees its score rise, and may re-enter
    the top-k: the mask is learned, not only shrunk.
    """

    def __init__(self, shape, scores=None):
        super().__init__(shape)
        init = np.zeros(shape, np.float32) if scores is None else np.asarray(scores, np.float32)
        if init.shape != tuple(shape):
            raise ValueError(f"LearnedMask: scores shape {init.shape} does not match {tuple(shape)}")
        self.scores = Parameter(init.copy())

    def backward(self, grad_w_eff):
        self.scores.grad += grad_w_eff * self._w  # straight-through: ∂L/∂s = ∂L/∂m
        return grad_w_eff * self.mask.data


# ---- attaching and removing ------------------------------------------------------------------
def prunable_layers(model, layers=None):
    """``[(name, layer)]`` of the Linear/Conv2d layers of ``model`` (all of them by default).

    ``layers`` is an optional list of names; a name that is not a prunable layer is an error.
    """
    check_module(model)
    if layers is not None and (isinstance(layers, str) or not isinstance(layers, (list, tuple))
                               or not layers or not all(isinstance(n, str) for n in layers)):
        raise TypeError(f"layers must be None (all prunable layers) or a non-empty list of layer "
                        f"names, got {layers!r}")
    found = {name: m for name, m in model.named_modules() if isinstance(m, PRUNABLE)}
    if layers is None:
        if not found:
            raise ValueError(f"{type(model).__name__} has no Linear or Conv2d layer to prune")
        return list(found.items())
    out = []
    for name in layers:
        if name not in found:
            raise ValueError(f"layer {name!r} cannot be pruned: prunable layers (Linear, Conv2d) "
                             f"are {sorted(found)}")
        out.append((name, found[name]))
    return out


def _named_modules(model):
    """``model.named_modules()``, once ``model`` is checked to be a Module."""
    return check_module(model).named_modules()


def get_mask(layer):
    """The :class:`Mask` attached to ``layer``, or None."""
    check_module(layer, "layer", WeightedLayer)
    for t in layer.weight_transforms:
        if isinstance(t, Mask):
            return t
    return None


def attach_mask(layer, mask=None):
    """Attach a mask (a new all-ones :class:`Mask` by default) as the *first* weight transform.

    First, so that ``W_eff = quant(W ⊙ m)`` whatever order the transforms were added in.
    A layer holds at most one mask: attaching a second one is an error.
    """
    if not isinstance(layer, WeightedLayer):
        raise TypeError(f"attach_mask: {type(layer).__name__} has no weight to prune "
                        f"(expected Linear or Conv2d)")
    if get_mask(layer) is not None:
        raise ValueError("attach_mask: the layer already has a mask; call remove() first")
    mask = mask if mask is not None else Mask(layer.weight.data.shape)
    if mask.mask.data.shape != layer.weight.data.shape:
        raise ValueError(f"attach_mask: mask shape {mask.mask.data.shape} does not match the "
                         f"weight shape {layer.weight.data.shape}")
    layer.weight_transforms.insert(0, mask)
    return mask


def masks(model):
    """``{layer_name: Mask}`` for every masked layer of ``model``."""
    out = {}
    for name, m in _named_modules(model):
        if isinstance(m, WeightedLayer):
            mk = get_mask(m)
            if mk is not None:
                out[name] = mk
    return out


def remove(model, inplace=True):
    """Step 6: make the pruning permanent — ``W ← W ⊙ m`` and detach every mask.

    Afterwards the pruned weights are stored zeros (``metrics.sparse_bytes`` encodes them away);
    note that *training* the model further without a mask would let them grow back, so keep the
    mask attached while fine-tuning. Returns the model (a pruned copy when ``inplace=False``).
    """
    if not inplace:
        model = copy.deepcopy(model)
    for name, mk in masks(model).items():
        layer = dict(_named_modules(model))[name]
        layer.weight.data *= mk.mask.data
        layer.remove_weight_transform(mk)
    return model


def sparsity(model, layers=None):
    """Fraction of zero *effective* weights over the prunable layers (exact count / total)."""
    zeros = total = 0
    for _, layer in prunable_layers(model, layers):
        w = layer.effective_weight()
        zeros += int(np.count_nonzero(w == 0))
        total += w.size
    return zeros / total
