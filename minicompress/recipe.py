"""Recipes: the combined pipeline as a plain dict (or JSON file), checked before anything runs.

A recipe names the stages in the order of the document (§1, §2.2): train a teacher, distill it into
a smaller student (§3.3), prune the student with an Adam-learned mask (§3.1), quantize it with an
Adam-learned step Δ (§3.2), convert it to an integer model and export one file. A stage set to
``null`` (``None``) or given ``"skip": true`` is skipped.

Every key is checked against the defaults below: an unknown stage or key is an error that names it
and lists the valid ones, before any training starts.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

DEMO_RECIPE = Path(__file__).parent / "_data" / "digits_demo.json"  # what `demo` runs

STAGES = ("teacher", "distill", "prune", "quantize", "export")

DEFAULTS = {
    "seed": 0,
    "dataset": "fashion-mnist",
    "batch_size": 128,
    "teacher": {"skip": False, "model": "teacher", "epochs": 10, "lr": 1e-3, "checkpoint": None},
    "distill": {"skip": False, "model": "student", "hidden": 64, "epochs": 10, "lr": 1e-3,
                "temperature": 4.0, "alpha": 0.9, "lr_schedule": "constant"},
    "prune": {"skip": False, "sparsity": 0.9, "epochs": 4, "lr": 1e-4, "score_lr": 1e-4,
              "temperature": 4.0, "alpha": 0.9},
    "quantize": {"skip": False, "weight_bits": 4, "activation_bits": 8, "epochs": 2, "lr": 1e-4,
                 "lr_delta": 1e-3,
                 "per_channel": False, "temperature": 4.0, "alpha": 0.9},
    "export": {"skip": False},
}

LR_SCHEDULES = ("constant", "cosine")
TOP_LEVEL = ("seed", "dataset", "batch_size") + STAGES
DATASETS = ("digits", "fashion-mnist", "mnist")


class RecipeError(ValueError):
    pass


def _check_stage(name, given):
    valid = DEFAULTS[name]
    if given is None:
        return dict(valid, skip=True)
    if not isinstance(given, dict):
        raise RecipeError(f"recipe: stage '{name}' must be an object or null, got {type(given).__name__}")
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise RecipeError(f"recipe: unknown key(s) {unknown} in stage '{name}'; valid keys are "
                          f"{sorted(valid)}")
    merged = dict(valid)
    merged.update(given)
    for key, default in valid.items():
        value = merged[key]
        if default is None or value is None:
            continue
        if isinstance(default, bool) and not isinstance(value, bool):
            raise RecipeError(f"recipe: '{name}.{key}' must be true or false, got {value!r}")
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise RecipeError(f"recipe: '{name}.{key}' must be a number, got {value!r}")
            if value < 0:
                raise RecipeError(f"recipe: '{name}.{key}' must be ≥ 0, got {value!r}")
        if isinstance(default, str) and not isinstance(value, str):
            raise RecipeError(f"recipe: '{name}.{key}' must be a string, got {value!r}")
    return merged


def validate(recipe: dict) -> dict:
    """Return the full recipe (defaults filled in); raise :class:`RecipeError` on any problem."""
    if not isinstance(recipe, dict):
        raise RecipeError(f"recipe must be a JSON object, got {type(recipe).__name__}")
    unknown = sorted(set(recipe) - set(TOP_LEVEL))
    if unknown:
        raise RecipeError(f"recipe: unknown stage or key(s) {unknown}; valid stages are "
                          f"{list(STAGES)} and valid settings {['seed', 'dataset', 'batch_size']}")
    out = {k: copy.deepcopy(DEFAULTS[k]) for k in ("seed", "dataset", "batch_size")}
    for k in ("seed", "batch_size"):
        if k in recipe:
            v = recipe[k]
            if isinstance(v, bool) or not isinstance(v, int) or v < (1 if k == "batch_size" else 0):
                raise RecipeError(f"recipe: '{k}' must be a non-negative integer, got {v!r}")
            out[k] = v
    if "dataset" in recipe:
        if recipe["dataset"] not in DATASETS:
            raise RecipeError(f"recipe: unknown dataset {recipe['dataset']!r}; valid: {list(DATASETS)}")
        out["dataset"] = recipe["dataset"]
    for stage in STAGES:
        out[stage] = _check_stage(stage, recipe.get(stage, {}))
    p = out["prune"]
    if not p["skip"] and not 0.0 <= p["sparsity"] < 1.0:
        raise RecipeError(f"recipe: 'prune.sparsity' must be in [0, 1), got {p['sparsity']!r}")
    q = out["quantize"]
    for key in ("weight_bits", "activation_bits"):
        if not q["skip"] and not (isinstance(q[key], int) and 2 <= q[key] <= 16):
            raise RecipeError(f"recipe: 'quantize.{key}' must be an integer in [2, 16], got {q[key]!r}")
    d = out["distill"]
    if not d["skip"] and d["lr_schedule"] not in LR_SCHEDULES:
        raise RecipeError(f"recipe: 'distill.lr_schedule' must be one of {list(LR_SCHEDULES)}, "
                          f"got {d['lr_schedule']!r}")
    for stage in ("distill", "prune", "quantize"):
        s = out[stage]
        if s["skip"]:
            continue
        if s["temperature"] <= 0:
            raise RecipeError(f"recipe: '{stage}.temperature' must be > 0, got {s['temperature']!r}")
        if not 0.0 <= s["alpha"] <= 1.0:
            raise RecipeError(f"recipe: '{stage}.alpha' must be in [0, 1], got {s['alpha']!r}")
    if out["export"]["skip"] is False and out["quantize"]["skip"]:
        raise RecipeError("recipe: the 'export' stage writes the integer model, so it needs the "
                          "'quantize' stage (or set export to null)")
    return out


def load_recipe(path) -> dict:
    path = Path(path)
    try:
        recipe = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RecipeError(f"{path}: not valid JSON ({e})") from None
    return validate(recipe)
