"""The integer model's fast forward pass: the steps' integers, bit for bit, in a few fused stages
built once per input shape (:func:`fast_stages`; ``IntegerModel.forward``). What each stage saves,
and why each shortcut is exact, is below.
"""
from __future__ import annotations

import math
import threading

import numpy as np

from ..nn.banded import band_width, banded_weight, row_windows
from ..nn.im2col import im2col, pad_nhwc
from ..nn.pooling import FLAT_COLUMNS_MAX_CHANNELS, max_over_window_columns
from .fixed_point import (clip_into, float32_multiplier, requantize, requantize_centred,
                          requantize_float32)
from .integer_steps import EXACT_FLOAT32, IntFlatten, IntLayer, IntMaxPool, IntReLU


# ---- the fast forward pass ----------------------------------------------------------------------
# The steps' ``run`` methods (the *reference path*, ``IntegerModel.forward_steps``) are written for
# clarity: every layer casts its integer codes to float32 for BLAS, adds the bias, requantises in
# six float64 passes and casts the codes back to uint8. ``IntegerModel.forward`` computes the same
# integers with less work, in a few fused stages built once per input shape (:func:`fast_stages`):
#
# * activations stay float32 *centred codes* c = q − z between layers (exact: |c| < 2^24), so no
#   cast before a GEMM and no "− z_x" pass, and a conv's zero padding is simply c = 0;
# * each weight matrix is stored once as float32 (K, O) in C order, the layout OpenBLAS is
#   fastest with; the bias is added to the exact float32 accumulators;
# * requantisation is three float32 passes, clip(rint(acc·m)), when m = fl32(M) or a float32
#   neighbour gives the exact codes for every |acc| ≤ B — checked once, exactly, at both sides
#   of each of the ≤ q_hi − q_lo accumulators where the float32 codes step up (both sides are
#   non-decreasing in acc; :func:`float32_multiplier`). Where round(M·2^n) has no such m,
#   ``convert`` moves M₀ by at most M₀·2^(−18) to the nearest one that has
#   (:func:`m0_for_float32`): all 16 hidden layers of the 8-bit PTQ lenet300/lenet5 variants in
#   benchmarks/int_speed.py (before, lenet300's first layer had none). Otherwise (a model saved
#   before, a per-channel layer where some channel finds none) five passes through float64, one
#   dtype each (:func:`requantize_centred`), where,
#   when no accumulator can be an exact tie (:meth:`_LayerStage.ties_possible`), ``rint``
#   replaces the "+ ½, floor" pair;
# * a max-pool right after a layer is taken on the accumulators *before* the bias and the
#   requantisation (both non-decreasing in acc, so they commute with a max): a 2x2 pool leaves
#   a quarter of the values to requantise;
# * convolutions run a chunk of images at a time (:class:`_ConvStage`, as the float Conv2d's
#   eval mode does), so im2col, GEMM, pool, bias and requantisation all find the chunk in cache;
#   a stride-1 conv with few filters is a banded matmul where the float Conv2d uses one
#   (``nn.banded.band_width``), and a max-pool over few channels is taken the float MaxPool2d's
#   way; another one-channel conv is computed as channel planes (:class:`_PlaneConvStage`),
#   whose max-pool runs along image rows;
# * Flatten of an NHWC image is a plain reshape: the next Linear's weight columns are permuted
#   once, from the float model's (C, H, W) order to (H, W, C);
# * the input is quantised straight into a zero-bordered buffer when the first layer is a padded
#   conv, its clip is skipped when the batch's min and max need none (two comparisons with
#   thresholds found at build; a batch too small to pay for two reductions is always clipped),
#   and every intermediate array is reused from call to call (:class:`Buffers`);
# * at batch 1 the time goes to per-call overhead: clip bounds and multipliers are 0-d arrays
#   (cheaper operands than NumPy scalars), products go through ``np.dot`` and clips through the
#   clip ufunc (both with less Python around them), and the stage cache is checked by list
#   identity.


class Buffers:
    """Arrays a stage reuses from one call to the next, one set per thread (two threads running
    the same model must not share them), kept for the latest input size. A fresh 1 MB temporary
    costs page faults on every call; a reused one does not."""

    def __init__(self):
        self._local = threading.local()

    def get(self, size, make):
        """The arrays ``make()`` returned for this ``size`` (made again when the size changes)."""
        local = self._local
        if getattr(local, "size", None) != size:
            local.arrays, local.size = make(), size
        return local.arrays


def gemm(a, b, out):
    """a · b into ``out`` (2-D, C-contiguous, of the product's dtype) with ``np.dot``: the same
    BLAS call as ``np.matmul``, but 0.7–2 µs less per call (measured here at batch 1 on lenet300's
    three layers: 15.2 / 2.8 / 1.4 µs against 17.3 / 3.5 / 2.1), which counts where the layers
    are small. At batch 64 and 256 the two take the same time."""
    return np.dot(a, b, out=out)


def max_pool_nhwc(a, k, s, out, rows=None):
    """k×k, stride s max-pool of an (N, H, W, C) array into ``out`` (N, OH, OW, C, contiguous):
    one ``np.maximum`` per window offset, each over whole strided views. ``rows``, a flat array
    of at least half a's size, holds the intermediate maxima if given."""
    n, oh, ow, c = out.shape
    if k == s and a.shape[1] == k * oh and a.shape[2] == k * ow and c <= FLAT_COLUMNS_MAX_CHANNELS:
        # few channels: the float MaxPool2d's eval order (nn/pooling.py) — across window rows on
        # whole image rows, then across columns on the flat array (no runs of C floats)
        win = a.reshape(n, oh, k, ow, k, c)
        row_best = np.empty((n, oh, ow, k, c), a.dtype) if rows is None \
            else _view(rows, (n, oh, ow, k, c))
        return max_over_window_columns(_max_of([win[:, :, i] for i in range(k)], row_best), out)
    return _max_of([a[:, i:i + s * (oh - 1) + 1:s, j:j + s * (ow - 1) + 1:s]
                    for i in range(k) for j in range(k)], out)


def max_pool_planes(a, k, s, rows, out):
    """k×k, stride s max-pool over the last two axes of a (..., H, W) array into ``out``
    (..., OH, OW), through ``rows`` (..., OH, W): across the window's rows first, on whole image
    rows (long contiguous runs), then across the columns of what is left — the float
    MaxPool2d's eval-mode order (nn/pooling.py). A max can be taken in any order."""
    oh, ow = out.shape[-2:]
    _max_of([a[..., i:i + s * (oh - 1) + 1:s, :] for i in range(k)], rows)
    return _max_of([rows[..., j:j + s * (ow - 1) + 1:s] for j in range(k)], out)


def _max_of(views, out):
    """The elementwise maximum of same-shaped views, into ``out``."""
    if len(views) == 1:
        np.copyto(out, views[0])
        return out
    np.maximum(views[0], views[1], out=out)
    for v in views[2:]:
        np.maximum(out, v, out=out)
    return out


def planes_im2col(x, k, s, out):
    """(N, Hp, Wp) padded image planes → ``out`` (k·k, N, OH, OW): for each kernel offset (i, j),
    in the order of the weight columns, the images shifted by it, one contiguous block. This is
    im2col transposed, as nn/im2col.py builds it for one channel (k·k block copies instead of
    gathering 1-float runs per window)."""
    oh, ow = out.shape[2:]
    for offset in range(k * k):
        i, j = divmod(offset, k)
        out[offset] = x[:, i:i + s * (oh - 1) + 1:s, j:j + s * (ow - 1) + 1:s]
    return out


def _view(buf, shape):
    """The first prod(shape) elements of the flat array ``buf``, as a C-contiguous array of
    ``shape`` (the last chunk of a batch is smaller than the others)."""
    return buf[:math.prod(shape)].reshape(shape)


class _QuantizeStage:
    """x → centred input codes ``clip(rint(x/Δ), q_lo − z, q_hi − z)`` in float32: (N, D), or
    NHWC (N, H + 2p, W + 2p, C) with a zero border p when the first layer is a conv with padding
    p (the border is written once, when the buffer is made)."""

    def __init__(self, step, pad):
        self.delta, self.pad = step.delta, pad
        # operands as 0-d arrays: a NumPy scalar operand costs ~0.3 µs more per call (small batches)
        self.delta_0d = np.array(step.delta, np.float32)
        self.lo, self.hi = step.q_lo - step.zero, step.q_hi - step.zero
        self.lo_0d, self.hi_0d = np.array(self.lo, np.float32), np.array(self.hi, np.float32)
        self.x_lo, self.x_hi = self._thresholds()
        self.x_lo_0d, self.x_hi_0d = np.array(self.x_lo, np.float32), np.array(self.x_hi, np.float32)
        # clipping x to [x_lo, x_hi] gives the same codes as clipping the codes when x_lo's code
        # is lo and x_hi's is hi (always, unless a threshold is ±the largest float32), and x/Δ
        # then cannot overflow (no warning for an x near the largest float32)
        self.clip_x = self._code(self.x_lo) == self.lo and self._code(self.x_hi) == self.hi
        self.buffers = Buffers()

    def __call__(self, x, x_range):
        buf, out, scratch = self.buffers.get(x.shape, lambda: self._buffer(x.shape))
        codes = out if scratch is None else scratch
        if x_range is not None and self.in_range(*x_range):
            np.divide(x, self.delta_0d, out=codes)
        elif self.clip_x:                                         # x_range None: not known
            clip_into(x, self.x_lo_0d, self.x_hi_0d, codes)
            np.divide(codes, self.delta_0d, out=codes)
        else:
            np.divide(x, self.delta_0d, out=codes)
            # before rounding: lo and hi are integers, so clip(rint(v)) = rint(clip(v))
            clip_into(codes, self.lo_0d, self.hi_0d)
        np.rint(codes, out=out)           # with a scratch array, rounded into the buffer
        return buf

    def _code(self, x):
        """rint(x/Δ) in float32 arithmetic, for one number."""
        return np.rint(np.float32(x) / self.delta)

    def _buffer(self, shape):
        """The output array, the view of it the codes go to, and a scratch array or None: for
        images (N, C, H, W) an NCHW view of the NHWC interior of a zero-bordered array. Its rows
        are W floats long (unless p = 0 and C = 1), which makes a pass over it ~3x slower than
        over contiguous memory, so x/Δ is computed in a contiguous scratch array, and only the
        rounding writes into the view."""
        if len(shape) != 4:
            buf = np.empty(shape, np.float32)
            return buf, buf, None
        n, c, h, w = shape
        p = self.pad
        buf = np.zeros((n, h + 2 * p, w + 2 * p, c), np.float32)
        out = buf[:, p:p + h, p:p + w, :].transpose(0, 3, 1, 2)
        return buf, out, None if out.flags.c_contiguous else np.empty(shape, np.float32)

    def in_range(self, x_min, x_max):
        """Whether no code of the batch needs clipping: x_lo ≤ min x and max x ≤ x_hi (two
        comparisons; the float32 arithmetic was done once, in :meth:`_thresholds`)."""
        return self.x_lo <= x_min and x_max <= self.x_hi

    def _thresholds(self):
        """(x_lo, x_hi): the smallest float32 x with rint(x/Δ) ≥ lo and the largest with
        rint(x/Δ) ≤ hi, in float32 arithmetic. rint(x/Δ) is non-decreasing in x, so a batch
        needs no clip exactly when its min and max lie within them. Found by stepping from
        (lo − ½)·Δ and (hi + ½)·Δ to the neighbouring float32 numbers (a few ulps at most)."""
        code = self._code
        top, inf = np.float32(np.finfo(np.float32).max), np.float32(np.inf)
        x_hi = np.float32(min((self.hi + 0.5) * float(self.delta), float(top)))
        while code(x_hi) > self.hi:
            x_hi = np.nextafter(x_hi, -inf)
        while x_hi < top and code(np.nextafter(x_hi, inf)) <= self.hi:
            x_hi = np.nextafter(x_hi, inf)
        x_lo = np.float32(max((self.lo - 0.5) * float(self.delta), -float(top)))
        while code(x_lo) < self.lo:
            x_lo = np.nextafter(x_lo, inf)
        while x_lo > -top and code(np.nextafter(x_lo, -inf)) >= self.lo:
            x_lo = np.nextafter(x_lo, -inf)
        return float(x_lo), float(x_hi)


class _LayerStage:
    """One IntLayer, and the max-pool that follows it if any: GEMM on centred codes, pool,
    bias, then requantise (→ centred codes) or scale (→ logits)."""

    def __init__(self, layer, shape, pool=None, prepadded=False, chw=None):
        self.layer, self.pool, self.buffers = layer, pool, Buffers()
        self.conv = layer.kind == "conv2d"
        self.k = layer.q_w.shape[2] if self.conv else None
        self.padding = 0 if prepadded else layer.padding
        w = layer.w_mat
        if chw is not None:
            # the input is a flattened NHWC image: reorder the columns from (C, H, W) to (H, W, C)
            c, h, ww = chw
            w = w.reshape(len(w), c, h, ww).transpose(0, 2, 3, 1).reshape(len(w), -1)
        # (K, O) in C order: OpenBLAS multiplies by it 10–20 % faster than by W.T, the float
        # layer's F-ordered view (measured here; the sums are exact in any order)
        self.w = np.ascontiguousarray(w.T, dtype=layer.exact_dtype)
        self.exact32 = layer.exact_dtype == np.float32
        self.q_b = layer.q_b.astype(layer.exact_dtype)                 # exact: |q_b| ≤ B
        self.shape = self._out_shape(shape)
        o = layer.out
        self.logits = "out_scale" in o
        if self.logits:
            self.scale = o["out_scale"]
            return
        z = o["out_zero"]
        # clip bounds as 0-d float32 arrays, the codes' dtype (a NumPy scalar operand costs
        # ~0.3 µs more per call, which counts at batch 1)
        self.lo = np.array(o["out_lo"] - z, np.float32)
        self.hi = np.array(o["out_hi"] - z, np.float32)
        m = np.ldexp(o["m0"].astype(np.float64), -o["shift"])          # M = M₀·2^(−n), exact
        self.m = np.array(m[0]) if np.all(m == m[0]) else m            # 0-d or (O,) float64
        self.ties = self.ties_possible()
        self.m32 = self.float32_multipliers() if self.exact32 else None

    def float32_multipliers(self):
        """M as float32 (0-d, or (O,) per channel) for :func:`requantize_float32`, found by
        :func:`float32_multiplier` for each distinct (M₀, n); None if one has none."""
        o = self.layer.out
        pairs = np.stack([o["m0"], o["shift"]], axis=1)
        found = {}
        for m0, n in np.unique(pairs, axis=0):
            found[m0, n] = float32_multiplier(m0, n, self.layer.bound, int(self.lo), int(self.hi))
            if found[m0, n] is None:
                return None
        m32 = np.array([found[m0, n] for m0, n in pairs], np.float32)
        return np.array(m32[0]) if np.all(m32 == m32[0]) else m32

    def ties_possible(self):
        """Whether some |acc| ≤ B can make acc·M an exact tie k + ½, i.e. acc·M₀ ≡ 2^(n−1)
        (mod 2^n). That needs acc·M₀ to have exactly n − 1 trailing zero bits, so |acc| at
        least 2^(n−1−t), t the trailing zero bits of M₀: impossible when B < 2^(n−1−t)."""
        m0, n = self.layer.out["m0"], self.layer.out["shift"]
        live = m0 > 0                                   # M₀ = 0 (allowed in a file): acc·M₀ = 0
        t = np.log2(m0[live] & -m0[live])                               # m0 > 0: exact
        return bool(np.any(self.layer.bound >= 2.0 ** (n[live] - 1 - t)))

    def _out_shape(self, shape):
        o = self.layer.q_w.shape[0]
        if not self.conv:
            return (o,)
        h, w, _ = shape
        k, s, p = self.k, self.layer.stride, self.layer.padding
        oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        if self.pool is not None:
            pk, ps = self.pool.kernel_size, self.pool.stride
            oh, ow = (oh - pk) // ps + 1, (ow - pk) // ps + 1
        return (oh, ow, o)

    def _buffers(self, rows, n):
        """acc (rows, O) in the GEMM's dtype, the pooled acc, the output codes, the float64
        work array of the requantisation."""
        o, dt = self.w.shape[1], self.w.dtype
        out_shape = (n,) + self.shape
        return (np.empty((rows, o), dt),
                np.empty(out_shape, dt) if self.pool is not None else None,
                np.empty(out_shape, np.float32), np.empty(out_shape, np.float64))

    def accumulate(self, a):
        """Σ q_w·(q_x − z_x) without the bias, max-pooled if a pool follows: (N, O) or
        (N, OH, OW, O), exact, and the stage's buffers. Pooling before the bias and the
        requantisation is exact: both are non-decreasing in acc, channel by channel, so they
        commute with a max."""
        n = len(a)
        if self.conv:
            cols, (oh, ow) = im2col(a, self.k, self.layer.stride, self.padding)
        else:
            cols = a.reshape(n, -1)
        bufs = self.buffers.get(n, lambda: self._buffers(len(cols), n))
        acc = gemm(cols, self.w, bufs[0])
        if self.conv:
            acc = acc.reshape(n, oh, ow, -1)
        if self.pool is not None:
            acc = max_pool_nhwc(acc, self.pool.kernel_size, self.pool.stride, bufs[1])
        return acc, bufs

    def __call__(self, a):
        acc, (_, _, out, work) = self.accumulate(a)
        acc += self.q_b                                                # exact: |acc| ≤ B
        if self.logits:
            return np.multiply(acc, self.scale, dtype=np.float32)
        return self.requantize(acc, out, work)

    def requantize(self, acc, out, work):
        """Centred output codes of the accumulators acc (bias included) into ``out``: float32
        when a float32 multiplier was proved exact, else through float64 (``work``)."""
        if self.m32 is not None:
            return requantize_float32(acc, self.m32, self.lo, self.hi, out)
        if self.exact32:
            return requantize_centred(acc, self.m, self.lo, self.hi, out, work, self.ties)
        # B ≥ 2^24: float64 accumulators (exact below 2^53) and the int64 requantisation
        o = self.layer.out
        codes = requantize(acc.astype(np.int64), o["m0"], o["shift"], 0, int(self.lo), int(self.hi))
        np.copyto(out, codes, casting="unsafe")                        # |codes| < 2^24: exact
        return out


# The float Conv2d's eval mode convolves a few images at a time, so that a chunk's im2col matrix
# is still in cache when the GEMM reads it (nn/conv.py). A conv stage does the same, and carries
# the chunk on through the pool, the bias and the requantisation while it is in cache: its window
# matrix is at most this many floats (1 MB, the float Conv2d's own limit). Smaller chunks keep
# more in cache but cost Python per chunk, and the best size depends on the machine: whole
# lenet5 forward passes at batch 256, one BLAS thread, 15 interleaved rounds, integer time for
# 2^18 against 2^17 floats — on a 2 MB-L2 machine dense 1.02, half the filters removed 1.02; on
# a 1 MB-L2 AMD EPYC (SkylakeX kernel), three runs, dense 0.91, 1.00, 0.94 and filters removed
# 0.97, 0.95, 0.98; 2^19 and 2^20 were slower there.
CHUNK_FLOATS = 1 << 18


class _ConvStage(_LayerStage):
    """A requantising conv layer with a float32 GEMM, and the max-pool after it if any, a chunk
    of images at a time: im2col, GEMM, pool, bias, requantise — into centred codes
    (N, OH', OW', O), NHWC."""

    def __init__(self, layer, shape, pool=None, prepadded=False, banded=True):
        super().__init__(layer, shape, pool, prepadded)
        h, w, c = shape
        k, s, p = self.k, layer.stride, layer.padding
        self.conv_hw = oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        o = layer.q_w.shape[0]
        # a stride-1 layer with few filters as a banded matmul, where the float Conv2d's eval
        # mode uses one (nn/conv.py, band_width): b output pixels per row, so b·O columns. Exact:
        # the extra products are code · 0 = 0, so every partial sum is still bounded by B.
        self.band = band_width(ow, o, c, k) if banded and s == 1 else 1
        if self.band > 1:
            self.w = banded_weight(layer.q_w.astype(np.float32), self.band)
        self.chunk = max(1, CHUNK_FLOATS // (oh * ow * len(self.w) // self.band))
        self._lay_out_per_channel(self.per_channel_layout)

    def per_channel_layout(self, v):
        """A per-channel vector (O,) repeated along one output image row (OW'·O values), so that
        adding or multiplying it runs along whole rows: against (O,) numpy's inner loop would be
        O values long (3–64 here), and its overhead the cost."""
        return np.tile(v, self.shape[1])

    def _lay_out_per_channel(self, layout):
        """Apply ``layout`` to the bias and to the multipliers that are per channel."""
        self.q_b = layout(self.q_b)
        if self.logits:
            return
        if np.ndim(self.m):
            self.m = layout(self.m)
        if self.m32 is not None and np.ndim(self.m32):
            self.m32 = layout(self.m32)

    def __call__(self, a):
        n = len(a)
        out, work = self.buffers.get(n, lambda: self._chunk_buffers(n))
        for start in range(0, n, self.chunk):
            stop = min(n, start + self.chunk)
            acc = self.accumulate_chunk(a[start:stop], work)
            self.bias_requantize(acc, self.out_view(out[start:stop]), work)
        return out

    def bias_requantize(self, acc, out, work):
        """acc (n, OH', OW', O) + bias → centred codes into ``out``, one image row at a time
        (see ``per_channel_layout``)."""
        rows = acc.reshape(-1, len(self.q_b))                          # (n·OH', OW'·O)
        rows += self.q_b                                               # exact: |acc| ≤ B
        self.requantize(rows, out.reshape(rows.shape), _view(work["requant"], rows.shape))

    def _chunk_buffers(self, n):
        """The output codes (N, OH', OW', O) and flat work arrays big enough for one chunk."""
        c = min(n, self.chunk)
        (oh, ow), o = self.conv_hw, self.layer.q_w.shape[0]
        k2 = self.k * self.k * self.layer.q_w.shape[1]
        pooled = c * math.prod(self.shape)
        work = {"cols": np.empty(c * oh * ow * k2, np.float32),
                "acc": np.empty(c * oh * ow * o, np.float32),
                "rows": np.empty(c * oh * ow * o, np.float32),        # the pool's row maxima
                "pool": np.empty(pooled, np.float32), "requant": np.empty(pooled, np.float64)}
        return np.empty((n,) + self.shape, np.float32), work

    def accumulate_chunk(self, x, work):
        """Σ q_w·(q_x − z_x) for the images x (n, H, W, C), max-pooled: (n, OH', OW', O)."""
        n, (oh, ow), o = len(x), self.conv_hw, self.layer.q_w.shape[0]
        if self.band > 1:
            # no more floats than im2col's k·k·C per pixel: (b + k − 1)/b ≤ k
            rows = _view(work["cols"], (n * oh * (ow // self.band), len(self.w)))
            cols = row_windows(pad_nhwc(x, self.padding), self.k, self.band, oh, ow, out=rows)
        else:
            cols, _ = im2col(x, self.k, self.layer.stride, self.padding)
        acc = gemm(cols, self.w, _view(work["acc"], (len(cols), self.w.shape[1])))
        acc = acc.reshape(n, oh, ow, o)                   # (rows, b·O) is NHWC as well
        if self.pool is None:
            return acc
        return max_pool_nhwc(acc, self.pool.kernel_size, self.pool.stride,
                             _view(work["pool"], (n,) + self.shape), work["rows"])

    @staticmethod
    def out_view(out):
        """Where the requantised chunk goes: the chunk's rows of the NHWC output."""
        return out


class _PlaneConvStage(_ConvStage):
    """A conv stage for a one-channel input (a first layer on grey images), computed channel by
    channel: acc = W (O, k·k) · colsᵀ (k·k, n·OH·OW) gives each output channel as a plane
    (O, n, OH, OW). The pool then runs along image rows of OW contiguous floats instead of
    O-float runs, and the bias along whole planes; the requantised codes are written into the
    NHWC output through a transposed view (the next layer reads NHWC)."""

    def __init__(self, layer, shape, pool=None, prepadded=False):
        super().__init__(layer, shape, pool, prepadded, banded=False)
        self.w = np.ascontiguousarray(layer.w_mat, dtype=np.float32)     # (O, k·k), exact

    @staticmethod
    def per_channel_layout(v):
        """A per-channel vector (O,) as (O, 1, 1, 1): one value per plane."""
        return v.reshape(-1, 1, 1, 1)

    def bias_requantize(self, acc, out, work):
        """Planes acc (O, n, OH', OW') + bias → codes into ``out``, a planes view."""
        acc += self.q_b                                                # exact: |acc| ≤ B
        self.requantize(acc, out, _view(work["requant"], acc.shape))

    def accumulate_chunk(self, x, work):
        """Σ q_w·(q_x − z_x) for the images x (n, H, W, 1), max-pooled: planes (O, n, OH', OW')."""
        if self.padding:
            x = np.pad(x, ((0, 0), (self.padding,) * 2, (self.padding,) * 2, (0, 0)))
        n, (oh, ow), o, k = len(x), self.conv_hw, self.w.shape[0], self.k
        cols = _view(work["cols"], (k * k, n, oh, ow))
        planes_im2col(x[..., 0], k, self.layer.stride, cols)
        acc = _view(work["acc"], (o, n, oh, ow))
        gemm(self.w, cols.reshape(k * k, -1), acc.reshape(o, -1))
        if self.pool is None:
            return acc
        ph, pw = self.shape[:2]
        rows, out = _view(work["rows"], (o, n, ph, ow)), _view(work["pool"], (o, n, ph, pw))
        return max_pool_planes(acc, self.pool.kernel_size, self.pool.stride, rows, out)

    @staticmethod
    def out_view(out):
        """The chunk's rows of the NHWC output, seen as planes (O, n, OH', OW')."""
        return out.transpose(3, 0, 1, 2)


class _ReLUStage:
    """ReLU on centred codes: max(q, z_relu) − z = max(c, z_relu − z)."""

    def __init__(self, threshold):
        self.threshold = np.float32(threshold)

    def __call__(self, a):
        return np.maximum(a, self.threshold, out=a)


class _PoolStage:
    """A max-pool that does not follow a layer directly, on centred codes."""

    def __init__(self, step, shape):
        self.k, self.s = step.kernel_size, step.stride
        h, w, c = shape
        self.shape = ((h - self.k) // self.s + 1, (w - self.k) // self.s + 1, c)
        self.buffers = Buffers()

    def __call__(self, a):
        out = self.buffers.get(len(a), lambda: np.empty((len(a),) + self.shape, np.float32))
        return max_pool_nhwc(a, self.k, self.s, out)


def fast_stages(steps, sample_shape):
    """The fused stages computing ``forward_steps`` for inputs of per-sample shape
    ``sample_shape``, or None when the fast path does not apply (then forward runs the steps).

    It applies when every layer uses the BLAS path (``gemm="auto"``), the model ends with the
    logits layer, and each layer's input grid is the grid the codes arriving there are on (as
    ``convert`` builds it), so that the layer's bound B holds for them.
    """
    first, last = steps[0], steps[-1]
    if (any(isinstance(s, IntLayer) and s.gemm != "auto" for s in steps)
            or not isinstance(last, IntLayer) or "out_scale" not in last.out):
        return None
    zero, lo, hi = first.zero, first.q_lo, first.q_hi
    if max(abs(lo - zero), abs(hi - zero)) >= EXACT_FLOAT32:
        return None
    shape = tuple(sample_shape)
    if len(shape) == 3:
        shape = shape[1:] + shape[:1]                      # (C, H, W) → NHWC (H, W, C)
    elif len(shape) != 1:
        return None
    pad = steps[1].padding if len(steps) > 1 and isinstance(steps[1], IntLayer) else 0
    if pad and len(shape) != 3:
        return None
    stages, chw, i = [_QuantizeStage(first, pad)], None, 1
    while i < len(steps):
        s = steps[i]
        if isinstance(s, IntLayer):
            if not _fits(s, shape, (zero, lo, hi)) or ("out_scale" in s.out and s is not last):
                return None
            conv, requantising = s.kind == "conv2d", "m0" in s.out
            pool = steps[i + 1] if (conv and requantising and i + 1 < len(steps)
                                    and isinstance(steps[i + 1], IntMaxPool)) else None
            prepadded = i == 1 and pad > 0
            if conv and requantising and s.exact_dtype == np.float32:
                stage = _ConvStage(s, shape, pool, prepadded)
                if s.q_w.shape[1] == 1 and stage.band == 1:
                    # one input channel and no band (a small kernel, or stride > 1): planes
                    stage = _PlaneConvStage(s, shape, pool, prepadded)
            else:
                stage = _LayerStage(s, shape, pool, prepadded, chw=chw)
            stages.append(stage)
            shape, chw = stage.shape, None
            if requantising:
                zero, lo, hi = s.out["out_zero"], s.out["out_lo"], s.out["out_hi"]
                if max(abs(lo - zero), abs(hi - zero)) >= EXACT_FLOAT32:
                    return None                            # centred codes must be float32 numbers
            i += 2 if pool is not None else 1
            continue
        if isinstance(s, IntReLU):
            stages.append(_ReLUStage(s.zero - zero))
            lo, hi = max(lo, s.zero), max(hi, s.zero)
        elif isinstance(s, IntMaxPool):
            if len(shape) != 3:
                return None
            stages.append(_PoolStage(s, shape))
            shape = stages[-1].shape
        elif isinstance(s, IntFlatten):
            if len(shape) == 3:
                # no stage: the next Linear reads its input as (N, H·W·C), as it lies in memory
                # (``a.reshape(n, -1)``), with its columns permuted to match
                chw = (shape[2], shape[0], shape[1])
                shape = (int(np.prod(shape)),)
        else:
            return None
        i += 1
    return stages


def _fits(layer, shape, codes):
    """Whether ``layer`` takes per-sample inputs of ``shape`` (flat, or NHWC for a conv) whose
    codes are on its input grid: zero point z_x, range inside [in_lo, in_hi] (its bound B
    assumes that range)."""
    zero, lo, hi = codes
    if layer.in_zero != zero or lo < layer.in_lo or hi > layer.in_hi:
        return False
    if layer.kind == "linear":
        return len(shape) == 1 and shape[0] == layer.w_mat.shape[1]
    return len(shape) == 3 and shape[2] == layer.q_w.shape[1]
