"""Figures for weight pruning, drawn from the result files of the benchmarks (no training here).

    python benchmarks/prune_figure.py

* ``figures/prune_accuracy_vs_sparsity.png``: test accuracy against global sparsity, lenet300 and
  lenet5, for magnitude / gradient / Taylor / learned mask (``prune_weights.py``), the PyTorch
  reference run on this machine (``prune_torch_reference.py``) and the reference table the goals were set from,
  with the no-pruning control as a horizontal line.
* ``figures/prune_sparse_bytes.png``: stored bytes of the pruned nets / dense float32 bytes.
"""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
FIGURES = ROOT / "figures"
REFERENCE_TABLE = {"lenet300": [None, None, 0.881, 0.863, 0.785], "lenet5": [None, None, 0.886, 0.847, 0.685]}
STYLE = {"magnitude": ("C0", "o"), "gradient": ("C1", "s"), "taylor": ("C2", "^"),
         "learned": ("C3", "D"), "control": ("0.4", None)}


def load(name):
    p = RESULTS / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def draw_accuracy(ax, net, bytes_ax=None):
    """Test accuracy against global sparsity of ``net`` on ``ax``, every curve and legend entry named
    from ``benchmarks/results/prune_weights_<net>.json`` (and the PyTorch reference file); with
    ``bytes_ax``, also the stored-bytes ratio of the learned and magnitude runs. y limits from the data."""
    res = load(f"prune_weights_{net}")
    if res is None:
        ax.set_title(f"{net}: no results yet")
        return
    x = [100 * t for t in res["targets"]]
    ys = [100 * res["dense_accuracy"]]
    for key, run in sorted(res["runs"].items()):
        method = key.split("@")[0]
        color, marker = STYLE.get(method, ("k", "x"))
        ls = "-" if "lr0.001" in key else "--"
        ys += [100 * a for a in run["accuracy"]]
        if method == "control":
            ax.axhline(100 * run["accuracy"][-1], color=color, ls=ls, lw=1,
                       label=f"control (no pruning, 10 ep) {key.split('@')[1]}")
            continue
        ax.plot(x[:len(run["accuracy"])], [100 * a for a in run["accuracy"]], ls, color=color,
                marker=marker, label=key)
        if bytes_ax is not None and method in ("learned", "magnitude") and run.get("bytes"):
            bytes_ax.plot(x[:len(run["bytes"])], [100 * b / (4 * _params(res)) for b in run["bytes"]],
                          ls, marker=marker, label=f"{net} {key}")
    ref = load(f"prune_torch_reference_{net}")
    if ref is not None:
        ax.plot(x, [100 * a for a in ref["accuracy"]], ":", color="k", marker="x",
                label="PyTorch global L1 (run here)")
        ys += [100 * a for a in ref["accuracy"]]
    reference = [(xi, 100 * a) for xi, a in zip(x, REFERENCE_TABLE[net]) if a is not None]
    ax.plot(*zip(*reference), "k*", ms=10, label="reference table (PyTorch)")
    ys += [a for _, a in reference]
    ax.axhline(100 * res["dense_accuracy"], color="k", lw=0.8, ls=(0, (1, 3)), label="dense start")
    ax.set_title(f"{net} on Fashion-MNIST (solid: lr 1e-3, dashed: lr 1e-4)")
    ax.set_xlabel("global sparsity (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(min(ys) - 1.5, max(ys) + 1)   # every point inside
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)


def main():
    FIGURES.mkdir(exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    fig2, ax2 = plt.subplots(figsize=(6, 4))
    for ax, net in zip(axes, ("lenet300", "lenet5")):
        draw_accuracy(ax, net, bytes_ax=ax2)
    fig.tight_layout()
    fig.savefig(FIGURES / "prune_accuracy_vs_sparsity.png", dpi=120)
    ax2.axhline(10, color="k", ls=":", label="target at 95 % (lenet300): 10 %")
    ax2.set_xlabel("global sparsity (%)")
    ax2.set_ylabel("stored bytes / dense float32 bytes (%)")
    ax2.set_title("sparse storage (auto: dense / bitmask+values / CSR)")
    ax2.legend(fontsize=7)
    ax2.grid(alpha=0.3)
    fig2.tight_layout()
    fig2.savefig(FIGURES / "prune_sparse_bytes.png", dpi=120)
    print("wrote figures/prune_accuracy_vs_sparsity.png and figures/prune_sparse_bytes.png")


def _params(res):
    """Number of weights and biases of the dense net (dense float32 bytes = 4 × this)."""
    import sys
    sys.path.insert(0, str(ROOT))
    import numpy as np
    from minicompress import metrics, models
    return metrics.count_parameters(models.build(res["net"], 28, rng=np.random.default_rng(0)))


if __name__ == "__main__":
    plt.switch_backend("Agg")   # files only; importing the module (notebook 08 does) keeps the caller's backend
    main()
