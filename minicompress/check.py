"""The exercise checker.

In a notebook, after an exercise::

    from minicompress.check import check
    check("adam_moments", adam_moments)          # prints PASS or what is wrong; never raises

From the command line, for a whole notebook (a student's copy)::

    python -m minicompress check notebooks/student/01_adam_and_backprop.ipynb

``check_notebook`` does not run the notebook. It takes the code cells that define an exercise
function (``def adam_moments(...)``), plus the notebook's top-level ``import`` lines, and runs them
in a separate Python process with a time limit; the functions are called on the hand-computed
cases of :mod:`minicompress.exercises`. Exit code 0 only when every exercise of the notebook
passes.

Language: messages are English unless the notebook's metadata says ``"language": "zh"`` (top
level of the notebook metadata) or ``lang="zh"`` / ``MINICOMPRESS_LANG=zh`` is given; a message
without a Chinese text falls back to English.
"""
from __future__ import annotations

import ast
import re
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from .exercises import EXERCISES

LANGUAGES = ("en", "zh")
TIMEOUT = 60  # seconds for all the exercises of one notebook

TEXT = {
    "pass": {"en": "PASS", "zh": "通过"},
    "not_implemented": {"en": "not implemented (the function still raises NotImplementedError)",
                        "zh": "尚未实现 (函数仍抛出 NotImplementedError)"},
    "missing": {"en": "not found: no function `{name}` is defined in the notebook",
                "zh": "未找到: 笔记本中没有定义函数 `{name}`"},
    "raised": {"en": "raised {error} for {inputs}", "zh": "输入 {inputs} 时抛出 {error}"},
    "count": {"en": "should return {n} values ({names}), got {got}",
              "zh": "应返回 {n} 个值 ({names}),实际得到 {got}"},
    "shape": {"en": "{out} should have shape {want}, got shape {got} (for {inputs})",
              "zh": "{out} 的形状应为 {want},实际为 {got} (输入 {inputs})"},
    "value": {"en": "{out} should be {formula} = {want}, got {got} (for {inputs})",
              "zh": "{out} 应为 {formula} = {want},实际为 {got} (输入 {inputs})"},
    "unknown": {"en": "unknown exercise {name!r}; known: {known}", "zh": "未知练习 {name!r};已有: {known}"},
    "timeout": {"en": "timed out after {seconds} s (an endless loop?)", "zh": "{seconds} 秒后超时 (死循环?)"},
    "cell_error": {"en": "its cell could not run: {error}", "zh": "所在单元无法运行: {error}"},
    "summary": {"en": "{passed} of {total} exercises pass", "zh": "{total} 个练习中 {passed} 个通过"},
}


def text(key, lang, **kw):
    """The message ``key`` (a name in TEXT, or a {en, zh} dict) in ``lang``, falling back to English."""
    entry = TEXT[key] if isinstance(key, str) else key
    message = entry.get(lang) or entry["en"]
    return message.format(**kw) if kw else message


def _lang(lang):
    lang = lang or os.environ.get("MINICOMPRESS_LANG") or "en"
    if lang not in LANGUAGES:
        raise ValueError(f"check: lang must be one of {list(LANGUAGES)}, got {lang!r}")
    return lang


# ---- comparing -------------------------------------------------------------------------------

def _show(x):
    """A short printable form of a value."""
    a = np.asarray(x)
    if a.ndim == 0:
        v = a.item()
        return f"{v:.6g}" if isinstance(v, float) else repr(v)
    return np.array2string(a, precision=5, separator=", ", threshold=30).replace("\n", "")


def _inputs(args):
    return ", ".join(f"{k}={_show(v)}" for k, v in args.items())


def _close(got, want):
    """Same shape and values: integers exactly, floats to 1e-6 relative (float32 arithmetic is fine)."""
    try:
        g = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    w = np.asarray(want, dtype=np.float64)
    if g.shape != w.shape:
        return False
    if np.issubdtype(np.asarray(want).dtype, np.integer):
        return bool(np.array_equal(g, w))
    return bool(np.allclose(g, w, rtol=1e-5, atol=1e-7, equal_nan=True))  # nan only matches a mistake's nan


def _as_tuple(result, n):
    if n == 1:
        return (result,)
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


def run_exercise(name, fn, lang="en"):
    """Call ``fn`` on every case of exercise ``name``: ``(passed, [message, ...])``."""
    ex = EXERCISES[name]
    problems = []
    for case in ex.cases:
        args = copy.deepcopy(case.args)
        try:
            result = fn(**args)
        except NotImplementedError:
            return False, [text("not_implemented", lang)]
        except Exception as e:  # the student's code: any error is reported, not raised
            problems.append(text("raised", lang, error=f"{type(e).__name__}: {e}", inputs=_inputs(case.args)))
            continue
        got = _as_tuple(result, len(ex.outputs))
        if len(got) != len(ex.outputs):
            problems.append(text("count", lang, n=len(ex.outputs), names=", ".join(o.name for o in ex.outputs),
                                 got=len(got)))
            continue
        for i, (out, g, w) in enumerate(zip(ex.outputs, got, case.expected)):
            if _close(g, w):
                continue
            if np.shape(g) != np.shape(w):
                msg = text("shape", lang, out=out.name, want=np.shape(w), got=np.shape(g), inputs=_inputs(case.args))
            else:
                msg = text("value", lang, out=out.name, formula=text(out.formula, lang), want=_show(w),
                           got=_show(g), inputs=_inputs(case.args))
            hint = _diagnose(ex, case, i, g)
            problems.append(msg + (f": {text(hint, lang)}" if hint else ""))
        if problems:
            break  # the first failing case says enough
    return not problems, problems


def _diagnose(ex, case, i, got):
    """The hint of the first mistake that reproduces output ``i`` = ``got`` on this case."""
    for mistake in ex.mistakes:
        try:
            with np.errstate(all="ignore"):
                wrong = tuple(mistake.wrong(**copy.deepcopy(case.args)))  # a mistake returns a tuple
        except Exception:
            continue
        if i < len(wrong) and not _close(wrong[i], case.expected[i]) and _close(got, wrong[i]):
            return mistake.hint
    return None


def passes(name, fn, lang=None):
    """Check one exercise function, print PASS or what is wrong, and return True when it passes.

    Never raises on a wrong answer, so that a notebook keeps running (nbgrader style)."""
    lang = _lang(lang)
    if name not in EXERCISES:
        raise ValueError(text("unknown", lang, name=name, known=", ".join(EXERCISES)))
    ok, problems = run_exercise(name, fn, lang)
    print(f"{name}: {text('pass', lang)}" if ok else f"{name}: " + "\n    ".join(problems))
    return ok


def check(name, fn, lang=None):
    """The notebook's check cell: :func:`passes` without a return value (nothing echoed after the message)."""
    passes(name, fn, lang)


# ---- extracting the exercise functions from a notebook ----------------------------------------

def notebook_language(nb):
    lang = nb.get("metadata", {}).get("language", "en")
    return lang if lang in LANGUAGES else "en"


def exercise_source(nb):
    """``(imports, cells, {exercise name: cell index})``: what to run to define the notebook's exercise
    functions — the notebook's top-level imports of names those cells use (each run on its own: a
    missing package must not hide the exercises), then every code cell that defines an exercise
    function, ``(index, source, names)`` in order. No other cell is run."""
    imports, cells, found = [], [], {}
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        source = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
        try:
            tree = ast.parse(source)
        except SyntaxError as e:
            names = [n for n in EXERCISES if f"def {n}(" in source]
            for n in names:
                found[n] = index
            if names:
                cells.append((index, f"raise SyntaxError({str(e)!r})", names))
            continue
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                imports.append(node)
        names = [node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in EXERCISES]
        if names:
            for n in names:
                found[n] = index
            cells.append((index, source, names))
    # only the imports whose names the exercise cells use (numpy, mostly): fast, and nothing else runs
    used = set()
    for _, source, _ in cells:
        try:
            used |= {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name)}
        except SyntaxError:
            pass
    needed = [ast.unparse(node) for node in imports
              if any((a.asname or a.name.split(".")[0]) in used for a in node.names)]
    return needed, cells, found


def _worker(payload):
    """Runs in the child process: define the functions, check them, return JSON-able results."""
    lang = payload["lang"]
    namespace = {"__name__": "__exercises__"}
    for line in payload["imports"]:
        try:
            exec(line, namespace)
        except Exception:
            pass
    cell_errors = {}
    for index, source, names in payload["cells"]:
        try:
            exec(compile(source, f"<cell {index}>", "exec"), namespace)
        except Exception as e:
            for n in names:
                cell_errors[n] = f"{type(e).__name__}: {e}"
    results = {}
    for name in payload["names"]:
        if name in cell_errors and not callable(namespace.get(name)):
            results[name] = (False, [text("cell_error", lang, error=cell_errors[name])])
        elif not callable(namespace.get(name)):
            results[name] = (False, [text("missing", lang, name=name)])
        else:
            results[name] = run_exercise(name, namespace[name], lang)
    return results


def _first_line(error, limit=200):
    """The first line of an exception's message, at most ``limit`` characters: the rest of a
    parser's or a schema validator's message (the whole document, the schema) is not for a
    one-line error."""
    return (str(error).splitlines() or [""])[0][:limit]


def check_notebook(path, lang=None, timeout=TIMEOUT, names=None):
    """Check the exercises of the notebook at ``path``: ``{name: (passed, [messages])}``.

    ``names`` default: the exercises of the notebook's number (its file name starts with NN_) and
    any other exercise whose function it defines."""
    import nbformat
    path = Path(path)
    try:
        nb = nbformat.read(path, as_version=4)
    except (OSError, ValueError) as e:
        raise ValueError(f"check: cannot read notebook {path}: {_first_line(e)}") from None
    except Exception as e:  # noqa: BLE001 — nbformat fails on malformed cells with any error type
        raise ValueError(f"check: {path} is not a valid notebook ({type(e).__name__}: "
                         f"{_first_line(e)})") from None
    try:
        # a student's file: cells must have the schema's shape before we read their sources
        nbformat.validate(nb)
    except Exception as e:  # noqa: BLE001 — jsonschema's ValidationError is not a ValueError
        raise ValueError(f"check: {path} is not a valid notebook: {_first_line(e)}") from None
    lang = _lang(lang or notebook_language(nb))
    imports, cells, found = exercise_source(nb)
    if names is None:
        number = path.name[:2]
        names = [n for n, e in EXERCISES.items() if e.notebook == number or n in found]
    payload = {"imports": imports, "cells": cells, "names": list(names), "lang": lang}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent.parent)]
                                        + [p for p in [env.get("PYTHONPATH")] if p])
    try:
        proc = subprocess.run([sys.executable, "-m", "minicompress.check", "--worker"], input=json.dumps(payload),
                              capture_output=True, text=True, timeout=timeout, env=env, cwd=path.parent)
    except subprocess.TimeoutExpired:
        return {n: (False, [text("timeout", lang, seconds=timeout)]) for n in names}
    marker = "@@RESULTS@@"
    if marker not in proc.stdout:
        error = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {n: (False, [text("cell_error", lang, error=error)]) for n in names}
    raw = json.loads(proc.stdout.rsplit(marker, 1)[1])
    return {n: (bool(raw[n][0]), list(raw[n][1])) for n in names}


def report(results, lang="en", out=sys.stdout):
    """Print one line per exercise; True when all pass."""
    for name, (ok, problems) in results.items():
        print(f"{name}: {text('pass', lang)}" if ok else f"{name}: " + "\n    ".join(problems), file=out)
    passed = sum(ok for ok, _ in results.values())
    print(text("summary", lang, passed=passed, total=len(results)), file=out)
    return passed == len(results) and len(results) > 0


def main(argv=None):
    """``python -m minicompress check NOTEBOOK.ipynb [--lang en|zh] [--timeout S]``."""
    import argparse
    p = argparse.ArgumentParser(prog="python -m minicompress check",
                                description="Check the exercise functions of a notebook against hand-computed cases.")
    p.add_argument("notebook", help="a notebook (.ipynb) with exercise functions")
    p.add_argument("--lang", choices=LANGUAGES, help="language of the messages (default: the notebook's metadata)")
    p.add_argument("--timeout", type=float, default=TIMEOUT, help=f"seconds for the whole check (default {TIMEOUT})")
    args = p.parse_args(argv)
    if not (args.timeout > 0 and np.isfinite(args.timeout)):
        p.error(f"--timeout must be a positive number of seconds, got {args.timeout}")
    try:
        results = check_notebook(args.notebook, lang=args.lang, timeout=args.timeout)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not results:
        print(f"error: {args.notebook} has no exercises", file=sys.stderr)
        return 2
    import nbformat
    lang = args.lang or notebook_language(nbformat.read(args.notebook, as_version=4))
    return 0 if report(results, lang) else 1


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        data = json.loads(sys.stdin.read())
        results = _worker(data)
        sys.stdout.write("@@RESULTS@@" + json.dumps(results))
        sys.exit(0)
    sys.exit(main())


# ---- the student edition -----------------------------------------------------------------------

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


def strip_solutions(source):
    """A code cell's source with every ``### BEGIN SOLUTION`` … ``### END SOLUTION`` region replaced by
    a comment saying what to write and ``raise NotImplementedError`` (nbgrader's convention), at the
    region's indentation. A BEGIN without its END is a ValueError naming the line."""
    out, inside, indent, name = [], False, "", None
    for number, line in enumerate(source.splitlines(), 1):
        stripped = line.strip()
        defined = re.match(r"\s*def (\w+)\(", line)
        if defined and not inside:
            name = defined.group(1)
        if stripped.startswith(BEGIN):
            if inside:
                raise ValueError(f"line {number}: {BEGIN} inside another solution region")
            inside, indent = True, line[:len(line) - len(line.lstrip())]
            out.append(f"{indent}# YOUR CODE HERE: the equation of the docstring, returning what it says")
            out.append(f"{indent}raise NotImplementedError(\"{name or 'exercise'}: write this function\")")
        elif stripped.startswith(END):
            if not inside:
                raise ValueError(f"line {number}: {END} without {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{BEGIN} without {END}")
    return "\n".join(out)


def student_notebook(nb, lang=None):
    """A copy of the notebook ``nb`` (nbformat) for students: solution regions stripped, all outputs
    removed, ``metadata.language`` set to ``lang`` (default: the notebook's, else "en")."""
    student = copy.deepcopy(nb)
    for index, cell in enumerate(student.cells):
        if cell.cell_type != "code":
            continue
        try:
            cell.source = strip_solutions(cell.source)
        except ValueError as e:
            raise ValueError(f"cell {index}: {e}") from None
        cell.outputs, cell.execution_count = [], None
    student.metadata["language"] = _lang(lang or student.metadata.get("language"))
    return student
