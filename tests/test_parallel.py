"""Data-parallel training step: the same update as the one-thread step, up to float rounding.

The comparisons run in float64. In float32 they could not be made robust: the two paths add the
same terms in different orders (shards, BLAS kernels, BLAS threads), and Adam's update
u = α·m̂/(√v̂ + ε) turns a rounding difference δg in a gradient near 0 into a change of up to
α·δg/ε — O(α) for a float32 δg ≈ 1e-8 — so no fixed float32 tolerance holds on every machine.
"""
import numpy as np
import pytest

from minicompress import distill, models, optim, prune
from minicompress.nn import Linear, ReLU, Sequential
from minicompress.parallel import DataParallelStep, replicate
from minicompress.step import Batch, train_step
from minicompress.train import TrainConfig, fit
from tests.gradcheck import to_float64

# Every gradient entry (and every logit) is a sum of at most K ≈ 3·10⁴ terms (a first-conv weight
# gradient sums over 37 images × 28·28 positions), grouped differently by the two paths; float64
# rounding moves it by at most K·eps64·Σ|terms| ≈ 7e-12 · Σ|terms|, and Σ|terms| is O(1) here
# (inputs in [0, 1), small initial weights, ∂L/∂z = (p − onehot)/N carries the 1/N). Measured:
# ~1e-16. A real bug (a shard lost or counted twice) changes a gradient by O(|g|) ≈ 1e-2.
SUM_ATOL = 3e4 * np.finfo(np.float64).eps


def adam_atol(opt, steps, grad_atol=SUM_ATOL):
    """Bound on |θ_a − θ_b| after ``steps`` Adam steps whose gradients differ by ≤ grad_atol:
    m̂ and √v̂ each move by at most δg, so u = α·m̂/(√v̂ + ε) moves by at most 2α·δg/ε a step."""
    return steps * 2 * opt.lr * grad_atol / opt.eps


def _batch(n=37, size=28, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, size, size)), rng.integers(0, 10, n)


def _pair(name, size=28):
    a = to_float64(models.build(name, size, rng=np.random.default_rng(1)))
    b = to_float64(models.build(name, size, rng=np.random.default_rng(1)))
    return a, b


def assert_same_parameters(a, b, atol):
    for (k, p), q in zip(a.named_parameters(), b.parameters()):
        assert q.data.dtype == np.float64, k
        np.testing.assert_allclose(q.data, p.data, rtol=0, atol=atol, err_msg=k)


@pytest.mark.parametrize("name", ["lenet300", "lenet5", "teacher", "student"])
@pytest.mark.parametrize("workers", [2, 3])
def test_parallel_step_equals_single_step(name, workers):
    x, y = _batch(n=37)  # 37 rows: shards of unequal size
    a, b = _pair(name)
    opt_a, opt_b = optim.Adam(a.parameters(), lr=1e-3), optim.Adam(b.parameters(), lr=1e-3)
    with DataParallelStep(b, opt_b, workers=workers) as step:
        for t in range(1, 4):
            loss_a, logits_a = train_step(a, opt_a, Batch(x, y))
            loss_b, logits_b = step(Batch(x, y))
            assert logits_b.dtype == np.float64
            np.testing.assert_allclose(loss_b, loss_a, rtol=0, atol=SUM_ATOL)
            np.testing.assert_allclose(logits_b, logits_a, rtol=0, atol=SUM_ATOL)
            for (k, p), q in zip(a.named_parameters(), b.parameters()):
                np.testing.assert_allclose(q.grad, p.grad, rtol=0, atol=SUM_ATOL, err_msg=k)
            assert_same_parameters(a, b, adam_atol(opt_a, t))


def test_replica_shares_data_but_not_grad_or_caches():
    model = models.lenet300(rng=np.random.default_rng(0))
    twin = replicate(model)
    for p, q in zip(model.parameters(), twin.parameters()):
        assert q is not p and q.data is p.data and q.grad is not p.grad
    assert twin.fc1 is not model.fc1 and twin._modules is not model._modules
    x, _ = _batch(n=4)
    model(x)
    twin(x[:2])
    assert model.relu1._positive.shape[0] == 4 and twin.relu1._positive.shape[0] == 2


def test_replica_of_a_tied_parameter_stays_tied():
    rng = np.random.default_rng(0)
    a, b = Linear(3, 3, rng=rng), Linear(3, 3, rng=rng)
    b.weight = a.weight
    twin = replicate(Sequential(a=a, r=ReLU(), b=b))
    assert twin.a.weight is twin.b.weight and twin.a.weight is not a.weight


def test_parallel_step_with_a_pruning_mask_and_a_distillation_loss():
    """Weight transforms (a learned mask, whose scores get a gradient) and another loss."""
    x, y = _batch(n=20)
    a, b = _pair("lenet300")
    keep = np.random.default_rng(4).random(a.fc1.weight.data.shape) < 0.5
    for m in (a, b):
        mask = prune.attach_mask(m.fc1, prune.LearnedMask(m.fc1.weight.data.shape))
        mask.set(keep)
        to_float64(m)  # the mask's own Parameters too
    z_t = np.random.default_rng(3).normal(size=(20, 10))
    kd = distill.DistillationLoss(4.0, 0.7, teacher_logits=z_t)
    opt_a, opt_b = optim.Adam(a.parameters()), optim.Adam(b.parameters())
    with DataParallelStep(b, opt_b, workers=2, loss_fn=kd) as step:
        train_step(a, opt_a, Batch(x, y), loss_fn=kd)
        step(Batch(x, y))
    assert_same_parameters(a, b, adam_atol(opt_a, 1))


def test_fit_with_two_workers_matches_one_worker():
    x, y = _batch(n=64, size=8)
    a, b = _pair("lenet5", 8)
    opt_a, opt_b = optim.Adam(a.parameters()), optim.Adam(b.parameters())
    fit(a, opt_a, (x, y), TrainConfig(2, np.random.default_rng(5), batch_size=16))
    fit(b, opt_b, (x, y), TrainConfig(2, np.random.default_rng(5), batch_size=16, workers=2))
    assert_same_parameters(a, b, adam_atol(opt_a, 2 * 64 // 16))


def test_more_workers_than_rows():
    x, y = _batch(n=1)
    a, b = _pair("student")
    opt_a, opt_b = optim.Adam(a.parameters()), optim.Adam(b.parameters())
    with DataParallelStep(b, opt_b, workers=2) as step:
        train_step(a, opt_a, Batch(x, y))
        step(Batch(x, y))
    assert_same_parameters(a, b, adam_atol(opt_a, 1))


@pytest.mark.parametrize("workers", [0, -1, 1.5, "2"])
def test_bad_workers(workers):
    model = models.student(rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="workers"):
        DataParallelStep(model, optim.Adam(model.parameters()), workers=workers)


def test_nan_input_is_refused():
    model = models.student(rng=np.random.default_rng(0))
    x, y = _batch(n=4)
    x[0, 0, 0, 0] = np.nan
    with DataParallelStep(model, optim.Adam(model.parameters())) as step, \
            pytest.raises(FloatingPointError, match="NaN"):
        step(Batch(x, y))


def test_replicas_follow_the_models_train_eval_mode():
    x, y = _batch(n=8)
    model = models.lenet5(rng=np.random.default_rng(0))
    with DataParallelStep(model, optim.Adam(model.parameters()), workers=2) as step:
        model.eval()
        step(Batch(x, y))
        assert all(not m.training for r in step.replicas for m in r.modules())
        model.train()
        step(Batch(x, y))
        assert all(m.training for r in step.replicas for m in r.modules())


@pytest.mark.parametrize("n_x,n_y", [(0, 0), (4, 3)])
def test_empty_or_mismatched_batch_is_refused(n_x, n_y):
    model = models.student(rng=np.random.default_rng(0))
    x, _ = _batch(n=max(n_x, 1))
    with DataParallelStep(model, optim.Adam(model.parameters())) as step, \
            pytest.raises(ValueError, match="labels"):
        step(Batch(x[:n_x], np.zeros(n_y, dtype=np.int64)))
