"""Filter pruning, document §3.1.2: gates, filter scores, learned filter masks, physical removal."""
import copy

import numpy as np
import pytest

from gradcheck import numerical_grad, to_float64
from minicompress import metrics, models, nn, optim, prune
from minicompress.train import TrainConfig, evaluate, fit


def f64(model):
    """A float64 copy: two networks that should compute the same function are compared in
    float64, where a different summation order (fewer channels, another BLAS kernel) changes a
    logit by ~1e-15 instead of float32's ~1e-6 — so 1e-9 is a bound for every machine, and a
    wrong channel or column moves a logit by far more."""
    return to_float64(copy.deepcopy(model))


@pytest.fixture(scope="module")
def trained_lenet5(digits):
    (x, y), _ = digits
    m = models.lenet5(8, rng=np.random.default_rng(0))
    fit(m, optim.Adam(m.parameters(), 1e-3), (x, y), TrainConfig(4, np.random.default_rng(1)))
    return m


def test_filter_norm_scores(rng):
    w = rng.standard_normal((4, 3, 2, 2))
    flat = np.abs(w.reshape(4, -1))
    np.testing.assert_allclose(prune.filter_norm_scores(w, "l1"), flat.sum(1))
    np.testing.assert_allclose(prune.filter_norm_scores(w, "l2"), np.sqrt((w.reshape(4, -1) ** 2).sum(1)))
    np.testing.assert_allclose(prune.filter_norm_scores(w, "median"), np.median(flat, 1))


def test_gate_gradients(rng):
    gate = prune.ChannelGate(3, learned=True)
    gate.mask.data = np.array([1.0, 0.0, 1.0])
    x = rng.standard_normal((2, 3, 4, 4))
    r = rng.standard_normal((2, 3, 4, 4))
    gate.forward(x)
    dx = gate.backward(r)
    np.testing.assert_allclose(dx, numerical_grad(lambda: float((gate.forward(x) * r).sum()), x),
                               atol=1e-7)
    # straight-through: ∂L/∂s = ∂L/∂m, the derivative w.r.t. a *continuous* mask
    np.testing.assert_allclose(gate.scores.grad,
                               numerical_grad(lambda: float((gate.forward(x) * r).sum()), gate.mask.data),
                               atol=1e-7)


def test_taylor_filter_score_is_first_order_loss_change(trained_lenet5, digits):
    (x, y), _ = digits
    model = f64(trained_lenet5)  # float64: the by-hand sum below agrees to ~1e-15
    xb, yb = x[:128], y[:128]
    scores = prune.filter_scores(model, "taylor", ["conv2"], data=(xb, yb), num_batches=1,
                                 batch_size=128, rng=np.random.default_rng(0))
    assert "conv2_gate" not in model.names()  # temporary gate removed
    # by hand: a = conv2 output, g = ∂L/∂a
    model.forward(xb)
    a = None
    h = xb
    for name, m in model.named_children():
        h = m.forward(h)
        if name == "conv2":
            a = h.copy()
    _, g = nn.cross_entropy(h, yb)
    names = model.names()
    for name in reversed(names[names.index("conv2") + 1:]):
        g = model[name].backward(g)
    want = np.abs((a * g).sum(axis=(0, 2, 3)))
    np.testing.assert_allclose(scores["conv2"], want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("score", prune.FILTER_SCORES)
def test_shrunk_model_equals_masked_model(trained_lenet5, digits, score):
    (x, y), (xt, _) = digits
    original = copy.deepcopy(trained_lenet5)
    model = copy.deepcopy(trained_lenet5)
    # conv→conv, conv→pool→flatten→linear, linear→linear
    prune.filter_prune(model, {"conv1": 0.5, "conv2": 0.5, "fc1": 0.5, "fc2": 0.25}, score,
                       data=(x, y), rng=np.random.default_rng(0))
    small = prune.shrink(model)
    np.testing.assert_allclose(f64(small)(xt), f64(model)(xt), rtol=1e-9, atol=1e-9)
    assert not np.allclose(small(xt), original(xt), atol=1e-3)  # the pruning did change the net
    assert [small[n].weight.shape for n in ("conv1", "conv2", "fc1", "fc2", "fc3")] == [
        (3, 1, 3, 3), (8, 3, 3, 3), (60, 32), (63, 60), (10, 63)]
    assert "conv1_gate" in model.names() and "conv1_gate" not in small.names()  # model untouched
    assert metrics.count_parameters(small) < metrics.count_parameters(original)


def test_flatten_block_mapping(rng):
    """Removing channel c of a conv must drop exactly the H·W columns [c·HW, (c+1)·HW) of fc."""
    model = nn.Sequential(conv=nn.Conv2d(1, 3, 3, padding=1, rng=rng), relu=nn.ReLU(),
                          pool=nn.MaxPool2d(2), flat=nn.Flatten(), fc=nn.Linear(3 * 4 * 4, 5, rng=rng))
    small = prune.remove_filters(model, "conv", [0, 2])
    np.testing.assert_array_equal(small.fc.weight.data,
                                  np.concatenate([model.fc.weight.data[:, :16],
                                                  model.fc.weight.data[:, 32:]], axis=1))
    x = rng.standard_normal((4, 1, 8, 8)).astype(np.float32)
    gated = copy.deepcopy(model)
    gate = prune.attach_gates(gated, ["conv"])["conv"]
    gate.mask.data[1] = 0
    np.testing.assert_allclose(f64(small)(x), f64(gated)(x), rtol=1e-9, atol=1e-9)


def test_inplace_and_refusals(trained_lenet5):
    model = copy.deepcopy(trained_lenet5)
    with pytest.raises(ValueError, match="all 6 filters"):
        prune.remove_filters(model, "conv1", np.zeros(6, bool))
    with pytest.raises(ValueError, match="would remove all"):
        prune.filter_prune(model, {"conv1": 0.95})
    with pytest.raises(ValueError, match="last weighted layer"):
        prune.filter_prune(model, {"fc3": 0.5})
    with pytest.raises(ValueError, match="cannot be filter-pruned"):
        prune.attach_gates(model, ["relu1"])
    with pytest.raises(ValueError, match="sparsity|ratio"):
        prune.filter_prune(model, {"conv1": 1.0})
    same = prune.remove_filters(model, "conv2", [0, 1, 2], inplace=True)
    assert same is model and model.conv2.out_channels == 3 and model.fc1.in_features == 3 * 2 * 2
    masked = copy.deepcopy(trained_lenet5)
    prune.prune_by_score(masked, 0.5)
    with pytest.raises(ValueError, match="weight transforms"):
        prune.remove_filters(masked, "conv1", [0, 1])


def test_learned_filter_prune(trained_lenet5, digits):
    (x, y), (xt, yt) = digits
    model = copy.deepcopy(trained_lenet5)
    prune.learned_filter_prune(model, (x, y), prune.FilterPruning({"conv1": 0.5, "conv2": 0.5}),
                               TrainConfig(4, np.random.default_rng(0)))
    gs = prune.gates(model)
    assert int(gs["conv1"].keep.sum()) == 3 and int(gs["conv2"].keep.sum()) == 8
    assert not any(hasattr(g, "scores") for g in gs.values())
    small = prune.shrink(model)
    np.testing.assert_allclose(f64(small)(xt), f64(model)(xt), rtol=1e-9, atol=1e-9)
    dense_macs = metrics.macs(trained_lenet5, (1, 8, 8))[0]
    assert metrics.macs(small, (1, 8, 8))[0] < 0.75 * dense_macs
    oneshot = copy.deepcopy(trained_lenet5)
    prune.filter_prune(oneshot, {"conv1": 0.5, "conv2": 0.5}, "l1")
    # Adam-learned filters with fine-tuning beat the same L1 choice without it, by a margin
    assert evaluate(small, xt, yt)["accuracy"] > evaluate(oneshot, xt, yt)["accuracy"] + 0.05
