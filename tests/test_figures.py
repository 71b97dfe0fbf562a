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


def test_pruning_figure_names_only_runs_of_its_results_files_and_cuts_no_point():
    # notebook 08 draws this figure from benchmarks/results; a legend entry for a run the file does not
    # hold, or a point outside the y limits, is what this guards against
    import json
    import runpy

    from matplotlib.figure import Figure
    draw = runpy.run_path(str(ROOT / "benchmarks" / "prune_figure.py"))["draw_accuracy"]
    results = ROOT / "benchmarks" / "results"
    nets = [n for n in ("lenet300", "lenet5") if (results / f"prune_weights_{n}.json").exists()]
    if not nets:
        pytest.skip("no pruning results files")
    for net in nets:
        runs = json.loads((results / f"prune_weights_{net}.json").read_text())["runs"]
        expected = {k for k in runs if not k.startswith("control@")}
        expected |= {f"control (no pruning, 10 ep) {k.split('@', 1)[1]}" for k in runs if k.startswith("control@")}
        expected |= {"reference table (PyTorch)", "dense start"}
        if (results / f"prune_torch_reference_{net}.json").exists():
            expected.add("PyTorch global L1 (run here)")
        ax = Figure().subplots()
        draw(ax, net)
        assert {t.get_text() for t in ax.get_legend().get_texts()} == expected
        lo, hi = ax.get_ylim()
        for line in ax.get_lines():
            if line.get_transform() == ax.transData:   # data lines (axhline spans axes coordinates in x only)
                ys = [float(y) for y in line.get_ydata()]
                assert all(lo <= y <= hi for y in ys), (net, line.get_label(), ys, (lo, hi))
