"""Layers with a weight that may be reparametrised: ``W_eff = t_k(...t_1(W))``.

Pruning masks (``W ⊙ m``) and weight quantizers (``Δ·round(W/Δ)``) are *weight transforms*:
small Modules with ``forward(W) -> W_eff`` and ``backward(∂L/∂W_eff) -> ∂L/∂W``. A layer applies
its transforms in ``forward`` and runs the chain rule back through them in ``backward``, so the
derivative of every compression trick is written once, in the transform, and never inside the
layers. This is the idea of ``torch.nn.utils.prune`` (``weight = weight_orig * weight_mask``).
"""
from .module import Module, Parameter


class WeightTransform(Module):
    """``forward(W) -> W_eff`` and ``backward(∂L/∂W_eff) -> ∂L/∂W``."""

    def forward(self, w):
        raise NotImplementedError

    def backward(self, grad_w_eff):
        raise NotImplementedError


class WeightedLayer(Module):
    """Common part of Linear and Conv2d: ``weight``, ``bias`` and the transform chain."""

    weight: Parameter

    def _init_transforms(self):
        self.weight_transforms = []

    def add_weight_transform(self, transform: WeightTransform):
        if not isinstance(transform, WeightTransform):
            raise TypeError(
                f"add_weight_transform: expected a WeightTransform, got {type(transform).__name__}"
            )
        self.weight_transforms.append(transform)
        return transform

    def remove_weight_transform(self, transform: WeightTransform):
        self.weight_transforms.remove(transform)

    def effective_weight(self):
        """W_eff: the weight after every transform (the weight the layer really uses)."""
        w = self.weight.data
        for t in self.weight_transforms:
            w = t.forward(w)
        return w

    def _accumulate_weight_grad(self, grad_w_eff):
        """Chain rule back through the transforms, then add into ``weight.grad``."""
        g = grad_w_eff
        for t in reversed(self.weight_transforms):
            g = t.backward(g)
        self.weight.grad += g
