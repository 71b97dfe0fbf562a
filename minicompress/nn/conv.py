"""2-D convolution by im2col + matmul (see ``im2col.py`` for the layout).

In eval mode a stride-1 layer with few filters is computed as a *banded* matmul instead (see
``banded.py``), whose time follows the number of filters; the batch is convolved a few images at
a time either way, so that each chunk's copy is still in cache when the matmul reads it.
"""
import numpy as np

from .banded import band_width, banded_product, banded_weight
from .checks import check_input, check_positive_int
from .fused import conv_relu_pool, relu_pool_follow
from .im2col import col2im, im2col, output_size
from .init import check_rng, kaiming_uniform
from .module import Parameter
from .weighted import WeightedLayer


# A layer with at most this many weights (k·k·C·O) takes its weight gradient as a sum of
# per-image products; see weight_gradient.
_PER_IMAGE_WEIGHT_GRAD_MAX = 4096

# In eval mode the batch is convolved a few images at a time, so that each chunk's im2col matrix
# (at most this many floats, 1 MB in float32) is still in the core's cache (2 MB of L2 here) when
# the matmul reads it back: written to and read from memory instead, the copy costs about as much
# as the matmul and does not shrink with the number of filters. See Conv2d.eval_product.
_INFERENCE_CHUNK_FLOATS = 1 << 18

def weight_gradient(cols, g, n):
    """∂L/∂W_mat = gᵀ·cols (O, k·k·C), from cols (N·OH·OW, k·k·C) and g = ∂L/∂Y (N·OH·OW, O).

    It is a sum over the N images, gᵀ·cols = Σ_n g_nᵀ·cols_n, and for a *narrow* layer (few
    weights: lenet5's convolutions, the teacher's first) we compute it that way — one batched
    matmul of N small products, then a sum. As one matmul it has an inner dimension N·OH·OW of
    ~10⁵ against outer ones of 6–150, a shape BLAS handles badly; the per-image form is 1.5–2x
    faster there. For a wide layer the (N, k·k·C, O) stack of products costs more than it saves.
    Either way it is computed as (colsᵀ·g)ᵀ: for the 1-channel layer colsᵀ is the contiguous
    array im2col built, and BLAS is faster on it than on its transpose.
    """
    kkc, o = cols.shape[1], g.shape[1]
    if n > 1 and kkc * o <= _PER_IMAGE_WEIGHT_GRAD_MAX:
        per_image = np.matmul(cols.reshape(n, -1, kkc).transpose(0, 2, 1), g.reshape(n, -1, o))
        return per_image.sum(axis=0).T                    # (N, k·k·C, O) → (O, k·k·C)
    return (cols.T @ g).T


class Conv2d(WeightedLayer):
    """``y[n, o] = b[o] + Σ_{c,i,j} W_eff[o, c, i, j] · x_pad[n, c, s·h + i, s·w + j]``.

    Shapes: x (N, C, H, W); W (O, C, k, k) as in PyTorch; b (O,); y (N, O, OH, OW) with
    OH = ⌊(H + 2p − k)/s⌋ + 1.

    As a matmul: Y = cols · W_matᵀ with cols = im2col(x) (N·OH·OW, k·k·C). Backward, g = ∂L/∂Y:
    ∂L/∂W_mat = gᵀ · cols,  ∂L/∂cols = g · W_mat  (then col2im),  ∂L/∂b = Σ g.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 bias: bool = True, *, rng):
        check_rng(rng, "Conv2d")
        self.in_channels = check_positive_int(in_channels, "in_channels", "Conv2d")
        self.out_channels = check_positive_int(out_channels, "out_channels", "Conv2d")
        self.kernel_size = check_positive_int(kernel_size, "kernel_size", "Conv2d")
        self.stride = check_positive_int(stride, "stride", "Conv2d")
        self.padding = check_positive_int(padding, "padding", "Conv2d", minimum=0)
        fan_in = in_channels * kernel_size * kernel_size
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.weight = Parameter(kaiming_uniform(shape, fan_in, rng))
        self.bias = Parameter(kaiming_uniform((out_channels,), fan_in, rng)) if bias else None
        self._init_transforms()

    def _name(self):
        return (f"Conv2d({self.in_channels}, {self.out_channels}, k={self.kernel_size}, "
                f"s={self.stride}, p={self.padding})")

    def eval_fusion(self, following):
        """2 if ReLU and a MaxPool2d follow (done with this layer by ``conv_relu_pool``, in
        eval mode), else 0. Not for subclasses: they may keep state per call."""
        return 2 if type(self) is Conv2d and relu_pool_follow(following) else 0

    def forward_fused(self, fused, x):
        return conv_relu_pool(self, fused[1], x)

    def check_input(self, x):
        """Raise a one-line error unless x is (N, C, H, W) with C = in_channels and the padded
        image at least as large as the kernel."""
        check_input(self._name(), x, 4, 1, self.in_channels)
        k, p = self.kernel_size, self.padding
        h, w = x.shape[2:]
        if h + 2 * p < k or w + 2 * p < k:
            raise ValueError(f"{self._name()}: kernel {k} is larger than the padded input "
                             f"{h + 2 * p}x{w + 2 * p} (input shape {x.shape})")

    def forward(self, x):
        self.check_input(x)
        if not self.training:
            return self._forward_eval(x)
        return self._forward_train(x)

    def _w_mat(self):
        """W (O, C, k, k) → (O, k·k·C), matching the (kh, kw, C) column order of im2col."""
        return self.effective_weight().transpose(0, 2, 3, 1).reshape(self.out_channels, -1)

    def bias_row(self, width):
        """The bias repeated along an image row of ``width`` pixels (width·O values), or None:
        added one image row (OW·O contiguous floats) at a time, not one pixel (O floats) at a
        time, numpy's inner loop is long, ~2x faster for small O."""
        return None if self.bias is None else np.tile(self.bias.data, width)

    def _add_bias(self, y, n, oh, ow):
        if self.bias is not None:
            y.reshape(n * oh, ow * self.out_channels)[...] += self.bias_row(ow)

    def _forward_train(self, x):
        n = x.shape[0]
        x_nhwc = x.transpose(0, 2, 3, 1)
        cols, (oh, ow) = im2col(x_nhwc, self.kernel_size, self.stride, self.padding)
        w_mat = self._w_mat()
        y = cols @ w_mat.T                                  # (N·OH·OW, O) = NHWC output
        self._add_bias(y, n, oh, ow)
        self._cache, self._eval_input = (cols, w_mat, x_nhwc.shape, (oh, ow)), None
        return y.reshape(n, oh, ow, self.out_channels).transpose(0, 3, 1, 2)

    def eval_weight(self, out_width):
        """Eval mode: the band width b (1 for plain im2col; see ``band_width``) and the matrix
        the product uses, T = ``banded_weight(W, b)`` (k·(b+k−1)·C, b·O) or W_matᵀ (k·k·C, O).
        Computed once per forward pass, whatever the number of chunks."""
        b = 1 if self.stride > 1 else band_width(out_width, self.out_channels,
                                                  self.in_channels, self.kernel_size)
        return b, (banded_weight(self.effective_weight(), b) if b > 1 else self._w_mat().T)

    def _forward_eval(self, x):
        """Eval mode: y = product + bias, where ``eval_product`` does the product without
        keeping anything for a backward pass. If ``backward`` is called anyway (a training step
        in eval mode), it first redoes the forward pass the training way."""
        n = x.shape[0]
        o, oh, ow = self.output_shape(*x.shape[2:])
        y = self.eval_product(x, *self.eval_weight(ow))
        self._add_bias(y, n, oh, ow)
        self._cache, self._eval_input = None, x
        return y.reshape(n, oh, ow, o).transpose(0, 3, 1, 2)

    def eval_product(self, x, b, mat, out=None, work=None):
        """x (N, C, H, W) → the convolution *without bias*, (N·OH·OW, O) in NHWC order (into
        ``out`` if given), a chunk of images at a time; b and mat from ``eval_weight``.

        * b = 1, im2col: y = cols · W_matᵀ, each chunk's rows one matmul of that chunk's cols,
          so y is the same sum of the same products as in training; only the order in which the
          chunks are done changes. The chunk's cols (≤ ``_INFERENCE_CHUNK_FLOATS``) are read back
          from cache, which makes the im2col copy cheap.
        * b > 1, banded (stride 1): ``banded_product`` (``banded.py``), the same sums of the
          same products plus products with the exact zeros of T = ``mat``, as (N·OH·OW/b, b·O)
          rows, which is y in NHWC order.

        ``work``, a dict, keeps the banded path's buffers for the next call with as many images
        or fewer (a caller that runs the batch in chunks allocates them once).
        """
        n = x.shape[0]
        k, s, p, o = self.kernel_size, self.stride, self.padding, self.out_channels
        _, oh, ow = self.output_shape(*x.shape[2:])
        x_nhwc = x.transpose(0, 2, 3, 1)
        if out is None:
            out = np.empty((n * oh * ow, o), dtype=np.result_type(x.dtype, mat.dtype))
        if b == 1:
            chunk = max(1, _INFERENCE_CHUNK_FLOATS // (oh * ow * k * k * self.in_channels))
            for start in range(0, n, chunk):
                stop = min(n, start + chunk)
                cols, _ = im2col(x_nhwc[start:stop], k, s, p)
                np.matmul(cols, mat, out=out[start * oh * ow:stop * oh * ow])
            return out
        chunk = max(1, min(n, _INFERENCE_CHUNK_FLOATS // (oh * (ow // b) * mat.shape[0])))
        banded_product(x_nhwc, k, p, b, mat, chunk, out.reshape(-1, b * o),
                       {} if work is None else work)
        return out

    def backward(self, grad_out):
        if self._cache is None:  # the forward pass was in eval mode: redo it the training way
            self._forward_train(self._eval_input)
        cols, w_mat, x_shape, (oh, ow) = self._cache
        o, c, k = self.out_channels, self.in_channels, self.kernel_size
        g = grad_out.transpose(0, 2, 3, 1).reshape(-1, o)  # (N·OH·OW, O)
        grad_w_mat = weight_gradient(cols, g, x_shape[0])
        self._accumulate_weight_grad(grad_w_mat.reshape(o, k, k, c).transpose(0, 3, 1, 2))
        if self.bias is not None:
            # Σ over all N·OH·OW rows, as a matrix-vector product: for a tall, narrow g BLAS does
            # this ~5x faster than numpy's g.sum(axis=0)
            self.bias.grad += np.ones(len(g), dtype=g.dtype) @ g
        if not self.needs_input_grad:
            return None  # first layer of a network: nobody needs ∂L/∂x (see Module)
        # one batched matmul gives each kernel offset's ∂L/∂cols as a contiguous (N·OH·OW, C) block
        w_per_offset = w_mat.reshape(o, k * k, c).transpose(1, 0, 2)  # (k·k, O, C)
        dcols = np.matmul(g, w_per_offset)
        dx_nhwc = col2im(dcols, x_shape, k, self.stride, self.padding, (oh, ow))
        return dx_nhwc.transpose(0, 3, 1, 2)

    def output_shape(self, h, w):
        k, s, p = self.kernel_size, self.stride, self.padding
        return self.out_channels, output_size(h, k, s, p), output_size(w, k, s, p)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")
