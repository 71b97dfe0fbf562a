"""Eval mode: Conv2d → ReLU → MaxPool2d done together, a few images at a time.

Run one layer after the other, the convolution writes its whole output to memory (for the
teacher's first layer 256 images × 28 × 28 × 32 floats = 26 MB), adds the bias in another pass,
ReLU reads and writes it again and max pooling reads it once more: passes over an array far larger
than the cache, whose cost does not depend on how many multiplications the convolution did. Done a
chunk of images at a time, the chunk's product is pooled while it is still in cache, and only the
pooled output (a quarter of the size for 2x2 pooling) ever goes to memory.

The bias and ReLU come *after* the pooling, on a quarter of the data, and give the same numbers.
Write z_j for the products of one window and b for the channel's bias; the unfused layers compute
max_j ReLU(fl(z_j + b)). Rounding, fl, is monotone (t ≤ t' ⇒ fl(t + b) ≤ fl(t' + b)), and so is
ReLU, so for every window

    max_j ReLU(fl(z_j + b)) = ReLU(max_j fl(z_j + b)) = ReLU(fl(max_j z_j + b))

exactly: a maximum only picks one of its inputs, and the same z_j wins on both sides. Used by
:class:`~minicompress.nn.Sequential` in eval mode only; training keeps every layer's own forward
(the backward pass needs their caches).
"""
import numpy as np

from .activation import ReLU
from .pooling import MaxPool2d

# Images per chunk: as many as keep the chunk's product (before pooling) within this many floats,
# 512 KB in float32, so that it fits in a core's 2 MB L2 cache together with the convolution's own
# window matrix (up to 1 MB, nn/conv.py's _INFERENCE_CHUNK_FLOATS). Measured on whole forward
# passes at batch 256, one BLAS thread, 25 interleaved rounds, ms (2^17 floats → 2^18): teacher
# dense 37.2 → 36.3, filter-pruned 23.0 → 23.4; lenet5 dense 6.8 → 7.2, filter-pruned 4.1 → 4.1 —
# level in total. On the teacher's first block alone, chunks of 8 images (0.8 MB) took 6.7 ms,
# 16 (1.6 MB) 7.8 ms, 32 (3.2 MB) 8.2 ms, against 16.3 ms for the three layers one after another.
_FUSED_CHUNK_FLOATS = 1 << 17


def relu_pool_follow(following) -> bool:
    """True if the children after a convolution begin with exactly ReLU, MaxPool2d, the pool's
    windows not overlapping (k = s). Subclasses are excluded: they may keep state per call that
    a chunked forward pass would split."""
    return ([type(m) for m in following[:2]] == [ReLU, MaxPool2d]
            and following[1].kernel_size == following[1].stride)


def conv_relu_pool(conv, pool, x):
    """``MaxPool(ReLU(Conv(x)))`` for x (N, C, H, W) → (N, O, PH, PW), computed for one chunk
    of images at a time as ReLU(MaxPool(z) + b), z the convolution without its bias (see the
    module docstring). The output is an NCHW view of NHWC memory, as every convolution here
    returns.
    """
    conv.check_input(x)
    n = x.shape[0]
    if n == 0:
        return pool.forward(np.maximum(conv.forward(x), 0))
    o, oh, ow = conv.output_shape(*x.shape[2:])
    b, mat = conv.eval_weight(ow)
    chunk = max(1, _FUSED_CHUNK_FLOATS // (o * oh * ow))
    z = np.empty((min(n, chunk) * oh * ow, o), dtype=np.result_type(x.dtype, mat.dtype))
    out = None
    work = {}                                                 # the product's buffers, reused
    for start in range(0, n, chunk):
        m = min(n, start + chunk) - start
        z_chunk = conv.eval_product(x[start:start + m], b, mat, out=z[:m * oh * ow], work=work)
        pooled = pool.forward(z_chunk.reshape(m, oh, ow, o).transpose(0, 3, 1, 2))
        pooled = pooled.transpose(0, 2, 3, 1)                 # (m, PH, PW, O)
        ph, pw = pooled.shape[1:3]
        if out is None:
            out = np.empty((n, ph, pw, o), dtype=z.dtype)
            bias_row = conv.bias_row(pw)                      # added as the layer adds it
        # bias and ReLU on one image row (PW·O contiguous floats) at a time, while in cache
        rows = out[start:start + m].reshape(m * ph, pw * o)
        if bias_row is not None:
            np.add(pooled.reshape(m * ph, pw * o), bias_row, out=rows)
        else:
            rows[...] = pooled.reshape(m * ph, pw * o)
        np.maximum(rows, 0, out=rows)
    return out.transpose(0, 3, 1, 2)
