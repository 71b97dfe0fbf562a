"""AdaRound (Nagel et al. 2020): learn, with Adam, whether each weight rounds down or up.

Round-to-nearest is optimal for each weight alone, not for the layer's output. AdaRound keeps
the step Δ and gives every weight a continuous variable V that decides between ⌊w/Δ⌋ and
⌊w/Δ⌋ + 1 through the *rectified sigmoid*::

    h(V) = clip(σ(V)·(ζ − γ) + γ, 0, 1),        ζ = 1.1, γ = −0.1

(stretched a little beyond [0, 1] and clipped, so h reaches exactly 0 and 1 with a finite V).
The soft-quantised weight, on the integer grid [q_lo, q_hi] with zero point z::

    W̃ = Δ · (clip(⌊W/Δ⌋ + h(V) + z, q_lo, q_hi) − z)

Objective, per layer, with X the layer's calibration inputs (rows, K) and H = XᵀX/rows (see
:mod:`.layerwise`)::

    L(V) = ‖X Wᵀ − X W̃ᵀ‖² / rows + λ·f_reg(V)
         = Σ_o (w_o − w̃_o) H (w_o − w̃_o)ᵀ + λ·Σ_ij (1 − |2h(V_ij) − 1|^β)

The regulariser f_reg is 0 only when every h is exactly 0 or 1 (a true rounding) and pushes each
h towards the nearer end. β is annealed: off during a warm-up (the first 20 % of iterations,
the reconstruction term alone moves h freely), then β falls from 20 to 2 — a large β leaves h
alone except close to 0 or 1, a small β pulls every h to an end. At the end, h ≥ ½ ⇔ V ≥ 0
rounds up: the codes are clip(⌊W/Δ⌋ + [V ≥ 0] + z, q_lo, q_hi).

Gradient (hand-written, checked by central differences in ``tests/test_ptq.py``)::

    ∂L/∂W̃   = −2 (W − W̃) H
    ∂W̃/∂h   = Δ · [q_lo ≤ ⌊W/Δ⌋ + h + z ≤ q_hi]
    ∂f/∂h   = −2β·|2h − 1|^(β−1)·sign(2h − 1)
    ∂h/∂V   = (ζ − γ)·σ(V)(1 − σ(V)) · [0 < σ(V)(ζ − γ) + γ < 1]

V starts where h(V) equals the fractional part of W/Δ, so W̃ = W at the start (inside the
range) and the first steps are pure reconstruction. The weights and Δ never change; only V.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..nn import Parameter
from ..optim import Adam
from .layerwise import round_layerwise

ZETA, GAMMA = 1.1, -0.1


@dataclass
class AdaRoundConfig:
    """iterations per layer, Adam's lr on V, the regulariser weight λ, β from ``beta_start`` to
    ``beta_end`` after a warm-up of ``warmup`` (a fraction of the iterations)."""

    iterations: int = 1000
    lr: float = 3e-2
    reg_weight: float = 0.01
    beta_start: float = 20.0
    beta_end: float = 2.0
    warmup: float = 0.2

    def __post_init__(self):
        if not (isinstance(self.iterations, int) and self.iterations > 0):
            raise ValueError(f"AdaRoundConfig: iterations must be a positive int, got {self.iterations!r}")
        if not (0 <= self.warmup < 1):
            raise ValueError(f"AdaRoundConfig: warmup must be in [0, 1), got {self.warmup!r}")
        if not (self.lr > 0 and self.reg_weight >= 0 and self.beta_start >= self.beta_end >= 1):
            raise ValueError("AdaRoundConfig: need lr > 0, reg_weight ≥ 0, beta_start ≥ beta_end ≥ 1")


# ---- the rectified sigmoid and the regulariser ------------------------------------------------
def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def rectified_sigmoid(v, zeta=ZETA, gamma=GAMMA):
    """h(V) = clip(σ(V)(ζ − γ) + γ, 0, 1)."""
    return np.clip(sigmoid(v) * (zeta - gamma) + gamma, 0.0, 1.0)


def rectified_sigmoid_grad(v, zeta=ZETA, gamma=GAMMA):
    """∂h/∂V = (ζ − γ)σ(V)(1 − σ(V)) where the clip is not active, else 0."""
    s = sigmoid(v)
    stretched = s * (zeta - gamma) + gamma
    return (zeta - gamma) * s * (1 - s) * ((stretched > 0) & (stretched < 1))


def inverse_rectified_sigmoid(h, zeta=ZETA, gamma=GAMMA):
    """V with h(V) = h for h in [0, 1] (h is inside the stretched range, so σ⁻¹ exists)."""
    p = (np.asarray(h) - gamma) / (zeta - gamma)
    return np.log(p / (1 - p))


def rounding_regularizer(h, beta):
    """f_reg = Σ (1 − |2h − 1|^β): 0 iff every h is 0 or 1."""
    return float(np.sum(1 - np.abs(2 * h - 1) ** beta))


def rounding_regularizer_grad(h, beta):
    """∂f_reg/∂h = −2β|2h − 1|^(β−1)·sign(2h − 1)."""
    d = 2 * h - 1
    return -2 * beta * np.abs(d) ** (beta - 1) * np.sign(d)


def beta_schedule(t, config):
    """(β, λ) at iteration t (0-based): λ = 0 during the warm-up, then β falls linearly from
    ``beta_start`` to ``beta_end`` over the remaining iterations."""
    warm = int(config.warmup * config.iterations)
    if t < warm:
        return config.beta_start, 0.0
    rel = (t - warm) / max(1, config.iterations - warm)
    return config.beta_end + (config.beta_start - config.beta_end) * (1 - rel), config.reg_weight


# ---- the soft-quantised weight and the layer objective ----------------------------------------
def soft_quantize(w_floor, h, delta, q_lo, q_hi, z=0):
    """W̃ = Δ(clip(⌊W/Δ⌋ + h + z, q_lo, q_hi) − z) and ∂W̃/∂h = Δ·[inside the range]."""
    s = w_floor + h + z
    inside = (s >= q_lo) & (s <= q_hi)
    return delta * (np.clip(s, q_lo, q_hi) - z), delta * inside


def adaround_objective(v, w, h_gram, delta, grid, beta, reg_weight, w_floor=None):
    """L(V) = Σ_o (w_o − w̃_o) H (w_o − w̃_o)ᵀ + λ f_reg(h(V)) and ∂L/∂V (shape of V).

    v, w (O, K); h_gram (K, K) symmetric; Δ (O, 1) or scalar; ``grid`` = (q_lo, q_hi) or
    (q_lo, q_hi, z); ``w_floor`` = ⌊W/Δ⌋ if already computed. Computed in the dtype of v."""
    q_lo, q_hi, z = (tuple(grid) + (0,))[:3]
    if w_floor is None:
        w_floor = np.floor(w / delta)
    hv = rectified_sigmoid(v)
    w_soft, dw_dh = soft_quantize(w_floor, hv, delta, q_lo, q_hi, z)
    e = w - w_soft
    eh = e @ h_gram
    loss = float(np.sum(eh * e))
    grad_h = (-2 * eh) * dw_dh
    if reg_weight:
        loss += reg_weight * rounding_regularizer(hv, beta)
        grad_h += reg_weight * rounding_regularizer_grad(hv, beta)
    return loss, grad_h * rectified_sigmoid_grad(v)


def floor_codes(w, delta):
    """⌊W/Δ⌋ in float64: the lower of the two grid points AdaRound chooses between."""
    return np.floor(np.asarray(w, np.float64) / np.asarray(delta, np.float64))


def initial_v(w, delta):
    """V₀ with h(V₀) = W/Δ − ⌊W/Δ⌋, so W̃ = W before any step (float64)."""
    return inverse_rectified_sigmoid(np.asarray(w, np.float64) / np.asarray(delta, np.float64)
                                     - floor_codes(w, delta))


def adaround_codes(w, h_gram, delta, q_lo, q_hi, config=None, z=0, history=None):
    """Integer codes of W (O, K) by AdaRound: Adam on V for ``config.iterations`` steps, then
    the stored codes q = clip(⌊W/Δ⌋ + [V ≥ 0] + z, q_lo, q_hi) (float64 integers).

    Runs in float32 (the gradient check uses :func:`adaround_objective` in float64). ``history``
    (a list) receives (iteration, reconstruction loss, f_reg) every tenth of the run."""
    config = config or AdaRoundConfig()
    w32 = np.asarray(w, np.float32)
    d32 = np.asarray(delta, np.float32)
    h32 = np.asarray(h_gram, np.float32)
    w_floor = floor_codes(w, delta)
    v = Parameter(initial_v(w, delta).astype(np.float32))
    w_floor32 = w_floor.astype(np.float32)
    opt = Adam([v], lr=config.lr)
    for t in range(config.iterations):
        beta, lam = beta_schedule(t, config)
        loss, grad = adaround_objective(v.data, w32, h32, d32, (q_lo, q_hi, z), beta, lam,
                                        w_floor32)
        if history is not None and (t % max(1, config.iterations // 10) == 0
                                    or t == config.iterations - 1):
            hv = rectified_sigmoid(v.data)
            history.append((t, loss - lam * rounding_regularizer(hv, beta),
                            rounding_regularizer(hv, config.beta_end)))
        v.grad[...] = grad
        opt.step()
    return np.clip(w_floor + (v.data >= 0) + z, q_lo, q_hi)


def adaround(model, x, config=None, progress=None):
    """AdaRound every Linear / Conv2d of a prepared, calibrated model in order (sequential: each
    layer's inputs come from the layers before it already rounded), on calibration images x.
    Returns {layer: reconstruction error after rounding}."""
    config = config or AdaRoundConfig()
    return round_layerwise(model, x, lambda w, h, d, lo, hi: adaround_codes(w, h, d, lo, hi, config),
                           progress=progress)
