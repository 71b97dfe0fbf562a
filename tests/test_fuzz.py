"""Seeded random mutations of valid inputs (``tests/fuzzing.py``): every one must end in a
ValueError naming what is wrong, or load and run like a valid file — never another exception, a
warning or a fused path that differs from the step path.

* artifact headers: values of a valid file's JSON header replaced or deleted, the checksum
  recomputed so that only the reader's checks can stop them;
* recipes: the same mutations of each shipped recipe, through parsing and the feasibility checks.

The mutations are drawn from fixed seeds, so a failure reproduces; ``scripts/fuzz.py`` runs many
more of them.
"""
import json

import pytest

from tests.fuzzing import (RECIPES, artifact_failures, new_random, recipe_failures, summary,
                           valid_artifact)


def test_mutated_artifact_headers_fail_with_a_value_error_or_run(tmp_path):
    header, blob, x = valid_artifact(tmp_path / "valid.npz")
    found, loaded = artifact_failures(header, blob, x, 400, new_random(20261202),
                                      tmp_path / "mutant.npz")
    assert not found, summary(found)
    assert loaded > 0                                  # some mutants are harmless (meta, ...)


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_mutated_recipes_fail_with_a_value_error(path):
    found = recipe_failures([json.loads(path.read_text())], 150, new_random(path.stem))
    assert not found, summary(found)
