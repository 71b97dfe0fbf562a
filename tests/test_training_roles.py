"""The role of each equation in training, checked against a float64 re-computation by hand.

"After k Adam steps of learned_mask_prune the mask scores moved by exactly what Adam's five
equations give for the gradient we compute by hand" — for the weight-mask scores, the filter-mask
scores, the quantisation steps Δ and a distilled student. Tiny models (2–3 units) whose forward
and backward pass are written out below in float64 with NumPy, independently of the package; an
independent Adam (``RefAdam``) applies §2.1's equations. No PyTorch, no data set.

The trainers are called ONLY from the helpers in the first section, so that a change of their
signatures touches one place.
"""
import copy

import numpy as np
import pytest

from minicompress import distill as D
from minicompress import nn, optim, prune
from minicompress.quantize import (QuantizerOptions, prepare, quantizer_parameters, quantizers,
                                   train_quantized)
from minicompress.step import Batch, train_step
from minicompress.train import EveryEpoch, TrainConfig


# ---- the only calls into the trainers -----------------------------------------------------------
def run_learned_mask_prune(model, data, steps, *, lr, score_lr, lam, sparsity, on_step):
    """``steps`` Adam steps of learned_mask_prune (one full batch per step, constant sparsity);
    ``on_step(mask_transform)`` after each step, before the scores are dropped."""
    layer = model.fc

    def on_epoch(epoch, record):
        on_step(layer.weight_transforms[0], record["train_loss"])

    method = prune.MaskPruning(sparsity, lr=lr, score_lr=score_lr, lam=lam, schedule="constant")
    prune.learned_mask_prune(model, data, method,
                             TrainConfig(steps, np.random.default_rng(0), batch_size=len(data[0])),
                             hooks=[EveryEpoch(on_epoch)])


def run_learned_filter_prune(model, data, steps, *, ratio, lr, score_lr, on_step):
    """``steps`` steps of learned_filter_prune on layer ``fc1``; the kept count goes from all
    filters (step 0) to the final count (steps ≥ 1, ``ramp`` of one step)."""
    def on_epoch(epoch, record):
        on_step(model.fc1_gate)

    method = prune.FilterPruning({"fc1": ratio}, lr=lr, score_lr=score_lr, init_score="l1",
                                 ramp=1.0 / steps)
    prune.learned_filter_prune(model, data, method,
                               TrainConfig(steps, np.random.default_rng(0), batch_size=len(data[0])),
                               hooks=[EveryEpoch(on_epoch)])


def run_train_quantized(model, data, *, lr_quant, lr_weights):
    """One full-batch step of Adam through the fake quantizers."""
    train_quantized(model, data, TrainConfig(1, np.random.default_rng(0), batch_size=len(data[0])),
                    lr_quant=lr_quant, lr_weights=lr_weights)


def run_fit_distill(student, data, teacher_logits, steps, *, T, alpha, lr):
    """``steps`` full-batch steps of distillation from precomputed teacher logits."""
    kd = D.DistillationLoss(T, alpha, teacher_logits=teacher_logits)
    D.fit_distill(student, data, kd,
                  TrainConfig(steps, np.random.default_rng(0), batch_size=len(data[0])), lr=lr)


def run_distill_steps_with_hint(student, teacher, hint, x, y, steps, *, T, alpha, lr):
    """``steps`` distillation steps with a FitNets hint, one Adam over student + regressor;
    returns the losses."""
    kd = D.DistillationLoss(T, alpha, teacher=teacher, hint=hint)
    opt = optim.Adam([{"params": student.parameters(), "name": "weights"},
                      {"params": hint.parameters(), "name": "hint regressors"}], lr=lr)
    return [train_step(student, opt, Batch(x, y), kd)[0] for _ in range(steps)]


# ---- float64 references ---------------------------------------------------------------------------
# The package stores Parameters in float32: each Adam step rounds θ (|θ| ≤ 2.1 here) to within
# half an ulp, ≤ 1.2e-7, and Adam's step m̂/(√v̂ + ε) barely depends on the float32 rounding of
# the gradient (relative 1e-7 of a step ≤ lr). Three steps therefore stay well inside
ATOL = 1e-6
class RefAdam:
    """§2.1 in float64: m_t = β₁m + (1−β₁)g, v_t = β₂v + (1−β₂)g², m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ),
    θ ← θ − α m̂/(√v̂ + ε)."""

    def __init__(self, lr, b1=0.9, b2=0.999, eps=1e-8):
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        self.t, self.m, self.v = 0, 0.0, 0.0

    def step(self, theta, g):
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * g
        self.v = self.b2 * self.v + (1 - self.b2) * g * g
        m_hat = self.m / (1 - self.b1 ** self.t)
        v_hat = self.v / (1 - self.b2 ** self.t)
        return theta - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


def cross_entropy64(logits, y):
    """Mean CE and ∂L/∂z = (softmax(z) − onehot(y))/N, in float64."""
    z = logits - logits.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    n = len(y)
    loss = -np.log(p[np.arange(n), y]).mean()
    g = p.copy()
    g[np.arange(n), y] -= 1
    return loss, g / n


def top_k(scores, k):
    """Boolean mask of the k largest entries; asserts there is no near-tie at the threshold, so
    float32 and float64 agree on it."""
    flat = scores.ravel()
    order = np.argsort(-flat, kind="stable")
    if 0 < k < flat.size:
        assert flat[order[k - 1]] - flat[order[k]] > 1e-3, "test data too close to a tie"
    keep = np.zeros(flat.size, bool)
    keep[order[:k]] = True
    return keep.reshape(scores.shape)


def linear(w, b=None):
    w = np.asarray(w, np.float32)
    layer = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, rng=np.random.default_rng(0))
    layer.weight.data[...] = w
    if b is not None:
        layer.bias.data[...] = b
    return layer


# =========================== §3.1.1 learned weight mask ==========================================
X2 = np.array([[1.0, 2.0], [-1.0, 0.5], [0.5, -1.5]])
Y2 = np.array([1, 0, 0])
W0 = np.array([[1.0, -0.9], [0.2, -1.1]])


def learned_mask_reference(steps, lr, score_lr, lam, k):
    """Scores s, weights W and the loss after each step, by hand:

    m = top-k(|W| + s);  W_eff = W ⊙ m;  z = x W_effᵀ;  G = ∂CE/∂z
    ∂L/∂W = (Gᵀx) ⊙ m + λ sign(W)(1 − m)      (the L1 term decays the pruned weights)
    ∂L/∂s = (Gᵀx) ⊙ W − λ |W| (1 − m)         (straight-through ∂L/∂m)
    L = CE + λ ‖W ⊙ (1 − m)‖₁
    """
    w, s = W0.copy(), np.zeros_like(W0)
    adam_w, adam_s = RefAdam(lr), RefAdam(score_lr)
    out = []
    for _ in range(steps):
        m = top_k(np.abs(w) + s, k).astype(float)
        loss, g = cross_entropy64(X2 @ (w * m).T, Y2)
        g_eff = g.T @ X2
        loss += lam * np.abs(w * (1 - m)).sum()
        gw = g_eff * m + lam * np.sign(w) * (1 - m)
        gs = g_eff * w - lam * np.abs(w) * (1 - m)
        w, s = adam_w.step(w, gw), adam_s.step(s, gs)
        out.append((s.copy(), w.copy(), loss, m))
    return out


@pytest.mark.parametrize("lam", [0.0, 0.05])
def test_learned_mask_prune_moves_scores_and_weights_by_adams_equations(lam):
    steps, lr, score_lr = 3, 0.01, 0.1
    want = learned_mask_reference(steps, lr, score_lr, lam, k=2)
    got = []
    model = nn.Sequential(fc=linear(W0))
    run_learned_mask_prune(model, (X2.astype(np.float32), Y2), steps, lr=lr, score_lr=score_lr,
                           lam=lam, sparsity=0.5,
                           on_step=lambda mk, loss: got.append(
                               (mk.scores.data.copy(), model.fc.weight.data.copy(), loss)))
    assert len(got) == steps
    for (s, w, loss), (s_ref, w_ref, loss_ref, _) in zip(got, want):
        np.testing.assert_allclose(s, s_ref, rtol=0, atol=ATOL)
        np.testing.assert_allclose(w, w_ref, rtol=0, atol=ATOL)
        assert loss == pytest.approx(loss_ref, rel=1e-6)
    # |W| alone keeps 1.0 and −1.1 (and so does the first step); from the second step on the
    # learned scores s ≈ [[−0.39, 0.39], [0.39, −0.39]] keep −0.9 instead of 1.0
    np.testing.assert_array_equal(want[0][3], [[1, 0], [0, 1]])
    final_m = top_k(np.abs(want[-1][1]) + want[-1][0], 2)
    np.testing.assert_array_equal(final_m, [[False, True], [False, True]])
    np.testing.assert_array_equal(prune.get_mask(model.fc).keep, final_m)


def test_l1_term_decays_pruned_weights_by_lr_per_step():
    """With λ > 0 a stored pruned weight gets the constant gradient +λ sign(W) (its task gradient
    is 0), so each Adam step moves it by exactly lr toward 0 (m̂ = g, v̂ = g²); the loss that
    training reports includes λ‖W ⊙ (1 − m)‖₁."""
    lr, lam = 0.01, 0.05
    got = []
    model = nn.Sequential(fc=linear(W0))
    run_learned_mask_prune(model, (X2.astype(np.float32), Y2), 2, lr=lr, score_lr=0.1, lam=lam,
                           sparsity=0.5, on_step=lambda mk, loss: got.append(
                               (model.fc.weight.data.astype(np.float64), loss)))
    (w1, loss1), (w2, _) = got
    # W[1, 0] = 0.2 is pruned at both steps (see the reference's masks)
    (_, _, _, m1), (_, _, _, m2) = learned_mask_reference(2, lr, 0.1, lam, k=2)
    np.testing.assert_array_equal((m1 == 0) & (m2 == 0), [[False, False], [True, False]])
    assert w1[1, 0] == pytest.approx(0.2 - lr, abs=1e-7)
    assert w2[1, 0] == pytest.approx(0.2 - 2 * lr, abs=1e-7)
    # step 1 prunes −0.9 and 0.2: the reported loss is the cross-entropy + λ (0.9 + 0.2)
    ce, _ = cross_entropy64(X2 @ (W0 * m1).T, Y2)
    assert loss1 == pytest.approx(ce + lam * 1.1, rel=1e-6)


def test_learned_mask_module_level_adam_step_on_the_scores():
    """Without the trainer: LearnedMaskPruner + one Adam on the scores, two steps by hand."""
    model = nn.Sequential(fc=linear(W0))
    pruner = prune.LearnedMaskPruner(model, 0.5, lam=0.05)
    opt = optim.Adam(pruner.parameters(), lr=0.1)
    want = learned_mask_reference(2, 0.0, 0.1, 0.05, k=2)   # weights frozen (lr 0)
    x = X2.astype(np.float32)
    for s_ref, _, loss_ref, m_ref in want:
        pruner.update(0)
        np.testing.assert_array_equal(pruner.layers["fc"][1].mask.data, m_ref)
        opt.zero_grad()
        loss, g = nn.cross_entropy(model(x), Y2)
        model.backward(g)
        loss += pruner.add_penalty_grads()
        opt.step()
        np.testing.assert_allclose(pruner.parameters()[0].data, s_ref, rtol=0, atol=ATOL)
        assert loss == pytest.approx(loss_ref, rel=1e-6)


# =========================== §3.1.2 learned filter mask ==========================================
W1 = np.array([[1.0, 0.5], [-0.8, 0.6], [0.6, -1.2]])
B1 = np.array([0.1, 0.6, 0.2])
W2 = np.array([[0.5, -1.0, 0.8], [-0.3, 0.7, -0.6]])
B2 = np.array([0.05, -0.05])


def learned_filter_reference(steps, lr, score_lr, k_final):
    """h = x W₁ᵀ + b₁, y = h ⊙ m (gate), a = relu(y), z = a W₂ᵀ + b₂.
    Backward: ∂L/∂y = (G W₂) ⊙ [y > 0];  ∂L/∂s_c = Σ_n h ⊙ ∂L/∂y  (straight-through);
    ∂L/∂h = ∂L/∂y ⊙ m.  Mask: all filters at step 0, then top-k of ŝ + s, ŝ = l1 / mean(l1)."""
    params = [W1.copy(), B1.copy(), W2.copy(), B2.copy()]
    adams = [RefAdam(lr) for _ in params]
    s, adam_s = np.zeros(3), RefAdam(score_lr)
    l1 = np.abs(W1).sum(1)
    base = l1 / l1.mean()
    out = []
    for step in range(steps):
        w1, b1, w2, b2 = params
        m = np.ones(3) if step == 0 else top_k(base + s, k_final).astype(float)
        h = X2 @ w1.T + b1
        y = h * m
        a = np.maximum(y, 0)
        _, g = cross_entropy64(a @ w2.T + b2, Y2)
        g_a = g @ w2
        g_y = g_a * (y > 0)
        g_s = (h * g_y).sum(0)
        g_h = g_y * m
        grads = [g_h.T @ X2, g_h.sum(0), g.T @ a, g.sum(0)]
        params = [opt.step(p, gp) for opt, p, gp in zip(adams, params, grads)]
        s = adam_s.step(s, g_s)
        out.append((s.copy(), [p.copy() for p in params]))
    return out, base


def test_learned_filter_prune_moves_gate_scores_by_adams_equations():
    steps, lr, score_lr = 3, 0.01, 0.1
    want, base = learned_filter_reference(steps, lr, score_lr, k_final=2)
    model = nn.Sequential(fc1=linear(W1, B1), relu=nn.ReLU(), fc2=linear(W2, B2))
    got = []
    run_learned_filter_prune(model, (X2.astype(np.float32), Y2), steps, ratio=1 / 3, lr=lr,
                             score_lr=score_lr,
                             on_step=lambda gate: got.append(
                                 (gate.scores.data.copy(),
                                  [model.fc1.weight.data.copy(), model.fc1.bias.data.copy(),
                                   model.fc2.weight.data.copy(), model.fc2.bias.data.copy()])))
    assert len(got) == steps
    for (s, ps), (s_ref, ps_ref) in zip(got, want):
        np.testing.assert_allclose(s, s_ref, rtol=0, atol=ATOL)
        for p, p_ref in zip(ps, ps_ref):
            np.testing.assert_allclose(p, p_ref, rtol=0, atol=ATOL)
    # ŝ = l1/mean(l1) = (0.957, 0.894, 1.149) alone keeps filters 0 and 2; the learned scores
    # s ≈ (−0.3, −0.22, +0.3) after three steps bring filter 1 back instead of filter 0
    final = top_k(base + want[-1][0], 2)
    np.testing.assert_array_equal(final, [False, True, True])
    np.testing.assert_array_equal(top_k(base, 2), [True, False, True])
    np.testing.assert_array_equal(model.fc1_gate.keep, final)


# =========================== §3.2 Δ learned by Adam ==============================================
def test_train_quantized_steps_delta_and_offset_by_adam_on_the_task_gradient():
    """One step of train_quantized = one Adam step on every log Δ and on the input offset β with
    the task loss's gradient (weights frozen when lr_weights is None, stepped by their own Adam
    otherwise). The gradients themselves are pinned in test_equations_by_hand.py."""
    # an input that can be negative → asymmetric input grid with a learned offset; −0.9 and 1.7
    # fall outside [−0.25, 1.5] (Δ = 0.25, z = round(0.3/0.25) = 1, codes 0..7), so ∂L/∂β ≠ 0
    x = np.array([[0.9, -0.9], [0.2, 0.7], [1.7, 0.4]], np.float32)
    y = np.array([0, 1, 1])
    for lr_weights in (None, 0.01):
        model = nn.Sequential(fc1=linear(W1, B1), relu=nn.ReLU(), fc2=linear(W2, B2))
        prepare(model, weight_bits=3, act_bits=3, input_kind="asymmetric",
                options=QuantizerOptions(input_bits=3, grad_scale=False))
        weights, acts = quantizers(model)
        for _, _, q in weights:        # the grids, set by hand (a calibration in effect)
            q.set_delta(0.25)
        for _, q in acts:
            q.set_delta(0.25, r_min=-0.3 if q.kind == "asymmetric" else None)
        probe = copy.deepcopy(model)
        probe.zero_grad()
        _, g = nn.cross_entropy(probe(x), y)
        probe.backward(g)
        q_before = [p.data.astype(np.float64) for p in quantizer_parameters(model)]
        q_grads = [p.grad.astype(np.float64) for p in quantizer_parameters(probe)]
        assert len(q_grads) == 5                       # 2 weight Δ, 2 activation Δ, 1 offset
        assert all(np.all(gq != 0) for gq in q_grads)
        w_before = [model.fc1.weight.data.astype(np.float64), model.fc2.bias.data.astype(np.float64)]
        w_grads = [probe.fc1.weight.grad.astype(np.float64), probe.fc2.bias.grad.astype(np.float64)]
        run_train_quantized(model, (x, y), lr_quant=0.05, lr_weights=lr_weights)
        for p, p0, gq in zip(quantizer_parameters(model), q_before, q_grads):
            np.testing.assert_allclose(p.data, RefAdam(0.05).step(p0, gq), rtol=0, atol=ATOL)
        after = [model.fc1.weight.data, model.fc2.bias.data]
        for p, p0, gw in zip(after, w_before, w_grads):
            want = p0 if lr_weights is None else RefAdam(lr_weights).step(p0, gw)
            np.testing.assert_allclose(p, want, rtol=0, atol=ATOL)


# =========================== §3.3 distillation ===================================================
def test_fit_distill_moves_the_student_by_adam_on_the_kd_gradient():
    """∂L/∂z = α T (p_s − p_t)/N + (1 − α)(p − onehot)/N with p^T = softmax(z/T); student
    z = x Wᵀ + b; two Adam steps."""
    T, alpha, lr, steps = 2.0, 0.7, 0.05, 2
    z_t = np.array([[2.0, -1.0], [0.5, 1.5], [-1.0, 0.0]])
    w, b = W0.copy(), np.array([0.1, -0.2])
    adam_w, adam_b = RefAdam(lr), RefAdam(lr)
    for _ in range(steps):
        z = X2 @ w.T + b
        _, g_hard = cross_entropy64(z, Y2)
        p_s = np.exp(z / T) / np.exp(z / T).sum(1, keepdims=True)
        p_t = np.exp(z_t / T) / np.exp(z_t / T).sum(1, keepdims=True)
        g = alpha * T * (p_s - p_t) / len(Y2) + (1 - alpha) * g_hard
        w, b = adam_w.step(w, g.T @ X2), adam_b.step(b, g.sum(0))
    student = nn.Sequential(fc=linear(W0, [0.1, -0.2]))
    run_fit_distill(student, (X2.astype(np.float32), Y2), z_t.astype(np.float32), steps,
                    T=T, alpha=alpha, lr=lr)
    np.testing.assert_allclose(student.fc.weight.data, w, rtol=0, atol=ATOL)
    np.testing.assert_allclose(student.fc.bias.data, b, rtol=0, atol=ATOL)


def test_distill_step_with_hint_by_hand():
    """L = α T² KL(p_t‖p_s) + (1 − α) CE + β mean((r(F_s) − F_t)²), F = the first layer's output,
    r a Linear regressor; the hint's gradient 2β(r − F_t)/size reaches the student's first layer
    through r; two Adam steps on student and regressor."""
    T, alpha, beta, lr, steps = 2.0, 0.6, 0.5, 0.05, 2
    x, y = X2, Y2
    ws = [W0.copy(), np.array([0.1, -0.2]), np.array([[0.5, -1.0], [0.3, 0.8]]), np.array([0.0, 0.1])]
    wt = [np.array([[0.7, -0.2], [-0.4, 0.9]]), np.array([0.2, 0.0]),
          np.array([[1.0, 0.4], [-0.6, 0.2]]), np.array([-0.1, 0.1])]
    reg_w = np.array([[0.9, 0.1], [-0.2, 1.1]])

    def two_layers(w):
        return nn.Sequential(fc1=linear(w[0], w[1]), fc2=linear(w[2], w[3]))

    student, teacher = two_layers(ws), two_layers(wt)
    hint = D.HintLoss(linear(reg_w), "fc1", "fc1", beta=beta)
    losses = run_distill_steps_with_hint(student, teacher, hint, x.astype(np.float32), y, steps,
                                         T=T, alpha=alpha, lr=lr)
    f_t = x @ wt[0].T + wt[1]
    z_t = f_t @ wt[2].T + wt[3]
    p_t = np.exp(z_t / T) / np.exp(z_t / T).sum(1, keepdims=True)
    params, adams = ws + [reg_w], [RefAdam(lr) for _ in range(5)]
    for loss in losses:
        w1, b1, w2, b2, r = params
        f_s = x @ w1.T + b1
        z_s = f_s @ w2.T + b2
        p_s = np.exp(z_s / T) / np.exp(z_s / T).sum(1, keepdims=True)
        ce, g_hard = cross_entropy64(z_s, y)
        kl = np.sum(p_t * (np.log(p_t) - np.log(p_s))) / len(y)
        diff = f_s @ r.T - f_t
        assert loss == pytest.approx(alpha * T * T * kl + (1 - alpha) * ce
                                     + beta * np.mean(diff ** 2), rel=1e-6)
        g_z = alpha * T * (p_s - p_t) / len(y) + (1 - alpha) * g_hard
        g_r = 2 * beta * diff / diff.size
        g_f = g_z @ w2 + g_r @ r
        grads = [g_f.T @ x, g_f.sum(0), g_z.T @ f_s, g_z.sum(0), g_r.T @ f_s]
        params = [a.step(p, g) for a, p, g in zip(adams, params, grads)]
    got = [student.fc1.weight.data, student.fc1.bias.data, student.fc2.weight.data,
           student.fc2.bias.data, hint.regressor.weight.data]
    for p, p_ref in zip(got, params):
        np.testing.assert_allclose(p, p_ref, rtol=0, atol=ATOL)


def test_pruned_objective_called_alone_reports_task_loss_plus_l1():
    """``PrunedObjective`` called directly, and through ``with_features``, returns
    L_task(W ⊙ m) + λ‖W ⊙ (1 − m)‖₁, and adds the L1 gradients once."""
    lam = 0.05
    model = nn.Sequential(fc=linear(W0))
    pruner = prune.LearnedMaskPruner(model, 0.5, lam=lam)
    pruner.update(0)                                         # m = top-2 of |W|: keeps 1.0, −1.1
    m = prune.get_mask(model.fc).mask.data
    np.testing.assert_array_equal(m, [[1, 0], [0, 1]])
    objective = pruner.objective(nn.cross_entropy)
    batch = Batch(X2.astype(np.float32), Y2)
    logits = model(batch.x)
    loss, _ = objective(logits, batch)
    ce, _ = nn.cross_entropy(logits, Y2)
    assert loss == pytest.approx(ce + lam * (0.9 + 0.2), rel=1e-6)
    np.testing.assert_allclose(model.fc.weight.grad, lam * np.sign(W0) * (1 - m), rtol=1e-6)
    # the path with feature maps (a hint loss inside the task) reports the same sum
    model.zero_grad()
    loss_f, _, _ = objective.with_features(logits, {}, batch)
    assert loss_f == pytest.approx(loss, rel=1e-12)


def test_the_cubic_mask_schedule_ramps_over_its_fraction_of_the_steps():
    # s_t = s_f + (s_i − s_f)(1 − t/n)³ with n = ramp · steps = 0.7 · 100 = 70, s_i = 0, s_f = 0.9
    schedule = prune.MaskPruning(sparsity=0.9).sparsity_schedule(100)
    assert schedule(0) == 0.0
    assert schedule(35) == pytest.approx(0.9 - 0.9 * 0.5 ** 3)           # 0.7875
    assert schedule(69) < 0.9 and schedule(70) == pytest.approx(0.9) and schedule(99) == 0.9
