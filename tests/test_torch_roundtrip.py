"""PyTorch round trip: our float and fake-quantised networks → a PyTorch state dict that loads
(strict) into the equivalent torch.nn module (scripts/torch_modules.py) → .pt → back into ours.

Predictions must agree on every test image; the way back must give the same parameters and the
same integer model (codes, int32 biases, multipliers) bit for bit.
"""
import copy
import sys
from pathlib import Path

import numpy as np
import pytest

from minicompress import models
from minicompress.io import load_model
from minicompress.prune import Mask, attach_mask
from minicompress.quantize import calibrate, convert, prepare
from minicompress.torch_state import load_torch_state, save_torch_state, torch_state_dict
from minicompress.train import predict

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import torch_modules  # noqa: E402


def torch_predict(net, x):
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


def round_trip(model, tmp_path):
    """ours → .npz → torch (→ .pt → torch) → .npz → a fresh copy of ours."""
    save_torch_state(model, tmp_path / "state.npz")
    net, arch = torch_modules.from_npz(tmp_path / "state.npz")
    torch_modules.save_pt(net, arch, tmp_path / "m.pt")
    net2, arch2 = torch_modules.load_pt(tmp_path / "m.pt")
    torch_modules.to_npz(net2, arch2, tmp_path / "back.npz")
    return net2, tmp_path / "back.npz"


def pruned(model, rng, keep=0.3):
    for name in ("fc1", "conv2"):
        layer = getattr(model, name, None)
        if layer is not None:
            mask = Mask(layer.weight.data.shape)
            mask.set(rng.random(layer.weight.data.shape) < keep)
            attach_mask(layer, mask)
    return model


@pytest.mark.parametrize("name", ["lenet300", "lenet5"])
def test_float_network(tmp_path, digits, name):
    (xtr, _), (xte, _) = digits
    model = models.build(name, 8, rng=np.random.default_rng(0))
    net, back = round_trip(model, tmp_path)
    assert np.array_equal(torch_predict(net, xte).argmax(1), predict(model, xte).argmax(1))
    # the way back, twice: with load_torch_state and (plain names) with io.load_model
    other = models.build(name, 8, rng=np.random.default_rng(1))
    load_torch_state(other, back)
    for (k, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert np.array_equal(a, b), k
    plain = {k: v for k, v in torch_state_dict(model)[0].items()}
    assert list(plain) == list(model.state_dict())


@pytest.mark.parametrize("name,w_bits,per_channel", [("lenet300", 4, False), ("lenet5", 4, True),
                                                     ("lenet5", 8, False)])
def test_fake_quantized_network(tmp_path, digits, name, w_bits, per_channel):
    (xtr, _), (xte, _) = digits
    rng = np.random.default_rng(2)
    model = pruned(models.build(name, 8, rng=rng), rng)
    prepare(model, w_bits, 8, per_channel=per_channel, example_input=xtr, rng=rng)
    calibrate(model, xtr[:300])
    im = convert(model)
    net, back = round_trip(model, tmp_path)
    ours = predict(model, xte).argmax(1)
    assert np.array_equal(torch_predict(net, xte).argmax(1), ours)
    assert np.array_equal(im.predict(xte), ours)
    # the way back into a fresh prepared model of the same architecture: same integer model
    fresh = models.build(name, 8, rng=np.random.default_rng(9))
    prepare(fresh, w_bits, 8, per_channel=per_channel, example_input=xtr, rng=rng)
    load_torch_state(fresh, back)
    a, b = im.to_arrays(), convert(fresh).to_arrays()
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    assert np.array_equal(predict(fresh, xte).argmax(1), ours)


def test_float_pytorch_checkpoint_still_loads(tmp_path, digits):
    """The older direction: a PyTorch state dict saved as {name: array} loads with io.load_model."""
    (_, _), (xte, _) = digits
    net = torch_modules.build(torch_state_dict(models.lenet300(8, rng=np.random.default_rng(3)))[1])
    from minicompress.io import save_npz_atomic
    save_npz_atomic(tmp_path / "t.npz", {k: v.numpy() for k, v in net.state_dict().items()})
    ours = load_model(models.lenet300(8, rng=np.random.default_rng(4)), tmp_path / "t.npz")
    assert np.array_equal(predict(ours, xte).argmax(1), torch_predict(net.eval(), xte).argmax(1))


def test_bad_state_is_a_clear_error(tmp_path, digits):
    model = models.lenet300(8, rng=np.random.default_rng(5))
    state, _ = torch_state_dict(model)
    state = dict(state)
    state["fc9.weight"] = np.zeros(3, np.float32)
    with pytest.raises(KeyError, match="unexpected keys"):
        load_torch_state(copy.deepcopy(model), state)
    del state["fc9.weight"], state["fc1.weight"]
    with pytest.raises(KeyError, match="fc1.weight"):
        load_torch_state(copy.deepcopy(model), state)
