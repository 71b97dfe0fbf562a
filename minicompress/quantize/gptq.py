"""GPTQ (Frantar et al. 2022): round one column of W at a time and push its error onto the
columns not yet rounded, using the curvature of the layer's reconstruction error.

The objective is the layer's output error on calibration inputs X (rows, K) (see
:mod:`.layerwise`), for each output row w (1 × K) of the weight matrix separately::

    E(ŵ) = ‖X wᵀ − X ŵᵀ‖² = (w − ŵ) H (w − ŵ)ᵀ / 2,     H = 2 XᵀX   (K × K, the Hessian of E)

Optimal Brain Quantizer step (OBQ). Round one weight, w_i → q_i = quant(w_i); the remaining
weights F (not yet rounded) can move to absorb the error. Minimising E over them gives::

    δ_F = −(w_i − q_i) / [H_F⁻¹]_ii · [H_F⁻¹]_{F, i}        (the update of the others)

with H_F the Hessian restricted to the weights still free (i ∈ F). Then i leaves F and the next
weight is rounded. For a 1 × 3 layer: round w₁, then w₂ += −(w₁ − q₁)·H⁻¹₁₂/H⁻¹₁₁ and
w₃ += −(w₁ − q₁)·H⁻¹₁₃/H⁻¹₁₁; round w₂ with the inverse of H restricted to {2, 3}; round w₃.

GPTQ's three changes, which make it fast without changing this arithmetic much:

1. every row is rounded in the *same column order* 1, 2, …, K, so H_F is the same for all rows
   and one update handles a whole column of W at once;
2. the row ``[H_F⁻¹]_{i, F} / √[H_F⁻¹]_ii`` for F = {i, …, K} is row i of the *upper Cholesky
   factor* U of H⁻¹ (H⁻¹ = UᵀU): removing i from F is exactly one step of Cholesky elimination.
   So U, computed once, replaces the K successive inverses::

       err   = (w_i − q_i) / U_ii                           (one entry per row of W)
       w_j  −= err · U_ij           for j > i

3. (lazy batches: apply the updates to far columns in blocks of 128, for memory traffic on a
   GPU; the result is the same up to float rounding, and we keep the plain loop.)

Damping: H is only positive semi-definite (a constant input pixel, fewer rows than K), so
``H ← H + λI`` with λ = 0.01·mean(diag H) before inverting. A "dead" input (H_ii = 0, the input
is always 0) gets H_ii = 1 and its weight 0 (it never affects the output).

Shapes: W (O, K), H (K, K), Δ (O, 1) or (1, 1) — the grid is ``Δ·clip(round(w/Δ), q_lo, q_hi)``
(:func:`.functional.grid_code`), the same as round-to-nearest; only the weights it is applied to
change.
"""
from __future__ import annotations

import numpy as np

from .functional import grid_code
from .layerwise import round_layerwise

DAMP = 0.01


def damped_hessian(h, damp=DAMP):
    """``H + λI`` with λ = damp·mean(diag H) (float64); dead inputs (H_ii = 0) get H_ii = 1.
    Returns (H, dead) with ``dead`` the boolean mask of dead inputs."""
    h = np.array(h, dtype=np.float64)
    if h.ndim != 2 or h.shape[0] != h.shape[1]:
        raise ValueError(f"gptq: H must be a square (K, K) matrix, got shape {h.shape}")
    if not np.all(np.isfinite(h)):
        raise ValueError("gptq: H contains NaN or inf")
    if damp < 0:
        raise ValueError(f"gptq: damp must be ≥ 0, got {damp}")
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    h[np.diag_indices_from(h)] += damp * np.mean(np.diag(h))
    return h, dead


def inverse_cholesky_upper(h):
    """U upper triangular with ``H⁻¹ = UᵀU`` (H symmetric positive definite).

    Row i of U is ``[H_F⁻¹]_{i, F} / √[H_F⁻¹]_ii`` for F = {i, …, K}: the OBQ update for column i
    once columns 1..i−1 are rounded (module docstring, change 2)."""
    try:
        h_inv = np.linalg.inv(np.linalg.cholesky(h))     # L⁻¹ with H = LLᵀ, so H⁻¹ = L⁻ᵀL⁻¹
        h_inv = h_inv.T @ h_inv
        return np.linalg.cholesky(h_inv).T               # lower factor of H⁻¹, transposed
    except np.linalg.LinAlgError:
        raise ValueError("gptq: H + λI is not positive definite; increase damp") from None


def obq_step(w, h_inv, delta, q_lo, q_hi):
    """One optimal-brain-quantizer step with an explicit inverse (for teaching and testing):
    round column 0 of w (O, K), q = clip(round(w₀/Δ), q_lo, q_hi), and move the others,

        w_rest = w[:, 1:] − (w₀ − Δq) · H_F⁻¹[0, 1:] / H_F⁻¹[0, 0]

    with ``h_inv`` = H_F⁻¹ (K, K) the inverse Hessian of the K weights still free. Returns
    (q (O,), w_rest (O, K − 1)). :func:`gptq_codes` does the same with the Cholesky rows."""
    w = np.asarray(w, np.float64)
    q = grid_code(w[:, 0] / delta, 0, q_lo, q_hi)
    err = w[:, 0] - delta * q
    return q, w[:, 1:] - np.outer(err, h_inv[0, 1:] / h_inv[0, 0])


def gptq_codes(w, h, delta, q_lo, q_hi, damp=DAMP):
    """Integer codes of W (O, K) by GPTQ, for the grid Δ·clip(round(w/Δ), q_lo, q_hi).

    Column by column: q_i = clip(round(w_i/Δ)), err = (w_i − Δq_i)/U_ii, w_{>i} −= err·U_{i,>i}.
    Returns the (O, K) codes as float64 integers."""
    w = np.array(w, dtype=np.float64)
    h, dead = damped_hessian(h, damp)
    if w.ndim != 2 or w.shape[1] != h.shape[0]:
        raise ValueError(f"gptq: W must be (O, K) with K = {h.shape[0]}, got shape {w.shape}")
    w[:, dead] = 0.0
    u = inverse_cholesky_upper(h)
    delta = np.broadcast_to(np.asarray(delta, np.float64).reshape(-1, 1), (w.shape[0], 1))
    codes = np.zeros_like(w)
    for i in range(w.shape[1]):
        codes[:, i] = grid_code(w[:, i] / delta[:, 0], 0, q_lo, q_hi)
        err = (w[:, i] - delta[:, 0] * codes[:, i]) / u[i, i]
        w[:, i + 1:] -= np.outer(err, u[i, i + 1:])      # error feedback onto the free columns
    return codes


def gptq(model, x, damp=DAMP, progress=None):
    """GPTQ every Linear / Conv2d of a prepared, calibrated model (see :mod:`.layerwise`), in
    order, on calibration images x. Weights keep their Δ; afterwards ``convert(model)`` gives the
    integer model. Returns {layer: reconstruction error after rounding}."""
    return round_layerwise(model, x, lambda w, h, d, lo, hi: gptq_codes(w, h, d, lo, hi, damp),
                           progress=progress)
