"""Distillation where it pays: few labels plus a *transfer set*, and the omitted class.

With all labels a small student gains little from a teacher (the labels already say most of
what the soft targets say). Distillation pays where the student lacks what the teacher has
(Hinton, Vinyals & Dean 2015, §3):

* **labels** — the student gets only N labelled images, and the teacher's soft targets on the
  remaining, unlabelled images (the transfer set);
* **examples** — the transfer set has no image of one class at all; the student learns that
  class only from the small probabilities the teacher gives it on *other* images, and after a
  bias adjustment still recognises many of its test images.

Symbols as in :mod:`minicompress.distill`: z_s, z_t student / teacher logits (B, K), T the
temperature, α the weight of the soft term, m_n = 1 if image n has a label, else 0.

    L = (1/B) Σ_n [ w_n · T² · KL(p_t,n^T ‖ p_s,n^T) + m_n (1 − α) · CE(z_s,n, y_n) ]
    w_n = α if m_n = 1 (labelled: the document's α-mix), 1 if m_n = 0 (unlabelled: soft alone)

An image without a label carries the label :data:`UNLABELLED` (−1) in ``y``, so a partially
labelled training set is one integer array and the training loop needs no change.
"""
from __future__ import annotations

import numpy as np

from .distill import DistillationLoss, check_alpha, check_temperature
from .nn import Linear, Sequential, log_softmax

__all__ = ["UNLABELLED", "MaskedDistillationLoss", "balanced_label_subset", "bias_for_share",
           "hide_labels", "masked_distillation_loss", "raise_class_bias"]

UNLABELLED = -1


def balanced_label_subset(y, n, rng):
    """Indices of ``n`` training images, ``n/K`` drawn at random from each of the K classes.

    ``y`` (N,) integer labels 0..K−1 (K = the number of distinct labels); ``n`` a multiple of K
    (a balanced subset of 100 images of 10 classes is 10 per class); ``rng`` a numpy Generator.
    Returns the sorted indices (n,) — the same ``rng`` seed gives the same subset.
    """
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or len(y) == 0 or y.min() < 0:
        raise ValueError("balanced_label_subset: y must be a non-empty 1-D array of integer "
                         "labels ≥ 0")
    if not isinstance(rng, np.random.Generator):
        raise TypeError("balanced_label_subset: rng must be a numpy Generator "
                        "(np.random.default_rng)")
    classes = np.unique(y)
    k = len(classes)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0 or n % k:
        raise ValueError(f"balanced_label_subset: n must be a positive multiple of the {k} "
                         f"classes, got {n!r}")
    per_class = n // k
    chosen = []
    for c in classes:
        members = np.flatnonzero(y == c)
        if len(members) < per_class:
            raise ValueError(f"balanced_label_subset: class {c} has {len(members)} images, fewer "
                             f"than the {per_class} asked for (n = {n})")
        chosen.append(rng.choice(members, size=per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def hide_labels(y, keep):
    """A copy of ``y`` in which every label except those at indices ``keep`` is UNLABELLED (−1)."""
    y = np.asarray(y)
    out = np.full(y.shape, UNLABELLED, dtype=np.int64)
    out[keep] = y[keep]
    return out


def masked_distillation_loss(student_logits, teacher_logits, y, T, alpha):
    """The loss above and its gradient: α-mix where a label is present, the soft term alone where
    ``y == UNLABELLED``.

        ∂L/∂z_s,n = (1/B) [ w_n · T (p_s,n^T − p_t,n^T) + m_n (1 − α)(softmax(z_s,n) − onehot(y_n)) ]

    (the soft gradient as in :func:`minicompress.distill.soft_target_loss`, the hard one as in
    cross-entropy; both divided by the whole batch size B, so a labelled image weighs as much
    as it would in :func:`minicompress.distill.distillation_loss` and a batch with every label
    present gives exactly that loss).

    Shapes: logits (B, K), y (B,) integers in [0, K) or −1. Returns (loss, grad (B, K)).
    """
    T = check_temperature(T, "masked_distillation_loss")
    alpha = check_alpha(alpha, "masked_distillation_loss")
    z_s, z_t, y = np.asarray(student_logits), np.asarray(teacher_logits), np.asarray(y)
    if z_s.ndim != 2 or z_s.shape != z_t.shape:
        raise ValueError(f"masked_distillation_loss: student {z_s.shape} and teacher "
                         f"{z_t.shape} logits must both be (B, K)")
    b, k = z_s.shape
    if y.shape != (b,) or not np.issubdtype(y.dtype, np.integer) \
            or (b and (y.min() < UNLABELLED or y.max() >= k)):
        raise ValueError(f"masked_distillation_loss: y must be ({b},) integers in [0, {k}) or "
                         f"{UNLABELLED} (no label)")
    if not (np.all(np.isfinite(z_s)) and np.all(np.isfinite(z_t))):
        raise FloatingPointError("masked_distillation_loss: logits contain NaN or inf")
    labelled = y != UNLABELLED                                    # m_n
    w = np.where(labelled, alpha, 1.0)                            # weight of the soft term
    log_p_s, log_p_t = log_softmax(z_s / T), log_softmax(z_t / T)
    p_t = np.exp(log_p_t)
    kl = np.sum(p_t * (log_p_t - log_p_s), axis=1)                # (B,)
    log_q = log_softmax(z_s)                                      # T = 1 for the hard term
    rows = np.flatnonzero(labelled)
    ce = -log_q[rows, y[rows]]                                    # (labelled,)
    scale = 1.0 / max(b, 1)
    loss = scale * (T * T * float(np.sum(w * kl)) + (1.0 - alpha) * float(np.sum(ce)))
    grad = (w * T)[:, None] * (np.exp(log_p_s) - p_t)
    hard = np.exp(log_q[rows])
    hard[np.arange(len(rows)), y[rows]] -= 1.0
    grad[rows] += (1.0 - alpha) * hard
    return loss, (scale * grad).astype(z_s.dtype, copy=False)


class MaskedDistillationLoss(DistillationLoss):
    """:class:`~minicompress.distill.DistillationLoss` with the masked loss: train with
    ``fit_distill(student, (x, hide_labels(y, keep)), kd, config)`` and precomputed
    ``teacher_logits`` aligned with ``x`` (the labelled images and the transfer set together)."""

    def __call__(self, logits, batch):
        return masked_distillation_loss(logits, self.teacher_batch(batch), batch.y, self.T,
                                        self.alpha)


# ---- the omitted class: Hinton's bias adjustment ------------------------------------------------
def bias_for_share(logits, cls, share):
    """The amount δ to add to class ``cls``'s logit so that a fraction ``share`` of the rows of
    ``logits`` (B, K) predict ``cls``.

    Row n predicts ``cls`` once z_n,cls + δ exceeds its best other logit, i.e. once δ > g_n with
    the gap g_n = max_{j≠cls} z_n,j − z_n,cls. With the gaps sorted, g_(1) ≤ … ≤ g_(B), and
    k = round(share · B), δ = (g_(k) + g_(k+1)) / 2 — halfway between the k-th and the next gap —
    gives exactly k such rows (with no ties among the gaps), and is the choice that is furthest
    from tipping one more or one fewer. δ may be negative (the class was over-predicted).
    The data need no labels: ``logits`` are the student's outputs on held-out unlabelled images.
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] < 1 or z.shape[1] < 2:
        raise ValueError(f"bias_for_share: logits must be (B, K) with B ≥ 1, K ≥ 2, got {z.shape}")
    k_classes = z.shape[1]
    if isinstance(cls, bool) or not isinstance(cls, (int, np.integer)) or not 0 <= cls < k_classes:
        raise ValueError(f"bias_for_share: cls must be a class index in [0, {k_classes}), got {cls!r}")
    if isinstance(share, bool) or not isinstance(share, (int, float, np.floating)) \
            or not 0.0 <= share <= 1.0:
        raise ValueError(f"bias_for_share: share must be a fraction in [0, 1], got {share!r}")
    if not np.all(np.isfinite(z)):
        raise FloatingPointError("bias_for_share: logits contain NaN or inf")
    gaps = np.sort(np.delete(z, cls, axis=1).max(axis=1) - z[:, cls])
    k = int(round(share * len(gaps)))
    # extend with ±(a margin of 1 logit) so that k = 0 and k = B are well defined
    lower = gaps[k - 1] if k > 0 else gaps[0] - 2.0
    upper = gaps[k] if k < len(gaps) else gaps[-1] + 2.0
    return float((lower + upper) / 2.0)


def raise_class_bias(model, cls, delta):
    """Add ``delta`` to the output bias of class ``cls`` (the last Linear layer of a Sequential):
    every logit z_cls grows by δ, so the prediction changes exactly as in :func:`bias_for_share`.
    Changes ``model`` in place and returns it."""
    if not isinstance(model, Sequential):
        raise TypeError(f"raise_class_bias: model must be a Sequential, got {type(model).__name__}")
    last = [model[name] for name in model.names() if isinstance(model[name], Linear)]
    if not last or last[-1].bias is None:
        raise ValueError("raise_class_bias: the model has no final Linear layer with a bias")
    bias = last[-1].bias.data
    if isinstance(cls, bool) or not isinstance(cls, (int, np.integer)) or not 0 <= cls < len(bias):
        raise ValueError(f"raise_class_bias: cls must be a class index in [0, {len(bias)}), "
                         f"got {cls!r}")
    if not np.isfinite(delta):
        raise ValueError(f"raise_class_bias: delta must be finite, got {delta!r}")
    bias[cls] += np.asarray(delta, dtype=bias.dtype)
    return model
