"""One row per case, the table, and the result files (pure but for :func:`save`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.files import write_atomic, write_json
from bench.machine import describe

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(slots=True)
class Row:
    """What one case measured.

    ``lost`` and ``duplicated`` are None where they mean nothing (the fuzz
    case sends nothing that should be stored). ``ok`` is the verdict: for the
    control it is "it lost, as expected"; for the broker kill "within the
    documented bound"; for the opt-in share group "lost only what the known
    Mosquitto limitation explains". A row with ``apart`` (why it may lose) is
    marked † and reported apart from the cases that must lose nothing.
    """

    case: str
    title: str
    runs: int
    ok: bool
    verdict: str
    acked: int | None = None
    lost: int | None = None
    duplicated: int | None = None
    # Seconds, one per fault, measured as ``recovery_meaning`` says.
    recovery_s: list[float] = field(default_factory=list)
    recovery_meaning: str = ""
    # Why the case may lose, a clause of the † footnote; empty for a case that must lose nothing.
    apart: str = ""
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    must_lose_nothing: bool = field(init=False)

    def __post_init__(self) -> None:
        self.must_lose_nothing = not self.apart


def median(values: list[float]) -> float:
    finite = sorted(v for v in values if not math.isnan(v))
    if not finite:
        return math.nan
    mid = len(finite) // 2
    return finite[mid] if len(finite) % 2 else (finite[mid - 1] + finite[mid]) / 2


def worst(values: list[float]) -> float:
    """The largest finite value, or NaN."""
    finite = [v for v in values if not math.isnan(v)]
    return max(finite) if finite else math.nan


def seconds(value: float) -> str:
    """``1.23 s``, ``45 ms``, or ``–`` for NaN (nothing to measure)."""
    if math.isnan(value):
        return "–"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def spread(values: list[float]) -> str:
    """``p50 X, max Y`` of ``values``."""
    return f"p50 {seconds(median(values))}, max {seconds(worst(values))}"


def _count(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def table(rows: list[Row]) -> str:
    lines = [
        "| case | runs | acked by broker | lost | duplicated | recovery p50 | recovery max | result |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        mark = "" if row.must_lose_nothing else " †"
        lines.append(
            f"| {row.title}{mark} | {row.runs:,} | {_count(row.acked)} | {_count(row.lost)} "
            f"| {_count(row.duplicated)} "
            f"| {seconds(median(row.recovery_s))} | {seconds(worst(row.recovery_s))} | {row.verdict} |"
        )
    reasons = list(dict.fromkeys(row.apart for row in rows if row.apart))
    if reasons:
        lines += [
            "",
            "† May lose by design, reported apart from the cases that must lose nothing: "
            f"{'; '.join(reasons)}.",
        ]
    return "\n".join(lines) + "\n"


def failed(rows: list[Row]) -> list[Row]:
    return [row for row in rows if not row.ok]


def markdown(report: dict[str, Any], rows: list[Row]) -> str:
    out = [
        f"# Fault injection — {report['profile']['name']} profile, "
        f"{report['started'][:16].replace('T', ' ')} UTC",
        "",
        f"Command: `{report['command']}`",
        "",
        f"{describe(report['machine'], report['load_end'])}. Took {report['seconds']:.0f} s.",
        "",
        f"Flood: {report['profile']['rate']:g} QoS 1 alarms/s from {report['profile']['publishers']} "
        "publisher processes over 40 registered sensors in 4 clusters; private PostgreSQL (durable: fsync "
        "and synchronous commit on) and Mosquitto with the configuration `emergency up` writes "
        "(persistence saved on every change), `emergency serve` in processes of its own.",
        "",
        table(rows),
    ]
    for row in rows:
        out += [f"## {row.title}", ""]
        if row.recovery_meaning:
            out += [f"Recovery: {row.recovery_meaning}.", ""]
        out += [f"- {note}" for note in row.notes]
        out.append("")
    if report["errors"]:
        out += ["## Errors", ""] + [f"- {e.splitlines()[0]}" for e in report["errors"]] + [""]
    return "\n".join(out)


def save(report: dict[str, Any], rows: list[Row], text: str, started: datetime, suffix: str) -> list[Path]:
    """``chaos/results/chaos-{date}{suffix}.json`` and ``chaos{suffix}-latest.md``. Returns the paths."""
    RESULTS.mkdir(exist_ok=True)
    body = dict(report, cases=[asdict(row) for row in rows])
    json_path = RESULTS / f"chaos-{started:%Y-%m-%d}{suffix}.json"
    md_path = RESULTS / f"chaos{suffix}-latest.md"
    write_json(json_path, body)
    write_atomic(md_path, text)
    return [json_path, md_path]
