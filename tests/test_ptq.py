"""Post-training rounding: AdaRound (rectified sigmoid, regulariser, hand-written gradient) and
GPTQ (the optimal-brain-quantizer update by hand, the Cholesky form), and both on real models:
the chosen codes survive conversion to the integer model and an artifact file."""

import numpy as np
import pytest

from gradcheck import numerical_grad, rel_error
from minicompress import models, nn, optim
from minicompress.quantize import calibrate, convert, prepare
from minicompress.quantize.adaround import (AdaRoundConfig, adaround, adaround_codes,
                                            adaround_objective, beta_schedule, initial_v,
                                            inverse_rectified_sigmoid, rectified_sigmoid,
                                            rectified_sigmoid_grad, rounding_regularizer,
                                            rounding_regularizer_grad, soft_quantize)
from minicompress.quantize.gptq import (damped_hessian, gptq, gptq_codes, inverse_cholesky_upper,
                                       obq_step)
from minicompress.quantize.layerwise import (input_gram, layer_inputs, nearest_codes,
                                             reconstruction_error, weight_matrix)
from minicompress.data import standardization
from minicompress.serialize import input_spec, load_integer_model, save_integer_model
from minicompress.train import TrainConfig, fit, predict


# ---- AdaRound pieces -------------------------------------------------------------------------
def test_rectified_sigmoid_by_hand():
    # σ(0) = ½ → ½·1.2 − 0.1 = ½ ; σ(±10) ≈ 1, 0 → 1.1 and −0.1, clipped to 1 and 0
    np.testing.assert_allclose(rectified_sigmoid(np.array([0.0, 10.0, -10.0])), [0.5, 1.0, 0.0])
    # σ(ln 3) = ¾ → 0.9 − 0.1 = 0.8
    np.testing.assert_allclose(rectified_sigmoid(np.log(3.0)), 0.8)
    h = np.array([0.0, 0.1, 0.5, 0.93, 1.0])
    np.testing.assert_allclose(rectified_sigmoid(inverse_rectified_sigmoid(h)), h, atol=1e-12)
    # the clip is active (derivative 0) where the stretched sigmoid leaves [0, 1]
    assert rectified_sigmoid_grad(np.array([10.0]))[0] == 0
    np.testing.assert_allclose(rectified_sigmoid_grad(0.0), 1.2 * 0.25)


def test_rounding_regularizer_by_hand():
    h = np.array([0.0, 1.0, 0.5, 0.25])
    # β = 2: 1 − |2h − 1|² = 0, 0, 1, 1 − ¼ = ¾  → 1.75
    assert rounding_regularizer(h, 2) == pytest.approx(1.75)
    # ∂/∂h = −2β|2h − 1|^(β−1) sign(2h − 1): h = ¼ → −4·½·(−1) = 2 (pushed down, towards 0)
    np.testing.assert_allclose(rounding_regularizer_grad(h, 2), [4.0, -4.0, 0.0, 2.0])


def test_beta_schedule_warmup_then_linear():
    c = AdaRoundConfig(iterations=100, warmup=0.2, beta_start=20, beta_end=2, reg_weight=0.01)
    assert beta_schedule(0, c) == (20, 0.0) and beta_schedule(19, c) == (20, 0.0)
    assert beta_schedule(20, c) == (20, 0.01)
    assert beta_schedule(60, c)[0] == pytest.approx(11.0)
    assert beta_schedule(99, c)[0] == pytest.approx(2 + 18 / 80)


def _layer_problem(rng, o=4, k=6, rows=40):
    """A random layer W (O, K), correlated inputs X (rows, K) and H = XᵀX/rows (float64)."""
    x = rng.normal(size=(rows, k)) @ rng.normal(size=(k, k))
    return rng.normal(size=(o, k)), x, x.T @ x / rows


def test_initial_v_reproduces_the_weight(rng):
    w, _, _ = _layer_problem(rng)
    delta = np.full((4, 1), 0.3)
    w_soft, _ = soft_quantize(np.floor(w / delta), rectified_sigmoid(initial_v(w, delta)), delta,
                              -100, 100)
    np.testing.assert_allclose(w_soft, w, atol=1e-12)


@pytest.mark.parametrize("beta,reg_weight", [(20.0, 0.0), (3.0, 0.1)])
def test_adaround_gradient_matches_central_differences(rng, beta, reg_weight):
    """The hand-written ∂L/∂V, in float64, including weights outside the grid (clip active)."""
    w, _, h = _layer_problem(rng)
    delta = rng.uniform(0.2, 0.5, size=(4, 1))          # per output channel
    v = rng.normal(size=w.shape)
    # keep every h strictly inside (0, 1) and away from the kinks, so L is smooth at v
    v = np.clip(v, -1.5, 1.5)
    q_lo, q_hi = -3, 3                                   # |W/Δ| up to ~10: many are clipped

    def loss():
        return adaround_objective(v, w, h, delta, (q_lo, q_hi), beta, reg_weight)[0]

    _, grad = adaround_objective(v, w, h, delta, (q_lo, q_hi), beta, reg_weight)
    s = np.floor(w / delta) + rectified_sigmoid(v)
    assert np.any((s < q_lo) | (s > q_hi)) and np.any((s > q_lo) & (s < q_hi))
    assert rel_error(grad, numerical_grad(loss, v)) < 1e-6


def test_adaround_beats_round_to_nearest_on_a_layer(rng):
    w, _, h = _layer_problem(rng, o=8, k=12, rows=60)
    delta = np.full((1, 1), 0.4)
    codes = adaround_codes(w, h, delta, -7, 7, AdaRoundConfig(iterations=500, reg_weight=0.1))
    # each code is ⌊w/Δ⌋ or ⌊w/Δ⌋ + 1
    assert set(np.unique(codes - np.floor(w / delta))) <= {0.0, 1.0}
    rtn = nearest_codes(w, delta, -7, 7)
    assert not np.array_equal(codes, rtn)
    assert reconstruction_error(w, delta * codes, h) < reconstruction_error(w, delta * rtn, h)


# ---- GPTQ ----------------------------------------------------------------------------------
def test_gptq_one_row_by_hand():
    """A 1×3 layer, Δ = 1, no damping: the optimal-brain-quantizer steps written out.

    H = [[2, 1, 0], [1, 2, 1], [0, 1, 2]],  H⁻¹ = ¼·[[3, −2, 1], [−2, 4, −2], [1, −2, 3]].
    w = (0.4, 0.3, 0.2); round-to-nearest gives (0, 0, 0).

    column 1: q₁ = 0, error w₁ − q₁ = 0.4;
              w₂ += −0.4·H⁻¹₁₂/H⁻¹₁₁ = −0.4·(−½)/(¾) = +4/15  → w₂ = 17/30 ≈ 0.567
              w₃ += −0.4·H⁻¹₁₃/H⁻¹₁₁ = −0.4·(¼)/(¾)  = −2/15  → w₃ = 1/15
    column 2: q₂ = round(17/30) = 1 (round-to-nearest had 0), error 17/30 − 1 = −13/30;
              H restricted to {2, 3} is [[2, 1], [1, 2]], its inverse ⅓·[[2, −1], [−1, 2]]:
              w₃ += −(−13/30)·(−⅓)/(⅔) = −13/60  → w₃ = 1/15 − 13/60 = −0.15
    column 3: q₃ = round(−0.15) = 0.
    Output error (w − q)H(w − q)ᵀ: GPTQ e = (0.4, −0.7, 0.2) → 0.54; nearest e = w → 0.94.
    """
    w = np.array([[0.4, 0.3, 0.2]])
    h = np.array([[2.0, 1.0, 0.0], [1.0, 2.0, 1.0], [0.0, 1.0, 2.0]])
    codes = gptq_codes(w, h, np.array([[1.0]]), -7, 7, damp=0.0)
    np.testing.assert_array_equal(codes, [[0, 1, 0]])
    assert reconstruction_error(w, codes, h) == pytest.approx(0.54)
    assert reconstruction_error(w, nearest_codes(w, 1.0, -7, 7), h) == pytest.approx(0.94)
    # the general form of the first update, for another H and w (no special fractions)
    h2 = np.array([[2.0, 0.8, 0.3], [0.8, 1.5, -0.4], [0.3, -0.4, 1.0]])
    g = np.linalg.inv(h2)
    w2 = np.array([[0.62, -0.31, 0.18]])
    q1 = 0.5                                     # 0.62/0.25 = 2.48 → code 2
    moved = w2[0, 1:] - (0.62 - q1) * g[0, 1:] / g[0, 0]
    g23 = np.linalg.inv(h2[1:, 1:])
    q2 = 0.25 * np.round(moved[0] / 0.25)
    w3 = moved[1] - (moved[0] - q2) * g23[0, 1] / g23[0, 0]
    codes2 = gptq_codes(w2, h2, np.array([[0.25]]), -7, 7, damp=0.0)
    np.testing.assert_allclose(0.25 * codes2, [[q1, q2, 0.25 * np.round(w3 / 0.25)]])


def test_cholesky_rows_are_the_obq_updates(rng):
    """Row i of U (H⁻¹ = UᵀU, U upper) is [H_F⁻¹]_{i,F}/√[H_F⁻¹]_ii for F = {i, …, K}."""
    _, _, h = _layer_problem(rng, k=5)
    u = inverse_cholesky_upper(h)
    np.testing.assert_allclose(u.T @ u, np.linalg.inv(h), rtol=1e-10)
    for i in range(5):
        g = np.linalg.inv(h[i:, i:])
        np.testing.assert_allclose(u[i, i:], g[0] / np.sqrt(g[0, 0]), rtol=1e-9)


def test_damping_and_dead_inputs():
    h = np.diag([4.0, 0.0, 2.0])
    hd, dead = damped_hessian(h, 0.01)
    np.testing.assert_array_equal(dead, [False, True, False])
    # dead input: H_ii = 1; then λ = 0.01·mean(4, 1, 2) added to the diagonal
    np.testing.assert_allclose(np.diag(hd), np.array([4.0, 1.0, 2.0]) + 0.07 / 3)
    codes = gptq_codes(np.array([[0.3, 0.9, -0.2]]), h, np.array([[0.1]]), -7, 7)
    assert codes[0, 1] == 0           # a dead input's weight is dropped
    with pytest.raises(ValueError, match="square"):
        damped_hessian(np.ones((2, 3)))


def test_gptq_error_at_most_round_to_nearest(rng):
    for trial in range(5):
        w, _, h = _layer_problem(rng, o=16, k=24, rows=100)
        delta = np.abs(w).max(axis=1, keepdims=True) / 3
        codes = gptq_codes(w, h, delta, -3, 3, damp=0.0)
        rtn = nearest_codes(w, delta, -3, 3)
        assert reconstruction_error(w, delta * codes, h) <= reconstruction_error(w, delta * rtn, h)


# ---- on models: Linear and Conv2d, fake model = integer model = artifact ---------------------
def _trained(name, digits, seed=0):
    (xtr, ytr), _ = digits
    rng = np.random.default_rng(seed)
    model = models.build(name, 8, rng=rng)
    fit(model, optim.Adam(model.parameters(), lr=3e-3), (xtr, ytr),
        TrainConfig(3, rng, batch_size=64, progress=False))
    return model


def test_conv_gram_gives_the_output_error(digits):
    """For a Conv2d, Σ_o e_o H e_oᵀ with H from the im2col rows equals the mean squared change of
    the conv's output per output pixel: the (kh, kw, C) column order matches the layer's."""
    model = _trained("lenet5", digits)
    (xtr, _), _ = digits
    x = layer_inputs(model, model.conv2, xtr[:50].astype(np.float64))
    conv = model.conv2
    rng = np.random.default_rng(1)
    w = weight_matrix(conv).astype(np.float64)
    e = rng.normal(scale=0.01, size=w.shape)
    y0 = conv(x.astype(np.float32)).astype(np.float64)
    conv.weight.data = conv.weight.data - (e.reshape(16, 3, 3, 6).transpose(0, 3, 1, 2)
                                           ).astype(np.float32)
    y1 = conv(x.astype(np.float32)).astype(np.float64)
    e32 = w - weight_matrix(conv).astype(np.float64)       # the error actually applied
    rows = y0.shape[0] * y0.shape[2] * y0.shape[3]
    direct = np.sum((y0 - y1) ** 2) / rows
    assert reconstruction_error(w, w - e32, input_gram(conv, x)) == pytest.approx(direct, rel=1e-4)


@pytest.mark.parametrize("name,method", [("lenet300", "gptq"), ("lenet5", "adaround"),
                                         ("lenet5", "gptq")])
def test_ptq_model_converts_and_saves(digits, tmp_path, name, method):
    (xtr, _), (xte, _) = digits
    model = _trained(name, digits)
    prepare(model, 3, 8, per_channel=True, input_kind="asymmetric")
    calibrate(model, xtr[:200], weight_method="mse")
    before = {n: weight_matrix(m).copy() for n, m in model.named_children()
              if isinstance(m, (nn.Linear, nn.Conv2d))}
    if method == "gptq":
        errors = gptq(model, xtr[:200])
    else:
        errors = adaround(model, xtr[:200], AdaRoundConfig(iterations=60))
    assert set(errors) == set(before)
    for n, w in before.items():
        wq = getattr(model, n).weight_transforms[0]
        # the weight is now Δ·q on the grid, and the quantizer returns those codes unchanged
        codes = wq.codes(getattr(model, n).weight.data)
        np.testing.assert_allclose(wq.forward(getattr(model, n).weight.data),
                                   getattr(model, n).weight.data)
        assert np.abs(codes).max() <= 3
    im = convert(model)
    fake = predict(model, xte).argmax(1)
    assert np.mean(im.forward(xte).argmax(1) == fake) > 0.99
    im.input = input_spec(xte.shape[1:], *standardization("digits"))
    path = save_integer_model(im, tmp_path / "m.npz", meta={"dataset": "digits"})
    np.testing.assert_array_equal(load_integer_model(path).forward(xte), im.forward(xte))


def test_masked_layer_is_refused(digits):
    from minicompress.prune import attach_mask
    (xtr, _), _ = digits
    model = _trained("lenet300", digits)
    attach_mask(model.fc1)
    prepare(model, 4, 8, input_kind="asymmetric")
    calibrate(model, xtr[:100])
    with pytest.raises(ValueError, match="exactly one weight transform"):
        gptq(model, xtr[:100])


def test_exercise_values_agree_with_the_library():
    """The hand-computed cases of notebook 10's exercises, recomputed by the library."""
    from minicompress.exercises import EXERCISES
    for case in EXERCISES["rectified_sigmoid"].cases:
        np.testing.assert_allclose(rectified_sigmoid(case.args["V"]), case.expected[0], atol=1e-7)
    for case in EXERCISES["rounding_regularizer"].cases:
        h, beta = case.args["h"], case.args["beta"]
        assert rounding_regularizer(h, beta) == pytest.approx(case.expected[0])
        np.testing.assert_allclose(rounding_regularizer_grad(h, beta), case.expected[1])
    for case in EXERCISES["gptq_column_update"].cases:
        q, rest = obq_step(**case.args)
        np.testing.assert_array_equal(q, case.expected[0])
        np.testing.assert_allclose(rest, case.expected[1])


def test_gptq_equals_repeated_obq_steps(rng):
    """The Cholesky loop gives the codes of K explicit OBQ steps, each with the inverse of H
    restricted to the weights still free (float64, no damping)."""
    w, _, h = _layer_problem(rng, o=5, k=7, rows=50)
    delta = np.abs(w).max(axis=1, keepdims=True) / 3
    free, codes = w.copy(), []
    for i in range(7):
        q, rest = obq_step(free, np.linalg.inv(h[i:, i:]), delta[:, 0], -3, 3)
        codes.append(q)
        free = rest
    np.testing.assert_array_equal(gptq_codes(w, h, delta, -3, 3, damp=0.0), np.stack(codes, 1))
