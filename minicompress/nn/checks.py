"""Input validation shared by the layers: errors name the layer and both shapes."""
import numpy as np


def check_input(layer, x, ndim: int, axis: int | None = None, expected: int | None = None):
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{layer}: input must be a numpy array, got {type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(f"{layer}: expected a {ndim}-D input, got shape {x.shape}")
    if axis is not None and x.shape[axis] != expected:
        raise ValueError(
            f"{layer}: input has {x.shape[axis]} features/channels on axis {axis} (shape "
            f"{x.shape}) but the layer expects {expected}"
        )


def check_positive_int(value, name: str, where: str, minimum: int = 1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{where}: {name} must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


def check_finite(x, what: str):
    if not np.all(np.isfinite(x)):
        raise FloatingPointError(f"{what} contains NaN or inf")
