"""Input validation shared by the layers: errors name the layer and both shapes."""
import numpy as np


_AXIS_NAMES = {2: ("N", "features"), 4: ("N", "C", "H", "W")}


def expected_shape(ndim: int, axis: int | None = None, expected: int | None = None) -> str:
    """A readable expected shape, e.g. ``(N, 3, H, W)`` or ``(N, 784)``."""
    names = list(_AXIS_NAMES.get(ndim, [f"d{i}" for i in range(ndim)]))
    if axis is not None:
        names[axis] = str(expected)
    return "(" + ", ".join(names) + ")"


def check_input(layer, x, ndim: int, axis: int | None = None, expected: int | None = None):
    """Raise a ValueError naming ``layer``, the shape it got and the shape it expects."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{layer}: input must be a numpy array, got {type(x).__name__}")
    want = expected_shape(ndim, axis, expected)
    if x.ndim != ndim:
        raise ValueError(f"{layer}: expected input of shape {want}, got shape {x.shape}")
    if axis is not None and x.shape[axis] != expected:
        raise ValueError(f"{layer}: expected input of shape {want}, got shape {x.shape} "
                         f"({x.shape[axis]} instead of {expected} on axis {axis})")


def check_positive_int(value, name: str, where: str, minimum: int = 1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{where}: {name} must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


def check_finite(x, what: str):
    if not np.all(np.isfinite(x)):
        raise FloatingPointError(f"{what} contains NaN or inf")
