"""The banded convolution of eval mode: a stride-1 convolution with few filters as one matmul
whose rows each compute b neighbouring output pixels.

With im2col, each output pixel is one row of k·k·C inputs and the matmul has O columns (one per
filter). Both the copy and a matmul with few columns cost in proportion to k·k·C per output
pixel whatever O is, so a layer with filters removed is hardly faster than the dense one. One
banded row computes b neighbouring output pixels instead: the matmul has b·O columns and the
copy is about k·(b+k−1)·C/b floats per pixel instead of k·k·C; the price is multiplications by
exact zeros (``banded_weight``), which cost in proportion to O. (Summing k·k shifted views,
y += W[:, :, i, j]·x[..., i:i+OH, j:j+OW], also costs in proportion to O, but as numpy
element-wise passes it measured 3–20x slower than either matmul on these layers.)

Used by :class:`~minicompress.nn.Conv2d` in eval mode (``band_width`` decides where) and by the
integer model's conv stages, which multiply codes by the same matrix.
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

# In eval mode a stride-1 convolution is a banded matmul (banded_product) whose b·O
# columns reach this width: a matmul with fewer columns than a few BLAS micro-kernels (16 floats
# each) costs about as much as reading its left operand, whatever O is, so with im2col (b = 1) a
# layer with few filters costs k·k·C per output pixel for any O. See band_width.
_BANDED_MIN_COLUMNS = 40


def band_width(out_width, out_channels, in_channels, k):
    """The number b of output pixels one banded row computes, or 1 for plain im2col.

    b is the smallest divisor of OW with b·O ≥ ``_BANDED_MIN_COLUMNS`` (or OW itself), so the
    matmul is wide enough for BLAS while b stays small: the window is b + k − 1 input columns
    wide, and of each (b + k − 1) × b block of T (one kernel row i, one channel c) only k·b
    entries are weights, the rest multiplications by zero — (b + k − 1)/k times the MACs.
    The banded form is used (a measured rule, batch 256, one BLAS thread, SkylakeX):

    * with several input channels, when it does less than twice the MACs, b + k − 1 < 2k.
      im2col → banded, ms: lenet5 conv2 O = 16: 5.4 → 3.2 (b = 5); O = 10: 1.9 → 1.0 (b = 5);
      teacher conv2 O = 34: 19.1 → 16.9 (b = 2); O = 32 after 16 filters: 8.1 → 7.9 (b = 2);
      but 3.1 → 3.8 for O = 16 after 8 filters, where b = 7 is 3x the MACs;
    * with one input channel, only for k ≥ 5: im2col then copies each pixel k² ≥ 25 times
      (lenet5 conv1 O = 6: 4.4 → 3.2, b = 7; O = 3: 2.6 → 2.1, b = 14), whereas for a 3×3
      kernel its 9 contiguous shifted copies are cheap (O = 16: 3.2 → 3.6 banded; O = 28, 32:
      1.7–2.4x slower banded).
    """
    b = min(d for d in range(1, out_width + 1)
            if out_width % d == 0 and (d * out_channels >= _BANDED_MIN_COLUMNS or d == out_width))
    if in_channels == 1:
        return b if k >= 5 else 1
    return b if b + k - 1 < 2 * k else 1


def banded_weight(w, b):
    """W (O, C, k, k) → T (k·(b+k−1)·C, b·O), the block-Toeplitz matrix of a 1-row convolution:

    ``T[(i, v, c), (u, o)] = W[o, c, i, v − u]`` if 0 ≤ v − u < k, else 0,

    so that a row of input window x_pad[n, h + i, v0 + v, c] (i < k, v < b + k − 1, c < C) times T
    gives y[n, h, v0 + u, o] for the b output columns u < b of the block — in NHWC order.
    """
    o, c, k, _ = w.shape
    t = np.zeros((k, b + k - 1, c, b, o), dtype=w.dtype)
    w_ijco = w.transpose(2, 3, 1, 0)                            # (k, k, C, O)
    for u in range(b):
        t[:, u:u + k, :, u, :] = w_ijco                         # column u sees inputs u…u+k−1
    return t.reshape(k * (b + k - 1) * c, b * o)


def row_windows(xp_nhwc, k, b, oh, ow, out=None):
    """Padded input (N, Hp, Wp, C) → rows (N·OH·OW/b, k·(b+k−1)·C), ordered (n, h, block), each
    row the k × (b+k−1) × C window of one block of b output columns (stride 1). One copy, into
    ``out`` if given.

    Within kernel row i a block's window is one contiguous run of (b+k−1)·C floats of the input,
    ``xp[n, h + i, b·t : b·t + b + k − 1, :]``, so the windows are a strided view with axes
    (n, h, t, i, run) and the copy moves whole runs. (The same view built with
    ``sliding_window_view``, or as 6-D windows with runs of C floats, made numpy's copy 1.5x
    slower: teacher conv2 pruned to 28 → 34 filters, batch 256, 2.0 → 1.3 ms per batch.)
    """
    xp_nhwc = np.ascontiguousarray(xp_nhwc)
    n, _, _, c = xp_nhwc.shape
    span = (b + k - 1) * c
    s_n, s_h, s_w, s_c = xp_nhwc.strides
    # read-only view; its last window ends at column b·(OW/b − 1) + b + k − 1 = OW + k − 1 ≤ Wp
    win = as_strided(xp_nhwc, shape=(n, oh, ow // b, k, span),
                     strides=(s_n, s_h, b * s_w, s_h, s_c), writeable=False)
    if out is None:
        out = np.empty((n * oh * (ow // b), k * span), dtype=xp_nhwc.dtype)
    np.copyto(out.reshape(n, oh, ow // b, k, span), win)
    return out


def reused_buffer(work, name, shape, dtype, make):
    """An array of ``shape``: the first shape[0] rows of ``work[name]`` if that one has at least
    as many rows and the same other dimensions and dtype, else a new one made by ``make`` and
    kept there. (A buffer made by np.zeros stays zero wherever nobody writes: a zero border.)"""
    buf = work.get(name)
    if buf is None or buf.dtype != dtype or buf.shape[1:] != shape[1:] or len(buf) < shape[0]:
        buf = work[name] = make(shape, dtype=dtype)
    return buf[:shape[0]]


def banded_product(x_nhwc, k, p, b, mat, chunk, out, work):
    """The stride-1 convolution without bias of x (N, H, W, C) with padding p, as rows · T:
    ``out`` (N·OH·OW/b, b·O) is y in NHWC order, T = ``mat`` = ``banded_weight(W, b)``. Done
    ``chunk`` images at a time, so a chunk's rows are still in cache when the matmul reads them.

    Every output is the same sum of the same products W·x as im2col's, plus products with the
    zeros of T, which are exact zeros for finite x and leave the sum unchanged; only the order of
    the additions differs. (A non-finite input, inf or NaN, also makes NaN the outputs of its
    block whose windows do not contain it: 0·inf is NaN.)

    One padded buffer and one rows buffer serve all chunks, kept in ``work`` (a dict) for the
    next call with as many images or fewer: the zero border is written once, and the buffers stay
    in cache from one chunk to the next.
    """
    n, h, w, c = x_nhwc.shape
    oh, ow = h + 2 * p - k + 1, w + 2 * p - k + 1
    rows_per_image = oh * (ow // b)
    padded = reused_buffer(work, "padded", (chunk, h + 2 * p, w + 2 * p, c), x_nhwc.dtype,
                           np.zeros) if p else None
    rows = reused_buffer(work, "rows", (chunk * rows_per_image, mat.shape[0]), x_nhwc.dtype,
                         np.empty)
    for start in range(0, n, chunk):
        m = min(n, start + chunk) - start
        if p:
            padded[:m, p:p + h, p:p + w] = x_nhwc[start:start + m]
            xp = padded[:m]
        else:
            xp = x_nhwc[start:start + m]
        row_windows(xp, k, b, oh, ow, out=rows[:m * rows_per_image])
        np.matmul(rows[:m * rows_per_image], mat,
                  out=out[start * rows_per_image:(start + m) * rows_per_image])
    return out
