"""Adam (document §2.1): pinned to numbers worked out by hand from the five equations."""
import numpy as np
import pytest

from minicompress.nn import Parameter
from minicompress.optim import SGD, Adam


def run(grads, theta0, **kw):
    p = Parameter(np.array(theta0, dtype=np.float32))
    opt = Adam([p], **kw)
    out = []
    for g in grads:
        p.grad[...] = g
        opt.step()
        out.append(p.data.astype(np.float64).copy())
    return out


def test_three_steps_by_hand():
    # θ0 = 1, α = 0.1, β1 = 0.9, β2 = 0.999, ε = 1e-8; gradients 0.5, -1.0, 2.0.
    # t=1: m=0.05, v=0.00025, m̂=0.5, v̂=0.25 → θ = 1 − 0.1·0.5/(0.5+1e-8)                = 0.9
    # t=2: m=0.045−0.1=−0.055, v=0.00024975+0.001=0.00124975,
    #      m̂=−0.055/0.19=−0.289473684, v̂=0.00124975/0.001999=0.625187594
    #      θ = 0.9 + 0.1·0.289473684/0.790688061                                          = 0.93661035
    # t=3: m=−0.0495+0.2=0.1505, v=0.00124850025+0.004=0.00524850025,
    #      m̂=0.1505/0.271=0.555350554, v̂=0.00524850025/0.002997001=1.751250750
    #      θ = 0.93661035 − 0.1·0.555350554/1.323348320                                   = 0.89464479
    thetas = run([0.5, -1.0, 2.0], 1.0, lr=0.1)
    expected = [0.9, 0.93661035, 0.89464479]
    np.testing.assert_allclose([t.item() for t in thetas], expected, atol=2e-7)


def test_first_step_is_lr_times_sign():
    g = np.array([3.0, -1e-3, 250.0, -7.0], dtype=np.float32)
    (theta,) = run([g], np.zeros(4), lr=0.01)
    # m̂₁/(√v̂₁ + ε) = g/(|g| + ε): sign(g) up to a relative ε/|g| (1e-5 for |g| = 1e-3)
    np.testing.assert_allclose(theta, -0.01 * np.sign(g), rtol=2e-5)
    assert np.all(np.abs(theta) <= 0.01)


def test_bias_correction_makes_m_hat_equal_g_at_step_1():
    p = Parameter(np.zeros(3))
    opt = Adam([p], lr=1e-3)
    g = np.array([0.2, -0.4, 0.6], dtype=np.float32)
    p.grad[...] = g
    opt.step()
    s = opt.state[id(p)]
    np.testing.assert_allclose(s["m"] / (1 - 0.9 ** s["t"]), g, rtol=1e-6)
    np.testing.assert_allclose(s["v"] / (1 - 0.999 ** s["t"]), g ** 2, rtol=1e-5)


def _reference(grads, theta, lr, b1, b2, eps, bias_correction=True, eps_inside=False):
    m = v = 0.0
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mh, vh = (m / (1 - b1 ** t), v / (1 - b2 ** t)) if bias_correction else (m, v)
        theta = theta - lr * mh / (np.sqrt(vh + eps) if eps_inside else np.sqrt(vh) + eps)
    return theta


def test_fails_if_bias_correction_dropped_or_eps_moved():
    grads = [1e-4, -2e-4, 3e-4]  # small gradients: ε's placement matters
    ours = run(grads, 0.0, lr=0.1, eps=1e-4)[-1].item()
    right = _reference(grads, 0.0, 0.1, 0.9, 0.999, 1e-4)
    assert ours == pytest.approx(right, rel=1e-5)
    assert abs(ours - _reference(grads, 0.0, 0.1, 0.9, 0.999, 1e-4, bias_correction=False)) > 1e-3
    assert abs(ours - _reference(grads, 0.0, 0.1, 0.9, 0.999, 1e-4, eps_inside=True)) > 1e-3


def test_frozen_parameters_are_skipped():
    a, b = Parameter(np.ones(2)), Parameter(np.ones(2), requires_grad=False)
    opt = Adam([a, b], lr=0.1)
    a.grad[...] = b.grad[...] = 1.0
    opt.step()
    assert np.all(a.data < 1) and np.all(b.data == 1)


@pytest.mark.parametrize("kw", [{"lr": 0}, {"lr": -1}, {"betas": (1.0, 0.9)}, {"eps": -1}])
def test_bad_hyperparameters(kw):
    with pytest.raises(ValueError):
        Adam([Parameter(np.zeros(1))], **kw)


def test_sgd_momentum_matches_formula():
    p = Parameter(np.zeros(1))
    opt = SGD([p], lr=0.1, momentum=0.9)
    for g in (1.0, 1.0):
        p.grad[...] = g
        opt.step()
    # b1 = 1, θ = −0.1; b2 = 0.9 + 1 = 1.9, θ = −0.1 − 0.19 = −0.29
    assert p.data.item() == pytest.approx(-0.29, abs=1e-7)


# ---- parameter groups: one Adam, several learning rates ----------------------------------------
def test_each_group_steps_with_its_own_lr_and_the_same_equations():
    # weights and mask scores in one Adam: each follows the five equations with its group's α
    w, s = Parameter(np.array([1.0], np.float32)), Parameter(np.array([1.0], np.float32))
    opt = Adam([{"params": [w], "lr": 0.1, "name": "weights"},
                {"params": [s], "lr": 0.01, "name": "mask scores"}])
    grads = [0.5, -1.0, 2.0]
    for g in grads:
        w.grad[...] = s.grad[...] = g
        opt.step()
    assert w.data.item() == pytest.approx(_reference(grads, 1.0, 0.1, 0.9, 0.999, 1e-8), abs=2e-7)
    assert s.data.item() == pytest.approx(_reference(grads, 1.0, 0.01, 0.9, 0.999, 1e-8), abs=2e-7)
    assert [g["name"] for g in opt.param_groups] == ["weights", "mask scores"]


def test_a_group_without_lr_takes_the_default_and_lr_of_one_group_is_settable():
    a, b = Parameter(np.zeros(1)), Parameter(np.zeros(1))
    opt = Adam([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.25)
    assert [g["lr"] for g in opt.param_groups] == [0.25, 0.5]
    with pytest.raises(AttributeError, match="param_groups"):
        opt.lr  # two groups: which one?
    single = Adam([a], lr=0.1)
    single.lr = 0.2
    assert single.param_groups[0]["lr"] == 0.2


@pytest.mark.parametrize("groups,words", [
    ([{"params": []}], "empty"),
    ([{"parms": [Parameter(np.zeros(1))]}], "'params'"),
    ([{"params": [Parameter(np.zeros(1))], "lr": -1}], "lr"),
])
def test_bad_groups_are_clear_errors(groups, words):
    with pytest.raises(ValueError, match=words):
        Adam(groups)


def test_a_parameter_in_two_groups_is_an_error():
    p = Parameter(np.zeros(1))
    with pytest.raises(ValueError, match="another group"):
        Adam([{"params": [p]}, {"params": [p]}])


def test_default_hyperparameters_are_kingma_and_bas():
    # α = 1e-3, ε = 1e-8 (β's: the next test). First step from θ = 0: −α·g/(|g| + ε).
    # g = 1e-8 makes ε visible: −1e-3 · 1e-8 / (1e-8 + 1e-8) = −5e-4; g = 1: −1e-3/(1 + 1e-8)
    (theta,) = run([np.array([1e-8, 1.0], np.float32)], np.zeros(2))
    np.testing.assert_allclose(theta, [-5e-4, -1e-3], rtol=1e-6)


def test_default_betas_are_0_9_and_0_999():
    # two steps, g = 1 then g = 0, α = 1: m₂ = 0.9·0.1 = 0.09, m̂₂ = 0.09/0.19;
    # v₂ = 0.999·0.001, v̂₂ = 0.000999/0.001999; step 2 = m̂₂/(√v̂₂ + ε)
    m_hat, v_hat = 0.09 / 0.19, 0.000999 / 0.001999
    thetas = run([1.0, 0.0], 0.0, lr=1.0)
    step2 = thetas[0].item() - thetas[1].item()
    assert step2 == pytest.approx(m_hat / (np.sqrt(v_hat) + 1e-8), rel=1e-6)


def test_zero_grad_sets_every_gradient_to_exactly_zero():
    ps = [Parameter(np.ones((2, 3), np.float32)), Parameter(np.ones(4, np.float32))]
    opt = Adam(ps)
    for p in ps:
        p.grad[...] = 2.5
    opt.zero_grad()
    assert all(np.array_equal(p.grad, np.zeros_like(p.grad)) for p in ps)


def test_hyperparameter_boundaries_are_the_documented_ones():
    p = [Parameter(np.zeros(2, np.float32))]
    Adam(p, betas=(0.0, 0.0), eps=0.0)              # β ∈ [0, 1) and ε ≥ 0: the ends are allowed
    for kw in ({"betas": (1.0, 0.999)}, {"betas": (0.9, 1.0)}, {"eps": -1e-12}, {"lr": 0.0}):
        with pytest.raises(ValueError):
            Adam(p, **kw)
    opt = Adam(p)
    opt.lr = 0.0                                     # a schedule may bring α down to exactly 0
    with pytest.raises(ValueError, match="non-negative"):
        opt.lr = -1e-9
    SGD(p, lr=0.1, momentum=0.0)
    for momentum in (1.0, -0.1):
        with pytest.raises(ValueError):
            SGD(p, lr=0.1, momentum=momentum)


def test_sgd_without_momentum_is_plain_gradient_descent():
    # default momentum 0: θ₂ = θ₀ − α(g₁ + g₂) = −0.2, no velocity carried over (with momentum
    # ½ it would be −0.25); the parameter is float32, so −0.2 up to float32 rounding
    p = Parameter(np.zeros(1))
    opt = SGD([p], lr=0.1)
    for g in (1.0, 1.0):
        p.grad[...] = g
        opt.step()
    assert p.data.item() == pytest.approx(-0.2, rel=1e-6)
