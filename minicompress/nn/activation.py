"""ReLU and Flatten: layers without parameters."""
import math

import numpy as np

from .module import Module


class ReLU(Module):
    """``y = max(x, 0)``;  ∂L/∂x = ∂L/∂y · [x > 0].

    In eval mode the mask [x > 0] is not made (one memory pass less); a backward pass after an
    eval-mode forward finds it from the output instead (y > 0 exactly where x > 0).
    """

    def forward(self, x):
        y = np.maximum(x, 0)
        self._y, self._positive = (None, y > 0) if self.training else (y, None)
        return y

    def backward(self, grad_out):
        positive = self._y > 0 if self._positive is None else self._positive
        return grad_out * positive


class Flatten(Module):
    """(N, C, H, W) → (N, C·H·W) in C-order, as ``torch.flatten(x, 1)``."""

    def forward(self, x):
        if x.ndim < 2:
            raise ValueError(f"Flatten: expected at least a 2-D input, got shape {x.shape}")
        self._shape = x.shape
        # the width from the shape, not -1: NumPy cannot infer it for an empty batch
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))

    def backward(self, grad_out):
        return grad_out.reshape(self._shape)
