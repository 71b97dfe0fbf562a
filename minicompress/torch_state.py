"""A model as a PyTorch state dict — the float network, or the fake-quantised one — and back.

PyTorch is *not* needed here: the state dict is written as a plain ``.npz`` of NumPy arrays under
PyTorch's names (``fc1.weight``, ``conv1.bias``, …), with the architecture beside it as a JSON
string (``__architecture__``). ``scripts/torch_modules.py`` builds the equivalent ``torch.nn``
module from that description, loads the arrays with ``load_state_dict`` and can save a ``.pt``;
it also writes a PyTorch module's state back as such an ``.npz``, which
:func:`load_torch_state` loads into our model. (A float PyTorch checkpoint without the
architecture loads into the same-named model with ``io.load_model``, as before.)

What the fake-quantised network becomes (each an ordinary ``torch.nn`` layer or a 3-line module):

* Linear / Conv2d → ``torch.nn.Linear`` / ``Conv2d`` holding the *effective* weights
  ``Ŵ = Δ_w · q_w`` (mask and weight quantizer applied) and the bias the integer model stores,
  ``b̂ = s · round(b / s)`` with s = Δ_w Δ_x (what our ``BiasQuantizer`` adds); the weight
  quantizer's ``log Δ_w`` rides along as a buffer ``weight_log_delta`` so the trip back is exact;
* ActivationQuantizer → ``FakeQuantize``: ``x̂ = Δ · (clip(round(x / Δ) + z, q_lo, q_hi) − z)``
  (buffers ``delta``, ``zero_point``, ``q_lo``, ``q_hi``, and ``log_delta`` / ``offset``, the
  learned parameters, for the trip back);
* the last layer's BiasQuantizer → ``SnapToGrid``: ``y ← s · round(y / s)`` (buffer ``scale``).

``round`` is round-half-to-even in both libraries (``numpy.rint``, ``torch.round``).
"""
from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np

from .nn import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential
from .quantize.fake import ActivationQuantizer, BiasQuantizer, WeightQuantizer

ARCH_KEY = "__architecture__"


def _weight_quantizer(layer):
    qs = [t for t in layer.weight_transforms if isinstance(t, WeightQuantizer)]
    return qs[0] if qs else None


def _layer_entries(name, layer, bias_quant):
    """Spec and arrays of one Linear/Conv2d: effective weight, bias b̂ (the stored int32 bias
    times s, when quantised), the weight quantizer's log Δ."""
    w = layer.effective_weight().astype(np.float32)
    b = layer.bias.data.astype(np.float32) if layer.bias is not None else None
    if b is not None and bias_quant is not None and bias_quant.active():
        s = bias_quant.accumulator_scale().astype(np.float32)
        b = (s * np.rint(b / s)).astype(np.float32)     # exactly what BiasQuantizer.forward adds
    if isinstance(layer, Linear):
        spec = {"name": name, "type": "Linear", "in_features": int(w.shape[1]),
                "out_features": int(w.shape[0])}
    else:
        spec = {"name": name, "type": "Conv2d", "in_channels": int(w.shape[1]),
                "out_channels": int(w.shape[0]), "kernel_size": int(w.shape[2]),
                "stride": int(layer.stride), "padding": int(layer.padding)}
    spec["bias"] = b is not None
    arrays = {f"{name}.weight": w}
    if b is not None:
        arrays[f"{name}.bias"] = b
    wq = _weight_quantizer(layer)
    if wq is not None and wq.enabled and wq.initialized:
        spec["weight_log_delta"] = True
        arrays[f"{name}.weight_log_delta"] = wq.log_delta.data.astype(np.float32).copy()
    return spec, arrays


def torch_state_dict(model):
    """``model`` (a Sequential, float or prepared/fake-quantised) → (state, architecture).

    ``state``: OrderedDict name → float32 array under PyTorch's names; ``architecture``: a list
    of ``{"name", "type", …}`` in order, enough to build the ``torch.nn.Sequential``.
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"torch_state_dict: expected a Sequential, got {type(model).__name__}")
    children = list(model.named_children())
    state, arch = OrderedDict(), []
    for i, (name, m) in enumerate(children):
        if isinstance(m, (Linear, Conv2d)):
            nxt = children[i + 1][1] if i + 1 < len(children) else None
            bq = nxt if isinstance(nxt, BiasQuantizer) and nxt._refs[0] is m else None
            spec, arrays = _layer_entries(name, m, bq)
            arch.append(spec)
            state.update(arrays)
        elif isinstance(m, BiasQuantizer):
            if m.active() and m.snap_output:       # the last layer's logits on the s·acc grid
                arch.append({"name": name, "type": "SnapToGrid", "channels": int(m.accumulator_scale().size)})
                state[f"{name}.scale"] = m.accumulator_scale().astype(np.float32).copy()
            # otherwise the bias correction is already in the layer's b̂
        elif isinstance(m, ActivationQuantizer):
            if m.observing or not m.enabled:
                arch.append({"name": name, "type": "Identity"})
                continue
            if not m.initialized:
                raise ValueError(f"torch_state_dict: quantizer '{name}' is not calibrated")
            arch.append({"name": name, "type": "FakeQuantize", "kind": m.kind})
            state[f"{name}.delta"] = m.delta.astype(np.float32).reshape(())
            state[f"{name}.zero_point"] = m.zero_point().astype(np.float32).reshape(())
            state[f"{name}.q_lo"] = np.float32(m.q_lo)
            state[f"{name}.q_hi"] = np.float32(m.q_hi)
            state[f"{name}.log_delta"] = m.log_delta.data.astype(np.float32).copy()
            if m.kind == "asymmetric":
                state[f"{name}.offset"] = m.offset.data.astype(np.float32).copy()
        elif isinstance(m, ReLU):
            arch.append({"name": name, "type": "ReLU"})
        elif isinstance(m, MaxPool2d):
            arch.append({"name": name, "type": "MaxPool2d", "kernel_size": int(m.kernel_size),
                         "stride": int(m.stride)})
        elif isinstance(m, Flatten):
            arch.append({"name": name, "type": "Flatten"})
        else:
            raise ValueError(f"torch_state_dict: child '{name}' is a {type(m).__name__}; supported: "
                             f"Linear, Conv2d, ReLU, MaxPool2d, Flatten and the quantizers")
    return state, arch


def save_torch_state(model, path):
    """Write :func:`torch_state_dict` as one ``.npz`` (atomic; no pickle)."""
    from .io import save_npz_atomic
    state, arch = torch_state_dict(model)
    return save_npz_atomic(path, dict(state, **{ARCH_KEY: np.array(json.dumps(arch))}))


def load_torch_state(model, state):
    """The way back: a state from :func:`torch_state_dict` (or its ``.npz``, or a PyTorch module's
    ``{k: v.numpy()}``) into ``model``, a Sequential of the same architecture, float or prepared.

    Weights become the effective weights Ŵ (re-quantising Δ·q gives q again; masked entries are
    0), biases b̂ (round(b̂ / s) = round(b / s), so the integer bias is unchanged), and every Δ
    (and offset) is restored from its learned parameter. Returns ``model``.
    """
    if not isinstance(state, dict):
        from .io import load_npz
        state = load_npz(state)
    state = {k: np.asarray(v) for k, v in state.items() if k != ARCH_KEY}
    used = set()

    def take(key, target):
        if key not in state:
            raise KeyError(f"load_torch_state: the state has no '{key}'")
        value = state[key]
        if value.size != target.size:
            raise ValueError(f"load_torch_state: '{key}' has shape {value.shape}, the model "
                             f"needs {target.shape}")
        target[...] = value.reshape(target.shape).astype(target.dtype)
        used.add(key)

    for name, m in model.named_children():
        if isinstance(m, (Linear, Conv2d)):
            take(f"{name}.weight", m.weight.data)
            if m.bias is not None:
                take(f"{name}.bias", m.bias.data)
            wq = _weight_quantizer(m)
            if wq is not None and f"{name}.weight_log_delta" in state:
                take(f"{name}.weight_log_delta", wq.log_delta.data)
                wq.initialized = True
        elif isinstance(m, ActivationQuantizer) and f"{name}.log_delta" in state:
            take(f"{name}.log_delta", m.log_delta.data)
            if m.kind == "asymmetric":
                take(f"{name}.offset", m.offset.data)
            m.initialized = True
            used.update(f"{name}.{k}" for k in ("delta", "zero_point", "q_lo", "q_hi"))
        elif isinstance(m, BiasQuantizer):
            used.add(f"{name}.scale")
    extra = sorted(set(state) - used)
    if extra:
        raise KeyError(f"load_torch_state: unexpected keys {extra} for this model")
    return model


__all__ = ["ARCH_KEY", "load_torch_state", "save_torch_state", "torch_state_dict"]
