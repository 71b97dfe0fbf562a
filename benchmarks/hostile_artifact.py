"""Loading hostile artifacts: time against the number of steps, and peak memory of
``python -m minicompress evaluate`` on files that declare far more than they hold.

    python benchmarks/hostile_artifact.py          # → benchmarks/results/hostile_artifact.json

Each hostile file carries a valid checksum. The Huffman cases (format version 3) start from the
same model with every weight Huffman coded: a code-length table that is over-subscribed, one
that is incomplete, a bitstream cut short, a byte after the last code, and a sparse tensor claiming every one of its
codes kept (more than its bytes can hold at 1 to 15 bits a code). Peak memory is the child process's ru_maxrss
(``resource.getrusage(RUSAGE_CHILDREN)``, one child per file), so it includes the ~60 MB of
Python and NumPy themselves; the valid file is the baseline.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.common import load_seconds  # noqa: E402
from minicompress import models  # noqa: E402
from minicompress import huffman  # noqa: E402
from minicompress.artifact import (BASE_ENCODINGS, artifact_bytes, read_artifact,  # noqa: E402
                                   write_artifact)
from minicompress.data import load_dataset, standardization  # noqa: E402
from minicompress.quantize import calibrate, convert, prepare  # noqa: E402
from minicompress.serialize import input_spec, save_integer_model  # noqa: E402


def valid_artifact(path, encodings=BASE_ENCODINGS):
    (xtr, _), _ = load_dataset("digits")
    model = models.lenet5(8, rng=np.random.default_rng(0))
    model.fc1.weight.data *= np.random.default_rng(1).random(model.fc1.weight.data.shape) < 0.1
    prepare(model, 4, 8, input_kind="auto", example_input=xtr[:200])
    calibrate(model, xtr[:200])
    im = convert(model)
    im.input = input_spec((1, 8, 8), *standardization("digits"))
    return save_integer_model(im, path, meta={"dataset": "digits"}, encodings=encodings)


def _huffman_weight(h, encoding):
    return next(s["weight"] for s in h["steps"] if s.get("weight", {}).get("encoding") == encoding)


def _retable(h, blob, change):
    """The first huffman tensor's code-length table rewritten by change(lengths)."""
    w = _huffman_weight(h, "huffman")
    k = w["hi"] - w["lo"] + 1
    start = w["offset"]
    lengths = huffman.lengths_from_bytes(blob[start:start + -(-k // 2)], k)
    table = huffman.lengths_to_bytes(change(lengths.copy()))
    return blob[:start] + table + blob[start + len(table):]


def _resize(h, blob, entry, data):
    """Replace a tensor's bytes (another length), moving every later tensor."""
    start, old = entry["offset"], entry["nbytes"]
    for st in h["steps"]:
        for ref in st.values():
            if isinstance(ref, dict) and ref.get("offset", -1) > start:
                ref["offset"] += len(data) - old
    entry["nbytes"] = len(data)
    return blob[:start] + data + blob[start + old:]


def huffman_cases(d: Path) -> dict:
    good = valid_artifact(d / "valid_huffman.npz", ("huffman", "sparse_huffman"))
    header, blob = read_artifact(good)

    def longest(delta):
        def change(lengths):
            lengths[np.argmax(lengths)] += delta
            return lengths
        return change

    def truncated(h, b):
        w = _huffman_weight(h, "huffman")
        return _resize(h, b, w, b[w["offset"]:w["offset"] + w["nbytes"] - 1])

    def extra_byte(h, b):
        w = _huffman_weight(h, "huffman")
        return _resize(h, b, w, b[w["offset"]:w["offset"] + w["nbytes"]] + b"\0")

    def claims_all(h, b):
        w = _huffman_weight(h, "sparse_huffman")
        n = int(np.prod(w["shape"]))
        w.update(nnz=n, index_bytes=n)          # every code kept: more than its bytes can hold
        return b
    cases = {"valid_huffman": good}
    for name, change in {"huffman_over_subscribed": lambda h, b: _retable(h, b, longest(-1)),
                         "huffman_incomplete": lambda h, b: _retable(h, b, longest(+1)),
                         "huffman_truncated": truncated, "huffman_byte_after_last_code": extra_byte,
                         "sparse_huffman_claims_every_code": claims_all}.items():
        h = copy.deepcopy(header)
        b = change(h, blob)
        (d / f"{name}.npz").write_bytes(artifact_bytes(h, b))
        cases[name] = d / f"{name}.npz"
    return cases


def with_steps(header, blob, n, path):
    """n − len(steps) no-op ReLUs after the first (ReLU'd) conv."""
    h = copy.deepcopy(header)
    extra = [{"kind": "relu", "zero": h["steps"][1]["out.out_zero"]}] * (n - len(h["steps"]))
    h["steps"] = h["steps"][:2] + extra + h["steps"][2:]
    h.pop("format"), h.pop("format_version")
    return write_artifact(path, h, blob)




def bomb(path, header, blob_bytes):
    """A zip whose blob member inflates to ``blob_bytes`` zeros (streamed, never in memory)."""
    hb = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(hb)
    chunk = bytes(2 ** 24)

    def npy_head(n):
        d = "{'descr': '|u1', 'fortran_order': False, 'shape': (%d,), }" % n
        d += " " * (63 - (10 + len(d)) % 64) + "\n"
        return b"\x93NUMPY\x01\x00" + len(d).to_bytes(2, "little") + d.encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open("blob.npy", "w", force_zip64=True) as f:
            f.write(npy_head(blob_bytes))
            for start in range(0, blob_bytes, len(chunk)):
                piece = chunk[:min(len(chunk), blob_bytes - start)]
                f.write(piece)
                digest.update(piece)
        z.writestr("checksum.npy", npy_head(32) + digest.digest())
        z.writestr("header.npy", npy_head(len(hb)) + hb)
    return path


def evaluate_peak(path):
    """(exit code, last stderr line, peak RSS in MB) of ``minicompress evaluate path``."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    code = ("import resource, subprocess, sys\n"
            "p = subprocess.run([sys.executable, '-m', 'minicompress', 'evaluate', sys.argv[1]],"
            " capture_output=True, text=True)\n"
            "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
            "print((p.stderr.strip().splitlines() or [''])[-1][:200])\n")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                         env=env).stdout.splitlines()
    rc, kb = out[0].split()
    return int(rc), out[1] if len(out) > 1 else "", int(kb) / 1024


def main():
    results = {"load_seconds_by_steps": {}, "evaluate": {}}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        good = valid_artifact(d / "valid.npz")
        header, blob = read_artifact(good)
        for n in (1250, 2500, 5000, 10_000):
            results["load_seconds_by_steps"][n] = load_seconds(with_steps(header, blob, n, d / f"s{n}.npz"))
            print(f"{n:6d} steps: load {results['load_seconds_by_steps'][n]:.3f} s", flush=True)
        cases = {"valid": good, "bomb_1_5GB": bomb(d / "bomb.npz", header, 1_500_000_000)}
        for name, change in {
            "weight_shape_1e10": lambda h: h["steps"][6]["weight"].update(shape=[100_000, 100_000]),
            "input_shape_2^40": lambda h: h["input"].update(shape=[1, 2 ** 20, 2 ** 20]),
            "weight_shape_vs_nbytes": lambda h: h["steps"][6]["weight"].update(shape=[2 ** 22 // 64, 64]),
        }.items():
            h = copy.deepcopy(header)
            change(h)
            h.pop("format"), h.pop("format_version")
            cases[name] = write_artifact(d / f"{name}.npz", h, blob)
        cases.update(huffman_cases(d))
        for name, path in cases.items():
            rc, err, mb = evaluate_peak(path)
            results["evaluate"][name] = {"file_bytes": path.stat().st_size, "exit_code": rc,
                                         "peak_rss_mb": round(mb, 1), "message": err}
            print(f"{name:22s} {path.stat().st_size:>10,} B  exit {rc}  peak {mb:7.1f} MB  {err[:110]}",
                  flush=True)
    out = ROOT / "benchmarks" / "results" / "hostile_artifact.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
