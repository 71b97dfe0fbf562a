"""The combined pipeline, its recipe checks, the artifact file and the command line."""
import hashlib
import io
import json
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from minicompress import models
from minicompress.__main__ import main
from minicompress.artifact import (ArtifactError, BlobWriter, decode_codes, encode_codes,
                                   gap_bytes, positions_from_gaps, read_artifact, read_tensor,
                                   write_artifact)
from minicompress.pipeline import run
from minicompress.quantize import calibrate, convert, prepare
from minicompress.recipe import RecipeError, validate
from minicompress.data import standardization
from minicompress.serialize import input_spec, load_integer_model, save_integer_model

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import run_artifact_standalone as standalone  # noqa: E402

TINY = {
    "seed": 3, "dataset": "digits", "batch_size": 64,
    "teacher": {"model": "teacher", "epochs": 2},
    "distill": {"model": "student", "hidden": 16, "epochs": 3, "temperature": 2.0, "alpha": 0.5},
    "prune": {"sparsity": 0.5, "epochs": 1, "lr": 1e-3},
    "quantize": {"weight_bits": 4, "activation_bits": 8, "epochs": 1},
}


# ---- recipes -----------------------------------------------------------------------------------
def test_recipe_fills_defaults_and_skips_null():
    r = validate({"dataset": "digits", "prune": None, "export": None})
    assert r["prune"]["skip"] is True and r["export"]["skip"] is True
    assert r["quantize"]["weight_bits"] == 4 and r["distill"]["skip"] is False


@pytest.mark.parametrize("recipe,words", [
    ({"prnue": {}}, ["prnue", "teacher", "distill", "prune", "quantize", "export"]),
    ({"prune": {"sparsty": 0.5}}, ["sparsty", "sparsity", "epochs"]),
    ({"quantize": {"weight_bits": 1}}, ["weight_bits", "[2, 16]"]),
    ({"prune": {"sparsity": 1.0}}, ["sparsity", "[0, 1)"]),
    ({"distill": {"alpha": 1.5}}, ["alpha"]),
    ({"distill": {"lr_schedule": "cosin"}}, ["lr_schedule", "cosin", "constant", "cosine"]),
    ({"dataset": "cifar"}, ["cifar", "digits"]),
    ({"quantize": None}, ["export", "quantize"]),
])
def test_recipe_errors_name_the_key_and_the_valid_ones(recipe, words):
    with pytest.raises(RecipeError) as e:
        validate(recipe)
    for w in words:
        assert w in str(e.value)


def test_compress_rejects_bad_recipe_before_training(tmp_path, capsys):
    bad = tmp_path / "r.json"
    bad.write_text(json.dumps({"dataset": "digits", "distill": {"temprature": 2}}))
    assert main(["compress", "--recipe", str(bad), "--out", str(tmp_path / "m.npz")]) == 2
    assert "temprature" in capsys.readouterr().err
    assert not (tmp_path / "m.npz").exists()


# ---- codes and container -----------------------------------------------------------------------
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("density", [1.0, 0.05])
def test_codes_roundtrip_and_pick_the_smaller_encoding(rng, bits, density):
    hi = 2 ** (bits - 1) - 1
    q = rng.integers(-hi, hi + 1, size=(13, 37))
    q[rng.random(q.shape) > density] = 0
    data, entry = encode_codes(q, bits, ("packed", "sparse", "sparse_gaps"))
    np.testing.assert_array_equal(decode_codes(data, entry), q)
    nnz = int((q != 0).sum())
    values = -(-nnz * bits // 8)
    expected = {"packed": -(-q.size * bits // 8), "sparse": -(-q.size // 8) + values,
                "sparse_gaps": len(gap_bytes(np.flatnonzero(q))) + values}
    assert len(data) == expected[entry["encoding"]]
    # the choice is by deflated size: no other encoding deflates smaller
    others = [encode_codes_as(q, bits, e) for e in expected if e != entry["encoding"]]
    assert all(len(zlib.compress(data, 9)) <= len(zlib.compress(o, 9)) for o in others)


def encode_codes_as(q, bits, encoding):
    from minicompress.quantize.bitpack import pack_bits
    flat = q.ravel()
    values = pack_bits(flat[flat != 0], bits).tobytes()
    return {"packed": pack_bits(flat, bits).tobytes(),
            "sparse": np.packbits(flat != 0).tobytes() + values,
            "sparse_gaps": gap_bytes(np.flatnonzero(flat)) + values}[encoding]


@pytest.mark.parametrize("positions", [[], [0], [254, 255, 509, 510], [3, 70000]])
def test_gap_bytes_roundtrip(positions):
    np.testing.assert_array_equal(positions_from_gaps(gap_bytes(positions)), positions)
    assert len(gap_bytes([0, 1, 2])) == 3 and gap_bytes([300]) == bytes([255, 45])


def test_sparse_gaps_is_chosen_at_high_sparsity(rng):
    q = np.zeros((300, 784), np.int64)
    q.ravel()[rng.choice(q.size, 2000, replace=False)] = 3
    data, entry = encode_codes(q, 4)
    assert entry["encoding"] == "sparse_gaps"
    np.testing.assert_array_equal(decode_codes(data, entry), q)


def _small_artifact(path, rng):
    blob = BlobWriter()
    entries = [blob.add_codes(rng.integers(-7, 8, size=(4, 5)), 4),
               blob.add_raw(rng.standard_normal(3).astype(np.float32))]
    write_artifact(path, {"tensors": entries}, blob.getvalue())
    return entries


def test_artifact_is_deterministic_and_valid(tmp_path, rng):
    e1 = _small_artifact(tmp_path / "a.npz", np.random.default_rng(0))
    _small_artifact(tmp_path / "b.npz", np.random.default_rng(0))
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    header, blob = read_artifact(tmp_path / "a.npz")
    assert header["tensors"] == e1
    assert read_tensor(blob, e1[1]).dtype == np.float32


def _rewrite(src, dst, change):
    """Copy an artifact, letting ``change(name, bytes) -> bytes`` alter a member."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, change(info.filename, zin.read(info.filename)))


def _npy(array):
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


def test_damaged_artifacts_are_rejected(tmp_path, rng):
    good = tmp_path / "good.npz"
    _small_artifact(good, rng)
    raw = good.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ArtifactError):
        read_artifact(tmp_path / "trunc.npz")

    def flip_blob(name, data):
        if name == "blob.npy":
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        return data
    _rewrite(good, tmp_path / "altered.npz", flip_blob)
    with pytest.raises(ArtifactError, match="checksum"):
        read_artifact(tmp_path / "altered.npz")

    def pickled(name, data):
        return _npy(np.array([{"evil": 1}], dtype=object)) if name == "header.npy" else data
    _rewrite(good, tmp_path / "pickled.npz", pickled)
    with pytest.raises(ArtifactError):
        read_artifact(tmp_path / "pickled.npz")


def test_other_format_version_is_rejected(tmp_path):
    from minicompress.artifact import FORMAT_NAME, artifact_bytes
    for version in (4, True, "3"):
        (tmp_path / "v.npz").write_bytes(artifact_bytes(
            {"format": FORMAT_NAME, "format_version": version}, b""))
        with pytest.raises(ArtifactError, match="format version"):
            read_artifact(tmp_path / "v.npz")


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    import minicompress.artifact as art

    def boom(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(art, "_npy_bytes", boom)
    with pytest.raises(KeyboardInterrupt):
        write_artifact(tmp_path / "m.npz", {}, b"abc")
    assert list(tmp_path.iterdir()) == []


# ---- the integer model in the file, read by an independent program -----------------------------
def test_standalone_reader_matches_integer_conv_model(tmp_path, digits, rng):
    (xtr, _), (xte, _) = digits
    model = models.lenet5(8, rng=rng)
    prepare(model, 4, 8, input_kind="auto", example_input=xtr[:200])
    calibrate(model, xtr[:200])
    im = convert(model)
    im.input = input_spec((1, 8, 8), *standardization("digits"))
    path = save_integer_model(im, tmp_path / "lenet5.npz")
    header, blob = standalone.read(path)
    np.testing.assert_array_equal(standalone.run(header, blob, xte[:50]), im.forward(xte[:50]))
    np.testing.assert_array_equal(load_integer_model(path).forward(xte[:50]), im.forward(xte[:50]))


# ---- the whole pipeline ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("pipe")
    result = run(TINY, out=d / "a.npz", report=d / "report.json", progress=False)
    return d, result


def test_pipeline_records_every_stage(tiny_run):
    d, result = tiny_run
    stages = [r["stage"] for r in result["stages"]]
    assert stages == ["teacher", "distill", "prune", "quantize", "export"]
    prune = result["stages"][2]
    weights = 64 * 16 + 16 * 10
    assert prune["nonzeros"] == prune["parameters"] - round(0.5 * weights)  # biases are not pruned
    assert result["artifact"]["bytes"] == (d / "a.npz").stat().st_size
    assert json.loads((d / "report.json").read_text())["stages"] == result["stages"]
    assert result["stages"][-1]["bytes"] < result["stages"][0]["bytes"] / 20


def test_evaluate_reproduces_the_report_exactly(tiny_run, capsys):
    d, result = tiny_run
    assert main(["evaluate", str(d / "a.npz")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["accuracy"] == result["artifact"]["accuracy"]
    assert main(["info", str(d / "a.npz")]) == 0
    assert "int4" in capsys.readouterr().out


def test_same_seed_same_artifact_bytes(tiny_run, tmp_path):
    d, _ = tiny_run
    run(TINY, out=tmp_path / "b.npz", progress=False)
    assert hashlib.sha256((d / "a.npz").read_bytes()).digest() == \
        hashlib.sha256((tmp_path / "b.npz").read_bytes()).digest()


def test_compressing_the_teacher_itself_keeps_the_teacher_intact(digits):
    recipe = {"seed": 1, "dataset": "digits", "batch_size": 64,
              "teacher": {"model": "student", "epochs": 2}, "distill": None,
              "prune": {"sparsity": 0.5, "epochs": 1, "lr": 1e-3}, "quantize": None, "export": None}
    from minicompress.pipeline import PipelineRun, stage_prune, stage_teacher
    r = PipelineRun(recipe, progress=False, data=digits)
    stage_teacher(r)
    before = {k: v.copy() for k, v in r.teacher.state_dict().items()}
    stage_prune(r)
    assert r.subject is not r.teacher
    for k, v in r.teacher.state_dict().items():
        np.testing.assert_array_equal(v, before[k])  # the teacher is untouched
    assert all(p.requires_grad for n, p in r.subject.named_parameters()
               if n.endswith((".weight", ".bias")))
    w = r.subject.fc1.effective_weight()
    assert (w == 0).sum() > 0 and not np.array_equal(w, before["fc1.weight"])  # the copy trained


def test_standalone_reader_matches_pruned_pipeline_artifact(tiny_run, digits):
    d, _ = tiny_run
    _, (xte, _) = digits
    header, blob = standalone.read(d / "a.npz")
    assert {s["weight"]["encoding"] for s in header["steps"] if "weight" in s} - {"packed"}
    np.testing.assert_array_equal(standalone.run(header, blob, xte),
                                  load_integer_model(d / "a.npz").forward(xte))
