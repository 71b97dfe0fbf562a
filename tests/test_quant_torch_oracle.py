"""Our LSQ fake quantizer against PyTorch's learnable fake quantization (the op behind
``torch.ao.quantization._LearnableFakeQuantize``): same x̂, same ∂/∂x, same ∂/∂Δ.

One documented difference: PyTorch counts x as "inside" when round(x/Δ) is in range, the LSQ
paper (and we) when x/Δ itself is, so the two differ for x/Δ in the half-step bands
(q_hi, q_hi + ½) and (q_lo − ½, q_lo). The comparison leaves those bands out.
"""
import numpy as np
import pytest

from bounds import sum_error_bound
from minicompress.quantize import ActivationQuantizer, WeightQuantizer

torch = pytest.importorskip("torch")


def _torch_lsq(x, delta, q_min, q_max, upstream):
    xt = torch.tensor(x, dtype=torch.float32, requires_grad=True)
    scale = torch.tensor([delta], dtype=torch.float32, requires_grad=True)
    zero = torch.tensor([0.0], dtype=torch.float32, requires_grad=True)
    y = torch._fake_quantize_learnable_per_tensor_affine(xt, scale, zero, q_min, q_max, 1.0)
    y.backward(torch.tensor(upstream, dtype=torch.float32))
    return y.detach().numpy(), xt.grad.numpy(), scale.grad.numpy()[0]


@pytest.mark.parametrize("n_bits", [2, 4, 8])
@pytest.mark.parametrize("kind", ["signed", "unsigned"])
def test_matches_torch_learnable_fake_quant(rng, n_bits, kind):
    x = (rng.standard_normal(500) * 2).astype(np.float32)
    upstream = rng.standard_normal(500).astype(np.float32)
    if kind == "signed":
        q = WeightQuantizer(n_bits, grad_scale=False)
    else:
        q = ActivationQuantizer(n_bits, "unsigned", grad_scale=False)
    q.set_delta(0.37 if n_bits < 8 else 0.011)
    delta = float(q.delta[0])
    v = x / delta
    keep = ~(((v > q.q_hi) & (v < q.q_hi + 0.5)) | ((v < q.q_lo) & (v > q.q_lo - 0.5)))
    x, upstream = x[keep], upstream[keep]
    y = q.forward(x)
    q.zero_grad()
    dx = q.backward(upstream)
    ours_d_delta = q.log_delta.grad[0] / delta
    ty, tdx, td_delta = _torch_lsq(x, delta, q.q_lo, q.q_hi, upstream)
    np.testing.assert_allclose(y, ty, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dx, tdx)
    # ∂L/∂Δ = Σ_i u_i s_i with s_i = round(v_i) − v_i inside the range, the clipped code outside:
    # two float32 sums of n terms in different orders (NumPy's and torch's reductions, SIMD-width
    # dependent), each within n·eps32·Σ|u_i s_i| of the exact sum
    v = x.astype(np.float64) / delta
    s = np.where((v >= q.q_lo) & (v <= q.q_hi), np.rint(v) - v, np.clip(np.rint(v), q.q_lo, q.q_hi))
    assert abs(ours_d_delta - td_delta) <= 2 * sum_error_bound(upstream * s)
