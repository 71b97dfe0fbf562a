"""The combined pipeline: distill → prune → quantize → one small file (document §1, §2.2).

The document's point is that the three techniques are used together, each driven by Adam:

1. **teacher** — train (or load) a large network T;
2. **distill** (§3.3) — train a smaller student S of another architecture on
   α·L_soft + (1 − α)·CE, the teacher's logits computed once for the training set;
3. **prune** (§3.1) — Adam-learned mask on S, with the *distillation loss* as the task loss;
4. **quantize** (§3.2) — fake quantizers on weights and activations, Δ (and the weights) learned
   by Adam, again against the distillation loss (QAT);
5. **export** — convert to the integer model and write one ``.npz`` artifact (``artifact.py``).

Every stage records accuracy, parameters, non-zeros, MACs, bytes and latency; any stage can be
skipped (``null`` in the recipe). Same recipe and seed → the same artifact, byte for byte.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from . import metrics, models, optim
from .data import load_dataset
from .distill import DistillationLoss, cosine_lr, fit_distill, teacher_logits
from .io import load_model, save_npz_atomic
from .nn import cross_entropy
from .prune import learned_mask_prune
from .quantize import calibrate, convert, prepare, train_quantized
from .recipe import STAGES, validate
from .serialize import integer_model_size, load_integer_model, save_integer_model
from .train import evaluate, fit

LATENCY_BATCH = 256


def _log(progress, msg):
    if progress:
        print(msg, flush=True)


def _record(stage, model, accuracy, input_shape, x_latency, bytes_=None, seconds=0.0):
    """One row of the stage table (float models: bytes = sparse float32 storage)."""
    r = metrics.report(model, input_shape, x_latency, repeats=10)
    return {
        "stage": stage, "accuracy": float(accuracy), "parameters": int(r["parameters"]),
        "nonzeros": int(r["nonzeros"]), "macs": int(r["macs"]), "sparse_macs": int(r["sparse_macs"]),
        "bytes": int(bytes_ if bytes_ is not None else r["sparse_bytes"]),
        "dense_float32_bytes": int(r["dense_bytes"]),
        "latency_ms": 1e3 * float(r["latency_s"]), "seconds": float(seconds),
    }


def _integer_latency(im, x, repeats=10):
    im.forward(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        im.forward(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _distillation_by_index(kd, y_train):
    """A ``loss_fn(logits, idx)`` for loops whose 'labels' are training-set indices: the batch's
    true labels and teacher logits are looked up by index (the teacher never runs again)."""
    def loss_fn(logits, idx):
        return kd.loss_fn(idx)(logits, y_train[idx])
    return loss_fn


def run(recipe, *, out=None, report=None, progress=True):
    """Run a recipe (dict); write the artifact to ``out`` and the JSON report to ``report``.

    Returns the report dict: the full recipe, the stage table and the artifact's path/size.
    """
    recipe = validate(recipe)
    seed, bs = recipe["seed"], recipe["batch_size"]
    (xtr, ytr), (xte, yte) = load_dataset(recipe["dataset"])
    size = xtr.shape[-1]
    input_shape = xtr.shape[1:]
    x_lat = xte[:LATENCY_BATCH]
    rng = np.random.default_rng(seed)
    rows, subject, kd = [], None, None
    index = np.arange(len(xtr))

    # 1. teacher ---------------------------------------------------------------------------------
    t = recipe["teacher"]
    teacher = None
    if not t["skip"]:
        t0 = time.perf_counter()
        teacher = models.build(t["model"], size, rng=np.random.default_rng(seed))
        if t["checkpoint"]:
            load_model(teacher, t["checkpoint"])
            _log(progress, f"[teacher] loaded {t['checkpoint']}")
        else:
            fit(teacher, optim.Adam(teacher.parameters(), lr=t["lr"]), (xtr, ytr),
                epochs=int(t["epochs"]), batch_size=bs, rng=rng, progress=progress, desc="teacher")
        acc = evaluate(teacher, xte, yte)["accuracy"]
        rows.append(_record("teacher", teacher, acc, input_shape, x_lat, seconds=time.perf_counter() - t0))
        _log(progress, f"[teacher] test accuracy {acc:.4f}")
        subject = teacher

    # 2. distill ---------------------------------------------------------------------------------
    d = recipe["distill"]
    if not d["skip"]:
        if teacher is None:
            raise ValueError("pipeline: the 'distill' stage needs the 'teacher' stage")
        t0 = time.perf_counter()
        kwargs = {"hidden": int(d["hidden"])} if d["model"] == "student" else {}
        student = models.build(d["model"], size, rng=np.random.default_rng(seed + 1), **kwargs)
        z_t = teacher_logits(teacher, xtr)
        kd = DistillationLoss(d["temperature"], d["alpha"], teacher_logits=z_t)
        opt = optim.Adam(student.parameters(), lr=d["lr"])
        steps = int(d["epochs"]) * -(-len(xtr) // bs)
        on_step = cosine_lr(opt, d["lr"], steps) if d["lr_schedule"] == "cosine" else None
        fit_distill(student, opt, (xtr, ytr), kd, epochs=int(d["epochs"]), batch_size=bs,
                    rng=rng, on_step=on_step, progress=progress)
        acc = evaluate(student, xte, yte)["accuracy"]
        rows.append(_record("distill", student, acc, input_shape, x_lat, seconds=time.perf_counter() - t0))
        _log(progress, f"[distill] student test accuracy {acc:.4f}")
        subject = student
    if subject is None:
        raise ValueError("pipeline: nothing to compress — the 'teacher' stage is skipped")

    def task_loss(stage):
        """Distillation loss by index when there is a teacher, else cross-entropy."""
        s = recipe[stage]
        if teacher is None:
            return (lambda logits, idx: cross_entropy(logits, ytr[idx]))
        stage_kd = DistillationLoss(s["temperature"], s["alpha"],
                                    teacher_logits=kd.teacher_logits if kd else teacher_logits(teacher, xtr))
        return _distillation_by_index(stage_kd, ytr)

    # 3. prune -----------------------------------------------------------------------------------
    p = recipe["prune"]
    if not p["skip"]:
        t0 = time.perf_counter()
        learned_mask_prune(subject, (xtr, index), p["sparsity"], int(p["epochs"]), rng=rng,
                           loss_fn=task_loss("prune"), lr=p["lr"], batch_size=bs, progress=progress)
        acc = evaluate(subject, xte, yte)["accuracy"]
        rows.append(_record("prune", subject, acc, input_shape, x_lat, seconds=time.perf_counter() - t0))
        _log(progress, f"[prune] sparsity {p['sparsity']:.2f}, test accuracy {acc:.4f}")

    # 4. quantize --------------------------------------------------------------------------------
    q = recipe["quantize"]
    integer = None
    if not q["skip"]:
        t0 = time.perf_counter()
        prepare(subject, q["weight_bits"], q["activation_bits"], per_channel=q["per_channel"],
                input_kind="auto", example_input=xtr[:1000], rng=np.random.default_rng(seed + 2))
        calibrate(subject, xtr[:1000])
        if q["epochs"]:
            train_quantized(subject, (xtr, index), epochs=int(q["epochs"]), lr_quant=q["lr_delta"],
                            lr_weights=q["lr"], batch_size=bs, rng=rng, loss_fn=task_loss("quantize"),
                            progress=progress)
        acc = evaluate(subject, xte, yte)["accuracy"]
        integer = convert(subject)
        rows.append(_record("quantize", subject, acc, input_shape, x_lat,
                            bytes_=integer_model_size(integer), seconds=time.perf_counter() - t0))
        _log(progress, f"[quantize] W{q['weight_bits']}A{q['activation_bits']} fake-quant test accuracy {acc:.4f}")

    # 5. export ----------------------------------------------------------------------------------
    result = {"recipe": recipe, "stages": rows}
    if not recipe["export"]["skip"]:
        t0 = time.perf_counter()
        path = Path(out) if out else Path("model.npz")
        save_integer_model(integer, path, meta={"dataset": recipe["dataset"], "seed": seed})
        reloaded = load_integer_model(path)  # evaluate what is *in the file*
        acc = float((reloaded.predict(xte) == yte).mean())
        nbytes = path.stat().st_size
        last = dict(rows[-1])
        last.update(stage="export", accuracy=acc, bytes=int(nbytes),
                    latency_ms=1e3 * _integer_latency(reloaded, x_lat),
                    seconds=time.perf_counter() - t0)
        rows.append(last)
        result["artifact"] = {"path": str(path), "bytes": int(nbytes), "accuracy": acc}
        _log(progress, f"[export] {path}: {nbytes} bytes, integer-model test accuracy {acc:.4f}")
    if report:
        rp = Path(report)
        rp.parent.mkdir(parents=True, exist_ok=True)
        tmp = rp.with_name(rp.name + ".part")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(rp)
    return result


def format_table(rows, reference_bytes=None):
    """The stage table for people (one line per stage)."""
    head = (f"{'stage':<9} {'accuracy':>8} {'params':>9} {'nonzero':>9} {'MACs':>10} "
            f"{'bytes':>10} {'ratio':>7} {'latency':>9}")
    lines = [head, "-" * len(head)]
    ref = reference_bytes or (rows[0]["dense_float32_bytes"] if rows else 1)
    for r in rows:
        lines.append(f"{r['stage']:<9} {100 * r['accuracy']:7.2f}% {r['parameters']:>9,} "
                     f"{r['nonzeros']:>9,} {r['sparse_macs']:>10,} {r['bytes']:>10,} "
                     f"{ref / max(r['bytes'], 1):6.1f}x {r['latency_ms']:7.2f}ms")
    return "\n".join(lines)


__all__ = ["STAGES", "format_table", "run"]
