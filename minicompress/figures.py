"""Figures of the combined pipeline (matplotlib, saved as PNG under figures/).

The figures are built as ``matplotlib.figure.Figure`` objects, not through ``pyplot``: saving one
needs no backend, so importing this module leaves the caller's backend alone (a notebook keeps
showing its own figures inline) and works on a machine without a display.
"""
from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure


def _figure(figsize):
    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def _save(fig, path):
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def stage_chart(rows, path, title="stage table"):
    """Bytes (log scale, bars) and accuracy (line) per pipeline stage, like Deep Compression's
    stage table."""
    stages = [r["stage"] for r in rows]
    fig, ax = _figure((7, 3.6))
    bars = ax.bar(stages, [r["bytes"] for r in rows], color="#4C72B0", label="bytes stored")
    ax.set_yscale("log")
    ax.set_xlabel("pipeline stage")
    ax.set_ylabel("bytes stored (log)")
    # each stage's size under its name, where the accuracy line cannot cover it
    ax.set_xticks(range(len(rows)), [f"{r['stage']}\n{r['bytes'] / 1024:.1f} KB" for r in rows])
    ax2 = ax.twinx()
    line, = ax2.plot(stages, [100 * r["accuracy"] for r in rows], "o-", color="#C44E52",
                     label="test accuracy")
    ax2.set_ylabel("test accuracy (%)", color="#C44E52")
    ax.legend(handles=[bars, line], loc="lower left", fontsize=8)
    ax.set_title(title)
    return _save(fig, path)


def pareto_front(points):
    """Indices of the points (bytes, accuracy) not beaten on both axes, sorted by bytes."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -1.0
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def pareto_chart(points, labels, path, title="accuracy vs bytes", anchors=()):
    """Every configuration tried (bytes, accuracy) with its Pareto front; ``anchors`` are
    (bytes, accuracy, label) reference points drawn as stars."""
    fig, ax = _figure((9, 4.2))
    xs, ys = [p[0] / 1024 for p in points], [100 * p[1] for p in points]
    ax.scatter(xs, ys, color="#4C72B0", zorder=3, label="configurations tried")
    front = pareto_front(points)
    # only the front is labelled, by number, with the names in a key beside the axes: front points
    # a few hundred bytes apart would otherwise print their names on top of each other
    for k, i in enumerate(front, 1):
        ax.annotate(str(k), (xs[i], ys[i]), fontsize=7, xytext=(-3, 3), ha="right",
                    textcoords="offset points")
    key = "\n".join(f"{k}  {labels[i]}" for k, i in enumerate(front, 1))
    ax.text(1.02, 1.0, "Pareto front\n" + key, transform=ax.transAxes, va="top", ha="left", fontsize=7)
    ax.plot([xs[i] for i in front], [ys[i] for i in front], "--", color="#C44E52",
            label="Pareto front", zorder=2)
    for b, a, lab in anchors:
        ax.scatter([b / 1024], [100 * a], marker="*", s=120, color="#55A868", zorder=4)
        ax.annotate(lab, (b / 1024, 100 * a), fontsize=7, xytext=(3, -10), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("artifact size (KB, log)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return _save(fig, path)
