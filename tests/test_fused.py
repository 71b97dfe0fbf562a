"""Eval mode runs Conv2d → ReLU → MaxPool2d as one pass, a chunk of images at a time, with the
bias and ReLU after the pooling (``nn/fused.py``). It must give what the three layers give.

* With integer inputs and weights every sum is exact, so the fused pass and the three layers in
  training mode must agree bit for bit: a bias added twice or to the wrong channel, a ReLU or a
  pool in the wrong place, a skipped or repeated image all show.
* With real numbers, compared in float64 against the training-mode layers, each output may differ
  by the rounding of its own sum only: the bound is derived below.
* ``Sequential`` uses it only in eval mode and without captured features, and a backward pass
  after a fused forward gives the training-mode gradients.
"""
import numpy as np
import pytest

from minicompress import models, nn
from minicompress.nn import conv as conv_module
from minicompress.nn import fused
from minicompress.nn.im2col import im2col
from bounds import EPS64, assert_within
from gradcheck import to_float64


def _unfused_train(conv, pool, x):
    for layer in (conv, pool):
        layer.train()
    return pool(np.maximum(conv(x), 0))


def _integer_layer(rng, c, o, k, p, bias=True):
    conv = to_float64(nn.Conv2d(c, o, k, padding=p, bias=bias, rng=rng))
    conv.weight.data = rng.integers(-3, 4, conv.weight.data.shape).astype(np.float64)
    if bias:
        conv.bias.data = rng.integers(-20, 21, o).astype(np.float64)
    return conv


@pytest.mark.parametrize("band", ["rule", "im2col", "widest"])
@pytest.mark.parametrize("c,o,k,p,h,n,chunk_floats,bias", [
    (1, 3, 5, 2, 12, 7, 300, True),      # one channel; 300 floats: one image per chunk
    (3, 4, 3, 1, 10, 5, 1000, True),     # several images per chunk, a short last chunk
    (2, 6, 3, 0, 9, 4, 1 << 18, True),   # odd conv output (7x7): the pool drops the last row
    (4, 5, 3, 1, 8, 3, 1 << 18, False),  # no bias
])
def test_fused_equals_layers_exactly_on_integers(rng, monkeypatch, c, o, k, p, h, n,
                                                 chunk_floats, bias, band):
    monkeypatch.setattr(fused, "_FUSED_CHUNK_FLOATS", chunk_floats)
    if band == "im2col":
        monkeypatch.setattr(conv_module, "band_width", lambda ow, o, c, k: 1)
    elif band == "widest":
        monkeypatch.setattr(conv_module, "band_width", lambda ow, o, c, k: ow)
    conv, pool = _integer_layer(rng, c, o, k, p, bias), nn.MaxPool2d(2)
    x = rng.integers(-5, 6, (n, c, h, h)).astype(np.float64)
    want = _unfused_train(conv, pool, x)
    conv.eval(), pool.eval()
    got = fused.conv_relu_pool(conv, pool, x)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def _fused_bound(conv, x):
    """Entry-wise bound on |fused − unfused| in float64. An output of the convolution is a sum of
    K = k·k·C products and the bias; summed in any order, each path is within
    γ_{K+1}(Σ|products| + |b|) ≤ (K+1)·eps·(Σ|products| + |b|) of the exact value, so the two
    are within twice that of each other. The fused path pools the sums without the bias and
    adds it after, but max_j fl(z_j + b) = fl(max_j z_j + b) exactly (rounding is monotone),
    and a maximum and ReLU move no entry by more than the largest change among their inputs:
    the bound of a pooled output is the largest bound in its window."""
    k, p = conv.kernel_size, conv.padding
    cols, (oh, ow) = im2col(np.abs(x).transpose(0, 2, 3, 1), k, 1, p)
    w_mat = np.abs(conv.weight.data).transpose(0, 2, 3, 1).reshape(conv.out_channels, -1)
    terms = cols @ w_mat.T + np.abs(conv.bias.data)
    bound = 2 * (cols.shape[1] + 1) * EPS64 * terms
    bound = bound.reshape(x.shape[0], oh, ow, -1).transpose(0, 3, 1, 2)
    pool = nn.MaxPool2d(2)
    pool.eval()
    return pool(bound)


@pytest.mark.parametrize("c,o,k,p,h,n,chunk_floats", [
    (1, 6, 5, 2, 28, 9, 1 << 14),        # lenet5's first block, several chunks
    (6, 16, 5, 0, 14, 5, 1 << 18),       # lenet5's second block
    (1, 7, 3, 1, 12, 6, 500),            # the teacher's first block, one image per chunk
])
def test_fused_equals_layers_within_rounding(rng, monkeypatch, c, o, k, p, h, n, chunk_floats):
    monkeypatch.setattr(fused, "_FUSED_CHUNK_FLOATS", chunk_floats)
    conv, pool = to_float64(nn.Conv2d(c, o, k, padding=p, rng=rng)), nn.MaxPool2d(2)
    x = rng.standard_normal((n, c, h, h))
    want = _unfused_train(conv, pool, x)
    conv.eval(), pool.eval()
    got = fused.conv_relu_pool(conv, pool, x)
    assert_within(got, want, _fused_bound(conv, x), "fused conv-relu-pool vs layers")
    assert np.all(got >= 0)


def test_fused_keeps_the_layers_dtype(rng):
    conv, pool = nn.Conv2d(2, 3, 3, padding=1, rng=rng), nn.MaxPool2d(2)
    conv.eval(), pool.eval()
    x = rng.standard_normal((2, 2, 6, 6)).astype(np.float32)
    got = fused.conv_relu_pool(conv, pool, x)
    want = pool(np.maximum(conv(x), 0))
    assert got.dtype == want.dtype == np.float32 and got.shape == want.shape


def test_fused_empty_batch_and_bad_input(rng):
    conv, pool = nn.Conv2d(2, 3, 3, padding=1, rng=rng), nn.MaxPool2d(2)
    conv.eval(), pool.eval()
    assert fused.conv_relu_pool(conv, pool, np.zeros((0, 2, 6, 6), np.float32)).shape == (0, 3, 3, 3)
    with pytest.raises(ValueError, match="Conv2d"):
        fused.conv_relu_pool(conv, pool, np.zeros((1, 5, 6, 6), np.float32))


class _CountingConv(nn.Conv2d):
    pass


def test_sequential_fuses_only_in_eval_without_capture(rng, monkeypatch):
    calls = []
    original = fused.conv_relu_pool
    monkeypatch.setattr(conv_module, "conv_relu_pool",
                        lambda *a: calls.append(1) or original(*a))
    model = models.build("lenet5", 28, rng=rng)
    x = rng.standard_normal((2, 1, 28, 28)).astype(np.float32)
    model.train()
    model(x)
    assert calls == []
    model.eval()
    model(x)
    assert len(calls) == 2                       # both Conv2d → ReLU → MaxPool2d blocks
    model(x, capture=("relu1",))
    assert len(calls) == 2 and set(model.features) == {"relu1"}


@pytest.mark.parametrize("children", [
    lambda rng: [("c", _CountingConv(1, 2, 3, rng=rng)), ("r", nn.ReLU()), ("p", nn.MaxPool2d(2))],
    lambda rng: [("c", nn.Conv2d(1, 2, 3, rng=rng)), ("r", nn.ReLU()), ("p", nn.MaxPool2d(3, 2))],
    lambda rng: [("c", nn.Conv2d(1, 2, 3, rng=rng)), ("p", nn.MaxPool2d(2)), ("r", nn.ReLU())],
])
def test_not_fused_where_it_does_not_apply(rng, monkeypatch, children):
    # a subclass, overlapping pool windows, or another order: the layers run one by one
    monkeypatch.setattr(conv_module, "conv_relu_pool", lambda *a: pytest.fail("fused"))
    model = nn.Sequential(**dict(children(rng)))
    model.eval()
    x = rng.standard_normal((2, 1, 9, 9)).astype(np.float32)
    model(x)


def _forward_backward(training, fuse, monkeypatch):
    with monkeypatch.context() as patch:
        if not fuse:
            patch.setattr(nn.Conv2d, "eval_fusion", lambda self, following: 0)
        model = to_float64(models.build("lenet5", 28, rng=np.random.default_rng(0)))
        model.train(training)
        x = np.random.default_rng(1).standard_normal((2, 1, 28, 28))
        y = model(x)
        g = np.random.default_rng(2).standard_normal(y.shape)
        dx = model.backward(g)
    return y, dx, [p.grad.copy() for p in model.parameters()]


def test_backward_after_fused_forward_equals_unfused(monkeypatch):
    """A training step taken in eval mode: backward redoes the forward pass layer by layer, so
    it ends in the state the unfused eval-mode layers leave, bit for bit, and within rounding
    of the training-mode forward (whose sums are in another order)."""
    y_f, dx_f, g_f = _forward_backward(False, True, monkeypatch)
    y_u, dx_u, g_u = _forward_backward(False, False, monkeypatch)
    y_t, dx_t, g_t = _forward_backward(True, True, monkeypatch)
    np.testing.assert_array_equal(dx_f, dx_u)
    for a, b, c in zip(g_f, g_u, g_t):
        np.testing.assert_array_equal(a, b)
        # float64 sums of at most 400 terms: ≤ 400·eps64 of Σ|terms| ≈ 1e-13 of it
        np.testing.assert_allclose(a, c, rtol=0, atol=1e-9 * np.abs(c).max())
    np.testing.assert_allclose(y_f, y_t, rtol=0, atol=1e-9 * np.abs(y_t).max())
    np.testing.assert_allclose(dx_f, dx_t, rtol=0, atol=1e-9 * np.abs(dx_t).max())
