"""Putting quantizers into a model, calibrating them, and learning Δ with Adam (§3.2.1 steps 4–5).

    model = models.lenet5(rng=rng); load trained weights
    prepare(model, weight_bits=4, act_bits=4, input_kind="asymmetric")   # inserts quantizers
    calibrate(model, x_train[:1000])                                     # observers → initial Δ
    evaluate(model, x_test, y_test)                                      # PTQ accuracy
    train_quantized(model, (x_train, y_train), epochs=1, lr_quant=1e-3)  # Adam learns Δ (PTQ)
    train_quantized(model, ..., lr_weights=1e-4)                         # ... and the weights (QAT)

§3.2.1 step 4 asks Adam to minimise ``L(Δ) = L_task(q(W), q(A))``: exactly ``train_quantized``
with the quantizers' ``log_delta`` (and ``offset``) as the Parameters. With ``lr_weights=None``
the weights are frozen (post-training quantisation with learned Δ); with a value, they are
trained at the same time (quantisation-aware training, LSQ-style).
"""
from __future__ import annotations

import numpy as np

from ..nn import ReLU, Sequential, WeightedLayer, cross_entropy
from ..optim import Adam
from ..train import fit, train_step
from .fake import ActivationQuantizer, BiasQuantizer, WeightQuantizer

INPUT_NAME = "quant_input"
INPUT_KINDS = ("auto", "unsigned", "asymmetric")


def prepare(model, weight_bits=8, act_bits=8, *, per_channel=False, input_kind="auto",
            input_bits=None, example_input=None, narrow_range=True, grad_scale=True,
            learn_delta=True, learn_offset=True, rng=None):
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
    """
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
        input_kind = "unsigned" if float(np.min(example_input)) >= 0 else "asymmetric"
    rng = rng if rng is not None else np.random.default_rng(0)
    current = ActivationQuantizer(8 if input_bits is None else input_bits, input_kind,
                                  grad_scale=grad_scale, learn_delta=learn_delta,
                                  learn_offset=learn_offset, rng=rng)
    model.insert_before(model.names()[0], INPUT_NAME, current)
    weighted = [n for n, m in model.named_children() if isinstance(m, WeightedLayer)]
    for name, module in list(model.named_children()):
        if isinstance(module, WeightedLayer):
            wq = module.add_weight_transform(WeightQuantizer(
                weight_bits, per_channel=per_channel, out_channels=module.weight.shape[0],
                narrow_range=narrow_range, grad_scale=grad_scale, learn_delta=learn_delta))
            last = name == weighted[-1]
            if module.bias is not None or last:
                # the int32 bias the integer model will store (and, last layer, its exact logits)
                model.insert_after(name, f"{name}_bias_quant",
                                   BiasQuantizer(module, wq, current, snap_output=last))
        elif isinstance(module, ReLU):
            current = ActivationQuantizer(act_bits, "unsigned", grad_scale=grad_scale,
                                          learn_delta=learn_delta, rng=rng)
            model.insert_after(name, f"{name}_quant", current)
    return model


def quantizers(model):
    """(weight quantizers as (layer_name, layer, quantizer), activation quantizers as (name, q))."""
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


def train_quantized(model, train_data, *, epochs=1, lr_quant=1e-3, lr_weights=None,
                    batch_size=128, rng, eval_data=None, progress=False, on_step=None,
                    desc="quant", loss_fn=cross_entropy):
    """Adam on the task loss through the fake quantizers (§3.2.1 steps 4–5, §3.2.2 step 4).

    Two Adam optimizers, because the Parameters live on different scales: the quantizers'
    log Δ and offsets at ``lr_quant``; the weights at ``lr_weights`` (``None``: frozen, i.e.
    post-training quantisation with a learned Δ). To learn Δ on a few batches only, pass a
    small ``train_data``. ``loss_fn(logits, y) -> (loss, grad)`` is the task loss (default
    cross-entropy; the pipeline passes the distillation loss). Returns ``fit``'s history.
    """
    q_params = [p for p in quantizer_parameters(model) if p.requires_grad]
    optimizers = [Adam(q_params, lr=lr_quant)] if q_params else []
    if lr_weights is not None:
        optimizers.append(Adam(weight_parameters(model), lr=lr_weights))
    if not optimizers:
        raise ValueError("train_quantized: nothing to train (no learnable Δ and lr_weights=None)")

    class _Both:
        """Both optimizers behind the one-optimizer interface ``fit`` expects."""

        def zero_grad(self):
            model.zero_grad()

        def step(self):
            for opt in optimizers:
                opt.step()

    both = _Both()
    step_fn = lambda xb, yb: train_step(model, both, xb, yb, loss_fn)  # noqa: E731
    return fit(model, both, train_data, epochs=epochs, batch_size=batch_size, rng=rng,
               step_fn=step_fn, eval_data=eval_data, on_step=on_step, progress=progress, desc=desc)
