"""Weight initialisation, the same as PyTorch's default for Linear and Conv2d.

PyTorch calls ``kaiming_uniform_(w, a=√5)``: gain = √(2/(1+a²)) = √(1/3), bound = gain·√(3/fan_in)
= 1/√fan_in. The bias is uniform in ±1/√fan_in too. Matching it means a network trained here and
one trained in PyTorch start from the same distribution.
"""
import numpy as np


def check_rng(rng, where: str):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"{where}: rng must be a numpy.random.Generator (e.g. np.random.default_rng(0)), "
            f"got {type(rng).__name__}"
        )
    return rng


def kaiming_uniform(shape, fan_in: int, rng: np.random.Generator) -> np.ndarray:
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)
