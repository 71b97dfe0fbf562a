"""Today's behaviour, pinned: a refactor of the training code must not change what it computes.

Two kinds of pin, because a float32 network trained for hundreds of Adam steps is not
reproducible bit for bit *across machines*: the BLAS kernel (``OPENBLAS_CORETYPE``) and its
thread count change the order of float32 sums, the first steps differ in the last bit, and the
runs drift apart like runs with two different seeds. (The demo's artifact bytes differ between
OPENBLAS_NUM_THREADS=1, unset and OPENBLAS_CORETYPE=Haswell on the same machine.) So:

* **exact, within one process**: the same recipe and seed run twice gives the same artifact bytes
  and the same logits — the code path is deterministic (no unseeded randomness, no dependence on
  dict order or on object ids);
* **statistical, across machines**: every stage's test accuracy is within a bound of the value
  recorded when the refactor started. The bound is derived, not tuned: two equally good models
  scored on the same n test images differ in accuracy with a standard deviation of at most
  √(2 p (1 − p) / n) (two independent binomial proportions); we allow 4 of them. A refactor that
  breaks training (a wrong gradient, a lost optimizer group, labels mixed up with indices) moves
  accuracies far more than that.
"""
import hashlib

import numpy as np
import pytest

from minicompress import pipeline
from minicompress.recipe import DEMO_RECIPE, load_recipe
from minicompress.serialize import load_integer_model

# stage accuracies (teacher, distill, prune, quantize, export) recorded before the refactor
DEMO_ACCURACY = [0.977778, 0.947222, 0.95, 0.941667, 0.941667]
FASHION_ACCURACY = [0.785, 0.717, 0.709, 0.72, 0.72]

FASHION_RECIPE = {
    "seed": 0, "dataset": "fashion-mnist", "batch_size": 128,
    "teacher": {"model": "lenet300", "epochs": 2},
    "distill": {"model": "student", "hidden": 32, "epochs": 2},
    "prune": {"sparsity": 0.8, "epochs": 1, "lr": 1e-3},
    "quantize": {"weight_bits": 4, "activation_bits": 8, "epochs": 1},
}


def accuracy_bound(p, n):
    """4 standard deviations of the difference of two accuracies p measured on n images."""
    return 4.0 * np.sqrt(2.0 * p * (1.0 - p) / n)


def run_recipe(recipe, tmp_path, name, data=None):
    """Run a recipe; returns (artifact bytes, stage accuracies, integer-model logits on the test set)."""
    out = tmp_path / f"{name}.npz"
    result = pipeline.run(recipe, out=out, progress=False, data=data)
    x_test = data[1][0] if data is not None else None
    if x_test is None:
        from minicompress.data import load_dataset
        x_test = load_dataset(recipe["dataset"])[1][0]
    logits = load_integer_model(out).forward(x_test)
    return out.read_bytes(), [row["accuracy"] for row in result["stages"]], logits


def check_accuracies(measured, recorded, n):
    assert len(measured) == len(recorded)
    for stage, (a, b) in enumerate(zip(measured, recorded)):
        assert abs(a - b) <= accuracy_bound(b, n), \
            f"stage {stage}: accuracy {a:.4f}, recorded {b:.4f} (bound ±{accuracy_bound(b, n):.4f})"


def test_demo_recipe_same_seed_same_bytes_and_recorded_accuracy(tmp_path):
    recipe = load_recipe(DEMO_RECIPE)
    bytes_a, acc_a, logits_a = run_recipe(recipe, tmp_path, "a")
    bytes_b, acc_b, logits_b = run_recipe(recipe, tmp_path, "b")
    assert hashlib.sha256(bytes_a).hexdigest() == hashlib.sha256(bytes_b).hexdigest()
    assert acc_a == acc_b
    np.testing.assert_array_equal(logits_a, logits_b)
    check_accuracies(acc_a, DEMO_ACCURACY, n=len(logits_a))


def test_accuracy_bound_can_fail():
    # the bound is a few points for the demo's 360 test images: a broken trainer is caught
    assert accuracy_bound(0.94, 360) < 0.08
    with pytest.raises(AssertionError):
        check_accuracies([0.94, 0.80], [0.94, 0.94], n=360)


@pytest.mark.fashion
def test_short_fashion_recipe_same_logits_and_recorded_accuracy(fashion, tmp_path):
    (xtr, ytr), (xte, yte) = fashion
    data = ((xtr[:3000], ytr[:3000]), (xte[:1000], yte[:1000]))
    _, acc_a, logits_a = run_recipe(FASHION_RECIPE, tmp_path, "a", data)
    _, acc_b, logits_b = run_recipe(FASHION_RECIPE, tmp_path, "b", data)
    np.testing.assert_array_equal(logits_a, logits_b)
    assert acc_a == acc_b
    check_accuracies(acc_a, FASHION_ACCURACY, n=1000)
