"""The eval-mode fast paths of Conv2d, ReLU and MaxPool2d compute what the training paths compute.

Conv2d in eval mode convolves the batch a chunk of images at a time (cols kept in cache), or, for
a stride-1 layer with few filters, as a banded matmul (``banded_weight``); ReLU
skips its mask, MaxPool2d takes the maximum rows first and keeps no index. Compared in float64
against the training-mode forward of the same layer, with a bound derived from the sums involved
(a maximum is exact, so pooling and ReLU must agree bit for bit); and a backward pass after an
eval-mode forward must give the training-mode gradients.
"""
import numpy as np
import pytest

from minicompress import models, nn
from minicompress.nn import conv as conv_module
from minicompress.nn.im2col import im2col
from bounds import EPS64, assert_within, matmul_error_bound
from gradcheck import to_float64


def _both_modes(layer, x):
    layer.train()
    y_train = layer(x)
    layer.eval()
    y_eval = layer(x)
    layer.train()
    return y_train, y_eval


def _conv_bound(layer, x):
    """Entry-wise bound on |eval − train| for the conv: each output is a dot product of length
    k·k·C in float64 summed in some order, plus the bias; both paths are within the bound of the
    exact value, so within twice it of each other. The banded path also adds products with zero
    weights: they are exact zeros and adding them rounds nothing, so its sum is still a sum of
    the same k·k·C terms in some order and the same bound holds."""
    k, p, s = layer.kernel_size, layer.padding, layer.stride
    x_nhwc = np.abs(x).transpose(0, 2, 3, 1)
    cols, (oh, ow) = im2col(x_nhwc, k, s, p)
    w_mat = np.abs(layer.weight.data).transpose(0, 2, 3, 1).reshape(layer.out_channels, -1)
    bound = 2 * matmul_error_bound(cols, w_mat.T, eps=EPS64) + 4 * EPS64 * np.abs(layer.bias.data)
    return bound.reshape(x.shape[0], oh, ow, -1).transpose(0, 3, 1, 2)


# the band width b of every eval-mode convolution: 1 (plain im2col), the rule, the narrowest
# band b > 1 (the smallest divisor of OW above 1) and the widest, b = OW
_RULE = conv_module.band_width
BANDS = pytest.mark.parametrize("band", [
    lambda ow, o, c, k: 1, _RULE,
    lambda ow, o, c, k: min(d for d in range(2, ow + 1) if ow % d == 0) if ow > 1 else 1,
    lambda ow, o, c, k: ow,
], ids=["im2col", "rule", "narrowest", "widest"])


@BANDS
@pytest.mark.parametrize("c,o,k,s,p,h,n,chunk_floats", [
    (1, 3, 5, 1, 2, 12, 7, 1000),     # 1-channel path, several chunks, a short last chunk
    (3, 4, 3, 1, 1, 9, 5, 300),       # chunk of one image (300 floats < one image's cols)
    (2, 5, 3, 2, 0, 10, 4, 1 << 18),  # stride 2 (never banded), everything in one chunk
    (6, 16, 5, 1, 0, 14, 3, 1 << 18), # lenet5's conv2 shape: OW = 10, blocks of b = 10
    (2, 3, 3, 1, 0, 13, 2, 1000),     # OW = 11 is prime: one block of 11, or 1
    (1, 17, 3, 1, 1, 6, 2, 1 << 18),  # one channel, 17 filters: im2col under any rule
])
def test_conv_eval_equals_train(rng, monkeypatch, c, o, k, s, p, h, n, chunk_floats,
                                band):
    monkeypatch.setattr(conv_module, "_INFERENCE_CHUNK_FLOATS", chunk_floats)
    monkeypatch.setattr(conv_module, "band_width", band)
    layer = to_float64(nn.Conv2d(c, o, k, stride=s, padding=p, rng=rng))
    x = rng.standard_normal((n, c, h, h))
    y_train, y_eval = _both_modes(layer, x)
    assert y_eval.shape == y_train.shape and y_eval.dtype == np.float64
    assert_within(y_eval, y_train, _conv_bound(layer, x), "conv eval vs train")


@BANDS
def test_conv_eval_chunks_cover_every_image(rng, monkeypatch, band):
    # a chunk boundary bug (a skipped or repeated image) would leave garbage or a copy; one image
    # per chunk makes every image its own matmul
    monkeypatch.setattr(conv_module, "_INFERENCE_CHUNK_FLOATS", 1)
    monkeypatch.setattr(conv_module, "band_width", band)
    layer = to_float64(nn.Conv2d(2, 3, 3, padding=1, rng=rng))
    x = rng.standard_normal((5, 2, 6, 6))
    layer.eval()
    whole = layer(x)
    each = np.concatenate([layer(x[i:i + 1]) for i in range(5)])
    np.testing.assert_array_equal(whole, each)


def test_banded_weight_is_the_definition(rng):
    # T[(i, v, c), (u, o)] = W[o, c, i, v − u] inside the band, 0 outside: checked entry by entry
    o, c, k, b = 3, 2, 3, 4
    w = rng.standard_normal((o, c, k, k))
    t = conv_module.banded_weight(w, b).reshape(k, b + k - 1, c, b, o)
    for i, v, ci, u, oi in np.ndindex(t.shape):
        want = w[oi, ci, i, v - u] if 0 <= v - u < k else 0.0
        assert t[i, v, ci, u, oi] == want, (i, v, ci, u, oi)


@pytest.mark.parametrize("ow,o,c,k,b", [
    (28, 6, 1, 5, 7), (28, 3, 1, 5, 14), (10, 16, 6, 5, 5), (10, 10, 3, 5, 5),  # lenet5
    (14, 64, 32, 3, 1), (14, 34, 28, 3, 2), (28, 32, 1, 3, 1), (28, 28, 1, 3, 1),  # teacher
    (28, 16, 1, 3, 1), (14, 16, 8, 3, 1),  # 3×3: one channel, or b = 7 (3x the MACs): im2col
    (11, 3, 2, 5, 1), (11, 3, 1, 5, 11),   # prime OW: the whole row, if one channel allows it
])
def test_band_width_rule(ow, o, c, k, b):
    assert conv_module.band_width(ow, o, c, k) == b


@pytest.mark.parametrize("k,s,h,w", [(2, None, 6, 4), (2, None, 7, 5), (3, 2, 7, 8), (2, 1, 5, 3)])
def test_maxpool_eval_equals_train_exactly(rng, k, s, h, w):
    x = rng.standard_normal((2, 3, h, w)).astype(np.float32)
    y_train, y_eval = _both_modes(nn.MaxPool2d(k, s), x)
    np.testing.assert_array_equal(y_eval, y_train)


@pytest.mark.parametrize("c", [1, 3, 16, 17])          # either side of the flat-columns limit
@pytest.mark.parametrize("k,h,w", [(2, 8, 6), (3, 9, 7), (1, 3, 4)])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])    # an NHWC-backed view, as conv returns
def test_maxpool_eval_windows_equal_train_exactly(rng, c, k, h, w, layout):
    x = rng.standard_normal((3, c, h, w)).astype(np.float32)
    x[0, :, :2, :2] = 1.0                                # ties inside a window
    if layout == "nhwc":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    y_train, y_eval = _both_modes(nn.MaxPool2d(k), x)
    np.testing.assert_array_equal(y_eval, y_train)


def test_relu_eval_equals_train_exactly(rng):
    x = rng.standard_normal((3, 4, 5, 5)).astype(np.float32)
    y_train, y_eval = _both_modes(nn.ReLU(), x)
    np.testing.assert_array_equal(y_eval, y_train)


@pytest.mark.parametrize("layer_fn,shape", [
    (lambda rng: nn.Conv2d(2, 3, 3, padding=1, rng=rng), (2, 2, 6, 6)),
    (lambda rng: nn.MaxPool2d(2), (2, 3, 6, 6)),
    (lambda rng: nn.MaxPool2d(3, 2), (2, 3, 7, 7)),
    (lambda rng: nn.ReLU(), (2, 3, 4, 4)),
])
def test_backward_after_eval_forward_equals_training(rng, layer_fn, shape):
    """A training step may run with the model in eval mode: backward then redoes what it needs."""
    x = rng.permutation(int(np.prod(shape))).reshape(shape) / 7.0 - 3.0  # distinct: no ties
    results = []
    for training in (True, False):
        layer = layer_fn(np.random.default_rng(0))
        if hasattr(layer, "weight"):
            to_float64(layer)
        layer.train(training)
        y = layer(x)
        g = np.random.default_rng(1).standard_normal(y.shape)
        dx = layer.backward(g)
        grads = [p.grad.copy() for p in layer.parameters()]
        results.append((y, dx, grads))
    (y_t, dx_t, g_t), (y_e, dx_e, g_e) = results
    np.testing.assert_allclose(y_e, y_t, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(dx_e, dx_t)  # backward ran the training forward itself
    for a, b in zip(g_e, g_t):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("net", ["lenet5", "teacher"])
def test_whole_network_eval_equals_train(rng, net):
    model = to_float64(models.build(net, 28, rng=rng))
    x = rng.standard_normal((3, 1, 28, 28))
    y_train, y_eval = _both_modes(model, x)
    # each layer's float64 sums of K ≤ 3136 terms are off by ≤ K·eps64·Σ|terms| ≈ 7e-13·Σ|terms|
    # in either path, Σ|terms| being at most ~10² times the largest output here; 1e-9 of the
    # largest logit leaves a margin of ~10 over four layers, and a wrong pixel or image in a
    # chunk would be off by O(1)
    np.testing.assert_allclose(y_eval, y_train, rtol=0, atol=1e-9 * np.abs(y_train).max())
