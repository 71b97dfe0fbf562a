"""Rounding-error bounds, so that a test compares a float32 result with a float64 reference by a
bound that holds for every BLAS kernel, thread count and summation order (shared by the tests).

A float32 dot product of length K, summed in any order, is off from the exact value by at most
γ_K Σ_k |a_k b_k| with γ_K = K·u/(1 − K·u), u = eps32/2 (Higham, *Accuracy and Stability of
Numerical Algorithms*, §3.1). ``K · eps32`` is a little more than γ_K for every K < 2^22.
"""
import numpy as np

EPS32 = float(np.finfo(np.float32).eps)
EPS64 = float(np.finfo(np.float64).eps)


def matmul_error_bound(a, b, eps=EPS32):
    """Entry-wise bound on |fl(a @ b) − a @ b| for a (..., K) @ b (K, N) in any summation order:
    K · eps · (|a| @ |b|), computed in float64."""
    a, b = np.abs(np.asarray(a, np.float64)), np.abs(np.asarray(b, np.float64))
    return a.shape[-1] * eps * (a @ b)


def sum_error_bound(terms, eps=EPS32):
    """Bound on |fl(Σ t) − Σ t| for a sum of n terms in any order: n · eps · Σ |t|."""
    terms = np.asarray(terms, np.float64)
    return terms.size * eps * np.abs(terms).sum()


def assert_within(got, want, bound, what=""):
    """|got − want| ≤ bound entry-wise (want and bound in float64); the message gives the worst
    entry as a fraction of its bound."""
    err = np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))
    bound = np.broadcast_to(np.asarray(bound, np.float64), err.shape)
    bad = err > bound
    if np.any(bad):
        i = np.unravel_index(np.argmax(np.where(bad, err - bound, -np.inf)), err.shape)
        raise AssertionError(f"{what}: {int(bad.sum())} of {err.size} entries outside the bound; "
                             f"worst at {i}: |error| {err[i]:.3g} > bound {bound[i]:.3g}")
