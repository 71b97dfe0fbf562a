"""Layer-wise post-training rounding: what AdaRound and GPTQ share.

Both methods keep the step Δ of every weight quantizer (set by :func:`~.prepare.calibrate`) and
choose, layer after layer, *which way to round* each weight, so that the layer's output on
calibration inputs changes as little as possible. A Linear, or a Conv2d seen through im2col, is a
matrix product ``Y = X Wᵀ`` with X the (rows, K) inputs (one row per image, or per image patch)
and W the (O, K) weight matrix, so the error of a quantised W̃ is::

    ‖X Wᵀ − X W̃ᵀ‖² / rows = Σ_o (w_o − w̃_o) H (w_o − w̃_o)ᵀ,     H = XᵀX / rows   (K × K)

a quadratic form in the weight error of each output row o, with the same H for every row. H is
all either method needs from the data.

Sequential: the inputs X of layer ℓ come from running the calibration images through the model
*with layers 1..ℓ−1 already quantised* (weights and activations), so each layer also corrects
part of the error made before it (AdaRound's and GPTQ's sequential variant).

The chosen integer codes are written back as the weight itself, ``W ← Δ·q``: the layer's weight
quantizer then maps it to exactly the codes q (round(Δq/Δ) = q), so the fake-quantised model, the
integer model (:func:`~.integer.convert`) and an artifact file all carry the chosen rounding.
"""
from __future__ import annotations

import numpy as np

from ..nn import Conv2d, Linear, WeightedLayer
from ..nn.im2col import im2col
from .fake import WeightQuantizer


def weight_matrix(layer):
    """The (O, K) matrix of a Linear (its weight) or a Conv2d (its (O, C, k, k) weight with
    columns in im2col's (kh, kw, C) order, as ``Conv2d.forward`` multiplies it)."""
    w = layer.weight.data
    if isinstance(layer, Conv2d):
        return w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
    if isinstance(layer, Linear):
        return w
    raise TypeError(f"weight_matrix: layer must be a Linear or a Conv2d, got {type(layer).__name__}")


def from_weight_matrix(layer, w_mat):
    """Inverse of :func:`weight_matrix`: an (O, K) matrix back to the layer's weight shape."""
    if isinstance(layer, Conv2d):
        o, c, k, _ = layer.weight.shape
        return w_mat.reshape(o, k, k, c).transpose(0, 3, 1, 2)
    return w_mat.reshape(layer.weight.shape)


def input_rows(layer, x):
    """The rows X of ``Y = X Wᵀ``: x itself for a Linear (N, K); the im2col patches for a Conv2d
    (N·OH·OW, k·k·C)."""
    if isinstance(layer, Conv2d):
        cols, _ = im2col(x.transpose(0, 2, 3, 1), layer.kernel_size, layer.stride, layer.padding)
        return cols
    return x.reshape(len(x), -1)


def layer_inputs(model, layer, x, batch_size=500):
    """What ``layer`` receives when x runs through the children of the Sequential before it, as
    they are now (quantizers on: the already-quantised layers' outputs)."""
    children = [m for _, m in model.named_children()]
    if not any(m is layer for m in children):
        raise ValueError("layer_inputs: layer is not a child of the model")
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        a = x[i:i + batch_size]
        for m in children:
            if m is layer:
                break
            a = m(a)
        out.append(a)
    model.train(was_training)
    return np.concatenate(out)


def input_gram(layer, x, batch_size=200):
    """H = XᵀX / rows (K × K, float64) of the layer's input rows, summed in batches of images
    (a conv's im2col rows are many)."""
    h, rows = None, 0
    for i in range(0, len(x), batch_size):
        cols = input_rows(layer, x[i:i + batch_size]).astype(np.float64)
        h = cols.T @ cols if h is None else h + cols.T @ cols
        rows += len(cols)
    return h / rows


def weight_grid(layer):
    """The weight quantizer of the layer and its grid: (quantizer, Δ as an (O, 1) column or
    (1, 1), q_lo, q_hi). Only a layer whose single weight transform is the quantizer (no
    pruning mask) is supported: a mask would undo the error feedback on pruned weights."""
    if not isinstance(layer, WeightedLayer):
        raise TypeError(f"weight_grid: expected a Linear or Conv2d, got {type(layer).__name__}")
    ts = layer.weight_transforms
    if len(ts) != 1 or not isinstance(ts[0], WeightQuantizer):
        raise ValueError("layer-wise rounding: each layer must have exactly one weight transform, "
                         f"its WeightQuantizer (run quantize.prepare on an unpruned model); got {ts}")
    wq = ts[0]
    if not wq.initialized:
        raise ValueError("layer-wise rounding: the weight quantizers are not calibrated "
                         "(run quantize.calibrate first)")
    delta = wq.delta.reshape(-1, 1) if wq.per_channel else wq.delta.reshape(1, 1)
    return wq, delta.astype(np.float32), wq.q_lo, wq.q_hi


def set_weight_codes(layer, codes, delta):
    """W ← Δ·q: the weight becomes its own quantised value, so the layer's quantizer (same Δ)
    returns exactly the codes q. ``codes`` (O, K) integers in the weight-matrix order."""
    w = (np.asarray(delta, np.float32) * codes.astype(np.float32)).astype(np.float32)
    layer.weight.data[...] = from_weight_matrix(layer, w)


def round_layerwise(model, x, round_layer, *, progress=None):
    """Quantise every Linear / Conv2d of a prepared, calibrated model in order, each with
    ``codes = round_layer(W, H, Δ, q_lo, q_hi)`` (W (O, K) float64, H (K, K), Δ (O, 1) or
    (1, 1)), its inputs X taken from the model with the layers before it already quantised.
    Returns {layer name: the layer's reconstruction error Σ_o e_o H e_oᵀ} (after rounding)."""
    errors = {}
    for name, layer in list(model.named_children()):
        if not isinstance(layer, WeightedLayer):
            continue
        _, delta, q_lo, q_hi = weight_grid(layer)
        h = input_gram(layer, layer_inputs(model, layer, x))
        w = weight_matrix(layer).astype(np.float64)
        codes = round_layer(w, h, delta.astype(np.float64), q_lo, q_hi)
        set_weight_codes(layer, codes, delta)
        errors[name] = reconstruction_error(w, delta * codes, h)
        if progress:
            progress(name, errors[name])
    return errors


def reconstruction_error(w, w_hat, h):
    """Σ_o (w_o − ŵ_o) H (w_o − ŵ_o)ᵀ = ‖X Wᵀ − X Ŵᵀ‖² / rows."""
    e = np.asarray(w, np.float64) - np.asarray(w_hat, np.float64)
    return float(np.sum((e @ h) * e))


def nearest_codes(w, delta, q_lo, q_hi):
    """Round-to-nearest, for comparison: clip(round(W/Δ), q_lo, q_hi)."""
    from .functional import grid_code
    return grid_code(np.asarray(w) / delta, 0, q_lo, q_hi)
