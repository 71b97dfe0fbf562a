"""Parameter, Module and Sequential: the three ideas every other file builds on.

* A :class:`Parameter` is anything Adam may change: ``.data`` and ``.grad`` are NumPy arrays of
  the same shape. Layer weights, pruning-mask scores, quantizer step sizes and distillation
  regressors are all Parameters, so one optimizer updates them all the same way.
* A :class:`Module` transforms an array. ``forward(x)`` computes the output and keeps what the
  backward pass needs; ``backward(grad_out)`` returns ∂L/∂x and *adds* ∂L/∂θ into the ``.grad``
  of its own Parameters (adding, not assigning, so a Parameter used twice gets both terms).
* :class:`Sequential` chains named modules, so ``state_dict()`` keys read like PyTorch's
  (``conv1.weight``, ``fc2.bias``) and checkpoints move between the two without renaming.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np


class Parameter:
    """A trainable array and the gradient accumulated for it.

    ``requires_grad=False`` marks a state array that is saved with the model but never updated by
    an optimizer (a fixed pruning mask, for example).
    """

    def __init__(self, data, requires_grad: bool = True):
        self.data = np.ascontiguousarray(data, dtype=np.float32)
        self.grad = np.zeros_like(self.data)
        self.requires_grad = requires_grad

    @property
    def shape(self):
        return self.data.shape

    def zero_grad(self):
        self.grad[...] = 0.0

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, requires_grad={self.requires_grad})"


class Module:
    """Base class: ``forward``/``backward`` pair plus parameter bookkeeping.

    Children are found by looking at the attributes: a Module attribute is a child, and so is each
    Module inside a list attribute (named ``attr.0``, ``attr.1``, ...).
    """

    training = True
    # ``needs_input_grad = False`` lets a layer skip computing ∂L/∂x in ``backward`` (it returns
    # None). Only the first layer of a network may do so, and only while nothing upstream needs
    # it: ``Sequential.backward(..., input_grad=False)`` sets it for exactly that call. For a
    # first convolution this saves the whole col2im — a large part of the backward pass.
    needs_input_grad = True

    def forward(self, x):
        raise NotImplementedError

    def backward(self, grad_out):
        raise NotImplementedError

    def eval_fusion(self, following) -> int:
        """Eval mode, inside a Sequential: how many of the ``following`` children
        ``forward_fused`` does together with this one, in one pass (0, the default: none)."""
        return 0

    def forward_fused(self, fused, x):
        """This module's forward followed by those of the ``fused`` children (as many as
        ``eval_fusion`` said), with the same result."""
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    # ---- traversal -------------------------------------------------------------------------
    def named_children(self):
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value
            elif isinstance(value, list) and value and all(isinstance(v, Module) for v in value):
                for i, v in enumerate(value):
                    yield f"{name}.{i}", v

    def children(self):
        return [m for _, m in self.named_children()]

    def named_parameters(self, prefix: str = ""):
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield prefix + name, value
        for name, child in self.named_children():
            yield from child.named_parameters(prefix + name + ".")

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_modules(self, prefix: str = ""):
        """Every descendant (not this module) with its dotted name, e.g. ``("block.conv", conv)``."""
        for name, child in self.named_children():
            yield prefix + name, child
            yield from child.named_modules(prefix + name + ".")

    def modules(self):
        yield self
        for child in self.children():
            yield from child.modules()

    def zero_grad(self):
        for p in self.parameters():
            p.zero_grad()

    def train(self, mode: bool = True):
        for m in self.modules():
            m.training = mode
        return self

    def eval(self):
        return self.train(False)

    # ---- saving ----------------------------------------------------------------------------
    def state_dict(self):
        """Name → copy of the array, PyTorch-style names (``fc1.weight``)."""
        return OrderedDict((name, p.data.copy()) for name, p in self.named_parameters())

    def load_state_dict(self, state, strict: bool = True):
        """Copy arrays into the Parameters; a missing, extra or mis-shaped key is an error."""
        own = OrderedDict(self.named_parameters())
        missing = [k for k in own if k not in state]
        extra = [k for k in state if k not in own]
        if strict and (missing or extra):
            raise KeyError(
                f"load_state_dict: state does not match {type(self).__name__}: "
                f"missing keys {missing}, unexpected keys {extra}"
            )
        for name, p in own.items():
            if name not in state:
                continue
            value = np.asarray(state[name])
            if value.shape != p.data.shape:
                raise ValueError(
                    f"load_state_dict: '{name}' has shape {tuple(value.shape)} in the state "
                    f"but {tuple(p.data.shape)} in the model"
                )
            if not np.issubdtype(value.dtype, np.number):
                raise ValueError(f"load_state_dict: '{name}' has non-numeric dtype {value.dtype}")
            p.data[...] = value.astype(np.float32)
        return self

    def num_parameters(self) -> int:
        return int(sum(p.data.size for p in self.parameters()))

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        kids = list(self.named_children())
        if not kids:
            return lines[0] + ")"
        for name, child in kids:
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + "\n)"


class Sequential(Module):
    """Named modules applied in order: ``Sequential(fc1=Linear(...), relu1=ReLU(), ...)``.

    ``forward(x, capture=("relu2",))`` also records the outputs of the named children in
    ``self.features`` (used by feature distillation), and ``backward(grad, feature_grads=...)``
    adds an extra gradient at those same points on the way back.
    """

    def __init__(self, *modules, **named_modules):
        self._modules = OrderedDict()
        for i, m in enumerate(modules):
            self._modules[str(i)] = m
        for name, m in named_modules.items():
            self._modules[name] = m
        for name, m in self._modules.items():
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: child '{name}' is {type(m).__name__}, not a Module")
        self.features = {}

    def named_children(self):
        return iter(list(self._modules.items()))

    def __getitem__(self, name):
        if isinstance(name, int):
            return list(self._modules.values())[name]
        return self._modules[name]

    def __setitem__(self, name, module):
        if not isinstance(module, Module):
            raise TypeError(f"Sequential: '{name}' must be a Module, got {type(module).__name__}")
        self._modules[name] = module

    def __getattr__(self, name):
        # Only called when normal lookup fails: lets users write model.fc1 like in PyTorch.
        modules = self.__dict__.get("_modules", {})
        if name in modules:
            return modules[name]
        raise AttributeError(f"{type(self).__name__} has no attribute or child '{name}'")

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def names(self):
        return list(self._modules.keys())

    def insert_after(self, after: str, name: str, module: Module):
        """Insert ``module`` as child ``name`` right after child ``after``."""
        if after not in self._modules:
            raise KeyError(f"insert_after: no child '{after}'; children are {self.names()}")
        if name in self._modules:
            raise KeyError(f"insert_after: a child named '{name}' already exists")
        items = list(self._modules.items())
        i = [k for k, _ in items].index(after)
        items.insert(i + 1, (name, module))
        self._modules = OrderedDict(items)

    def insert_before(self, before: str, name: str, module: Module):
        """Insert ``module`` as child ``name`` right before child ``before``."""
        if before not in self._modules:
            raise KeyError(f"insert_before: no child '{before}'; children are {self.names()}")
        if name in self._modules:
            raise KeyError(f"insert_before: a child named '{name}' already exists")
        items = list(self._modules.items())
        i = [k for k, _ in items].index(before)
        items.insert(i, (name, module))
        self._modules = OrderedDict(items)

    def forward(self, x, capture=()):
        unknown = [c for c in capture if c not in self._modules]
        if unknown:
            raise KeyError(f"capture: no child named {unknown}; children are {self.names()}")
        self.features = {}
        self._fused_input = None
        if not self.training and not capture:
            return self._forward_fused(x)
        for name, m in self._modules.items():
            x = m.forward(x)
            if name in capture:
                self.features[name] = x
        return x

    def _forward_fused(self, x):
        """Eval mode: a child that can do the children after it in one pass (see
        ``Module.eval_fusion``; a Conv2d → ReLU → MaxPool2d run, in ``fused.py``) does so, the
        others run as usual. Fused children keep no state for a backward pass, so the input is
        kept, and ``backward`` first redoes the forward pass child by child."""
        children = list(self._modules.values())
        x_in, fused_any, i = x, False, 0
        while i < len(children):
            m, following = children[i], children[i + 1:]
            count = m.eval_fusion(following)
            if count:
                x, i, fused_any = m.forward_fused(following[:count], x), i + 1 + count, True
            else:
                x, i = m.forward(x), i + 1
        self._fused_input = x_in if fused_any else None
        return x

    def __call__(self, x, capture=()):
        return self.forward(x, capture=capture)

    def backward(self, grad_out, feature_grads=None, input_grad=True):
        """Backward through the children in reverse order; returns ∂L/∂x.

        ``input_grad=False`` (what :func:`~minicompress.train.train_step` uses) says that
        ∂L/∂x of the network input is not wanted: children in front of the first one with
        Parameters are skipped, that one is asked not to compute its input gradient, and None
        is returned — as PyTorch does for an input without ``requires_grad``.
        """
        if getattr(self, "_fused_input", None) is not None:
            # the forward pass was fused (eval mode): redo it child by child, so that every
            # child holds what its backward pass needs
            x, self._fused_input = self._fused_input, None
            for m in self._modules.values():
                x = m.forward(x)
        feature_grads = feature_grads or {}
        unknown = [k for k in feature_grads if k not in self._modules]
        if unknown:
            raise KeyError(f"feature_grads: no child named {unknown}; children are {self.names()}")
        items = list(self._modules.items())
        first = 0
        if not input_grad:
            with_params = [i for i, (_, m) in enumerate(items) if m.parameters()]
            first = with_params[0] if with_params else len(items)
        grad = grad_out
        for index in range(len(items) - 1, first - 1, -1):
            name, m = items[index]
            if name in feature_grads:
                grad = grad + feature_grads[name]
            if index == first and not input_grad:
                if isinstance(m, Sequential):
                    return m.backward(grad, input_grad=False)
                previous, m.needs_input_grad = m.needs_input_grad, False
                try:
                    m.backward(grad)
                finally:
                    m.needs_input_grad = previous
                return None
            grad = m.backward(grad)
        return None if not input_grad else grad
