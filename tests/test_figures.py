"""minicompress.figures draws the pipeline charts without touching matplotlib's global state."""
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
ROOT = Path(__file__).resolve().parent.parent


def test_importing_figures_keeps_the_callers_backend():
    # in a fresh interpreter, so that an earlier import in this session cannot hide a switch
    code = ("import matplotlib; matplotlib.use('svg'); import minicompress.figures; "
            "print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "svg"


def test_stage_chart_writes_a_png(tmp_path):
    from minicompress.figures import stage_chart
    rows = [{"stage": "dense", "bytes": 4000, "accuracy": 0.9},
            {"stage": "pruned", "bytes": 900, "accuracy": 0.88}]
    path = stage_chart(rows, tmp_path / "sub" / "stages.png")
    assert path == tmp_path / "sub" / "stages.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
