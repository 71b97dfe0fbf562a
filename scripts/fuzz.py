"""Longer runs of the seeded mutation fuzzing in tests/test_fuzz.py: artifact headers and recipes.

    python scripts/fuzz.py [--artifacts 4000] [--recipes 4000] [--seed 0]

Prints each kind of failure once (an exception other than ValueError, a warning, or a loaded
mutant whose fused and step paths disagree) with its count, and exits 1 if there was any.
"""
import argparse
import json
import random
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from minicompress import models  # noqa: E402
from minicompress.artifact import read_artifact, write_artifact  # noqa: E402
from minicompress.data import load_dataset, standardization  # noqa: E402
from minicompress.quantize import calibrate, convert, prepare  # noqa: E402
from minicompress.recipe import check_feasible, parse_recipe  # noqa: E402
from minicompress.serialize import input_spec, load_integer_model, save_integer_model  # noqa: E402
from tests.test_fuzz import RECIPES, mutate  # noqa: E402


def valid_artifact(folder):
    """The header, blob and a few test images of a valid LeNet-5 artifact on the 8x8 digits."""
    (xtr, _), (xte, _) = load_dataset("digits")
    rng = np.random.default_rng(0)
    model = models.lenet5(8, rng=rng)
    for layer, keep in ((model.fc1, 0.05), (model.fc2, 0.5)):
        layer.weight.data *= rng.random(layer.weight.data.shape) < keep
    prepare(model, 4, 8, input_kind="auto", example_input=xtr[:200])
    calibrate(model, xtr[:200])
    im = convert(model)
    im.input = input_spec((1, 8, 8), *standardization("digits"))
    path = save_integer_model(im, Path(folder) / "valid.npz", meta={"dataset": "digits"})
    return (*read_artifact(path), xte[:8])


def failure(kind, exc):
    return f"{kind} {type(exc).__name__}: {str(exc)[:100]}"


def fuzz_artifacts(n, rnd, folder, found):
    header, blob, x = valid_artifact(folder)
    path = Path(folder) / "mutant.npz"
    for _ in range(n):
        h = mutate(header, rnd)
        try:
            write_artifact(path, h, blob)
        except (TypeError, ValueError):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                im = load_integer_model(path)
            except ValueError:
                continue
            except Exception as e:                                          # noqa: BLE001
                found.setdefault(failure("load", e), []).append(traceback.format_exc())
                continue
            try:
                if not np.array_equal(im.forward(x), im.forward_steps(x)):
                    found.setdefault("fused path != step path", []).append(json.dumps(h))
            except Exception as e:                                          # noqa: BLE001
                found.setdefault(failure("forward", e), []).append(traceback.format_exc())


def fuzz_recipes(n, rnd, found):
    recipes = [json.loads(p.read_text()) for p in RECIPES]
    for _ in range(n):
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
            except Exception as e:                                          # noqa: BLE001
                found.setdefault(failure("recipe", e), []).append(text[:2000])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", type=int, default=4000, help="mutated artifact headers")
    ap.add_argument("--recipes", type=int, default=4000, help="mutated recipes")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rnd, found = random.Random(args.seed), {}
    with tempfile.TemporaryDirectory() as folder:
        fuzz_artifacts(args.artifacts, rnd, folder, found)
    fuzz_recipes(args.recipes, rnd, found)
    for kind, cases in found.items():
        print(f"{len(cases):5d}  {kind}\n       first: {cases[0][-600:]}")
    print(f"{args.artifacts} artifact headers, {args.recipes} recipes: "
          f"{sum(map(len, found.values()))} failures")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
