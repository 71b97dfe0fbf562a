"""Weight pruning, document §3.1.1: masks, scores, selection, objective, schedule, learned masks."""
import copy

import numpy as np
import pytest

from gradcheck import numerical_grad, to_float64
from minicompress import models, nn, optim, prune
from minicompress.nn import WeightTransform
from minicompress.step import TaskLoss
from minicompress.train import TrainConfig, evaluate, fit

# The 5x5 example of the notebook: 25 weights, 75 % sparsity → 25 − round(18.75) = 6 kept.
W5 = np.array([[ 0.10, -0.80,  0.05,  0.30, -0.02],
               [-0.45,  0.07,  0.90, -0.12,  0.33],
               [ 0.01, -0.06,  0.22, -0.70,  0.15],
               [ 0.50,  0.04, -0.09,  0.11, -0.60],
               [-0.03,  0.26,  0.08, -0.18,  0.40]], dtype=np.float32)
MASK5_75 = np.array([[0, 1, 0, 0, 0],
                     [1, 0, 1, 0, 0],
                     [0, 0, 0, 1, 0],
                     [1, 0, 0, 0, 1],
                     [0, 0, 0, 0, 0]], dtype=bool)


def test_5x5_magnitude_mask_at_75_percent():
    keep = prune.select({"w": np.abs(W5)}, 0.75, "layer")["w"]
    np.testing.assert_array_equal(keep, MASK5_75)


@pytest.mark.parametrize("n,s", [(25, 0.75), (1000, 0.9), (266200, 0.95), (10, 0.0), (7, 0.5)])
def test_kept_count_is_exact(rng, n, s):
    keep = prune.topk_mask(rng.standard_normal(n), prune.kept_count(n, s))
    assert keep.sum() == n - round(s * n)


def test_ties_are_broken_by_lower_index():
    scores = np.array([3.0, 1.0, 2.0, 2.0, 2.0, 0.0])
    np.testing.assert_array_equal(prune.topk_mask(scores, 3), [1, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(prune.topk_mask(np.ones(5), 2), [1, 1, 0, 0, 0])


def test_global_vs_layer_selection(rng):
    scores = {"a": rng.random(100) * 10, "b": rng.random(50)}  # 'a' scores are larger
    glob = prune.select(scores, 0.5, "global")
    assert glob["a"].sum() + glob["b"].sum() == 75
    assert glob["b"].sum() < 25  # global: the small-score layer loses more
    per = prune.select(scores, 0.5, "layer")
    assert per["a"].sum() == 50 and per["b"].sum() == 25


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan")])
def test_bad_sparsity_is_rejected(bad):
    m = models.lenet300(8, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="sparsity"):
        prune.prune_by_score(m, bad)
    with pytest.raises(ValueError):
        prune.kept_count(10, bad)


def test_unknown_score_lists_the_valid_ones():
    m = models.lenet300(8, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="magnitude.*gradient.*taylor"):
        prune.prune_by_score(m, 0.5, score="hessian")
    with pytest.raises(ValueError, match="l1.*l2.*median.*taylor"):
        prune.filter_scores(m, "geometric")


def test_layer_that_cannot_be_pruned():
    m = models.lenet300(8, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="relu1.*cannot be pruned"):
        prune.prune_by_score(m, 0.5, layers=["relu1"])
    with pytest.raises(TypeError, match="no weight"):
        prune.attach_mask(nn.ReLU())


# ---- the mask transform ---------------------------------------------------------------------------
def test_mask_chain_rule_matches_central_differences(rng):
    layer = to_float64(nn.Linear(5, 4, rng=rng))
    mk = prune.attach_mask(layer)
    mk.mask.data = (rng.random((4, 5)) > 0.5).astype(np.float64)
    x = rng.standard_normal((3, 5))
    r = rng.standard_normal((3, 4))

    def loss():
        return float(np.sum(layer.forward(x) * r))

    layer.zero_grad()
    layer.forward(x)
    dx = layer.backward(r)
    np.testing.assert_allclose(dx, numerical_grad(loss, x), atol=1e-7)
    np.testing.assert_allclose(layer.weight.grad, numerical_grad(loss, layer.weight.data), atol=1e-7)
    assert np.all(layer.weight.grad[mk.mask.data == 0] == 0)  # a pruned weight gets no gradient


class Doubler(WeightTransform):
    """A stand-in for a quantizer: W_eff = 2W (maps 0 to 0)."""

    def forward(self, w):
        return 2 * w

    def backward(self, g):
        return 2 * g


def test_pruned_weights_stay_exactly_zero_through_adam(digits):
    (x, y), _ = digits
    model = models.lenet300(8, rng=np.random.default_rng(0))
    fit(model, optim.Adam(model.parameters(), 1e-2), (x, y), TrainConfig(1, np.random.default_rng(1)))
    # Adam moments are non-zero when pruning starts
    model.fc1.add_weight_transform(Doubler())  # added *before* the mask: the mask must still go first
    opt = optim.Adam(model.parameters(), 1e-2)
    fit(model, opt, (x, y), TrainConfig(1, np.random.default_rng(2)))
    prune.prune_by_score(model, 0.8)
    assert isinstance(model.fc1.weight_transforms[0], prune.Mask)
    pruned = {n: ~mk.keep for n, mk in prune.masks(model).items()}
    w_before = model.fc1.weight.data.copy()
    fit(model, opt, (x, y), TrainConfig(3, np.random.default_rng(3)))
    for name, layer in prune.prunable_layers(model):
        assert np.all(layer.effective_weight()[pruned[name]] == 0)
    # the stored weights of pruned entries did move (Adam's moments): zeroing W would not suffice
    assert np.any(model.fc1.weight.data[pruned["fc1"]] != w_before[pruned["fc1"]])
    np.testing.assert_array_equal(model.fc1.effective_weight(),
                                  2 * model.fc1.weight.data * prune.masks(model)["fc1"].mask.data)


def test_remove_bakes_the_mask_in(digits):
    (x, y), (xt, yt) = digits
    model = models.lenet300(8, rng=np.random.default_rng(0))
    prune.prune_by_score(model, 0.7)
    logits = model(xt)
    copy_ = prune.remove(model, inplace=False)
    assert prune.masks(model) and not prune.masks(copy_)  # original untouched
    np.testing.assert_array_equal(copy_(xt), logits)
    n = sum(layer.weight.data.size for _, layer in prune.prunable_layers(copy_))
    zeros = sum(int((layer.weight.data == 0).sum()) for _, layer in prune.prunable_layers(copy_))
    assert zeros == round(0.7 * n)


# ---- scores ---------------------------------------------------------------------------------------
def test_gradient_and_taylor_scores_match_a_direct_computation(rng):
    # float64, so that the library and the by-hand sums agree to ~1e-16 whatever their order
    model = to_float64(nn.Sequential(fc=nn.Linear(6, 3, rng=rng)))
    x = rng.standard_normal((40, 6))
    y = rng.integers(0, 3, 40)
    # two batches of 20, no shuffling effect on the sums: compute by hand per batch
    r = np.random.default_rng(7)
    order = np.random.default_rng(7).permutation(40)
    want_g, want_t = 0, 0
    for b in (order[:20], order[20:]):
        logits = x[b] @ model.fc.weight.data.T + model.fc.bias.data
        _, g = nn.cross_entropy(logits, y[b])
        gw = g.T @ x[b]
        want_g = want_g + np.abs(gw)
        want_t = want_t + np.abs(gw * model.fc.weight.data)
    got_g = prune.weight_scores(model, "gradient", data=(x, y), num_batches=2, batch_size=20, rng=r)
    got_t = prune.weight_scores(model, "taylor", data=(x, y), num_batches=2, batch_size=20,
                                rng=np.random.default_rng(7))
    # terms of magnitude < 10, 20 rows a batch: float64 rounding < 40·10·eps64 ≈ 1e-13
    np.testing.assert_allclose(got_g["fc"], want_g / 2, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got_t["fc"], want_t / 2, rtol=1e-9, atol=1e-12)
    assert model.fc.weight_transforms == []  # the probe is gone
    assert np.all(model.fc.weight.grad == 0)


def test_pruning_is_monotone(rng):
    model = models.lenet300(8, rng=rng)
    prune.prune_by_score(model, 0.5)
    first = {n: mk.keep.copy() for n, mk in prune.masks(model).items()}
    prune.prune_by_score(model, 0.8)
    for n, mk in prune.masks(model).items():
        assert not np.any(mk.keep & ~first[n])  # nothing pruned comes back


def test_global_magnitude_matches_torch_global_unstructured(rng):
    torch = pytest.importorskip("torch")
    from torch.nn.utils import prune as tprune
    model = models.lenet300(8, rng=rng)
    tm = torch.nn.Sequential(torch.nn.Linear(64, 300), torch.nn.Linear(300, 100),
                             torch.nn.Linear(100, 10))
    for t, (_, ours) in zip(tm, prune.prunable_layers(model)):
        t.weight.data = torch.from_numpy(ours.weight.data.copy())
    tprune.global_unstructured([(t, "weight") for t in tm], pruning_method=tprune.L1Unstructured,
                               amount=0.9)
    prune.prune_by_score(model, 0.9)
    for t, (name, _) in zip(tm, prune.prunable_layers(model)):
        np.testing.assert_array_equal(prune.masks(model)[name].keep, t.weight_mask.numpy() == 1)


# ---- the document's objective ---------------------------------------------------------------------
def test_objective_gradients_match_central_differences(rng):
    x = rng.standard_normal((8, 5))
    y = rng.integers(0, 3, 8)
    w = rng.standard_normal((3, 5))
    m = rng.uniform(0.05, 0.95, (3, 5))
    lam = 0.3

    def task(w_eff):
        logits = x @ w_eff.T
        z = logits - logits.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        p = np.exp(logp)
        p[np.arange(8), y] -= 1
        return -logp[np.arange(8), y].mean(), (p / 8).T @ x

    _, dw, dm = prune.pruning_objective(w, m, lam, task)
    np.testing.assert_allclose(dw, numerical_grad(lambda: prune.pruning_objective(w, m, lam, task)[0], w),
                               atol=1e-7)
    np.testing.assert_allclose(dm, numerical_grad(lambda: prune.pruning_objective(w, m, lam, task)[0], m),
                               atol=1e-7)


def test_l1_term_alone_pushes_m_up_and_dropped_weights_to_zero(rng):
    w = rng.standard_normal((6, 6)).astype(np.float32)
    m = np.full((6, 6), 0.5, np.float32)
    pw, pm = nn.Parameter(w.copy()), nn.Parameter(m.copy())
    opt = optim.Adam([pw, pm], lr=0.01)
    for _ in range(20):
        _, dw, dm = prune.l1_penalty(pw.data, pm.data, 0.1)
        pw.grad[...], pm.grad[...] = dw, dm
        opt.step()
    assert np.all(pm.data > m)                         # every mask entry went up
    assert np.all(np.abs(pw.data) < np.abs(w))         # every (partly) dropped weight shrank
    value, dw, dm = prune.l1_penalty(w, np.ones_like(w), 0.1)
    assert value == 0 and not dw.any() and not dm.any()  # at m = 1 the term is gone


# ---- schedule -------------------------------------------------------------------------------------
def test_cubic_schedule_values():
    s = prune.CubicSchedule(0.0, 0.9, steps=100)
    assert s(0) == 0.0 and s(100) == pytest.approx(0.9) and s(1000) == pytest.approx(0.9)
    assert s(50) == pytest.approx(0.9 + (0.0 - 0.9) * 0.5 ** 3)
    vals = [s(t) for t in range(101)]
    assert all(b >= a for a, b in zip(vals, vals[1:]))
    # updated only at pruning events t0 + kΔt
    e = prune.CubicSchedule(0.2, 0.8, steps=100, start=10, every=25)
    assert e(10) == e(34) == 0.2 and e(35) == pytest.approx(0.8 - 0.6 * 0.75 ** 3)


# ---- learned masks --------------------------------------------------------------------------------
def test_learned_mask_score_gradient_is_straight_through(rng):
    layer = nn.Linear(5, 4, rng=rng)
    pruner = prune.LearnedMaskPruner(nn.Sequential(fc=layer), 0.5, scope="layer")
    pruner.update(0)
    mk = prune.get_mask(layer)
    assert int(mk.keep.sum()) == 10
    # small integers: g.T @ x is exact in float32 whatever the summation order
    x = rng.integers(-4, 5, (3, 5)).astype(np.float32)
    g = rng.integers(-4, 5, (3, 4)).astype(np.float32)
    layer.zero_grad()
    layer.forward(x)
    layer.backward(g)
    np.testing.assert_array_equal(mk.scores.grad, (g.T @ x) * layer.weight.data)
    np.testing.assert_array_equal(layer.weight.grad, (g.T @ x) * mk.mask.data)


def test_learned_mask_prune_on_digits(digits):
    (x, y), (xt, yt) = digits
    model = models.lenet300(8, rng=np.random.default_rng(0))
    fit(model, optim.Adam(model.parameters(), 1e-3), (x, y), TrainConfig(8, np.random.default_rng(1)))
    dense_acc = evaluate(model, xt, yt)["accuracy"]
    dense_model = copy.deepcopy(model)
    seen = []

    class CountingLoss(TaskLoss):  # a task loss sees the whole batch: images, labels, indices
        def __call__(self, logits, batch):
            seen.append(len(batch.x))
            return nn.cross_entropy(logits, batch.y)

    hist = prune.learned_mask_prune(model, (x, y), prune.MaskPruning(0.9, lam=1e-4),
                                    TrainConfig(8, np.random.default_rng(2)),
                                    loss_fn=CountingLoss(), eval_data=(xt, yt))
    assert sum(seen) == 8 * len(x)
    assert [r["sparsity"] for r in hist][-1] == pytest.approx(0.9, abs=1e-3)
    mks = prune.masks(model)
    assert all(type(mk) is prune.Mask for mk in mks.values())  # fixed after finalize
    n = sum(mk.mask.data.size for mk in mks.values())
    assert sum(int((~mk.keep).sum()) for mk in mks.values()) == round(0.9 * n)
    acc = evaluate(model, xt, yt)["accuracy"]
    oneshot = prune.remove(copy.deepcopy(dense_model), inplace=True)
    prune.prune_by_score(oneshot, 0.9)
    # well above chance and above one-shot magnitude pruning at the same sparsity
    assert acc > max(0.9, evaluate(oneshot, xt, yt)["accuracy"]), (acc, dense_acc)
    assert not any("scores" in k for k in model.state_dict())


def test_scheduled_prune_reaches_the_schedule(digits):
    (x, y), _ = digits
    model = models.lenet5(8, rng=np.random.default_rng(0))
    spe = -(-len(x) // 128)
    schedule = prune.CubicSchedule(0.0, 0.6, steps=2 * spe, every=spe)
    prune.scheduled_prune(model, (x, y), prune.ScheduledPruning(schedule, "taylor", every=spe),
                          TrainConfig(3, np.random.default_rng(1)))
    n = sum(mk.mask.data.size for mk in prune.masks(model).values())
    assert sum(int((~mk.keep).sum()) for mk in prune.masks(model).values()) == round(0.6 * n)
