"""minicompress: pruning, quantization and knowledge distillation, each driven by Adam,
written from scratch in NumPy (no autograd) to be read beside the equations."""
from . import data, models, nn, optim, train
from .optim import SGD, Adam

__version__ = "0.1.0"
__all__ = ["Adam", "SGD", "data", "models", "nn", "optim", "train", "__version__"]
