"""Mixed precision under a byte budget: bytes as the artifact packs them, the exact knapsack
(DP over bytes) against a hand example where greedy fails and against exhaustive search,
bad budgets, and the sensitivity on a small net."""
import numpy as np
import pytest

from minicompress import models, nn, optim
from minicompress.quantize import mixed, pack_bits
from minicompress.train import TrainConfig, fit

# Three layers of 16, 8 and 4 weights at 2 or 4 bits: bytes ⌈n·b/8⌉.
SIZES = {"A": {2: 4, 4: 8}, "B": {2: 2, 4: 4}, "C": {2: 1, 4: 2}}
COSTS = {"A": {2: 1.0, 4: 0.0}, "B": {2: 0.4, 4: 0.0}, "C": {2: 0.9, 4: 0.0}}


def test_bytes_are_the_packed_bytes_of_the_artifact(rng):
    for n in (1, 7, 25, 150, 2400):
        for b in mixed.BITS:
            codes = rng.integers(-(2 ** (b - 1)) + 1, 2 ** (b - 1), n)
            assert mixed.packed_bytes(n, b) == pack_bits(codes, b).nbytes
    model = models.lenet300(28, rng=rng)
    sizes = mixed.layer_bytes(model)
    assert sizes["fc1"] == {2: 58800, 3: 88200, 4: 117600, 8: 235200}
    assert mixed.uniform_bytes(sizes, 3) == 88200 + 11250 + 375


def test_hand_example_where_greedy_fails():
    # Budget 10 B, all at 4 bits takes 14 B: 4 B must go.
    # Greedy (cost per byte saved): B 0.4/2 = 0.2 first → 12 B, still over; then A 1.0/4 → 8 B,
    # cost 1.4. Exact: only A at 2 bits → 4 + 4 + 2 = 10 B, cost 1.0.
    assert mixed.greedy_bits(COSTS, SIZES, 10) == {"A": 2, "B": 2, "C": 4}
    best = mixed.knapsack_bits(COSTS, SIZES, 10)
    assert best == {"A": 2, "B": 4, "C": 4}
    assert mixed.total(COSTS, best) == 1.0 and mixed.total(SIZES, best) == 10
    # more room: nothing needs to go; less: B and C must go as well
    assert mixed.knapsack_bits(COSTS, SIZES, 14) == {"A": 4, "B": 4, "C": 4}
    assert mixed.knapsack_bits(COSTS, SIZES, 7) == {"A": 2, "B": 2, "C": 2}


def test_budget_below_the_minimum_is_an_error():
    for f in (mixed.knapsack_bits, mixed.exhaustive_bits, mixed.greedy_bits):
        with pytest.raises(ValueError, match="budget 6 bytes is below the minimum 7 bytes"):
            f(COSTS, SIZES, 6)
    with pytest.raises(TypeError, match="budget must be an int"):
        mixed.knapsack_bits(COSTS, SIZES, 10.0)
    with pytest.raises(ValueError, match="same non-empty layers"):
        mixed.knapsack_bits(COSTS, {"A": SIZES["A"]}, 10)
    with pytest.raises(ValueError, match=r"bits must be distinct integers in \[2, 16\]"):
        mixed.layer_bytes(models.lenet300(8, rng=np.random.default_rng(0)), bits=(1, 4))


@pytest.mark.parametrize("seed", range(20))
def test_dp_equals_exhaustive_and_respects_the_budget(seed):
    rng = np.random.default_rng(seed)
    n = {f"l{i}": int(rng.integers(1, 60)) for i in range(int(rng.integers(1, 5)))}
    sizes = {k: {b: mixed.packed_bytes(v, b) for b in mixed.BITS} for k, v in n.items()}
    # sensitivities that fall with the bits, on a coarse grid so that optima are often tied
    costs = {k: dict(zip(mixed.BITS, np.sort(rng.integers(0, 6, 4))[::-1] / 4.0)) for k in n}
    lo, hi = mixed.min_bytes(sizes), mixed.uniform_bytes(sizes, 8)
    for budget in np.unique(rng.integers(lo, hi + 1, 6)):
        budget = int(budget)
        dp = mixed.knapsack_bits(costs, sizes, budget)
        ex = mixed.exhaustive_bits(costs, sizes, budget)
        assert mixed.total(sizes, dp) <= budget
        assert mixed.total(costs, dp) == mixed.total(costs, ex)       # both optimal (exact sums)
        greedy = mixed.greedy_bits(costs, sizes, budget)
        assert mixed.total(sizes, greedy) <= budget
        assert mixed.total(costs, greedy) >= mixed.total(costs, dp)


def test_sensitivity_is_measured_one_layer_at_a_time(digits):
    (x, y), _ = digits
    model = models.lenet300(8, rng=np.random.default_rng(0))
    fit(model, optim.Adam(model.parameters(), 1e-3), (x, y), TrainConfig(3, np.random.default_rng(1)))
    calib = (x[:300], y[:300])
    before = mixed.mean_loss(model, *calib)
    sens = mixed.sensitivity(model, calib)
    assert set(sens) == {"fc1", "fc2", "fc3"} and all(set(s) == set(mixed.BITS) for s in sens.values())
    assert mixed.mean_loss(model, *calib) == before                  # model left as it was
    assert all(not layer.weight_transforms for _, layer in model.named_children()
               if isinstance(layer, nn.Linear))
    # by hand for one entry: fc2 alone at 2 bits
    mixed.apply_bits(model, {"fc2": 2})
    assert mixed.mean_loss(model, *calib) - before == pytest.approx(sens["fc2"][2], abs=1e-12)
    assert sens["fc1"][2] > sens["fc1"][8]                            # 2 bits hurt more than 8
    with pytest.raises(ValueError, match="equal non-zero length"):
        mixed.sensitivity(model, (x[:0], y[:0]))


def _float64(model):
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
        p.grad = np.zeros_like(p.data)
    return model


def _fisher_by_loop(model, x, y):
    """(1/N) Σ_n (∂ℓ_n/∂W)² from N backward passes of one image each (the definition)."""
    out = {}
    for i in range(len(x)):
        model.zero_grad()
        loss, g = nn.cross_entropy(model(x[i:i + 1]), y[i:i + 1])
        model.backward(g)
        for name, layer in model.named_children():
            if isinstance(layer, (nn.Linear, nn.Conv2d)):
                out[name] = out.get(name, 0.0) + layer.weight.grad ** 2
    model.zero_grad()
    return {k: v / len(x) for k, v in out.items()}


@pytest.mark.parametrize("arch", ["lenet300", "lenet5"])
def test_fisher_diagonal_is_the_mean_squared_per_image_gradient(digits, arch):
    (x, y), _ = digits
    model = _float64(getattr(models, arch)(8, rng=np.random.default_rng(0)))
    x = x[:23].astype(np.float64).reshape((23, 1, 8, 8) if arch == "lenet5" else (23, 64))
    y = y[:23]
    before = [p.grad.copy() for p in model.parameters()]
    got = mixed.fisher_diagonal(model, (x, y), batch_size=10)     # 3 batches, last one short
    want = _fisher_by_loop(model, x, y)
    assert set(got) == set(want)
    for name in want:
        assert got[name].shape == want[name].shape
        np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-14)
    model.zero_grad()
    assert all(np.array_equal(p.grad, b) for p, b in zip(model.parameters(), before))


def test_fisher_sensitivity_by_hand(digits):
    (x, y), _ = digits
    model = models.lenet300(8, rng=np.random.default_rng(0))
    calib = (x[:200], y[:200])
    fisher = mixed.fisher_diagonal(model, calib)
    sens = mixed.fisher_sensitivity(model, calib, fisher=fisher)
    assert not any(layer.weight_transforms for _, layer in model.named_children()
                   if isinstance(layer, nn.Linear))                  # model left as it was
    w = model.fc2.weight.data.astype(np.float64)
    mixed.apply_bits(model, {"fc2": 3})
    err = model.fc2.effective_weight() - w
    assert sens["fc2"][3] == pytest.approx(0.5 * np.sum(fisher["fc2"] * err ** 2), rel=1e-12)
    assert all(v >= 0 for s in sens.values() for v in s.values())   # a weighted sum of squares
    with pytest.raises(ValueError, match="equal non-zero length"):
        mixed.fisher_diagonal(model, (x[:0], y[:0]))
