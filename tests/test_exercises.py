"""The classroom exercises and their checker.

* the registry's hand-computed values agree with the library's own functions;
* every solution notebook passes ``python -m minicompress check``; every student edition fails
  with "not implemented" on every exercise;
* a solution with a typical mistake fails with a message naming the mistake;
* every mistake of the registry is recognised on its own cases;
* the checker runs in a subprocess with a time limit and never executes the rest of the notebook.
"""
import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minicompress import check as C
from minicompress.exercises import EXERCISES

nbformat = pytest.importorskip("nbformat")
jupytext = pytest.importorskip("jupytext")

ROOT = Path(__file__).resolve().parent.parent
# the notebooks with exercises: 01–07 follow the document, 09 and 10 go beyond it (08 is an appendix)
SOURCES = sorted((ROOT / "notebooks").glob("0[1-79]_*.py")) + sorted((ROOT / "notebooks").glob("10_*.py"))


def solution_notebook(py, tmp_path, edit=None):
    """The notebook of ``py`` (no outputs) written to tmp_path, after ``edit(source) -> source``."""
    text = py.read_text()
    if edit:
        text = edit(text)
    nb = jupytext.reads(text, fmt="py:percent")
    path = tmp_path / f"{py.stem}.ipynb"
    nbformat.write(nb, path)
    return path


def by_number(number):
    return next(p for p in SOURCES if p.name.startswith(number))


# ---- the registry ------------------------------------------------------------------------------

def test_every_notebook_has_exercises_and_there_are_at_least_24():
    per = {p.name[:2]: [n for n, e in EXERCISES.items() if e.notebook == p.name[:2]] for p in SOURCES}
    assert all(per.values()), per
    assert len(EXERCISES) >= 24


def test_every_case_has_one_expected_value_per_output():
    for name, e in EXERCISES.items():
        assert e.cases, name
        for case in e.cases:
            assert len(case.expected) == len(e.outputs), name


@pytest.mark.parametrize("name", list(EXERCISES))
def test_every_mistake_is_wrong_and_named(name):
    """Each mistake, written as a student's function, fails, and the message carries its hint."""
    e = EXERCISES[name]
    for mistake in e.mistakes:
        wrong = (lambda **kw: mistake.wrong(**kw)[0]) if len(e.outputs) == 1 else mistake.wrong
        with np.errstate(all="ignore"):
            ok, messages = C.run_exercise(name, wrong)
        assert not ok, (name, mistake.key)
        assert any(mistake.hint["en"] in m for m in messages), (name, mistake.key, messages)


def _case(name, i=0):
    c = EXERCISES[name].cases[i]
    return copy.deepcopy(c.args), c.expected


def test_registry_values_agree_with_the_library():
    from minicompress import distill, prune
    from minicompress.prune.scores import filter_norm_scores
    from minicompress.prune.select import kept_count
    from minicompress.quantize import (affine_dequantize, affine_quantize, asymmetric_params, pack_bits,
                                       quantize_multiplier, requantize, symmetric_delta, zero_point)
    a, (value,) = _case("l1_penalty")
    assert np.isclose(prune.l1_penalty(a["W"], a["m"], a["lam"])[0], value)
    a, (dw, dm) = _case("l1_penalty_grads")
    _, lib_dw, lib_dm = prune.l1_penalty(a["W"], a["m"], a["lam"])
    assert np.allclose(lib_dw, dw) and np.allclose(lib_dm, dm)
    for i in range(2):
        a, (mask,) = _case("topk_mask", i)
        k = kept_count(a["scores"].size, a["sparsity"])
        assert np.array_equal(prune.topk_mask(a["scores"], k), mask.astype(bool))
    for i in range(len(EXERCISES["cubic_sparsity"].cases)):
        a, (s,) = _case("cubic_sparsity", i)
        assert np.isclose(prune.cubic_sparsity(a["t"], a["s_i"], a["s_f"], a["t0"], a["n"], a["dt"]), s)
    a, (l1, l2, med) = _case("filter_scores")
    for score, want in (("l1", l1), ("l2", l2), ("median", med)):
        assert np.allclose(filter_norm_scores(a["W"], score), want)
    for i in range(2):
        a, (delta,) = _case("symmetric_delta", i)
        assert np.isclose(symmetric_delta(a["w"].astype(np.float32), a["n"]).item(), delta, rtol=1e-6)
        a, (delta, r_min) = _case("asymmetric_params", i)
        lib_delta, lib_r = asymmetric_params(a["w"].astype(np.float32), a["n"])
        assert np.isclose(lib_delta.item(), delta, rtol=1e-6) and np.isclose(lib_r.item(), r_min)
    for i in range(len(EXERCISES["zero_point"].cases)):
        a, (z,) = _case("zero_point", i)
        assert zero_point(a["delta"], a["r_min"], a["n"]) == z
    a, (q, x_hat) = _case("affine_roundtrip")
    lib_q = affine_quantize(a["x"].astype(np.float32), a["n"], a["delta"], a["z"])
    assert np.array_equal(lib_q, q) and np.allclose(affine_dequantize(lib_q, a["delta"], a["z"]), x_hat)
    for i in range(len(EXERCISES["quantize_multiplier"].cases)):
        a, (m0, shift) = _case("quantize_multiplier", i)
        lib_m0, lib_shift = quantize_multiplier(np.array([a["M"]]), bits=a["bits"])
        assert (int(lib_m0[0]), int(lib_shift[0])) == (m0, shift)
    for i in range(2):
        a, (qy,) = _case("requantize", i)
        out = requantize(a["acc"].astype(np.int64), np.int64(a["M0"]), np.int64(a["shift"]), a["z"],
                         a["q_lo"], a["q_hi"])
        assert np.array_equal(out, qy)
    for i in range(len(EXERCISES["pack_bits"].cases)):
        a, (packed,) = _case("pack_bits", i)
        assert np.array_equal(pack_bits(a["q"], a["n"]), packed)
    for i in range(len(EXERCISES["softmax_t"].cases)):
        a, (p,) = _case("softmax_t", i)
        assert np.allclose(distill.softmax_with_temperature(a["z"], a["T"]), p)
    for i in range(2):
        a, (loss,) = _case("soft_target_loss", i)
        lib_loss, _ = distill.soft_target_loss(a["z_s"], a["z_t"], a["T"])
        assert np.isclose(lib_loss, loss)
        a, (grad,) = _case("soft_target_grad", i)
        assert np.allclose(distill.soft_target_loss(a["z_s"], a["z_t"], a["T"])[1], grad)


def test_conv_macs_exercise_agrees_with_metrics_macs():
    """The hand-computed MAC counts of notebook 09's exercise are what metrics.macs counts."""
    from minicompress import metrics, nn
    for case in EXERCISES["conv_macs"].cases:
        a = case.args
        layer = nn.Conv2d(a["C"], a["O"], a["k"], stride=a["stride"], padding=a["padding"],
                          rng=np.random.default_rng(0))
        total, _ = metrics.macs(nn.Sequential(conv=layer), (a["C"], a["H"], a["W"]))
        assert total == case.expected[0]


def test_adam_exercise_values_agree_with_optim_adam():
    """One step of optim.Adam from θ = 1 with g = −2 gives the registry's m, v, m̂, v̂ and θ."""
    from minicompress import optim
    from minicompress.nn import Parameter
    a, (m, v) = _case("adam_moments")
    p = Parameter(np.ones(1))
    p.data = p.data.astype(np.float64); p.grad = np.full(1, a["g"])
    opt = optim.Adam([p], lr=0.1, betas=(a["beta1"], a["beta2"]), eps=1e-8)
    opt.step()
    m_hat, v_hat = m / (1 - a["beta1"]), v / (1 - a["beta2"])
    assert np.isclose(p.data[0], 1 - 0.1 * m_hat / (np.sqrt(v_hat) + 1e-8))


# ---- notebooks ---------------------------------------------------------------------------------

@pytest.mark.parametrize("py", SOURCES, ids=[p.stem for p in SOURCES])
def test_solution_notebook_passes_and_student_edition_is_not_implemented(py, tmp_path):
    path = solution_notebook(py, tmp_path)
    results = C.check_notebook(path)
    assert results and all(ok for ok, _ in results.values()), results
    student = C.student_notebook(nbformat.read(path, as_version=4))
    code = str([c.source for c in student.cells if c.cell_type == "code"])
    assert C.BEGIN not in code and C.END not in code
    spath = tmp_path / "student" / path.name
    spath.parent.mkdir()
    nbformat.write(student, spath)
    results = C.check_notebook(spath)
    assert set(results) == set(C.exercise_source(nbformat.read(path, as_version=4))[2])
    for name, (ok, messages) in results.items():
        assert not ok and messages == [C.text("not_implemented", "en")], (name, messages)


# (notebook, exact text of the solution, the slip, words the message must contain)
MISTAKES = [
    ("01", "return m / (1 - beta1 ** t), v / (1 - beta2 ** t)", "return m, v", "bias correction missing"),
    ("01", "theta - alpha * m_hat / (np.sqrt(v_hat) + eps)", "theta - alpha * m_hat / np.sqrt(v_hat + eps)",
     "ε inside the square root"),
    ("04", "return np.sign(x) * np.floor(np.abs(x) + 0.5)", "return np.rint(x)", "to the *even* integer"),
    ("06", "return T * T * float((np.exp(lt) * (lt - ls)).sum(axis=-1).mean())",
     "return float((np.exp(lt) * (lt - ls)).sum(axis=-1).mean())", "T² missing"),
    ("02", "return lam * s * (1 - m), -lam * s * W", "return lam * s * (1 - m), lam * s * W", "L1 sign"),
    ("05", "return int(np.clip(np.rint(-r_min / delta), 0, 2 ** n - 1))",
     "return int(np.clip(np.rint(r_min / delta), 0, 2 ** n - 1))", "zero point sign"),
    ("10", "return q, w[:, 1:] - np.outer(err, h_inv[0, 1:] / h_inv[0, 0])",
     "return q, w[:, 1:] + np.outer(err, h_inv[0, 1:] / h_inv[0, 0])", "the free weights move by −"),
    ("05", "out = (acc * M0 + (1 << (shift - 1))) >> shift", "out = (acc * M0) >> shift", "add 2^(shift−1)"),
    ("09", 'return np.einsum("nok,ok->no", x[:, cols], vals)', 'return np.einsum("nok,ok->on", x[:, cols], vals)',
     "transpose it"),
    ("09", "return (w != 0).sum(axis=1).max() / w.shape[1]", "return np.count_nonzero(w) / w.size",
     "ELL pads every row"),
]


@pytest.mark.parametrize("number, right, wrong, words", MISTAKES, ids=[m[3] for m in MISTAKES])
def test_a_typical_mistake_fails_with_a_message_naming_it(number, right, wrong, words, tmp_path):
    py = by_number(number)
    assert py.read_text().count(right) == 1, f"the solution line changed: {right}"
    path = solution_notebook(py, tmp_path, lambda s: s.replace(right, wrong))
    results = C.check_notebook(path)
    failed = {n: m for n, (ok, m) in results.items() if not ok}
    assert len(failed) == 1, results
    (messages,) = failed.values()
    assert words in " ".join(messages), messages


def _notebook(tmp_path, *sources, name="01_x.ipynb", language=None):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    if language:
        nb.metadata["language"] = language
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def test_only_exercise_cells_and_imports_run(tmp_path):
    """A cell that does not define an exercise is never executed (here it would raise or hang)."""
    path = _notebook(tmp_path, "import numpy as np\nimport this_package_does_not_exist",
                     "raise SystemExit('the whole notebook was executed')\nwhile True: pass",
                     "def adam_moments(m, v, g, beta1, beta2):\n    return beta1*m + (1-beta1)*g, beta2*v + (1-beta2)*g*g")
    results = C.check_notebook(path, names=["adam_moments"])
    assert results == {"adam_moments": (True, [])}


def test_an_endless_loop_times_out_and_a_missing_function_is_named(tmp_path):
    path = _notebook(tmp_path, "def adam_moments(m, v, g, beta1, beta2):\n    while True: pass")
    results = C.check_notebook(path, timeout=3, names=["adam_moments"])
    assert not results["adam_moments"][0] and "timed out" in results["adam_moments"][1][0]
    results = C.check_notebook(path, timeout=30, names=["bias_correction"])
    assert "not found" in results["bias_correction"][1][0]


def test_messages_follow_the_notebook_language(tmp_path):
    path = _notebook(tmp_path, "def adam_moments(m, v, g, beta1, beta2):\n    raise NotImplementedError",
                     language="zh")
    results = C.check_notebook(path, names=["adam_moments"])
    assert results["adam_moments"][1] == [C.text("not_implemented", "zh")]
    assert C.text("not_implemented", "zh") != C.text("not_implemented", "en")


def test_check_in_a_notebook_prints_and_never_raises(capsys):
    def adam_update(theta, m_hat, v_hat, alpha, eps):
        raise NotImplementedError
    assert C.check("adam_update", adam_update) is None           # nothing for the notebook to echo
    assert "not implemented" in capsys.readouterr().out
    assert C.passes("adam_update", lambda theta, m_hat, v_hat, alpha, eps: 1 / 0) is False
    assert "ZeroDivisionError" in capsys.readouterr().out


def test_strip_solutions_keeps_the_indentation_and_rejects_an_unclosed_region():
    src = "def f(x):\n    \"\"\"doc\"\"\"\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\n"
    out = C.strip_solutions(src)
    assert "return x" not in out and "    raise NotImplementedError(\"f: write this function\")" in out
    with pytest.raises(ValueError, match="without"):
        C.strip_solutions("def f():\n    ### BEGIN SOLUTION\n    pass\n")


def test_command_line_exit_codes(tmp_path):
    good = solution_notebook(by_number("01"), tmp_path)
    run = lambda *a: subprocess.run([sys.executable, "-m", "minicompress", "check", *map(str, a)],
                                    capture_output=True, text=True, cwd=ROOT)
    r = run(good)
    assert r.returncode == 0 and "3 of 3 exercises pass" in r.stdout, r.stdout + r.stderr
    student = tmp_path / "s.ipynb"
    nbformat.write(C.student_notebook(nbformat.read(good, as_version=4)), student)
    r = run(student, "--lang", "en")
    assert r.returncode == 1 and r.stdout.count("not implemented") == 3
    broken = tmp_path / "01_broken.ipynb"
    broken.write_text("{ not json")
    r = run(broken)
    assert r.returncode == 2 and r.stderr.startswith("error: check: cannot read notebook") \
        and r.stderr.count("\n") == 1, r.stderr


def test_build_script_writes_student_editions(tmp_path):
    r = subprocess.run([sys.executable, "scripts/build_notebooks.py", "--student", "--lang", "zh",
                        "--out", str(tmp_path), "01"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    nb = nbformat.read(tmp_path / "01_adam_and_backprop.ipynb", as_version=4)
    assert nb.metadata["language"] == "zh"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert sum("raise NotImplementedError" in c.source for c in nb.cells) == 3


def bare_names(source):
    """Names used as plain variables in a cell (not attributes such as ``prune.topk_mask``)."""
    import ast
    source = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    return {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name)}


@pytest.mark.parametrize("py", SOURCES, ids=[p.stem for p in SOURCES])
def test_only_the_check_cell_uses_an_exercise_function(py):
    """So that the student edition (where every exercise raises NotImplementedError) runs to the end:
    an exercise function is called by its check cell only, never by the lesson's other cells."""
    nb = jupytext.read(py)
    _, _, found = C.exercise_source(nb)
    for name, defined_in in found.items():
        users = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and i != defined_in
                 and c.source.strip() != f'check("{name}", {name})' and name in bare_names(c.source)]
        assert not users, f"{py.name}: cells {users} use {name}, which a student edition leaves unimplemented"


@pytest.mark.notebook
def test_a_student_edition_runs_to_the_end_in_fast_mode(tmp_path):
    """The student edition of 01 executes (fast mode) with every check cell printing 'not implemented'."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("build_notebooks", ROOT / "scripts" / "build_notebooks.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    nb = C.student_notebook(jupytext.read(by_number("01")))
    build.execute(nb, fast=True, cwd=ROOT / "notebooks", timeout=300)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert printed.count("not implemented") == 3


@pytest.mark.parametrize("change", [
    lambda nb: nb["cells"][0].update(source=["x = 1\n", 7]),       # nbformat's join: TypeError
    lambda nb: nb["cells"][0].update(source=3),                     # AttributeError: splitlines
    lambda nb: nb["cells"][0].pop("metadata"),                      # a schema error
    lambda nb: nb.update(cells={"a": 1}),
], ids=["source-list-with-int", "source-int", "cell-without-metadata", "cells-object"])
def test_a_malformed_notebook_is_one_line_naming_the_file(tmp_path, capsys, change):
    """A student's notebook is untrusted input: cells of the wrong shape end in one ValueError
    naming the file, before anything runs (nbformat itself fails on them with any error type)."""
    import json
    from minicompress.__main__ import main
    nb = json.loads(nbformat.writes(nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import numpy as np")])))
    change(nb)
    path = tmp_path / "01_bad.ipynb"
    path.write_text(json.dumps(nb))
    with pytest.raises(ValueError, match=r"01_bad.ipynb"):
        C.check_notebook(path)
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: check:") and err.count("\n") == 1 and "internal" not in err, err
