"""Few labels plus a transfer set, and the omitted class (Hinton et al. 2015 §3): the balanced
label subset, the masked distillation loss, Hinton's bias adjustment."""
import numpy as np
import pytest

from minicompress import distill as D
from minicompress import models
from minicompress.train import TrainConfig
from minicompress import transfer as X
from tests.gradcheck import numerical_grad


# ---- balanced_label_subset ----------------------------------------------------------------------
def test_balanced_label_subset_takes_n_over_k_of_each_class():
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 2, 2])
    idx = X.balanced_label_subset(y, 6, np.random.default_rng(0))
    assert len(idx) == 6 and len(set(idx.tolist())) == 6
    assert np.all(np.diff(idx) > 0)                                   # sorted, no repeats
    np.testing.assert_array_equal(np.bincount(y[idx], minlength=3), [2, 2, 2])
    # the same seed draws the same subset; another seed (here) a different one
    np.testing.assert_array_equal(idx, X.balanced_label_subset(y, 6, np.random.default_rng(0)))
    other = {tuple(X.balanced_label_subset(y, 6, np.random.default_rng(s))) for s in range(10)}
    assert len(other) > 1


def test_balanced_label_subset_all_of_a_class():
    y = np.array([0, 0, 1, 1])
    np.testing.assert_array_equal(X.balanced_label_subset(y, 4, np.random.default_rng(3)),
                                  [0, 1, 2, 3])


@pytest.mark.parametrize("n, match", [(5, "multiple of the 3"), (0, "multiple"),
                                      (9, "class 0 has 2 images")])
def test_balanced_label_subset_bad_n(n, match):
    y = np.array([0, 0, 1, 1, 1, 2, 2, 2])
    with pytest.raises(ValueError, match=match):
        X.balanced_label_subset(y, n, np.random.default_rng(0))


def test_balanced_label_subset_bad_rng_and_labels():
    with pytest.raises(TypeError, match="rng"):
        X.balanced_label_subset(np.array([0, 1]), 2, 0)
    with pytest.raises(ValueError, match="integer"):
        X.balanced_label_subset(np.array([0.0, 1.0]), 2, np.random.default_rng(0))


def test_hide_labels():
    y = np.array([3, 1, 4, 1, 5])
    np.testing.assert_array_equal(X.hide_labels(y, [1, 4]), [-1, 1, -1, -1, 5])
    np.testing.assert_array_equal(y, [3, 1, 4, 1, 5])                 # the input is untouched


# ---- the masked loss ----------------------------------------------------------------------------
def test_masked_loss_worked_example():
    # B = 2, K = 2, T = 1, α = 0.5; image 0 labelled (class 0), image 1 unlabelled.
    # p_s = (½, ½) for both; p_t = (¾, ¼) and (¼, ¾).
    # KL = ¾ ln(3/2) + ¼ ln(1/2) = 0.1308120 for each row; CE of image 0 = ln 2.
    # L = ½ [0.5·0.1308120 + 1·0.1308120 + 0.5·ln 2] = 0.2713958
    # ∂L/∂z: image 0 = ½ [0.5·(½−¾, ½−¼) + 0.5·(½−1, ½)] = (−0.1875, 0.1875);
    #        image 1 = ½ [1·(½−¼, ½−¾)] = (0.125, −0.125)   (no hard term)
    z_s = np.zeros((2, 2))
    z_t = np.array([[np.log(3.0), 0.0], [0.0, np.log(3.0)]])
    loss, grad = X.masked_distillation_loss(z_s, z_t, np.array([0, -1]), T=1.0, alpha=0.5)
    kl = 0.75 * np.log(1.5) + 0.25 * np.log(0.5)
    assert kl == pytest.approx(0.1308120, rel=1e-6)
    assert loss == pytest.approx(0.5 * (0.5 * kl + kl + 0.5 * np.log(2.0)), rel=1e-12)
    assert loss == pytest.approx(0.2713958, rel=1e-6)
    np.testing.assert_allclose(grad, [[-0.1875, 0.1875], [0.125, -0.125]], rtol=1e-12)


def test_masked_loss_with_every_label_is_the_distillation_loss(rng):
    z_s, z_t = rng.standard_normal((6, 5)), 3 * rng.standard_normal((6, 5))
    y = rng.integers(0, 5, 6)
    got = X.masked_distillation_loss(z_s, z_t, y, T=4.0, alpha=0.3)
    want = D.distillation_loss(z_s, z_t, y, T=4.0, alpha=0.3)
    assert got[0] == pytest.approx(want[0], rel=1e-12)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-10, atol=1e-15)


def test_masked_loss_with_no_label_is_the_soft_term_alone(rng):
    z_s, z_t = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    got = X.masked_distillation_loss(z_s, z_t, np.full(4, -1), T=2.0, alpha=0.3)
    want = D.soft_target_loss(z_s, z_t, 2.0)
    assert got[0] == pytest.approx(want[0], rel=1e-12)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-10, atol=1e-15)


def test_masked_loss_gradient_matches_finite_differences(rng):
    z_s, z_t = rng.standard_normal((5, 4)), 2 * rng.standard_normal((5, 4))
    y = np.array([2, -1, 0, -1, 3])
    _, grad = X.masked_distillation_loss(z_s, z_t, y, T=3.0, alpha=0.7)
    z = z_s.copy()
    num = numerical_grad(lambda: X.masked_distillation_loss(z, z_t, y, 3.0, 0.7)[0], z)
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("y, match", [(np.array([0, 5]), "integers in"),
                                      (np.array([0, -2]), "integers in"),
                                      (np.array([0.0, 1.0]), "integers in")])
def test_masked_loss_bad_labels(y, match):
    with pytest.raises(ValueError, match=match):
        X.masked_distillation_loss(np.zeros((2, 3)), np.zeros((2, 3)), y, 1.0, 0.5)


def test_masked_distillation_loss_trains_through_fit_distill(rng):
    # 3 of 60 images labelled: the loop runs with −1 labels and the loss goes down
    x = rng.standard_normal((60, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, 60)
    teacher = models.student(8, rng=np.random.default_rng(1))
    z_t = D.teacher_logits(teacher, x)
    student = models.student(8, rng=np.random.default_rng(2))
    kd = X.MaskedDistillationLoss(2.0, 0.5, teacher_logits=z_t)
    hist = D.fit_distill(student, (x, X.hide_labels(y, [0, 1, 2])), kd,
                         TrainConfig(15, np.random.default_rng(0), batch_size=16), lr=1e-2)
    assert hist[-1]["train_loss"] < 0.5 * hist[0]["train_loss"]


# ---- the omitted class: bias adjustment ---------------------------------------------------------
def test_bias_for_share_worked_example():
    # class 2; gaps g = max(z_0, z_1) − z_2 per row: 3, −1, 0.5, 2 → sorted −1, 0.5, 2, 3
    z = np.array([[3.0, 0.0, 0.0], [0.0, -1.0, 1.0], [0.5, 0.2, 0.0], [1.0, 2.0, 0.0]])
    assert X.bias_for_share(z, 2, 0.5) == pytest.approx(1.25)          # halfway between 0.5 and 2
    assert X.bias_for_share(z, 2, 0.25) == pytest.approx(-0.25)        # between −1 and 0.5
    assert X.bias_for_share(z, 2, 1.0) == pytest.approx(4.0)           # above 3 by the margin 1
    assert X.bias_for_share(z, 2, 0.0) == pytest.approx(-2.0)          # below −1 by 1
    for share, k in ((0.0, 0), (0.25, 1), (0.5, 2), (0.75, 3), (1.0, 4)):
        shifted = z.copy()
        shifted[:, 2] += X.bias_for_share(z, 2, share)
        assert int(np.sum(shifted.argmax(1) == 2)) == k


def test_bias_for_share_bad_input():
    z = np.zeros((3, 4))
    with pytest.raises(ValueError, match="cls"):
        X.bias_for_share(z, 4, 0.1)
    with pytest.raises(ValueError, match="share"):
        X.bias_for_share(z, 1, 1.5)
    with pytest.raises(ValueError, match=r"\(B, K\)"):
        X.bias_for_share(np.zeros(4), 1, 0.1)


def test_raise_class_bias_moves_one_logit_by_delta(rng):
    model = models.student(8, rng=np.random.default_rng(0))
    x = rng.standard_normal((7, 1, 8, 8)).astype(np.float32)
    before = model(x).astype(np.float64)
    X.raise_class_bias(model, 3, 2.5)
    after = model(x).astype(np.float64)
    diff = after - before
    np.testing.assert_allclose(diff[:, 3], 2.5, rtol=1e-5)
    np.testing.assert_array_equal(np.delete(diff, 3, axis=1), 0.0)
    with pytest.raises(ValueError, match="cls"):
        X.raise_class_bias(model, 10, 1.0)
