"""Softmax cross-entropy, computed from a stable log-softmax."""
import numpy as np

from .checks import real_array


def log_softmax(z, axis=-1):
    """log softmax(z) = z − max z − log Σ exp(z − max z): subtracting the max avoids overflow."""
    z = real_array(z, "log_softmax: z")
    z = z - z.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def softmax(z, axis=-1):
    """softmax(z) = exp(z − max z) / Σ exp(z − max z), along ``axis``."""
    z = real_array(z, "softmax: z")
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def cross_entropy(logits, targets):
    """Mean cross-entropy of integer class targets and its gradient.

    L = −(1/N) Σ_n log softmax(z_n)[y_n];   ∂L/∂z = (softmax(z) − onehot(y)) / N.

    Shapes: logits (N, K), targets (N,) integers in [0, K). Returns (loss: float, grad (N, K)).
    """
    logits = np.asarray(logits)
    targets = np.asarray(targets)
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: logits must be (N, K), got shape {logits.shape}")
    if targets.shape != (logits.shape[0],):
        raise ValueError(
            f"cross_entropy: targets must have shape ({logits.shape[0]},) to match logits "
            f"{logits.shape}, got {targets.shape}"
        )
    if not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"cross_entropy: targets must be integers, got dtype {targets.dtype}")
    n, k = logits.shape
    if n and (targets.min() < 0 or targets.max() >= k):
        raise ValueError(f"cross_entropy: targets must lie in [0, {k}), got {targets.min()}..{targets.max()}")
    if not np.all(np.isfinite(logits)):
        raise FloatingPointError("cross_entropy: logits contain NaN or inf")
    logp = log_softmax(logits)
    rows = np.arange(n)
    loss = -logp[rows, targets].mean()
    grad = np.exp(logp)
    grad[rows, targets] -= 1.0
    grad /= n
    return float(loss), grad.astype(logits.dtype, copy=False)
