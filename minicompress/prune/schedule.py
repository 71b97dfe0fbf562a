"""Gradual pruning: the cubic sparsity schedule of Zhu & Gupta (2017), usable by every method.

The document prunes "a ratio" once (§3.1.1 step 3). Removing many weights at once hurts more than
removing them a little at a time while the rest adapt, so every pruner here can follow

    s_t = s_f + (s_i − s_f) · (1 − (t − t₀) / (n Δt))³      for t₀ ≤ t ≤ t₀ + n Δt

(s_i initial, s_f final sparsity, pruning starting at step t₀, n pruning events Δt steps apart;
s_t = s_i before t₀ and s_f after). It prunes fast at first, when many redundant weights exist,
and slowly near the end.
"""
from __future__ import annotations

from .select import check_sparsity


def cubic_sparsity(t, s_i, s_f, t0, n, dt=1):
    """s_t of the cubic schedule at step ``t`` (the equation above), updated every Δt steps."""
    check_sparsity(s_i, "s_i")
    check_sparsity(s_f, "s_f")
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"cubic_sparsity: n (number of pruning events) must be an integer ≥ 1, got {n!r}")
    if not (isinstance(dt, int) and dt >= 1):
        raise ValueError(f"cubic_sparsity: dt must be an integer ≥ 1, got {dt!r}")
    if t <= t0:
        return float(s_i)
    # only the pruning events t0 + jΔt change the sparsity
    events = min((t - t0) // dt, n)
    if events == 0:
        return float(s_i)  # exactly, not s_f + (s_i − s_f)·1 with rounding
    frac = events / n
    return float(s_f + (s_i - s_f) * (1.0 - frac) ** 3)


class CubicSchedule:
    """``schedule(step) -> sparsity``: cubic from ``s_i`` to ``s_f`` over ``steps`` steps.

    ``start`` is t₀; the sparsity is updated every ``every`` steps (Δt), so n = steps // every.
    """

    def __init__(self, s_i, s_f, steps, start=0, every=1):
        self.s_i, self.s_f = check_sparsity(s_i, "s_i"), check_sparsity(s_f, "s_f")
        if not (isinstance(steps, int) and steps >= 1):
            raise ValueError(f"CubicSchedule: steps must be an integer ≥ 1, got {steps!r}")
        self.start, self.every = int(start), int(every)
        self.n = max(1, steps // self.every)

    def __call__(self, step):
        return cubic_sparsity(step, self.s_i, self.s_f, self.start, self.n, self.every)


class ConstantSchedule:
    """``schedule(step) -> s`` for every step (one-shot pruning)."""

    def __init__(self, s):
        self.s = check_sparsity(s)

    def __call__(self, step):
        return self.s


def as_schedule(sparsity):
    """A number is a constant schedule; a callable is used as it is."""
    return sparsity if callable(sparsity) else ConstantSchedule(sparsity)
