"""Command line: ``python -m minicompress {demo,train,compress,evaluate,info} --help``."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

DATASETS = ("digits", "fashion-mnist", "mnist")


def cmd_demo(args):
    from . import pipeline
    from .figures import stage_chart
    from .recipe import DEMO_RECIPE, load_recipe
    t0 = time.perf_counter()
    out = Path(args.out_dir)
    result = pipeline.run(load_recipe(DEMO_RECIPE), out=out / "demo_model.npz",
                          report=out / "demo_report.json", progress=not args.quiet)
    print()
    print(pipeline.format_table(result["stages"]))
    fig = stage_chart(result["stages"], Path(args.figures) / "pipeline_demo_stages.png",
                      title="minicompress demo on the embedded 8x8 digits")
    print(f"\nartifact {result['artifact']['path']} ({result['artifact']['bytes']} bytes), "
          f"report {out / 'demo_report.json'}, figure {fig}")
    print(f"demo finished in {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_train(args):
    from . import models, optim
    from .data import load_dataset
    from .io import save_model
    from .train import TrainConfig, evaluate, fit
    (xtr, ytr), (xte, yte) = load_dataset(args.dataset)
    rng = np.random.default_rng(args.seed)
    model = models.build(args.model, xtr.shape[-1], rng=rng)
    fit(model, optim.Adam(model.parameters(), lr=args.lr), (xtr, ytr),
        TrainConfig(args.epochs, rng, batch_size=args.batch_size, progress=not args.quiet,
                    desc=args.model), eval_data=(xte, yte))
    acc = evaluate(model, xte, yte)["accuracy"]
    save_model(model, args.out)
    print(json.dumps({"model": args.model, "dataset": args.dataset, "accuracy": acc,
                      "checkpoint": str(args.out)}))
    return 0


def cmd_compress(args):
    from . import pipeline
    from .recipe import load_recipe
    recipe = load_recipe(args.recipe)  # validated before any training starts
    if args.dataset:
        recipe["dataset"] = args.dataset
    if args.seed is not None:
        recipe["seed"] = args.seed
    result = pipeline.run(recipe, out=args.out, report=args.report, progress=not args.quiet)
    print()
    print(pipeline.format_table(result["stages"]))
    return 0


def cmd_evaluate(args):
    from .data import load_dataset
    from .serialize import load_integer_model, read_header
    im = load_integer_model(args.artifact)
    header = read_header(args.artifact)
    dataset = args.dataset or header.get("meta", {}).get("dataset")
    if dataset is None:
        raise SystemExit("evaluate: the artifact does not say its data set; pass --dataset")
    _, (xte, yte) = load_dataset(dataset, normalized=False)
    # standardised with the mean/std recorded in the file, i.e. those the model was trained with
    acc = float((im.predict(im.standardize(xte)) == yte).mean())
    print(json.dumps({"artifact": str(args.artifact), "dataset": dataset,
                      "test_images": int(len(yte)), "accuracy": acc}))
    return 0


def cmd_info(args):
    from .serialize import read_header
    header = read_header(args.artifact)
    size = Path(args.artifact).stat().st_size
    print(f"{args.artifact}: {size:,} bytes, format {header['format']} v{header['format_version']}, "
          f"meta {header.get('meta', {})}")
    total_w = total_nz = 0
    for i, step in enumerate(header["steps"]):
        line = f"  {i:2d} {step['kind']:<15}"
        w = step.get("weight")
        if w:
            n = int(np.prod(w["shape"]))
            nz = int(w["nnz"]) if "nnz" in w else None
            total_w += n
            total_nz += nz if nz is not None else n
            line += (f" weight {tuple(w['shape'])} int{w['bits']} {w['encoding']}"
                     + (f", sparsity {1 - nz / n:.1%}" if nz is not None else "")
                     + f", {w['nbytes']:,} bytes")
        print(line)
    if header.get("float_bytes"):
        print(f"  float32 model: {header['float_bytes']:,} bytes → {header['float_bytes'] / size:.1f}x smaller")
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog="python -m minicompress",
                                description="Pruning, quantization and distillation driven by Adam.")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="the whole pipeline on the embedded 8x8 digits (< 2 min)")
    d.add_argument("--out-dir", default="demo_output", help="where the artifact and report go")
    d.add_argument("--figures", default="figures", help="where the stage chart goes")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_demo)

    t = sub.add_parser("train", help="train one model and save its state dict (.npz)")
    t.add_argument("--model", choices=["lenet300", "lenet5", "teacher", "student"], required=True)
    t.add_argument("--dataset", choices=DATASETS, default="fashion-mnist")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", required=True, help="checkpoint path (.npz)")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train)

    c = sub.add_parser("compress", help="run a recipe: distill → prune → quantize → artifact")
    c.add_argument("--recipe", required=True, help="recipe JSON file (see recipes/)")
    c.add_argument("--dataset", choices=DATASETS, help="override the recipe's data set")
    c.add_argument("--seed", type=int, help="override the recipe's seed")
    c.add_argument("--out", required=True, help="artifact path (.npz)")
    c.add_argument("--report", help="JSON report path")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=cmd_compress)

    e = sub.add_parser("evaluate", help="run the integer model from an artifact on a test set")
    e.add_argument("artifact")
    e.add_argument("--dataset", choices=DATASETS, help="default: the data set named in the file")
    e.set_defaults(func=cmd_evaluate)

    i = sub.add_parser("info", help="layers, bits, sparsity and bytes of an artifact")
    i.add_argument("artifact")
    i.set_defaults(func=cmd_info)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    from .artifact import ArtifactError
    from .recipe import RecipeError
    try:
        return args.func(args)
    except (ArtifactError, RecipeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
