"""Fake quantizers: forward values, STE / LSQ / LSQ+ gradients against central differences
(float64), composition with a pruning mask, prepare / calibrate / learned Δ."""
import copy

import numpy as np
import pytest

from gradcheck import numerical_grad
from minicompress import models, nn, optim, prune
from minicompress.quantize import (ActivationQuantizer, WeightQuantizer, calibrate, prepare,
                                   quantizer_parameters, quantizers, train_quantized)
from minicompress.train import TrainConfig, evaluate, fit


def _float64(q):
    for p in q.parameters():
        p.data = p.data.astype(np.float64)
        p.grad = np.zeros_like(p.data)
    return q


def _away_from_kinks(u, lo, hi, rng, margin=0.05):
    """Move values so that u is not within `margin` of a rounding tie (k + 0.5) nor of a bound."""
    frac = u - np.floor(u)
    u = np.where(np.abs(frac - 0.5) < margin, u + 2 * margin, u)
    for b in (lo, hi):
        u = np.where(np.abs(u - b) < margin, u + 3 * margin, u)
    return u


def _surrogate_check(q, x, rng, offset=False):
    """Analytic gradients == central differences of the STE surrogate
    Σ r · [Δ·(clip((x − β)/Δ, q_lo', q_hi') + c·inside) + β], c = round(v) − v frozen."""
    y = q.forward(x)
    r = rng.standard_normal(y.shape)
    q.zero_grad()
    dx = q.backward(r)
    v, code, z, inside, _ = q._cache
    c = (np.rint(v) - v) * inside
    axes = (-1,) + (1,) * (x.ndim - 1) if getattr(q, "per_channel", False) else ()
    lo, hi = q.q_lo, q.q_hi

    def surrogate(xx, log_delta, beta):
        delta = np.exp(log_delta).reshape(axes) if axes else np.exp(log_delta)[0]
        u = np.clip((xx - beta) / delta, lo, hi)
        return float(np.sum(r * (delta * (u + c) + beta)))

    ld = q.log_delta.data.copy()
    beta = q.offset.data.copy()[0] if offset else 0.0
    # the forward used β̃ = −Δz; the check is made at β = β̃ (the tests choose such a β)
    np.testing.assert_allclose(y, np.exp(ld).reshape(axes or (1,)) * (code - z) if axes
                               else np.exp(ld)[0] * (code - z))
    xs = x.copy()
    np.testing.assert_allclose(dx, numerical_grad(lambda: surrogate(xs, ld, beta), xs), atol=1e-6)
    np.testing.assert_allclose(q.log_delta.grad, numerical_grad(lambda: surrogate(x, ld, beta), ld),
                               rtol=1e-6, atol=1e-6, err_msg="∂L/∂log Δ")
    if offset:
        b = np.array([beta])
        np.testing.assert_allclose(q.offset.grad, numerical_grad(
            lambda: surrogate(x, ld, b[0]), b), rtol=1e-6, atol=1e-6, err_msg="∂L/∂β")


@pytest.mark.parametrize("n_bits", [2, 3, 8])
def test_weight_quantizer_grads(rng, n_bits):
    q = _float64(WeightQuantizer(n_bits, grad_scale=False))
    delta = 0.3
    q.set_delta(delta)
    u = _away_from_kinks(rng.uniform(-2 ** (n_bits - 1) - 3, 2 ** (n_bits - 1) + 3, (4, 5)),
                         q.q_lo, q.q_hi, rng)
    _surrogate_check(q, u * delta, rng)


def test_weight_quantizer_per_channel_grads(rng):
    q = _float64(WeightQuantizer(3, per_channel=True, out_channels=3, grad_scale=False))
    deltas = np.array([0.1, 0.5, 2.0])
    q.set_delta(deltas)
    u = _away_from_kinks(rng.uniform(-6, 6, (3, 2, 2, 2)), q.q_lo, q.q_hi, rng)
    _surrogate_check(q, u * deltas.reshape(-1, 1, 1, 1), rng)


@pytest.mark.parametrize("kind", ["unsigned", "asymmetric"])
def test_activation_quantizer_grads(rng, kind):
    q = _float64(ActivationQuantizer(3, kind, grad_scale=False))
    delta = 0.25
    # β = −Δ·z with z = 2 an integer, so the forward's β̃ equals β
    q.set_delta(delta, r_min=-2 * delta if kind == "asymmetric" else None)
    z = 2 if kind == "asymmetric" else 0
    u = _away_from_kinks(rng.uniform(-4, 11, (6, 3)), q.q_lo - z, q.q_hi - z, rng)
    _surrogate_check(q, u * delta, rng, offset=kind == "asymmetric")


def test_clipped_values_exact_gradient(rng):
    """Where every value is clipped, x̂ = Δ·bound is genuinely differentiable: the analytic
    gradients must equal central differences of the *real* forward, not just of a surrogate."""
    q = _float64(WeightQuantizer(4, grad_scale=False))
    q.set_delta(0.1)
    w = np.concatenate([rng.uniform(1.0, 3.0, 5), -rng.uniform(1.0, 3.0, 5)])  # |w| > 0.7
    r = rng.standard_normal(w.shape)
    q.forward(w)
    q.zero_grad()
    dw = q.backward(r)
    np.testing.assert_array_equal(dw, 0.0)       # STE: zero gradient where clipped
    f = lambda: float(np.sum(r * q.forward(w)))  # noqa: E731
    np.testing.assert_allclose(q.log_delta.grad, numerical_grad(f, q.log_delta.data), rtol=1e-7)


def test_grad_scale(rng):
    """LSQ's gradient scale g = 1/√(N·Q_P) multiplies ∂L/∂Δ and nothing else."""
    w = rng.standard_normal((6, 7))
    r = rng.standard_normal((6, 7))
    grads = {}
    for scale in (False, True):
        q = _float64(WeightQuantizer(4, grad_scale=scale))
        q.set_delta(0.2)
        q.forward(w)
        grads[scale] = (q.backward(r), q.log_delta.grad.copy())
    np.testing.assert_array_equal(grads[False][0], grads[True][0])
    np.testing.assert_allclose(grads[True][1], grads[False][1] / np.sqrt(42 * 7))


def test_delta_positive_by_construction():
    q = WeightQuantizer(4)
    q.log_delta.data[...] = -80.0       # any real log Δ is a valid Δ > 0
    assert q.delta[0] > 0
    with pytest.raises(ValueError, match="positive"):
        q.set_delta(0.0)
    with pytest.raises(ValueError, match="n_bits"):
        WeightQuantizer(1)
    with pytest.raises(ValueError, match="n_bits"):
        ActivationQuantizer(17)


def test_composes_with_mask(rng):
    """W_eff = quant(W ⊙ m): pruned weights stay exactly 0, and the chain rule runs through both."""
    layer = nn.Linear(6, 4, rng=rng)
    mask = (rng.random((4, 6)) > 0.5).astype(np.float32)
    prune.attach_mask(layer).set(mask)
    wq = layer.add_weight_transform(WeightQuantizer(3, grad_scale=False))
    wq.set_delta(0.05)
    w_eff = layer.effective_weight()
    assert np.all(w_eff[mask == 0] == 0)
    np.testing.assert_allclose(w_eff, 0.05 * np.clip(np.rint(layer.weight.data * mask / 0.05), -3, 3),
                               rtol=1e-6)
    # small integers: g.T @ x is exact in float32 whatever the summation order (sums < 2^24)
    x = rng.integers(-4, 5, (5, 6)).astype(np.float32)
    g = rng.integers(-4, 5, (5, 4)).astype(np.float32)
    layer.zero_grad()
    layer.forward(x)
    layer.backward(g)
    v = layer.weight.data * mask / 0.05
    inside = (v >= -3) & (v <= 3)
    np.testing.assert_array_equal(layer.weight.grad, (g.T @ x) * inside * mask)
    # Δ's gradient is the quantizer's own, computed on W ⊙ m
    q2 = WeightQuantizer(3, grad_scale=False)
    q2.set_delta(0.05)
    q2.forward(layer.weight.data * mask)
    q2.backward(g.T @ x)
    np.testing.assert_allclose(wq.log_delta.grad, q2.log_delta.grad, rtol=1e-5)


def test_prepare_structure(digits, rng):
    (xtr, _), _ = digits
    model = prepare(models.lenet5(8, rng=rng), 4, 4, example_input=xtr - xtr.min())
    names = model.names()
    assert names[0] == "quant_input" and model["quant_input"].kind == "unsigned"  # input ≥ 0
    assert [n for n in names if n.endswith("_quant") and n.startswith("relu")] == [
        "relu1_quant", "relu2_quant", "relu3_quant", "relu4_quant"]
    weights, acts = quantizers(model)
    assert [w[0] for w in weights] == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert len(acts) == 5
    with pytest.raises(ValueError, match="already"):
        prepare(model, 4, 4, input_kind="unsigned")
    neg = prepare(models.lenet300(8, rng=rng), 8, 8, example_input=xtr)  # normalised: < 0 too
    assert neg["quant_input"].kind == "asymmetric"


@pytest.fixture(scope="module")
def trained_digits():
    from minicompress.data import load_dataset
    (xtr, ytr), (xte, yte) = load_dataset("digits")
    rng = np.random.default_rng(0)
    model = models.lenet300(8, rng=rng)
    fit(model, optim.Adam(model.parameters(), lr=1e-3), (xtr, ytr), TrainConfig(10, rng))
    return model, (xtr, ytr), (xte, yte)


def test_ptq_learned_delta_lowers_loss_weights_frozen(trained_digits):
    """§3.2.1 steps 4–5: Adam on log Δ alone lowers the task loss of a 2-bit model; weights fixed."""
    dense, (xtr, ytr), _ = trained_digits
    model = prepare(copy.deepcopy(dense), 2, 2, example_input=xtr)
    calibrate(model, xtr[:500])
    w_before = {k: v.copy() for k, v in model.state_dict().items() if k.endswith("weight")}
    d_before = [p.data.copy() for p in quantizer_parameters(model)]
    loss_before = evaluate(model, xtr, ytr)["loss"]
    train_quantized(model, (xtr, ytr), TrainConfig(3, np.random.default_rng(1)), lr_quant=1e-2)
    assert evaluate(model, xtr, ytr)["loss"] < 0.8 * loss_before
    for k, v in w_before.items():
        np.testing.assert_array_equal(model.state_dict()[k], v)
    assert any(not np.array_equal(p.data, d) for p, d in zip(quantizer_parameters(model), d_before))


def test_calibrate_needs_quantizers(trained_digits):
    dense, (xtr, _), _ = trained_digits
    with pytest.raises(ValueError, match="prepare"):
        calibrate(copy.deepcopy(dense), xtr[:10])
    model = prepare(copy.deepcopy(dense), 8, 8, example_input=xtr)
    with pytest.raises(RuntimeError, match="calibrate"):
        model(xtr[:4])


# ---- one copy of each formula ----------------------------------------------------------------
def test_the_rounding_of_functional_is_the_rounding_of_every_quantizer(monkeypatch):
    """Change round() in functional.py (say, to 四舍五入 or to floor) and the fake quantizers, the
    observers and the document's equations all change with it: there is no second copy."""
    from minicompress.quantize import functional, observers
    w = np.array([[0.34, -0.14, 0.5], [0.1, -0.35, 0.95]], np.float32)  # w/Δ = 1.7, −0.7, ...
    wq, aq = WeightQuantizer(3), ActivationQuantizer(3, "asymmetric")
    wq.set_delta(0.2)
    aq.set_delta(0.2, r_min=-0.35)   # z = round(1.75)

    def outputs():
        return [wq.forward(w), wq.codes(w), aq.forward(w), aq.zero_point(),
                observers.fake_quantize(w, np.float32(0.2), 3),
                functional.symmetric_quantize(w, 3, delta=0.2)[0],
                functional.affine_quantize(w, 3, 0.2, 2)]

    before = outputs()
    monkeypatch.setattr(functional, "round_half_even", np.floor)
    after = outputs()
    for i, (a, b) in enumerate(zip(before, after)):
        assert not np.array_equal(a, b), f"output {i} did not follow functional's rounding"
    # and what floor gives is what the grid formula says: Δ·(clip(⌊w/Δ⌋ + z) − z)
    np.testing.assert_allclose(after[0], 0.2 * np.clip(np.floor(w / np.float32(0.2)), -3, 3),
                               rtol=1e-6)
