"""Command line: ``python -m minicompress {demo,train,compress,evaluate,info} --help``.

Bad input never ends in a traceback: every argument is checked as it is parsed (numbers against
their range, paths before any training starts), and any error of the library is printed as one
line ``error: ...`` with exit status 2. Set ``MINICOMPRESS_DEBUG=1`` (or pass ``--debug``) to
see the traceback instead.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATASETS = ("digits", "fashion-mnist", "mnist")
MODELS = ("lenet300", "lenet5", "teacher", "student")
EXIT_ERROR = 2


class CLIError(ValueError):
    """A bad command-line argument found after parsing (a path, a combination of paths)."""


# ---- argument types: each names what it accepts ------------------------------------------------
def int_in(lo, hi):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer in [{lo}, {hi}], got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"expected an integer in [{lo}, {hi}], got {value}")
        return value
    return parse


def positive_float(hi):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and 0 < value <= hi):
            raise argparse.ArgumentTypeError(f"expected a finite number in (0, {hi:g}], got {text!r}")
        return value
    return parse


# ---- paths -------------------------------------------------------------------------------------
def input_file(path, what):
    """``path`` must be an existing, readable regular file."""
    p = Path(path)
    if os.path.isdir(p):
        raise CLIError(f"{what} {path} is a directory, expected a file")
    if not os.path.exists(p):
        raise CLIError(f"{what} {path}: no such file")
    if not os.path.isfile(p):
        raise CLIError(f"{what} {path} is not a regular file")
    if not os.access(p, os.R_OK):
        raise CLIError(f"{what} {path} is not readable")
    if p.stat().st_size == 0:
        raise CLIError(f"{what} {path} is empty")
    return p


def _existing_ancestor(p, what):
    """The nearest existing folder above ``p``; every name below it must fit the file system."""
    parent = p.absolute().parent
    while not os.path.lexists(parent):
        parent = parent.parent
    limit = os.pathconf(parent, "PC_NAME_MAX") if parent.is_dir() else 255
    for part in p.absolute().relative_to(parent).parts:
        if len(os.fsencode(part)) > limit:
            raise CLIError(f"{what} {str(p)[:60]}...: the name {part[:20]}... is longer than "
                           f"{limit} bytes")
    if not parent.is_dir():
        raise CLIError(f"{what} {p}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CLIError(f"{what} {p}: folder {parent} is not writable")
    try:  # access() can say yes where a file cannot be made (as root, or in /proc): try one
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".minicompress-probe-"):
            pass
    except OSError as error:
        raise CLIError(f"{what} {p}: cannot create a file in {parent} "
                       f"({error.strerror or error})") from None
    return parent


def output_file(path, what, suffix):
    """``path`` can be written: ends in ``suffix``, is not a directory, and its nearest existing
    ancestor is a directory a file can be made in (checked now, by making and removing one,
    not after hours of training)."""
    p = Path(path)
    if p.suffix.lower() != suffix:
        raise CLIError(f"{what} {path} must end in {suffix}")
    if os.path.isdir(p):
        raise CLIError(f"{what} {path} is a directory; give a file name ending in {suffix}")
    if os.path.exists(p) and not os.access(p, os.W_OK):
        raise CLIError(f"{what} {path} exists and is not writable")
    _existing_ancestor(p, what)
    return p


def output_folder(path, what):
    """``path`` is a folder that exists or can be made."""
    p = Path(path)
    if os.path.lexists(p) and not os.path.isdir(p):
        raise CLIError(f"{what} {path} is a file, expected a folder")
    _existing_ancestor(p / "x", what)
    return p


def same_file(a, b):
    """True if paths ``a`` and ``b`` name one file (after symbolic links and hard links)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return False


def distinct(**paths):
    """No two of the named paths (None = not given) may be the same file: writing one would
    destroy the other."""
    given = [(k, v) for k, v in paths.items() if v is not None]
    for i, (ka, a) in enumerate(given):
        for kb, b in given[i + 1:]:
            if same_file(a, b):
                raise CLIError(f"{ka} and {kb} are the same file ({a}); writing one would "
                               f"overwrite the other")


# ---- subcommands -------------------------------------------------------------------------------
def cmd_demo(args):
    from . import pipeline
    from .figures import stage_chart
    from .recipe import DEMO_RECIPE, load_recipe
    out = output_folder(args.out_dir, "--out-dir")
    figures = output_folder(args.figures, "--figures") if args.figures else out
    t0 = time.perf_counter()
    result = pipeline.run(load_recipe(DEMO_RECIPE), out=out / "demo_model.npz",
                          report=out / "demo_report.json", progress=not args.quiet)
    print()
    print(pipeline.format_table(result["stages"]))
    fig = stage_chart(result["stages"], figures / "pipeline_demo_stages.png",
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
    out = output_file(args.out, "--out", ".npz")
    (xtr, ytr), (xte, yte) = load_dataset(args.dataset)
    rng = np.random.default_rng(args.seed)
    model = models.build(args.model, xtr.shape[-1], rng=rng)
    fit(model, optim.Adam(model.parameters(), lr=args.lr), (xtr, ytr),
        TrainConfig(args.epochs, rng, batch_size=args.batch_size, progress=not args.quiet,
                    desc=args.model), eval_data=(xte, yte))
    acc = evaluate(model, xte, yte)["accuracy"]
    save_model(model, out)
    print(json.dumps({"model": args.model, "dataset": args.dataset, "accuracy": acc,
                      "checkpoint": str(out)}))
    return 0


def cmd_compress(args):
    from . import pipeline
    from .recipe import check_feasible, load_recipe
    recipe_path = input_file(args.recipe, "--recipe")
    out = output_file(args.out, "--out", ".npz")
    report = output_file(args.report, "--report", ".json") if args.report else None
    recipe = load_recipe(recipe_path)
    if args.dataset:
        recipe["dataset"] = args.dataset
    if args.seed is not None:
        recipe["seed"] = args.seed
    if recipe["export"]["skip"]:
        raise CLIError(f"--recipe {args.recipe}: its 'export' stage is null, so nothing would be "
                       f"written to --out; remove \"export\": null")
    distinct(**{"--recipe": recipe_path, "--out": out, "--report": report,
                "teacher.checkpoint": recipe["teacher"]["checkpoint"]})
    recipe = check_feasible(recipe)  # checkpoint and bit widths: all before any training starts
    result = pipeline.run(recipe, out=out, report=report, progress=not args.quiet)
    print()
    print(pipeline.format_table(result["stages"]))
    return 0


def _predict_checked(im, x, dataset, artifact):
    """The integer model's predictions for raw images ``x`` (standardised as the file says), or a
    clear error if it was made for images of another size."""
    shape = tuple(im.input["shape"]) if im.input is not None else None
    if shape is not None and shape != tuple(x.shape[1:]):
        raise CLIError(f"{artifact}: the model takes images of shape {shape}, but {dataset} "
                       f"images are {tuple(x.shape[1:])}; pass the --dataset it was made for")
    x = im.standardize(x)
    try:
        im.forward(x[:1])
    except (ValueError, IndexError) as e:
        raise CLIError(f"{artifact}: the model does not take the {dataset} images "
                       f"{tuple(x.shape[1:])} (made for another data set? pass --dataset): "
                       f"{e}") from None
    return im.predict(x)


def cmd_evaluate(args):
    from .data import load_dataset
    if args.predictions is not None:  # checked before any work, and never over the model itself
        output_file(args.predictions, "--predictions", ".npy")
        distinct(artifact=args.artifact, predictions=args.predictions)
    if Path(args.artifact).suffix.lower() == ".onnx":
        return evaluate_onnx(args)
    from .serialize import load_integer_model, read_header
    artifact = input_file(args.artifact, "artifact")
    im = load_integer_model(artifact)
    meta = read_header(artifact).get("meta")
    dataset = args.dataset or (meta.get("dataset") if isinstance(meta, dict) else None)
    if dataset not in DATASETS:
        raise CLIError(f"{artifact}: the artifact names data set {dataset!r}; pass "
                       f"--dataset {{{','.join(DATASETS)}}}")
    _, (xte, yte) = load_dataset(dataset, normalized=False)
    # standardised with the mean/std recorded in the file, i.e. those the model was trained with
    return report_predictions(args, dataset, _predict_checked(im, xte, dataset, artifact), yte)


def evaluate_onnx(args):
    """``evaluate MODEL.onnx``: the exported graph in ONNX Runtime, on un-standardised images
    (the graph standardises them itself)."""
    from .data import load_dataset
    from .export_onnx import OnnxExportError, OnnxRunner
    model = input_file(args.artifact, "model")
    try:
        runner = OnnxRunner(model)
    except (ImportError, OnnxExportError) as e:
        raise CLIError(str(e)) from None
    dataset = args.dataset or runner.meta.get("dataset")
    if dataset not in DATASETS:
        raise CLIError(f"{model}: the ONNX file names data set {dataset!r}; pass "
                       f"--dataset {{{','.join(DATASETS)}}}")
    _, (xte, yte) = load_dataset(dataset, normalized=False)
    return report_predictions(args, dataset, runner.predict(xte), yte)


def report_predictions(args, dataset, pred, yte):
    """Print the accuracy line; with ``--predictions FILE.npy`` also save the labels (atomically)."""
    if args.predictions:
        from .io import atomic_write
        with atomic_write(args.predictions) as f:
            np.save(f, np.asarray(pred, np.int64))
    acc = float((pred == yte).mean())
    print(json.dumps({"artifact": str(args.artifact), "dataset": dataset,
                      "test_images": int(len(yte)), "accuracy": acc}))
    return 0


def cmd_export_onnx(args):
    from .export_onnx import OPSET, OnnxExportError, export_onnx
    artifact = input_file(args.artifact, "artifact")
    out = output_file(args.out, "--out", ".onnx")
    distinct(artifact=artifact, out=out)
    try:
        out = export_onnx(artifact, out)
    except (ImportError, OnnxExportError) as e:
        raise CLIError(str(e)) from None
    print(f"{out}: {out.stat().st_size:,} bytes (ONNX opset {OPSET}), "
          f"from {artifact} ({artifact.stat().st_size:,} bytes)")
    return 0


def cmd_info(args):
    from .serialize import load_integer_model, read_header
    artifact = input_file(args.artifact, "artifact")
    load_integer_model(artifact)  # validates the whole file, so the header below is well formed
    header = read_header(artifact)
    size = artifact.stat().st_size
    print(f"{artifact}: {size:,} bytes, format {header['format']} v{header['format_version']}, "
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
                     + (f", sparsity {1 - nz / n:.1%}" if nz is not None and n else "")
                     + f", {w['nbytes']:,} bytes")
        print(line)
    if header.get("float_bytes"):
        print(f"  float32 model: {header['float_bytes']:,} bytes → {header['float_bytes'] / size:.1f}x smaller")
    return 0


def cmd_check(args):
    from .check import main as check_main
    argv = [args.notebook, "--timeout", str(args.timeout)] + (["--lang", args.lang] if args.lang else [])
    return check_main(argv)


# ---- parser ------------------------------------------------------------------------------------
class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage block) ending in a pointer to --help."""

    def error(self, message):
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    p = Parser(prog="python -m minicompress",
               description="Pruning, quantization and distillation driven by Adam.")
    p.add_argument("--debug", action="store_true",
                   help="show the Python traceback of an error (also MINICOMPRESS_DEBUG=1)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    d = sub.add_parser("demo", help="the whole pipeline on the embedded 8x8 digits (< 2 min)")
    d.add_argument("--out-dir", default="demo_output",
                   help="where the artifact, report and stage chart go")
    d.add_argument("--figures", default=None, help="where the stage chart goes (default: --out-dir)")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_demo)

    t = sub.add_parser("train", help="train one model and save its state dict (.npz)")
    t.add_argument("--model", choices=MODELS, required=True)
    t.add_argument("--dataset", choices=DATASETS, default="fashion-mnist")
    t.add_argument("--epochs", type=int_in(1, 1000), default=10, help="in [1, 1000]")
    t.add_argument("--lr", type=positive_float(1.0), default=1e-3, help="Adam step size, in (0, 1]")
    t.add_argument("--batch-size", type=int_in(1, 4096), default=128, help="in [1, 4096]")
    t.add_argument("--seed", type=int_in(0, 2 ** 63 - 1), default=0)
    t.add_argument("--out", required=True, help="checkpoint path (.npz)")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train)

    c = sub.add_parser("compress", help="run a recipe: distill → prune → quantize → artifact")
    c.add_argument("--recipe", required=True, help="recipe JSON file (see recipes/)")
    c.add_argument("--dataset", choices=DATASETS, help="override the recipe's data set")
    c.add_argument("--seed", type=int_in(0, 2 ** 63 - 1), help="override the recipe's seed")
    c.add_argument("--out", required=True, help="artifact path (.npz)")
    c.add_argument("--report", help="JSON report path (.json)")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=cmd_compress)

    e = sub.add_parser("evaluate", help="run the integer model of an artifact (.npz) or an exported .onnx file (in ONNX Runtime) on a test set")
    e.add_argument("artifact", help="artifact (.npz) or exported ONNX file (.onnx)")
    e.add_argument("--dataset", choices=DATASETS, help="default: the data set named in the file")
    e.add_argument("--predictions", help="also save the predicted labels here (.npy, int64)")
    e.set_defaults(func=cmd_evaluate)

    x = sub.add_parser("export-onnx", help="write an artifact's integer model as an ONNX graph")
    x.add_argument("artifact", help="artifact (.npz) written by compress or demo")
    x.add_argument("--out", required=True, help="ONNX file to write (.onnx)")
    x.set_defaults(func=cmd_export_onnx)

    i = sub.add_parser("info", help="layers, bits, sparsity and bytes of an artifact")
    i.add_argument("artifact")
    i.set_defaults(func=cmd_info)

    k = sub.add_parser("check", help="check the exercise functions of a (student's) notebook")
    k.add_argument("notebook", help="a notebook (.ipynb) with exercise functions")
    k.add_argument("--lang", choices=["en", "zh"], help="language of the messages (default: the notebook's)")
    k.add_argument("--timeout", type=positive_float(3600.0), default=60.0,
                   help="seconds for the whole check, in (0, 3600] (default 60)")
    k.set_defaults(func=cmd_check)
    return p


def one_line(error) -> str:
    """An exception as one line: its text with line breaks folded (a KeyError's quotes dropped)."""
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    text = " ".join(str(text).split()) or type(error).__name__
    if isinstance(error, OSError) and error.filename is not None and str(error.filename) not in text:
        text = f"{error.filename}: {text}"
    return text


def main(argv=None):
    """Run the command line; returns the exit status (0 ok, 2 bad input or failure, 130 Ctrl-C)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2), already printed
        return e.code if isinstance(e.code, int) else EXIT_ERROR
    debug = args.debug or os.environ.get("MINICOMPRESS_DEBUG", "") not in ("", "0")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, ArithmeticError, LookupError, TypeError, MemoryError,
            RecursionError) as e:
        # ValueError covers RecipeError, ArtifactError, CLIError and UnicodeDecodeError;
        # OSError covers missing/unreadable files and DatasetNotFoundError; ArithmeticError a
        # diverged training (FloatingPointError) or an integer overflow
        if debug:
            raise
        print(f"error: {one_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:  # a bug, not bad input: still one line, and how to see more
        if debug:
            raise
        print(f"error: internal error {type(e).__name__}: {one_line(e)} (rerun with --debug "
              f"for the traceback)", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
