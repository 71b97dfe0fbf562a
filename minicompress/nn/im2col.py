"""im2col / col2im: turning a convolution into one matrix product.

A k×k convolution looks at every k×k window of the (padded) input. ``im2col`` copies all windows
into the rows of one matrix, so the whole convolution becomes a single BLAS matmul; ``col2im`` is
its adjoint, adding each window's gradient back to the pixels it came from.

Memory layout. Internally we work *channels-last* (N, H, W, C): a window row then reads
k·k contiguous runs of C floats, and the matmul output (N·OH·OW, O) already *is* an NHWC image.
Layers hand each other NCHW-shaped *views* of this memory (``.transpose(0, 3, 1, 2)`` copies
nothing), so the public convention stays NCHW like PyTorch while no array is transposed in memory.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def pad_nhwc(x_nhwc, padding: int):
    """Zero-pad H and W of an (N, H, W, C) array."""
    if padding == 0:
        return x_nhwc
    n, h, w, c = x_nhwc.shape
    xp = np.zeros((n, h + 2 * padding, w + 2 * padding, c), dtype=x_nhwc.dtype)
    xp[:, padding:padding + h, padding:padding + w, :] = x_nhwc
    return xp


def im2col(x_nhwc, k: int, stride: int, padding: int):
    """(N, H, W, C) → cols (N·OH·OW, k·k·C); row = one window, ordered (kh, kw, C).

    For a 1-channel input (the first layer of every net here) the copy is done *transposed*:
    k·k shifted copies of the image, each one contiguous block, and ``cols`` is returned as a
    transposed view of that (k·k, N·OH·OW) array. BLAS reads a transposed operand at no extra
    cost, so only the copy changes — and it is ~5x faster than gathering 1-float runs per window.
    """
    n, h, w, c = x_nhwc.shape
    oh, ow = output_size(h, k, stride, padding), output_size(w, k, stride, padding)
    xp = pad_nhwc(x_nhwc, padding)
    if c == 1:
        cols_t = np.empty((k * k, n, oh, ow), dtype=x_nhwc.dtype)
        for offset in range(k * k):
            cols_t[offset] = xp[:, _window_rows(offset // k, stride, oh),
                                _window_rows(offset % k, stride, ow), 0]
        return cols_t.reshape(k * k, n * oh * ow).T, (oh, ow)
    # windows: (N, OH, OW, C, kh, kw) view of xp, no copy yet
    win = sliding_window_view(xp, (k, k), axis=(1, 2))[:, ::stride, ::stride][:, :oh, :ow]
    # the single copy of the forward pass: rows (n, oh, ow), columns (kh, kw, c)
    cols = win.transpose(0, 1, 2, 4, 5, 3).reshape(n * oh * ow, k * k * c)
    return cols, (oh, ow)


def _window_rows(i: int, stride: int, out: int) -> slice:
    """The input rows (or columns) that kernel offset ``i`` touches: i, i+s, ..., i+s·(out−1)."""
    return slice(i, i + stride * (out - 1) + 1, stride)


def col2im(dcols_per_offset, x_shape_nhwc, k: int, stride: int, padding: int, out_hw):
    """Adjoint of im2col.

    ``dcols_per_offset`` has shape (k·k, N·OH·OW, C): the gradient of each kernel offset as one
    contiguous block (the backward matmul produces it in this order), so the scatter-add is k·k
    adds of whole blocks instead of many tiny strided ones.
    """
    n, h, w, c = x_shape_nhwc
    oh, ow = out_hw
    dxp = np.zeros((n, h + 2 * padding, w + 2 * padding, c), dtype=dcols_per_offset.dtype)
    for offset in range(k * k):
        i, j = divmod(offset, k)
        dxp[:, _window_rows(i, stride, oh), _window_rows(j, stride, ow), :] += (
            dcols_per_offset[offset].reshape(n, oh, ow, c)
        )
    return dxp[:, padding:padding + h, padding:padding + w, :]
