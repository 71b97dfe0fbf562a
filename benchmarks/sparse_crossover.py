"""When does skipping the zeros of a pruned weight make the forward pass faster? (the crossover)

Forward time of the lenet300 layers (784→300, 300→100, 100→10, and the whole 3-layer forward with
ReLU) against sparsity 50 … 99.9 % at batch 1, 64 and 256, for every kernel below, all timed in ONE
process in *interleaved rounds* (each round times every kernel once, after one untimed warm-up
call), reporting medians over the rounds and the median of the per-round ratios to NumPy dense.
Times are CPU time of the process with one thread (the machine is shared: wall time counts the
time other jobs held the core) and wall time with two. The kernels:

* ``numpy_dense``  — ``x @ W_effᵀ`` in float32 (BLAS; the zeros are multiplied too);
* ``csr_reduceat`` — CSR: gather ``x[:, cols] * vals`` (N, nnz), then ``np.add.reduceat`` per row;
* ``ell``          — ELL on x: ``einsum('nok,ok->no', x[:, cols], vals)`` (padded per-row nonzeros);
* ``ell_t``        — ELL on xᵀ, the library's kernel (``minicompress.nn.sparse_linear.ell_matmul``);
* ``compact``      — drop dead inputs (all-zero columns) and dead outputs (all-zero rows), then a
  smaller dense GEMM on ``x[:, alive_in]`` (the library's ``compact_matmul``);
* ``scipy_csr``    — ``scipy.sparse`` CSR (compiled; if scipy is installed);
* ``torch_dense``, ``torch_csr`` — PyTorch dense and ``torch.sparse`` CSR (if torch is installed;
  one-thread run only, see ``main``);
* for the whole forward also ``model_dense`` (the pruned ``Sequential``, mask baked in) and
  ``model_for_inference`` (``sparse_linear.for_inference`` of it, which picks dense, compact or ELL
  per layer and batch by the measured rule ``choose_kernel``).

The weights are the cached dense lenet300 (Fashion-MNIST) pruned by magnitude layer by layer to
each sparsity, so the pattern is that of a trained net (dead border pixels), not random.
Then the check of the library's rule: the cached lenet300 pruned to 98 % by magnitude, its forward
as a masked model, as a pruned dense model (mask baked in), and through
``sparse_linear.for_inference`` (which picks ELL or dense per layer), at batch 1 and 256.

    python benchmarks/sparse_crossover.py --threads 1    # then --threads 2
    python benchmarks/sparse_crossover.py --figure       # only redraw the figure from the results
    python benchmarks/sparse_crossover.py --summary --threads 1   # the results as a markdown table
writes benchmarks/results/sparse_crossover.json (one entry per thread count) and
figures/sparse_crossover.png.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path


def _threads_from_argv():
    """The thread count must be in the environment before numpy (OpenBLAS) is imported."""
    for i, a in enumerate(sys.argv):
        if a == "--threads" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return "1"


os.environ["OPENBLAS_NUM_THREADS"] = _threads_from_argv()

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from common import RESULTS, dense_model, update_result  # noqa: E402
from speed import blas_info  # noqa: E402

from minicompress.nn.sparse_linear import (  # noqa: E402
    choose_kernel, compact_form, compact_matmul, ell_form, ell_matmul, for_inference)
from minicompress.prune import prune_by_score, remove  # noqa: E402

SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
BATCHES = (1, 64, 256)
LAYERS = ("fc1", "fc2", "fc3")
FIGURE = HERE.parent / "figures" / "sparse_crossover.png"


# ---- the NumPy sparse forms (benchmark-only, except ell_t which is the library's) ----------------
def csr_parts(w):
    """CSR of w: columns and values row by row, the start of each non-empty row, those rows."""
    rows, cols = np.nonzero(w)
    counts = np.bincount(rows, minlength=w.shape[0])
    live = np.flatnonzero(counts)
    starts = (np.cumsum(counts) - counts)[live]
    return cols, w[rows, cols].astype(np.float32), starts, live


def csr_reduceat(parts, x, out):
    cols, vals, starts, live = parts
    y = np.zeros((x.shape[0], out), np.float32)
    if len(cols):
        y[:, live] = np.add.reduceat(x[:, cols] * vals, starts, axis=1)
    return y


def ell_on_x(form, x):
    return np.einsum("nok,ok->no", x[:, form.cols], form.vals)


def layer_kernels(w, b, torch=None, scipy_sparse=None):
    """{kernel name: f(x) -> x W_effᵀ + b} for one weight."""
    out = w.shape[0]
    csr, ell, cp = csr_parts(w), ell_form(w), compact_form(w)
    k = {"numpy_dense": lambda x: x @ w.T + b,
         "csr_reduceat": lambda x: csr_reduceat(csr, x, out) + b,
         "ell": lambda x: ell_on_x(ell, x) + b,
         "ell_t": lambda x: ell_matmul(ell, x) + b,
         "compact": lambda x: compact_matmul(cp, x) + b}
    if scipy_sparse is not None:
        s = scipy_sparse.csr_matrix(w)
        k["scipy_csr"] = lambda x: (s @ x.T).T + b
    if torch is not None:
        tw, tb = torch.from_numpy(w), torch.from_numpy(b)
        with warnings.catch_warnings():     # "sparse CSR support is in beta state"
            warnings.simplefilter("ignore")
            ts = tw.to_sparse_csr()
        tb_col = tb[:, None]
        k["torch_dense"] = lambda x: torch.nn.functional.linear(x, tw, tb)
        k["torch_csr"] = lambda x: torch.addmm(tb_col, ts, x.t()).t()   # (sparse W) xᵀ + b
    return k


def net_kernels(layers, torch=None, scipy_sparse=None):
    """The whole forward fc1-ReLU-fc2-ReLU-fc3 with each layer run by the same kernel."""
    per = [layer_kernels(w, b, torch, scipy_sparse) for w, b in layers]
    relu = {"torch": (lambda y: torch.relu(y)) if torch is not None else None,
            "numpy": lambda y: np.maximum(y, 0)}

    def chain(name):
        fs = [p[name] for p in per]
        r = relu["torch" if name.startswith("torch") else "numpy"]

        def run(x):
            x = r(fs[0](x))
            x = r(fs[1](x))
            return fs[2](x)
        return run
    return {name: chain(name) for name in per[0]}


def time_interleaved(kernels, inputs, rounds, clock=time.process_time, target_s=0.002,
                     slow_s=0.05, slow_rounds=3):
    """Median seconds per call of each kernel and the median of its per-round ratio to
    ``numpy_dense`` (that round's). Each round: for every kernel one untimed warm-up call, then n
    calls timed (n fixed beforehand so that a sample lasts about ``target_s``). A kernel slower
    than ``slow_s`` per call (10-1000x dense: the verdict is not in doubt) is timed in the first
    ``slow_rounds`` rounds only, one call each and no warm-up, to keep the run short.

    ``clock``: ``time.process_time`` (CPU time of this process) with one thread — it does not
    count the time other jobs held the core, which on this shared machine is most of the wall
    time — and ``time.perf_counter`` (wall) with two threads, where CPU time would add both."""
    number, slow = {}, set()
    for name, f in kernels.items():
        x = inputs[name]
        f(x)
        t0 = clock()
        f(x)
        dt = clock() - t0
        number[name] = max(1, int(target_s / max(dt, 1e-6)))
        if dt > slow_s and name != "numpy_dense":
            slow.add(name)
    samples = {name: [] for name in kernels}
    for r in range(rounds):
        for name, f in kernels.items():
            if name in slow and r >= slow_rounds:
                continue
            x = inputs[name]
            if name not in slow:
                f(x)
            t0 = clock()
            for _ in range(number[name]):
                f(x)
            samples[name].append((clock() - t0) / number[name])
    base = np.array(samples["numpy_dense"])
    return {name: {"median_us": float(np.median(s) * 1e6),
                   "ratio_to_numpy_dense": float(np.median(np.array(s) / base[:len(s)])),
                   "rounds": len(s)}
            for name, s in samples.items()}


def pruned_model(dense, sparsity):
    """A copy of the dense model magnitude-pruned layer by layer to ``sparsity``, mask baked in."""
    import copy
    m = copy.deepcopy(dense)
    prune_by_score(m, sparsity, "magnitude", scope="layer")
    return remove(m).eval()


def pruned_weights(dense, sparsity):
    """[(W_eff, b)] of the three layers, magnitude-pruned layer by layer to ``sparsity``."""
    m = pruned_model(dense, sparsity)
    return [(np.ascontiguousarray(m[n].weight.data), m[n].bias.data.copy()) for n in LAYERS]


def crossover_rows(dense, rounds, torch, scipy_sparse, clock):
    rng = np.random.default_rng(0)
    rows = []
    for s in SPARSITIES:
        model = pruned_model(dense, s)
        fast = for_inference(model)
        layers = [(np.ascontiguousarray(model[n].weight.data), model[n].bias.data.copy())
                  for n in LAYERS]
        for batch in BATCHES:
            x = rng.standard_normal((batch, 784)).astype(np.float32)
            for case in LAYERS + ("net",):
                if case == "net":
                    kernels, xin = net_kernels(layers, torch, scipy_sparse), x
                    kernels.update(model_dense=model.forward, model_for_inference=fast.forward)
                else:
                    w, b = layers[LAYERS.index(case)]
                    kernels = layer_kernels(w, b, torch, scipy_sparse)
                    xin = rng.standard_normal((batch, w.shape[1])).astype(np.float32)
                inputs = {n: (torch.from_numpy(xin) if n.startswith("torch") else xin)
                          for n in kernels}
                res = time_interleaved(kernels, inputs, rounds, clock)
                ws = layers if case == "net" else [layers[LAYERS.index(case)]]
                rows.append({"sparsity": s, "batch": batch, "case": case,
                             "ell_density": [round(float(ell_form(w).density), 5) for w, _ in ws],
                             "compact_density": [round(float(compact_form(w).density), 5)
                                                 for w, _ in ws],
                             "nnz": [int(np.count_nonzero(w)) for w, _ in ws], "kernels": res})
                if case == "net":
                    fast.forward(x)
                    rows[-1]["chosen"] = [fast[n].last_kernel for n in LAYERS]
            print(f"sparsity {s:.3f} batch {batch:3d}: net " + " ".join(
                f"{k}={v['ratio_to_numpy_dense']:.2f}" for k, v in rows[-1]["kernels"].items()),
                flush=True)
    return rows


def model_check(dense, rounds, clock):
    """The 98 %-sparse lenet300: masked, pruned dense, and for_inference, batch 1 and 256."""
    import copy
    masked = copy.deepcopy(dense)
    prune_by_score(masked, 0.98, "magnitude", scope="layer")
    pruned = remove(copy.deepcopy(masked))
    fast = for_inference(masked)
    rng = np.random.default_rng(1)
    out = {"alive_hidden": [int((pruned[n].weight.data != 0).any(axis=1).sum()) for n in ("fc1", "fc2")],
           "ell_density": {n: round(float(fast[n].ell.density), 5) for n in LAYERS},
           "compact_density": {n: round(float(fast[n].compact.density), 5) for n in LAYERS},
           "batches": {}}
    for batch in (1, 256):
        x = rng.standard_normal((batch, 784)).astype(np.float32)
        for m in (masked, pruned):
            m.eval()
        kernels = {"numpy_dense": pruned.forward, "masked": masked.forward,
                   "for_inference": fast.forward}
        res = time_interleaved(kernels, {k: x for k in kernels}, rounds, clock)
        fast.forward(x)
        res["kernels_chosen"] = {n: fast[n].last_kernel for n in LAYERS}
        res["max_abs_diff_vs_dense"] = float(np.abs(fast.forward(x) - pruned.forward(x)).max())
        out["batches"][str(batch)] = res
        print(f"98 % lenet300 batch {batch}: " + ", ".join(
            f"{k} {v['median_us']:.0f} µs ({v['ratio_to_numpy_dense']:.2f}x)"
            for k, v in res.items() if isinstance(v, dict) and "median_us" in v)
              + f", kernels {res['kernels_chosen']}", flush=True)
    return out


# ---- figure --------------------------------------------------------------------------------------
STYLE = {"model_dense": ("0.5", "-"), "model_for_inference": ("m", "-"), "numpy_dense": ("k", "-"), "csr_reduceat": ("C1", "--"), "ell": ("C2", "--"),
         "ell_t": ("C3", "-"), "compact": ("C4", "--"), "scipy_csr": ("C5", ":"),
         "torch_dense": ("C0", ":"), "torch_csr": ("C9", "-.")}


def draw_figure(results, path=FIGURE, threads="1", case="net"):
    """Time / NumPy-dense time against sparsity, one panel per batch size (log y)."""
    from matplotlib.figure import Figure
    entry = results[f"threads_{threads}"]
    fig = Figure(figsize=(13, 4.2))
    axes = fig.subplots(1, len(BATCHES), sharey=True)
    for ax, batch in zip(axes, BATCHES):
        rows = [r for r in entry["rows"] if r["batch"] == batch and r["case"] == case]
        xs = [100 * r["sparsity"] for r in rows]
        pos = np.arange(len(xs))
        for name in rows[0]["kernels"]:
            color, ls = STYLE.get(name, ("0.5", "-"))
            ax.plot(pos, [r["kernels"][name]["ratio_to_numpy_dense"] for r in rows], ls,
                    color=color, marker="o", ms=3, label=name)
        ax.axhline(1.0, color="0.6", lw=0.8)
        ax.set_yscale("log")
        ax.set_xticks(pos, [f"{v:g}" for v in xs], fontsize=8)
        ax.set_xlabel("sparsity of every layer (%)")
        ax.set_title(f"batch {batch}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("time / NumPy dense time (log; < 1 is faster)")
    axes[-1].legend(fontsize=8, loc="upper right")
    fig.suptitle(f"lenet300 forward (784-300-100-10, ReLU), {threads} thread(s): "
                 "sparse kernels vs dense float32")
    fig.tight_layout()
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")
    return path


NUMPY_SPARSE = ("csr_reduceat", "ell", "ell_t", "compact")


def summary(results, threads="1"):
    """Markdown table of the whole forward: per batch and sparsity, the best NumPy sparse form and
    its ratio, the compiled CSR kernels, and for_inference against the pruned model it came from."""
    entry = results[f"threads_{threads}"]
    lines = ["| sparsity | batch | best NumPy sparse form | scipy CSR | torch CSR | torch dense | "
             "for_inference / pruned model (kernels) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in entry["rows"]:
        if r["case"] != "net":
            continue
        k = r["kernels"]
        best = min(NUMPY_SPARSE, key=lambda n: k[n]["ratio_to_numpy_dense"])

        def ratio(n):
            return f"{k[n]['ratio_to_numpy_dense']:.2f}" if n in k else "—"
        # both are medians of per-round ratios to the same numpy_dense: steadier than µs / µs
        fi = k["model_for_inference"]["ratio_to_numpy_dense"] / k["model_dense"]["ratio_to_numpy_dense"]
        lines.append(f"| {100 * r['sparsity']:g} % | {r['batch']} | {best} {ratio(best)} | "
                     f"{ratio('scipy_csr')} | {ratio('torch_csr')} | {ratio('torch_dense')} | "
                     f"{fi:.2f} ({', '.join(r.get('chosen', []))}) |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, choices=(1, 2), default=1)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--figure", action="store_true", help="only redraw the figure")
    ap.add_argument("--summary", action="store_true",
                    help="only print the results of --threads as a markdown table")
    args = ap.parse_args()
    import json
    path = RESULTS / "sparse_crossover.json"
    if args.figure or args.summary:
        if not path.exists():
            sys.exit(f"error: {path} does not exist; run the benchmark first")
        results = json.loads(path.read_text())
        if args.summary:
            if f"threads_{args.threads}" not in results:
                sys.exit(f"error: {path} has no run with --threads {args.threads}")
            print(summary(results, str(args.threads)))
        else:
            draw_figure(results)
        return
    torch = None
    if args.threads == 1:
        # With two threads PyTorch is left out: OpenBLAS's worker threads keep spinning ~0.1 s
        # after each NumPy call and take the second core from PyTorch's threads when the two are
        # interleaved in one process (a first two-thread run here measured torch at 500-5000x
        # NumPy dense, which says nothing about either).
        try:
            import torch
            torch.set_num_threads(1)
        except ImportError:
            torch = None
    try:
        import scipy.sparse as scipy_sparse
    except ImportError:
        scipy_sparse = None
    dense = dense_model("lenet300")
    clock = time.process_time if args.threads == 1 else time.perf_counter
    rows = crossover_rows(dense, args.rounds, torch, scipy_sparse, clock)
    check = model_check(dense, args.rounds, clock)
    rule = {f"batch {b}, ell density {d}, compact density {c}": choose_kernel(d, b, (300, 784), c)
            for b in BATCHES for d in (0.01, 0.02, 0.04, 0.1) for c in (0.5, 1.0)}
    update_result("sparse_crossover", f"threads_{args.threads}", {
        "rows": rows, "model_check_98": check, "rounds": args.rounds, "blas": blas_info(),
        "torch": None if torch is None else {"version": torch.__version__,
                                             "threads": torch.get_num_threads()},
        "rule_at_the_time": rule, "clock": clock.__name__,
        "note": "median over interleaved rounds; ratio = median of per-round time / numpy_dense "
                "time; weights: cached lenet300 magnitude-pruned layer by layer"})
    if args.threads == 1:       # the figure shows the one-thread run (see docs/RESULTS.md)
        draw_figure(json.loads(path.read_text()))


if __name__ == "__main__":
    main()
