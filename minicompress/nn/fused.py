"""Eval mode: Conv2d → ReLU → MaxPool2d done together, a chunk of images at a time.

Run one layer after the other, the convolution writes its whole output to memory (for the
teacher's first layer 256 images × 28 × 28 × 32 floats = 26 MB), ReLU reads and writes it again
and max pooling reads it once more: three passes over an array far larger than the cache, whose
cost does not depend on how many multiplications the convolution did. Done a chunk of images at
a time, the chunk's convolution output is pooled while it is still in cache, and only the pooled
output (a quarter of the size for 2x2 pooling) ever goes to memory.

Pooling before ReLU gives the same numbers: both are monotone, so for every window

    max_j ReLU(z_j) = max_j max(z_j, 0) = max(max_j z_j, 0) = ReLU(max_j z_j)

exactly (no rounding: a maximum only picks one of its inputs), and ReLU then runs on the pooled
output, a quarter of the data, in place. Used by :class:`~minicompress.nn.Sequential` in eval mode
only; training keeps every layer's own forward (the backward pass needs their caches).
"""
import numpy as np

from .activation import ReLU
from .conv import Conv2d
from .pooling import MaxPool2d

# Images per chunk: as many as keep the chunk's convolution output within this many floats
# (4 MB in float32, about the L2 cache of this machine's two cores). Measured on the teacher at
# batch 256, one BLAS thread: chunks of 8…64 images all give the same 25–30 % faster forward
# pass; a smaller chunk pays Python overhead per chunk (~0.1 ms for the three layers).
_FUSED_CHUNK_FLOATS = 1 << 20


def is_conv_relu_pool(layers) -> bool:
    """True for exactly (Conv2d, ReLU, MaxPool2d), in that order (subclasses excluded: they may
    keep state per call that a chunked forward pass would split)."""
    return [type(m) for m in layers] == [Conv2d, ReLU, MaxPool2d]


def conv_relu_pool(conv, pool, x):
    """``MaxPool(ReLU(Conv(x)))`` for x (N, C, H, W) → (N, O, PH, PW), computed as
    ReLU(MaxPool(Conv(x_chunk))) for one chunk of images at a time (see the module docstring).

    Each chunk goes through the layers' own eval-mode forward passes, so the values are those of
    the unfused layers on that chunk; the output is an NCHW view of NHWC memory, as every
    convolution here returns.
    """
    n = x.shape[0]
    o, oh, ow = conv.output_shape(*x.shape[2:])
    chunk = max(1, _FUSED_CHUNK_FLOATS // (o * oh * ow))
    out = None
    for start in range(0, n, chunk):
        pooled = pool(conv(x[start:start + chunk])).transpose(0, 2, 3, 1)   # (c, PH, PW, O)
        if out is None:
            out = np.empty((n,) + pooled.shape[1:], dtype=pooled.dtype)
        np.maximum(pooled, 0, out=out[start:start + chunk])                 # ReLU after the max
    return out.transpose(0, 3, 1, 2)
