"""Max and average pooling, vectorised as a loop over the k·k window offsets.

Each offset (i, j) of the window picks the strided sub-image x[:, i::s, j::s] — one whole array
per offset — so there is never a Python loop over pixels or batch items. Works channels-last
(see ``im2col.py``), so the offset slices keep C contiguous.
"""
import numpy as np

from .checks import check_input, check_positive_int
from .module import Module


class _Pool2d(Module):
    def __init__(self, kernel_size, stride=None):
        name = type(self).__name__
        self.kernel_size = check_positive_int(kernel_size, "kernel_size", name)
        self.stride = check_positive_int(kernel_size if stride is None else stride, "stride", name)

    def _offset_views(self, x_nhwc, oh, ow):
        k, s = self.kernel_size, self.stride
        for i in range(k):
            for j in range(k):
                yield (slice(None), slice(i, i + s * (oh - 1) + 1, s),
                       slice(j, j + s * (ow - 1) + 1, s), slice(None))

    def _prepare(self, x):
        name = f"{type(self).__name__}(k={self.kernel_size}, s={self.stride})"
        check_input(name, x, 4)
        n, c, h, w = x.shape
        k, s = self.kernel_size, self.stride
        if h < k or w < k:
            raise ValueError(f"{name}: kernel {k} is larger than the input {h}x{w} (shape {x.shape})")
        oh, ow = (h - k) // s + 1, (w - k) // s + 1
        return x.transpose(0, 2, 3, 1), oh, ow

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class MaxPool2d(_Pool2d):
    """``y[n, c, h, w] = max_{i,j<k} x[n, c, s·h + i, s·w + j]``.

    The gradient flows only to the position that gave the maximum (the first one on ties, as
    PyTorch does).
    """

    def forward(self, x):
        x_nhwc, oh, ow = self._prepare(x)
        views = list(self._offset_views(x_nhwc, oh, ow))
        best = x_nhwc[views[0]].copy()
        winner = np.zeros(best.shape, dtype=np.uint8)
        for index, view in enumerate(views[1:], start=1):
            candidate = x_nhwc[view]
            better = candidate > best  # strict: the first maximum wins ties
            np.copyto(best, candidate, where=better)
            winner[better] = index
        self._cache = (x_nhwc.shape, winner, views)
        return best.transpose(0, 3, 1, 2)

    def backward(self, grad_out):
        shape, winner, views = self._cache
        g = grad_out.transpose(0, 2, 3, 1)
        dx = np.zeros(shape, dtype=grad_out.dtype)
        for index, view in enumerate(views):
            dx[view] += g * (winner == index)
        return dx.transpose(0, 3, 1, 2)


class AvgPool2d(_Pool2d):
    """``y[n, c, h, w] = (1/k²) Σ_{i,j<k} x[n, c, s·h + i, s·w + j]``; each input gets g/k²."""

    def forward(self, x):
        x_nhwc, oh, ow = self._prepare(x)
        views = list(self._offset_views(x_nhwc, oh, ow))
        total = x_nhwc[views[0]].copy()
        for view in views[1:]:
            total += x_nhwc[view]
        self._cache = (x_nhwc.shape, views)
        return (total / len(views)).transpose(0, 3, 1, 2)

    def backward(self, grad_out):
        shape, views = self._cache
        g = grad_out.transpose(0, 2, 3, 1) / len(views)
        dx = np.zeros(shape, dtype=grad_out.dtype)
        for view in views:
            dx[view] += g
        return dx.transpose(0, 3, 1, 2)
