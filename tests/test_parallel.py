"""Data-parallel training step: the same update as the one-thread step, up to float rounding."""
import numpy as np
import pytest

from minicompress import distill, models, optim, prune
from minicompress.nn import Linear, ReLU, Sequential
from minicompress.parallel import DataParallelStep, replicate
from minicompress.step import Batch, train_step
from minicompress.train import TrainConfig, fit


def _batch(n=37, size=28, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, size, size), dtype=np.float32), rng.integers(0, 10, n)


def _pair(name, size=28):
    a = models.build(name, size, rng=np.random.default_rng(1))
    b = models.build(name, size, rng=np.random.default_rng(1))
    return a, b


@pytest.mark.parametrize("name", ["lenet300", "lenet5", "teacher", "student"])
@pytest.mark.parametrize("workers", [2, 3])
def test_parallel_step_equals_single_step(name, workers):
    x, y = _batch(n=37)  # 37 rows: shards of unequal size
    a, b = _pair(name)
    opt_a, opt_b = optim.Adam(a.parameters(), lr=1e-3), optim.Adam(b.parameters(), lr=1e-3)
    with DataParallelStep(b, opt_b, workers=workers) as step:
        for _ in range(3):
            loss_a, logits_a = train_step(a, opt_a, Batch(x, y))
            loss_b, logits_b = step(Batch(x, y))
            np.testing.assert_allclose(loss_b, loss_a, rtol=1e-5)
            np.testing.assert_allclose(logits_b, logits_a, rtol=1e-4, atol=1e-5)
            for (k, p), q in zip(a.named_parameters(), b.parameters()):
                np.testing.assert_allclose(q.grad, p.grad, rtol=1e-4, atol=1e-6, err_msg=k)
                np.testing.assert_allclose(q.data, p.data, rtol=1e-5, atol=1e-5, err_msg=k)


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
    z_t = np.random.default_rng(3).normal(size=(20, 10)).astype(np.float32)
    kd = distill.DistillationLoss(4.0, 0.7, teacher_logits=z_t)
    opt_a, opt_b = optim.Adam(a.parameters()), optim.Adam(b.parameters())
    with DataParallelStep(b, opt_b, workers=2, loss_fn=kd) as step:
        train_step(a, opt_a, Batch(x, y), loss_fn=kd)
        step(Batch(x, y))
    for (k, p), q in zip(a.named_parameters(), b.parameters()):
        np.testing.assert_allclose(q.data, p.data, rtol=1e-5, atol=1e-5, err_msg=k)


def test_fit_with_two_workers_matches_one_worker():
    x, y = _batch(n=64, size=8)
    a, b = _pair("lenet5", 8)
    fit(a, optim.Adam(a.parameters()), (x, y),
        TrainConfig(epochs=2, rng=np.random.default_rng(5), batch_size=16))
    fit(b, optim.Adam(b.parameters()), (x, y),
        TrainConfig(epochs=2, rng=np.random.default_rng(5), batch_size=16, workers=2))
    for (k, p), q in zip(a.named_parameters(), b.parameters()):
        np.testing.assert_allclose(q.data, p.data, rtol=1e-4, atol=1e-5, err_msg=k)


def test_more_workers_than_rows():
    x, y = _batch(n=1)
    a, b = _pair("student")
    opt_a, opt_b = optim.Adam(a.parameters()), optim.Adam(b.parameters())
    with DataParallelStep(b, opt_b, workers=2) as step:
        train_step(a, opt_a, Batch(x, y))
        step(Batch(x, y))
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_allclose(q.data, p.data, rtol=1e-5, atol=1e-5)


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
