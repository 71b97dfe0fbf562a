"""The combined pipeline: distill → prune → quantize → one small file (document §1, §2.2).

The document's point is that the three techniques are used together, each driven by Adam:

1. **teacher** — train (or load) a large network T;
2. **distill** (§3.3) — train a smaller student S of another architecture on
   α·L_soft + (1 − α)·CE, the teacher's logits computed once for the training set;
3. **prune** (§3.1) — Adam-learned mask on S, with the *distillation loss* as the task loss;
4. **quantize** (§3.2) — fake quantizers on weights and activations, Δ and the weights learned
   by Adam, again against the distillation loss (QAT);
5. **export** — convert to the integer model and write one ``.npz`` artifact (``artifact.py``).

Each stage is a function of a :class:`PipelineRun` (the data, the models so far and the stage
table), so a notebook can run them one at a time; :func:`run` runs the whole recipe. Every stage
records accuracy, parameters, non-zeros, MACs, bytes and latency; any stage can be skipped
(``null`` in the recipe). Same recipe and seed → the same artifact, byte for byte.
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np

from . import metrics, models, optim
from .data import load_dataset, standardization
from .distill import DistillationLoss, fit_distill, teacher_logits
from .io import atomic_write, load_model
from .nn import cross_entropy
from .prune import MaskPruning, learned_mask_prune
from .quantize import calibrate, convert, prepare, train_quantized
from .recipe import STAGES, check_feasible, validate
from .serialize import input_spec, integer_model_size, load_integer_model, save_integer_model
from .train import CosineLR, TrainConfig, evaluate, fit

LATENCY_BATCH = 256


class PipelineRun:
    """State shared by the stages: data, teacher, the model being compressed, the stage table."""

    def __init__(self, recipe, *, progress=True, data=None):
        self.recipe = validate(recipe)
        self.progress = progress
        self.seed, self.batch_size = self.recipe["seed"], self.recipe["batch_size"]
        (self.x_train, self.y_train), (self.x_test, self.y_test) = \
            data if data is not None else load_dataset(self.recipe["dataset"])
        self.input_size = self.x_train.shape[-1]
        check_feasible(self.recipe, self.input_size)  # checkpoint and bit widths, before training
        self.rng = np.random.default_rng(self.seed)
        self.teacher = self.subject = self.z_teacher = self.integer = None
        self.rows = []
        self.artifact = None

    def log(self, msg):
        if self.progress:
            print(msg, flush=True)

    def evaluate(self, model=None):
        return evaluate(model or self.subject, self.x_test, self.y_test)["accuracy"]

    def record(self, stage, accuracy, seconds, bytes_=None, latency_s=None):
        """Append one row of the stage table (float stages: bytes of sparse float32 storage)."""
        model = self.subject
        r = metrics.report(model, self.x_train.shape[1:], self.x_test[:LATENCY_BATCH], repeats=10)
        row = {
            "stage": stage, "accuracy": float(accuracy), "parameters": int(r["parameters"]),
            "nonzeros": int(r["nonzeros"]), "macs": int(r["macs"]),
            "sparse_macs": int(r["sparse_macs"]),
            "bytes": int(bytes_ if bytes_ is not None else r["sparse_bytes"]),
            "dense_float32_bytes": int(r["dense_bytes"]),
            "latency_ms": 1e3 * float(latency_s if latency_s is not None else r["latency_s"]),
            "seconds": float(seconds),
        }
        self.rows.append(row)
        return row

    def task_loss(self, stage):
        """The stage's task loss: the distillation loss with the stage's T and α when there is a
        teacher (its logits looked up by each batch's training-set indices), else cross-entropy."""
        if self.teacher is None:
            return cross_entropy
        s = self.recipe[stage]
        return DistillationLoss(s["temperature"], s["alpha"], teacher_logits=self.teacher_logits())

    def train_config(self, stage, epochs):
        """The stage's loop: ``epochs`` passes in batches of the recipe's size, shuffled by the run's rng."""
        return TrainConfig(int(epochs), self.rng, batch_size=self.batch_size,
                           progress=self.progress, desc=stage)

    @property
    def train_data(self):
        return self.x_train, self.y_train

    def take_subject(self):
        """The model the stage may change. When the teacher itself is being compressed (no
        'distill' stage) it is copied first: the teacher must stay the frozen, dense source of
        the soft targets."""
        if self.subject is self.teacher:
            self.subject = copy.deepcopy(self.teacher)
            for p in self.subject.parameters():
                p.requires_grad = True
        return self.subject

    def teacher_logits(self):
        if self.z_teacher is None:
            self.z_teacher = teacher_logits(self.teacher, self.x_train)
        return self.z_teacher

    def input_spec(self):
        """Per-image shape and the (mean, std) the data set is standardised with."""
        return input_spec(self.x_train.shape[1:], *standardization(self.recipe["dataset"]))

    def meta(self):
        """What the artifact says about itself (``evaluate`` finds its data set here)."""
        return {"dataset": self.recipe["dataset"], "seed": self.seed}

    def result(self):
        out = {"recipe": self.recipe, "stages": self.rows}
        if self.artifact:
            out["artifact"] = self.artifact
        return out


def stage_teacher(r: PipelineRun):
    """Train the teacher (or load ``teacher.checkpoint``)."""
    t, t0 = r.recipe["teacher"], time.perf_counter()
    r.teacher = models.build(t["model"], r.input_size, rng=np.random.default_rng(r.seed))
    if t["checkpoint"]:
        load_model(r.teacher, t["checkpoint"])
        r.log(f"[teacher] loaded {t['checkpoint']}")
    else:
        fit(r.teacher, optim.Adam(r.teacher.parameters(), lr=t["lr"]), r.train_data,
            r.train_config("teacher", t["epochs"]))
    r.subject = r.teacher
    acc = r.evaluate()
    r.log(f"[teacher] test accuracy {acc:.4f}")
    return r.record("teacher", acc, time.perf_counter() - t0)


def stage_distill(r: PipelineRun):
    """§3.3: a student of another architecture learns from the teacher's soft targets."""
    if r.teacher is None:
        raise ValueError("pipeline: the 'distill' stage needs the 'teacher' stage")
    d, t0 = r.recipe["distill"], time.perf_counter()
    kwargs = {"hidden": int(d["hidden"])} if d["model"] == "student" else {}
    student = models.build(d["model"], r.input_size, rng=np.random.default_rng(r.seed + 1), **kwargs)
    config = r.train_config("distill", d["epochs"])
    hooks = [CosineLR(config.total_steps(len(r.x_train)))] if d["lr_schedule"] == "cosine" else []
    fit_distill(student, r.train_data, r.task_loss("distill"), config, lr=d["lr"], hooks=hooks)
    r.subject = student
    acc = r.evaluate()
    r.log(f"[distill] student test accuracy {acc:.4f}")
    return r.record("distill", acc, time.perf_counter() - t0)


def stage_prune(r: PipelineRun):
    """§3.1: Adam-learned mask at exactly ``sparsity``, the distillation loss as task loss."""
    p, t0 = r.recipe["prune"], time.perf_counter()
    learned_mask_prune(r.take_subject(), r.train_data,
                       MaskPruning(p["sparsity"], lr=p["lr"], score_lr=p["score_lr"]),
                       r.train_config("prune", p["epochs"]), loss_fn=r.task_loss("prune"))
    acc = r.evaluate()
    r.log(f"[prune] sparsity {p['sparsity']:.3f}, test accuracy {acc:.4f}")
    return r.record("prune", acc, time.perf_counter() - t0)


def stage_quantize(r: PipelineRun):
    """§3.2: fake quantizers, Δ calibrated then learned by Adam with the weights (QAT)."""
    q, t0 = r.recipe["quantize"], time.perf_counter()
    prepare(r.take_subject(), q["weight_bits"], q["activation_bits"], per_channel=q["per_channel"],
            input_kind="auto", example_input=r.x_train[:1000],
            rng=np.random.default_rng(r.seed + 2))
    calibrate(r.subject, r.x_train[:1000])
    if q["epochs"]:
        train_quantized(r.subject, r.train_data, r.train_config("quantize", q["epochs"]),
                        lr_quant=q["lr_delta"], lr_weights=q["lr"], loss_fn=r.task_loss("quantize"))
    acc = r.evaluate()
    r.integer = convert(r.subject)
    r.integer.input = r.input_spec()   # the file records the input shape and standardisation
    r.log(f"[quantize] W{q['weight_bits']}A{q['activation_bits']} fake-quant test accuracy {acc:.4f}")
    return r.record("quantize", acc, time.perf_counter() - t0,
                    bytes_=integer_model_size(r.integer, r.meta()))


def stage_export(r: PipelineRun, out="model.npz"):
    """Write the integer model to one artifact and score what is *in the file*."""
    if r.integer is None:
        raise ValueError("pipeline: the 'export' stage needs the 'quantize' stage")
    t0 = time.perf_counter()
    path = Path(out)
    save_integer_model(r.integer, path, meta=r.meta())
    reloaded = load_integer_model(path)
    acc = float((reloaded.predict(r.x_test) == r.y_test).mean())
    nbytes = path.stat().st_size
    r.artifact = {"path": str(path), "bytes": int(nbytes), "accuracy": acc}
    r.log(f"[export] {path}: {nbytes} bytes, integer-model test accuracy {acc:.4f}")
    return r.record("export", acc, time.perf_counter() - t0, bytes_=nbytes,
                    latency_s=metrics.median_seconds(reloaded.forward, r.x_test[:LATENCY_BATCH], 10, 1))


STAGE_FUNCTIONS = {"teacher": stage_teacher, "distill": stage_distill, "prune": stage_prune,
                   "quantize": stage_quantize, "export": stage_export}


def run(recipe, *, out="model.npz", report=None, progress=True, data=None):
    """Run a whole recipe; write the artifact to ``out`` and the JSON report to ``report``.

    Returns the report dict: the full recipe, the stage table and the artifact's path/size/accuracy.
    """
    r = PipelineRun(recipe, progress=progress, data=data)
    for stage in STAGES:
        if r.recipe[stage]["skip"]:
            continue
        if stage == "export":
            stage_export(r, out)
        else:
            STAGE_FUNCTIONS[stage](r)  # with 'distill' skipped, the teacher itself is compressed
    if r.subject is None:
        raise ValueError("pipeline: nothing to compress — the 'teacher' stage is skipped")
    result = r.result()
    if report:
        with atomic_write(report) as f:    # durable, and no temporary file left on failure
            f.write((json.dumps(result, indent=2) + "\n").encode())
    return result


def format_table(rows):
    """The stage table for people; the ratio is against the first stage's dense float32 bytes."""
    head = (f"{'stage':<9} {'accuracy':>8} {'params':>9} {'nonzero':>9} {'MACs':>10} "
            f"{'bytes':>10} {'ratio':>7} {'latency':>9}")
    lines = [head, "-" * len(head)]
    ref = rows[0]["dense_float32_bytes"] if rows else 1
    for row in rows:
        lines.append(f"{row['stage']:<9} {100 * row['accuracy']:7.2f}% {row['parameters']:>9,} "
                     f"{row['nonzeros']:>9,} {row['sparse_macs']:>10,} {row['bytes']:>10,} "
                     f"{ref / max(row['bytes'], 1):6.1f}x {row['latency_ms']:7.2f}ms")
    return "\n".join(lines)


__all__ = ["PipelineRun", "STAGE_FUNCTIONS", "format_table", "run", "stage_distill",
           "stage_export", "stage_prune", "stage_quantize", "stage_teacher"]
