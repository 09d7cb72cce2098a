"""One row per case, the table, and the result files (pure but for :func:`save`)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(slots=True)
class Row:
    """What one case measured.

    ``lost`` and ``duplicated`` are None where they mean nothing (the fuzz
    case sends nothing that should be stored). ``ok`` is the verdict: for the
    control it is "it lost, as expected"; for the broker kill "within the
    documented bound".
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
    must_lose_nothing: bool = True
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


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
    if not all(row.must_lose_nothing for row in rows):
        lines += [
            "",
            "† May lose by design, reported apart from the cases that must lose nothing: the control shows "
            "what the shipped broker settings buy, a broker SIGKILL is held to its documented bound, and the "
            "fuzz case sends nothing that should be stored.",
        ]
    return "\n".join(lines) + "\n"


def failed(rows: list[Row]) -> list[Row]:
    return [row for row in rows if not row.ok]


def markdown(report: dict[str, Any], rows: list[Row]) -> str:
    m = report["machine"]
    out = [
        f"# Fault injection — {report['profile']['name']} profile, "
        f"{report['started'][:16].replace('T', ' ')} UTC",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']}, Linux {m['kernel']}; Python {m['python']}; "
        f"{m['postgres']}; {m['mosquitto']}; paho-mqtt {m['paho-mqtt']}; asyncpg {m['asyncpg']}; "
        f"aiohttp {m.get('aiohttp', '?')}; revision {m['revision']}. Load average {m['load']} at the start, "
        f"{report['load_end']} at the end. Took {report['seconds']:.0f} s.",
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


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save(report: dict[str, Any], rows: list[Row], text: str, started: datetime, suffix: str) -> list[Path]:
    """``chaos/results/chaos-{date}{suffix}.json`` and ``chaos{suffix}-latest.md``. Returns the paths."""
    RESULTS.mkdir(exist_ok=True)
    body = dict(report, cases=[asdict(row) for row in rows])
    json_path = RESULTS / f"chaos-{started:%Y-%m-%d}{suffix}.json"
    md_path = RESULTS / f"chaos{suffix}-latest.md"
    _write(json_path, json.dumps(_jsonable(body), indent=2, default=str) + "\n")
    _write(md_path, text)
    return [json_path, md_path]
