"""Autograd-free neural-network building blocks (forward/backward pairs written by hand)."""
from .activation import Flatten, ReLU
from .conv import Conv2d
from .linear import Linear
from .loss import cross_entropy, log_softmax, softmax
from .module import Module, Parameter, Sequential
from .pooling import AvgPool2d, MaxPool2d
from .weighted import WeightedLayer, WeightTransform

__all__ = [
    "AvgPool2d", "Conv2d", "Flatten", "Linear", "MaxPool2d", "Module", "Parameter", "ReLU",
    "Sequential", "WeightTransform", "WeightedLayer", "cross_entropy", "log_softmax", "softmax",
]
