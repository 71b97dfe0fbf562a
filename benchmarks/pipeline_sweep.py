"""Run several pipeline recipes on Fashion-MNIST and plot accuracy vs artifact bytes.

    python benchmarks/pipeline_sweep.py recipes/*.json benchmarks/recipes/*.json

``recipes/`` holds the examples a user starts from, ``benchmarks/recipes/`` the other points of
the sweep. The teacher is the cached dense network of the recipe's teacher model — the 10-epoch
CNN teacher, or lenet5 for the recipes that compress lenet5 itself (``benchmarks/train_dense.py``)
— so each recipe's ``teacher.checkpoint`` is set to it. Each recipe's report goes under
"reports"/<recipe name> in ``benchmarks/results/pipeline_sweep.json`` (reports of recipes not run
this time are kept), with the table of all of them under "configurations"; the figure goes to
``figures/pipeline_pareto.png`` (``--stage-chart`` also draws each recipe's stage table).

Recipes run in one call that agree on everything up to the distilled student (seed, dataset,
batch size, teacher and distill stages) distill it once: the run is copied after the distill stage,
its random generator included, so each recipe's artifact is the one `compress` makes from it alone,
byte for byte; its report's distill row is the shared stage's. Several sweeps may run at once:
each report is written under the results file's lock.

Targets: an artifact ≤ 10.7 KB (≥ 100× smaller than float32 lenet300, 1,066,440 bytes) whose
integer model scores ≥ 88.7 %; a point ≥ 91.0 % at ≤ 40 KB; then ≥ 89.1 % at ≤ 7,000 B, ≥ 90.0 %
at ≤ 12,000 B and ≥ 91.4 % at ≤ 20,000 B.
"""
import argparse
import copy
import json
import time
from pathlib import Path

from common import RESULTS, _machine, dense_model, fashion, locked_results
from minicompress import pipeline
from minicompress.data import cache_dir
from minicompress.figures import pareto_chart, stage_chart
from minicompress.recipe import check_feasible, load_recipe

LENET300_FLOAT32 = 1_066_440
ROOT = Path(__file__).resolve().parent.parent


def sweep():
    """The results file as recorded so far (empty if there is none)."""
    path = RESULTS / "pipeline_sweep.json"
    return json.loads(path.read_text()) if path.exists() else {}


def reports():
    """Every recipe's report recorded so far: {recipe name: report}."""
    return sweep().get("reports", {})


def teacher_checkpoint(teacher, seed, data):
    """The cached dense network of the recipe's teacher stage (its model, epochs and seed),
    trained by ``benchmarks/train_dense.py`` (here, when it is not cached yet)."""
    path = cache_dir() / "checkpoints" / f"{teacher['model']}_fashion_e{teacher['epochs']}_s{seed}.npz"
    if not path.exists():
        dense_model(teacher["model"], epochs=teacher["epochs"], seed=seed, data=data)
    return path


SHARED = ("seed", "dataset", "batch_size", "teacher", "distill")  # what decides the student


def distilled_run(recipe, data, runs):
    """A :class:`pipeline.PipelineRun` of ``recipe`` after its teacher and distill stages — copied
    from ``runs`` (a dict of runs already distilled, keyed by the settings in SHARED) when an
    earlier recipe of this call had the same ones. The data arrays are shared, not copied."""
    key = json.dumps({k: recipe[k] for k in SHARED}, sort_keys=True)
    if key not in runs:
        r = pipeline.PipelineRun(recipe, progress=False, data=data)
        for stage in ("teacher", "distill"):
            if not r.recipe[stage]["skip"]:
                pipeline.STAGE_FUNCTIONS[stage](r)
        if r.recipe["distill"]["skip"]:
            return r          # nothing expensive to share: loading the teacher takes seconds
        runs[key] = r
    base = runs[key]
    arrays = (base.x_train, base.y_train, base.x_test, base.y_test)
    r = copy.deepcopy(base, memo={id(a): a for a in arrays})
    r.recipe = check_feasible(recipe, r.input_size)   # the later stages read the recipe from here
    return r


def run_recipe(recipe, out, data, runs):
    """The pipeline's :func:`pipeline.run` with the distill stage shared (see distilled_run)."""
    r = distilled_run(recipe, data, runs)
    for stage in ("prune", "quantize"):
        if not r.recipe[stage]["skip"]:
            pipeline.STAGE_FUNCTIONS[stage](r)
    if not r.recipe["export"]["skip"]:
        pipeline.stage_export(r, out)
    return r.result()


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("recipes", nargs="*", help="recipe JSON files to run (none: just replot)")
parser.add_argument("--artifacts", default=str(cache_dir() / "artifacts"))
parser.add_argument("--stage-chart", action="store_true",
                    help="also draw figures/pipeline_stages_<recipe>.png for each recipe run; with no recipes, redraw the existing ones from the recorded stage tables")
args = parser.parse_args()

data = fashion()
distilled = {}
for path in args.recipes:
    name = Path(path).stem
    recipe = load_recipe(path)
    recipe["teacher"]["checkpoint"] = str(teacher_checkpoint(recipe["teacher"], recipe["seed"], data))
    t0 = time.perf_counter()
    result = run_recipe(recipe, Path(args.artifacts) / f"{name}.npz", data, distilled)
    result["wall_seconds"] = time.perf_counter() - t0   # without the distill stage when shared
    result["recipe_file"] = str(path)
    print(f"\n== {name} ({result['wall_seconds']:.0f} s)\n" + pipeline.format_table(result["stages"]),
          flush=True)
    result["machine"] = _machine()
    with locked_results("pipeline_sweep") as results:
        results.setdefault("reports", {})[name] = result
    if args.stage_chart:
        stage_chart(result["stages"], ROOT / "figures" / f"pipeline_stages_{name}.png",
                    title=f"{name}: bytes and accuracy per stage (Fashion-MNIST)")

if args.stage_chart and not args.recipes:
    # redraw the stage charts that exist, from the recorded stage tables (no recipe is re-run)
    for name, r in sorted(reports().items()):
        path = ROOT / "figures" / f"pipeline_stages_{name}.png"
        if path.exists() and "stages" in r:
            stage_chart(r["stages"], path, title=f"{name}: bytes and accuracy per stage (Fashion-MNIST)")

rows = []
for name, r in sorted(reports().items()):
    if "artifact" not in r:
        continue
    a = r["artifact"]
    rows.append({"name": name, "bytes": a["bytes"],
                 "accuracy": a["accuracy"], "ratio_vs_lenet300": LENET300_FLOAT32 / a["bytes"],
                 "compress_seconds": r.get("wall_seconds")})
for row in sorted(rows, key=lambda r: r["bytes"]):
    print(f"{row['name']:<28} {row['bytes']:>8,} B  {LENET300_FLOAT32 / row['bytes']:6.1f}x  "
          f"{100 * row['accuracy']:.2f} %")
if rows:
    with locked_results("pipeline_sweep") as results:
        results.update(configurations=rows, lenet300_float32_bytes=LENET300_FLOAT32,
                       machine=_machine())
    pareto_chart([(r["bytes"], r["accuracy"]) for r in rows], [r["name"].removeprefix("fashion_")
                 for r in rows], ROOT / "figures" / "pipeline_pareto.png",
                 title="Fashion-MNIST: integer-model accuracy vs artifact size",
                 anchors=[(LENET300_FLOAT32, 0.8893, "lenet300 float32"),
                          (10_700, 0.887, "target: 10.7 KB, 88.7 %"),
                          (40_000, 0.910, "target: 40 KB, 91.0 %"),
                          (7_000, 0.891, "target: 7 KB, 89.1 %"),
                          (12_000, 0.900, "target: 12 KB, 90.0 %"),
                          (20_000, 0.914, "target: 20 KB, 91.4 %")])
