"""Neuron pruning of an MLP's hidden units (the filter method on Linear layers): mask gradient,
physical removal equal to the masked model, learned masks, refusals."""
import copy

import numpy as np
import pytest

from bounds import EPS64, assert_within
from gradcheck import numerical_grad, to_float64
from minicompress import metrics, models, nn, optim, prune
from minicompress.train import TrainConfig, evaluate, fit


def mlp(rng, hidden=(12, 8), d=10):
    """A small float64 MLP d → h1 → h2 → 3 with ReLU."""
    h1, h2 = hidden
    return to_float64(nn.Sequential(
        fc1=nn.Linear(d, h1, rng=rng), relu1=nn.ReLU(),
        fc2=nn.Linear(h1, h2, rng=rng), relu2=nn.ReLU(),
        fc3=nn.Linear(h2, 3, rng=rng)))


def test_neuron_layers_are_the_hidden_linears(rng):
    assert prune.neuron_layers(mlp(rng)) == ["fc1", "fc2"]
    assert prune.neuron_layers(models.teacher(rng=rng)) == ["fc1"]  # convs are filters, fc2 out
    assert prune.neuron_layers(models.lenet300(rng=rng)) == ["fc1", "fc2"]


def test_mask_gradient_matches_central_differences(rng):
    """∂L/∂m_j = Σ_n a_j ∂L/∂a'_j: the learned score's (straight-through) gradient, checked with a
    continuous mask where L(m) is differentiable."""
    model = mlp(rng)
    gate = prune.attach_gates(model, ["fc1"], learned=True)["fc1"]
    gate.mask.data = rng.uniform(0.2, 1.0, gate.channels)
    x, r = rng.standard_normal((5, 10)), rng.standard_normal((5, 3))

    def loss():
        return float((model(x) * r).sum())   # L = Σ r ⊙ logits: ∂L/∂logits = r

    model.zero_grad()
    model(x)
    model.backward(r)
    num = numerical_grad(loss, gate.mask.data)
    np.testing.assert_allclose(gate.scores.grad, num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("score", ["l1", "l2", "median"])
def test_removal_equals_masked_model(rng, score):
    model = mlp(rng)
    prune.neuron_prune(model, {"fc1": 0.5, "fc2": 0.25}, score)
    gated_kept = {n: int(g.keep.sum()) for n, g in prune.gates(model).items()}
    small = prune.shrink(model)
    assert [small[n].weight.data.shape for n in ("fc1", "fc2", "fc3")] == \
        [(6, 10), (6, 6), (3, 6)]
    assert gated_kept == {"fc1": 6, "fc2": 6}
    x = rng.standard_normal((7, 10))
    want = model(x)
    # the shrunk net sums fewer terms (the masked ones were exact zeros): each logit differs by
    # float64 rounding of sums of ≤ 12 terms per layer; 64·eps64·Σ|...| with Σ|...| bounded by
    # the logits' magnitude times the number of terms is far below a wrong column (O(1))
    bound = 64 * 12 * EPS64 * (1 + np.abs(want))
    assert_within(small(x), want, bound, "shrunk vs masked")
    assert metrics.macs(small, (10,))[0] == 10 * 6 + 6 * 6 + 6 * 3


def test_remove_neurons_drops_row_bias_and_next_column(rng):
    model = mlp(rng)
    keep = np.array([0, 3, 4, 11])
    small = prune.remove_neurons(model, "fc1", keep)
    np.testing.assert_array_equal(small.fc1.weight.data, model.fc1.weight.data[keep].astype(np.float32))
    np.testing.assert_array_equal(small.fc1.bias.data, model.fc1.bias.data[keep].astype(np.float32))
    np.testing.assert_array_equal(small.fc2.weight.data,
                                  model.fc2.weight.data[:, keep].astype(np.float32))
    assert model.fc1.weight.data.shape == (12, 10)  # a copy: the original is untouched
    # the same function as zeroing the dropped units (in float64)
    masked = copy.deepcopy(model)
    drop = np.setdiff1d(np.arange(12), keep)
    masked.fc2.weight.data[:, drop] = 0.0
    small64 = to_float64(prune.remove_neurons(model, "fc1", keep))
    small64.fc1.weight.data[...] = model.fc1.weight.data[keep]
    small64.fc1.bias.data[...] = model.fc1.bias.data[keep]
    small64.fc2.weight.data[...] = model.fc2.weight.data[:, keep]
    x = rng.standard_normal((4, 10))
    want = masked(x)
    assert_within(small64(x), want, 64 * 12 * EPS64 * (1 + np.abs(want)), "removed vs zeroed")


def test_learned_neuron_prune_on_digits(digits):
    (x, y), (xt, yt) = digits
    model = models.lenet300(8, rng=np.random.default_rng(0))
    fit(model, optim.Adam(model.parameters(), 1e-3), (x, y), TrainConfig(3, np.random.default_rng(1)))
    dense_acc = evaluate(model, xt, yt)["accuracy"]
    prune.learned_neuron_prune(model, (x, y), prune.NeuronPruning({"fc1": 0.8, "fc2": 0.5}),
                               TrainConfig(2, np.random.default_rng(2)))
    assert {n: int(g.keep.sum()) for n, g in prune.gates(model).items()} == {"fc1": 60, "fc2": 50}
    assert all(not hasattr(g, "scores") for g in prune.gates(model).values())  # frozen
    small = prune.shrink(model)
    assert small.fc1.weight.data.shape == (60, 64) and small.fc2.weight.data.shape == (50, 60)
    np.testing.assert_array_equal(small(xt).argmax(1), model(xt).argmax(1))
    # 80 % of the first layer's units gone, yet Adam keeps the net useful (dense: ~95 %)
    assert evaluate(small, xt, yt)["accuracy"] > dense_acc - 0.1


def test_bad_input_errors(rng):
    model = mlp(rng)
    with pytest.raises(ValueError, match=r"'fc3' \(Linear\) has no removable hidden units; "
                                         r"valid layers are \['fc1', 'fc2'\]"):
        prune.remove_neurons(model, "fc3", [0])
    with pytest.raises(ValueError, match=r"'conv1' \(Conv2d\) has no removable hidden units"):
        prune.neuron_prune(models.teacher(rng=rng), {"conv1": 0.5})
    with pytest.raises(ValueError, match=r"'nope' \(no such layer\)"):
        prune.learned_neuron_prune(model, (None, None), prune.NeuronPruning({"nope": 0.5}),
                                   TrainConfig(1, rng))
    with pytest.raises(ValueError, match="keep has 3 entries but 'fc1' has 12 outputs"):
        prune.remove_neurons(model, "fc1", np.ones(3, bool))
    with pytest.raises(ValueError, match="refusing to remove all 12 filters"):
        prune.remove_neurons(model, "fc1", np.zeros(12, bool))
    with pytest.raises(ValueError, match=r"keep indices must be in \[0, 12\)"):
        prune.remove_neurons(model, "fc1", [0, 12])
    with pytest.raises(ValueError, match="would remove all of them"):
        prune.neuron_prune(model, {"fc1": 0.99})
    with pytest.raises(ValueError, match="ratio of 'fc2'"):
        prune.neuron_prune(model, {"fc2": 1.5})
    with pytest.raises(TypeError, match="needs a Sequential model"):
        prune.neuron_layers(nn.Linear(3, 2, rng=rng))

