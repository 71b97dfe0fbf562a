"""What canonical Huffman coding saves on real artifacts, tensor by tensor, against the entropy bound.

    OPENBLAS_NUM_THREADS=1 python benchmarks/entropy_coding.py [--demo] [artifact.npz ...]
        → benchmarks/results/entropy_coding.json

The recorded results: ``--demo``, ``fashion_10kb.npz`` (``python -m minicompress compress --recipe
recipes/fashion_10kb.json``, the cached 10-epoch teacher as ``teacher.checkpoint``), and the three
artifacts of docs/RESULTS.md section 9 (``*_short``: the recipes' layers, sparsities and bit widths,
fewer epochs from a 1-epoch teacher; ``fashion_lenet5_int8`` from ``benchmarks/recipes/``).

Without arguments: the digits demo artifact, built here by the demo recipe (``python -m
minicompress demo`` writes the same model). An existing artifact is re-encoded without
retraining: it is loaded and saved again, once with the version-2 encodings only and once with
the writer's default choice (Huffman where the whole file gets smaller).

Per weight tensor: N codes of b bits (raw N·b bits), the version-2 encoding the writer picks and
its bytes (as stored, and deflated at level 9 as the zip will), the ``huffman`` and
``sparse_huffman`` bytes (stored and deflated), and the entropy bound of each: N·H(codes)/8
bytes for the dense codes; index_bytes·H(gap bytes)/8 + nnz·H(non-zero codes)/8 for the sparse
ones (H = −Σ p log₂ p of the empirical distribution; the bound leaves out the code-length tables,
so a table-carrying code cannot reach it). Per artifact: the file bytes without and with Huffman,
and the time to load each file (best of 5); per tensor ``huffman_decode_ms``, the time to decode
all N codes as one ``huffman`` block (best of 3).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.common import load_seconds, save_result  # noqa: E402
from minicompress import huffman  # noqa: E402
from minicompress.artifact import BASE_ENCODINGS, encode_codes, gap_bytes, read_artifact  # noqa: E402
from minicompress.quantize.integer import IntLayer  # noqa: E402
from minicompress.serialize import integer_model_bytes, load_integer_model  # noqa: E402


def demo_artifact(folder: Path) -> Path:
    """The digits demo (the package's demo recipe), written to ``folder``."""
    from minicompress import pipeline
    from minicompress.recipe import DEMO_RECIPE, load_recipe
    return Path(pipeline.run(load_recipe(DEMO_RECIPE), out=folder / "demo_model.npz",
                             progress=False)["artifact"]["path"])


def entropy_bytes(symbols) -> float:
    """len(symbols) · H / 8: the fewest bytes any code of one symbol at a time can take."""
    symbols = np.asarray(symbols, np.int64)
    if symbols.size == 0:
        return 0.0
    counts = np.bincount(symbols - symbols.min())
    return len(symbols) * huffman.entropy_bits(counts) / 8


def tensor_row(name, q_w, bits) -> dict:
    flat = q_w.astype(np.int64).ravel()
    nonzero = np.flatnonzero(flat)
    gaps = np.frombuffer(gap_bytes(nonzero), np.uint8)
    row = {"tensor": name, "shape": list(q_w.shape), "bits": int(bits), "N": int(flat.size),
           "nnz": int(len(nonzero)), "raw_bytes": -(-flat.size * int(bits) // 8),
           "entropy_bound_dense_bytes": round(entropy_bytes(flat), 1),
           "entropy_bound_sparse_bytes": round(entropy_bytes(gaps) + entropy_bytes(flat[nonzero]), 1)}
    data, entry = encode_codes(q_w, bits, BASE_ENCODINGS)
    row.update(v2_encoding=entry["encoding"], v2_bytes=len(data),
               v2_deflated=len(zlib.compress(data, 9)))
    for enc in ("huffman", "sparse_huffman"):
        data, entry = encode_codes(q_w, bits, (enc,))
        if entry["encoding"] == enc:
            row[f"{enc}_bytes"] = len(data)
            row[f"{enc}_deflated"] = len(zlib.compress(data, 9))
    # decoding speed: the whole tensor as one ``huffman`` block (every code, zeros included)
    data, entry = encode_codes(q_w, bits, ("huffman",))
    lengths = huffman.lengths_from_bytes(data[:-(-(entry["hi"] - entry["lo"] + 1) // 2)],
                                         entry["hi"] - entry["lo"] + 1)
    stream = data[-(-(entry["hi"] - entry["lo"] + 1) // 2):]
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        huffman.decode(stream, lengths, flat.size)
        times.append(time.perf_counter() - t0)
    row["huffman_decode_ms"] = round(1000 * min(times), 2)
    return row




def artifact_entry(path: Path, folder: Path) -> dict:
    header, _ = read_artifact(path)
    im = load_integer_model(path)
    meta = header["meta"]
    v2 = integer_model_bytes(im, meta, BASE_ENCODINGS)
    best = integer_model_bytes(im, meta)
    (folder / "v2.npz").write_bytes(v2)
    (folder / "best.npz").write_bytes(best)
    chosen = read_artifact(folder / "best.npz")[0]
    layers = [s for s in im.steps if isinstance(s, IntLayer)]
    rows = [tensor_row(f"steps[{im.steps.index(s)}] {s.kind}", s.q_w, s.w_bits) for s in layers]
    for row, st in zip(rows, [s for s in chosen["steps"] if "weight" in s]):
        row["chosen_encoding"] = st["weight"]["encoding"]
    return {"artifact": path.name, "file_bytes_as_given": path.stat().st_size,
            "format_version_as_given": header["format_version"],
            "file_bytes_v2": len(v2), "file_bytes_with_huffman": len(best),
            "saved_bytes": len(v2) - len(best),
            "saved_percent": round(100 * (len(v2) - len(best)) / len(v2), 2),
            "format_version_written": chosen["format_version"],
            "load_seconds_v2": round(load_seconds(folder / "v2.npz"), 4),
            "load_seconds_with_huffman": round(load_seconds(folder / "best.npz"), 4),
            "weight_raw_bytes": sum(r["raw_bytes"] for r in rows),
            "weight_entropy_bound_bytes": round(sum(min(r["entropy_bound_dense_bytes"],
                                                        r["entropy_bound_sparse_bytes"]) for r in rows), 1),
            "tensors": rows}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts", nargs="*", help="artifact files (default: build the digits demo)")
    parser.add_argument("--demo", action="store_true", help="also build and measure the digits demo")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        paths = [Path(p) for p in args.artifacts]
        if args.demo or not paths:
            paths.insert(0, demo_artifact(d))
        for p in paths:
            entry = artifact_entry(p, d)
            results.append(entry)
            print(f"{entry['artifact']:28s} v2 {entry['file_bytes_v2']:>7,} B  with Huffman "
                  f"{entry['file_bytes_with_huffman']:>7,} B  (−{entry['saved_percent']} %)  "
                  f"weights raw {entry['weight_raw_bytes']:,} B, entropy bound "
                  f"{entry['weight_entropy_bound_bytes']:,.0f} B", flush=True)
            for r in entry["tensors"]:
                print(f"    {r['tensor']:18s} {str(r['shape']):16s} nnz {r['nnz']:>7,}  raw "
                      f"{r['raw_bytes']:>7,}  {r['v2_encoding']:11s} {r['v2_bytes']:>7,} "
                      f"(defl. {r['v2_deflated']:>6,})  huffman {r.get('huffman_bytes', '-'):>7}  "
                      f"sparse_huffman {r.get('sparse_huffman_bytes', '-'):>7}  bound "
                      f"{min(r['entropy_bound_dense_bytes'], r['entropy_bound_sparse_bytes']):>8,.0f}"
                      f"  → {r['chosen_encoding']}", flush=True)
    save_result("entropy_coding", {"artifacts": results})


if __name__ == "__main__":
    main()
