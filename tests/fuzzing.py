"""Seeded random mutations of valid inputs, for tests/test_fuzz.py and scripts/fuzz.py.

A mutation replaces one to three values of a JSON document (by numbers at the edges of every
range, strings, lists, objects, null), deletes them, scales them or resizes a list. Every mutant
must end in a ValueError naming what is wrong, or be accepted and work — never another
exception, a warning, or (for an artifact) a fused path that differs from the step path.
"""
import copy
import json
import random
import traceback
import warnings
from pathlib import Path

import numpy as np

from minicompress import models
from minicompress.artifact import read_artifact, write_artifact
from minicompress.data import load_dataset, standardization
from minicompress.quantize import calibrate, convert, prepare
from minicompress.recipe import check_feasible, parse_recipe
from minicompress.serialize import input_spec, load_integer_model, save_integer_model

RECIPES = sorted((Path(__file__).resolve().parent.parent / "recipes").glob("*.json"))

# values at the edges of the ranges the format and the recipes use, and of the wrong JSON type
VALUES = [0, -1, 1, 2, 3, 7, 8, 9, 16, 17, 31, 32, 33, 63, 64, 255, 256, -2 ** 31, 2 ** 31,
          2 ** 53, 2 ** 63, 10 ** 30, 10 ** 400, 0.5, -0.5, 1e-30, 1e30, 1e-45, 3.4e38, 3.5e38,
          float("nan"), float("inf"), -float("inf"), "", "x", "packed", "sparse", "sparse_gaps",
          "huffman", "conv2d", "linear", "relu", "maxpool", "lenet5", "teacher", None, True, False,
          [], {}, [1], [0, 0], [1, 2, 3], [2 ** 40, 2 ** 40], [-1, 5], {"a": 1}]


def paths(value, prefix=()):
    """Every path (a tuple of keys and indices) into a JSON value, the leaves and the inner nodes."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, prefix + (i,))
    if prefix:
        yield prefix


def mutate(doc, rnd):
    """A deep copy of ``doc`` with 1–3 values replaced, deleted, scaled or resized."""
    doc = copy.deepcopy(doc)
    for _ in range(rnd.choice([1, 1, 1, 2, 3])):
        where = rnd.choice(list(paths(doc)))
        parent = doc
        try:
            for key in where[:-1]:
                parent = parent[key]
            key, kind = where[-1], rnd.random()
            old = parent[key]
            if kind < 0.7:
                parent[key] = copy.deepcopy(rnd.choice(VALUES))     # never share a list
            elif kind < 0.8 and isinstance(parent, dict):
                del parent[key]
            elif isinstance(old, (int, float)) and not isinstance(old, bool):
                parent[key] = type(old)(old * rnd.choice([2, -1, 0.5, 1.0001, 1000]))
            elif isinstance(old, list) and old:
                parent[key] = old[:-1] if rnd.random() < 0.5 else old + [old[-1]]
        except (KeyError, IndexError, TypeError, OverflowError):
            pass                        # an earlier mutation moved the path; 10^400 · 0.5
    return doc


def valid_artifact(path):
    """(header, blob, x): a valid LeNet-5 artifact on the 8x8 digits written to ``path``, with
    packed, Huffman and sparse weights, and 8 test images."""
    (xtr, _), (xte, _) = load_dataset("digits")
    rng = np.random.default_rng(0)
    model = models.lenet5(8, rng=rng)
    for layer, keep in ((model.fc1, 0.05), (model.fc2, 0.5)):
        layer.weight.data *= rng.random(layer.weight.data.shape) < keep
    prepare(model, 4, 8, input_kind="auto", example_input=xtr[:200])
    calibrate(model, xtr[:200])
    im = convert(model)
    im.input = input_spec((1, 8, 8), *standardization("digits"))
    save_integer_model(im, path, meta={"dataset": "digits"})
    return (*read_artifact(path), xte[:8])


def _failure(found, kind, detail):
    found.setdefault(kind, []).append(detail)


def artifact_failures(header, blob, x, n, rnd, path):
    """({kind: [details]}, how many mutants loaded) for ``n`` mutants of ``header``, each
    written to ``path`` with a valid checksum, loaded and (if it loads) run on ``x``."""
    found, loaded = {}, 0
    for i in range(n):
        h = mutate(header, rnd)
        try:
            write_artifact(path, h, blob)
        except (TypeError, ValueError):                          # not even writable as JSON
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                im = load_integer_model(path)
            except ValueError:
                continue
            except Exception as e:                               # noqa: BLE001 — what we look for
                _failure(found, f"load {type(e).__name__}: {str(e)[:100]}",
                         f"mutant {i}: {traceback.format_exc()[-800:]}")
                continue
            loaded += 1
            try:
                if not np.array_equal(im.forward(x), im.forward_steps(x)):
                    _failure(found, "fused path != step path", f"mutant {i}: {json.dumps(h)[:800]}")
            except Exception as e:                               # noqa: BLE001
                _failure(found, f"forward {type(e).__name__}: {str(e)[:100]}",
                         f"mutant {i}: {traceback.format_exc()[-800:]}")
    return found, loaded


def recipe_failures(recipes, n, rnd):
    """{kind: [details]} for ``n`` mutants of the recipes (dicts), parsed and checked."""
    found = {}
    for i in range(n):
        try:
            text = json.dumps(mutate(rnd.choice(recipes), rnd))
        except (TypeError, ValueError):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                check_feasible(parse_recipe(text))
            except ValueError:
                continue
            except Exception as e:                               # noqa: BLE001
                _failure(found, f"recipe {type(e).__name__}: {str(e)[:100]}",
                         f"mutant {i}: {text[:800]}")
    return found


def summary(found):
    """One paragraph per kind of failure: the count and the first case."""
    return "\n".join(f"{len(v)} × {k}\n  first: {v[0]}" for k, v in found.items())


def new_random(seed):
    return random.Random(seed)
