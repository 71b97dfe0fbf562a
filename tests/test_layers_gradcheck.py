"""Every layer's hand-written backward against central differences (float64)."""
import numpy as np
import pytest

from minicompress import nn
from bounds import assert_within, matmul_error_bound
from gradcheck import check_module_grads, numerical_grad, to_float64


@pytest.mark.parametrize("n", [1, 3])
def test_linear(rng, n):
    layer = to_float64(nn.Linear(5, 4, rng=rng))
    check_module_grads(layer, rng.standard_normal((n, 5)), rng)


@pytest.mark.parametrize("c,o,k,s,p,h,w,n", [
    (1, 2, 3, 1, 0, 5, 5, 1),     # batch 1, no padding
    (2, 3, 3, 1, 1, 6, 4, 2),     # padding, non-square
    (2, 3, 3, 2, 1, 7, 6, 2),     # stride 2
    (3, 2, 5, 2, 2, 9, 8, 1),     # big kernel, stride 2, padding 2
    (2, 2, 1, 1, 0, 3, 4, 2),     # 1x1 conv
])
def test_conv2d(rng, c, o, k, s, p, h, w, n):
    layer = to_float64(nn.Conv2d(c, o, k, stride=s, padding=p, rng=rng))
    check_module_grads(layer, rng.standard_normal((n, c, h, w)), rng)


@pytest.mark.parametrize("pool", [nn.MaxPool2d, nn.AvgPool2d])
@pytest.mark.parametrize("k,s,h,w", [(2, None, 6, 4), (3, 2, 7, 8), (2, 1, 5, 3)])
def test_pooling(rng, pool, k, s, h, w):
    # distinct values keep the max away from ties, where it is not differentiable
    x = rng.permutation(2 * 3 * h * w).reshape(2, 3, h, w).astype(np.float64) / 10
    check_module_grads(pool(k, s), x, rng)


def test_relu_and_flatten(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    x[np.abs(x) < 1e-3] = 0.5  # stay away from the kink at 0
    check_module_grads(nn.ReLU(), x, rng)
    check_module_grads(nn.Flatten(), x, rng)


def test_sequential_lenet5_small(rng):
    from minicompress.models import lenet5
    model = to_float64(lenet5(8, rng=rng))
    x = rng.standard_normal((2, 1, 8, 8))
    # 40 random entries of the input and of each parameter (all ~20k would take a minute)
    check_module_grads(model, x, rng, atol=1e-5, sample=40)


def test_cross_entropy_value_and_grad(rng):
    logits = rng.standard_normal((4, 5))
    y = np.array([0, 3, 4, 1])
    loss, grad = nn.cross_entropy(logits, y)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert loss == pytest.approx(-np.log(p[np.arange(4), y]).mean(), rel=1e-12)
    num = numerical_grad(lambda: nn.cross_entropy(logits, y)[0], logits)
    np.testing.assert_allclose(grad, num, atol=1e-8)


def test_cross_entropy_is_stable_for_huge_logits():
    loss, grad = nn.cross_entropy(np.array([[1000.0, 0.0], [0.0, -1000.0]]), np.array([0, 0]))
    assert loss == pytest.approx(0.0, abs=1e-12) and np.all(np.isfinite(grad))


@pytest.mark.parametrize("name", ["lenet300", "lenet5", "teacher"])
def test_backward_without_input_grad_gives_the_same_parameter_grads(rng, name):
    """``Sequential.backward(g, input_grad=False)`` (used by train_step) skips ∂L/∂x of the first
    layer but must leave every parameter gradient exactly as the full backward computes it."""
    from minicompress.models import build
    model = build(name, 8, rng=rng)
    x = rng.standard_normal((3, 1, 8, 8)).astype(np.float32)
    g = rng.standard_normal((3, 10)).astype(np.float32)
    model.zero_grad()
    model(x)
    dx = model.backward(g)
    assert dx.shape == x.shape
    full = {k: p.grad.copy() for k, p in model.named_parameters()}
    model.zero_grad()
    model(x)
    assert model.backward(g, input_grad=False) is None
    for k, p in model.named_parameters():
        np.testing.assert_array_equal(p.grad, full[k], err_msg=k)
    # the flag is only for that call: the next full backward returns ∂L/∂x again
    model(x)
    np.testing.assert_allclose(model.backward(g), dx, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("h,w", [(7, 9), (5, 4)])
def test_maxpool_odd_sizes_and_first_max_wins(rng, h, w):
    """Non-overlapping windows on sizes that do not divide: the last row/column gets no gradient;
    on ties the first position in row-major window order gets it all (PyTorch's rule)."""
    pool = nn.MaxPool2d(2)
    x = rng.permutation(2 * 3 * h * w).reshape(2, 3, h, w).astype(np.float64)
    check_module_grads(pool, x, rng)
    ties = np.zeros((1, 1, 2, 2))
    pool(ties)
    np.testing.assert_array_equal(pool.backward(np.ones((1, 1, 1, 1)))[0, 0], [[1, 0], [0, 0]])
    ties = np.array([[[[0.0, 1.0], [1.0, 1.0]]]])
    pool(ties)
    np.testing.assert_array_equal(pool.backward(np.ones((1, 1, 1, 1)))[0, 0], [[0, 1], [0, 0]])


def test_first_conv_of_one_channel_uses_transposed_im2col_and_matches_general_path(rng):
    """The 1-channel fast path of im2col must equal the general (sliding-window) layout."""
    from minicompress.nn.im2col import im2col
    x = rng.standard_normal((2, 9, 7, 1))
    fast, hw = im2col(x, 3, 2, 1)
    x2 = np.concatenate([x, x], axis=3)  # two channels take the general path
    general, hw2 = im2col(x2, 3, 2, 1)
    assert hw == hw2
    np.testing.assert_array_equal(fast, general[:, ::2])


@pytest.mark.parametrize("kkc,o", [(25, 6), (288, 64)])  # per-image path and one-matmul path
@pytest.mark.parametrize("one_channel", [False, True])
def test_conv_weight_gradient_is_g_transpose_cols(kkc, o, one_channel):
    from minicompress.nn.conv import weight_gradient
    r = np.random.default_rng(0)
    n, p = 5, 12
    if one_channel:   # im2col's 1-channel layout: cols is a transposed view of a contiguous array
        cols = r.standard_normal((kkc, n * p)).astype(np.float32).T
    else:
        cols = r.standard_normal((n * p, kkc)).astype(np.float32)
    g = r.standard_normal((n * p, o)).astype(np.float32)
    expected = g.astype(np.float64).T @ cols.astype(np.float64)
    assert_within(weight_gradient(cols, g, n), expected, matmul_error_bound(g.T, cols), "∂L/∂W")
