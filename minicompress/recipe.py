"""Recipes: the combined pipeline as a plain dict (or JSON file), checked before anything runs.

A recipe names the stages in the order of the document (§1, §2.2): train a teacher, distill it into
a smaller student (§3.3), prune the student with an Adam-learned mask (§3.1), quantize it with an
Adam-learned step Δ (§3.2), convert it to an integer model and export one file. A stage set to
``null`` (``None``) or given ``"skip": true`` is skipped.

Every key is checked against the defaults below: an unknown stage or key is an error that names it
and lists the valid ones, and every value is checked against the range in :data:`RULES` — all
before any training starts, so a recipe never fails half-way through a long run. Two checks need
the models themselves (:func:`check_feasible`): the teacher checkpoint must fit the teacher, and the
bit widths must give an integer model whose int32 accumulators cannot overflow.
"""
from __future__ import annotations

import copy
import json
import math
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
INPUT_SIZE = {"digits": 8, "fashion-mnist": 28, "mnist": 28}   # image side H = W
MODEL_NAMES = ("lenet300", "lenet5", "student", "teacher")      # models.MODELS
MAX_RECIPE_BYTES = 1 << 20   # a recipe is a few hundred bytes; refuse to read /dev/zero
MAX_NESTING = 20             # a recipe nests 2 deep; deeper JSON is refused before parsing

# Allowed values, by kind: ("int", lo, hi) integers in [lo, hi]; ("real", lo, hi, lo_open,
# hi_open) finite numbers; ("bool",); ("choice", values); ("path",) a string or null.
# The upper limits keep a typo from asking for hours of training or gigabytes of memory.
_EPOCHS = ("int", 1, 1000)
_EPOCHS0 = ("int", 0, 1000)          # 0 = one-shot (prune) / calibration only (quantize)
_LR = ("real", 0.0, 1.0, True, False)  # Adam step size in (0, 1]
_T = ("real", 0.01, 100.0, False, False)  # z/T must stay finite: no T near 0
_ALPHA = ("real", 0.0, 1.0, False, False)
_BITS = ("int", 2, 16)
RULES = {
    "seed": ("int", 0, 2 ** 63 - 1),
    "batch_size": ("int", 1, 4096),
    "dataset": ("choice", DATASETS),
    "teacher": {"skip": ("bool",), "model": ("choice", MODEL_NAMES), "epochs": _EPOCHS,
                "lr": _LR, "checkpoint": ("path",)},
    "distill": {"skip": ("bool",), "model": ("choice", MODEL_NAMES), "hidden": ("int", 1, 4096),
                "epochs": _EPOCHS, "lr": _LR, "temperature": _T, "alpha": _ALPHA,
                "lr_schedule": ("choice", LR_SCHEDULES)},
    "prune": {"skip": ("bool",), "sparsity": ("real", 0.0, 1.0, False, True), "epochs": _EPOCHS0,
              "lr": _LR, "score_lr": _LR, "temperature": _T, "alpha": _ALPHA},
    "quantize": {"skip": ("bool",), "weight_bits": _BITS, "activation_bits": _BITS,
                 "epochs": _EPOCHS0, "lr": _LR, "lr_delta": _LR, "per_channel": ("bool",),
                 "temperature": _T, "alpha": _ALPHA},
    "export": {"skip": ("bool",)},
}


class RecipeError(ValueError):
    pass


def _interval(lo, hi, lo_open, hi_open):
    return f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


def check_value(where, value, rule):
    """Raise :class:`RecipeError` unless ``value`` obeys ``rule`` (see :data:`RULES`).

    JSON ``true``/``false`` are Python bools, which are ints: they are refused where a number is
    expected, and a float such as 0.5 is refused where an integer is (never silently truncated).
    """
    kind = rule[0]
    if kind == "bool":
        if not isinstance(value, bool):
            raise RecipeError(f"recipe: '{where}' must be true or false, got {value!r}")
    elif kind == "int":
        lo, hi = rule[1], rule[2]
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise RecipeError(f"recipe: '{where}' must be an integer in [{lo}, {hi}], got {value!r}")
    elif kind == "real":
        lo, hi, lo_open, hi_open = rule[1:]
        ok = (not isinstance(value, bool) and isinstance(value, (int, float))
              and (isinstance(value, int) or math.isfinite(value))     # a huge int overflows
              and (lo < value if lo_open else lo <= value)
              and (value < hi if hi_open else value <= hi))
        if not ok:
            raise RecipeError(f"recipe: '{where}' must be a finite number in "
                              f"{_interval(lo, hi, lo_open, hi_open)}, got {value!r}")
    elif kind == "choice":
        if not isinstance(value, str) or value not in rule[1]:
            raise RecipeError(f"recipe: '{where}' must be one of {list(rule[1])}, got {value!r}")
    elif kind == "path":
        if value is not None and (not isinstance(value, str) or not value):
            raise RecipeError(f"recipe: '{where}' must be a file path (string) or null, "
                              f"got {value!r}")
    return value


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
    check_value(f"{name}.skip", merged["skip"], RULES[name]["skip"])
    if merged["skip"]:
        return merged  # a skipped stage's settings are never read
    for key, rule in RULES[name].items():
        check_value(f"{name}.{key}", merged[key], rule)
    return merged


def validate(recipe: dict) -> dict:
    """Return the full recipe (defaults filled in); raise :class:`RecipeError` on any problem."""
    if not isinstance(recipe, dict):
        raise RecipeError(f"recipe must be a JSON object, got {type(recipe).__name__}")
    unknown = sorted(set(recipe) - set(TOP_LEVEL))
    if unknown:
        raise RecipeError(f"recipe: unknown stage or key(s) {unknown}; valid stages are "
                          f"{list(STAGES)} and valid settings {['seed', 'dataset', 'batch_size']}")
    out = {}
    for k in ("seed", "dataset", "batch_size"):
        out[k] = check_value(k, recipe.get(k, DEFAULTS[k]), RULES[k])
    for stage in STAGES:
        out[stage] = _check_stage(stage, copy.deepcopy(recipe.get(stage, {})))
    if out["teacher"]["skip"]:
        raise RecipeError("recipe: the 'teacher' stage is null or skipped, but every other stage "
                          "starts from the teacher; give a 'teacher' (or a teacher checkpoint)")
    if not out["export"]["skip"] and out["quantize"]["skip"]:
        raise RecipeError("recipe: the 'export' stage writes the integer model, so it needs the "
                          "'quantize' stage (or set export to null)")
    return out


# ---- checks that need the models ---------------------------------------------------------------
def _subject(recipe, input_size, rng):
    """The float model the quantize stage will see (the student, or the teacher itself)."""
    from . import models
    d = recipe["distill"]
    if d["skip"]:
        return models.build(recipe["teacher"]["model"], input_size, rng=rng)
    kwargs = {"hidden": int(d["hidden"])} if d["model"] == "student" else {}
    return models.build(d["model"], input_size, rng=rng, **kwargs)


def worst_accumulator(fan_in, weight_bits, input_bits):
    """B = fan_in · (2^(b_w−1) − 1) · (2^(b_x) − 1): the largest |Σ_k q_w q_x| any weights and
    inputs of these bit widths can give (every code at its extreme). The integer model refuses a
    layer whose accumulator may leave int32, so B < 2^31 guarantees the export."""
    return fan_in * (2 ** (weight_bits - 1) - 1) * (2 ** input_bits - 1)


def check_bit_widths(recipe, input_size):
    """Refuse weight/activation bits whose int32 accumulators could overflow (see
    :func:`worst_accumulator`). The first layer sees the 8-bit input quantizer of
    ``quantize.prepare``, every later layer the ``activation_bits`` codes after a ReLU."""
    import numpy as np

    from .nn import Conv2d, Linear
    q = recipe["quantize"]
    if q["skip"]:
        return
    model = _subject(recipe, input_size, np.random.default_rng(0))
    input_bits = 8
    for name, layer in model.named_children():
        if not isinstance(layer, (Linear, Conv2d)):
            continue
        fan_in = int(np.prod(layer.weight.data.shape[1:]))
        bound = worst_accumulator(fan_in, q["weight_bits"], input_bits)
        if bound >= 2 ** 31:
            raise RecipeError(
                f"recipe: quantize.weight_bits={q['weight_bits']} with {input_bits}-bit inputs "
                f"can overflow the int32 accumulator of layer '{name}' ({fan_in} inputs: worst "
                f"case {bound:.3g} ≥ 2^31), which the integer model refuses to export; lower "
                f"quantize.weight_bits or quantize.activation_bits")
        input_bits = q["activation_bits"]


def check_checkpoint(recipe, input_size):
    """The teacher checkpoint, if any, must be an ``.npz`` state dict of the teacher model."""
    import numpy as np

    from . import models
    from .io import load_model
    path = recipe["teacher"]["checkpoint"]
    if not path:
        return
    p = Path(path)
    if not p.is_file():
        problem = ("is a directory" if p.is_dir() else "is not a regular file" if p.exists()
                   else "no such file")
        raise RecipeError(f"recipe: 'teacher.checkpoint' {path}: {problem}; expected the .npz "
                          f"file written by `python -m minicompress train`")
    model = models.build(recipe["teacher"]["model"], input_size, rng=np.random.default_rng(0))
    try:
        load_model(model, p)
    except (ValueError, KeyError, OSError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        raise RecipeError(f"recipe: 'teacher.checkpoint' {path} is not a state dict of the "
                          f"'{recipe['teacher']['model']}' model for {input_size}x{input_size} "
                          f"images: {msg}") from None


def check_feasible(recipe, input_size=None):
    """Everything a later stage would refuse, checked now: the teacher checkpoint loads into the
    teacher, and the bit widths give an exportable integer model. ``input_size`` (the image side)
    defaults to the recipe's data set's."""
    recipe = validate(recipe)
    size = INPUT_SIZE[recipe["dataset"]] if input_size is None else int(input_size)
    check_checkpoint(recipe, size)
    check_bit_widths(recipe, size)
    return recipe


# ---- reading a recipe file ---------------------------------------------------------------------
def _nesting(text):
    """The deepest nesting of [ ] and { } outside strings (json.loads would recurse that deep)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise RecipeError(f"duplicate key(s) {dup}")
    return dict(pairs)


def _reject_constant(name):
    raise RecipeError(f"{name} is not a number JSON allows")


def read_recipe_text(path) -> str:
    """The text of a recipe file: a regular file of at most 1 MiB, UTF-8."""
    path = Path(path)
    if path.is_dir():
        raise RecipeError(f"recipe {path} is a directory; expected a JSON file (see recipes/)")
    if not path.exists():
        raise RecipeError(f"recipe {path}: no such file")
    if not path.is_file():
        raise RecipeError(f"recipe {path} is not a regular file; expected a JSON file")
    size = path.stat().st_size
    if size > MAX_RECIPE_BYTES:
        raise RecipeError(f"recipe {path} has {size:,} bytes; a recipe is a small JSON file "
                          f"(at most {MAX_RECIPE_BYTES:,} bytes)")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_RECIPE_BYTES + 1)
    except OSError as e:
        raise RecipeError(f"recipe {path}: cannot be read ({e.strerror or e})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecipeError(f"recipe {path} is not UTF-8 text (byte {e.start}: "
                          f"{raw[e.start:e.start + 1]!r}); expected a JSON file") from None


def parse_recipe(text, source="<recipe>"):
    """JSON text → dict; NaN/Infinity, duplicate keys and deep nesting are refused."""
    if _nesting(text) > MAX_NESTING:
        raise RecipeError(f"{source}: JSON nested deeper than {MAX_NESTING} levels; a recipe is "
                          f"an object of stage objects")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise RecipeError(f"{source}: not valid JSON ({e})") from None
    except RecipeError as e:
        raise RecipeError(f"{source}: {e}") from None
    except RecursionError:
        raise RecipeError(f"{source}: JSON nested too deeply") from None


def load_recipe(path) -> dict:
    """Read, parse and validate a recipe file (see :func:`validate`)."""
    return validate(parse_recipe(read_recipe_text(path), str(path)))
