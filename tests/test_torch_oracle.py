"""PyTorch as an oracle: our Adam, layers, loss and checkpoints against torch (skipped without it)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
tnn = torch.nn

from minicompress import models, nn  # noqa: E402
from minicompress.nn import Parameter  # noqa: E402
from minicompress.optim import Adam  # noqa: E402
from gradcheck import to_float64  # noqa: E402


def t64(a):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def test_adam_200_random_steps_equal_torch(rng):
    shapes = [(7, 5), (5,), (3, 2, 3, 3)]
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    ours = [Parameter(a.copy()) for a in init]
    theirs = [torch.tensor(a, requires_grad=True) for a in init]
    kw = dict(lr=3e-3, betas=(0.9, 0.999), eps=1e-8)
    opt, topt = Adam(ours, **kw), torch.optim.Adam(theirs, **kw)
    worst = 0.0
    for step in range(200):
        # gradients of very different scales, so ε and bias correction both matter
        scale = 10.0 ** rng.uniform(-4, 1)
        for p, tp in zip(ours, theirs):
            g = (scale * rng.standard_normal(p.shape)).astype(np.float32)
            p.grad[...] = g
            tp.grad = torch.from_numpy(g.copy())
        opt.step()
        topt.step()
        for p, tp in zip(ours, theirs):
            worst = max(worst, float(np.abs(p.data - tp.detach().numpy()).max()))
    assert worst <= 1e-6, f"largest difference from torch.optim.Adam over 200 steps: {worst:.3g}"
    # the parameters really moved (so equality is not trivial)
    assert max(np.abs(p.data - a).max() for p, a in zip(ours, init)) > 0.1


def _compare_layer(ours, theirs, x, rng, atol=1e-10):
    """Forward and backward (input and parameter gradients) in float64 against torch."""
    to_float64(ours)
    theirs = theirs.double()
    for name, p in ours.named_parameters():
        dict(theirs.named_parameters())[name].data = torch.from_numpy(p.data.copy())
    y = ours.forward(x)
    xt = t64(x)
    yt = theirs(xt)
    np.testing.assert_allclose(y, yt.detach().numpy(), atol=atol, rtol=1e-9)
    r = rng.standard_normal(y.shape)
    ours.zero_grad()
    dx = ours.backward(r)
    yt.backward(torch.from_numpy(r))
    np.testing.assert_allclose(dx, xt.grad.numpy(), atol=atol, rtol=1e-9)
    for name, tp in theirs.named_parameters():
        np.testing.assert_allclose(dict(ours.named_parameters())[name].grad, tp.grad.numpy(),
                                   atol=atol, rtol=1e-9, err_msg=name)


def test_linear_vs_torch(rng):
    _compare_layer(nn.Linear(7, 4, rng=rng), tnn.Linear(7, 4), rng.standard_normal((5, 7)), rng)


@pytest.mark.parametrize("c,o,k,s,p,h,w,n", [
    (1, 6, 5, 1, 2, 12, 12, 3),   # lenet5's first layer (1 channel: transposed im2col)
    (6, 16, 5, 1, 0, 10, 9, 2),   # lenet5's second layer, non-square
    (3, 4, 3, 2, 1, 9, 8, 2),     # stride 2 with padding
    (2, 3, 4, 3, 2, 11, 7, 1),    # stride 3, even kernel, batch 1
])
def test_conv2d_vs_torch(rng, c, o, k, s, p, h, w, n):
    _compare_layer(nn.Conv2d(c, o, k, stride=s, padding=p, rng=rng),
                   tnn.Conv2d(c, o, k, stride=s, padding=p), rng.standard_normal((n, c, h, w)), rng)


@pytest.mark.parametrize("k,s,h,w", [(2, None, 8, 6), (2, None, 7, 9), (3, 2, 9, 8), (3, 3, 10, 7)])
@pytest.mark.parametrize("pool", ["max", "avg"])
def test_pooling_vs_torch_with_ties(rng, pool, k, s, h, w):
    # small integers after a ReLU: many ties (zeros), where the first maximum must win as in torch
    x = np.maximum(rng.integers(-3, 3, size=(2, 3, h, w)), 0).astype(np.float64)
    ours = (nn.MaxPool2d if pool == "max" else nn.AvgPool2d)(k, s)
    theirs = (tnn.MaxPool2d if pool == "max" else tnn.AvgPool2d)(k, s)
    _compare_layer(ours, theirs, x, rng)


def test_cross_entropy_vs_torch(rng):
    logits = 5 * rng.standard_normal((9, 10))
    y = rng.integers(0, 10, 9)
    loss, grad = nn.cross_entropy(logits, y)
    lt = t64(logits)
    tl = torch.nn.functional.cross_entropy(lt, torch.from_numpy(y))
    tl.backward()
    assert loss == pytest.approx(tl.item(), rel=1e-12)
    np.testing.assert_allclose(grad, lt.grad.numpy(), atol=1e-12)


def _torch_lenet5():
    from collections import OrderedDict
    return tnn.Sequential(OrderedDict([
        ("conv1", tnn.Conv2d(1, 6, 5, padding=2)), ("relu1", tnn.ReLU()), ("pool1", tnn.MaxPool2d(2)),
        ("conv2", tnn.Conv2d(6, 16, 5)), ("relu2", tnn.ReLU()), ("pool2", tnn.MaxPool2d(2)),
        ("flatten", tnn.Flatten()), ("fc1", tnn.Linear(400, 120)), ("relu3", tnn.ReLU()),
        ("fc2", tnn.Linear(120, 84)), ("relu4", tnn.ReLU()), ("fc3", tnn.Linear(84, 10))]))


def test_lenet5_state_dict_from_torch_gives_same_predictions(rng, tmp_path):
    torch.manual_seed(0)
    net = _torch_lenet5()
    from minicompress.io import load_model, save_npz_atomic
    save_npz_atomic(tmp_path / "torch_lenet5.npz", {k: v.numpy() for k, v in net.state_dict().items()})
    ours = load_model(models.lenet5(rng=rng), tmp_path / "torch_lenet5.npz")
    # the reverse: our weights load back into torch unchanged
    net2 = _torch_lenet5()
    net2.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    for k, v in net2.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), net.state_dict()[k].numpy(), err_msg=k)
    # the same function: compared in float64 (the same float32 weights, widened exactly), where
    # torch's convolution and ours agree to ~1e-15 — in float32 they differ by a kernel-dependent
    # ~1e-6 (oneDNN vs im2col + BLAS), which no fixed tolerance bounds on every CPU
    x = rng.standard_normal((64, 1, 28, 28))
    with torch.no_grad():
        expected = net.double()(torch.from_numpy(x)).numpy()
        again = net2.double()(torch.from_numpy(x)).numpy()
    got = to_float64(ours)(x)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(got.argmax(1), expected.argmax(1))
    np.testing.assert_allclose(again, got, rtol=0, atol=1e-10)
