"""PNG charts of the results (matplotlib, the ``bench`` extra), drawn off-screen."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: the charts are files

import matplotlib.pyplot as plt  # after the backend is chosen
from matplotlib.axes import Axes
from matplotlib.figure import Figure

OURS = "#c0392b"
RAW = "#7f8c8d"
GOAL = "#27ae60"


def figure(columns: int = 1, width: float = 6.0, height: float = 4.0) -> tuple[Figure, list[Axes]]:
    fig, axes = plt.subplots(1, columns, figsize=(width * columns, height), squeeze=False)
    return fig, list(axes[0])


def finite(values: Sequence[float]) -> list[float]:
    """NaN (not measured) drawn as 0 height, so a failed scenario leaves a gap rather than an error."""
    return [0.0 if v is None or (isinstance(v, float) and math.isnan(v)) else float(v) for v in values]


def bars(
    ax: Axes,
    labels: Sequence[str],
    series: dict[str, Sequence[float]],
    colours: dict[str, str] | None = None,
    *,
    log: bool = False,
) -> None:
    """Grouped bars: one group per label, one bar per series."""
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [x + (i - (len(series) - 1) / 2) * width for x in range(len(labels))]
        colour = (colours or {}).get(name)
        ax.bar(xs, finite(values), width, label=name, color=colour)
    ax.set_xticks(range(len(labels)), list(labels), fontsize=8)
    if log:
        ax.set_yscale("log")
    ax.grid(axis="y", alpha=0.3)


def save(fig: Figure, path: Path, title: str, footnote: str = "") -> None:
    fig.suptitle(title, fontsize=11)
    if footnote:
        fig.text(0.01, 0.01, footnote, fontsize=7, color="#555555")
    fig.tight_layout(rect=(0, 0.04 if footnote else 0, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def machine_note(report: dict[str, Any]) -> str:
    m = report["machine"]
    when = report["started"][:16].replace("T", " ")
    return f"{m['nproc']} CPUs, {m['cpu']}; load {m['load']}; {when} UTC; {report['command']}"
