"""Mixed precision under a byte budget: one bit width per layer, chosen by an exact knapsack.

Uniform quantisation (§3.2) gives every layer the same n. Layers differ, though: some lose
little at 2 bits, some much, and they differ in size. Given a budget of B bytes for the weights,

    minimise    Σ_l  S_l(b_l)                      over b_l ∈ {2, 3, 4, 8}
    subject to  Σ_l  bytes_l(b_l) ≤ B

* ``bytes_l(b) = ⌈n_l · b / 8⌉``: the artifact stores a layer's n_l weight codes packed at b bits
  (``quantize.bitpack``; ``artifact.encode_codes`` "packed", ``IntegerModel.weight_bytes``). The
  biases, scales and header do not depend on b, so they are left out of the budget.
* ``S_l(b)``, the sensitivity, in one of two ways (both on a calibration set of training
  images, never the test set):

  - *measured* (:func:`sensitivity`): the increase of the mean cross-entropy when *only* layer l
    is quantised to b bits, every other layer kept float;
  - *Fisher* (:func:`fisher_sensitivity`): the second-order estimate of that increase,

        S_l(b) ≈ ½ Σ_ij F_ij (Q_b(W)_ij − W_ij)²,    F_ij = (1/N) Σ_n (∂ℓ_n/∂W_ij)²

    with F the diagonal of the empirical Fisher (the mean squared per-image gradient, which
    stands in for the Hessian of the loss at a trained minimum; the first-order term is dropped
    because the mean gradient there is ≈ 0). It weighs each weight's rounding error by how much
    the loss cares about that weight. It is never negative, and in practice falls with more
    bits, where the measured increase of a small layer can be noise of either sign.

  Summing the S_l assumes the layers' errors add up, which is a model, not a fact: the
  benchmark checks the chosen bits by the accuracy of the whole quantised net.

The knapsack is solved exactly by dynamic programming over bytes. With f_0(c) = 0 for every
c ≥ 0 and

    f_l(c) = min_b  f_{l−1}(c − bytes_l(b)) + S_l(b)        (+∞ if c < bytes_l(b))

f_l(c) is the least summed sensitivity of layers 1..l in at most c bytes, and f_L(B) the answer;
the argmin at each layer, read back from c = B, gives the bits. Time O(L·|bits|·B), memory
O(L·B) for the back-pointers (B ≈ 10⁵ bytes here: milliseconds). A greedy rule — lower, one step
at a time, the layer whose next step costs least sensitivity per byte saved — is not exact
(``greedy_bits``; the tests show a case where it loses).

Quantiser: per-tensor symmetric ``WeightQuantizer`` (narrow range, as §3.2.1), Δ from an
observer (``"mse"`` search by default), round to nearest; activations stay float.
"""
from __future__ import annotations

import numpy as np

from ..nn import Conv2d, Linear, cross_entropy
from ..prune.mask import prunable_layers
from .fake import WeightQuantizer
from .layerwise import from_weight_matrix, input_rows

BITS = (2, 3, 4, 8)


def check_bits(bits):
    """A non-empty list of distinct integer bit widths in [2, 16], sorted ascending."""
    bits = list(bits)
    if not bits or any(isinstance(b, bool) or not isinstance(b, (int, np.integer)) or not 2 <= b <= 16
                       for b in bits) or len(set(bits)) != len(bits):
        raise ValueError(f"bits must be distinct integers in [2, 16], got {bits!r}")
    return sorted(int(b) for b in bits)


def packed_bytes(n, bits):
    """⌈n·b/8⌉: bytes of n weight codes packed at b bits, as the artifact stores them."""
    return -(-int(n) * int(bits) // 8)


def layer_bytes(model, bits=BITS, layers=None):
    """``{layer: {b: bytes}}`` for every Linear/Conv2d weight (or the named ``layers``)."""
    bits = check_bits(bits)
    return {name: {b: packed_bytes(layer.weight.data.size, b) for b in bits}
            for name, layer in prunable_layers(model, layers)}


def uniform_bytes(sizes, b):
    """Σ_l bytes_l(b): the budget uniform b-bit weights take."""
    return sum(s[b] for s in sizes.values())


# ---- sensitivity -------------------------------------------------------------------------------
def quantize_layer(layer, b, method="mse"):
    """Attach a b-bit per-tensor WeightQuantizer to ``layer`` with Δ from the observer; returns it
    (remove with ``layer.remove_weight_transform``)."""
    q = WeightQuantizer(b, learn_delta=False)
    q.observe(layer.effective_weight(), method)
    return layer.add_weight_transform(q)


def mean_loss(model, x, y, batch_size=1000, loss_fn=cross_entropy):
    """Mean task loss over (x, y) in eval mode."""
    was = model.training
    model.eval()
    total = 0.0
    for i in range(0, len(x), batch_size):
        loss, _ = loss_fn(model(x[i:i + batch_size]), y[i:i + batch_size])
        total += float(loss) * len(x[i:i + batch_size])
    model.train(was)
    return total / len(x)


def sensitivity(model, data, bits=BITS, *, method="mse", layers=None, loss_fn=cross_entropy):
    """``{layer: {b: S_l(b)}}`` with S_l(b) = L(only layer l at b bits) − L(float), the mean
    loss on ``data = (x, y)`` (calibration images: training, never test). The model is left
    as it was."""
    bits = check_bits(bits)
    x, y = data
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"sensitivity: data must be (x, y) of equal non-zero length, got "
                         f"{len(x)} and {len(y)}")
    base = mean_loss(model, x, y, loss_fn=loss_fn)
    out = {}
    for name, layer in prunable_layers(model, layers):
        out[name] = {}
        for b in bits:
            q = quantize_layer(layer, b, method)
            try:
                out[name][b] = mean_loss(model, x, y, loss_fn=loss_fn) - base
            finally:
                layer.remove_weight_transform(q)
    return out


def per_image_squared_gradient(layer, x, delta):
    """Σ_n (∂ℓ_n/∂W)², the squared per-image weight gradients summed over the batch, in the
    weight's shape.

    x is the layer's input (N, K) or (N, C, H, W) and delta = ∂ℓ_n/∂y, the gradient of each
    image's own loss ℓ_n at the layer's output, (N, O) or (N, O, OH, OW).

    * Linear, y_n = W x_n + b: ∂ℓ_n/∂W = δ_n x_nᵀ, so Σ_n (∂ℓ_n/∂W_ij)² = Σ_n δ_ni² x_nj², i.e.
      (δ⊙δ)ᵀ (x⊙x) — one matrix product, no per-image loop.
    * Conv2d, seen through im2col as Y_n = C_n W_matᵀ (C_n the image's (P, K) patches, P = OH·OW):
      ∂ℓ_n/∂W_mat = D_nᵀ C_n with D_n the (P, O) output gradient; one batched product gives all
      N of them, (N, O, K), which are squared and summed.
    """
    if isinstance(layer, Linear):
        x = x.reshape(len(x), -1)
        return (delta * delta).T @ (x * x)
    if isinstance(layer, Conv2d):
        n, o = delta.shape[:2]
        d = delta.transpose(0, 2, 3, 1).reshape(n, -1, o)            # (N, P, O)
        c = input_rows(layer, x).reshape(n, d.shape[1], -1)          # (N, P, K)
        g = np.matmul(d.transpose(0, 2, 1), c)                       # (N, O, K): ∂ℓ_n/∂W_mat
        return from_weight_matrix(layer, np.einsum("nok,nok->ok", g, g))
    raise TypeError(f"fisher: layer must be a Linear or a Conv2d, got {type(layer).__name__}")


def fisher_diagonal(model, data, *, layers=None, batch_size=500, loss_fn=cross_entropy):
    """``{layer: F}``, F = (1/N) Σ_n (∂ℓ_n/∂W_eff)², the diagonal of the empirical Fisher of
    each Linear/Conv2d's effective weight, on ``data = (x, y)`` (calibration images).

    The model must be a Sequential whose weighted layers are direct children (as every model in
    :mod:`minicompress.models`). Each batch runs forward once; the backward pass is walked by
    hand so that each layer's input and per-image output gradient δ_n can be read off: with the
    mean loss L = (1/B) Σ_n ℓ_n, δ_n = B · ∂L/∂y_n. The parameters' ``.grad`` are left as they
    were, and so is the train/eval mode.
    """
    x, y = data
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"fisher_diagonal: data must be (x, y) of equal non-zero length, got "
                         f"{len(x)} and {len(y)}")
    children = list(model.named_children())
    wanted = dict(prunable_layers(model, layers))
    if not all(any(m is layer for _, m in children) for layer in wanted.values()):
        raise ValueError("fisher_diagonal: every weighted layer must be a direct child of the model")
    saved = [p.grad.copy() for p in model.parameters()]
    was = model.training
    model.train()                                   # the backward pass needs the training caches
    total = {name: 0.0 for name in wanted}
    try:
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            inputs, a = [], xb
            for _, m in children:
                inputs.append(a)
                a = m(a)
            _, grad = loss_fn(a, yb)
            grad = grad * len(xb)                    # δ_n = B·∂L/∂y_n = ∂ℓ_n/∂y_n
            for k in range(len(children) - 1, -1, -1):
                name, m = children[k]
                if name in wanted:
                    total[name] = total[name] + per_image_squared_gradient(m, inputs[k], grad)
                if k > 0:
                    grad = m.backward(grad)
    finally:
        for p, g in zip(model.parameters(), saved):
            p.grad[...] = g
        model.train(was)
    return {name: total[name] / len(x) for name in wanted}


def fisher_sensitivity(model, data, bits=BITS, *, method="mse", layers=None, fisher=None,
                       loss_fn=cross_entropy):
    """``{layer: {b: S_l(b)}}`` with S_l(b) = ½ Σ_ij F_ij (Q_b(W)_ij − W_ij)², the Fisher
    estimate of the loss increase when only layer l is quantised to b bits (module doc).
    ``fisher``: a :func:`fisher_diagonal` result to reuse; computed from ``data`` if None.
    The model is left as it was."""
    bits = check_bits(bits)
    if fisher is None:
        fisher = fisher_diagonal(model, data, layers=layers, loss_fn=loss_fn)
    out = {}
    for name, layer in prunable_layers(model, layers):
        w = layer.effective_weight()
        out[name] = {}
        for b in bits:
            q = quantize_layer(layer, b, method)
            try:
                err = layer.effective_weight().astype(np.float64) - w
            finally:
                layer.remove_weight_transform(q)
            out[name][b] = 0.5 * float(np.sum(fisher[name] * err * err))
    return out


# ---- the knapsack ------------------------------------------------------------------------------
def _check_table(costs, sizes):
    if not costs or set(costs) != set(sizes):
        raise ValueError(f"knapsack: costs and sizes must name the same non-empty layers, got "
                         f"{sorted(costs)} and {sorted(sizes)}")
    for name in costs:
        if set(costs[name]) != set(sizes[name]) or not costs[name]:
            raise ValueError(f"knapsack: layer {name!r} has costs for bits {sorted(costs[name])} "
                             f"but sizes for {sorted(sizes[name])}")
        for b, s in sizes[name].items():
            if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
                raise ValueError(f"knapsack: sizes[{name!r}][{b}] must be a byte count ≥ 0, got {s!r}")
            if not np.isfinite(costs[name][b]):
                raise ValueError(f"knapsack: costs[{name!r}][{b}] must be finite, got {costs[name][b]!r}")


def min_bytes(sizes):
    """The fewest bytes any choice takes: every layer at its smallest size."""
    return sum(min(s.values()) for s in sizes.values())


def knapsack_bits(costs, sizes, budget):
    """Exact: ``{layer: b}`` minimising Σ costs[l][b] with Σ sizes[l][b] ≤ ``budget`` (bytes).

    ``costs[l][b]`` (any real, e.g. a sensitivity) and ``sizes[l][b]`` (int bytes) for every layer
    l and bit width b. Dynamic programming over bytes (module doc); ties go to the fewer bits of
    the later layers. A budget below :func:`min_bytes` is an error.
    """
    _check_table(costs, sizes)
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)):
        raise TypeError(f"knapsack: budget must be an int number of bytes, got {budget!r}")
    need = min_bytes(sizes)
    if budget < need:
        raise ValueError(f"knapsack: budget {budget} bytes is below the minimum {need} bytes "
                         f"(every layer at its fewest bits)")
    names = list(costs)
    f = np.zeros(budget + 1)                       # f_0(c) = 0 for c = 0..B
    choice = []
    for name in names:
        bits = sorted(costs[name])
        cand = np.full((len(bits), budget + 1), np.inf)
        for i, b in enumerate(bits):
            w = int(sizes[name][b])
            if w <= budget:                                     # else +∞: never fits
                cand[i, w:] = f[:budget + 1 - w] + costs[name][b]   # f_{l-1}(c − w) + S_l(b)
        pick = np.argmin(cand, axis=0)                          # first minimum: fewer bits
        f = cand[pick, np.arange(budget + 1)]
        choice.append((bits, pick))
    out, c = {}, budget
    for name, (bits, pick) in zip(reversed(names), reversed(choice)):
        b = bits[pick[c]]
        out[name] = b
        c -= int(sizes[name][b])
    return {name: out[name] for name in names}


def exhaustive_bits(costs, sizes, budget):
    """The same optimum by trying all Π_l |bits_l| choices (a check for a few layers)."""
    import itertools
    _check_table(costs, sizes)
    names = list(costs)
    best = None
    for combo in itertools.product(*[sorted(costs[n]) for n in names]):
        if sum(sizes[n][b] for n, b in zip(names, combo)) <= budget:
            c = sum(costs[n][b] for n, b in zip(names, combo))
            if best is None or c < best[0]:
                best = (c, combo)
    if best is None:
        raise ValueError(f"knapsack: budget {budget} bytes is below the minimum "
                         f"{min_bytes(sizes)} bytes (every layer at its fewest bits)")
    return dict(zip(names, best[1]))


def greedy_bits(costs, sizes, budget):
    """Not exact, for comparison: start with every layer at its most bits; while over budget,
    lower by one step the layer whose step adds least cost per byte saved."""
    _check_table(costs, sizes)
    if budget < min_bytes(sizes):
        raise ValueError(f"knapsack: budget {budget} bytes is below the minimum "
                         f"{min_bytes(sizes)} bytes (every layer at its fewest bits)")
    bits = {n: sorted(costs[n]) for n in costs}
    at = {n: len(bits[n]) - 1 for n in costs}
    while sum(sizes[n][bits[n][at[n]]] for n in costs) > budget:
        def rate(n):
            hi, lo = bits[n][at[n]], bits[n][at[n] - 1]
            saved = sizes[n][hi] - sizes[n][lo]
            return (costs[n][lo] - costs[n][hi]) / saved if saved > 0 else np.inf
        n = min((n for n in costs if at[n] > 0), key=rate)
        at[n] -= 1
    return {n: bits[n][at[n]] for n in costs}


def total(table, choice):
    """Σ_l table[l][choice[l]] (summed sensitivity or bytes of a choice)."""
    return sum(table[n][b] for n, b in choice.items())


def apply_bits(model, choice, method="mse"):
    """Quantise each layer's weight to ``choice[layer]`` bits in place (weight quantizers
    attached, Δ from the observer); returns ``{layer: WeightQuantizer}``."""
    layers = dict(prunable_layers(model, list(choice)))
    return {name: quantize_layer(layers[name], b, method) for name, b in choice.items()}
