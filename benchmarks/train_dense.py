"""Train the four reference nets on Fashion-MNIST for 10 epochs and report test accuracy.

    python benchmarks/train_dense.py [--seed 0] [--models lenet300 lenet5 teacher student]

Targets: lenet300 ≥ 88.5 %, lenet5 ≥ 90.0 %, teacher ≥ 92.0 %, student ≥ 87.5 %.
The trained weights are cached and reused by the other benchmarks. Each seed's accuracies go under
"seed<k>" in ``benchmarks/results/train_dense.json``.
"""
import argparse

from common import _machine, dense_model, fashion, update_result
from minicompress.train import evaluate

TARGETS = {"lenet300": 0.885, "lenet5": 0.900, "teacher": 0.920, "student": 0.875}

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--models", nargs="+", default=list(TARGETS), choices=list(TARGETS))
args = parser.parse_args()

data = fashion()
rows = {}
for name in args.models:
    model = dense_model(name, seed=args.seed, data=data)
    acc = evaluate(model, *data[1])["accuracy"]
    rows[name] = {"accuracy": acc, "target": TARGETS[name], "met": acc >= TARGETS[name],
                  "machine": _machine()}   # per model: a run of some models keeps the others
    print(f"{name:9s} test accuracy {100 * acc:.2f} %  (target ≥ {100 * TARGETS[name]:.1f} %)")
update_result("train_dense", f"seed{args.seed}", rows, merge=True)
