"""Central-difference gradient checks, shared by the tests (float64 everywhere)."""
import numpy as np


def numerical_grad(f, x, eps=1e-6):
    """∂f/∂x by central differences; ``f()`` reads ``x`` (modified in place)."""
    indices = list(np.ndindex(*x.shape))
    return numerical_grad_at(f, x, indices, eps).reshape(x.shape)


def rel_error(a, b):
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def to_float64(module):
    """Switch every Parameter of ``module`` to float64 (for gradient checks)."""
    for p in module.parameters():
        p.data = p.data.astype(np.float64)
        p.grad = np.zeros_like(p.data)
    return module


def numerical_grad_at(f, x, indices, eps=1e-6):
    """Central differences of ``f`` for the entries ``indices`` of ``x`` only (a list of tuples)."""
    out = np.zeros(len(indices))
    for n, i in enumerate(indices):
        old = x[i]
        x[i] = old + eps
        fp = f()
        x[i] = old - eps
        fm = f()
        x[i] = old
        out[n] = (fp - fm) / (2 * eps)
    return out


def check_module_grads(module, x, rng, atol=1e-6, forward=None, sample=None):
    """Compare the hand-written backward of ``module`` with central differences for the input
    and every Parameter, using the scalar loss  L = Σ y ⊙ r  for a fixed random r.

    ``sample=k`` checks only k random entries of each array (for whole networks, where checking
    every weight would take minutes)."""
    forward = forward or module.forward
    x = x.astype(np.float64)
    y = forward(x)
    r = rng.standard_normal(y.shape)
    module.zero_grad()
    forward(x)
    dx = module.backward(r)

    def loss():
        return float(np.sum(forward(x) * r))

    def compare(analytic, array, what):
        if sample is None:
            np.testing.assert_allclose(analytic, numerical_grad(loss, array), atol=atol, rtol=1e-5,
                                       err_msg=what)
            return
        flat = rng.choice(array.size, size=min(sample, array.size), replace=False)
        idx = [np.unravel_index(i, array.shape) for i in flat]
        np.testing.assert_allclose([analytic[i] for i in idx], numerical_grad_at(loss, array, idx),
                                   atol=atol, rtol=1e-5, err_msg=what)

    compare(dx, x, "gradient of the input")
    for name, p in module.named_parameters():
        compare(p.grad.copy(), p.data, f"gradient of {name}")
