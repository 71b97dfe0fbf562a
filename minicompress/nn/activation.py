"""ReLU and Flatten: layers without parameters."""
import numpy as np

from .module import Module


class ReLU(Module):
    """``y = max(x, 0)``;  ∂L/∂x = ∂L/∂y · [x > 0]."""

    def forward(self, x):
        y = np.maximum(x, 0)
        self._positive = y > 0
        return y

    def backward(self, grad_out):
        return grad_out * self._positive


class Flatten(Module):
    """(N, C, H, W) → (N, C·H·W) in C-order, as ``torch.flatten(x, 1)``."""

    def forward(self, x):
        if x.ndim < 2:
            raise ValueError(f"Flatten: expected at least a 2-D input, got shape {x.shape}")
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_out):
        return grad_out.reshape(self._shape)
