"""Choosing which weights to prune from their scores — §3.1.1 step 3.

"Select a ratio (e.g. 10 %) of the weights by score and set their mask entries to 0." Two
readings of "a ratio", both offered:

* ``scope="layer"``: every layer loses the same fraction of its own weights;
* ``scope="global"``: one threshold over all layers (what ``torch.nn.utils.prune.global_unstructured``
  does), so redundant layers lose more.

Counts are exact: with n weights and sparsity s, exactly ``k = n − round(s·n)`` are kept. Ties are
broken deterministically — among equal scores the entry with the lower flat index (C order, layers
in model order) is kept — so the same scores always give the same mask.
"""
from __future__ import annotations

import numpy as np

SCOPES = ("global", "layer")


def check_sparsity(sparsity, name="sparsity"):
    """A fraction in [0, 1): 1 would remove everything, which no method may do."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number in [0, 1), got {sparsity!r}")
    if not (0.0 <= float(sparsity) < 1.0):
        raise ValueError(f"{name} must be in [0, 1), got {sparsity!r}")
    return float(sparsity)


def kept_count(n, sparsity):
    """Number of entries kept when a fraction ``sparsity`` of ``n`` is pruned: n − round(s·n)."""
    return int(n - round(check_sparsity(sparsity) * n))


def topk_mask(scores, k):
    """Boolean array, True at the ``k`` largest scores (exactly k), ties → lower flat index.

    O(n) with ``np.partition`` (no full sort), so it is cheap enough to call at every step.
    Entries with score ``-inf`` are never kept unless k exceeds the finite ones.
    """
    scores = np.asarray(scores)
    flat = scores.ravel()
    n = flat.size
    if not 0 <= k <= n:
        raise ValueError(f"topk_mask: k must be in [0, {n}], got {k}")
    if np.isnan(flat).any():
        raise ValueError("topk_mask: scores contain NaN")
    keep = np.zeros(n, dtype=bool)
    if k == 0:
        return keep.reshape(scores.shape)
    threshold = np.partition(flat, n - k)[n - k]  # the k-th largest score
    keep = flat > threshold
    missing = k - int(keep.sum())
    ties = np.flatnonzero(flat == threshold)[:missing]  # lowest indices first: deterministic
    keep[ties] = True
    return keep.reshape(scores.shape)


def select(scores, sparsity, scope="global"):
    """Masks from scores: ``{name: bool array}``, True = keep.

    ``scores`` is ``{name: array}`` (one per layer, in model order). With ``scope="global"`` the
    total kept count is exact; with ``scope="layer"`` each layer's is.
    """
    check_sparsity(sparsity)
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {list(SCOPES)}, got {scope!r}")
    if not scores:
        raise ValueError("select: no scores given")
    if scope == "layer":
        return {name: topk_mask(s, kept_count(s.size, sparsity)) for name, s in scores.items()}
    names = list(scores)
    flat = np.concatenate([np.asarray(scores[n], dtype=np.float64).ravel() for n in names])
    keep = topk_mask(flat, kept_count(flat.size, sparsity))
    out, start = {}, 0
    for n in names:
        size = np.asarray(scores[n]).size
        out[n] = keep[start:start + size].reshape(np.shape(scores[n]))
        start += size
    return out
