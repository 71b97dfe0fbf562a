"""Every equation of the source document, pinned to numbers worked out by hand.

Small arrays whose answers have closed forms (written in the comments), compared exactly or in
float64 — so that breaking any one equation (a sign, a factor, a bound, a rounding) fails a test
here, without PyTorch and without a data set. Training roles (what Adam does with these
gradients) are in ``test_training_roles.py``.
"""
import numpy as np
import pytest

from minicompress import nn, prune
from minicompress import distill as D
from minicompress.quantize import (ActivationQuantizer, BiasQuantizer, WeightQuantizer,
                                   affine_dequantize, affine_quantize, asymmetric_dequantize,
                                   asymmetric_quantize, pack_bits, quantize_multiplier, requantize,
                                   symmetric_quantize, unpack_bits, zero_point)
from minicompress.quantize.functional import symmetric_delta, symmetric_range
from minicompress.quantize.fixed_point import requantize_exact_float
from minicompress.quantize.integer import IntFlatten
from minicompress.quantize.observers import integer_bounds, lsq_observer, minmax_observer


def linear(w, b=None):
    """A Linear layer holding exactly ``w`` (out, in) and ``b`` (out,)."""
    w = np.asarray(w, np.float32)
    layer = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, rng=np.random.default_rng(0))
    layer.weight.data[...] = w
    if b is not None:
        layer.bias.data[...] = b
    return layer


# =========================== §3.1.1 weight pruning ==============================================
def test_magnitude_score_is_abs_w_and_prunes_the_smallest():
    # |W| = [[0.5, 2], [1.5, 0.25]]: at 50 % the two largest, −2 and 1.5, stay
    model = nn.Sequential(fc=linear([[0.5, -2.0], [1.5, -0.25]]))
    np.testing.assert_array_equal(prune.weight_scores(model, "magnitude")["fc"],
                                  [[0.5, 2.0], [1.5, 0.25]])
    prune.prune_by_score(model, 0.5, "magnitude")
    np.testing.assert_array_equal(prune.masks(model)["fc"].mask.data, [[0, 1], [1, 0]])
    np.testing.assert_array_equal(model.fc.effective_weight(), [[0, -2.0], [1.5, 0]])


def _two_sample_scores(score):
    # Both rows of W are equal → equal logits → p = (½, ½) for every input.
    # sample 1: x = (1, 2),  y = 0: p − e = (−½, ½) → g₁ = [[−0.5, −1], [0.5, 1]]
    # sample 2: x = (3, −1), y = 1: p − e = (½, −½) → g₂ = [[1.5, −0.5], [−1.5, 0.5]]
    model = nn.Sequential(fc=linear([[2.0, -1.0], [2.0, -1.0]]))
    x = np.array([[1.0, 2.0], [3.0, -1.0]], np.float32)
    y = np.array([0, 1])
    return prune.weight_scores(model, score, data=(x, y), batch_size=1,
                               rng=np.random.default_rng(0))["fc"]


def test_gradient_score_is_mean_over_batches_of_abs_gradient():
    # (|g₁| + |g₂|)/2 = [[1, 0.75], [1, 0.75]]
    np.testing.assert_allclose(_two_sample_scores("gradient"), [[1.0, 0.75], [1.0, 0.75]],
                               rtol=1e-6)


def test_taylor_score_is_mean_over_batches_of_abs_w_times_gradient():
    # |W ⊙ g₁| = [[1, 1], [1, 1]], |W ⊙ g₂| = [[3, 0.5], [3, 0.5]] → mean [[2, 0.75], [2, 0.75]]
    np.testing.assert_allclose(_two_sample_scores("taylor"), [[2.0, 0.75], [2.0, 0.75]],
                               rtol=1e-6)


def test_pruning_is_monotone_even_when_the_new_score_prefers_a_pruned_weight():
    # W = [[0.5, −1], [0.5, −1]]: magnitude at 50 % keeps column 1. The rows stay equal, so on
    # sample 2 above the gradient is still g₂ = [[1.5, −0.5], [−1.5, 0.5]], whose score |g₂| alone
    # would keep column 0 — but a pruned weight never comes back, so column 1 stays.
    model = nn.Sequential(fc=linear([[0.5, -1.0], [0.5, -1.0]]))
    prune.prune_by_score(model, 0.5, "magnitude")
    np.testing.assert_array_equal(prune.masks(model)["fc"].keep, [[False, True], [False, True]])
    data = (np.array([[3.0, -1.0]], np.float32), np.array([1]))
    np.testing.assert_allclose(
        prune.weight_scores(model, "gradient", data=data, rng=np.random.default_rng(0))["fc"],
        [[1.5, 0.5], [1.5, 0.5]], rtol=1e-6)
    prune.prune_by_score(model, 0.5, "gradient", data=data, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(prune.masks(model)["fc"].keep, [[False, True], [False, True]])


def test_mask_forward_and_chain_rule_by_hand():
    # W_eff = W ⊙ m; y = x W_effᵀ; ∂L/∂W = (gᵀ x) ⊙ m
    layer = linear([[1.0, -2.0], [3.0, 4.0]])
    mk = prune.attach_mask(layer)
    mk.set([[True, False], [False, True]])
    x = np.array([[1.0, 1.0]], np.float32)
    np.testing.assert_array_equal(layer.forward(x), [[1.0, 4.0]])
    layer.backward(np.array([[1.0, 2.0]], np.float32))     # gᵀ x = [[1, 1], [2, 2]]
    np.testing.assert_array_equal(layer.weight.grad, [[1.0, 0.0], [0.0, 2.0]])


def test_learned_mask_score_gradient_by_hand():
    # ∂L/∂s := ∂L/∂W_eff ⊙ W = [[1, 1], [2, 2]] ⊙ [[1, −2], [3, 4]] = [[1, −2], [6, 8]]
    layer = linear([[1.0, -2.0], [3.0, 4.0]])
    mk = prune.attach_mask(layer, prune.LearnedMask((2, 2)))
    mk.set([[True, False], [False, True]])
    layer.forward(np.array([[1.0, 1.0]], np.float32))
    layer.backward(np.array([[1.0, 2.0]], np.float32))
    np.testing.assert_array_equal(mk.scores.grad, [[1.0, -2.0], [6.0, 8.0]])
    np.testing.assert_array_equal(layer.weight.grad, [[1.0, 0.0], [0.0, 2.0]])


# W, m, λ of the L1 term: W ⊙ (1 − m) = [[0, −2], [3, 0]]
W_L1 = np.array([[1.0, -2.0], [3.0, -4.0]])
M_L1 = np.array([[1.0, 0.0], [0.0, 1.0]])


def test_l1_penalty_by_hand():
    # λ‖W ⊙ (1 − m)‖₁ = 0.5 · (2 + 3) = 2.5 > 0: the term *adds* to the loss
    # ∂/∂W = λ sign(W ⊙ (1 − m)) ⊙ (1 − m) = [[0, −0.5], [0.5, 0]]  (= +λ sign(W) on pruned)
    # ∂/∂m = −λ sign(W ⊙ (1 − m)) ⊙ W      = [[0, −1], [−1.5, 0]]   (= −λ|W| on pruned)
    value, dw, dm = prune.l1_penalty(W_L1, M_L1, 0.5)
    assert value == 2.5
    np.testing.assert_array_equal(dw, [[0.0, -0.5], [0.5, 0.0]])
    np.testing.assert_array_equal(dm, [[0.0, -1.0], [-1.5, 0.0]])


def test_pruning_objective_by_hand():
    # L_task(W_eff) = ½ Σ W_eff² (gradient W_eff); W_eff = [[1, 0], [0, −4]]
    # L = ½ (1 + 16) + 2.5 = 11
    # ∂L/∂W = W_eff ⊙ m + ∂pen/∂W = [[1, −0.5], [0.5, −4]]
    # ∂L/∂m = W_eff ⊙ W + ∂pen/∂m = [[1, −1], [−1.5, 16]]
    def task(w_eff):
        return 0.5 * float(np.sum(w_eff ** 2)), w_eff

    loss, dw, dm = prune.pruning_objective(W_L1, M_L1, 0.5, task)
    assert loss == 11.0
    np.testing.assert_array_equal(dw, [[1.0, -0.5], [0.5, -4.0]])
    np.testing.assert_array_equal(dm, [[1.0, -1.0], [-1.5, 16.0]])


def test_remove_bakes_w_times_m_into_the_weight():
    model = nn.Sequential(fc=linear([[1.0, -2.0], [3.0, 4.0]]))
    prune.attach_mask(model.fc).set([[True, False], [False, True]])
    prune.remove(model)
    assert model.fc.weight_transforms == []
    np.testing.assert_array_equal(model.fc.weight.data, [[1.0, 0.0], [0.0, 4.0]])


# ---- top-k selection and the cubic schedule -----------------------------------------------------
def test_topk_by_hand():
    s = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0])
    np.testing.assert_array_equal(np.flatnonzero(prune.topk_mask(s, 3)), [4, 5, 7])  # 5, 9, 6
    # k = 7 drops one of the two 1's: the tie goes to the lower index, so index 3 is dropped
    np.testing.assert_array_equal(np.flatnonzero(prune.topk_mask(s, 7)), [0, 1, 2, 4, 5, 6, 7])
    # ties at the threshold: exactly k, the lower index first
    np.testing.assert_array_equal(prune.topk_mask(np.array([1.0, 2, 2, 2, 0]), 2), [0, 1, 1, 0, 0])


def test_kept_count_rounds_to_nearest():
    # 10 weights at 37 %: round(3.7) = 4 pruned, 6 kept (not 10 − floor(3.7) = 7)
    assert prune.kept_count(10, 0.37) == 6
    assert prune.kept_count(10, 0.34) == 7
    assert prune.kept_count(25, 0.75) == 6      # 25 − round(18.75)


def test_cubic_schedule_by_hand():
    # s_t = s_f + (s_i − s_f)(1 − t/n)³ with s_i = 0, s_f = 0.8, n = 4:
    # t = 1: 0.8 − 0.8 · 0.421875 = 0.4625;  t = 2: 0.8 − 0.8 · 0.125 = 0.7;  t = 3: 0.7875
    got = [prune.cubic_sparsity(t, 0.0, 0.8, 0, 4) for t in range(6)]
    np.testing.assert_allclose(got, [0.0, 0.4625, 0.7, 0.7875, 0.8, 0.8], rtol=1e-12)
    # from s_i = 0.2, events every Δt = 2 from t₀ = 1: s changes at t = 3, 5, ...
    got = [prune.cubic_sparsity(t, 0.2, 0.6, 1, 2, dt=2) for t in range(7)]
    # t = 3: 0.6 − 0.4 · 0.125 = 0.55
    np.testing.assert_allclose(got, [0.2, 0.2, 0.2, 0.55, 0.55, 0.6, 0.6], rtol=1e-12)


# =========================== §3.1.2 filter pruning ==============================================
W_FILTERS = np.array([[1.0, -2.0, 3.0, -4.0],
                      [0.5, 0.5, -0.5, 0.5],
                      [-3.0, 0.0, 0.0, 4.0]])


@pytest.mark.parametrize("score,want", [
    ("l1", [10.0, 2.0, 7.0]),                       # Σ|w|
    ("l2", [np.sqrt(30.0), 1.0, 5.0]),              # √Σw²
    ("median", [2.5, 0.5, 1.5]),                    # median |w| (mean would be 1.75 in row 3)
])
def test_filter_scores_by_hand(score, want):
    np.testing.assert_allclose(prune.filter_norm_scores(W_FILTERS, score), want, rtol=1e-12)


def test_channel_gate_by_hand():
    # y = x ⊙ m along channels; ∂L/∂x = g ⊙ m; ∂L/∂s_c = Σ_n x_nc g_nc
    gate = prune.ChannelGate(3, learned=True)
    gate.mask.data[...] = [1.0, 0.0, 1.0]
    x = np.array([[1.0, 2.0, 3.0], [-1.0, 4.0, 0.5]])
    g = np.array([[2.0, 1.0, -1.0], [1.0, 3.0, 2.0]])
    np.testing.assert_array_equal(gate.forward(x), [[1.0, 0.0, 3.0], [-1.0, 0.0, 0.5]])
    np.testing.assert_array_equal(gate.backward(g), [[2.0, 0.0, -1.0], [1.0, 0.0, 2.0]])
    # channel 0: 1·2 + (−1)·1 = 1; channel 1: 2·1 + 4·3 = 14; channel 2: 3·(−1) + 0.5·2 = −2
    np.testing.assert_array_equal(gate.scores.grad, [1.0, 14.0, -2.0])


def test_taylor_filter_score_averages_abs_gate_gradient_over_batches():
    # batch 1: ∂L/∂m = Σ x ⊙ g = (1·1, 2·1) = (1, 2); batch 2: (1·(−3), 2·0.5) = (−3, 1)
    # score = (|1| + |−3|, |2| + |1|) / 2 = (2, 1.5): opposite signs must not cancel
    gate = prune.ChannelGate(2)
    gate.record_taylor = True
    for g in ([[1.0, 1.0]], [[-3.0, 0.5]]):
        gate.forward(np.array([[1.0, 2.0]]))
        gate.backward(np.array(g))
    np.testing.assert_array_equal(gate.taylor_sum / gate.taylor_count, [2.0, 1.5])


def test_shrink_keeps_the_right_rows_bias_and_next_layer_columns():
    rng = np.random.default_rng(0)
    fc1 = linear(np.arange(6.0).reshape(3, 2), b=[10.0, 11.0, 12.0])
    fc2 = linear(np.arange(6.0).reshape(2, 3) + 100, b=[-1.0, -2.0])
    model = nn.Sequential(fc1=fc1, relu=nn.ReLU(), fc2=fc2)
    prune.attach_gates(model, ["fc1"])["fc1"].mask.data[...] = [1.0, 0.0, 1.0]
    small = prune.shrink(model)
    np.testing.assert_array_equal(small.fc1.weight.data, [[0.0, 1.0], [4.0, 5.0]])
    np.testing.assert_array_equal(small.fc1.bias.data, [10.0, 12.0])
    np.testing.assert_array_equal(small.fc2.weight.data, [[100.0, 102.0], [103.0, 105.0]])
    np.testing.assert_array_equal(small.fc2.bias.data, [-1.0, -2.0])
    x = rng.standard_normal((4, 2)).astype(np.float32)
    np.testing.assert_allclose(small(x), model(x), rtol=1e-6)


def test_shrink_after_flatten_drops_each_channels_block_of_columns():
    # conv 1→3 channels on a 2×2 image, Flatten: channel c owns columns [4c, 4c + 4)
    rng = np.random.default_rng(0)
    conv = nn.Conv2d(1, 3, 1, rng=rng)
    fc = linear(np.arange(24.0).reshape(2, 12))
    model = nn.Sequential(conv=conv, relu=nn.ReLU(), flat=nn.Flatten(), fc=fc)
    small = prune.remove_filters(model, "conv", [0, 2])
    np.testing.assert_array_equal(small.fc.weight.data,
                                  [[0, 1, 2, 3, 8, 9, 10, 11], [12, 13, 14, 15, 20, 21, 22, 23]])


# =========================== §3.2 quantisation ==================================================
def test_symmetric_by_hand_eight_bits():
    # r_max = 1.27, Δ = 1.27 / (2⁷ − 1) = 0.01, q = round(x/Δ)
    x = np.array([0.5, -1.27, 0.3, 1.0], np.float32)
    q, delta = symmetric_quantize(x, 8)
    assert delta.item() == pytest.approx(0.01, rel=1e-6)
    np.testing.assert_array_equal(q, [50, -127, 30, 100])


def test_symmetric_by_hand_three_bits():
    # range ±(2² − 1) = ±3, Δ = 1/3; x/Δ = [−3, 0.6, 1.47, 3] → round → [−3, 1, 1, 3]
    assert symmetric_range(3) == (-3, 3)
    x = np.array([-1.0, 0.2, 0.49, 1.0], np.float32)
    q, delta = symmetric_quantize(x, 3)
    assert delta.item() == pytest.approx(1 / 3, rel=1e-6)
    np.testing.assert_array_equal(q, [-3, 1, 1, 3])
    assert symmetric_delta(x, 3).item() == pytest.approx(1 / 3, rel=1e-6)


def test_symmetric_clip_with_a_small_learned_delta():
    # Δ = 0.5 given: x/Δ = ±4 → clip to ±3 (not −4: the document's range is symmetric)
    q, _ = symmetric_quantize(np.array([-2.0, 2.0, 0.74], np.float32), 3, delta=0.5)
    np.testing.assert_array_equal(q, [-3, 3, 1])


def test_asymmetric_by_hand():
    # n = 2: Δ = (2 − (−1)) / (2² − 1) = 1, q = round((x − r_min)/Δ) = [0, 1, 1, 3]
    x = np.array([-1.0, 0.0, 0.4, 2.0], np.float32)
    q, delta, r_min = asymmetric_quantize(x, 2)
    assert delta.item() == 1.0 and r_min.item() == -1.0
    np.testing.assert_array_equal(q, [0, 1, 1, 3])
    # x̂ = Δ q + r_min
    np.testing.assert_array_equal(asymmetric_dequantize(q, delta, r_min), [-1.0, 0.0, 0.0, 2.0])


def test_zero_point_by_hand():
    # Δ = 0.1, r_min = −0.26: z = round(2.6) = 3; q(0.5) = round(5) + 3 = 8; x̂ = Δ (q − z)
    z = zero_point(0.1, -0.26, 8)
    assert int(z) == 3
    q = affine_quantize(np.array([0.0, 0.5, -0.3], np.float32), 8, 0.1, z)
    np.testing.assert_array_equal(q, [3, 8, 0])
    np.testing.assert_allclose(affine_dequantize(q, 0.1, z), [0.0, 0.5, -0.3], rtol=1e-6)


def test_observer_ranges_by_hand():
    assert integer_bounds(4, "signed") == (-7, 7)
    assert integer_bounds(4, "signed", narrow_range=False) == (-8, 7)
    assert integer_bounds(2, "unsigned") == (0, 3)
    d, r = minmax_observer(np.array([-0.7, 0.35], np.float32), 4, "signed")
    assert d.item() == pytest.approx(0.1, rel=1e-6) and r is None          # 0.7 / 7
    d, _ = minmax_observer(np.array([0.0, 0.9], np.float32), 2, "unsigned")
    assert d.item() == pytest.approx(0.3, rel=1e-6)                        # 0.9 / 3
    d, r = minmax_observer(np.array([-0.6, 0.9], np.float32), 2, "asymmetric")
    assert d.item() == pytest.approx(0.5, rel=1e-6) and r.item() == pytest.approx(-0.6)


def test_lsq_initial_step_by_hand():
    # LSQ: Δ = 2⟨|x|⟩/√Q_P; x = (1, −3), 4-bit signed Q_P = 7 → Δ = 4/√7
    d, _ = lsq_observer(np.array([1.0, -3.0], np.float32), 4, "signed")
    assert d.item() == pytest.approx(4 / np.sqrt(7.0), rel=1e-6)


def test_weight_quantizer_lsq_gradients_by_hand():
    # 3 bits, Δ = 0.5, range [−3, 3]; W/Δ = v = [1.2, −0.4, 4, −3.48, −3]
    # codes clip(round(v)) = [1, 0, 3, −3, −3]; Ŵ = Δ·code
    # ∂Ŵ/∂Δ: round(v) − v inside = [−0.2, 0.4, ·, ·, 0]; the clip bound outside = [·, ·, 3, −3, ·]
    # g = [1, 2, 3, 4, 5]: ∂L/∂Δ = −0.2 + 0.8 + 9 − 12 + 0 = −2.4; ∂L/∂log Δ = Δ·(−2.4) = −1.2
    # STE: ∂L/∂W = g where −3 ≤ v ≤ 3 (v = −3 exactly is inside), 0 where clipped
    q = WeightQuantizer(3, grad_scale=False)
    q.set_delta(0.5)
    w = np.array([0.6, -0.2, 2.0, -1.74, -1.5], np.float32)
    np.testing.assert_allclose(q.forward(w), [0.5, 0.0, 1.5, -1.5, -1.5], rtol=1e-7)
    grad_w = q.backward(np.array([1.0, 2.0, 3.0, 4.0, 5.0], np.float32))
    np.testing.assert_array_equal(grad_w, [1.0, 2.0, 0.0, 0.0, 5.0])
    assert float(q.log_delta.grad[0]) == pytest.approx(-1.2, rel=1e-5)


def test_both_ends_of_the_grid_are_inside_for_the_ste_by_hand():
    # 3 bits, Δ = 0.5: v = W/Δ = [3, −3] lie exactly on q_hi and q_lo: inside, so ∂L/∂W = g and
    # ∂Ŵ/∂Δ = round(v) − v = 0 (outside it would be the bound ±3: ∂L/∂Δ = 3·1 − 3·2 = −3)
    q = WeightQuantizer(3, grad_scale=False)
    q.set_delta(0.5)
    q.forward(np.array([1.5, -1.5], np.float32))
    np.testing.assert_array_equal(q.backward(np.array([1.0, 2.0], np.float32)), [1.0, 2.0])
    assert float(q.log_delta.grad[0]) == 0.0


def test_lsq_gradient_scale_by_hand():
    # the same with LSQ's g = 1/√(N·Q_P) = 1/√(5·3)
    q = WeightQuantizer(3, grad_scale=True)
    q.set_delta(0.5)
    q.forward(np.array([0.6, -0.2, 2.0, -1.74, -1.5], np.float32))
    q.backward(np.array([1.0, 2.0, 3.0, 4.0, 5.0], np.float32))
    assert float(q.log_delta.grad[0]) == pytest.approx(-1.2 / np.sqrt(15.0), rel=1e-5)


def test_asymmetric_activation_quantizer_lsq_plus_by_hand():
    # 2 bits, Δ = 0.5, β = −0.6 → z = round(1.2) = 1; x/Δ = v = [−1.8, −0.4, 1.2, 2.8]
    # v + z = [−0.8, 0.6, 2.2, 3.8]: inside = [no, yes, yes, no]
    # codes clip(round(v) + z, 0, 3) = [0, 1, 2, 3];  x̂ = Δ (code − z) = [−0.5, 0, 0.5, 1]
    # ∂x̂/∂Δ = round(v) − v inside = [·, 0.4, −0.2, ·], the code (LSQ+) outside = [0, ·, ·, 3]
    # g = [1, 2, 3, 4]: ∂L/∂Δ = 0 + 0.8 − 0.6 + 12 = 12.2 → ∂L/∂log Δ = 6.1
    # ∂x̂/∂β = 1 outside only: ∂L/∂β = 1 + 4 = 5;  ∂L/∂x = g inside = [0, 2, 3, 0]
    q = ActivationQuantizer(2, "asymmetric", grad_scale=False)
    q.set_delta(0.5, r_min=-0.6)
    assert int(q.zero_point()[0]) == 1
    x = np.array([[-0.9, -0.2, 0.6, 1.4]], np.float32)
    np.testing.assert_allclose(q.forward(x), [[-0.5, 0.0, 0.5, 1.0]], rtol=1e-7)
    grad_x = q.backward(np.array([[1.0, 2.0, 3.0, 4.0]], np.float32))
    np.testing.assert_array_equal(grad_x, [[0.0, 2.0, 3.0, 0.0]])
    assert float(q.log_delta.grad[0]) == pytest.approx(6.1, rel=1e-5)
    assert float(q.offset.grad[0]) == 5.0


def test_bias_quantizer_rounds_the_bias_and_snaps_the_logits_by_hand():
    # s = Δ_w Δ_x = 0.5 · 0.25 = 0.125; b/s = (2.4, −1.6) → b̂ = s·round(b/s) = (0.25, −0.25)
    # y = (1, 0.51) + (b̂ − b) = (0.95, 0.46); snapped: s·round(y/s) = s·(8, 4) = (1, 0.5)
    layer = linear(np.ones((2, 3)), b=[0.3, -0.2])
    wq, aq = WeightQuantizer(4), ActivationQuantizer(8, "unsigned")
    wq.set_delta(0.5)
    aq.set_delta(0.25)
    y = np.array([[1.0, 0.51]], np.float32)
    np.testing.assert_allclose(BiasQuantizer(layer, wq, aq).forward(y), [[0.95, 0.46]], rtol=1e-6)
    np.testing.assert_allclose(BiasQuantizer(layer, wq, aq, snap_output=True).forward(y),
                               [[1.0, 0.5]], rtol=1e-7)


def test_integer_flatten_restores_the_float_models_channel_major_order():
    # NHWC codes q[0, h, w, c] = 4h + 2w + c → NCHW flatten: c = 0: 0, 2, 4, 6; c = 1: 1, 3, 5, 7
    q = np.arange(8).reshape(1, 2, 2, 2)
    np.testing.assert_array_equal(IntFlatten().run(q), [[0, 2, 4, 6, 1, 3, 5, 7]])


# ---- the integer model's arithmetic --------------------------------------------------------------
def test_quantize_multiplier_by_hand():
    # M = f·2^e, f ∈ [½, 1): M₀ = round(f·2²⁷), n = 27 − e
    m0, n = quantize_multiplier(np.array([0.75, 3.0, 0.1]))
    np.testing.assert_array_equal(m0, [3 * 2 ** 25, 3 * 2 ** 25, 107374182])  # 0.8·2²⁷ = 107374182.4
    np.testing.assert_array_equal(n, [27, 25, 30])


def test_quantize_multiplier_carry_and_tiny_m_by_hand():
    # M = ½(1 − 2⁻³⁰): f = 1 − 2⁻³⁰, e = −1, round(f·2²⁷) = 2²⁷ — f rounded up to 1.0, so
    # M₀ = 2²⁶ and n = 27 − (−1) − 1 = 27 (M₀ stays in [2²⁶, 2²⁷); M₀·2⁻ⁿ = ½)
    m0, n = quantize_multiplier(np.array([0.5 * (1 - 2.0 ** -30)]))
    assert (int(m0[0]), int(n[0])) == (2 ** 26, 27)
    # M = 2⁻⁴⁰: f = ½, e = −39, n = 27 + 39 = 66 > 62, so M₀ = 2²⁶ loses 4 low bits: 2²², n = 62
    m0, n = quantize_multiplier(np.array([2.0 ** -40]))
    assert (int(m0[0]), int(n[0])) == (2 ** 22, 62)


@pytest.mark.parametrize("fn", [requantize, requantize_exact_float])
def test_requantize_by_hand(fn):
    # M = 0.75 = M₀·2⁻²⁷: acc·M = [7.5, −7.5, 2.25, 3.75, −2.25]; round half up = floor(· + ½)
    # = [8, −7, 2, 4, −2]; + z = 2 → [10, −5, 4, 6, 0]; clip to [−4, 9] → [9, −4, 4, 6, 0]
    m0, n = quantize_multiplier(np.array([0.75]))
    acc = np.array([10, -10, 3, 5, -3], np.int64)       # −3·0.75 = −2.25 → floor(−1.75) = −2
    want = np.array([9, -4, 4, 6, 0])
    if fn is requantize_exact_float:
        acc = acc.astype(np.float32)
    np.testing.assert_array_equal(fn(acc, m0, n, 2, -4, 9), want)


def test_bitpack_by_hand():
    # n = 2: −2, −1, 0, 1 → 10 11 00 01 = 0xB1
    np.testing.assert_array_equal(pack_bits(np.array([-2, -1, 0, 1]), 2), [0xB1])
    # n = 4: −1, 3 → 1111 0011 = 0xF3
    np.testing.assert_array_equal(pack_bits(np.array([-1, 3]), 4), [0xF3])
    # n = 3: 3, −4, 1 → 011 100 001 → 01110000 1(0000000) = 0x70 0x80
    packed = pack_bits(np.array([3, -4, 1]), 3)
    np.testing.assert_array_equal(packed, [0x70, 0x80])
    np.testing.assert_array_equal(unpack_bits(packed, 3, 3), [3, -4, 1])   # −4 = −2^(n−1)
    np.testing.assert_array_equal(unpack_bits(np.array([0x80], np.uint8), 4, 2), [-8, 0])
    np.testing.assert_array_equal(unpack_bits(np.array([0xB1], np.uint8), 2, 4, signed=False),
                                  [2, 3, 0, 1])


# =========================== §3.3 distillation ==================================================
# Two rows, K = 2, T = 2. Row 1: z_t/T = (ln 3, 0) → p_t = (¾, ¼); z_s/T = (0, ln 2) → p_s = (⅓, ⅔).
# Row 2 is row 1 with the classes swapped.
LN2, LN3 = np.log(2.0), np.log(3.0)
Z_T = np.array([[2 * LN3, 0.0], [0.0, 2 * LN3]])
Z_S = np.array([[0.0, 2 * LN2], [2 * LN2, 0.0]])


def test_softmax_with_temperature_by_hand():
    # softmax((ln 4, 0)/2) = softmax(ln 2, 0) = (⅔, ⅓)
    np.testing.assert_allclose(D.softmax_with_temperature(np.array([np.log(4.0), 0.0]), 2.0),
                               [2 / 3, 1 / 3], rtol=1e-12)


def test_soft_target_loss_by_hand():
    # KL(p_t‖p_s) = ¾ ln(9/4) + ¼ ln(3/8);  T²·KL = ln((9/4)³ · 3/8) = ln(2187/512), both rows
    # ∂L/∂z_s = T (p_s − p_t) / N = 2 · (−5/12, 5/12) / 2 = (−5/12, 5/12) (row 2 mirrored)
    loss, grad = D.soft_target_loss(Z_S, Z_T, 2.0)
    assert loss == pytest.approx(np.log(2187 / 512), rel=1e-12)
    np.testing.assert_allclose(grad, [[-5 / 12, 5 / 12], [5 / 12, -5 / 12]], rtol=1e-12)


def test_distillation_loss_mixes_with_alpha_by_hand():
    # CE of row 1 with y = 1: p = softmax(0, 2 ln 2) = (⅕, ⅘) → −ln ⅘; gradient (⅕, −⅕)/N
    # α = 0.25: L = ¼ ln(2187/512) + ¾ ln(5/4)
    z_s, z_t = Z_S[:1], Z_T[:1]
    loss, grad = D.distillation_loss(z_s, z_t, np.array([1]), 2.0, 0.25)
    assert loss == pytest.approx(0.25 * np.log(2187 / 512) + 0.75 * np.log(5 / 4), rel=1e-12)
    # soft gradient 2·(⅓ − ¾, ⅔ − ¼) = (−⅚, ⅚)
    np.testing.assert_allclose(grad, [[0.25 * -5 / 6 + 0.75 * 0.2, 0.25 * 5 / 6 - 0.75 * 0.2]],
                               rtol=1e-12)


def test_hint_loss_by_hand():
    # r(F_s) = F_s Wᵀ with W = [[1, −1]]: r = [[2], [−2]]; diff = r − F_t = [[1], [−2]]
    # L = β mean(diff²) = 0.5 · 2.5 = 1.25; ∂L/∂r = 2β diff / 2 = [[0.5], [−1]]
    # ∂L/∂F_s = ∂L/∂r · W = [[0.5, −0.5], [−1, 1]];  ∂L/∂W = (∂L/∂r)ᵀ F_s = [[1.5, −1.5]]
    reg = linear([[1.0, -1.0]])
    hint = D.HintLoss(reg, "a", "b", beta=0.5)
    loss, g = hint(np.array([[3.0, 1.0], [0.0, 2.0]], np.float32), np.array([[1.0], [0.0]], np.float32))
    assert loss == 1.25
    np.testing.assert_array_equal(g, [[0.5, -0.5], [-1.0, 1.0]])
    np.testing.assert_array_equal(reg.weight.grad, [[1.5, -1.5]])


def test_attention_transfer_by_hand():
    # F_s = (1, 2) on a 1×2 map, F_t = (2, 0): q_t = (1, 0), L = ‖q_s − q_t‖² = 2 − 2 F₁²/√S,
    # S = F₁⁴ + F₂⁴ = 17:  L = 2 − 2/√17
    # ∂L/∂F₁ = −2 (2F₁/√S − 2F₁⁵/S^{3/2}) = −64/(17√17);  ∂L/∂F₂ = 4F₁²F₂³/S^{3/2} = 32/(17√17)
    at = D.AttentionTransferLoss("a", "b", beta=1.0, eps=0.0)
    loss, g = at(np.array([[[[1.0, 2.0]]]]), np.array([[[[2.0, 0.0]]]]))
    assert loss == pytest.approx(2 - 2 / np.sqrt(17), rel=1e-12)
    s = 17 * np.sqrt(17)
    np.testing.assert_allclose(g.reshape(2), [-64 / s, 32 / s], rtol=1e-12)


def test_cross_entropy_by_hand():
    # z = (0, ln 3): p = (¼, ¾); y = 0: L = ln 4, ∂L/∂z = (p − e_y)/N = (−¾, ¾) / 1
    loss, grad = nn.cross_entropy(np.array([[0.0, LN3], [LN3, 0.0]]), np.array([0, 0]))
    assert loss == pytest.approx((np.log(4.0) + np.log(4 / 3)) / 2, rel=1e-12)
    np.testing.assert_allclose(grad, [[-0.375, 0.375], [-0.125, 0.125]], rtol=1e-12)


def test_step_size_on_a_general_grid_by_hand():
    from minicompress.quantize.functional import quantization_mse, step_size
    # Δ = (r_hi − r_lo) / (q_hi − q_lo): (3 − (−1)) / (6 − (−2)) = 0.5 (q_lo ≠ 0 pins its sign)
    assert step_size(-1.0, 3.0, -2, 6).item() == 0.5
    assert step_size(2.0, 2.0, 0, 3).item() == 1.0             # empty range: Δ = 1
    # ⟨(x − x̂)²⟩ = ((1 − 0)² + (2 − 4)²) / 2 = 2.5
    assert quantization_mse([1.0, 2.0], [0.0, 4.0]) == 2.5


def test_l1_penalty_with_lambda_zero_is_zero_and_negative_lambda_is_refused():
    from minicompress.prune.objective import l1_penalty
    w, m = np.array([[1.0, -2.0]]), np.array([[0.0, 1.0]])
    value, d_w, d_m = l1_penalty(w, m, 0.0)                      # λ = 0 is allowed: no penalty
    assert value == 0 and not d_w.any() and not d_m.any()
    with pytest.raises(ValueError, match="λ"):
        l1_penalty(w, m, -1e-9)


def test_softmax_subtracts_the_max_and_works_along_the_last_axis():
    # softmax(z) = exp(z − max z)/Σ: for z = 1000 without the shift exp overflows (inf/inf)
    big = np.array([[1000.0, 1000.0], [0.0, np.log(3.0)]])
    with np.errstate(all="raise"):
        np.testing.assert_allclose(nn.softmax(big), [[0.5, 0.5], [0.25, 0.75]], rtol=1e-12)
        np.testing.assert_allclose(nn.log_softmax(big), np.log([[0.5, 0.5], [0.25, 0.75]]),
                                   rtol=1e-12)


def test_cross_entropy_refuses_a_label_equal_to_the_number_of_classes():
    logits = np.zeros((2, 3))
    nn.cross_entropy(logits, np.array([0, 2]))                   # labels 0 … K − 1 are fine
    with pytest.raises(ValueError):
        nn.cross_entropy(logits, np.array([0, 3]))


def test_a_one_step_cubic_schedule_reaches_the_final_sparsity_at_step_one():
    # n = max(1, steps // every) = 1: s_1 = s_f + (s_i − s_f)(1 − 1/1)³ = s_f
    schedule = prune.CubicSchedule(0.0, 0.8, 1)
    assert schedule(0) == 0.0 and schedule(1) == pytest.approx(0.8)


def test_sparsity_counts_zero_effective_weights_over_all_prunable_layers_by_hand():
    # fc1: 2 of 4 weights zero; fc2: 1 of 2 masked to zero → (2 + 1) / (4 + 2) = 0.5;
    # fc2 alone: 1 / 2
    model = nn.Sequential(fc1=linear([[0.0, 1.0], [2.0, 0.0]]), relu=nn.ReLU(),
                          fc2=linear([[3.0, 4.0]]))
    prune.attach_mask(model.fc2)
    prune.get_mask(model.fc2).set(np.array([[True, False]]))
    assert prune.sparsity(model) == 0.5
    assert prune.sparsity(model, ["fc2"]) == 0.5
    assert prune.sparsity(model, ["fc1", "fc2"]) == 0.5
    prune.get_mask(model.fc2).set(np.array([[True, True]]))
    assert prune.sparsity(model) == pytest.approx(2 / 6)


def test_unsigned_and_asymmetric_bounds_are_0_to_2n_minus_1():
    assert integer_bounds(4, "unsigned") == (0, 15)             # 2⁴ − 1 (2·2 − 1 = 3 at n = 2 too)
    assert integer_bounds(8, "asymmetric") == (0, 255)


def test_minmax_asymmetric_range_always_contains_zero_by_hand():
    # x = [1, 4]: r_min = min(1, 0) = 0, r_max = 4 → Δ = 4/3 at 2 bits, r_min = 0
    d, r = minmax_observer(np.array([1.0, 4.0], np.float32), 2, "asymmetric")
    assert d.item() == pytest.approx(4 / 3, rel=1e-6) and r.item() == 0.0


def test_percentile_observer_by_hand():
    from minicompress.quantize.observers import percentile_observer
    # x = −200 … 800 (1001 values, spacing 1): the p-th percentile is −200 + 10·p (linear)
    x = (np.arange(1001) - 200).astype(np.float32)
    d, r = percentile_observer(x, 8, "asymmetric", percentile=99)
    assert r.item() == pytest.approx(-190) and d.item() == pytest.approx(980 / 255, rel=1e-6)
    d, _ = percentile_observer(x + 200, 8, "unsigned", percentile=99)      # r_max = 990
    assert d.item() == pytest.approx(990 / 255, rel=1e-6)
    d, _ = percentile_observer(x, 8, "signed", percentile=100)              # = min–max: 800/127
    assert d.item() == pytest.approx(800 / 127, rel=1e-6)
    percentile_observer(x, 8, "signed", percentile=50.5)                  # (50, 100]: open at 50
    for p in (50, 100.5):
        with pytest.raises(ValueError, match=r"\(50, 100\]"):
            percentile_observer(x, 8, "signed", percentile=p)


def test_mse_observer_by_hand():
    from minicompress.quantize.observers import mse_observer
    # signed 2-bit narrow grid {−1, 0, 1}: Δ = α·1; x = [½, ½, ½, ½, 1], α ∈ {¼, ½, ¾, 1}
    # ⟨(x − x̂)²⟩: α = ¼ → 0.1625, ½ → 0.05, ¾ → 0.0625, 1 → 0.2 (½/1 rounds to 0, half to even)
    x = np.array([0.5, 0.5, 0.5, 0.5, 1.0], np.float32)
    d, r = mse_observer(x, 2, "signed", grid=4)
    assert d.item() == 0.5 and r is None


def test_asymmetric_fake_quantize_and_lsq_offset_by_hand():
    from minicompress.quantize.observers import fake_quantize
    # Δ = ½, r_min = −½ at 2 bits: z = round(½/½) = 1, codes 0…3 hold −½, 0, ½, 1 exactly
    x = np.array([-0.5, 0.0, 0.5, 1.0], np.float32)
    np.testing.assert_array_equal(fake_quantize(x, np.float32(0.5), 2, "asymmetric",
                                                np.float32(-0.5)), x)
    # LSQ asymmetric: r_min = −1, ⟨|x − r_min|⟩ = ⟨0, 2, 4⟩ = 2, Δ = 2·2/√3
    d, r = lsq_observer(np.array([-1.0, 1.0, 3.0], np.float32), 2, "asymmetric")
    assert r.item() == -1.0 and d.item() == pytest.approx(4 / np.sqrt(3), rel=1e-6)


def test_accumulator_bound_by_hand():
    from minicompress.quantize.integer_steps import IntLayer
    # B = max_o Σ_k |q_w| · max|q_x − z| + max|q_b| = max(3 + 4, 1 + 2)·max(|0 − 10|, |255 − 10|)
    #   + 13 = 7·245 + 13 = 1728; z = 10 on a linear layer also bounds the folded form
    #   Σ q_w q_x + (q_b − z·Σq_w), q_b − z·Σq_w = [7 + 10, −13 − 30]: 7·255 + 43 = 1828, larger
    layer = IntLayer("linear", (np.array([[3, -4], [1, 2]]), 8, np.ones(2)), np.array([7, -13]),
                     (np.float32(1), 10, 0, 255), {"out_scale": np.ones(2, np.float32)})
    assert layer.bound == max(7 * 245 + 13, 7 * 255 + 43)
    # z = 0: the plain form only, 7·255 + 13
    layer = IntLayer("linear", (np.array([[3, -4], [1, 2]]), 8, np.ones(2)), np.array([7, -13]),
                     (np.float32(1), 0, 0, 255), {"out_scale": np.ones(2, np.float32)})
    assert layer.bound == 7 * 255 + 13


def test_mse_observer_asymmetric_by_hand():
    from minicompress.quantize.observers import mse_observer
    # x = [−1, 0, 1, 2], 2 bits, α ∈ {½, 1}: α = ½ → Δ = ½, r_min = −½, codes [0, 1, 3, 3],
    # x̂ = [−½, 0, 1, 1], error (¼ + 1)/4; α = 1 → Δ = 1, r_min = −1, exact: the second wins
    d, r = mse_observer(np.array([-1.0, 0.0, 1.0, 2.0], np.float32), 2, "asymmetric", grid=2)
    assert d.item() == 1.0 and r.item() == -1.0
    # x = [0, −½, −1½, 1½, ½, −½]: α = ½ (Δ = ½, r_min = −¾, z = 2) and α = 1 (Δ = 1,
    # r_min = −1½, z = 2) both err by 1¼/6 (in quarters, exact); a tie keeps the first, α = ½,
    # with its own r_min
    x = np.array([0.0, -0.5, -1.5, 1.5, 0.5, -0.5], np.float32)
    d, r = mse_observer(x, 2, "asymmetric", grid=2)
    assert d.item() == 0.5 and r.item() == -0.75


def test_a_conv_step_needs_images_of_at_least_k_minus_2p():
    from minicompress.quantize.integer_steps import IntLayer, sample_shape_problem
    # k = 5, p = 1: 3x3 images (3 + 2 = 5) are enough, 2x3 are not; the shape here is (H, W, C)
    conv = IntLayer("conv2d", (np.ones((2, 1, 5, 5), int), 8, np.ones(2)), np.zeros(2),
                    (np.float32(1), 0, 0, 255), {"out_scale": np.ones(2, np.float32)}, padding=1)
    assert sample_shape_problem([conv], (3, 3, 1)) is None
    for shape in ((2, 3, 1), (3, 2, 1)):
        assert "images of at least 3x3 (a 5x5 kernel, padding 1)" in sample_shape_problem([conv], shape)
