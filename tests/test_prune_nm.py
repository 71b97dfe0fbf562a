"""N:M (2:4) sparsity with a learned mask: the per-group rule, the grouping of a convolution,
the straight-through score gradient, bad input, and learning on the digits."""
import copy

import numpy as np
import pytest

from minicompress import models, nn, optim, prune
from minicompress.train import TrainConfig, evaluate, fit

# Two rows of 8 = two groups of 4 each; the 2 largest of every group are kept.
S = np.array([[0.9, -0.1, 0.3, 0.5, 0.0, 0.2, 0.8, 0.7],
              [0.1, 0.4, 0.6, 0.2, 1.0, 0.9, -2.0, 0.3]])
KEEP = np.array([[1, 0, 0, 1, 0, 0, 1, 1],
                 [0, 1, 1, 0, 1, 1, 0, 0]], dtype=bool)


def test_2_4_mask_by_hand():
    keep = prune.nm_mask(S, 2, 4)
    np.testing.assert_array_equal(keep, KEEP)
    np.testing.assert_array_equal(prune.group_counts(keep, 4), np.full((2, 2), 2))


def test_1_4_and_ties_go_to_the_lower_index():
    np.testing.assert_array_equal(prune.nm_mask(S, 1, 4).astype(int),
                                  [[1, 0, 0, 0, 0, 0, 1, 0], [0, 0, 1, 0, 1, 0, 0, 0]])
    np.testing.assert_array_equal(prune.nm_mask(np.zeros((1, 8)), 2, 4),
                                  [[1, 1, 0, 0, 1, 1, 0, 0]])


def test_conv_groups_run_along_the_flattened_filter():
    # Conv weight (O=2, C_in=4, 3, 3): rows of K = 36, index c·9 + i·3 + j. Group 2 of filter 0
    # is entries 8..11 = (c0, 2, 2), (c1, 0, 0), (c1, 0, 1), (c1, 0, 2): it spans two channels.
    s = np.zeros((2, 4, 3, 3))
    s[0, 0, 2, 2], s[0, 1, 0, 0], s[0, 1, 0, 1], s[0, 1, 0, 2] = 5.0, 1.0, 4.0, -1.0
    keep = prune.nm_mask(s, 2, 4)
    assert keep.shape == s.shape
    assert keep[0, 0, 2, 2] and keep[0, 1, 0, 1] and not keep[0, 1, 0, 0] and not keep[0, 1, 0, 2]
    np.testing.assert_array_equal(keep, prune.nm_mask(s.reshape(2, 36), 2, 4).reshape(s.shape))
    assert keep.sum() == 2 * 36 // 2


def test_row_not_divisible_by_m_is_an_error_or_padded():
    with pytest.raises(ValueError, match=r"K = 25 .*not divisible by M = 4.*pad=True"):
        prune.nm_mask(np.ones((6, 1, 5, 5)), 2, 4)
    conv = nn.Conv2d(1, 6, 5, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"layer 'conv' weight .* not divisible by M = 4"):
        prune.magnitude_nm(nn.Sequential(conv=conv), 2, 4)
    # padded: row [0 1 2 3 | 4] → the last group holds one real weight, which is kept
    np.testing.assert_array_equal(prune.nm_mask(np.arange(5.0)[None], 2, 4, pad=True),
                                  [[0, 0, 1, 1, 1]])
    np.testing.assert_array_equal(prune.nm_mask(np.arange(6.0)[None], 1, 4, pad=True),
                                  [[0, 0, 0, 1, 0, 1]])


@pytest.mark.parametrize("n, m", [(0, 4), (4, 4), (5, 4), (2.0, 4), (True, 4)])
def test_bad_n_m(n, m):
    with pytest.raises((ValueError, TypeError), match="N:M sparsity"):
        prune.nm_mask(S, n, m)


def test_nan_scores_and_1d_weights_are_rejected():
    with pytest.raises(ValueError, match="NaN"):
        prune.nm_mask(np.full((1, 4), np.nan))
    with pytest.raises(ValueError, match="≥ 2 dimensions"):
        prune.nm_mask(np.ones(8))


def test_is_nm_counts_nonzeros_per_group():
    assert prune.is_nm(S * KEEP, 2, 4)
    assert not prune.is_nm(S, 2, 4)


def test_score_gradient_is_straight_through_and_matches_the_relaxed_mask(rng):
    # small integers: every product and sum below is exact in float32
    layer = nn.Linear(8, 3, rng=rng)
    layer.weight.data[...] = rng.integers(-3, 4, (3, 8))
    pruner = prune.NMPruner(nn.Sequential(fc=layer), 2, 4)
    mk = prune.get_mask(layer)
    keep = prune.nm_mask(np.abs(layer.weight.data), 2, 4)
    np.testing.assert_array_equal(mk.keep, keep)
    assert pruner.sparsity == 0.5
    x = rng.integers(-4, 5, (5, 8)).astype(np.float32)
    g = rng.integers(-4, 5, (5, 3)).astype(np.float32)
    layer.zero_grad()
    layer.forward(x)
    layer.backward(g)
    # central differences of L(m) = Σ g ⊙ (x (W ⊙ m)ᵀ) in the relaxed mask m, at m = keep (float64)
    w = layer.weight.data.astype(np.float64)

    def loss(m):
        return float(np.sum(g * (x @ (w * m).T)))

    m0, num = keep.astype(np.float64), np.zeros_like(w)
    for i in np.ndindex(*w.shape):
        e = np.zeros_like(w)
        e[i] = 0.5
        num[i] = (loss(m0 + e) - loss(m0 - e)) / 1.0  # L is linear in m: exact for any step
    np.testing.assert_array_equal(mk.scores.grad, num)            # ∂L/∂s := ∂L/∂m
    np.testing.assert_array_equal(layer.weight.grad, (g.T @ x) * keep)


def test_scores_move_the_mask():
    layer = nn.Linear(4, 1, rng=np.random.default_rng(0))
    layer.weight.data[...] = [[0.4, 0.3, 0.2, 0.1]]
    pruner = prune.NMPruner(nn.Sequential(fc=layer), 2, 4)
    np.testing.assert_array_equal(prune.get_mask(layer).keep, [[1, 1, 0, 0]])
    prune.get_mask(layer).scores.data[...] = [[0.0, 0.0, 0.0, 0.25]]  # |W| + s = .4 .3 .2 .35
    pruner.update()
    np.testing.assert_array_equal(prune.get_mask(layer).keep, [[1, 0, 0, 1]])
    with pytest.raises(TypeError, match="fixed by N:M"):
        pruner.set_sparsity(0.3)


def test_nm_prune_on_digits(digits):
    (x, y), (xt, yt) = digits
    model = models.lenet300(8, rng=np.random.default_rng(0))   # K = 64, 300, 100
    fit(model, optim.Adam(model.parameters(), 1e-3), (x, y), TrainConfig(8, np.random.default_rng(1)))
    magnitude = copy.deepcopy(model)
    prune.magnitude_nm(magnitude, 2, 4)
    hist = prune.nm_prune(model, (x, y), prune.NMPruning(2, 4, lr=1e-3),
                          TrainConfig(4, np.random.default_rng(2)))
    assert [r["sparsity"] for r in hist] == [0.5] * 4
    for name, mk in prune.masks(model).items():
        assert type(mk) is prune.Mask                     # fixed after finalize
        np.testing.assert_array_equal(prune.group_counts(mk.keep, 4), 2)   # exactly 2 of 4
        assert prune.is_nm(dict(model.named_children())[name].effective_weight(), 2, 4)
    assert not any("scores" in k for k in model.state_dict())
    assert prune.sparsity(model) >= 0.5
    acc = evaluate(model, xt, yt)["accuracy"]
    assert acc > max(0.9, evaluate(magnitude, xt, yt)["accuracy"])


def test_nm_prune_pads_lenet5(digits):
    (x, y), _ = digits
    model = models.lenet5(8, rng=np.random.default_rng(0))    # conv K = 25 and 150
    with pytest.raises(ValueError, match="layer 'conv1' weight"):
        prune.NMPruner(model, 2, 4)
    prune.nm_prune(model, (x[:256], y[:256]), prune.NMPruning(2, 4, pad=True),
                   TrainConfig(1, np.random.default_rng(1)))
    for name, mk in prune.masks(model).items():
        k = mk.keep.reshape(mk.keep.shape[0], -1).shape[1]
        counts = prune.group_counts(mk.keep, 4, pad=True)
        np.testing.assert_array_equal(counts[:, :k // 4], 2)          # full groups: exactly 2
        if k % 4:                                                   # partial group: min(2, r)
            np.testing.assert_array_equal(counts[:, -1], min(2, k % 4))


def test_exercise_cases_agree_with_the_library():
    from minicompress.exercises import EXERCISES
    for case in EXERCISES["nm_mask"].cases:
        a = case.args
        np.testing.assert_array_equal(prune.nm_mask(a["scores"], a["n"], a["m"]), case.expected[0] == 1)
