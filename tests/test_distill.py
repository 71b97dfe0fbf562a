"""Knowledge distillation (document §3.3): soft-target loss, its gradient, hint and attention
losses, and the training loop."""
import copy
from types import SimpleNamespace

import numpy as np
import pytest

from minicompress import models, optim
from minicompress import distill as D
from minicompress.nn import Conv2d, Linear, cross_entropy
from minicompress.step import Batch, train_step
from minicompress.train import CosineLR, TrainConfig, fit
from tests.bounds import EPS32, assert_within
from tests.gradcheck import numerical_grad, to_float64


# ---- the soft-target loss ---------------------------------------------------------------------
def test_soft_target_loss_worked_example():
    # one image, K = 3, T = 2: everything written out with plain exp/log
    z_s = np.array([[1.0, 2.0, 3.0]])
    z_t = np.array([[3.0, 1.0, 0.0]])
    T = 2.0
    p_s = np.exp(z_s / T) / np.exp(z_s / T).sum()
    p_t = np.exp(z_t / T) / np.exp(z_t / T).sum()
    kl = float(np.sum(p_t * np.log(p_t / p_s)))
    loss, grad = D.soft_target_loss(z_s, z_t, T)
    assert loss == pytest.approx(T * T * kl, rel=1e-12)
    np.testing.assert_allclose(grad, T * (p_s - p_t), rtol=1e-12)
    # numbers worked out once, so that a wrong formula cannot agree with itself
    np.testing.assert_allclose(p_t, [[0.6285317, 0.2312239, 0.1402444]], rtol=1e-6)
    # by hand: p_s = [0.18632, 0.30720, 0.50648], KL = 0.51845, T²·KL = 2.07382
    assert loss == pytest.approx(2.0738163, rel=1e-6)
    np.testing.assert_allclose(grad, [[-0.884419, 0.151959, 0.732460]], atol=2e-5)


def test_soft_target_loss_zero_when_student_equals_teacher(rng):
    z = rng.standard_normal((5, 10))
    loss, grad = D.soft_target_loss(z, z.copy(), 3.0)
    assert loss == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(grad, 0.0, atol=1e-15)
    # shifting the logits by a constant per row changes nothing (softmax is shift-invariant)
    loss2, _ = D.soft_target_loss(z + 7.0, z, 3.0)
    assert loss2 == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("T", [0.5, 1.0, 4.0, 20.0])
def test_soft_target_loss_gradient_numerically(rng, T):
    z_s = rng.standard_normal((4, 6)) * 3
    z_t = rng.standard_normal((4, 6)) * 3
    _, grad = D.soft_target_loss(z_s, z_t, T)
    num = numerical_grad(lambda: D.soft_target_loss(z_s, z_t, T)[0], z_s)
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-9)


def test_high_temperature_limit_is_logit_matching(rng):
    """Hinton et al. §2.1: zero-mean logits, T → ∞: ∂L_soft/∂z_s → (z_s − z_t)/(K·N)."""
    n, k = 3, 10
    z_s = rng.standard_normal((n, k))
    z_t = rng.standard_normal((n, k)) * 2
    z_s -= z_s.mean(1, keepdims=True)
    z_t -= z_t.mean(1, keepdims=True)
    limit = (z_s - z_t) / (k * n)
    errors = []
    for T in (10.0, 100.0, 1000.0):
        _, grad = D.soft_target_loss(z_s, z_t, T)
        errors.append(np.abs(grad - limit).max() / np.abs(limit).max())
    assert errors[2] < 2e-3
    assert errors[0] > errors[1] > errors[2]          # it is a limit: the error shrinks with T
    # without the T² factor the gradient would vanish like 1/T²
    _, g100 = D.soft_target_loss(z_s, z_t, 100.0)
    _, g1000 = D.soft_target_loss(z_s, z_t, 1000.0)
    assert np.abs(g1000).max() / np.abs(g100).max() == pytest.approx(1.0, rel=0.02)


def test_soft_target_loss_matches_torch(rng):
    torch = pytest.importorskip("torch")
    z_s = rng.standard_normal((8, 10)).astype(np.float32) * 4
    z_t = rng.standard_normal((8, 10)).astype(np.float32) * 4
    T = 4.0
    zs = torch.tensor(z_s, dtype=torch.float64, requires_grad=True)
    zt = torch.tensor(z_t, dtype=torch.float64)
    ref = T * T * torch.nn.functional.kl_div(torch.log_softmax(zs / T, 1),
                                             torch.softmax(zt / T, 1), reduction="batchmean")
    ref.backward()
    loss, grad = D.soft_target_loss(z_s, z_t, T)
    assert grad.dtype == np.float32
    assert loss == pytest.approx(ref.item(), rel=1e-5)
    np.testing.assert_allclose(grad, zs.grad.numpy(), rtol=1e-4, atol=1e-7)


def test_distillation_loss_mixes_soft_and_hard(rng):
    z_s = rng.standard_normal((6, 5))
    z_t = rng.standard_normal((6, 5))
    y = rng.integers(0, 5, 6)
    ce, g_ce = cross_entropy(z_s, y)
    soft, g_soft = D.soft_target_loss(z_s, z_t, 3.0)
    for alpha in (0.0, 0.3, 1.0):
        loss, grad = D.distillation_loss(z_s, z_t, y, 3.0, alpha)
        assert loss == pytest.approx(alpha * soft + (1 - alpha) * ce, rel=1e-12)
        np.testing.assert_allclose(grad, alpha * g_soft + (1 - alpha) * g_ce, rtol=1e-12)
    _, grad = D.distillation_loss(z_s, z_t, y, 3.0, 0.3)
    num = numerical_grad(lambda: D.distillation_loss(z_s, z_t, y, 3.0, 0.3)[0], z_s)
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-9)


def test_softmax_with_temperature_flattens():
    z = np.array([2.0, 1.0, 0.0])
    p1, p4 = D.softmax_with_temperature(z, 1.0), D.softmax_with_temperature(z, 4.0)
    np.testing.assert_allclose(p1, np.exp(z) / np.exp(z).sum())
    assert p4.max() < p1.max() and p4.min() > p1.min()
    np.testing.assert_allclose(D.softmax_with_temperature(z, 1e6), 1 / 3, rtol=1e-5)


# ---- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("T", [0, -1.0, float("nan"), float("inf"), "4"])
def test_bad_temperature(T):
    z = np.zeros((2, 3))
    with pytest.raises(ValueError, match="temperature T"):
        D.soft_target_loss(z, z, T)
    with pytest.raises(ValueError, match="temperature T"):
        D.DistillationLoss(T, 0.5, teacher_logits=np.zeros((4, 3)))


@pytest.mark.parametrize("alpha", [-0.1, 1.1, float("nan")])
def test_bad_alpha(alpha):
    z = np.zeros((2, 3))
    with pytest.raises(ValueError, match="alpha"):
        D.distillation_loss(z, z, np.array([0, 1]), 2.0, alpha)
    with pytest.raises(ValueError, match="alpha"):
        D.DistillationLoss(2.0, alpha, teacher_logits=np.zeros((4, 3)))


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        D.soft_target_loss(np.zeros((2, 3)), np.zeros((2, 4)), 2.0)
    with pytest.raises(ValueError, match=r"\(3, 3\).*\(2, 3\)"):
        D.distillation_loss(np.zeros((3, 3)), np.zeros((2, 3)), np.zeros(3, int), 2.0, 0.5)


def test_distillation_loss_needs_a_teacher():
    with pytest.raises(ValueError, match="teacher"):
        D.DistillationLoss(2.0, 0.5)
    with pytest.raises(ValueError, match="hint loss needs the teacher"):
        D.DistillationLoss(2.0, 0.5, teacher_logits=np.zeros((4, 3)),
                           hint=D.HintLoss(Conv2d(6, 32, 1, rng=np.random.default_rng(0)), "a", "b"))
    kd = D.DistillationLoss(2.0, 0.5, teacher_logits=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="past the 4 precomputed"):
        kd(np.zeros((2, 3)), Batch(np.zeros((2, 1, 8, 8)), np.zeros(2, int), np.array([1, 4])))


# ---- feature losses ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["conv", "linear"])
def test_hint_loss_gradients(rng, kind):
    if kind == "conv":
        reg = Conv2d(3, 5, 1, rng=rng)
        f_s, f_t = rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((2, 5, 4, 4))
    else:
        reg = Linear(6, 4, rng=rng)
        f_s, f_t = rng.standard_normal((3, 6)), rng.standard_normal((3, 4))
    hint = to_float64(D.HintLoss(reg, "a", "b", beta=0.7))
    hint.zero_grad()
    loss, g = hint(f_s, f_t)
    assert loss == pytest.approx(0.7 * np.mean((reg(f_s) - f_t) ** 2), rel=1e-12)
    np.testing.assert_allclose(g, numerical_grad(lambda: hint(f_s, f_t)[0], f_s), rtol=1e-5, atol=1e-9)
    hint.zero_grad()          # every call adds into the regressor's .grad: start again from one call
    hint(f_s, f_t)
    analytic_grads = {name: p.grad.copy() for name, p in hint.named_parameters()}
    for name, p in hint.named_parameters():
        analytic = analytic_grads[name]
        num = numerical_grad(lambda: hint(f_s, f_t)[0], p.data)
        np.testing.assert_allclose(analytic, num, rtol=1e-5, atol=1e-9, err_msg=name)
    assert [n for n, _ in hint.named_parameters()] == (
        ["regressor.weight", "regressor.bias"])


def test_hint_loss_shape_error(rng):
    hint = D.HintLoss(Conv2d(3, 5, 1, rng=rng), "pool1", "pool1")
    with pytest.raises(ValueError, match=r"\(2, 5, 4, 4\).*\(2, 5, 3, 3\)"):
        hint(np.zeros((2, 3, 4, 4), np.float32), np.zeros((2, 5, 3, 3), np.float32))


def test_attention_transfer_gradient(rng):
    at = D.AttentionTransferLoss("a", "b", beta=2.0)
    f_s, f_t = rng.standard_normal((3, 2, 4, 4)), rng.standard_normal((3, 7, 4, 4))
    loss, g = at(f_s, f_t)
    a_s = (f_s ** 2).sum(1).reshape(3, -1)
    a_t = (f_t ** 2).sum(1).reshape(3, -1)
    q_s = a_s / np.linalg.norm(a_s, axis=1, keepdims=True)
    q_t = a_t / np.linalg.norm(a_t, axis=1, keepdims=True)
    assert loss == pytest.approx(2.0 * np.sum((q_s - q_t) ** 2) / 3, rel=1e-10)
    np.testing.assert_allclose(g, numerical_grad(lambda: at(f_s, f_t)[0], f_s), rtol=1e-5, atol=1e-9)


# ---- training ----------------------------------------------------------------------------------
class _NoStep:
    """An optimizer that only zeroes gradients, so a test can read them after a training step."""

    def __init__(self, params):
        self.params = params

    def zero_grad(self):
        for p in self.params:
            p.grad[...] = 0.0

    def step(self):
        pass


def test_distillation_step_with_hint_backpropagates_everything(rng):
    """Whole step (KD + CE + hint through a regressor into the student's middle layer) against
    central differences on a few entries of every student and regressor Parameter."""
    x = rng.standard_normal((4, 1, 8, 8))
    y = rng.integers(0, 10, 4)
    teacher = to_float64(models.teacher(8, rng=rng))
    student = to_float64(models.lenet5(8, rng=rng))
    hint = to_float64(D.HintLoss(Conv2d(6, 32, 1, rng=rng), "relu1", "relu1", beta=0.5))
    kd = D.DistillationLoss(3.0, 0.6, teacher=teacher, hint=hint)
    params = student.parameters() + hint.parameters()
    train_step(student, _NoStep(params), Batch(x, y), kd)
    grads = {id(p): p.grad.copy() for p in params}

    def total():
        z_t = teacher(x, capture=("relu1",))
        z_s = student(x, capture=("relu1",))
        return (D.distillation_loss(z_s, z_t, y, 3.0, 0.6)[0]
                + hint(student.features["relu1"], teacher.features["relu1"])[0])

    for p in params:
        flat = p.data.reshape(-1)
        for i in rng.choice(flat.size, size=min(3, flat.size), replace=False):
            old = flat[i]
            flat[i] = old + 1e-6
            fp = total()
            flat[i] = old - 1e-6
            fm = total()
            flat[i] = old
            num = (fp - fm) / 2e-6
            assert grads[id(p)].reshape(-1)[i] == pytest.approx(num, rel=1e-4, abs=1e-8)


@pytest.fixture(scope="module")
def digits_teacher():
    from minicompress.data import load_dataset
    from minicompress.train import evaluate
    (xtr, ytr), (xte, yte) = load_dataset("digits")
    teacher = models.teacher(8, rng=np.random.default_rng(0))
    fit(teacher, optim.Adam(teacher.parameters()), (xtr, ytr),
        TrainConfig(epochs=8, rng=np.random.default_rng(1)))
    assert evaluate(teacher, xte, yte)["accuracy"] > 0.93
    return teacher, (xtr, ytr), (xte, yte)


def test_precomputed_and_per_step_teacher_give_the_same_training(digits_teacher):
    """At every step of ``fit_distill`` the precomputed path hands the loss the teacher's logits of
    exactly the images in the batch — what the per-step path computes from those images.

    Checked step by step rather than by comparing two trained students: the table and the
    per-step teacher run on different numbers of rows, so their float32 logits differ in the last
    bits (how much depends on the BLAS kernel), and Adam turns such a difference in a gradient
    near 0 into a parameter change of up to α — no fixed tolerance holds on every machine. The
    teacher runs in float64 here: the table is its float32 rounding, within eps32·|z| (plus
    float64 noise) of the per-step logits on any machine."""
    teacher, (xtr, ytr), _ = digits_teacher
    before = {k: v.copy() for k, v in teacher.state_dict().items()}
    teacher64 = to_float64(copy.deepcopy(teacher))
    table = D.teacher_logits(teacher64, xtr)
    seen = []

    class Recording(D.DistillationLoss):
        def teacher_batch(self, batch):
            z_t = super().teacher_batch(batch)
            seen.append((batch.index, batch.x, z_t))
            return z_t

    kd = Recording(4.0, 0.7, teacher_logits=table, teacher=teacher64)
    s = models.student(8, rng=np.random.default_rng(5))
    D.fit_distill(s, (xtr, ytr), kd, TrainConfig(2, np.random.default_rng(6)))
    assert len(seen) == 2 * -(-len(xtr) // 128)
    for idx, x, z_t in seen:
        np.testing.assert_array_equal(x, xtr[idx])        # the batch's images are the indexed ones
        z_64 = teacher64(x)                                 # the per-step path's logits
        assert_within(z_t, z_64, EPS32 * np.abs(z_64) + 1e-12, "looked-up teacher logits")
    # the per-step path trains with a frozen teacher: eval mode, no trainable Parameters, untouched
    s = models.student(8, rng=np.random.default_rng(5))
    D.fit_distill(s, (xtr, ytr), D.DistillationLoss(4.0, 0.7, teacher=teacher),
                  TrainConfig(1, np.random.default_rng(6)))
    assert not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    for k, v in teacher.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_distillation_loss_works_inside_fit_and_matches_fit_distill(digits_teacher):
    """The distillation loss is a task loss like any other: fit with it = fit_distill."""
    teacher, (xtr, ytr), _ = digits_teacher
    kd = D.DistillationLoss(2.0, 0.5, teacher=teacher)
    a = models.student(8, rng=np.random.default_rng(5))
    fit(a, optim.Adam(a.parameters()), (xtr, ytr), TrainConfig(1, np.random.default_rng(6)),
        loss_fn=kd)
    b = models.student(8, rng=np.random.default_rng(5))
    D.fit_distill(b, (xtr, ytr), kd, TrainConfig(1, np.random.default_rng(6)))
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[k])


def test_student_learns_from_the_teacher_alone(digits_teacher):
    """α = 1: the student never sees a label, only the teacher's soft targets, and still learns."""
    from minicompress.train import evaluate
    teacher, (xtr, ytr), (xte, yte) = digits_teacher
    kd = D.DistillationLoss(4.0, 1.0, teacher_logits=D.teacher_logits(teacher, xtr))
    s = models.student(8, rng=np.random.default_rng(7))
    fake_labels = np.zeros_like(ytr)          # α = 1 must ignore the labels completely
    D.fit_distill(s, (xtr, fake_labels), kd, TrainConfig(15, np.random.default_rng(8)), lr=3e-3)
    assert evaluate(s, xte, yte)["accuracy"] > 0.85


def test_hint_training_lowers_the_hint_loss(digits_teacher):
    teacher, (xtr, ytr), _ = digits_teacher
    student = models.lenet5(8, rng=np.random.default_rng(3))
    hint = D.HintLoss(Conv2d(6, 32, 1, rng=np.random.default_rng(4)), "pool1", "pool1")
    kd = D.DistillationLoss(4.0, 0.5, teacher=teacher, hint=hint)
    reg_before = hint.regressor.weight.data.copy()

    def hint_value():
        teacher(xtr[:256], capture=("pool1",))
        student(xtr[:256], capture=("pool1",))
        return hint(student.features["pool1"], teacher.features["pool1"])[0]

    start = hint_value()
    D.fit_distill(student, (xtr, ytr), kd, TrainConfig(3, np.random.default_rng(5)), lr=2e-3)
    assert hint_value() < 0.7 * start
    assert not np.array_equal(hint.regressor.weight.data, reg_before)   # Adam trained it too


def test_teacher_logits_cache(tmp_path, digits_teacher):
    teacher, (xtr, _), _ = digits_teacher
    path = tmp_path / "t.npz"
    z1 = D.teacher_logits(teacher, xtr[:100], cache=path)
    assert path.exists()
    z2 = D.teacher_logits(teacher, xtr[:100], cache=path)
    np.testing.assert_array_equal(z1, z2)
    with pytest.raises(ValueError, match="100 rows"):
        D.teacher_logits(teacher, xtr[:50], cache=path)


def test_cosine_lr_sets_every_group_from_its_own_start():
    """α_t = ½ α₀ (1 + cos(π t / T)) after step t, for each parameter group's own α₀."""
    a, b = models.student(8, rng=np.random.default_rng(0)), models.student(8, rng=np.random.default_rng(1))
    opt = optim.Adam([{"params": a.parameters(), "lr": 0.01}, {"params": b.parameters(), "lr": 0.1}])
    trainer = SimpleNamespace(optimizer=opt, step=0)
    hook = CosineLR(100)
    hook.before_step(trainer, None)

    def lrs_after(step):
        trainer.step = step
        hook.after_step(trainer, None)
        return [g["lr"] for g in opt.param_groups]

    assert lrs_after(50) == pytest.approx([0.005, 0.05])
    assert lrs_after(100) == pytest.approx([0.0, 0.0], abs=1e-15)
    assert lrs_after(150) == pytest.approx([0.0, 0.0], abs=1e-15)   # capped at T
    assert lrs_after(25) == pytest.approx([0.005 * (1 + np.cos(np.pi / 4)),
                                           0.05 * (1 + np.cos(np.pi / 4))])


def test_hint_step_with_precomputed_logits_runs_teacher_prefix_only(digits_teacher):
    """With precomputed logits the teacher runs only up to the hint layer: same gradients."""
    teacher, (xtr, ytr), _ = digits_teacher
    idx = np.arange(10, 42)
    # the table holds, for this batch, the logits of the very same teacher call the per-step path
    # makes (same rows, same BLAS call): both paths then compute bit for bit the same numbers
    D.freeze(teacher)
    table = np.zeros((len(xtr), 10), np.float32)
    table[idx] = teacher(xtr[idx])
    grads = []
    for z_t in (None, table):
        student = models.lenet5(8, rng=np.random.default_rng(3))
        hint = D.HintLoss(Conv2d(6, 32, 1, rng=np.random.default_rng(4)), "pool1", "pool1")
        kd = D.DistillationLoss(2.0, 0.5, teacher=teacher, teacher_logits=z_t, hint=hint)
        params = student.parameters() + hint.parameters()
        train_step(student, _NoStep(params), Batch(xtr[idx], ytr[idx], idx), kd)
        grads.append([p.grad.copy() for p in params])
    for a, b in zip(*grads):
        np.testing.assert_array_equal(a, b)
    f = D.teacher_features(teacher, xtr[:5], "pool1")
    teacher(xtr[:5], capture=("pool1",))
    np.testing.assert_array_equal(f, teacher.features["pool1"])


# ---- out-of-fold soft targets ---------------------------------------------------------------
def _digits_subset(n=120):
    from minicompress.data import load_digits
    (x, y), _ = load_digits()
    return x[:n], y[:n]


@pytest.mark.parametrize("folds", [2, 3])
def test_out_of_fold_logits_come_from_a_teacher_that_never_saw_the_image(folds):
    x, y = _digits_subset()
    seen_by = {}

    def make(fold):
        m = models.student(8, rng=np.random.default_rng(fold))
        m.fold = fold
        return m

    def train(model, xp, yp):
        # remember which images (by content) each fold's teacher was trained on
        seen_by[model.fold] = {xi.tobytes() for xi in xp}
        fit(model, optim.Adam(model.parameters(), lr=1e-2), (xp, yp),
            TrainConfig(2, np.random.default_rng(0), batch_size=32))

    teachers = {}

    def make_and_keep(fold):
        teachers[fold] = make(fold)
        return teachers[fold]

    z = D.out_of_fold_logits(make_and_keep, (x, y), train, folds=folds, rng=np.random.default_rng(1))
    assert z.shape == (len(x), 10) and z.dtype == np.float32 and np.all(np.isfinite(z))
    assert len(seen_by) == folds
    # each teacher's logits recomputed in float64. out_of_fold_logits ran them in float32 on
    # batches of rows, which moves a logit by ~1e-6 (the order of float32 rounding, kernel-
    # dependent); the teachers differ from each other by O(1). So: the nearest teacher must be the
    # blind one, and its distance far below 1e-3 (relative).
    z_64 = {f: to_float64(copy.deepcopy(t))(x) for f, t in teachers.items()}
    for n in range(len(x)):
        # exactly the teachers that did not see image n; its logits are the one that did not
        blind = [f for f in range(folds) if x[n].tobytes() not in seen_by[f]]
        assert len(blind) == 1
        distance = {f: np.abs(z[n] - z_64[f][n]).max() for f in range(folds)}
        assert min(distance, key=distance.get) == blind[0], distance
        assert distance[blind[0]] < 1e-3 * max(1.0, np.abs(z_64[blind[0]][n]).max()), distance
    # every fold trained on (folds − 1)/folds of the data
    sizes = sorted(len(v) for v in seen_by.values())
    assert sizes[0] >= len(x) * (folds - 1) // folds - 1


@pytest.mark.parametrize("folds", [1, 0, 1.5, True, 10_000])
def test_out_of_fold_logits_bad_folds(folds):
    x, y = _digits_subset(20)
    with pytest.raises(ValueError, match="folds"):
        D.out_of_fold_logits(lambda f: None, (x, y), lambda *a: None, folds=folds,
                             rng=np.random.default_rng(0))


def test_out_of_fold_logits_needs_a_generator():
    x, y = _digits_subset(20)
    with pytest.raises(TypeError, match="rng"):
        D.out_of_fold_logits(lambda f: None, (x, y), lambda *a: None, rng=0)


def test_the_loss_with_a_hint_is_the_kd_loss_plus_the_hint_loss(rng):
    """L = α·L_soft + (1 − α)·CE + β·L_hint: the value reported with the hint is the sum (its
    gradients are checked above; a wrong sign on the value alone would go unseen there)."""
    teacher = to_float64(models.teacher(8, rng=rng))
    hint = to_float64(D.HintLoss(Conv2d(6, 32, 1, rng=rng), "pool1", "pool1", beta=0.5))
    kd = D.DistillationLoss(3.0, 0.25, teacher=teacher, hint=hint)
    batch = Batch(rng.standard_normal((4, 1, 8, 8)), rng.integers(0, 10, 4))
    logits, f_s = rng.standard_normal((4, 10)), rng.standard_normal((4, 6, 4, 4))
    total, _, _ = kd.with_features(logits, {"pool1": f_s}, batch)
    z_t = teacher(batch.x, capture=("pool1",))
    expected = D.distillation_loss(logits, z_t, batch.y, 3.0, 0.25)[0] \
        + hint(f_s, teacher.features["pool1"])[0]
    assert hint(f_s, teacher.features["pool1"])[0] > 0.1            # the hint term matters
    assert total == pytest.approx(expected, rel=1e-12)


def test_feature_losses_take_beta_zero_and_refuse_negative_beta(rng):
    f_s, f_t = rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((2, 5, 4, 4))
    hint = to_float64(D.HintLoss(Conv2d(3, 5, 1, rng=rng), "a", "b", beta=0.0))
    at = D.AttentionTransferLoss("a", "b", beta=0.0)
    for loss in (hint, at):                                    # β = 0: the term is switched off
        value, grad = loss(f_s, f_t)
        assert value == 0.0 and not np.any(grad)
    with pytest.raises(ValueError):
        D.HintLoss(Conv2d(3, 5, 1, rng=rng), "a", "b", beta=-0.1)
    with pytest.raises(ValueError):
        D.AttentionTransferLoss("a", "b", beta=-0.1)
