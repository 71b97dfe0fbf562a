"""The PyTorch side of the round trip (PyTorch is not a minicompress dependency; this script is).

    python scripts/torch_modules.py to-pt MODEL_state.npz MODEL.pt     # ours → PyTorch
    python scripts/torch_modules.py from-pt MODEL.pt MODEL_state.npz   # PyTorch → ours

``MODEL_state.npz`` is what ``minicompress.torch_state.save_torch_state`` writes: a state dict
under PyTorch's names plus the architecture as JSON. :func:`build` makes the equivalent
``torch.nn.Sequential`` — ``Linear``, ``Conv2d``, ``ReLU``, ``MaxPool2d``, ``Flatten``, and for a
fake-quantised network the two small modules below — and ``load_state_dict`` fills it (strict).
The ``.pt`` file holds ``{"architecture": [...], "state_dict": {...}}`` (tensors and plain
Python data only, so ``torch.load(..., weights_only=True)`` reads it).

Back in minicompress: ``load_torch_state(model, "MODEL_state.npz")`` (the float network also
loads with ``io.load_model``, the names being the same).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn as tnn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from minicompress.io import load_npz, save_npz_atomic  # noqa: E402
from minicompress.torch_state import ARCH_KEY  # noqa: E402


class FakeQuantize(tnn.Module):
    """x̂ = Δ · (clip(round(x / Δ) + z, q_lo, q_hi) − z), in float32 (round half to even).

    ``log_delta`` (and ``offset`` for an asymmetric grid) are the learned parameters minicompress
    derived Δ and z from; kept as buffers so the state goes back unchanged."""

    def __init__(self, asymmetric=False):
        super().__init__()
        for name in ("delta", "zero_point", "q_lo", "q_hi"):
            self.register_buffer(name, torch.zeros(()))
        self.register_buffer("log_delta", torch.zeros(1))
        if asymmetric:
            self.register_buffer("offset", torch.zeros(1))

    def forward(self, x):
        code = torch.clamp(torch.round(x / self.delta) + self.zero_point, self.q_lo, self.q_hi)
        return self.delta * (code - self.zero_point)


class SnapToGrid(tnn.Module):
    """y ← s · round(y / s) per output channel: the last layer's logits on the integer grid
    s · acc (s = Δ_w Δ_x), so exact ties of the integer model stay ties."""

    def __init__(self, channels):
        super().__init__()
        self.register_buffer("scale", torch.ones(channels))

    def forward(self, y):
        s = self.scale.reshape((1, -1) + (1,) * (y.dim() - 2))
        return s * torch.round(y / s)


def _module(spec):
    t = spec["type"]
    if t == "Linear":
        m = tnn.Linear(spec["in_features"], spec["out_features"], bias=spec["bias"])
    elif t == "Conv2d":
        m = tnn.Conv2d(spec["in_channels"], spec["out_channels"], spec["kernel_size"],
                       stride=spec["stride"], padding=spec["padding"], bias=spec["bias"])
    elif t == "ReLU":
        return tnn.ReLU()
    elif t == "MaxPool2d":
        return tnn.MaxPool2d(spec["kernel_size"], spec["stride"])
    elif t == "Flatten":
        return tnn.Flatten()
    elif t == "Identity":
        return tnn.Identity()
    elif t == "FakeQuantize":
        return FakeQuantize(asymmetric=spec["kind"] == "asymmetric")
    elif t == "SnapToGrid":
        return SnapToGrid(spec["channels"])
    else:
        raise ValueError(f"torch_modules: unknown layer type {t!r}")
    if spec.get("weight_log_delta"):
        m.register_buffer("weight_log_delta", torch.zeros(1))
    return m


def build(architecture):
    """The ``torch.nn.Sequential`` described by ``architecture`` (child names kept)."""
    return tnn.Sequential(OrderedDict((s["name"], _module(s)) for s in architecture))


def load_state(net, state):
    """``load_state_dict(strict=True)``, after sizing the buffers whose length only the data
    knows (a per-channel log Δ has one entry per output channel)."""
    for name, m in net.named_children():
        for key in ("weight_log_delta", "log_delta"):
            if f"{name}.{key}" in state and hasattr(m, key):
                setattr(m, key, torch.zeros_like(state[f"{name}.{key}"]))
    net.load_state_dict(state, strict=True)
    return net.eval()


def from_npz(path):
    """``save_torch_state``'s .npz → (torch module, architecture), loaded with strict=True."""
    arrays = load_npz(path)
    arch = json.loads(str(arrays.pop(ARCH_KEY)))
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
    return load_state(build(arch), state), arch


def to_npz(net, architecture, path):
    """A torch module's state (+ the architecture) → the .npz that ``load_torch_state`` reads."""
    state = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
    return save_npz_atomic(path, dict(state, **{ARCH_KEY: np.array(json.dumps(architecture))}))


def save_pt(net, architecture, path):
    torch.save({"architecture": architecture, "state_dict": net.state_dict()}, path)


def load_pt(path):
    blob = torch.load(path, weights_only=True)
    return load_state(build(blob["architecture"]), blob["state_dict"]), blob["architecture"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("direction", choices=["to-pt", "from-pt"])
    p.add_argument("src")
    p.add_argument("dst")
    a = p.parse_args(argv)
    if a.direction == "to-pt":
        net, arch = from_npz(a.src)
        save_pt(net, arch, a.dst)
    else:
        net, arch = load_pt(a.src)
        to_npz(net, arch, a.dst)
    print(f"{a.src} → {a.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
