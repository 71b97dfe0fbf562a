"""Optimizers. :class:`Adam` is document §2.1 (Adam优化算法), equation for equation.

With g_t = ∂L/∂θ at step t (t = 1, 2, ...), α the learning rate:

    m_t = β₁ m_{t−1} + (1 − β₁) g_t              (first moment: running mean of g)
    v_t = β₂ v_{t−1} + (1 − β₂) g_t²             (second moment: running mean of g²)
    m̂_t = m_t / (1 − β₁^t)                       (bias correction: m_0 = 0 drags m_t to 0)
    v̂_t = v_t / (1 − β₂^t)
    θ_{t+1} = θ_t − α · m̂_t / (√v̂_t + ε)         (ε outside the square root)

Every :class:`~minicompress.nn.Parameter` is updated the same way — a layer weight, a pruning
mask score or a quantization step Δ alike — by ONE optimizer: what differs between them is only
α, so each kind is a *parameter group* with its own learning rate (Adam's step is ≈ α whatever
the gradient's size, and weights, mask scores and log Δ live on different scales). Parameters
with ``requires_grad=False`` are skipped.
"""
import numpy as np


def _check_lr(lr, where, minimum="positive"):
    """α must be a finite number > 0 (a schedule may later bring it down to exactly 0)."""
    ok = isinstance(lr, (int, float, np.floating)) and not isinstance(lr, bool) and np.isfinite(lr)
    if not ok or lr < 0 or (lr == 0 and minimum == "positive"):
        raise ValueError(f"{where}: lr must be a {minimum} finite number, got {lr!r}")
    return float(lr)


def _check_parameters(params, where):
    params = list(params)
    for p in params:
        if not hasattr(p, "data") or not hasattr(p, "grad"):
            raise TypeError(f"{where}: every item must be a Parameter, got {type(p).__name__}")
    return params


def param_groups(params, lr, where):
    """The parameter groups of an optimizer, as PyTorch's ``torch.optim`` takes them.

    ``params`` is either Parameters (one group) or dicts ``{"params": [...], "lr": ..., "name":
    ...}``, one per group; a group without ``"lr"`` uses ``lr``. Returns a list of dicts with the
    keys ``params`` (the trainable Parameters: ``requires_grad=False`` ones are dropped), ``lr``
    and ``name``. A Parameter may belong to one group only.
    """
    items = list(params)
    if not items:
        raise ValueError(f"{where}: got an empty parameter list")
    if not all(isinstance(g, dict) for g in items):
        if any(isinstance(g, dict) for g in items):
            raise TypeError(f"{where}: give either Parameters or parameter-group dicts, not both")
        items = [{"params": items}]
    groups, seen = [], set()
    for i, g in enumerate(items):
        unknown = sorted(set(g) - {"params", "lr", "name"})
        if unknown or "params" not in g:
            raise ValueError(f"{where}: a parameter group has the keys 'params' (required), 'lr' "
                             f"and 'name'; group {i} has {sorted(g)}")
        name = str(g.get("name", f"group {i}"))
        group_params = _check_parameters(g["params"], f"{where} ({name})")
        if not group_params:
            raise ValueError(f"{where}: parameter group {name!r} is empty")
        if any(id(p) in seen for p in group_params):
            raise ValueError(f"{where}: a Parameter of group {name!r} is already in another group")
        seen.update(id(p) for p in group_params)
        groups.append({"params": [p for p in group_params if getattr(p, "requires_grad", True)],
                       "lr": _check_lr(g.get("lr", lr), f"{where} ({name})"), "name": name})
    return groups


class Optimizer:
    """What every optimizer has: parameter groups, each with its own learning rate."""

    def __init__(self, params, lr, where):
        self.param_groups = param_groups(params, lr, where)

    @property
    def params(self):
        """Every trainable Parameter, group after group."""
        return [p for g in self.param_groups for p in g["params"]]

    @property
    def lr(self):
        """The learning rate of an optimizer with one group (read ``param_groups`` otherwise)."""
        return self._only_group()["lr"]

    @lr.setter
    def lr(self, value):
        self._only_group()["lr"] = _check_lr(value, type(self).__name__, minimum="non-negative")

    def _only_group(self):
        if len(self.param_groups) != 1:
            names = [g["name"] for g in self.param_groups]
            raise AttributeError(f"{type(self).__name__}.lr: the optimizer has the parameter "
                                 f"groups {names}; use param_groups[i]['lr']")
        return self.param_groups[0]

    def zero_grad(self):
        for p in self.params:
            p.grad[...] = 0.0

    def step(self):
        """One update of every Parameter, each with its group's learning rate."""
        for group in self.param_groups:
            for p in group["params"]:
                self._update(p, group["lr"])


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) exactly as the five equations above; no weight decay.

    One optimizer for everything Adam moves: ``Adam(model.parameters(), lr=1e-3)``, or
    parameter groups with their own α, as in PyTorch::

        Adam([{"params": weights, "lr": 1e-4, "name": "weights"},
              {"params": mask_scores, "lr": 1e-2, "name": "mask scores"}])

    State per Parameter: m, v (arrays like θ) and the step count t, which starts at 1 on the
    first ``step()`` (so 1 − β^t is never 0).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params, lr, "Adam")
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

    def _update(self, p, lr):
        """The five equations for one Parameter, in place (α = ``lr``, its group's)."""
        b1, b2 = self.betas
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
        tmp *= lr * m_hat_scale                      # α · m̂_t / (√v̂_t + ε)
        p.data -= tmp


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (PyTorch-style) momentum — the baseline.

    b_t = μ b_{t−1} + g_t (b_1 = g_1);  θ_{t+1} = θ_t − α b_t.   With μ = 0: θ −= α g.
    """

    def __init__(self, params, lr, momentum=0.0):
        super().__init__(params, lr, "SGD")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        self.state = {id(p): None for p in self.params}

    def _update(self, p, lr):
        g = p.grad
        if self.momentum:
            buf = self.state[id(p)]
            if buf is None:
                buf = self.state[id(p)] = g.copy()
            else:
                buf *= self.momentum
                buf += g
            g = buf
        p.data -= lr * g
