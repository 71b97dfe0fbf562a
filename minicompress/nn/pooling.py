"""Max and average pooling, vectorised as a loop over the k·k window offsets.

Each offset (i, j) of the window picks the strided sub-image x[:, i::s, j::s] — one whole array
per offset — so there is never a Python loop over pixels or batch items. Works channels-last
(see ``im2col.py``), so the offset slices keep C contiguous.

The common case, non-overlapping windows (k = s, e.g. 2x2 stride 2), has a faster path: the
input is *reshaped* (a view, no copy) to (N, OH, k, OW, k, C), so window row i and column j are
plain axes, and the maximum is taken in two passes — first along each window row, then across
rows — keeping only a small "which one won" index per pass for the backward.

In eval mode max pooling keeps no index at all and takes the maximum the cheap way round: across
window rows first, on whole image rows of W·C contiguous floats (half the data gone in long, fast
passes), then across the columns of what is left, where the contiguous runs are only C floats —
for few channels on the flat array instead (see ``max_over_window_columns``).
"""
import numpy as np

from .checks import check_input, check_positive_int
from .module import Module


class _Pool2d(Module):
    def __init__(self, kernel_size, stride=None):
        name = type(self).__name__
        self.kernel_size = check_positive_int(kernel_size, "kernel_size", name)
        self.stride = check_positive_int(kernel_size if stride is None else stride, "stride", name)

    def _offset_views(self, oh, ow):
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

    def _windows(self, x_nhwc, oh, ow):
        """Non-overlapping windows as a (N, OH, k, OW, k, C) view (k = s): axis 2 is the row i
        inside the window, axis 4 the column j. Rows/columns past the last window are cut off."""
        n, _, _, c = x_nhwc.shape
        k = self.kernel_size
        return x_nhwc[:, :oh * k, :ow * k, :].reshape(n, oh, k, ow, k, c)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


def _argmax_along(views):
    """Element-wise maximum of a list of equally shaped arrays and the index of the first one
    that attains it (a later array wins only if strictly larger — PyTorch's rule on ties)."""
    best = views[0].copy()
    winner = np.zeros(best.shape, dtype=np.uint8)
    for index, candidate in enumerate(views[1:], start=1):
        better = candidate > best
        np.maximum(best, candidate, out=best)
        # winner = index where better. Indices only grow along the loop, so a maximum does it;
        # it is ~50x faster than the boolean-mask assignment ``winner[better] = index``.
        np.maximum(winner, better.view(np.uint8) * np.uint8(index), out=winner)
    return best, winner


def _maximum(views, out=None):
    """Element-wise maximum of a list of equally shaped arrays, into ``out`` or one new array."""
    if len(views) == 1:
        best = np.empty_like(views[0]) if out is None else out
        best[...] = views[0]
        return best
    best = np.maximum(views[0], views[1], out=out)
    for view in views[2:]:
        np.maximum(best, view, out=best)
    return best


# With at most this many channels, the eval-mode maximum across window columns is taken on the
# flat array (see max_over_window_columns). Measured at batch 256 on lenet5's shapes: C = 3 → 1.9x
# faster, C = 6 → 1.4x, C = 10…16 → ~1.2x; for C = 28…64 (the teacher) no gain.
FLAT_COLUMNS_MAX_CHANNELS = 16


def max_over_window_columns(row_best, out=None):
    """(N, OH, OW, k, C) → (N, OH, OW, C): the maximum over axis 3, the k columns j of each
    window, ``best[..., c] = max_j row_best[..., j, c]`` (into ``out``, C-contiguous, if given).

    With few channels, taking ``row_best[:, :, :, j]`` (runs of C floats) makes numpy loop over
    N·OH·OW runs of 3–16 floats, and the loop overhead is the cost. On the flat array, element
    t + j·C is column j of the window whose column 0 is at t, so ``m[t] = max_j flat[t + j·C]`` is
    k − 1 long contiguous passes; it holds the window maxima at the column-0 positions (and
    meaningless values elsewhere, never read). Those are picked out with each pixel's C floats
    viewed as one C·4-byte item, so the copy's inner loop runs over OW pixels instead of C floats.
    """
    n, oh, ow, k, c = row_best.shape
    if c > FLAT_COLUMNS_MAX_CHANNELS:
        return _maximum([row_best[:, :, :, j] for j in range(k)], out=out)
    flat = row_best.reshape(-1)                                  # C order (a copy if it was not)
    length = flat.size - (k - 1) * c
    m = np.empty_like(flat)
    _maximum([flat[j * c:j * c + length] for j in range(k)], out=m[:length])
    at_column_0 = m.reshape(n, oh, ow, k * c)[..., :c]           # (N, OH, OW, C), strided
    best = np.empty((n, oh, ow, c), dtype=row_best.dtype) if out is None else out
    pixel = np.dtype((np.void, c * row_best.itemsize))           # one pixel's C floats as one item
    best.view(pixel)[...] = at_column_0.view(pixel)
    return best


class MaxPool2d(_Pool2d):
    """``y[n, c, h, w] = max_{i,j<k} x[n, c, s·h + i, s·w + j]``.

    The gradient flows only to the position that gave the maximum (the first one in row-major
    window order on ties, as PyTorch does).
    """

    def forward(self, x):
        x_nhwc, oh, ow = self._prepare(x)
        if not self.training:
            # the maximum does not depend on the order it is taken in: rows first (see above)
            self._cache, self._eval_input = None, x
            k = self.kernel_size
            if k == self.stride:
                win = self._windows(x_nhwc, oh, ow)                    # (N, OH, k, OW, k, C)
                row_best = _maximum([win[:, :, i] for i in range(k)])  # (N, OH, OW, k, C)
                best = max_over_window_columns(row_best)
            else:
                best = _maximum([x_nhwc[v] for v in self._offset_views(oh, ow)])
            return best.transpose(0, 3, 1, 2)
        self._eval_input = None
        k = self.kernel_size
        if k == self.stride:
            win = self._windows(x_nhwc, oh, ow)
            # pass 1: best column j inside each window row → (N, OH, k, OW, C)
            row_best, col_winner = _argmax_along([win[:, :, :, :, j] for j in range(k)])
            # pass 2: best row i → (N, OH, OW, C). Ties stay with the earlier row, and inside a
            # row with the earlier column: the first maximum in row-major order, like PyTorch.
            best, row_winner = _argmax_along([row_best[:, :, i] for i in range(k)])
            self._cache = ("windows", x_nhwc.shape, (oh, ow), col_winner, row_winner)
        else:
            views = [x_nhwc[v] for v in self._offset_views(oh, ow)]
            best, winner = _argmax_along(views)
            self._cache = ("offsets", x_nhwc.shape, (oh, ow), winner, None)
        return best.transpose(0, 3, 1, 2)

    def backward(self, grad_out):
        if self._cache is None:  # the forward pass was in eval mode: redo it the training way
            training, self.training = self.training, True
            try:
                self.forward(self._eval_input)
            finally:
                self.training = training
        kind, shape, (oh, ow), winner, row_winner = self._cache
        k = self.kernel_size
        g = grad_out.transpose(0, 2, 3, 1)
        covered = kind == "windows" and shape[1] == oh * k and shape[2] == ow * k
        # when the windows tile the input exactly, the loop below writes every element of dx, so
        # it need not be zeroed first (for the teacher's first pool, a 13 MB memset saved)
        dx = (np.empty if covered else np.zeros)(shape, dtype=grad_out.dtype)
        if kind == "windows":
            dwin = self._windows(dx, oh, ow)
            for i in range(k):
                g_row = g * (row_winner == i)              # (N, OH, OW, C): gradient of row i
                for j in range(k):
                    np.multiply(g_row, winner[:, :, i] == j, out=dwin[:, :, i, :, j])
        else:
            for index, view in enumerate(self._offset_views(oh, ow)):
                dx[view] += g * (winner == index)
        return dx.transpose(0, 3, 1, 2)


class AvgPool2d(_Pool2d):
    """``y[n, c, h, w] = (1/k²) Σ_{i,j<k} x[n, c, s·h + i, s·w + j]``; each input gets g/k²."""

    def forward(self, x):
        x_nhwc, oh, ow = self._prepare(x)
        views = list(self._offset_views(oh, ow))
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
