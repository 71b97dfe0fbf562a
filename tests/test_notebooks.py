"""The notebooks: ``notebooks/NN_name.py`` is the source a person edits (Jupytext percent format),
``notebooks/NN_name.ipynb`` is built from it with outputs by ``scripts/build_notebooks.py``.

* every pair holds the same cells (types and sources; outputs are not compared);
* every notebook runs in fast mode (``MINICOMPRESS_FAST=1``), executed from its .py through the
  build script's own ``execute`` (jupytext -> nbclient, a fresh kernel of this interpreter, working
  directory ``notebooks/``) on an in-memory notebook: the committed .ipynb is not rewritten;
* running a notebook leaves every file of the repository as it was (no figure, artifact or cache
  written into it).
"""
import importlib.util
import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
jupytext = pytest.importorskip("jupytext")

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("build_notebooks", ROOT / "scripts" / "build_notebooks.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

SOURCES = build.sources()
TIMEOUT = 300  # seconds per cell in fast mode; a hung kernel fails instead of blocking the suite
SKIP_DIRS = {".git", "__pycache__", ".pytest_cache"}


def repository_files(root=ROOT):
    """{relative path: (size, mtime_ns)} of every file under ``root`` except .git and caches."""
    found = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for name in files:
            path = Path(folder) / name
            st = path.stat()
            found[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return found


def changed_files(before, after):
    """Sorted 'created x' / 'modified x' / 'deleted x' lines between two repository_files()."""
    return sorted([f"created {p}" for p in after.keys() - before.keys()]
                  + [f"deleted {p}" for p in before.keys() - after.keys()]
                  + [f"modified {p}" for p in before.keys() & after.keys() if before[p] != after[p]])


def test_there_are_notebooks():
    assert SOURCES, "no notebook sources notebooks/NN_name.py found"


def test_every_notebook_has_both_files():
    py = {p.stem for p in SOURCES}
    ipynb = {p.stem for p in (ROOT / "notebooks").glob("*.ipynb")}
    assert py == ipynb, f"without a .ipynb: {sorted(py - ipynb)}; without a .py source: {sorted(ipynb - py)}"


@pytest.mark.parametrize("py", SOURCES, ids=[p.stem for p in SOURCES])
def test_ipynb_has_the_cells_of_its_py(py):
    problems = build.differences(py)
    assert not problems, (f"{py.name} and its .ipynb differ: {problems}; "
                          "run: python scripts/build_notebooks.py --sync " + py.stem[:2])


def _pair(tmp_path, cells):
    """A .py source and its .ipynb with fake outputs on every code cell, in tmp_path."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) if kind == "code" else nbformat.v4.new_markdown_cell(src)
                for kind, src in cells]
    py = tmp_path / "01_demo.py"
    jupytext.write(nb, py, fmt="py:percent")
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code":
            c.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"output of cell {i}\n")]
            c.execution_count = i
    nbformat.write(nb, py.with_suffix(".ipynb"))
    return py


CELLS = [("markdown", "# Title\n\nΔ = $\\alpha$, 知识蒸馏"), ("code", "x = 1\nprint(x)"),
         ("markdown", "Some text."), ("code", "print(2)")]


def test_differences_is_empty_for_a_pair_and_names_an_edited_cell(tmp_path):
    py = _pair(tmp_path, CELLS)
    assert build.differences(py) == []
    py.write_text(py.read_text().replace("# Some text.", "# Some other text."))
    problems = build.differences(py)
    assert len(problems) == 1 and problems[0].startswith("cell 2 (markdown"), problems
    py.write_text(py.read_text() + "\n# %%\nprint(3)\n")
    assert any("has 5 cells" in p for p in build.differences(py))


def test_sync_keeps_outputs_only_where_the_code_is_unchanged(tmp_path):
    py = _pair(tmp_path, CELLS)
    py.write_text(py.read_text().replace("print(2)", "print(20)").replace("# Some text.", "# New text."))
    ipynb, changed = build.sync(py)
    assert changed == [3]
    assert build.differences(py) == []
    nb = nbformat.read(ipynb, as_version=4)
    assert nb.cells[1].outputs[0]["text"] == "output of cell 1\n"      # unchanged code: kept
    assert nb.cells[3].outputs == [] and nb.cells[3].execution_count is None   # changed: cleared
    assert nb.cells[2].source == "New text." and nb.cells[0].source == CELLS[0][1]


def test_names_resolve_and_a_wrong_name_is_a_one_line_error(capsys):
    assert build.resolve(["02"]) == [ROOT / "notebooks" / "02_weight_pruning.py"]
    assert build.resolve(["notebooks/02_weight_pruning.ipynb"]) == build.resolve(["02_weight_pruning"])
    with pytest.raises(SystemExit) as e:
        build.main(["--check", "99"])
    assert "notebook '99' not found; accepted:" in str(e.value) and "\n" not in str(e.value)


def test_changed_files_sees_a_created_modified_and_deleted_file(tmp_path):
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    before = repository_files(tmp_path)
    (tmp_path / "a.txt").write_text("aa")
    (tmp_path / "b.txt").unlink()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.png").write_bytes(b"c")
    assert changed_files(before, repository_files(tmp_path)) == [
        "created sub/c.png", "deleted b.txt", "modified a.txt"]


@pytest.mark.notebook
@pytest.mark.parametrize("py", SOURCES, ids=[p.stem for p in SOURCES])
def test_notebook_runs_in_fast_mode_and_writes_nothing_into_the_repository(py):
    before = repository_files()
    nb = build.read_source(py)
    try:
        build.execute(nb, fast=True, cwd=py.parent, timeout=TIMEOUT)
    except build.NotebookFailed as e:
        pytest.fail(f"{py.name}: {e}")
    errors = [o for cell in nb.cells if cell.cell_type == "code"
              for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{py.name}: error outputs {[(e['ename'], e['evalue']) for e in errors]}"
    changed = changed_files(before, repository_files())
    assert not changed, f"running {py.name} changed files of the repository: {changed}"


def test_a_malformed_ipynb_is_a_one_line_error_naming_it(tmp_path, monkeypatch):
    py = _pair(tmp_path, CELLS)
    py.with_suffix(".ipynb").write_text("{ not json")
    monkeypatch.setattr(build, "NOTEBOOKS", tmp_path)
    with pytest.raises(SystemExit) as e:
        build.main(["--check"])
    message = str(e.value)
    assert "cannot read 01_demo.ipynb" in message and "\n" not in message
    with pytest.raises(SystemExit) as e:
        build.main(["--sync"])
    assert "cannot read 01_demo.ipynb" in str(e.value) and "\n" not in str(e.value)
    assert py.with_suffix(".ipynb").read_text() == "{ not json"          # left as it was
