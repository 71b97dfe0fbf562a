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
    if x.dtype.kind not in "fiub":
        # complex would silently give complex outputs; object or str arrays fail inside numpy
        raise TypeError(f"{layer}: input must be a real-valued (float, int or bool) array, got "
                        f"dtype {x.dtype}")
    want = expected_shape(ndim, axis, expected)
    if x.ndim != ndim:
        raise ValueError(f"{layer}: expected input of shape {want}, got shape {x.shape}")
    if axis is not None and x.shape[axis] != expected:
        raise ValueError(f"{layer}: expected input of shape {want}, got shape {x.shape} "
                         f"({x.shape[axis]} instead of {expected} on axis {axis})")


def real_array(x, name: str, dtype=None):
    """``np.asarray(x, dtype)``, or a one-line TypeError naming ``name`` unless x holds real
    numbers (float, int or bool): a complex x would lose its imaginary part with only a warning."""
    a = np.asarray(x)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be an array of real numbers, got dtype {a.dtype}")
    return a if dtype is None else a.astype(dtype, copy=False)


def check_module(value, name: str = "model", kind=None):
    """A one-line TypeError unless ``value`` is a :class:`~minicompress.nn.Module` (or of ``kind``,
    a Module subclass): a list, an array or a PyTorch model would otherwise fail deep inside with
    an AttributeError that names neither the argument nor what it should be."""
    from .module import Module                                 # checks.py is imported by module.py
    kind = kind or Module
    if not isinstance(value, kind):
        raise TypeError(f"{name} must be a minicompress {kind.__name__} (e.g. "
                        f"minicompress.models.build('lenet5', 28)), got {type(value).__name__}")
    return value


def check_positive_int(value, name: str, where: str, minimum: int = 1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{where}: {name} must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


def check_finite(x, what: str):
    if not np.all(np.isfinite(x)):
        raise FloatingPointError(f"{what} contains NaN or inf")
