"""Shared helpers for the benchmark scripts: data, the dense reference models, result files.

The dense nets (10 epochs, Adam 1e-3, batch 128, normalised inputs) are
trained once and cached in ``~/.cache/minicompress/checkpoints`` so that every pruning,
quantization and distillation benchmark starts from the same weights.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

# One BLAS thread unless the caller says otherwise. On this shared 2-core machine (several jobs at
# once) OpenBLAS's spinning worker threads made a lenet300 training step ~30x slower with 2
# threads than with 1 (202 ms vs 6.7 ms, benchmarks/speed.py, load average ~10). Must be set before
# numpy is imported; ``OPENBLAS_NUM_THREADS=2 python benchmarks/...`` still overrides it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minicompress import models, optim  # noqa: E402
from minicompress.data import cache_dir, load_dataset  # noqa: E402
from minicompress.io import load_model, save_model  # noqa: E402
from minicompress.train import CosineLR, TrainConfig, evaluate, fit  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def fashion():
    """Normalised Fashion-MNIST: ((x_train, y_train), (x_test, y_test))."""
    return load_dataset("fashion-mnist")


def dense_model(name, *, epochs=10, seed=0, data=None, progress=True, cosine_lr=None, workers=1):
    """The dense reference net ``name`` trained ``epochs`` epochs (cached on disk).

    Adam 1e-3 by default; ``cosine_lr=2e-3`` trains with a cosine schedule
    from that rate instead (a separate checkpoint). ``workers=2`` splits each batch across two
    threads (faster; equal to one thread up to float rounding)."""
    tag = "" if cosine_lr is None else f"_cos{cosine_lr:g}"
    path = cache_dir() / "checkpoints" / f"{name}_fashion_e{epochs}_s{seed}{tag}.npz"
    model = models.build(name, 28, rng=np.random.default_rng(seed))
    if path.exists():
        return load_model(model, path)
    (xtr, ytr), (xte, yte) = data or fashion()
    rng = np.random.default_rng(seed + 1000)
    t0 = time.perf_counter()
    opt = optim.Adam(model.parameters(), lr=1e-3 if cosine_lr is None else cosine_lr)
    config = TrainConfig(epochs, rng, batch_size=128, workers=workers, progress=progress, desc=name)
    hooks = [] if cosine_lr is None else [CosineLR(config.total_steps(len(xtr)))]
    fit(model, opt, (xtr, ytr), config, hooks=hooks)
    acc = evaluate(model, xte, yte)["accuracy"]
    print(f"{name}: trained {epochs} epochs in {time.perf_counter() - t0:.0f}s, "
          f"test accuracy {acc:.4f}", flush=True)
    save_model(model, path)
    return model


def _git_commit():
    """The commit the numbers were measured on ('+dirty' when the tree had local changes)."""
    import subprocess
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                              capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               text=True, capture_output=True, check=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def blas_info():
    """The BLAS library numpy calls, its kernel (e.g. SkylakeX, Haswell) and thread count, via
    threadpoolctl (None when it is not installed)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return [{k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for d in threadpool_info() if d.get("user_api") == "blas"]


def _machine():
    """Where and with what the numbers were measured: cores, date, commit, BLAS threads."""
    return {"cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d"), "commit": _git_commit(),
            "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS")}


def _write_json(path, payload):
    """Write ``payload`` to ``path`` atomically: a temporary file in the same folder, then rename,
    so an interrupted run never leaves half a results file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps(payload, indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_result(name, payload):
    """Write ``benchmarks/results/<name>.json`` (the numbers quoted in docs/RESULTS.md).

    ``name`` is the benchmark script's name, or ``<script>_<net>`` for a script run once per
    network: one current file per measurement, its history in git."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    _write_json(path, dict(payload, machine=_machine()))
    print(f"wrote {path}")
    return path


def update_result(name, key, payload, *, merge=False):
    """Put ``payload`` (with its own machine record) under ``key`` of ``results/<name>.json``,
    keeping the file's other keys: for a script whose runs differ by one argument (a seed, a
    thread count) and belong in its one results file. ``merge=True`` keeps the entries of the old
    ``key`` that ``payload`` does not replace (a run of some of the models)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    old = data.get(key, {}) if merge else {}
    data[key] = {**old, **payload, "machine": _machine()}
    _write_json(path, data)
    print(f"wrote {path} [{key}]")
    return path


def torch_model(name, input_size=28, num_classes=10):
    """The same network in PyTorch (oracle / speed reference only; torch is not a dependency).

    Child names match ours, so ``{k: v.numpy()}`` of its state dict loads into
    ``models.build(name)`` and the reverse.
    """
    import torch.nn as tnn
    from collections import OrderedDict
    side = (input_size // 2) // 2
    if name == "lenet300":
        layers = [("flatten", tnn.Flatten()), ("fc1", tnn.Linear(input_size ** 2, 300)),
                  ("relu1", tnn.ReLU()), ("fc2", tnn.Linear(300, 100)), ("relu2", tnn.ReLU()),
                  ("fc3", tnn.Linear(100, num_classes))]
    elif name == "lenet5":
        if input_size < 16:
            raise ValueError("torch_model: the lenet5 oracle is built for 28x28 inputs")
        layers = [("conv1", tnn.Conv2d(1, 6, 5, padding=2)), ("relu1", tnn.ReLU()),
                  ("pool1", tnn.MaxPool2d(2)), ("conv2", tnn.Conv2d(6, 16, 5)), ("relu2", tnn.ReLU()),
                  ("pool2", tnn.MaxPool2d(2)), ("flatten", tnn.Flatten()),
                  ("fc1", tnn.Linear(16 * (((input_size // 2) - 4) // 2) ** 2, 120)),
                  ("relu3", tnn.ReLU()), ("fc2", tnn.Linear(120, 84)), ("relu4", tnn.ReLU()),
                  ("fc3", tnn.Linear(84, num_classes))]
    elif name == "teacher":
        layers = [("conv1", tnn.Conv2d(1, 32, 3, padding=1)), ("relu1", tnn.ReLU()),
                  ("pool1", tnn.MaxPool2d(2)), ("conv2", tnn.Conv2d(32, 64, 3, padding=1)),
                  ("relu2", tnn.ReLU()), ("pool2", tnn.MaxPool2d(2)), ("flatten", tnn.Flatten()),
                  ("fc1", tnn.Linear(64 * side * side, 256)), ("relu3", tnn.ReLU()),
                  ("fc2", tnn.Linear(256, num_classes))]
    elif name == "student":
        layers = [("flatten", tnn.Flatten()), ("fc1", tnn.Linear(input_size ** 2, 64)),
                  ("relu1", tnn.ReLU()), ("fc2", tnn.Linear(64, num_classes))]
    else:
        raise ValueError(f"torch_model: unknown model {name!r}")
    return tnn.Sequential(OrderedDict(layers))


def results_lock(name):
    """An exclusive lock on ``results/<name>.json`` for a read-modify-write (``with
    results_lock(name): ...``); the lock file lives in the temporary folder, not beside the
    results."""
    import fcntl
    import tempfile
    from contextlib import contextmanager

    @contextmanager
    def held():
        with open(Path(tempfile.gettempdir()) / f"minicompress-results-{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
    return held()


def locked_results(name):
    """``results/<name>.json`` as a dict (empty if absent), read and rewritten under
    :func:`results_lock`: ``with locked_results(name) as data: ...``."""
    from contextlib import contextmanager

    @contextmanager
    def held():
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"{name}.json"
        with results_lock(name):
            data = json.loads(path.read_text()) if path.exists() else {}
            yield data
            _write_json(path, data)
    return held()


def run_entries(data):
    """The entries of a results file that hold runs (those ``add_run`` made)."""
    return [e for e in data.values() if isinstance(e, dict) and "runs" in e]


def add_run(name, key, run, match, settings=None):
    """Add one ``run`` (a dict) to ``results/<name>.json`` under ``[key]["runs"]``, replacing an
    earlier run that agrees with it on the fields ``match`` (e.g. arm, seed); ``settings`` are
    stored beside the runs. The file is read and rewritten under :func:`results_lock`, so several
    processes (arms run in parallel) can add runs to the one results file of a script."""
    with locked_results(name) as data:
        entry = data.setdefault(key, {"runs": []})
        same = tuple(run[m] for m in match)
        entry["runs"] = [r for r in entry["runs"] if tuple(r.get(m) for m in match) != same]
        entry["runs"].append(run)
        entry.update(settings or {}, machine=_machine())
    return RESULTS / f"{name}.json"


def mean_std(values):
    """{"mean", "std" (population, ddof 0), "n", "values"} of a list of numbers."""
    import numpy as np
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std()), "n": len(v), "values": v.tolist()}


def load_seconds(path, repeats=5):
    """The fastest of ``repeats`` loads of an artifact file (seconds): the load is what varies."""
    from minicompress.serialize import load_integer_model
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        load_integer_model(path)
        best = min(best, time.perf_counter() - t0)
    return best


def prune_ratios(model, keep):
    """``{layer name: pruning ratio}`` that keeps exactly ``keep[name]`` filters (or units) of each
    named layer: kept_count(out, (out − k)/out) == k."""
    from minicompress.nn import Conv2d
    ratios = {}
    for name, k in keep.items():
        layer = model[name]
        out = layer.out_channels if isinstance(layer, Conv2d) else layer.out_features
        ratios[name] = (out - k) / out
    return ratios
