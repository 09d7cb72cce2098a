"""The frame every benchmark after ingest and geo shares: options, report, files.

Each benchmark module supplies its profiles, a coroutine that measures, a
Markdown renderer and a chart; :func:`main_for` does the rest the same way
for all of them: ``--quick``, ``--keep``, ``--no-save``; machine, versions
and server settings in every report; SIGTERM and Ctrl-C stop every child
process and service before exiting; JSON, Markdown and PNG under
``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.cpu import machine_busy_seconds
from bench.ingest import RESULTS, _stoppable, progress, save_results
from bench.machine import describe, load_average, machine_info
from command.settings import Settings

INTERRUPTED = 130

Measure = Callable[[argparse.Namespace], Coroutine[Any, Any, dict[str, Any]]]
Render = Callable[[dict[str, Any]], str]
Chart = Callable[[dict[str, Any], Path], None]


def server_settings() -> dict[str, Any]:
    """The server settings the benchmarks run with: every default, as shipped."""
    wanted = ("batch_max", "receive_maximum", "client_queue_max", "ws_heartbeat_s")
    defaults = {f.name: f.default for f in dataclasses.fields(Settings)}
    return {name: defaults[name] for name in wanted}


def machine_line(report: dict[str, Any]) -> str:
    m = report["machine"]
    return (
        f"{describe(m, report['load_end'])}; the machine was busy "
        f"{report.get('machine_busy_cores', math.nan):.2f} of its {m['nproc']} cores on average during the "
        "run (every process, ours included; what other processes took is in the tables where it matters)."
    )


def settings_line(report: dict[str, Any]) -> str:
    s = report["server_settings"]
    return (
        "Server settings (shipped defaults): each ingest transaction takes what arrived while the "
        f"previous one committed, at most {s['batch_max']} alarms a batch, MQTT Receive Maximum "
        f"{s['receive_maximum']}, {s['client_queue_max']} events queued per console, WebSocket heartbeat "
        f"{s['ws_heartbeat_s']:g} s."
    )


def header(title: str, report: dict[str, Any]) -> list[str]:
    return [
        f"# {title} — {report['profile']['name']} profile, {report['started'][:16].replace('T', ' ')} UTC",
        "",
        f"Command: `{report['command']}`",
        "",
        machine_line(report),
        "",
        settings_line(report),
        "",
    ]


def errors_section(report: dict[str, Any]) -> list[str]:
    if not report["errors"]:
        return []
    return ["", "## Errors", ""] + [f"- {e.splitlines()[0]}" for e in report["errors"]]


def save_chart(chart: Chart, report: dict[str, Any], kind: str) -> None:
    """``bench/results/{kind}-latest.png``; a chart that fails is reported, not fatal."""
    path = RESULTS / f"{kind}-latest.png"
    try:
        chart(report, path)
    except Exception as exc:  # the figures are written already; a chart is a view of them
        progress(f"chart {path.name} failed: {exc!r}")
        return
    progress(f"wrote bench/results/{path.name}")


def compress_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--compress", action="store_true", help="consoles offer permessage-deflate, as browsers do"
    )


def compress_kind(kind: str, argv: list[str] | None) -> str:
    """``{kind}-compress`` with ``--compress``: consoles offering permessage-deflate are another
    configuration, not a newer run of the same one, so their results get a name of their own."""
    args = sys.argv[1:] if argv is None else argv
    return f"{kind}-compress" if "--compress" in args else kind


def main_for(
    kind: str,
    argv: list[str] | None,
    *,
    prog: str,
    description: str,
    profiles: dict[str, Any],
    measure: Measure,
    render: Render,
    chart: Chart,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """Parse options, measure, print the Markdown, save JSON, Markdown and PNG. Returns the exit status."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--quick", action="store_true", help="a short smoke run")
    p.add_argument("--keep", action="store_true", help="keep the run folder (service data and logs)")
    p.add_argument("--no-save", action="store_true", help="print only; write nothing under bench/results/")
    if add_arguments is not None:
        add_arguments(p)
    args = p.parse_args(argv)
    args.profile = profiles["quick" if args.quick else "default"]
    started = datetime.now(UTC)
    machine = machine_info()
    progress(f"{kind}: {args.profile.name} profile; {machine['nproc']} CPUs, load {machine['load']}")
    busy_before, wall_before = machine_busy_seconds(), time.monotonic()
    try:
        outcome = asyncio.run(_stoppable(measure(args)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress("interrupted: every process and service of the run was stopped; nothing written")
        return INTERRUPTED
    report = {
        "benchmark": kind,
        "command": " ".join([prog, *(argv if argv is not None else sys.argv[1:])]),
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_end": load_average(),
        "profile": dataclasses.asdict(args.profile),
        "machine": machine,
        "server_settings": server_settings(),
        # Every process on the machine, ours included, on average over the run.
        "machine_busy_cores": (machine_busy_seconds() - busy_before) / (time.monotonic() - wall_before),
        **outcome,
    }
    markdown = render(report)
    print(markdown, end="")
    if not args.no_save:
        save_results(kind, started, args.profile.name, report, markdown)
        save_chart(chart, report, kind)
    return 1 if report["errors"] else 0


def get(result: Any, *path: str) -> float:
    """``result[path...]`` as a float; NaN when any step is missing (a failed scenario)."""
    value = result
    for key in path:
        if not isinstance(value, dict) or key not in value or value[key] is None:
            return math.nan
        value = value[key]
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
