"""The sparse (ELL) forward of a pruned Linear and the rule that chooses it.

* ``ell_matmul`` equals the dense product within the float32 bound K·eps32·|x||W|ᵀ, and to float64
  rounding when fed float64;
* so does the compact form (dead rows and columns removed);
* the ELL and compact forms round-trip to the same dense weight, bit for bit;
* ``choose_kernel`` says dense wherever the sparse form cannot win by construction (batch 1, full
  density, tiny layers);
* ``for_inference`` computes the function of the masked model, leaves the model alone, and really
  runs the ELL kernel where the rule says so.
"""
import numpy as np
import pytest

from minicompress import models
from minicompress.nn import Linear, Sequential
from minicompress.nn.sparse_linear import (COMPACT_MAX_DENSITY, ELL_MAX_DENSITY, MIN_BATCH,
                                           SparseLinear, choose_kernel, compact_form,
                                           compact_matmul, dense_from_ell, ell_form, ell_matmul,
                                           for_inference)
from minicompress.prune import prune_by_score

from bounds import EPS32, EPS64, assert_within, matmul_error_bound


def masked_weight(rng, shape, sparsity):
    w = rng.standard_normal(shape).astype(np.float32)
    return np.where(rng.random(shape) < sparsity, 0, w).astype(np.float32)


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.98, 0.999, 1.0])
def test_ell_matmul_equals_dense_within_the_float32_bound(sparsity):
    rng = np.random.default_rng(0)
    w = masked_weight(rng, (30, 70), sparsity)
    x = rng.standard_normal((9, 70)).astype(np.float32)
    got = ell_matmul(ell_form(w), x)
    assert got.shape == (9, 30) and got.dtype == np.float32
    exact = x.astype(np.float64) @ w.T.astype(np.float64)
    assert_within(got, exact, matmul_error_bound(x, w.T), "ELL vs exact")


def test_ell_matmul_in_float64_is_the_dense_product():
    rng = np.random.default_rng(1)
    w = masked_weight(rng, (12, 40), 0.9).astype(np.float64)
    form = ell_form(w)
    form = form._replace(vals=form.vals.astype(np.float64))   # float32 values of float32 weights: exact
    x = rng.standard_normal((5, 40))
    assert_within(ell_matmul(form, x), x @ w.T, matmul_error_bound(x, w.T, EPS64), "float64")


def test_a_wrong_kernel_is_caught():
    """The bound is tight enough to see a lost entry (a test that can fail)."""
    rng = np.random.default_rng(2)
    w = masked_weight(rng, (10, 50), 0.8)
    form = ell_form(w)
    form.vals[0, 0] = 0
    x = rng.standard_normal((4, 50)).astype(np.float32)
    with pytest.raises(AssertionError):
        assert_within(ell_matmul(form, x), x.astype(np.float64) @ w.T, matmul_error_bound(x, w.T))


def test_ell_form_round_trips_and_pads_with_zeros():
    rng = np.random.default_rng(3)
    w = masked_weight(rng, (20, 33), 0.9)
    w[4] = 0                                          # an empty row
    form = ell_form(w)
    assert form.cols.dtype == np.int32 and form.vals.dtype == np.float32
    assert form.cols.shape[1] == max(1, int((w != 0).sum(1).max()))
    assert np.array_equal(dense_from_ell(form), w)
    assert np.all(form.vals[4] == 0) and np.all(form.cols[4] == 0)
    assert form.density == form.cols.shape[1] / 33


def test_ell_form_rejects_a_non_matrix():
    with pytest.raises(ValueError, match="ell_form: w must be a non-empty 2-D weight"):
        ell_form(np.zeros(5))


@pytest.mark.parametrize("sparsity", [0.0, 0.9, 0.999, 1.0])
def test_compact_matmul_equals_dense_within_the_float32_bound(sparsity):
    rng = np.random.default_rng(5)
    w = masked_weight(rng, (30, 70), sparsity)
    w[3] = 0
    w[:, 7] = 0                                          # a dead neuron and a dead input
    x = rng.standard_normal((9, 70)).astype(np.float32)
    form = compact_form(w)
    assert 3 not in form.rows and 7 not in form.cols
    got = compact_matmul(form, x)
    assert got.shape == (9, 30) and np.all(got[:, 3] == 0)
    assert_within(got, x.astype(np.float64) @ w.T, matmul_error_bound(x, w.T), "compact vs exact")
    back = np.zeros_like(w)
    back[np.ix_(form.rows, form.cols)] = form.w
    assert np.array_equal(back, w)


def test_rule_says_dense_where_sparse_cannot_win():
    big = (300, 784)
    assert choose_kernel(0.001, 1, big, 0.01) == "dense"             # batch 1: the fixed cost
    assert choose_kernel(0.001, MIN_BATCH - 1, big, 0.01) == "dense"  # below the measured batches
    assert choose_kernel(1.0, 256, big, 1.0) == "dense"              # nothing to skip
    assert choose_kernel(0.001, 4096, (10, 100), 0.01) == "dense"    # a tiny layer
    assert choose_kernel(1.0, 256, big) == "dense"                   # default: no dead rows/columns
    assert choose_kernel(1.0, 256, big, COMPACT_MAX_DENSITY) == "compact"
    assert choose_kernel(1.0, 256, big, min(1.0, 1.5 * COMPACT_MAX_DENSITY)) == "dense"
    for batch, d in ELL_MAX_DENSITY:
        assert choose_kernel(d, batch, big) == "ell"
        assert choose_kernel(2 * d, batch, big) == "dense"


def ell_friendly_weight(rng):
    """300 x 784 with every row and column alive but at most 3 nonzeros per row: compact cannot
    help (density 1), ELL can (K/in = 3/784)."""
    w = np.zeros((300, 784), np.float32)
    o = np.arange(300)
    for c in (o, o + 300, (o + 600) % 784):
        w[o, c] = rng.standard_normal(300)
    return w


def test_sparse_linear_runs_the_chosen_kernel_and_equals_dense():
    rng = np.random.default_rng(6)
    w = ell_friendly_weight(rng)
    b = rng.standard_normal(300).astype(np.float32)
    layer = SparseLinear(w, b)
    assert layer.compact.density == 1.0 and layer.ell.cols.shape[1] == 3
    for batch, kernel in ((1, "dense"), (256, "ell")):
        x = rng.standard_normal((batch, 784)).astype(np.float32)
        y = layer(x)
        assert layer.last_kernel == kernel
        exact = x.astype(np.float64) @ w.T + b
        assert_within(y, exact, matmul_error_bound(x, w.T) + EPS32 * np.abs(exact), kernel)


def test_for_inference_is_the_masked_model_and_leaves_it_alone():
    rng = np.random.default_rng(4)
    model = models.lenet300(rng=np.random.default_rng(0))
    prune_by_score(model, 0.999, "magnitude", scope="layer")
    before = {k: v.copy() for k, v in model.state_dict().items()}
    fast = for_inference(model)
    assert all(isinstance(fast[n], SparseLinear) for n in ("fc1", "fc2", "fc3"))
    for batch in (1, 256):
        x = rng.standard_normal((batch, 784)).astype(np.float32)
        model.eval()
        want = model(x)
        got = fast(x)
        # the float64 forward of the same weights, and a bound carried layer by layer: an input
        # error e becomes |W|e, the layer's own sum adds K·eps32·(|x| + e)|W|ᵀ and the bias add
        # eps32·|y|; ReLU is 1-Lipschitz
        x64 = x.astype(np.float64)
        err = np.zeros_like(x64)
        for name in ("fc1", "fc2", "fc3"):
            w = model[name].effective_weight().astype(np.float64)
            y64 = x64 @ w.T + model[name].bias.data
            err = err @ np.abs(w.T) + matmul_error_bound(np.abs(x64) + err, w.T) \
                + EPS32 * (np.abs(y64) + err @ np.abs(w.T))
            x64 = np.maximum(y64, 0) if name != "fc3" else y64
        bound = err
        assert_within(got, x64, bound, f"for_inference batch {batch}")
        assert_within(want, x64, bound, f"masked batch {batch}")
    assert fast["fc1"].last_kernel == "compact"      # 99.9 % sparse at batch 256: most rows/columns dead
    fast(x[:1])
    assert fast["fc1"].last_kernel == "dense"
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())


def test_sparse_linear_is_inference_only_and_checks_its_input():
    layer = SparseLinear.from_linear(Linear(6, 3, rng=np.random.default_rng(0)))
    with pytest.raises(RuntimeError, match="inference-only"):
        layer.backward(np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="SparseLinear"):
        layer(np.zeros((2, 5), np.float32))
    with pytest.raises(TypeError, match="for_inference: expected a Sequential"):
        for_inference(Linear(6, 3, rng=np.random.default_rng(0)))
    assert isinstance(for_inference(Sequential(fc=Linear(6, 3, rng=np.random.default_rng(0))))["fc"],
                      SparseLinear)
