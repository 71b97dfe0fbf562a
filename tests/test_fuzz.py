"""Seeded random mutations of valid inputs: every one must end in a ValueError naming what is wrong
(or load and run like a valid file) — never another exception, a warning or a hang.

* artifact headers: one to three values of a valid file's JSON header replaced (by numbers at
  the edges of every range, strings, lists, objects, null) or deleted, the checksum recomputed
  so that only the reader's checks can stop them; a file that still loads must run, its fused
  path equal to its step path;
* recipes: the same mutations of the shipped recipes, through parsing and the feasibility checks.

The mutations are drawn from a fixed seed, so a failure reproduces; ``scripts/fuzz.py`` runs
many more of them.
"""
import copy
import json
import random
import warnings
from pathlib import Path

import numpy as np
import pytest

from minicompress import models
from minicompress.artifact import read_artifact, write_artifact
from minicompress.data import standardization
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
    """A deep copy of ``doc`` with 1–3 values replaced by one of VALUES, deleted, scaled or
    resized."""
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


@pytest.fixture(scope="module")
def conv_artifact(tmp_path_factory, digits):
    """A valid LeNet-5 artifact on the 8x8 digits with packed, Huffman and sparse weights."""
    (xtr, _), (xte, _) = digits
    rng = np.random.default_rng(0)
    model = models.lenet5(8, rng=rng)
    for layer, keep in ((model.fc1, 0.05), (model.fc2, 0.5)):
        layer.weight.data *= rng.random(layer.weight.data.shape) < keep
    prepare(model, 4, 8, input_kind="auto", example_input=xtr[:200])
    calibrate(model, xtr[:200])
    im = convert(model)
    im.input = input_spec((1, 8, 8), *standardization("digits"))
    path = save_integer_model(im, tmp_path_factory.mktemp("fuzz") / "valid.npz",
                              meta={"dataset": "digits"})
    return read_artifact(path), xte[:8]


def test_mutated_artifact_headers_fail_with_a_value_error_or_run(conv_artifact, tmp_path):
    (header, blob), x = conv_artifact
    rnd = random.Random(20261202)
    loaded = 0
    for i in range(400):
        h = mutate(header, rnd)
        path = tmp_path / "mutant.npz"
        try:
            write_artifact(path, h, blob)
        except (TypeError, ValueError):                      # not even writable as JSON
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                im = load_integer_model(path)
            except ValueError:
                continue
            except Exception as e:                           # noqa: BLE001 — the point of the test
                pytest.fail(f"mutant {i}: {type(e).__name__}: {e}\n{json.dumps(h)[:2000]}")
            loaded += 1
            np.testing.assert_array_equal(im.forward(x), im.forward_steps(x), err_msg=f"mutant {i}")
    assert loaded > 0                                        # some mutants are harmless (meta, ...)


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_mutated_recipes_fail_with_a_value_error(path):
    recipe = json.loads(path.read_text())
    rnd = random.Random(path.stem)
    for i in range(150):
        try:
            text = json.dumps(mutate(recipe, rnd))
        except (TypeError, ValueError):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                check_feasible(parse_recipe(text))
            except ValueError:
                continue
            except Exception as e:                           # noqa: BLE001
                pytest.fail(f"mutant {i}: {type(e).__name__}: {e}\n{text[:2000]}")
