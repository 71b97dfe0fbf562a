"""Putting quantizers into a model, calibrating them, and learning Δ with Adam (§3.2.1 steps 4–5).

    model = models.lenet5(rng=rng); load trained weights
    prepare(model, weight_bits=4, act_bits=4, input_kind="asymmetric")   # inserts quantizers
    calibrate(model, x_train[:1000])                                     # observers → initial Δ
    evaluate(model, x_test, y_test)                                      # PTQ accuracy
    train_quantized(model, (x_train, y_train), TrainConfig(1, rng))       # Adam learns Δ (PTQ)
    train_quantized(model, ..., lr_weights=1e-4)                         # ... and the weights (QAT)

§3.2.1 step 4 asks Adam to minimise ``L(Δ) = L_task(q(W), q(A))``: exactly ``train_quantized``
with the quantizers' ``log_delta`` (and ``offset``) as the Parameters. With ``lr_weights=None``
the weights are frozen (post-training quantisation with learned Δ); with a value, they are
trained at the same time (quantisation-aware training, LSQ-style).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..nn import ReLU, Sequential, WeightedLayer, cross_entropy
from ..nn.checks import check_module, check_positive_int, real_array
from ..optim import Adam
from ..train import fit
from .fake import ActivationQuantizer, BiasQuantizer, WeightQuantizer

INPUT_NAME = "quant_input"
INPUT_KINDS = ("auto", "unsigned", "asymmetric")


@dataclass
class QuantizerOptions:
    """How every quantizer that :func:`prepare` inserts behaves.

    input_bits : bits of the input quantizer (8, as usual in practice).
    narrow_range : signed weight grids symmetric, ±(2^(n−1)−1) (the document's choice).
    grad_scale : LSQ's gradient scale g = 1/√(N·Q_P) on ∂L/∂Δ.
    learn_delta, learn_offset : whether Adam may move Δ and the input's offset.
    """

    input_bits: int = 8
    narrow_range: bool = True
    grad_scale: bool = True
    learn_delta: bool = True
    learn_offset: bool = True


def prepare(model, weight_bits=8, act_bits=8, *, per_channel=False, input_kind="auto",
            example_input=None, options=None, rng=None):
    """Insert fake quantizers into a Sequential, in place; returns the model.

    * every Linear / Conv2d gets a :class:`WeightQuantizer` (``weight_bits``, signed symmetric,
      per tensor or per output channel) appended to its weight transforms, so an existing
      pruning mask stays first: ``W_eff = quant(W ⊙ m)``;
    * after every ReLU an unsigned :class:`ActivationQuantizer` (``act_bits``) named
      ``<relu>_quant``;
    * after every Linear / Conv2d with a bias (and after the last one), a :class:`BiasQuantizer`
      named ``<layer>_bias_quant``, so that the fake model uses the int32-rounded bias the
      integer model stores (and, for the last layer, its exact logits);
    * before the first child an input quantizer ``quant_input`` (``input_bits``, default 8 as
      usual in practice): ``unsigned`` if the input is non-negative, ``asymmetric`` (learned
      offset) if not. ``input_kind="auto"`` decides from ``example_input``.

    ``options`` (a :class:`QuantizerOptions`) sets the input bits, the grid range, LSQ's gradient
    scale and what is learned; the defaults are the document's choices.
    """
    if options is not None and not isinstance(options, QuantizerOptions):
        raise TypeError(f"prepare: options must be a QuantizerOptions or None, got "
                        f"{type(options).__name__}")
    o = options if options is not None else QuantizerOptions()
    if not isinstance(model, Sequential):
        raise TypeError(f"prepare: expected a Sequential model, got {type(model).__name__}")
    if input_kind not in INPUT_KINDS:
        raise ValueError(f"prepare: input_kind must be one of {INPUT_KINDS}, got {input_kind!r}")
    if any(isinstance(m, (ActivationQuantizer, BiasQuantizer)) for m in model) or quantizers(
            model)[0]:
        raise ValueError("prepare: the model already has quantizers")
    if input_kind == "auto":
        if example_input is None:
            raise ValueError("prepare: input_kind='auto' needs example_input to see whether the "
                             "input can be negative (or pass input_kind='unsigned'/'asymmetric')")
        example_input = real_array(example_input, "prepare: example_input")
        input_kind = "unsigned" if float(np.min(example_input)) >= 0 else "asymmetric"
    rng = rng if rng is not None else np.random.default_rng(0)
    current = ActivationQuantizer(o.input_bits, input_kind,
                                  grad_scale=o.grad_scale, learn_delta=o.learn_delta,
                                  learn_offset=o.learn_offset, rng=rng)
    model.insert_before(model.names()[0], INPUT_NAME, current)
    weighted = [n for n, m in model.named_children() if isinstance(m, WeightedLayer)]
    for name, module in list(model.named_children()):
        if isinstance(module, WeightedLayer):
            wq = module.add_weight_transform(WeightQuantizer(
                weight_bits, per_channel=per_channel, out_channels=module.weight.shape[0],
                narrow_range=o.narrow_range, grad_scale=o.grad_scale, learn_delta=o.learn_delta))
            last = name == weighted[-1]
            if module.bias is not None or last:
                # the int32 bias the integer model will store (and, last layer, its exact logits)
                model.insert_after(name, f"{name}_bias_quant",
                                   BiasQuantizer(module, wq, current, snap_output=last))
        elif isinstance(module, ReLU):
            current = ActivationQuantizer(act_bits, "unsigned", grad_scale=o.grad_scale,
                                          learn_delta=o.learn_delta, rng=rng)
            model.insert_after(name, f"{name}_quant", current)
    return model


def quantizers(model):
    """(weight quantizers as (layer_name, layer, quantizer), activation quantizers as (name, q))."""
    check_module(model)
    weights, acts = [], []
    for name, module in model.named_children():
        if isinstance(module, WeightedLayer):
            for t in module.weight_transforms:
                if isinstance(t, WeightQuantizer):
                    weights.append((name, module, t))
        elif isinstance(module, ActivationQuantizer):
            acts.append((name, module))
    return weights, acts


def quantizer_parameters(model):
    """Δ's and offsets: the Parameters §3.2.1 step 4 optimises."""
    weights, acts = quantizers(model)
    return [p for q in [w[2] for w in weights] + [a[1] for a in acts] for p in q.parameters()]


def weight_parameters(model):
    """Every other Parameter (weights, biases, mask scores ...)."""
    own = {id(p) for p in quantizer_parameters(model)}
    return [p for p in model.parameters() if id(p) not in own]


def set_quantization(model, enabled: bool):
    """Switch every quantizer on (fake-quantised model) or off (the float model)."""
    weights, acts = quantizers(model)
    for q in [w[2] for w in weights] + [a[1] for a in acts]:
        q.enabled = enabled
    for m in model.children():
        if isinstance(m, BiasQuantizer):
            m.enabled = enabled
    return model


def weight_before_quantizer(layer, quantizer):
    """The weight the quantizer sees: W passed through the transforms before it (e.g. W ⊙ m)."""
    w = layer.weight.data
    for t in layer.weight_transforms:
        if t is quantizer:
            return w
        w = t.forward(w)
    raise ValueError("weight_before_quantizer: the quantizer is not on this layer")


def calibrate(model, x, *, method="minmax", weight_method="minmax", batch_size=500,
              **observer_kwargs):
    """Set every Δ from data: weights from the weights themselves, activations from a float
    forward pass over ``x`` (a few batches, e.g. 1000 training images).

    Activations are observed with quantisation switched off, as PyTorch's post-training
    calibration does. ``method`` / ``weight_method``: ``minmax``, ``percentile``, ``mse``, ``lsq``.
    """
    weights, acts = quantizers(model)
    if not weights and not acts:
        raise ValueError("calibrate: the model has no quantizers; call prepare() first")
    x = real_array(x, "calibrate: x")
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"calibrate: x must be a non-empty batch of inputs (N, ...), got shape "
                         f"{x.shape}")
    batch_size = check_positive_int(batch_size, "batch_size", "calibrate")
    for _, layer, q in weights:
        q.observe(weight_before_quantizer(layer, q), weight_method)
    set_quantization(model, False)
    for _, q in acts:
        q.start_observing()
    was_training = model.training
    model.eval()
    for i in range(0, len(x), batch_size):
        model(x[i:i + batch_size])
    model.train(was_training)
    for _, q in acts:
        q.enabled = True
        q.stop_observing(method, **observer_kwargs)
    set_quantization(model, True)
    return model


def quantizer_groups(model, lr_quant):
    """The parameter groups §3.2 adds to the one Adam: "step sizes" (log Δ) and "offsets"
    (β of the asymmetric input grid), each at ``lr_quant``; only the learnable ones."""
    weights, acts = quantizers(model)
    qs = [w[2] for w in weights] + [a[1] for a in acts]
    deltas = [q.log_delta for q in qs if q.log_delta.requires_grad]
    offsets = [q.offset for q in qs if hasattr(q, "offset") and q.offset.requires_grad]
    return [{"params": ps, "lr": lr_quant, "name": name}
            for name, ps in (("step sizes", deltas), ("offsets", offsets)) if ps]


def train_quantized(model, train_data, config, *, lr_quant=1e-3, lr_weights=None,
                    loss_fn=cross_entropy, eval_data=None, hooks=()):
    """Adam on the task loss through the fake quantizers (§3.2.1 steps 4–5, §3.2.2 step 4).

    The training loop with one Adam whose parameter groups live on different scales: the
    quantizers' log Δ ("step sizes") and offsets at ``lr_quant``; the weights ("weights") at
    ``lr_weights`` (``None``: frozen, i.e. post-training quantisation with a learned Δ). To learn
    Δ on a few batches only, pass a small ``train_data``. ``config`` is a
    :class:`~minicompress.train.TrainConfig`; ``loss_fn`` the task loss (default cross-entropy;
    the pipeline passes the distillation loss). Returns the history.
    """
    groups = quantizer_groups(model, lr_quant)
    if lr_weights is not None:
        groups.append({"params": weight_parameters(model), "lr": lr_weights, "name": "weights"})
    if not groups:
        raise ValueError("train_quantized: nothing to train (no learnable Δ and lr_weights=None)")
    return fit(model, Adam(groups), train_data, config, loss_fn=loss_fn, hooks=hooks,
               eval_data=eval_data)
