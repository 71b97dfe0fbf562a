"""Optimizers. :class:`Adam` is document §2.1 (Adam优化算法), equation for equation.

With g_t = ∂L/∂θ at step t (t = 1, 2, ...), α the learning rate:

    m_t = β₁ m_{t−1} + (1 − β₁) g_t              (first moment: running mean of g)
    v_t = β₂ v_{t−1} + (1 − β₂) g_t²             (second moment: running mean of g²)
    m̂_t = m_t / (1 − β₁^t)                       (bias correction: m_0 = 0 drags m_t to 0)
    v̂_t = v_t / (1 − β₂^t)
    θ_{t+1} = θ_t − α · m̂_t / (√v̂_t + ε)         (ε outside the square root)

Every :class:`~minicompress.nn.Parameter` is updated the same way — a layer weight, a pruning
mask score or a quantization step Δ alike. Parameters with ``requires_grad=False`` are skipped.
"""
import numpy as np


def _trainable(params, where):
    params = list(params)
    if not params:
        raise ValueError(f"{where}: got an empty parameter list")
    for p in params:
        if not hasattr(p, "data") or not hasattr(p, "grad"):
            raise TypeError(f"{where}: every item must be a Parameter, got {type(p).__name__}")
    return [p for p in params if getattr(p, "requires_grad", True)]


def _check_lr(lr, where):
    if not (isinstance(lr, (int, float)) and np.isfinite(lr) and lr > 0):
        raise ValueError(f"{where}: lr must be a positive finite number, got {lr!r}")
    return float(lr)


class Optimizer:
    def zero_grad(self):
        for p in self.params:
            p.grad[...] = 0.0


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) exactly as the five equations above; no weight decay.

    State per Parameter: m, v (arrays like θ) and the step count t, which starts at 1 on the
    first ``step()`` (so 1 − β^t is never 0).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        self.params = _trainable(params, "Adam")
        self.lr = _check_lr(lr, "Adam")
        b1, b2 = betas
        for name, b in (("betas[0]", b1), ("betas[1]", b2)):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"Adam: {name} must be in [0, 1), got {b!r}")
        if not eps >= 0:
            raise ValueError(f"Adam: eps must be ≥ 0, got {eps!r}")
        self.betas = (float(b1), float(b2))
        self.eps = float(eps)
        self.state = {id(p): {"t": 0, "m": np.zeros_like(p.data), "v": np.zeros_like(p.data)}
                      for p in self.params}
        # one scratch array per shape, reused by every step: the update below then allocates
        # nothing (allocating and page-faulting fresh temporaries costs as much as the arithmetic)
        self._scratch = {}

    def step(self):
        b1, b2 = self.betas
        for p in self.params:
            s = self.state[id(p)]
            s["t"] += 1
            t, m, v, g = s["t"], s["m"], s["v"], p.grad
            tmp = self._scratch.setdefault((p.data.shape, p.data.dtype), np.empty_like(p.data))
            m *= b1
            np.multiply(g, 1.0 - b1, out=tmp)
            m += tmp                                     # m_t = β₁ m_{t−1} + (1 − β₁) g_t
            v *= b2
            np.square(g, out=tmp)
            tmp *= 1.0 - b2
            v += tmp                                     # v_t = β₂ v_{t−1} + (1 − β₂) g_t²
            m_hat_scale = 1.0 / (1.0 - b1 ** t)          # m̂_t = m_t · m_hat_scale
            v_hat_scale = 1.0 / (1.0 - b2 ** t)          # v̂_t = v_t · v_hat_scale
            np.multiply(v, v_hat_scale, out=tmp)
            np.sqrt(tmp, out=tmp)
            tmp += self.eps                              # √v̂_t + ε
            np.divide(m, tmp, out=tmp)
            tmp *= self.lr * m_hat_scale                 # α · m̂_t / (√v̂_t + ε)
            p.data -= tmp


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (PyTorch-style) momentum — the baseline.

    b_t = μ b_{t−1} + g_t (b_1 = g_1);  θ_{t+1} = θ_t − α b_t.   With μ = 0: θ −= α g.
    """

    def __init__(self, params, lr, momentum=0.0):
        self.params = _trainable(params, "SGD")
        self.lr = _check_lr(lr, "SGD")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        self.state = {id(p): None for p in self.params}

    def step(self):
        for p in self.params:
            g = p.grad
            if self.momentum:
                buf = self.state[id(p)]
                if buf is None:
                    buf = self.state[id(p)] = g.copy()
                else:
                    buf *= self.momentum
                    buf += g
                g = buf
            p.data -= self.lr * g
