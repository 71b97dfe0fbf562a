"""Longer runs of the seeded mutation fuzzing of tests/test_fuzz.py: artifact headers and recipes.

    python scripts/fuzz.py [--artifacts 4000] [--recipes 4000] [--seed 0]

Prints each kind of failure once (an exception other than ValueError, a warning, or a loaded
mutant whose fused and step paths disagree) with its count and first case, and exits 1 if there
was any.
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fuzzing import (RECIPES, artifact_failures, new_random, recipe_failures,  # noqa: E402
                           summary, valid_artifact)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", type=int, default=4000, help="mutated artifact headers")
    ap.add_argument("--recipes", type=int, default=4000, help="mutated recipes")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rnd = new_random(args.seed)
    with tempfile.TemporaryDirectory() as folder:
        header, blob, x = valid_artifact(Path(folder) / "valid.npz")
        found, loaded = artifact_failures(header, blob, x, args.artifacts, rnd,
                                          Path(folder) / "mutant.npz")
    found.update(recipe_failures([json.loads(p.read_text()) for p in RECIPES], args.recipes, rnd))
    if found:
        print(summary(found))
    print(f"{args.artifacts} artifact headers ({loaded} loaded and ran), {args.recipes} recipes: "
          f"{sum(map(len, found.values()))} failures")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
