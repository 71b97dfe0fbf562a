"""Hostile input to the command line: every case ends in ONE line ``error: ...`` (or argparse's
one-line usage error) naming the argument or file, a non-zero exit, and no traceback — and
nothing is trained or written first. The CLI runs in-process (``main([...])``) to stay fast."""
import gzip
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from minicompress import data, models
from minicompress.__main__ import main
from minicompress.quantize import calibrate, convert, prepare
from minicompress.serialize import input_spec, save_integer_model

REPO = Path(__file__).resolve().parent.parent
TINY = {"seed": 0, "dataset": "digits", "batch_size": 64,
        "teacher": {"model": "lenet300", "epochs": 1},
        "distill": {"model": "student", "hidden": 8, "epochs": 1},
        "prune": {"sparsity": 0.5, "epochs": 1, "lr": 1e-3},
        "quantize": {"weight_bits": 4, "activation_bits": 8, "epochs": 0}}


def run_cli(argv, capsys):
    """(exit status, stderr) of ``main(argv)``; asserts the failure contract on the way."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return code, err


def assert_one_line_error(code, err, words):
    assert code != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], (w, lines[0])


def write_recipe(tmp_path, recipe, name="r.json"):
    p = tmp_path / name
    p.write_text(recipe if isinstance(recipe, str) else json.dumps(recipe))
    return p


def with_stage(stage, **values):
    r = json.loads(json.dumps(TINY))
    r[stage] = None if values.get("_null") else dict(r.get(stage, {}), **values)
    return r


# ---- recipes: values -----------------------------------------------------------------------------
RECIPE_CASES = {
    "unknown teacher model": (with_stage("teacher", model="vgg"), ["teacher.model", "vgg", "lenet300"]),
    "unknown student model": (with_stage("distill", model="resnet"), ["distill.model", "resnet"]),
    "lr NaN": ('{"dataset": "digits", "teacher": {"lr": NaN}}', ["NaN"]),
    "lr Infinity": ('{"dataset": "digits", "teacher": {"lr": Infinity}}', ["Infinity"]),
    "lr 1e999 (inf)": ('{"dataset": "digits", "distill": {"lr": 1e999}}', ["distill.lr", "finite"]),
    "lr 0": (with_stage("teacher", lr=0), ["teacher.lr", "(0, 1]"]),
    "lr negative": (with_stage("prune", lr=-1e-3), ["prune.lr"]),
    "score_lr 0": (with_stage("prune", score_lr=0.0), ["prune.score_lr"]),
    "lr_delta 5": (with_stage("quantize", lr_delta=5.0), ["quantize.lr_delta"]),
    "epochs 0.5": (with_stage("distill", epochs=0.5), ["distill.epochs", "integer", "0.5"]),
    "epochs 1.7": (with_stage("teacher", epochs=1.7), ["teacher.epochs", "1.7"]),
    "epochs 0 (teacher)": (with_stage("teacher", epochs=0), ["teacher.epochs", "[1, 1000]"]),
    "epochs inf": ('{"dataset": "digits", "teacher": {"epochs": 1e999}}', ["teacher.epochs", "inf"]),
    "epochs NaN": ('{"dataset": "digits", "distill": {"epochs": NaN}}', ["NaN"]),
    "epochs true": (with_stage("distill", epochs=True), ["distill.epochs", "True"]),
    "epochs huge": (with_stage("prune", epochs=10 ** 9), ["prune.epochs", "1000"]),
    "hidden 0": (with_stage("distill", hidden=0), ["distill.hidden"]),
    "hidden 2.5": (with_stage("distill", hidden=2.5), ["distill.hidden", "2.5"]),
    "hidden huge": (with_stage("distill", hidden=10 ** 7), ["distill.hidden", "4096"]),
    "temperature NaN": ('{"dataset": "digits", "distill": {"temperature": NaN}}', ["NaN"]),
    "temperature inf": ('{"dataset": "digits", "prune": {"temperature": 1e999}}', ["prune.temperature"]),
    "temperature 0": (with_stage("quantize", temperature=0), ["quantize.temperature"]),
    "temperature 1e-300 (z/T overflows)": (with_stage("distill", temperature=1e-300),
                                           ["distill.temperature", "[0.01, 100]"]),
    "alpha -0.1": (with_stage("distill", alpha=-0.1), ["distill.alpha", "[0, 1]"]),
    "sparsity 1": (with_stage("prune", sparsity=1.0), ["prune.sparsity", "[0, 1)"]),
    "sparsity string": (with_stage("prune", sparsity="0.9"), ["prune.sparsity"]),
    "bits 2.0": (with_stage("quantize", weight_bits=2.0), ["quantize.weight_bits", "integer"]),
    "bits true": (with_stage("quantize", activation_bits=True), ["quantize.activation_bits"]),
    "bits 17": (with_stage("quantize", weight_bits=17), ["quantize.weight_bits", "[2, 16]"]),
    "W16/A16 overflows the exporter": (with_stage("quantize", weight_bits=16, activation_bits=16),
                                       ["weight_bits=16", "int32", "fc2"]),
    "W12/A16 overflows a hidden layer": ({"dataset": "fashion-mnist", "distill": {"hidden": 64},
                                          "quantize": {"weight_bits": 12, "activation_bits": 16}},
                                         ["weight_bits=12", "16-bit", "fc2", "64 inputs"]),
    "W13/A8 overflows the teacher's fc1": ({"dataset": "mnist", "distill": None,
                                            "quantize": {"weight_bits": 13}},
                                           ["weight_bits=13", "8-bit", "fc1", "3136 inputs"]),
    "lr a 400-digit integer": (with_stage("prune", lr=10 ** 400), ["prune.lr", "finite number"]),
    "per_channel 1": (with_stage("quantize", per_channel=1), ["quantize.per_channel", "true or false"]),
    "skip 'yes'": (with_stage("prune", skip="yes"), ["prune.skip"]),
    "lr_schedule 3": (with_stage("distill", lr_schedule=3), ["distill.lr_schedule", "cosine"]),
    "unknown key": (with_stage("distill", temprature=2), ["temprature", "temperature"]),
    "stage is a string": (dict(TINY, prune="yes"), ["prune", "object or null"]),
    "all stages null": ({"dataset": "digits", **{s: None for s in
                                                 ("teacher", "distill", "prune", "quantize", "export")}},
                        ["teacher"]),
    "teacher null": (dict(TINY, teacher=None), ["teacher", "null"]),
    "export null (nothing for --out)": (dict(TINY, export=None), ["export", "--out"]),
    "quantize null, export kept": (dict(TINY, quantize=None), ["export", "quantize"]),
    "seed -1": (dict(TINY, seed=-1), ["seed"]),
    "seed 1.5": (dict(TINY, seed=1.5), ["seed", "1.5"]),
    "batch_size 0": (dict(TINY, batch_size=0), ["batch_size"]),
    "batch_size true": (dict(TINY, batch_size=True), ["batch_size", "True"]),
    "batch_size huge": (dict(TINY, batch_size=10 ** 6), ["batch_size", "4096"]),
    "unknown dataset": (dict(TINY, dataset="cifar"), ["dataset", "cifar", "digits"]),
    "dataset number": (dict(TINY, dataset=3), ["dataset"]),
    "top level is a list": ("[1, 2]", ["JSON object", "list"]),
    "top level is a number": ("3", ["JSON object", "int"]),
    "not JSON": ("{'dataset': 'digits'}", ["not valid JSON"]),
    "duplicate key": ('{"seed": 1, "seed": 2}', ["duplicate", "seed"]),
    "deeply nested": ("[" * 100000 + "]" * 100000, ["nested"]),
    "checkpoint a number": (with_stage("teacher", checkpoint=3), ["teacher.checkpoint"]),
    "checkpoint /dev/zero": (with_stage("teacher", checkpoint="/dev/zero"),
                             ["teacher.checkpoint", "/dev/zero", "regular file"]),
    "checkpoint missing": (with_stage("teacher", checkpoint="/nonexistent/t.npz"),
                           ["teacher.checkpoint", "/nonexistent/t.npz", "no such file"]),
}


@pytest.mark.parametrize("name", sorted(RECIPE_CASES))
def test_bad_recipe_is_one_line_before_training(name, tmp_path, capsys):
    recipe, words = RECIPE_CASES[name]
    path = write_recipe(tmp_path, recipe)
    code, err = run_cli(["compress", "--recipe", path, "--out", tmp_path / "m.npz", "--quiet"], capsys)
    assert_one_line_error(code, err, ["error:"] + words)
    assert not (tmp_path / "m.npz").exists()


def test_non_utf8_recipe(tmp_path, capsys):
    path = tmp_path / "r.json"
    path.write_bytes(b'{"dataset": "d\xffigits"}')
    code, err = run_cli(["compress", "--recipe", path, "--out", tmp_path / "m.npz"], capsys)
    assert_one_line_error(code, err, ["r.json", "UTF-8"])


def test_oversized_recipe(tmp_path, capsys):
    path = tmp_path / "r.json"
    path.write_text(" " * (2 << 20) + "{}")
    code, err = run_cli(["compress", "--recipe", path, "--out", tmp_path / "m.npz"], capsys)
    assert_one_line_error(code, err, ["r.json", "bytes"])


@pytest.mark.parametrize("content", ["text", "other model", "directory"])
def test_checkpoint_that_is_not_the_teacher(content, tmp_path, capsys, rng):
    ckpt = tmp_path / "t.npz"
    if content == "text":
        ckpt.write_text("not a model")
    elif content == "other model":
        from minicompress.io import save_model
        save_model(models.student(8, rng=rng), ckpt)
    else:
        ckpt.mkdir()
    path = write_recipe(tmp_path, with_stage("teacher", checkpoint=str(ckpt)))
    code, err = run_cli(["compress", "--recipe", path, "--out", tmp_path / "m.npz"], capsys)
    assert_one_line_error(code, err, ["teacher.checkpoint", str(ckpt)])


# ---- recipes: paths ----------------------------------------------------------------------------
def test_output_folder_that_refuses_files_is_found_before_training(tmp_path, capsys, monkeypatch):
    """access() can say a folder is writable where no file can be made in it (as root, on /proc,
    some network mounts): a file is really created and removed there first, so the error comes
    before training, names the argument, and a folder that takes files keeps no probe behind."""
    import minicompress.__main__ as cli
    recipe = write_recipe(tmp_path, TINY)
    out = tmp_path / "out"
    out.mkdir()
    cli.output_file(out / "m.npz", "--out", ".npz")
    assert list(out.iterdir()) == []                          # the probe file is gone

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(cli.tempfile, "NamedTemporaryFile", refuse)
    code, err = run_cli(["compress", "--recipe", recipe, "--out", out / "m.npz", "--quiet"], capsys)
    assert_one_line_error(code, err, ["--out", "m.npz", "cannot create a file", "Permission denied"])
    assert list(out.iterdir()) == []


def test_recipe_paths(tmp_path, capsys):
    out = tmp_path / "m.npz"
    cases = [
        (["--recipe", tmp_path], ["--recipe", "directory"]),
        (["--recipe", tmp_path / "missing.json"], ["--recipe", "missing.json", "no such file"]),
        (["--recipe", write_recipe(tmp_path, "", "empty.json")], ["--recipe", "empty.json", "empty"]),
    ]
    for args, words in cases:
        code, err = run_cli(["compress", *args, "--out", out], capsys)
        assert_one_line_error(code, err, words)
    assert not out.exists()


def test_output_paths_checked_before_training(tmp_path, capsys):
    recipe = write_recipe(tmp_path, TINY)
    (tmp_path / "a_dir.npz").mkdir()
    (tmp_path / "a_file").write_text("x")
    same_as_recipe = write_recipe(tmp_path, TINY, "r.npz")
    os.link(recipe, tmp_path / "hardlink.json")
    (tmp_path / "link.json").symlink_to(tmp_path / "m.npz")
    cases = [
        (["--out", tmp_path / "a_dir.npz"], ["--out", "a_dir.npz", "directory"]),
        (["--out", tmp_path / "a_file" / "m.npz"], ["--out", "a_file", "not a folder"]),
        (["--out", tmp_path / "m.txt"], ["--out", "m.txt", ".npz"]),
        (["--out", tmp_path / "m.npz", "--report", tmp_path / "r.txt"], ["--report", ".json"]),
        (["--out", tmp_path / "m.npz", "--report", tmp_path / "a_file" / "r.json"], ["--report", "a_file"]),
        (["--out", tmp_path / "m.npz", "--report", recipe], ["--recipe", "--report", "same file"]),
        (["--out", tmp_path / "m.npz", "--report", tmp_path / "hardlink.json"], ["--recipe", "--report"]),
        (["--out", tmp_path / "m.npz", "--report", tmp_path / "link.json"], ["--out", "--report"]),
    ]
    for args, words in cases:
        code, err = run_cli(["compress", "--recipe", recipe, *args, "--quiet"], capsys)
        assert_one_line_error(code, err, ["error"] + words)
    # the recipe itself as --out (it happens to end in .npz): it must not be overwritten
    before = same_as_recipe.read_bytes()
    code, err = run_cli(["compress", "--recipe", same_as_recipe, "--out", same_as_recipe], capsys)
    assert_one_line_error(code, err, ["--recipe", "--out", "same file"])
    assert same_as_recipe.read_bytes() == before
    # the teacher checkpoint as --out
    ckpt = tmp_path / "t.npz"
    from minicompress.io import save_model
    save_model(models.lenet300(8, rng=np.random.default_rng(0)), ckpt)
    r2 = write_recipe(tmp_path, with_stage("teacher", checkpoint=str(ckpt)), "r2.json")
    code, err = run_cli(["compress", "--recipe", r2, "--out", ckpt], capsys)
    assert_one_line_error(code, err, ["teacher.checkpoint", "--out"])
    assert not (tmp_path / "m.npz").exists() and not (tmp_path / "r.json.part").exists()


# ---- flags of every subcommand -------------------------------------------------------------------
FLAG_CASES = {
    "no subcommand": ([], ["required"]),
    "unknown subcommand": (["squash"], ["squash"]),
    "train: unknown model": (["train", "--model", "vgg", "--out", "{t}/m.npz"], ["--model", "vgg"]),
    "train: no --out": (["train", "--model", "student"], ["--out"]),
    "train: epochs 0": (["train", "--model", "student", "--epochs", "0", "--out", "{t}/m.npz"], ["--epochs", "[1, 1000]"]),
    "train: epochs 0.5": (["train", "--model", "student", "--epochs", "0.5", "--out", "{t}/m.npz"], ["--epochs", "0.5"]),
    "train: epochs -1": (["train", "--model", "student", "--epochs", "-1", "--out", "{t}/m.npz"], ["--epochs"]),
    "train: epochs 1e9": (["train", "--model", "student", "--epochs", "1000000000", "--out", "{t}/m.npz"], ["--epochs"]),
    "train: lr 0": (["train", "--model", "student", "--lr", "0", "--out", "{t}/m.npz"], ["--lr", "(0, 1]"]),
    "train: lr nan": (["train", "--model", "student", "--lr", "nan", "--out", "{t}/m.npz"], ["--lr", "nan"]),
    "train: lr inf": (["train", "--model", "student", "--lr", "inf", "--out", "{t}/m.npz"], ["--lr", "inf"]),
    "train: lr -1": (["train", "--model", "student", "--lr=-1", "--out", "{t}/m.npz"], ["--lr"]),
    "train: lr text": (["train", "--model", "student", "--lr", "fast", "--out", "{t}/m.npz"], ["--lr", "fast"]),
    "train: batch 0": (["train", "--model", "student", "--batch-size", "0", "--out", "{t}/m.npz"], ["--batch-size"]),
    "train: batch huge": (["train", "--model", "student", "--batch-size", "100000", "--out", "{t}/m.npz"], ["--batch-size", "4096"]),
    "train: seed -1": (["train", "--model", "student", "--seed=-1", "--out", "{t}/m.npz"], ["--seed"]),
    "train: unknown dataset": (["train", "--model", "student", "--dataset", "cifar", "--out", "{t}/m.npz"], ["--dataset", "cifar"]),
    "train: --out a folder": (["train", "--model", "student", "--dataset", "digits", "--out", "{t}"], ["--out", ".npz"]),
    "train: --out .txt": (["train", "--model", "student", "--dataset", "digits", "--out", "{t}/m.txt"], ["--out", ".npz"]),
    "train: --out under a file": (["train", "--model", "student", "--dataset", "digits", "--out", "{t}/f/m.npz"], ["--out", "not a folder"]),
    "compress: seed -1": (["compress", "--recipe", "r.json", "--out", "m.npz", "--seed=-1"], ["--seed"]),
    "compress: seed 1.5": (["compress", "--recipe", "r.json", "--out", "m.npz", "--seed", "1.5"], ["--seed"]),
    "compress: no --recipe": (["compress", "--out", "m.npz"], ["--recipe"]),
    "compress: recipe /dev/null": (["compress", "--recipe", "/dev/null", "--out", "m.npz"], ["--recipe", "regular file"]),
    "compress: --out name too long": (["compress", "--recipe", "r.json", "--out", "{t}/" + "a" * 300 + "/m.npz"],
                                      ["--out", "longer than"]),
    "compress: --report a folder named .json": (["compress", "--recipe", "r.json", "--out", "m.npz", "--report", "{t}/d.json"],
                                                ["--report", "d.json", "directory"]),
    "demo: --out-dir name too long": (["demo", "--out-dir", "{t}/" + "a" * 300], ["--out-dir", "longer than"]),
    "evaluate: missing": (["evaluate", "{t}/none.npz"], ["artifact", "none.npz", "no such file"]),
    "evaluate: directory": (["evaluate", "{t}"], ["artifact", "directory"]),
    "evaluate: empty": (["evaluate", "{t}/empty.npz"], ["artifact", "empty.npz", "empty"]),
    "evaluate: text file": (["evaluate", "{t}/notes.txt"], ["notes.txt"]),
    "evaluate: a recipe": (["evaluate", str(REPO / "recipes" / "fashion_10kb.json")], ["fashion_10kb.json"]),
    "evaluate: a checkpoint, not an artifact": (["evaluate", "{t}/ckpt.npz"], ["ckpt.npz"]),
    "evaluate: unknown dataset": (["evaluate", "{t}/ckpt.npz", "--dataset", "cifar"], ["--dataset", "cifar"]),
    "info: missing": (["info", "{t}/none.npz"], ["none.npz", "no such file"]),
    "info: directory": (["info", "{t}"], ["directory"]),
    "info: empty": (["info", "{t}/empty.npz"], ["empty"]),
    "info: text file": (["info", "{t}/notes.txt"], ["notes.txt"]),
    "info: a checkpoint": (["info", "{t}/ckpt.npz"], ["ckpt.npz"]),
    "info: two files": (["info", "{t}/a.npz", "{t}/b.npz"], ["unrecognized"]),
    "demo: --out-dir is a file": (["demo", "--out-dir", "{t}/notes.txt"], ["--out-dir", "notes.txt", "folder"]),
    "demo: --figures is a file": (["demo", "--out-dir", "{t}/o", "--figures", "{t}/notes.txt"], ["--figures"]),
    "demo: unknown flag": (["demo", "--fast"], ["--fast"]),
}


@pytest.mark.parametrize("name", sorted(FLAG_CASES))
def test_bad_flag_is_one_line(name, tmp_path, capsys, monkeypatch, rng):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hello\n")
    (tmp_path / "f").write_text("a file, not a folder")
    (tmp_path / "d.json").mkdir()
    write_recipe(tmp_path, TINY)
    from minicompress.io import save_model
    save_model(models.student(8, rng=rng), tmp_path / "ckpt.npz")
    argv, words = FLAG_CASES[name]
    code, err = run_cli([a.replace("{t}", str(tmp_path)) for a in argv], capsys)
    assert_one_line_error(code, err, words)
    assert not (tmp_path / "m.npz").exists() and not (tmp_path / "o").exists()


def test_help_exits_zero(capsys):
    assert main(["--help"]) == 0
    assert "compress" in capsys.readouterr().out


def test_ctrl_c_is_one_line(monkeypatch, capsys):
    import minicompress.__main__ as cli

    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "cmd_info", interrupted)
    code, err = run_cli(["info", "x.npz"], capsys)
    assert code == 130 and err == "error: interrupted\n"


def test_unexpected_error_is_still_one_line(monkeypatch, capsys):
    import minicompress.__main__ as cli

    def bug(args):
        raise AttributeError("'NoneType' object has no attribute 'shape'")
    monkeypatch.setattr(cli, "cmd_info", bug)
    code, err = run_cli(["info", "x.npz"], capsys)
    assert_one_line_error(code, err, ["internal error AttributeError", "--debug"])


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError):
        main(["--debug", "evaluate", str(REPO / "recipes" / "fashion_10kb.json")])


# ---- artifacts and data sets that do not fit -------------------------------------------------------
def tiny_artifact(path, rng, input_size=8, meta=None):
    """An integer model for input_size² images, without training (calibrated on random data)."""
    model = models.student(input_size, hidden=8, rng=rng)
    x = rng.random((64, 1, input_size, input_size)).astype(np.float32)
    prepare(model, 4, 8, example_input=x, rng=rng)
    calibrate(model, x)
    im = convert(model)
    im.input = input_spec((1, input_size, input_size), 0.0, 1.0)
    save_integer_model(im, path, meta=meta if meta is not None else {"dataset": "digits"})
    return path


def fake_fashion(folder, rng, n_train=5, n_test=3, side=28, **override):
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, side, side)),
              "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, side, side)),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test)}
    folder.mkdir(parents=True, exist_ok=True)
    for stem, a in arrays.items():
        raw = override.get(stem, idx_bytes(a))
        (folder / (stem + ".gz")).write_bytes(gzip.compress(raw, 1))
    return folder


def idx_bytes(a, code=0x08, dims=None):
    dims = a.shape if dims is None else dims
    dtype = {0x08: np.uint8, 0x09: np.int8, 0x0D: ">f4", 0x0E: ">f8", 0x0C: ">i4"}[code]
    return (bytes([0, 0, code, len(dims)]) + b"".join(int(d).to_bytes(4, "big") for d in dims)
            + np.asarray(a).astype(dtype).tobytes())


@pytest.fixture
def no_real_data(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MINICOMPRESS_DATA", raising=False)
    monkeypatch.setattr(data, "_candidate_dirs", lambda name, path: [data.cache_dir() / name])

    def no_network(*a, **k):
        raise OSError("network disabled in tests")
    monkeypatch.setattr(data.urllib.request, "urlopen", no_network)
    return tmp_path


def test_evaluate_on_images_of_another_size(no_real_data, rng, capsys, monkeypatch):
    art = tiny_artifact(no_real_data / "digits.npz", rng)
    monkeypatch.setenv("MINICOMPRESS_DATA", str(fake_fashion(no_real_data / "fm", rng)))
    code, err = run_cli(["evaluate", art, "--dataset", "fashion-mnist"], capsys)
    assert_one_line_error(code, err, ["digits.npz", "fashion-mnist", "(1, 28, 28)"])
    assert main(["evaluate", str(art)]) == 0  # on its own data set it works


def test_evaluate_artifact_without_dataset(no_real_data, rng, capsys):
    art = tiny_artifact(no_real_data / "nometa.npz", rng, meta={})
    code, err = run_cli(["evaluate", art], capsys)
    assert_one_line_error(code, err, ["nometa.npz", "--dataset"])


def test_evaluate_without_the_data_set_is_one_line(no_real_data, rng, capsys):
    art = tiny_artifact(no_real_data / "fm.npz", rng, 28, {"dataset": "fashion-mnist"})
    code, err = run_cli(["evaluate", art], capsys)
    assert_one_line_error(code, err, ["fashion-mnist not found", "apt-get install"])


def test_incomplete_data_folder_names_the_missing_files(no_real_data, rng, capsys, monkeypatch):
    fake_fashion(no_real_data / "cache" / "minicompress" / "fashion-mnist", rng)  # complete copy
    env = fake_fashion(no_real_data / "env", rng)
    (env / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv("MINICOMPRESS_DATA", str(env))
    with pytest.raises(data.DatasetNotFoundError, match="lacks.*t10k-labels-idx1-ubyte"):
        data.load_fashion_mnist()  # no silent fall-back to the complete copy in the cache
    monkeypatch.setenv("MINICOMPRESS_DATA", str(no_real_data / "nowhere"))
    with pytest.raises(data.DatasetNotFoundError, match="MINICOMPRESS_DATA.*not a folder"):
        data.load_fashion_mnist()
    art = tiny_artifact(no_real_data / "fm.npz", rng, 28, {"dataset": "fashion-mnist"})
    monkeypatch.setenv("MINICOMPRESS_DATA", str(env))
    code, err = run_cli(["evaluate", art], capsys)
    assert_one_line_error(code, err, ["t10k-labels-idx1-ubyte", str(env)])


# ---- malformed IDX files -----------------------------------------------------------------------------
def _labels(n=3):
    return idx_bytes(np.arange(n) % 10)


def _images(n=3, side=28):
    return idx_bytes(np.zeros((n, side, side)))


IDX_CASES = {
    "bad magic": (b"\x01\x00\x08\x01" + _labels()[4:], "t10k-labels-idx1-ubyte", "magic"),
    "unknown type code": (b"\x00\x00\x07\x01" + _labels()[4:], "t10k-labels-idx1-ubyte", "magic"),
    "zero dimensions": (b"\x00\x00\x08\x00", "t10k-labels-idx1-ubyte", "0 dimensions"),
    "header cut short": (b"\x00\x00\x08\x03\x00\x00", "t10k-images-idx3-ubyte", "truncated IDX header"),
    "three bytes": (b"\x00\x00\x08", "t10k-labels-idx1-ubyte", "not an IDX file"),
    "truncated data": (_images()[:-5], "t10k-images-idx3-ubyte", "truncated"),
    "extra data": (_images() + b"\x00", "t10k-images-idx3-ubyte", "longer than its header"),
    "labels 2-D": (idx_bytes(np.zeros((3, 1))), "t10k-labels-idx1-ubyte", r"expected \(N\)"),
    "images 2-D": (idx_bytes(np.zeros((3, 784))), "t10k-images-idx3-ubyte", r"expected \(N, 28, 28\)"),
    "images 16x16": (_images(3, 16), "t10k-images-idx3-ubyte", r"\(3, 16, 16\).*\(N, 28, 28\)"),
    "count above the cap": (idx_bytes(np.zeros(3), dims=(10001,)), "t10k-labels-idx1-ubyte", "at most 10,000"),
    "label 10": (idx_bytes(np.array([0, 10, 1])), "t10k-labels-idx1-ubyte", r"\[0, 9\]"),
    "label -1 (int8)": (idx_bytes(np.array([0, -1, 1]), 0x09), "t10k-labels-idx1-ubyte", r"\[0, 9\]"),
    "float labels": (idx_bytes(np.array([0.0, 1.0, 2.0]), 0x0D), "t10k-labels-idx1-ubyte", "integers"),
    "float pixels above 1": (idx_bytes(np.full((3, 28, 28), 2.0), 0x0D), "t10k-images-idx3-ubyte", r"\[0, 1\]"),
    "NaN pixels": (idx_bytes(np.full((3, 28, 28), np.nan), 0x0E), "t10k-images-idx3-ubyte", "finite"),
    "int32 pixels above 255": (idx_bytes(np.full((3, 28, 28), 300), 0x0C), "t10k-images-idx3-ubyte", r"\[0, 255\]"),
    "count mismatch": (_labels(2), "t10k-labels-idx1-ubyte", "3 images but .* 2 labels"),
}


@pytest.mark.parametrize("name", sorted(IDX_CASES))
@pytest.mark.parametrize("gz", [True, False])
def test_malformed_idx_file(name, gz, no_real_data, rng):
    raw, stem, pattern = IDX_CASES[name]
    folder = fake_fashion(no_real_data / "d", rng)
    (folder / (stem + ".gz")).unlink()
    (folder / (stem + (".gz" if gz else ""))).write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(ValueError, match=pattern) as e:
        data.load_fashion_mnist(path=folder)
    assert "count mismatch" in name or stem in str(e.value)


def test_truncated_and_corrupt_gzip(no_real_data, rng):
    folder = fake_fashion(no_real_data / "d", rng)
    target = folder / "train-labels-idx1-ubyte.gz"
    whole = gzip.compress(_labels(5))
    target.write_bytes(whole[:-12])
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.*(corrupt gzip|truncated)"):
        data.load_fashion_mnist(path=folder)
    target.write_bytes(whole[:-8] + bytes(4) + whole[-4:])  # CRC damaged
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.*corrupt gzip"):
        data.load_fashion_mnist(path=folder)


def test_float_pixels_in_unit_range_are_not_divided_again(no_real_data, rng):
    x = rng.random((3, 28, 28))
    folder = fake_fashion(no_real_data / "d", rng,
                          **{"t10k-images-idx3-ubyte": idx_bytes(x, 0x0E)})
    _, (xte, _) = data.load_fashion_mnist(path=folder)
    np.testing.assert_allclose(xte[:, 0], x.astype(np.float32))


def test_lying_header_allocates_nothing(no_real_data, rng):
    """A 60000×28×28 header over a 20-byte raw file is refused from the file length; a 28-byte
    header claiming 4·10⁹ items is refused from the cap — without reading anything."""
    p = no_real_data / "x"
    p.write_bytes(idx_bytes(np.zeros(1), dims=(60000, 28, 28))[:20])
    with pytest.raises(ValueError, match="needs 47040016"):
        data.read_idx_file(p, "train-images-idx3-ubyte")
    p.write_bytes(idx_bytes(np.zeros(0), dims=(4_000_000_000, 28, 28)))
    with pytest.raises(ValueError, match="at most 60,000"):
        data.read_idx_file(p, "train-images-idx3-ubyte")
    with pytest.raises(ValueError, match="more than"):
        data.read_idx(p)  # no expected shape: the general byte cap


def test_gzip_bomb_is_read_in_bounded_memory(no_real_data):
    """A 10000-image header followed by 64 MB of zeros (a ~64 KB archive): the reader inflates at
    most the 7.84 MB the header declares, plus one byte, then refuses the file."""
    declared = idx_bytes(np.zeros((10000, 28, 28)))
    p = no_real_data / "t10k-images-idx3-ubyte.gz"
    with gzip.open(p, "wb", compresslevel=1) as f:
        f.write(declared)
        f.write(bytes(64 << 20))
    assert p.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="longer than its header"):
            data.read_idx_file(p, "t10k-images-idx3-ubyte")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(declared), peak  # far below the 64 MB an unbounded read would take


# ---- what a newcomer sees ------------------------------------------------------------------------------
class _Tty:
    def __init__(self, tty):
        self.parts, self.tty = [], tty

    def write(self, s):
        self.parts.append(s)

    def flush(self):
        pass

    def isatty(self):
        return self.tty


@pytest.mark.parametrize("tty", [True, False])
def test_progress_redraws_only_on_a_terminal(tty, monkeypatch, rng, digits):
    from minicompress import optim, train
    stream = _Tty(tty)
    monkeypatch.setattr(train.sys, "stderr", stream)
    monkeypatch.setattr(train.time, "perf_counter", iter(range(0, 10 ** 6, 1)).__next__)  # 1 s/step
    (xtr, ytr), _ = digits
    model = models.student(8, hidden=8, rng=rng)
    train.fit(model, optim.Adam(model.parameters()), (xtr[:640], ytr[:640]),
              train.TrainConfig(3, rng, batch_size=64, progress=True, desc="t"))
    text = "".join(stream.parts)
    if tty:
        assert text.count("\r") >= 3 * 10  # every step redraws (each takes a 'second')
    else:
        assert "\r" not in text
        lines = text.splitlines()
        assert len(lines) == 3 and all(f"epoch {e}/3" in l and "10/10" in l and "loss=" in l
                                       for e, l in zip((1, 2, 3), lines))


def test_importing_figures_changes_no_matplotlib_state():
    code = ("import matplotlib; b = matplotlib.get_backend(); r = dict(matplotlib.rcParams)\n"
            "import minicompress.figures\n"
            "assert matplotlib.get_backend() == b, (b, matplotlib.get_backend())\n"
            "assert dict(matplotlib.rcParams) == r\n")
    env = dict(os.environ, MPLBACKEND="template", PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_demo_writes_only_under_its_out_dir(tmp_path, monkeypatch, capsys):
    import minicompress.recipe as recipe_module
    tiny = write_recipe(tmp_path, TINY, "demo.json")
    monkeypatch.setattr(recipe_module, "DEMO_RECIPE", tiny)
    figures = REPO / "figures"
    before = {p: p.stat().st_mtime_ns for p in figures.rglob("*")}
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--out-dir", str(tmp_path / "out"), "--quiet"]) == 0
    assert {p: p.stat().st_mtime_ns for p in figures.rglob("*")} == before
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "demo_model.npz", "demo_report.json", "pipeline_demo_stages.png"]
