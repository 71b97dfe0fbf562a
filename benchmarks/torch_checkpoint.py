"""A LeNet-5 trained in PyTorch, saved as .npz, loaded into our lenet5: same test predictions?

    python benchmarks/torch_checkpoint.py [--epochs 1]

Trains ``lenet5`` in PyTorch (Adam 1e-3, batch 128, normalised Fashion-MNIST), saves its
state dict as ``{name: tensor.numpy()}`` with our atomic .npz writer, loads that file into
``minicompress.models.lenet5`` with ``load_model`` (no renaming, no reshaping: the layouts and
names are PyTorch's), and compares the 10,000 test predictions. Target: 100 % equal.
Result → ``benchmarks/results/torch_checkpoint.json``.
"""
import argparse
import tempfile
from pathlib import Path

import numpy as np

from common import fashion, save_result, torch_model
from minicompress import models
from minicompress.io import load_model, save_npz_atomic
from minicompress.train import predict


def main():
    import torch
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    (xtr, ytr), (xte, yte) = fashion()
    net = torch_model("lenet5")
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    xtr_t, ytr_t = torch.from_numpy(xtr), torch.from_numpy(ytr)
    for epoch in range(args.epochs):
        order = torch.from_numpy(rng.permutation(len(xtr)))
        for start in range(0, len(xtr), 128):
            idx = order[start:start + 128]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xtr_t[idx]), ytr_t[idx]).backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        torch_logits = net(torch.from_numpy(xte)).numpy()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lenet5_torch.npz"
        save_npz_atomic(path, {k: v.detach().numpy() for k, v in net.state_dict().items()})
        ours = load_model(models.lenet5(28, rng=np.random.default_rng(123)), path)
    our_logits = predict(ours, xte)

    same = float(np.mean(our_logits.argmax(1) == torch_logits.argmax(1)))
    row = {
        "epochs": args.epochs,
        "torch_test_accuracy": float(np.mean(torch_logits.argmax(1) == yte)),
        "ours_test_accuracy": float(np.mean(our_logits.argmax(1) == yte)),
        "predictions_equal": same,
        "max_abs_logit_difference": float(np.abs(our_logits - torch_logits).max()),
        "target": 1.0, "met": same == 1.0,
    }
    for k, v in row.items():
        print(f"{k:26s} {v}")
    save_result("torch_checkpoint", row)


if __name__ == "__main__":
    main()
