"""The networks used throughout (see DESIGN.md). Child names match a PyTorch module with named
children, so ``state_dict()`` keys are ``fc1.weight``, ``conv1.bias``, ... in both libraries.

Every builder takes ``input_size`` (28 for (Fashion-)MNIST, 8 for the embedded digits) and a
``rng`` (numpy Generator) for the initial weights.
"""
import numpy as np

from .nn import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential
from .nn.init import check_rng


def _check_size(input_size, where, minimum=4):
    if not isinstance(input_size, (int, np.integer)) or input_size < minimum:
        raise ValueError(f"{where}: input_size must be an integer ≥ {minimum}, got {input_size!r}")
    return int(input_size)


def lenet300(input_size=28, num_classes=10, *, rng):
    """LeNet-300-100: 784-300-100-10 with ReLU (64-300-100-10 on 8x8 digits)."""
    check_rng(rng, "lenet300")
    d = _check_size(input_size, "lenet300") ** 2
    return Sequential(
        flatten=Flatten(),
        fc1=Linear(d, 300, rng=rng), relu1=ReLU(),
        fc2=Linear(300, 100, rng=rng), relu2=ReLU(),
        fc3=Linear(100, num_classes, rng=rng),
    )


def lenet5(input_size=28, num_classes=10, *, rng):
    """LeNet-5: conv(1→6,k5,pad2) ReLU pool2, conv(6→16,k5) ReLU pool2, fc 400-120-84-10.

    For small inputs (input_size < 16, e.g. 8x8 digits) both convolutions are k3 pad1, giving
    16·(s/4)² features into fc1 (64 for 8x8).
    """
    check_rng(rng, "lenet5")
    s = _check_size(input_size, "lenet5")
    if s >= 16:
        conv1, conv2 = Conv2d(1, 6, 5, padding=2, rng=rng), Conv2d(6, 16, 5, rng=rng)
        side = ((s // 2) - 4) // 2
    else:
        conv1, conv2 = Conv2d(1, 6, 3, padding=1, rng=rng), Conv2d(6, 16, 3, padding=1, rng=rng)
        side = (s // 2) // 2
    return Sequential(
        conv1=conv1, relu1=ReLU(), pool1=MaxPool2d(2),
        conv2=conv2, relu2=ReLU(), pool2=MaxPool2d(2),
        flatten=Flatten(),
        fc1=Linear(16 * side * side, 120, rng=rng), relu3=ReLU(),
        fc2=Linear(120, 84, rng=rng), relu4=ReLU(),
        fc3=Linear(84, num_classes, rng=rng),
    )


def teacher(input_size=28, num_classes=10, *, rng):
    """Teacher CNN: conv(1→32,k3,pad1) ReLU pool2, conv(32→64,k3,pad1) ReLU pool2, fc 3136-256-10."""
    check_rng(rng, "teacher")
    s = _check_size(input_size, "teacher")
    side = (s // 2) // 2
    return Sequential(
        conv1=Conv2d(1, 32, 3, padding=1, rng=rng), relu1=ReLU(), pool1=MaxPool2d(2),
        conv2=Conv2d(32, 64, 3, padding=1, rng=rng), relu2=ReLU(), pool2=MaxPool2d(2),
        flatten=Flatten(),
        fc1=Linear(64 * side * side, 256, rng=rng), relu3=ReLU(),
        fc2=Linear(256, num_classes, rng=rng),
    )


def student(input_size=28, num_classes=10, hidden=64, *, rng):
    """Student MLP: 784-64-10 with ReLU (64-64-10 on 8x8 digits)."""
    check_rng(rng, "student")
    d = _check_size(input_size, "student") ** 2
    return Sequential(
        flatten=Flatten(),
        fc1=Linear(d, hidden, rng=rng), relu1=ReLU(),
        fc2=Linear(hidden, num_classes, rng=rng),
    )


MODELS = {"lenet300": lenet300, "lenet5": lenet5, "teacher": teacher, "student": student}


def build(name, input_size=28, *, rng, **kwargs):
    """Build a model by name; ``name`` is one of ``MODELS``."""
    if name not in MODELS:
        raise ValueError(f"build: unknown model {name!r}; valid names are {sorted(MODELS)}")
    return MODELS[name](input_size, rng=rng, **kwargs)
