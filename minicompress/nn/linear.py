"""Fully connected layer, ``y = x Wᵀ + b``."""
from .checks import check_input, check_positive_int
from .init import check_rng, kaiming_uniform
from .module import Parameter
from .weighted import WeightedLayer


class Linear(WeightedLayer):
    """``y = x W_effᵀ + b``.

    Shapes: x (N, in_features), W (out_features, in_features) as in PyTorch, b (out_features,),
    y (N, out_features).

    Backward, with g = ∂L/∂y:  ∂L/∂x = g W_eff,  ∂L/∂W_eff = gᵀ x,  ∂L/∂b = Σ_n g.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, rng):
        check_rng(rng, "Linear")
        self.in_features = check_positive_int(in_features, "in_features", "Linear")
        self.out_features = check_positive_int(out_features, "out_features", "Linear")
        self.weight = Parameter(kaiming_uniform((out_features, in_features), in_features, rng))
        self.bias = (
            Parameter(kaiming_uniform((out_features,), in_features, rng)) if bias else None
        )
        self._init_transforms()

    def forward(self, x):
        check_input(f"Linear({self.in_features}, {self.out_features})", x, 2, 1, self.in_features)
        self._x = x
        self._w = self.effective_weight()
        y = x @ self._w.T
        if self.bias is not None:
            y += self.bias.data
        return y

    def backward(self, grad_out):
        self._accumulate_weight_grad(grad_out.T @ self._x)
        if self.bias is not None:
            self.bias.grad += grad_out.sum(axis=0)
        if not self.needs_input_grad:
            return None  # first layer of a network: nobody needs ∂L/∂x (see Module)
        return grad_out @ self._w

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}"
