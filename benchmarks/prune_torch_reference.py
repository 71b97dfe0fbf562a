"""PyTorch reference for weight pruning (the reference table's protocol), same dense start and protocol.

``torch.nn.utils.prune.global_unstructured`` with L1 (magnitude) over every weight tensor,
stepping to 50/75/90/95/98 % global sparsity, 2 epochs of Adam (lr 1e-4) fine-tuning per step.
The dense start is *our* cached state dict loaded into an equivalent torch model, and the batches
come from the same NumPy generator, so only the pruning library differs. Torch is an oracle
here, never a dependency: the script exits cleanly when it is absent.

    OPENBLAS_NUM_THREADS=1 python benchmarks/prune_torch_reference.py --net lenet300
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from common import RESULTS, dense_model, fashion, save_result

from minicompress.data import batches

TARGETS = (0.5, 0.75, 0.9, 0.95, 0.98)


def torch_model(torch, name):
    nn = torch.nn
    if name == "lenet300":
        from collections import OrderedDict
        return nn.Sequential(OrderedDict(
            flatten=nn.Flatten(), fc1=nn.Linear(784, 300), relu1=nn.ReLU(),
            fc2=nn.Linear(300, 100), relu2=nn.ReLU(), fc3=nn.Linear(100, 10)))
    if name == "lenet5":
        from collections import OrderedDict
        return nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(1, 6, 5, padding=2), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(6, 16, 5), relu2=nn.ReLU(), pool2=nn.MaxPool2d(2), flatten=nn.Flatten(),
            fc1=nn.Linear(400, 120), relu3=nn.ReLU(), fc2=nn.Linear(120, 84), relu4=nn.ReLU(),
            fc3=nn.Linear(84, 10)))
    raise ValueError(f"--net must be lenet300 or lenet5, got {name!r}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", default="lenet300")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    try:
        import torch
        from torch.nn.utils import prune as tprune
    except ImportError:
        print("torch is not installed: no reference run")
        return 0
    torch.set_num_threads(1)
    (xtr, ytr), (xte, yte) = fashion()
    ours = dense_model(args.net)
    model = torch_model(torch, args.net)
    state = {k: torch.from_numpy(v) for k, v in ours.state_dict().items()}
    model.load_state_dict(state)
    weights = [(m, "weight") for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed)
    xte_t, yte_t = torch.from_numpy(xte), torch.from_numpy(yte.astype(np.int64))

    def accuracy():
        model.eval()
        with torch.no_grad():
            acc = float((model(xte_t).argmax(1) == yte_t).float().mean())
        model.train()
        return acc

    dense_acc, accs, prev = accuracy(), [], 0.0
    t0 = time.perf_counter()
    for target in TARGETS:
        # torch's amount is a fraction of the weights that are still unpruned
        tprune.global_unstructured(weights, pruning_method=tprune.L1Unstructured,
                                   amount=1 - (1 - target) / (1 - prev))
        prev = target
        for _ in range(2):
            for xb, yb in batches(xtr, ytr, 128, rng=rng):
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(xb)),
                                                         torch.from_numpy(yb.astype(np.int64)))
                loss.backward()
                opt.step()
        zeros = sum(int((m.weight == 0).sum()) for m, _ in weights)
        total = sum(m.weight.numel() for m, _ in weights)
        accs.append(accuracy())
        print(f"  torch {args.net} sparsity {zeros / total:.4f} acc {accs[-1]:.4f}", flush=True)
    save_result(f"prune_torch_reference_{args.net}", {
        "net": args.net, "targets": list(TARGETS), "lr": args.lr, "dense_accuracy": dense_acc,
        "accuracy": accs, "seconds": round(time.perf_counter() - t0, 1),
        "torch_version": torch.__version__,
        "command": f"OPENBLAS_NUM_THREADS=1 python benchmarks/prune_torch_reference.py --net {args.net}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
