"""Execute every notebook in ``notebooks/`` in fast mode, so that none can silently break.

Each notebook runs in a fresh ``python3`` kernel of *this* interpreter (a kernelspec pointing to
``sys.executable`` is written to a temporary JUPYTER_PATH, so the test does not depend on which
``python`` is first on PATH), with ``MINICOMPRESS_FAST=1`` and the notebooks folder as working
directory. The notebook is executed from an in-memory copy: the committed file (with its
full-mode outputs) is never rewritten. A fast run must not replace the committed full-mode figures
either, so any ``figures/*.png`` a notebook rewrites is restored afterwards.
"""
import json
import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TIMEOUT = 300  # seconds per cell


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (minicompress tests)", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("MINICOMPRESS_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # the kernel must import this checkout's minicompress even without `pip install -e .`
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))


@pytest.fixture
def keep_figures():
    """Restore any committed figure that the fast run overwrote (fast figures are not for keeps)."""
    figures = ROOT / "figures"
    before = {p: p.read_bytes() for p in figures.glob("*.png")} if figures.exists() else {}
    yield
    for path, content in before.items():
        if not path.exists() or path.read_bytes() != content:
            path.write_bytes(content)


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_in_fast_mode(path, kernel_env, keep_figures):
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        pytest.fail(f"{path.name}: a cell raised an error in fast mode:\n{e}")
    errors = [o for cell in nb.cells if cell.cell_type == "code"
              for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: error outputs {[(e['ename'], e['evalue']) for e in errors]}"


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found in notebooks/"
