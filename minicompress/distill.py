"""Knowledge distillation — 知识蒸馏, document §3.3.

The document lists the steps (train a big teacher T, build a smaller student S of a different
architecture, define a transfer loss L_KD) and stops in the middle of the soft-target formula.
We complete it from Hinton, Vinyals & Dean (2015), "Distilling the knowledge in a neural
network", and for feature maps from Romero et al. (2015), "FitNets: hints for thin deep nets".
Attention transfer is Zagoruyko & Komodakis (2017).

Symbols: z_s, z_t student / teacher logits (N, K); T the temperature; α the weight of the soft
term; p^T = softmax(z/T).

    L_soft = T² · (1/N) Σ_n KL(p_t^T ‖ p_s^T)                    (soft_target_loss)
    L      = α · L_soft + (1 − α) · CE(z_s, y)                     (distillation_loss)
    L_hint = β · mean((r(F_s) − F_t)²)                             (HintLoss, r a 1x1 conv/Linear)

How to use it
-------------
1. Freeze the teacher and (optionally) precompute its logits for the whole training set once —
   the teacher is fixed and there is no augmentation, so z_t of an image never changes::

       teacher = freeze(teacher)
       z_t_train = teacher_logits(teacher, x_train, cache="teacher_fashion")   # (N_train, K)
       kd = DistillationLoss(T=4.0, alpha=0.5, teacher_logits=z_t_train)

2. Train with :func:`fit_distill` (the one training loop with ``kd`` as the task loss: every
   batch carries its positions in the training set, ``batch.index``, and the precomputed z_t
   are looked up there)::

       fit_distill(student, (x_train, y_train), kd, TrainConfig(epochs=10, rng=rng), lr=1e-3)

3. Inside any other trainer (pruning, QAT: distillation as the *task loss*): ``kd`` is a
   :class:`~minicompress.step.TaskLoss`, ``kd(logits, batch) -> (L, ∂L/∂logits)``, a drop-in
   for cross-entropy: ``learned_mask_prune(..., loss_fn=kd)``. Without precomputed logits
   (``DistillationLoss(T, alpha, teacher=teacher)``) the frozen teacher runs on every batch.

4. Feature hints: ``hint = HintLoss(regressor, student_layer="pool1", teacher_layer="pool1")``
   and ``DistillationLoss(..., teacher=teacher, hint=hint)``; :func:`fit_distill` puts the
   regressor's Parameters in their own group of the one Adam (``hint_lr``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import cache_dir
from .io import load_npz, save_npz_atomic
from .nn import Module, cross_entropy, log_softmax, softmax
from .optim import Adam
from .step import TaskLoss
from .train import fit, predict

__all__ = [
    "AttentionTransferLoss", "DistillationLoss", "HintLoss", "distillation_loss",
    "fit_distill", "freeze", "out_of_fold_logits", "soft_target_loss", "softmax_with_temperature",
    "teacher_features", "teacher_logits",
]


# ---- argument checks ---------------------------------------------------------------------------
def check_temperature(T, where="distill"):
    if isinstance(T, bool) or not isinstance(T, (int, float, np.integer, np.floating)) \
            or not np.isfinite(T) or T <= 0:
        raise ValueError(f"{where}: temperature T must be a finite number > 0, got {T!r}")
    return float(T)


def check_alpha(alpha, where="distill"):
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)) \
            or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"{where}: alpha must be a number in [0, 1], got {alpha!r}")
    return float(alpha)


def _check_logit_pair(z_s, z_t, where):
    z_s, z_t = np.asarray(z_s), np.asarray(z_t)
    if z_s.shape != z_t.shape:
        raise ValueError(f"{where}: student logits have shape {z_s.shape} but teacher logits "
                         f"have shape {z_t.shape}; they must be equal (N, K)")
    if z_s.ndim != 2:
        raise ValueError(f"{where}: logits must be (N, K), got shape {z_s.shape}")
    if not (np.all(np.isfinite(z_s)) and np.all(np.isfinite(z_t))):
        raise FloatingPointError(f"{where}: logits contain NaN or inf")
    return z_s, z_t


# ---- soft targets (Hinton et al. 2015) ---------------------------------------------------------
def softmax_with_temperature(z, T):
    """p_i^T = exp(z_i/T) / Σ_j exp(z_j/T). T = 1 is the usual softmax; T > 1 flattens it and
    shows how the model ranks the *wrong* classes ("dark knowledge"); T → ∞ gives uniform 1/K.
    Shapes: z (..., K) → (..., K)."""
    T = check_temperature(T, "softmax_with_temperature")
    return softmax(np.asarray(z) / T, axis=-1)


def soft_target_loss(student_logits, teacher_logits, T):
    """Soft-target loss (§3.3, completed from Hinton et al. 2015) and its gradient.

        L_soft = T² · (1/N) Σ_n KL(p_t ‖ p_s),   p_t = softmax(z_t/T), p_s = softmax(z_s/T)
               = T² · (1/N) Σ_n Σ_i p_t,i (log p_t,i − log p_s,i)

        ∂L_soft/∂z_s = T · (p_s − p_t) / N

    Derivation. For one row, only −Σ_i p_t,i log p_s,i depends on z_s. With u = z_s/T,
    ∂(−Σ_i p_t,i log softmax(u)_i)/∂u_j = p_s,j − p_t,j (since Σ_i p_t,i = 1), and ∂u/∂z_s = 1/T.
    Multiplying by T²/N gives T (p_s − p_t)/N.

    Why T². The soft gradient is (1/T)(p_s − p_t) per unit KL; for large T, p ≈ (1 + z/T)/K for
    zero-mean logits, so p_s − p_t ≈ (z_s − z_t)/(K T) and the gradient of the bare KL shrinks
    like 1/T². Multiplying by T² keeps it O(1): ∂L_soft/∂z_s → (z_s − z_t)/(K N), which is
    logit matching (Hinton et al. §2.1). So changing T does not silently change the weight of the
    soft term against the hard cross-entropy.

    Shapes: student_logits, teacher_logits (N, K). Returns (loss: float, grad (N, K)) with the
    gradient in the student logits' dtype. The teacher gets no gradient (it is frozen).
    """
    T = check_temperature(T, "soft_target_loss")
    z_s, z_t = _check_logit_pair(student_logits, teacher_logits, "soft_target_loss")
    n = z_s.shape[0]
    log_p_s = log_softmax(z_s / T)
    log_p_t = log_softmax(z_t / T)          # log of the teacher's soft targets, never −inf
    p_t = np.exp(log_p_t)
    loss = T * T * float(np.sum(p_t * (log_p_t - log_p_s))) / max(n, 1)
    grad = T * (np.exp(log_p_s) - p_t) / max(n, 1)
    return loss, grad.astype(z_s.dtype, copy=False)


def distillation_loss(student_logits, teacher_logits, y, T, alpha):
    """L = α · L_soft(z_s, z_t; T) + (1 − α) · CE(z_s, y); gradient is the same mix.

    α = 0 is ordinary training on the labels, α = 1 learns from the teacher alone.
    Shapes: logits (N, K), y (N,) integer labels. Returns (loss, grad (N, K)).
    """
    alpha = check_alpha(alpha, "distillation_loss")
    soft, g_soft = soft_target_loss(student_logits, teacher_logits, T)
    hard, g_hard = cross_entropy(student_logits, y)
    return alpha * soft + (1.0 - alpha) * hard, alpha * g_soft + (1.0 - alpha) * g_hard


# ---- the teacher --------------------------------------------------------------------------------
def freeze(teacher):
    """Teacher in eval mode, its Parameters marked ``requires_grad=False`` so no optimizer can
    touch them. We never call ``teacher.backward``, so no gradient is ever computed for it."""
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad = False
    return teacher


def teacher_logits(teacher, x, batch_size=1000, cache=None):
    """z_t for every image of ``x`` (N, K) float32, computed once (teacher in eval mode).

    ``cache`` (a name, or a path ending in .npz) stores them under ``~/.cache/minicompress/``
    so that sweeps skip the teacher. The cache is keyed by name only: use a new name for a new
    teacher or data set; a cached array of the wrong length is an error, not silently reused.
    """
    path = None
    if cache is not None:
        path = Path(cache) if str(cache).endswith(".npz") else \
            cache_dir() / "distill" / f"{cache}_logits.npz"
        if path.exists():
            z = load_npz(path)["logits"]
            if z.shape[0] != len(x):
                raise ValueError(f"teacher_logits: cache {path} holds {z.shape[0]} rows but x has "
                                 f"{len(x)} images; delete it or use another cache name")
            return z.astype(np.float32)
    z = predict(freeze(teacher), x, batch_size).astype(np.float32)
    if path is not None:
        save_npz_atomic(path, {"logits": z})
    return z


def out_of_fold_logits(make_teacher, train_data, train, *, folds=2, rng, batch_size=1000):
    """Soft targets from teachers that never saw the image: "out-of-fold" (cross-fitted) logits.

    Why. A teacher's outputs on *its own training images* are nearly one-hot: our CNN teacher is
    97.9 % right on them with a median top probability of 0.99995, so at T = 1 its soft targets
    carry almost no "dark knowledge", and at large T they ask the student to copy huge logit
    gaps. Its outputs on images it has *not* seen are honest (uncertain where it would be wrong).
    So: split the training set into ``folds`` parts; for each part train a fresh teacher on the
    other parts and record its logits on that part. Every image then has a z_t from a teacher
    that did not train on it. For 2 folds the cost is one teacher's worth of epochs (two teachers,
    each on half the data).

    ``make_teacher(fold) -> Module`` builds an untrained teacher (seed it from ``fold``);
    ``train(model, x_part, y_part)`` trains it in place (e.g. a call to :func:`fit`);
    ``rng`` shuffles the rows into folds. Returns z_t (N, K) float32, row n for ``x[n]``.
    """
    x, y = train_data
    if len(x) != len(y):
        raise ValueError(f"out_of_fold_logits: x has {len(x)} images but y has {len(y)} labels")
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or not 2 <= folds <= len(x):
        raise ValueError(f"out_of_fold_logits: folds must be an integer from 2 to len(x) = {len(x)}, "
                         f"got {folds!r}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError("out_of_fold_logits: rng must be a numpy Generator (np.random.default_rng)")
    parts = np.array_split(rng.permutation(len(x)), folds)
    z = None
    for fold, held_out in enumerate(parts):
        seen = np.sort(np.concatenate([p for k, p in enumerate(parts) if k != fold]))
        teacher = make_teacher(fold)
        train(teacher, x[seen], y[seen])
        z_fold = predict(freeze(teacher), x[held_out], batch_size)
        if z is None:
            z = np.empty((len(x), z_fold.shape[1]), dtype=np.float32)
        z[held_out] = z_fold
    return z


def teacher_features(teacher, x, layer):
    """Output of child ``layer`` of a Sequential teacher, running only the children up to it."""
    names = teacher.names()
    if layer not in names:
        raise KeyError(f"teacher_features: no child '{layer}'; children are {names}")
    for name in names:
        x = teacher[name].forward(x)
        if name == layer:
            return x


class DistillationLoss(TaskLoss):
    """The task loss of distillation: α · L_soft + (1 − α) · CE (+ β · L_hint with a ``hint``),
    with the teacher's logits found for each batch.

    Give either ``teacher_logits`` (N_train, K), precomputed for the whole training set and
    looked up by ``batch.index``, or a ``teacher`` model (run on every batch), or both. A
    ``hint`` (:class:`HintLoss` or :class:`AttentionTransferLoss`) needs the teacher model: it
    compares the student's and the teacher's feature maps.
    """

    def __init__(self, T, alpha, teacher_logits=None, teacher=None, hint=None):
        self.T = check_temperature(T, "DistillationLoss")
        self.alpha = check_alpha(alpha, "DistillationLoss")
        if teacher_logits is None and teacher is None:
            raise ValueError("DistillationLoss: give teacher_logits (N_train, K) or a teacher model")
        if teacher_logits is not None:
            teacher_logits = np.asarray(teacher_logits, dtype=np.float32)
            if teacher_logits.ndim != 2:
                raise ValueError(f"DistillationLoss: teacher_logits must be (N_train, K), got "
                                 f"shape {teacher_logits.shape}")
        if hint is not None and teacher is None:
            raise ValueError("DistillationLoss: a hint loss needs the teacher model (teacher=...) "
                             "to compute its feature maps")
        self.teacher_logits = teacher_logits
        self.teacher = freeze(teacher) if teacher is not None else None
        self.hint = hint

    @property
    def capture(self):
        """The student layer the hint reads (nothing without a hint)."""
        return (self.hint.student_layer,) if self.hint is not None else ()

    def parameters(self):
        """The hint regressor's Parameters (trained with the student), or none."""
        return self.hint.parameters() if self.hint is not None else []

    def teacher_batch(self, batch):
        """z_t for a batch: looked up by ``batch.index`` (precomputed) or computed from ``batch.x``."""
        if self.teacher_logits is not None:
            if len(batch.index) and batch.index.max() >= len(self.teacher_logits):
                raise ValueError(f"DistillationLoss: batch index {batch.index.max()} is past the "
                                 f"{len(self.teacher_logits)} precomputed teacher logits; they must "
                                 f"be aligned with the training set")
            return self.teacher_logits[batch.index]
        return self.teacher(batch.x)

    def __call__(self, logits, batch):
        return distillation_loss(logits, self.teacher_batch(batch), batch.y, self.T, self.alpha)

    def with_features(self, logits, features, batch):
        """The loss with the hint: also returns ``{student_layer: ∂L_hint/∂F_s}``."""
        if self.hint is None:
            return super().with_features(logits, features, batch)
        layer = self.hint.teacher_layer
        if self.teacher_logits is not None:
            # logits precomputed: run the teacher only as far as the hint layer
            z_t, f_t = self.teacher_batch(batch), teacher_features(self.teacher, batch.x, layer)
        else:
            z_t = self.teacher(batch.x, capture=(layer,))
            f_t = self.teacher.features[layer]
        loss, grad = distillation_loss(logits, z_t, batch.y, self.T, self.alpha)
        h_loss, h_grad = self.hint(features[self.hint.student_layer], f_t)
        return loss + h_loss, grad, {self.hint.student_layer: h_grad}


# ---- feature maps: hints (FitNets) and attention transfer ---------------------------------------
class HintLoss(Module):
    """FitNets hint loss: L_hint = β · mean over all elements of (r(F_s) − F_t)².

    F_s: output of ``student_layer`` (N, C_s, H, W) or (N, D_s); F_t: output of
    ``teacher_layer`` (N, C_t, H, W) or (N, D_t); r: the *regressor*, a 1x1 Conv2d(C_s → C_t) or a
    Linear(D_s → D_t), so the widths may differ (spatial sizes must match). The regressor's
    Parameters are children of this Module, so ``hint.parameters()`` hands them to the same Adam.

    Romero et al. train the hint first and then distil (two stages); we add β·L_hint to the KD
    loss in one stage, which is simpler and, in our runs, works (see the notebook).
    """

    def __init__(self, regressor, student_layer, teacher_layer, beta=1.0):
        if not isinstance(regressor, Module):
            raise TypeError(f"HintLoss: regressor must be a Module (1x1 Conv2d or Linear), "
                            f"got {type(regressor).__name__}")
        if not (isinstance(beta, (int, float)) and np.isfinite(beta) and beta >= 0):
            raise ValueError(f"HintLoss: beta must be a finite number ≥ 0, got {beta!r}")
        self.regressor = regressor
        self.student_layer, self.teacher_layer, self.beta = student_layer, teacher_layer, float(beta)

    def forward(self, f_s, f_t):
        """Returns (loss, ∂L_hint/∂F_s); ∂L/∂θ_r is *added* into the regressor's ``.grad`` on
        every call (as in a training step; zero the grads before measuring, as Adam's step does).

        ∂L/∂r = 2β (r(F_s) − F_t) / size,  then the regressor's own backward."""
        r = self.regressor(f_s)
        if r.shape != f_t.shape:
            raise ValueError(f"HintLoss: regressor output {r.shape} (from student "
                             f"'{self.student_layer}' {f_s.shape}) does not match teacher "
                             f"'{self.teacher_layer}' features {f_t.shape}")
        diff = r - f_t
        loss = self.beta * float(np.mean(np.square(diff)))
        grad_r = (2.0 * self.beta / diff.size) * diff
        return loss, self.regressor.backward(grad_r.astype(r.dtype, copy=False))

    def __call__(self, f_s, f_t):
        return self.forward(f_s, f_t)


class AttentionTransferLoss(Module):
    """Attention transfer (Zagoruyko & Komodakis 2017), an optional feature loss without a regressor.

    a = Σ_c F_c² (N, H·W) — where a layer "looks"; q = a / ‖a‖₂ per image;
    L_AT = β · (1/N) Σ_n ‖q_s − q_t‖².  Channels may differ, spatial sizes must match.
    Backward: g_q = 2β(q_s − q_t)/N;  g_a = (g_q − q (q·g_q)) / ‖a‖;  ∂L/∂F = 2 F g_a.
    """

    def __init__(self, student_layer, teacher_layer, beta=1.0, eps=1e-12):
        if not (isinstance(beta, (int, float)) and np.isfinite(beta) and beta >= 0):
            raise ValueError(f"AttentionTransferLoss: beta must be a finite number ≥ 0, got {beta!r}")
        self.student_layer, self.teacher_layer = student_layer, teacher_layer
        self.beta, self.eps = float(beta), eps

    def _attention(self, f):
        a = np.square(f).sum(axis=1).reshape(len(f), -1)        # (N, H·W)
        norm = np.sqrt(np.square(a).sum(axis=1, keepdims=True)) + self.eps
        return a / norm, norm

    def forward(self, f_s, f_t):
        if f_s.ndim != 4 or f_t.ndim != 4 or f_s.shape[0] != f_t.shape[0] \
                or f_s.shape[2:] != f_t.shape[2:]:
            raise ValueError(f"AttentionTransferLoss: need (N, C, H, W) maps with equal N, H, W; "
                             f"student {f_s.shape}, teacher {f_t.shape}")
        q_s, norm_s = self._attention(f_s)
        q_t, _ = self._attention(f_t)
        n = len(f_s)
        diff = q_s - q_t
        loss = self.beta * float(np.square(diff).sum()) / n
        g_q = (2.0 * self.beta / n) * diff
        g_a = (g_q - q_s * np.sum(q_s * g_q, axis=1, keepdims=True)) / norm_s
        grad = 2.0 * f_s * g_a.reshape(n, 1, *f_s.shape[2:])
        return loss, grad.astype(f_s.dtype, copy=False)

    def __call__(self, f_s, f_t):
        return self.forward(f_s, f_t)


# ---- training ----------------------------------------------------------------------------------
def fit_distill(student, train_data, kd, config, *, lr=1e-3, hint_lr=None, eval_data=None,
                hooks=()):
    """Train ``student`` on ``train_data = (x, y)`` with the distillation loss ``kd``.

    The one training loop (:func:`minicompress.train.fit`) with ``kd`` as the task loss and one
    Adam whose groups are the student's weights (``lr``) and, with a hint, the regressor
    (``hint_lr``, default ``lr``). ``config`` is a :class:`~minicompress.train.TrainConfig`;
    ``hooks`` e.g. ``[CosineLR(total_steps)]``. Returns the per-epoch history.
    """
    x, _ = train_data
    if kd.teacher_logits is not None and len(kd.teacher_logits) != len(x):
        raise ValueError(f"fit_distill: teacher_logits has {len(kd.teacher_logits)} rows but the "
                         f"training set has {len(x)} images (they must be aligned)")
    groups = [{"params": student.parameters(), "lr": lr, "name": "weights"}]
    if kd.parameters():
        groups.append({"params": kd.parameters(), "lr": lr if hint_lr is None else hint_lr,
                       "name": "hint regressors"})
    return fit(student, Adam(groups), train_data, config, loss_fn=kd, hooks=hooks,
               eval_data=eval_data)
