"""The latency benchmark: alarm publish → console receipt, beside the bare broker path.

``python -m bench --only latency``. For each alarm rate (100, 1,000 and
5,000 a second) and each number of connected consoles (1, 100, 1,000), with
private services (bench/rig.py), a fresh database, broker and
``emergency serve`` per cell, and every actor in a process of its own:

- consoles: ``bench.consoles`` processes (one per 500 consoles) holding the
  WebSocket connections, each a commander session of its own;
- a publisher process sends alarms at the rate for ``seconds`` (after a
  short warm-up at the same rate that opens the five incidents);
- ours: every console's receipt time of each ``incident.*`` event minus the
  ``time`` of the alarm its ``last_alarm`` names (the moment the publisher
  handed it to paho); "every alarm": when each published alarm first reached
  console 0, which also counts alarms an event shows without naming them
  (bench/live.py ``every_alarm``); "stored": ``stored_at - time`` per alarm,
  to tell the ingest's share from the feed's;
- raw: the same publisher at the same rate through a fresh Mosquitto to a
  bare paho subscriber process (bench/subscriber.py), receipt − publish.

The broker saves on every change (the shipped default) up to 1,000 alarms a
second; 5,000 a second needs its once-a-second persistence (see the ingest
benchmark and docs/operations.md), and the goal cell (1,000/s, 1,000
consoles) is also measured with it. Each row says which it used.

When the goal (p50 < 10 ms, p99 < 50 ms at 1,000/s with 1,000 consoles) is
missed, the goal cell is run once more with py-spy sampling the server
(not counted in the table), and the hot spots are reported.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from bench import charts
from bench.cpu import CpuMeter, machine_busy_seconds, postgres_pids
from bench.hotspots import load as load_profile
from bench.hotspots import report as hotspot_report
from bench.ingest import (
    MODE_LABELS,
    MODES,
    Load,
    _broker_pids,
    _profiled,
    _py_spy,
    _scrape_metrics,
    attempt,
    publish,
    raw_mqtt,
    server,
)
from bench.live import (
    ConsoleFleet,
    Sampler,
    console_tokens,
    every_alarm,
    fleet_processes,
    incident_events,
    stored_latencies,
    wait_delivered,
    wait_stored,
    write_private,
)
from bench.rig import Rig, rig
from bench.runner import compress_kind, compress_option, errors_section, get, header, main_for
from bench.stats import fmt_ms, fmt_ratio, ratio, summary

GOAL = {"rate": 1000.0, "consoles": 1000, "p50_ms": 10.0, "p99_ms": 50.0}


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    rates: tuple[float, ...]
    consoles: tuple[int, ...]
    seconds: float  # each cell publishes this long
    warmup_s: float
    # Extra (rate, consoles, broker mode) cells beyond the grid.
    extra: tuple[tuple[float, int, str], ...] = ()


PROFILES: dict[str, Profile] = {
    "quick": Profile("quick", rates=(100.0, 1000.0), consoles=(1, 100), seconds=3, warmup_s=1),
    "default": Profile(
        "default",
        rates=(100.0, 1000.0, 5000.0),
        consoles=(1, 100, 1000),
        seconds=10,
        warmup_s=2,
        extra=((1000.0, 1000, "second"),),
    ),
}


def broker_mode(rate: float, choice: str) -> str:
    """The shipped default up to 1,000/s; once a second above (the broker cannot save every change faster)."""
    if choice != "auto":
        return choice
    return "second" if rate > 1000 else "change"


def _cells(profile: Profile, choice: str) -> list[tuple[float, int, str]]:
    cells = [(rate, n, broker_mode(rate, choice)) for rate in profile.rates for n in profile.consoles]
    return cells + [c for c in profile.extra if choice == "auto" and c not in cells]


async def cell(
    r: Rig,
    rate: float,
    consoles: int,
    mode: str,
    profile: Profile,
    profile_out: Path | None = None,
    compress: bool = False,
) -> dict[str, Any]:
    """One cell of the grid: fresh database, broker and server; consoles; paced alarms."""
    name = f"lat-{rate:g}-{consoles}-{mode}" + ("-profiled" if profile_out else "")
    tag = f"lat{rate:g}x{consoles}{mode[0]}"  # the measured alarms' id prefix
    url = await r.fresh_database(name)
    tokens = r.directory / f"{name}.tokens"
    write_private(tokens, "\n".join(await console_tokens(url, consoles)))
    load = Load(rate=rate, seconds=profile.seconds)
    async with (
        r.broker(name, save_every_change=MODES[mode]) as broker,
        server(r, name, url, broker.url) as (srv, port),
        ConsoleFleet(
            r, name, [f"ws://127.0.0.1:{port}/ws"], consoles, tokens, trace=True, compress=compress
        ) as fleet,
    ):
        conn = await asyncpg.connect(url)
        try:
            # The warm-up opens the five incidents and warms every cache and
            # prepared statement; its alarms are not measured.
            warm = await publish(r, f"{name}-warm", broker, "warm", Load(rate=rate, seconds=profile.warmup_s))
            await wait_stored(conn, "warm", int(warm["published"]), 120)
            await wait_delivered(fleet, timeout=10)
            fleet_before = await fleet.stats()
            meter = CpuMeter(
                {"broker": _broker_pids(broker), "postgres": lambda: postgres_pids(r.pg.datadir)}
            )
            meter.start()
            busy = machine_busy_seconds()
            with Sampler(srv.pid) as sampler:
                async with _profiled(srv.pid, profile_out):
                    pub = await publish(r, name, broker, tag, load)
                    expected = int(pub["published"])
                    # Bounded: a cell whose ingest falls minutes behind has its
                    # answer already (its latencies show it); the run moves on.
                    stored = await wait_stored(conn, tag, expected, 120 + 2 * profile.seconds)
                    await wait_delivered(fleet, timeout=30)
            cpu = meter.stop()
            machine = (machine_busy_seconds() - busy) / cpu["wall"]
            fleet_after = await fleet.stats()
            events = await incident_events(conn, tag)
            result = await fleet.stop()
            stored_ms = await stored_latencies(conn, tag)
            every = await every_alarm(conn, tag, result.trace)
            incidents = int(await conn.fetchval("SELECT count(*) FROM incidents"))
        finally:
            await conn.close()
        metrics = await _scrape_metrics(port)
    wall = cpu["wall"]
    received = result.received.get(tag, (0, 0))
    cores = {
        "server": sampler.cpu_s / wall,
        "broker": cpu["broker"] / wall,
        "postgres": cpu["postgres"] / wall,
        "fleet": (fleet_after["cpu_s"] - fleet_before["cpu_s"]) / wall,
        "publisher": pub["cpu_s"] / wall,
    }
    # What the rest of the machine took meanwhile (other people's work on a shared machine).
    cores["others"] = max(0.0, machine - sum(cores.values()))
    out: dict[str, Any] = {
        "rate": rate,
        "consoles": consoles,
        "broker_save": mode,
        "seconds": profile.seconds,
        "fleet_processes": fleet_processes(consoles),
        "published": pub["published"],
        "publish_rate": pub["publish_rate"],
        "stored": stored,
        "incidents": incidents,
        "incident_events": events,
        "received_per_console": {"least": received[0], "most": received[1], "expected": events},
        "console_ms": summary(result.latencies.get(tag, [])),
        "every_alarm_console0_ms": summary(every) | {"shown": len(every)},
        "stored_ms": summary(stored_ms),
        "fleet": result.summary(),
        "cpu_cores": cores,
        "frames_per_console_s": (fleet_after["frames"] - fleet_before["frames"]) / max(consoles, 1) / wall,
        "server_rss_mib": {"peak": sampler.peak_mib, "end": sampler.last_mib},
        "server_metrics": metrics,
    }
    problems = []
    if stored < expected:
        problems.append(f"only {stored} of {expected} alarms stored")
    if result.closed:
        problems.append(f"consoles closed by the server: {result.closed}")
    if received[0] < events:
        problems.append(f"a console received {received[0]} of {events} incident events")
    if problems:
        out["error"] = "; ".join(problems)
    return out


def _describe(result: dict[str, Any]) -> str:
    c = result.get("console_ms") or result.get("latency_ms")
    if not c:
        return ""
    return f": p50 {fmt_ms(c['p50'])} ms, p99 {fmt_ms(c['p99'])} ms"


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    profile: Profile = args.profile
    errors: list[str] = []
    raw: dict[str, Any] = {}
    cells: list[dict[str, Any]] = []
    hotspots: dict[str, Any] | None = None
    plan = args.cell or _cells(profile, args.broker_save)
    have_py_spy = shutil.which(_py_spy()) is not None
    async with rig(keep=args.keep) as r:
        if args.keep:
            print(f"run folder (kept): {r.directory}", file=sys.stderr)
        for rate, consoles, mode in plan:
            key = f"{rate:g}-{mode}"
            if key not in raw:
                # The raw baseline of a rate and broker mode right before its first
                # cell, so both see the same machine (on a shared one, that moves).
                raw[key] = await attempt(
                    errors,
                    f"[latency] raw MQTT {rate:g}/s, broker save {mode}",
                    raw_mqtt(r, f"lat-raw-{key}", MODES[mode], Load(rate=rate, seconds=profile.seconds)),
                    _describe,
                )
            result = await attempt(
                errors,
                f"[latency] {rate:g} alarms/s, {consoles} consoles, broker save {mode}",
                cell(r, rate, consoles, mode, profile, compress=args.compress),
                _describe,
            )
            cells.append(result | {"rate": rate, "consoles": consoles, "broker_save": mode})
        goal_cell = _goal_cell(cells)
        if (
            goal_cell is not None
            and not args.no_profile
            and profile.name != "quick"
            and not _goal_met(goal_cell)
            and have_py_spy
        ):
            out = r.directory / "latency-server.pyspy.txt"
            await attempt(
                errors,
                "[latency] the goal cell again, with py-spy sampling the server",
                cell(
                    r,
                    GOAL["rate"],
                    int(GOAL["consoles"]),
                    goal_cell["broker_save"],
                    profile,
                    out,
                    args.compress,
                ),
                _describe,
            )
            if out.exists():
                text = hotspot_report(load_profile(out), 15)
                hotspots = {"broker_save": goal_cell["broker_save"], "summary": text}
    return {"raw": raw, "cells": cells, "hotspots": hotspots, "compress": args.compress, "errors": errors}


def _goal_cell(cells: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The goal cell with the shipped broker setting, else any goal cell."""
    found = [c for c in cells if c["rate"] == GOAL["rate"] and c["consoles"] == GOAL["consoles"]]
    found.sort(key=lambda c: c["broker_save"] != "change")
    return found[0] if found else None


def _goal_met(result: dict[str, Any]) -> bool:
    return (
        get(result, "console_ms", "p50") < GOAL["p50_ms"]
        and get(result, "console_ms", "p99") < GOAL["p99_ms"]
    )


# -- report ------------------------------------------------------------------------


def _row(cells: list[str]) -> str:
    return f"| {' | '.join(cells)} |"


def _p50_p99(c: dict[str, Any]) -> str:
    return f"p50 {fmt_ms(get(c, 'console_ms', 'p50'))} ms, p99 {fmt_ms(get(c, 'console_ms', 'p99'))} ms"


def render(report: dict[str, Any]) -> str:
    profile = report["profile"]
    lines = header("Latency benchmark: alarm → console", report)
    lines += [
        f"Each cell: {profile['seconds']:g} s of alarms at the rate from 1,000 sensors in 5 clusters "
        f"(after a {profile['warmup_s']:g} s warm-up), a fresh database, broker and `emergency serve`; "
        "consoles are commander sessions in `bench.consoles` processes (one process per 500 consoles), "
        "all on this machine. Milliseconds. "
        + (
            "The consoles offered permessage-deflate, as browsers do (`--compress`)."
            if report.get("compress")
            else "The consoles did not offer permessage-deflate (browsers do: `--compress` measures that)."
        ),
        "",
        "## Publish → console receipt, beside publish → bare MQTT subscriber",
        "",
        "| alarms/s | consoles | broker save | ours p50 | p90 | p99 | max | raw MQTT p50 | p99 "
        "| ours ÷ raw p50 | p99 |",
        "|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for c in report["cells"]:
        raw = report["raw"].get(f"{c['rate']:g}-{c['broker_save']}", {})
        ours = [get(c, "console_ms", k) for k in ("p50", "p90", "p99", "max")]
        raws = [get(raw, "latency_ms", k) for k in ("p50", "p99")]
        lines.append(
            _row(
                [
                    f"{c['rate']:,.0f}",
                    f"{c['consoles']:,}",
                    MODE_LABELS[c["broker_save"]],
                    *(fmt_ms(v) for v in ours),
                    *(fmt_ms(v) for v in raws),
                    fmt_ratio(ratio(ours[0], raws[0])),
                    fmt_ratio(ratio(ours[2], raws[1])),
                ]
            )
        )
    lines += [
        "",
        "Ours: every console's receipt of each `incident.opened|updated` event minus the publish time of "
        "the alarm its `last_alarm` names (the newest of its batch for that incident). Raw: a bare paho "
        "subscriber process (MQTT 5, QoS 1) on a fresh broker with the same persistence, same rate, "
        "receipt − publish.",
        "",
        "## Where the time goes",
        "",
        "| alarms/s | consoles | broker save | stored p50 | stored p99 | every alarm p50 | every alarm p99 "
        "| events per console (least / expected) | frames per console per s | closed by server "
        "| server cores | PostgreSQL | broker | consoles' cores (processes) | other processes' cores "
        "| server RSS MiB |",
        "|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for c in report["cells"]:
        if "console_ms" not in c:
            lines.append(
                _row([f"{c['rate']:,.0f}", f"{c['consoles']:,}", c["broker_save"], "failed"] + [""] * 12)
            )
            continue
        got = c["received_per_console"]
        cores = c["cpu_cores"]
        lines.append(
            _row(
                [
                    f"{c['rate']:,.0f}",
                    f"{c['consoles']:,}",
                    MODE_LABELS[c["broker_save"]],
                    fmt_ms(get(c, "stored_ms", "p50")),
                    fmt_ms(get(c, "stored_ms", "p99")),
                    fmt_ms(get(c, "every_alarm_console0_ms", "p50")),
                    fmt_ms(get(c, "every_alarm_console0_ms", "p99")),
                    f"{got['least']:,} / {got['expected']:,}",
                    f"{c['frames_per_console_s']:,.0f}",
                    str(sum(c["fleet"]["closed"].values())),
                    f"{cores['server']:.2f}",
                    f"{cores['postgres']:.2f}",
                    f"{cores['broker']:.2f}",
                    f"{cores['fleet']:.2f} ({c['fleet_processes']})",
                    f"{cores.get('others', math.nan):.2f}",
                    f"{c['server_rss_mib']['peak']:,.0f}",
                ]
            )
        )
    lines += [
        "",
        "Stored: `stored_at − time` per alarm (the row is written, just before its commit). Every alarm: "
        "when each published alarm first reached console 0 (an event also shows the older alarms of its "
        "batch it does not name). Other processes: the whole machine's busy CPU (/proc/stat) minus ours, "
        "i.e. whatever else ran on the machine meanwhile. Cores: CPU seconds ÷ wall seconds while the cell "
        "published "
        f"({report['machine']['nproc']} cores in all, shared by everything, the fleet included).",
    ]
    goal = _goal_cell(report["cells"])
    if goal is not None and "console_ms" in goal:
        verdict = "met" if _goal_met(goal) else "missed"
        lines += [
            "",
            f"Goal at 1,000 alarms/s with 1,000 consoles: p50 < {GOAL['p50_ms']:g} ms and p99 < "
            f"{GOAL['p99_ms']:g} ms: **{verdict}** with the shipped broker setting "
            f"({_p50_p99(goal)}).",
        ]
        for other in report["cells"]:
            if other is not goal and other["rate"] == goal["rate"] and other["consoles"] == goal["consoles"]:
                lines.append(f"With broker save `{other['broker_save']}`: {_p50_p99(other)}.")
    if report.get("hotspots"):
        lines += [
            "",
            "## Where the server spends the goal cell (py-spy)",
            "",
            "The goal cell run once more (not in the tables) with `py-spy record --idle` sampling "
            "`emergency serve` at 200 Hz; summary by `python -m bench.hotspots` (with `--keep` the raw "
            "stacks stay in the run folder as `latency-server.pyspy.txt`):",
            "",
            "```",
            report["hotspots"]["summary"],
            "```",
        ]
    return "\n".join(lines + errors_section(report)) + "\n"


def chart(report: dict[str, Any], path: Path) -> None:
    cells = list(report["cells"])
    labels = [f"{c['rate']:g}/s\n{c['consoles']} cons.\n{c['broker_save']}" for c in cells]
    fig, (ax,) = charts.figure(width=max(7.0, 0.9 * len(cells)), height=4.5)
    raw = report["raw"]

    def raw_of(c: dict[str, Any], key: str) -> float:
        return get(raw.get(f"{c['rate']:g}-{c['broker_save']}", {}), "latency_ms", key)

    charts.bars(
        ax,
        labels,
        {
            "ours p50": [get(c, "console_ms", "p50") for c in cells],
            "ours p99": [get(c, "console_ms", "p99") for c in cells],
            "raw MQTT p50": [raw_of(c, "p50") for c in cells],
            "raw MQTT p99": [raw_of(c, "p99") for c in cells],
        },
        {
            "ours p50": "#e6837a",
            "ours p99": charts.OURS,
            "raw MQTT p50": "#bdc3c7",
            "raw MQTT p99": charts.RAW,
        },
        log=True,
    )
    for value, style in ((GOAL["p50_ms"], ":"), (GOAL["p99_ms"], "--")):
        ax.axhline(value, color=charts.GOAL, linestyle=style, linewidth=1)
    ax.set_ylabel("ms (log scale)")
    ax.legend(fontsize=7, ncols=2)
    charts.save(
        fig,
        path,
        "Alarm publish → console receipt (goal at 1,000/s, 1,000 consoles: p50 < 10 ms, p99 < 50 ms)",
        charts.machine_note(report),
    )


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--broker-save",
        choices=["auto", *MODES],
        default="auto",
        help="broker persistence for every cell (auto: the shipped default up to 1,000/s, second above)",
    )
    p.add_argument("--no-profile", action="store_true", help="no py-spy rerun of the goal cell")
    compress_option(p)
    p.add_argument(
        "--cell",
        type=_parse_cell,
        action="append",
        metavar="RATE:CONSOLES:SAVE",
        help="measure only this cell (repeatable), e.g. 1000:1000:change",
    )


def _parse_cell(text: str) -> tuple[float, int, str]:
    try:
        rate, consoles, mode = text.split(":")
        if mode not in MODES:
            raise ValueError(mode)
        return float(rate), int(consoles), mode
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected RATE:CONSOLES:change|second, got {text!r}") from None


def main(argv: list[str] | None = None, *, prog: str = "python -m bench --only latency") -> int:
    return main_for(
        compress_kind("latency", argv),
        argv,
        prog=prog,
        description="Alarm publish → console receipt beside publish → bare MQTT subscriber.",
        profiles=PROFILES,
        measure=measure,
        render=render,
        chart=chart,
        add_arguments=_arguments,
    )


if __name__ == "__main__":
    sys.exit(main(prog="python -m bench.latency"))
