"""Build the notebooks: each ``notebooks/NN_name.py`` (the file you edit, Jupytext percent format)
becomes ``notebooks/NN_name.ipynb`` with its outputs.

    python scripts/build_notebooks.py                 # execute every notebook, full mode (Fashion-MNIST; long)
    python scripts/build_notebooks.py --fast 02 04    # fast mode (8x8 digits, seconds), notebooks 02 and 04
    python scripts/build_notebooks.py --sync 06       # no execution: copy the .py's cells into the .ipynb;
                                                      # a code cell whose source is unchanged keeps its outputs
    python scripts/build_notebooks.py --check         # exit 1 if some .ipynb's cells differ from its .py
    python scripts/build_notebooks.py --figures figures   # also save every figure into figures/
    python scripts/build_notebooks.py --student [--lang en|zh] [--out DIR]
                                                      # student editions, not executed: every
                                                      # "### BEGIN SOLUTION … ### END SOLUTION" region
                                                      # becomes raise NotImplementedError, no outputs;
                                                      # written to notebooks/student/NN_name.ipynb
                                                      # (zh: translated, in notebooks/student/zh/)
    python scripts/build_notebooks.py --lang zh       # the Chinese edition notebooks/zh/NN_name.ipynb: the
                                                      # English .ipynb with notebooks/zh/NN_name.md's markdown
    python scripts/build_notebooks.py --lang zh --check   # exit 1 if a translation is stale or missing

Executing a notebook: ``jupytext`` reads the .py, ``nbclient`` runs it in a fresh ``python3`` kernel of
*this* interpreter (this checkout's ``minicompress`` first on its path) with ``notebooks/`` as working
directory, and the .ipynb is replaced atomically only if every cell ran without error. Fast mode is
``--fast`` or ``MINICOMPRESS_FAST=1`` in the environment; the notebooks read ``MINICOMPRESS_FAST``.
A notebook writes no file into the repository; with ``--figures DIR`` the build sets
``MINICOMPRESS_FIGURES=DIR`` and each notebook's ``save(fig, name)`` also writes its figures there.
Needs the dev dependencies (``pip install -r requirements-dev.txt``).
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
TIMEOUT = None  # seconds per cell; None: no limit (a full-mode training cell can take many minutes)


# --- which notebooks --------------------------------------------------------------------------------

def sources():
    """Every notebook source, ``notebooks/NN_name.py``, in order."""
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))


def resolve(names):
    """The sources named by ``names`` ("02", "02_weight_pruning" or a .py/.ipynb path); all if empty."""
    every = sources()
    if not names:
        return every
    chosen = []
    for name in names:
        stem = Path(name).stem if name.endswith((".py", ".ipynb")) else name
        match = [p for p in every if p.stem == stem or p.stem.split("_", 1)[0] == stem]
        if not match:
            accepted = ", ".join(p.stem for p in every)
            raise ValueError(f"notebook {name!r} not found; accepted: a number or name of {accepted}")
        chosen += [p for p in match if p not in chosen]
    return chosen


# --- reading and comparing -----------------------------------------------------------------------------

def read_source(py):
    """The notebook held by the percent-format ``py`` (no outputs)."""
    import jupytext
    return jupytext.read(py)


def cells(nb):
    """``[(cell_type, source), ...]``: what must agree between a .py and its .ipynb (outputs do not)."""
    return [(c.cell_type, c.source) for c in nb.cells]


def differences(py, ipynb=None):
    """Why ``ipynb`` (default: the .ipynb beside ``py``) is out of sync with ``py``; [] when in sync."""
    import nbformat
    ipynb = Path(ipynb) if ipynb else Path(py).with_suffix(".ipynb")
    if not ipynb.exists():
        return [f"{ipynb.name} does not exist"]
    try:
        want, have = cells(read_source(py)), cells(nbformat.read(ipynb, as_version=4))
    except ValueError as e:
        raise ValueError(f"cannot read {ipynb.name} or {Path(py).name}: {e}") from None
    found = []
    for i, (w, h) in enumerate(zip(want, have)):
        if w[0] != h[0]:
            found.append(f"cell {i}: {w[0]} in {Path(py).name}, {h[0]} in {ipynb.name}")
        elif w[1] != h[1]:
            first = (w[1].splitlines() or [""])[0]
            found.append(f"cell {i} ({w[0]}, starting {first[:60]!r}) has another source in {ipynb.name}")
    if len(want) != len(have):
        found.append(f"{Path(py).name} has {len(want)} cells, {ipynb.name} has {len(have)}")
    return found


# --- executing -----------------------------------------------------------------------------------------

@contextlib.contextmanager
def kernel_environment(fast, figures=None):
    """Environment for the kernel (it inherits ``os.environ``), restored on exit.

    A temporary kernelspec ``python3`` points to ``sys.executable``, so the notebooks run in this
    interpreter whatever ``python3`` kernel is installed; ``PYTHONPATH`` starts with this checkout.
    ``MPLBACKEND`` is cleared so that ipykernel's inline backend puts the figures into the outputs."""
    saved = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="minicompress-kernel-") as tmp:
        spec = Path(tmp) / "kernels" / "python3"
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3", "language": "python"}))
        os.environ["JUPYTER_PATH"] = os.pathsep.join([tmp] + [p for p in [saved.get("JUPYTER_PATH")] if p])
        os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [saved.get("PYTHONPATH")] if p])
        os.environ.pop("MPLBACKEND", None)
        if fast:
            os.environ["MINICOMPRESS_FAST"] = "1"
        else:
            os.environ.pop("MINICOMPRESS_FAST", None)
        if figures:
            os.environ["MINICOMPRESS_FIGURES"] = str(Path(figures).resolve())
        else:
            os.environ.pop("MINICOMPRESS_FIGURES", None)
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)


class NotebookFailed(RuntimeError):
    """A cell raised: the message names the notebook, the cell and the error."""


def execute(nb, *, fast, cwd=NOTEBOOKS, figures=None, timeout=TIMEOUT):
    """Run every cell of ``nb`` in place (outputs filled in); NotebookFailed if a cell raises."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    with kernel_environment(fast, figures):
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                                resources={"metadata": {"path": str(cwd)}})
        try:
            client.execute()
        except CellExecutionError as e:
            index = next((i for i, c in enumerate(nb.cells) for o in c.get("outputs", [])
                          if o.get("output_type") == "error"), "?")
            raise NotebookFailed(f"cell {index} raised {e.ename}: {e.evalue}") from None
    return nb


# --- writing -------------------------------------------------------------------------------------------

def carry_over(new, old, outputs):
    """Give the cells of ``new`` that equal a cell of ``old`` (same type and source) that cell's id,
    and with ``outputs=True`` also its outputs and execution count; a changed code cell keeps none
    (stale outputs would describe code that is no longer there). Ids are kept to keep diffs small.

    Returns the indices of the code cells of ``new`` that match no cell of ``old``."""
    a, b = cells(old), cells(new)
    unmatched = {j for j, c in enumerate(new.cells) if c.cell_type == "code"}
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        for i, j in zip(range(i1, i2), range(j1, j2)):
            before, after = old.cells[i], new.cells[j]
            if "id" in before and (op == "equal" or before.cell_type == after.cell_type):
                after["id"] = before["id"]
            if op == "equal":
                unmatched.discard(j)
                if outputs and after.cell_type == "code":
                    after["outputs"] = before.get("outputs", [])
                    after["execution_count"] = before.get("execution_count")
    if "language_info" in old.metadata and "language_info" not in new.metadata:
        new.metadata["language_info"] = old.metadata["language_info"]
    return sorted(unmatched)


def write_atomically(path, text):
    """Write ``text`` to ``path`` via a temporary file in the same folder, fsync, rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # make the rename durable where directories can be fsynced
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_notebook(nb, path):
    import jupytext
    nb.metadata.get("jupytext", {}).pop("text_representation", None)
    write_atomically(path, jupytext.writes(nb, fmt="ipynb"))


def previous(path):
    """The .ipynb at ``path`` as it is now (None if there is none)."""
    import nbformat
    if not Path(path).exists():
        return None
    try:
        return nbformat.read(path, as_version=4)
    except ValueError as e:
        raise ValueError(f"cannot read {Path(path).name}: {e}") from None


def shown(path):
    """``path`` relative to the repository when it is inside it (for messages)."""
    path = Path(path)
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def build(py, *, fast, figures=None, timeout=TIMEOUT):
    """Execute ``py`` and write its .ipynb with the outputs (cell ids kept where cells are unchanged)."""
    ipynb = Path(py).with_suffix(".ipynb")
    nb = execute(read_source(py), fast=fast, cwd=Path(py).parent, figures=figures, timeout=timeout)
    old = previous(ipynb)
    if old:
        carry_over(nb, old, outputs=False)
    write_notebook(nb, ipynb)
    return ipynb


def sync(py):
    """Write the .ipynb from ``py`` without executing: unchanged code cells keep their outputs.
    Returns the path and the indices of the code cells that are new or changed (now without outputs)."""
    ipynb = Path(py).with_suffix(".ipynb")
    nb, old = read_source(py), previous(ipynb)
    changed = carry_over(nb, old, outputs=True) if old else [
        i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    write_notebook(nb, ipynb)
    return ipynb, changed


# --- translated editions -------------------------------------------------------------------------------
# A translated edition is the English notebook with every markdown cell replaced by its translation; the
# code cells, and so their outputs, are the English ones. Translations live in notebooks/<lang>/NN_name.md,
# one entry per English markdown cell, each entry opened by a line  <!-- cell I en:KEY -->  where KEY is
# cell_key() of the English cell's source (I, the cell's index, is only a guide for the reader): when the
# English text changes its key changes, and the old translation is reported as stale instead of being used.

LANGUAGES = ("zh",)
ENTRY = re.compile(r"^<!-- cell (\d+) en:([0-9a-f]{8}) -->$", re.MULTILINE)


def cell_key(source):
    """The short hash that ties a translation to the English text it translates: 8 hex digits of SHA-256."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:8]


def check_language(lang):
    if lang not in LANGUAGES:
        raise ValueError(f"language {lang!r} has no translations; accepted: {', '.join(LANGUAGES)}")


def translation_file(py, lang="zh"):
    """``notebooks/<lang>/NN_name.md``: the translations of ``py``'s markdown cells."""
    check_language(lang)
    return Path(py).parent / lang / (Path(py).stem + ".md")


def edition_path(py, lang="zh"):
    """``notebooks/<lang>/NN_name.ipynb``: the translated edition of ``py``."""
    return translation_file(py, lang).with_suffix(".ipynb")


def read_entries(path):
    """``[(cell index, key, translated markdown), ...]`` of a translation file, in file order; text before
    the first entry is a comment. [] if the file does not exist."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    marks = list(ENTRY.finditer(text))
    return [(int(mark.group(1)), mark.group(2), text[mark.end():after.start() if after else len(text)].strip("\n"))
            for mark, after in zip(marks, marks[1:] + [None])]


def read_translations(path):
    """``{key: translated markdown}`` from a translation file."""
    found = {}
    for _, key, body in read_entries(path):
        if key in found and found[key] != body:
            raise ValueError(f"{shown(Path(path))}: two different translations keyed en:{key}")
        found[key] = body
    return found


def first_line(source):
    return (source.splitlines() or [""])[0][:60]


def translation_problems(py, lang="zh"):
    """Why the translations of ``py`` are not current, one line per cell; [] when every markdown cell of
    ``py`` has a translation keyed by its current text and no translation is left over. A changed cell
    whose old entry still carries its index is reported once, as changed."""
    path = translation_file(py, lang)
    entries = read_entries(path)
    have = read_translations(path)
    cells_ = [(i, c.source) for i, c in enumerate(read_source(py).cells) if c.cell_type == "markdown"]
    wanted = {cell_key(source) for _, source in cells_}
    stale = {index: key for index, key, _ in entries if key not in wanted}
    problems = []
    for i, source in cells_:
        key = cell_key(source)
        if key in have:
            continue
        if i in stale:
            problems.append(f"{Path(py).name} markdown cell {i} (starting {first_line(source)!r}) changed: its "
                            f"translation in {shown(path)} is keyed en:{stale.pop(i)} (stale); translate the new "
                            f"text and set the key to en:{key}")
        else:
            problems.append(f"{Path(py).name} markdown cell {i} (starting {first_line(source)!r}) has no "
                            f"translation keyed en:{key} in {shown(path)}: translate it")
    for index, key in stale.items():
        problems.append(f"{shown(path)}: the translation keyed en:{key} (cell {index}, starting "
                        f"{first_line(have[key])!r}) matches no English cell any more (stale): remove it, or "
                        "re-key it to the English cell it translates")
    return problems


def translated(nb, py, lang="zh"):
    """A copy of ``nb`` whose markdown cells are replaced by their ``lang`` translations from
    ``translation_file(py, lang)``; code cells (sources, outputs) untouched. ``nb`` may be any notebook
    whose markdown cells have translations there (the English notebook, or an edition derived from it).
    ValueError naming every untranslated cell if one is missing."""
    import copy
    have = read_translations(translation_file(py, lang))
    out = copy.deepcopy(nb)
    missing = []
    for i, cell in enumerate(out.cells):
        if cell.cell_type == "markdown":
            key = cell_key(cell.source)
            if key in have:
                cell.source = have[key]
            else:
                missing.append(f"cell {i} en:{key} ({first_line(cell.source)!r})")
    if missing:
        raise ValueError(f"{shown(translation_file(py, lang))} lacks translations of " + "; ".join(missing))
    out.metadata["language"] = lang
    out.metadata.pop("jupytext", None)   # not paired with a .py: the English .py is the source
    return out


def edition(py, lang="zh"):
    """The ``lang`` edition of ``py``: its English .ipynb (which must have the cells of ``py``) with the
    markdown translated. The outputs are the English run's, copied: the code cells are the same code."""
    english = Path(py).with_suffix(".ipynb")
    stale = differences(py)
    if stale:
        raise ValueError(f"{english.name} is not in sync with {Path(py).name} ({stale[0]}); "
                         f"build or --sync the English notebook first")
    problems = translation_problems(py, lang)
    if problems:
        raise ValueError(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    return translated(previous(english), py, lang)


def edition_text(py, lang="zh"):
    """The exact text of the ``lang`` edition's .ipynb."""
    import jupytext
    return jupytext.writes(edition(py, lang), fmt="ipynb")


def build_edition(py, lang="zh"):
    """Write ``notebooks/<lang>/NN_name.ipynb``; nothing is executed."""
    path = edition_path(py, lang)
    text = edition_text(py, lang)
    path.parent.mkdir(exist_ok=True)
    write_atomically(path, text)
    return path


def edition_differences(py, lang="zh"):
    """Why the committed ``lang`` edition of ``py`` is not what its sources build; [] when it is."""
    problems = translation_problems(py, lang)
    if problems:
        return problems
    path = edition_path(py, lang)
    if not path.exists():
        return [f"{shown(path)} does not exist"]
    if path.read_text(encoding="utf-8") != edition_text(py, lang):
        return [f"{shown(path)} differs from what {Path(py).name}, its .ipynb and {translation_file(py, lang).name} "
                "build"]
    return []


# --- student editions ---------------------------------------------------------------------------------

STUDENT = NOTEBOOKS / "student"


def write_student_editions(chosen, out, lang="en"):
    """``out/NN_name.ipynb`` for each source: the student edition of ``minicompress.check``; with
    ``lang="zh"`` the markdown is first replaced by its translation (``translated``), code cells untouched."""
    try:
        from minicompress.check import student_notebook
    except ImportError:
        raise ValueError("--student needs minicompress importable: pip install -e . or PYTHONPATH=.") from None
    out.mkdir(parents=True, exist_ok=True)
    for py in chosen:
        try:
            nb = read_source(py)
            if lang != "en":
                nb = translated(nb, py, lang)
            nb = student_notebook(nb, lang)
        except ValueError as e:
            raise ValueError(f"{py.name}: {e}") from None
        target = out / f"{py.stem}.ipynb"
        write_notebook(nb, target)
        print(f"wrote {shown(target)}", flush=True)
    return 0


# --- command line --------------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(prog="build_notebooks.py",
                                     description="Build notebooks/NN_name.ipynb from notebooks/NN_name.py.")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="notebooks to build: 02, 02_weight_pruning or a path (default: all)")
    parser.add_argument("--fast", action="store_true", default=os.environ.get("MINICOMPRESS_FAST") == "1",
                        help="fast mode: 8x8 digits, a few epochs (also MINICOMPRESS_FAST=1)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--sync", action="store_true",
                      help="do not execute: update the .ipynb's cells, keep outputs of unchanged code cells")
    mode.add_argument("--check", action="store_true",
                      help="only check that every .ipynb has the cells of its .py (exit 1 if not)")
    mode.add_argument("--student", action="store_true",
                      help="write student editions (solutions replaced by NotImplementedError, no outputs, "
                           "not executed) to notebooks/student/ or --out")
    parser.add_argument("--out", metavar="DIR", help="with --student: the folder to write to")
    parser.add_argument("--figures", metavar="DIR",
                        help="also save each figure into DIR (the notebooks' MINICOMPRESS_FIGURES)")
    parser.add_argument("--lang", default="en", choices=("en",) + LANGUAGES,
                        help="en (default): the notebooks themselves; zh: write notebooks/zh/NN_name.ipynb, the "
                             "English .ipynb with the markdown of notebooks/zh/NN_name.md (nothing is executed: "
                             "the outputs are the English ones; with --check only check); with --student: the "
                             "student editions in that language (notebooks/student/zh/ for zh), whose metadata "
                             "language the checker reads for its messages")
    parser.add_argument("--untranslated", action="store_true",
                        help="with --lang: print, ready to paste into notebooks/<lang>/NN_name.md, the entry "
                             "line and the English text of every markdown cell that has no current translation")
    args = parser.parse_args(argv)
    try:
        import jupytext  # noqa: F401
        import nbclient  # noqa: F401
    except ImportError as e:
        sys.exit(f"build_notebooks: needs {e.name}; install the dev dependencies: "
                 "pip install -r requirements-dev.txt")
    try:
        chosen = resolve(args.names)
    except ValueError as e:
        sys.exit(f"build_notebooks: {e}")
    if not chosen:
        sys.exit(f"build_notebooks: no notebook sources NN_name.py in {NOTEBOOKS}")
    if args.lang != "en" and args.figures:
        sys.exit(f"build_notebooks: --lang {args.lang} executes nothing, so it has no figures; build the "
                 "English notebook with --figures")
    if args.figures and not Path(args.figures).is_dir():
        sys.exit(f"build_notebooks: --figures {args.figures!r} is not an existing folder")

    try:
        return run(args, chosen)
    except (OSError, ValueError) as e:  # an unreadable or malformed .py/.ipynb
        sys.exit(f"build_notebooks: {str(e).splitlines()[0] if str(e) else type(e).__name__}")


def run(args, chosen):
    if args.student:
        out = Path(args.out) if args.out else STUDENT / ("" if args.lang == "en" else args.lang)
        return write_student_editions(chosen, out, args.lang)
    if args.lang != "en":
        return run_edition(args, chosen)
    if args.check:
        problems = [f"{py.name}: {d}" for py in chosen for d in differences(py)]
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            sys.exit("build_notebooks: out of sync; run: python scripts/build_notebooks.py --sync "
                     "(or build, to re-execute)")
        print(f"{len(chosen)} notebooks in sync with their .py sources")
        return 0

    for py in chosen:
        if args.sync:
            ipynb, changed = sync(py)
            note = f"; changed code cells, now without outputs (a build fills them): {changed}" if changed else ""
            print(f"synced {shown(ipynb)}{note}", flush=True)
            continue
        t0 = time.perf_counter()
        try:
            ipynb = build(py, fast=args.fast, figures=args.figures)
        except NotebookFailed as e:
            sys.exit(f"build_notebooks: {py.name}: {e} (the .ipynb was not changed)")
        mode_name = "fast" if args.fast else "full"
        print(f"built {shown(ipynb)} ({mode_name} mode, {time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


def run_edition(args, chosen):
    """--lang zh: check or write the translated editions (never executes a notebook)."""
    if args.untranslated:
        for py in chosen:
            have = read_translations(translation_file(py, args.lang))
            for i, cell in enumerate(read_source(py).cells):
                if cell.cell_type == "markdown" and cell_key(cell.source) not in have:
                    print(f"# {shown(translation_file(py, args.lang))}\n<!-- cell {i} en:{cell_key(cell.source)} -->"
                          f"\n{cell.source}\n")
        return 0
    if args.check:
        problems = [d for py in chosen for d in edition_differences(py, args.lang)]
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            sys.exit(f"build_notebooks: the {args.lang} edition is out of date; translate the cells named above "
                     f"in notebooks/{args.lang}/NN_name.md, then run: python scripts/build_notebooks.py "
                     f"--lang {args.lang}")
        print(f"{len(chosen)} {args.lang} notebooks in sync with their sources")
        return 0
    for py in chosen:
        path = build_edition(py, args.lang)
        print(f"wrote {shown(path)} (outputs copied from {Path(py).with_suffix('.ipynb').name})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
