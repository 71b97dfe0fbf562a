"""Time per training step (forward + cross-entropy + backward + Adam) at batch 128.

    python benchmarks/speed.py [--rounds 5] [--steps 40] [--threads 2] [--models lenet300 lenet5 teacher]

For each net it measures, each in its own fresh process (their thread pools would otherwise
fight for the cores: OpenBLAS workers keep spinning ~0.1 s after a call):

* ``numpy``  — our step (``minicompress.train.train_step``), OpenBLAS on ``--threads`` threads;
* ``parallel`` — (``--threads`` > 1 only) our step with the batch split across ``--threads``
  Python threads, one BLAS thread each (``minicompress.parallel.DataParallelStep``, what
  ``TrainConfig(workers=2)`` runs). The headline NumPy time of a net is the faster of the two, and
  the table says which one it was;
* ``torch``  — the same net and step in PyTorch on ``--threads`` threads (when torch is installed);
* ``gemm``   — only the matrix products of our (full-batch) step, same shapes, BLAS on
  ``--threads`` threads: the "GEMM floor".
  step / GEMM says where the time goes: ~1 means all BLAS, 2 means as much again in copies,
  im2col/col2im, pooling, ReLU masks and Adam.

The three run one after another in ``--rounds`` rounds; each process first takes untimed warm-up
steps. Reported: the median ms/step over rounds and the median of the per-round ratios (the
machine is shared, so single numbers vary by 10-40 %), and the same for CPU time per step, which
does not count the time other jobs on the machine held the core (a fairer measure under load
with ``--threads 1``; with 2 threads it adds both threads' time, so use the wall clock there).
Results → ``benchmarks/results/speed.json``, under "threads_<n>" for ``--threads n``.
Targets: numpy/torch ≤ 1.0 (lenet300), ≤ 1.5 (lenet5), ≤ 1.25 (teacher).
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

TARGETS = {"lenet300": 1.0, "lenet5": 1.5, "teacher": 1.25}
BATCH = 128


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((BATCH, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, BATCH)
    return x, y


def _time_steps(step, steps, warmup):
    """Median wall-clock ms per step, and median CPU ms per step (all threads of the process).

    On a shared machine the wall clock also counts the time other jobs held the core; the CPU
    time does not. With one thread per side, CPU time is the fairer comparison under load."""
    for _ in range(warmup):
        step()
    wall, cpu = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return float(np.median(wall)) * 1000, float(np.median(cpu)) * 1000


def blas_info():
    """Which BLAS library, kernel ("architecture") and thread count numpy uses, via threadpoolctl
    when it is installed (it is not a dependency)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"note": "threadpoolctl not installed"}]
    keys = ("internal_api", "version", "architecture", "num_threads", "threading_layer")
    return [{k: info.get(k) for k in keys} for info in threadpool_info() if info.get("user_api") == "blas"]


def numpy_step(name, workers=1):
    from minicompress import models, optim
    from minicompress.parallel import DataParallelStep
    from minicompress.step import Batch, train_step
    x, y = _data()
    batch = Batch(x, y)
    model = models.build(name, 28, rng=np.random.default_rng(0))
    opt = optim.Adam(model.parameters(), lr=1e-3)
    if workers > 1:
        step = DataParallelStep(model, opt, workers=workers)
        return lambda: step(batch)
    return lambda: train_step(model, opt, batch)


def gemm_shapes(name):
    """The (m, k) @ (k, n) products of our training step for ``name``: per weighted layer the
    forward product, the weight-gradient product and (except the first layer) the input-gradient
    product, with the shapes our layers use."""
    from minicompress import models
    from minicompress.nn import Conv2d, Linear
    model = models.build(name, 28, rng=np.random.default_rng(0))
    shapes, x, first = [], _data()[0], True
    for m in model:
        if isinstance(m, Linear):
            n, i, o = x.shape[0], m.in_features, m.out_features
            shapes += [(n, i, o), (o, n, i)] + ([] if first else [(n, o, i)])
            first = False
        elif isinstance(m, Conv2d):
            _, oh, ow = m.output_shape(x.shape[2], x.shape[3])
            rows, kkc, o = x.shape[0] * oh * ow, m.kernel_size ** 2 * m.in_channels, m.out_channels
            shapes += [(rows, kkc, o), (o, rows, kkc)]
            if not first:  # k·k products (rows, O) @ (O, C), as the batched matmul does them
                shapes += [(rows, o, m.in_channels)] * m.kernel_size ** 2
            first = False
        x = m.forward(x)
    return shapes


def gemm_step(name):
    rng = np.random.default_rng(0)
    pairs = [(rng.standard_normal((a, b)).astype(np.float32), rng.standard_normal((b, c)).astype(np.float32))
             for a, b, c in gemm_shapes(name)]

    def step():
        for a, b in pairs:
            a @ b
    return step


def torch_step(name, threads):
    import torch
    from common import torch_model
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x, y = _data()
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    model = torch_model(name)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def worker(kind, name, steps, threads):
    if kind == "numpy":
        step = numpy_step(name)
    elif kind == "parallel":
        step = numpy_step(name, workers=threads)
    elif kind == "gemm":
        step = gemm_step(name)
    else:
        step = torch_step(name, threads)
    ms, cpu_ms = _time_steps(step, steps, warmup=max(5, steps // 5))
    extra = {"blas": blas_info()} if kind != "torch" else {}
    print(json.dumps({"ms": ms, "cpu_ms": cpu_ms, **extra}))


def run_worker(kind, name, steps, threads):
    env = dict(os.environ)
    # numpy's BLAS on `threads` threads; torch gets the same via torch.set_num_threads
    # (the data-parallel step runs `threads` Python threads with one BLAS thread each)
    blas_threads = 1 if kind == "parallel" else threads
    env.update(OPENBLAS_NUM_THREADS=str(blas_threads), OMP_NUM_THREADS=str(blas_threads),
               MKL_NUM_THREADS=str(blas_threads))
    out = subprocess.run([sys.executable, __file__, "--worker", kind, "--model", name,
                          "--steps", str(steps), "--threads", str(threads)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--worker", choices=["numpy", "parallel", "torch", "gemm"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.model, args.steps, args.threads)

    try:
        import torch  # noqa: F401
        kinds = ["numpy", "torch", "gemm"]
    except ImportError:
        kinds = ["numpy", "gemm"]
        print("torch not installed: timing NumPy and its GEMM floor only")
    if args.threads > 1:
        kinds.insert(1, "parallel")
    runs = {name: {k: [] for k in kinds} for name in args.models}
    cpu = {name: {k: [] for k in kinds} for name in args.models}
    blas = {}  # per kind: the data-parallel step runs BLAS on 1 thread, the others on --threads
    for r in range(args.rounds):
        for name in args.models:
            for kind in kinds:
                res = run_worker(kind, name, args.steps, args.threads)
                runs[name][kind].append(res["ms"])
                cpu[name][kind].append(res["cpu_ms"])
                if "blas" in res:
                    blas[kind] = res["blas"]
        print(f"round {r + 1}/{args.rounds}: " + "  ".join(
            f"{n} " + "/".join(f"{runs[n][k][-1]:.1f}" for k in kinds) for n in args.models), flush=True)

    print(f"\nBLAS: {blas}")
    print(f"batch {BATCH}, {args.threads} thread(s), median of {args.rounds} rounds "
          f"({args.steps} timed steps each)")
    print(f"{'net':9s} {'numpy ms':>9s} {'torch ms':>9s} {'gemm ms':>8s} {'np/torch':>9s} "
          f"{'target':>7s} {'np/gemm':>8s}")
    rows = {}
    for name in args.models:
        r = dict(runs[name])
        row = {k: float(np.median(v)) for k, v in r.items()}
        # headline: the faster of the one-thread step and the data-parallel step
        row["numpy_way"] = "numpy"
        if "parallel" in r:
            row["numpy_one_step"] = row["numpy"]
            if row["parallel"] < row["numpy"]:
                row["numpy_way"] = "parallel"
                r["numpy"], row["numpy"] = r["parallel"], row["parallel"]
            row["parallel_over_torch"] = (float(np.median(np.array(r["parallel"]) /
                                                          np.array(r["torch"])))
                                          if "torch" in r else None)
        row["numpy_over_gemm"] = float(np.median(np.array(r["numpy"]) / np.array(r["gemm"])))
        line = f"{name:9s} {row['numpy']:9.2f} "
        if "torch" in r:
            row["numpy_over_torch"] = float(np.median(np.array(r["numpy"]) / np.array(r["torch"])))
            row["target"] = TARGETS[name]
            row["met"] = row["numpy_over_torch"] <= TARGETS[name]
            line += f"{row['torch']:9.2f} {row['gemm']:8.2f} {row['numpy_over_torch']:9.2f} "
            line += f"{'≤' + str(TARGETS[name]):>7s} "
        else:
            line += f"{'-':>9s} {row['gemm']:8.2f} {'-':>9s} {'-':>7s} "
        line += f"{row['numpy_over_gemm']:8.2f}"
        if "parallel" in r:
            line += f"  ({'data-parallel' if row['numpy_way'] == 'parallel' else 'one step, BLAS threaded'}"
            line += f"; one step with BLAS threads {row['numpy_one_step']:.2f} ms, data-parallel {row['parallel']:.2f} ms)"
        c = dict(cpu[name])
        if row["numpy_way"] == "parallel":
            c["numpy"] = c["parallel"]
        row["cpu_ms"] = {k: float(np.median(v)) for k, v in c.items()}
        if "torch" in c:
            row["cpu_numpy_over_torch"] = float(np.median(np.array(c["numpy"]) / np.array(c["torch"])))
            line += f"   | CPU ms numpy {row['cpu_ms']['numpy']:.2f} torch {row['cpu_ms']['torch']:.2f} "
            line += f"ratio {row['cpu_numpy_over_torch']:.2f}"
        print(line)
        row["rounds"] = r
        row["cpu_rounds"] = c
        rows[name] = row
    load = os.getloadavg()[0]
    warning = None
    if load > (os.cpu_count() or 1):
        warning = (f"load average {load:.1f} on {os.cpu_count()} cores: other jobs share the CPU, "
                   f"wall-clock ratios are unreliable (with several BLAS threads badly so)")
        print("WARNING:", warning)
    if not args.no_save:
        from common import update_result
        update_result("speed", f"threads_{args.threads}", {"batch": BATCH, "threads": args.threads, "rounds": args.rounds,
                              "steps": args.steps, "blas": blas, "load_average": os.getloadavg(),
                              "warning": warning,
                              "nets": rows})


if __name__ == "__main__":
    main()
