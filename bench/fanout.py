"""The fan-out benchmark: how many consoles one instance holds, beside a bare broadcast server.

``python -m bench --only fanout``. One ``emergency serve`` (fresh database
and broker, private services from bench/rig.py); consoles are added in
steps (500, 1,000, 2,000, 5,000 by default) by ``bench.consoles`` processes
(at most 500 consoles a process, four processes a step), each console a
commander session of its own. At each step a publisher process sends one
alarm a second for ``seconds``, so every console receives one
``incident.updated`` a second; the benchmark records:

- publish → console receipt p50/p99/max over every console and event (goal:
  p99 < 100 ms), and whether every console got every event or was closed;
- the server's resident memory (RSS) idle, with the step's consoles
  connected, and at its peak during the step (bounded memory: it grows with
  the consoles, not with time), and its CPU;
- the consoles' own CPU (the measuring fleet shares the machine).

Raw baseline, in the same run with the same fleet: ``bench.broadcast``, a
bare aiohttp WebSocket server that sends a frame of the same shape and size
(one of our own ``incident.updated`` events) to every console once a
second with a plain loop: no database, broker, outbox, authentication or
per-console buffer. Its latency is from the start of its send loop, so it is
the fleet's receive overhead plus the bare cost of a broadcast.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from bench import charts
from bench.cpu import CpuMeter, machine_busy_seconds, postgres_pids
from bench.ingest import Load, _broker_pids, attempt, publish, server
from bench.live import (
    ConsoleFleet,
    FleetResult,
    Sampler,
    console_tokens,
    fleet_processes,
    incident_events,
    rss_mib,
    stored_latencies,
    wait_delivered,
    wait_stored,
    write_private,
)
from bench.procs import Child, python_module, running
from bench.rig import Rig, rig
from bench.runner import compress_kind, compress_option, errors_section, get, header, main_for
from bench.stats import fmt_ms, fmt_ratio, ratio, summary
from command.services import free_port

GOAL = {"consoles": 5000, "p99_ms": 100.0}


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    steps: tuple[int, ...]
    seconds: float  # one update a second for this long at each step


PROFILES: dict[str, Profile] = {
    "quick": Profile("quick", steps=(50, 200), seconds=4),
    "default": Profile("default", steps=(500, 1000, 2000, 5000), seconds=15),
}


async def _stats(fleets: list[ConsoleFleet]) -> dict[str, float]:
    total = {"cpu_s": 0.0, "frames": 0.0, "open": 0.0}
    for fleet in fleets:
        doc = await fleet.stats()
        for key in total:
            total[key] += doc[key]
    return total


async def _settle(fleets: list[ConsoleFleet]) -> None:
    for fleet in fleets:
        await wait_delivered(fleet, timeout=30)


def _merge(results: list[FleetResult]) -> tuple[dict[str, list[float]], dict[str, int], dict[str, int]]:
    """Latencies by prefix, the fewest events any console got by prefix, close codes."""
    latencies: dict[str, list[float]] = {}
    least: dict[str, int] = {}
    closed: dict[str, int] = {}
    for result in results:
        for prefix, values in result.latencies.items():
            latencies.setdefault(prefix, []).extend(values)
        for prefix, (fewest, _most) in result.received.items():
            least[prefix] = min(least.get(prefix, fewest), fewest)
        for code, n in result.closed.items():
            closed[code] = closed.get(code, 0) + n
    return latencies, least, closed


def _step_result(
    n: int, wall: float, before: dict[str, float], after: dict[str, float], cpu_s: float
) -> dict[str, Any]:
    return {
        "consoles": n,
        "open_after": int(after["open"]),
        "frames_per_console_s": (after["frames"] - before["frames"]) / n / wall,
        "fleet_cores": (after["cpu_s"] - before["cpu_s"]) / wall,
        "server_cores": cpu_s / wall,
    }


async def _ramp(
    stack: contextlib.AsyncExitStack,
    fleets: list[ConsoleFleet],
    r: Rig,
    name: str,
    port: int,
    steps: Sequence[int],
    tokens: Path,
    *,
    own_tokens: bool,
    compress: bool,
) -> AsyncIterator[int]:
    """For each step ``n``: connect consoles to ``port`` until ``n`` are, then yield ``n``.

    Each step's consoles are one more fleet, appended to ``fleets`` and kept
    connected until ``stack`` closes. ``own_tokens``: console k logs in with
    token k of ``tokens`` (our server); else every console with the first (the
    bare server checks none).
    """
    connected = 0
    for n in steps:
        fleet = ConsoleFleet(
            r,
            f"{name}-{n}",
            [f"ws://127.0.0.1:{port}/ws"],
            n - connected,
            tokens,
            first=connected if own_tokens else 0,
            compress=compress,
        )
        fleets.append(await stack.enter_async_context(fleet))
        connected = n
        yield n


async def ours(r: Rig, profile: Profile, template_out: Path, compress: bool) -> dict[str, Any]:
    """Our server, consoles added step by step."""
    name = "fanout"
    url = await r.fresh_database(name)
    tokens = r.directory / "fanout.tokens"
    write_private(tokens, "\n".join(await console_tokens(url, max(profile.steps))))
    steps: list[dict[str, Any]] = []
    fleets: list[ConsoleFleet] = []
    async with (
        r.broker(name, save_every_change=True) as broker,
        server(r, name, url, broker.url) as (srv, port),
        contextlib.AsyncExitStack() as stack,
    ):
        conn = await asyncpg.connect(url)
        try:
            # Open the five incidents before any console connects.
            warm = await publish(r, f"{name}-warm", broker, "warm", Load(rate=10, seconds=1))
            await wait_stored(conn, "warm", int(warm["published"]), 60)
            rss_idle = rss_mib(srv.pid)
            ramp = _ramp(
                stack, fleets, r, name, port, profile.steps, tokens, own_tokens=True, compress=compress
            )
            async for n in ramp:
                rss_connected = rss_mib(srv.pid)
                before = await _stats(fleets)
                meter = CpuMeter(
                    {"broker": _broker_pids(broker), "postgres": lambda: postgres_pids(r.pg.datadir)}
                )
                meter.start()
                busy = machine_busy_seconds()
                with Sampler(srv.pid) as sampler:
                    pub = await publish(
                        r, f"{name}-{n}", broker, f"fan{n}", Load(rate=1, seconds=profile.seconds)
                    )
                    await wait_stored(conn, f"fan{n}", int(pub["published"]), 60)
                    await _settle(fleets)
                cpu = meter.stop()
                machine = (machine_busy_seconds() - busy) / cpu["wall"]
                after = await _stats(fleets)
                step = _step_result(n, sampler.wall_s, before, after, sampler.cpu_s)
                ours_cores = (
                    step["server_cores"]
                    + step["fleet_cores"]
                    + (cpu["postgres"] + cpu["broker"] + pub["cpu_s"]) / cpu["wall"]
                )
                steps.append(
                    step
                    | {
                        "prefix": f"fan{n}",
                        "events": await incident_events(conn, f"fan{n}"),
                        "stored_ms": summary(await stored_latencies(conn, f"fan{n}")),
                        "rss_mib": {"idle": rss_idle, "connected": rss_connected, "peak": sampler.peak_mib},
                        "postgres_cores": cpu["postgres"] / cpu["wall"],
                        "broker_cores": cpu["broker"] / cpu["wall"],
                        # Whatever else ran on the machine meanwhile.
                        "other_cores": max(0.0, machine - ours_cores),
                    }
                )
            template = await conn.fetchval(
                "SELECT data::text FROM events WHERE name = 'incident.updated' ORDER BY seq DESC LIMIT 1"
            )
        finally:
            await conn.close()
        results = [await fleet.stop() for fleet in fleets]
    if template:
        # The baseline sends frames of the same shape and size as ours.
        doc = json.loads(template)
        doc.pop("last_alarm", None)
        await asyncio.to_thread(template_out.write_text, json.dumps(doc))
    return _outcome(steps, results)


def _outcome(steps: list[dict[str, Any]], results: list[FleetResult]) -> dict[str, Any]:
    """The steps with the consoles' latencies and fewest events received, and the close codes."""
    latencies, least, closed = _merge(results)
    for step in steps:
        step["latency_ms"] = summary(latencies.get(step["prefix"], []))
        step["least_received"] = least.get(step["prefix"], 0)
    return {"steps": steps, "closed": closed, "mean_frame_bytes": _frame_bytes(results)}


def _frame_bytes(results: list[FleetResult]) -> float:
    frames = sum(r.frames for r in results)
    return sum(r.frame_bytes for r in results) / frames if frames else math.nan


async def bare(r: Rig, profile: Profile, template: Path, compress: bool) -> dict[str, Any]:
    """The bare broadcast server, the same fleet ramp."""
    tokens = r.directory / "fanout-bare.tokens"
    write_private(tokens, "unused\n")  # the bare server checks no token
    port = free_port()
    argv = python_module("bench.broadcast", "--port", port)
    if await asyncio.to_thread(template.exists):
        argv += ["--template", str(template)]
    child = Child("bare broadcast server", argv, log=r.log_path("fanout-bare"), stdin=True)
    steps: list[dict[str, Any]] = []
    fleets: list[ConsoleFleet] = []
    async with running(child), contextlib.AsyncExitStack() as stack:
        if "port" not in json.loads(await child.readline(timeout=30)):
            raise child.failure("did not say its port")
        rss_idle = rss_mib(child.pid)
        ramp = _ramp(
            stack, fleets, r, "bare", port, profile.steps, tokens, own_tokens=False, compress=compress
        )
        async for n in ramp:
            rss_connected = rss_mib(child.pid)
            before = await _stats(fleets)
            busy = machine_busy_seconds()
            with Sampler(child.pid) as sampler:
                await child.send(f"broadcast raw{n} {int(profile.seconds)} 1.0")
                sent = json.loads(await child.readline(timeout=profile.seconds + 300))
                await _settle(fleets)
            after = await _stats(fleets)
            step = _step_result(n, sampler.wall_s, before, after, sampler.cpu_s)
            machine = (machine_busy_seconds() - busy) / sampler.wall_s
            step["other_cores"] = max(0.0, machine - step["server_cores"] - step["fleet_cores"])
            steps.append(
                step
                | {
                    "prefix": f"raw{n}",
                    "events": int(profile.seconds),
                    "sent": sent,
                    "rss_mib": {"idle": rss_idle, "connected": rss_connected, "peak": sampler.peak_mib},
                }
            )
        results = [await fleet.stop() for fleet in fleets]
        await child.send("stop")
    return _outcome(steps, results)


def _describe(result: dict[str, Any]) -> str:
    steps = result.get("steps") or []
    return "".join(f"; {s['consoles']}: p99 {fmt_ms(get(s, 'latency_ms', 'p99'))} ms" for s in steps)


def held(result: dict[str, Any]) -> int:
    """The most consoles of a step that all stayed connected, got every update, with p99 under the goal."""
    best = 0
    for step in result.get("steps", []):
        ok = (
            step["open_after"] == step["consoles"]
            and step["least_received"] >= step["events"]
            and get(step, "latency_ms", "p99") < GOAL["p99_ms"]
        )
        if not ok:
            break
        best = step["consoles"]
    return best


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    profile: Profile = args.profile
    errors: list[str] = []
    async with rig(keep=args.keep) as r:
        if args.keep:
            print(f"run folder (kept): {r.directory}", file=sys.stderr)
        template = r.directory / "fanout-template.json"
        ours_result = await attempt(
            errors, "[fanout] ours", ours(r, profile, template, args.compress), _describe
        )
        bare_result = await attempt(
            errors, "[fanout] bare aiohttp broadcast", bare(r, profile, template, args.compress), _describe
        )
    for step in ours_result.get("steps", []):
        if step["open_after"] < step["consoles"] or step["least_received"] < step["events"]:
            errors.append(
                f"[fanout] {step['consoles']} consoles: {step['open_after']} still open, "
                f"fewest events received {step['least_received']} of {step['events']}"
            )
    return {
        "ours": ours_result,
        "bare": bare_result,
        "held": held(ours_result),
        "compress": args.compress,
        "errors": errors,
    }


def render(report: dict[str, Any]) -> str:
    profile = report["profile"]
    ours_steps = {s["consoles"]: s for s in report["ours"].get("steps", [])}
    bare_steps = {s["consoles"]: s for s in report["bare"].get("steps", [])}
    lines = header("Fan-out benchmark: consoles on one instance", report)
    lines += [
        f"Consoles added in steps to one `emergency serve`; at each step one alarm a second for "
        f"{profile['seconds']:g} s, so one `incident.updated` a second for every console. Raw: a bare "
        "aiohttp WebSocket server (`bench.broadcast`) sending a frame of the same shape and size to every "
        "console once a second with a plain loop; the same console fleet. Console processes: "
        + ", ".join(f"{n:,} → {fleet_processes(n)} added" for n in _deltas(profile["steps"]))
        + ". Latency in ms. "
        + (
            "The consoles offered permessage-deflate, as browsers do (`--compress`)."
            if report.get("compress")
            else "The consoles did not offer permessage-deflate (browsers do: `--compress` measures that)."
        ),
        "",
        "| consoles | path | p50 | p99 | max | ours ÷ raw p99 | of which stored p50 / p99 | still open "
        "| fewest updates got / sent | RSS idle MiB | RSS connected | RSS peak | KiB per console "
        "| server cores | consoles' cores | other processes' cores |",
        "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for n in profile["steps"]:
        for label, step in (("ours", ours_steps.get(n)), ("raw broadcast", bare_steps.get(n))):
            if step is None:
                lines.append(f"| {n:,} | {label} | failed | | | | | | | | | | | | | |")
                continue
            rss = step["rss_mib"]
            per_console = (rss["connected"] - rss["idle"]) * 1024 / n
            r99 = ratio(get(step, "latency_ms", "p99"), get(bare_steps.get(n, {}), "latency_ms", "p99"))
            lines.append(
                f"| {n:,} | {label} | {fmt_ms(get(step, 'latency_ms', 'p50'))} "
                f"| {fmt_ms(get(step, 'latency_ms', 'p99'))} | {fmt_ms(get(step, 'latency_ms', 'max'))} "
                f"| {fmt_ratio(r99) if label == 'ours' else ''} | {_stored(step)} | {step['open_after']:,} "
                f"| {step['least_received']} / {step['events']} | {rss['idle']:,.0f} "
                f"| {rss['connected']:,.0f} | {rss['peak']:,.0f} | {per_console:,.0f} "
                f"| {step['server_cores']:.2f} | {step['fleet_cores']:.2f} "
                f"| {step.get('other_cores', math.nan):.2f} |"
            )
    verdict = "met" if report["held"] >= GOAL["consoles"] else "missed"
    lines += [
        "",
        "Stored: publish → row written (`stored_at − time`), the ingest's share of ours. "
        "RSS: the server process's resident memory before any console, with the step's consoles connected "
        "(before the step's updates), and its peak during the step; KiB per console = (connected − idle) ÷ "
        "consoles. Cores: CPU seconds ÷ wall seconds during the step (server: `emergency serve` or the bare "
        "server; consoles: every console process; other processes: the machine's busy CPU minus ours). "
        "Mean frame: ours "
        f"{report['ours'].get('mean_frame_bytes', math.nan):,.0f} bytes, raw "
        f"{report['bare'].get('mean_frame_bytes', math.nan):,.0f} bytes.",
        "",
        f"Most consoles held with every update delivered and p99 < {GOAL['p99_ms']:g} ms: "
        f"**{report['held']:,}** (goal {GOAL['consoles']:,}: {verdict}; the largest step measured was "
        f"{max(profile['steps']):,}).",
    ]
    return "\n".join(lines + errors_section(report)) + "\n"


def _stored(step: dict[str, Any]) -> str:
    if "stored_ms" not in step:
        return ""
    return f"{fmt_ms(get(step, 'stored_ms', 'p50'))} / {fmt_ms(get(step, 'stored_ms', 'p99'))}"


def _deltas(steps: list[int]) -> list[int]:
    return [n - prev for prev, n in zip([0, *steps[:-1]], steps, strict=True)]


def chart(report: dict[str, Any], path: Path) -> None:
    fig, (lat, mem) = charts.figure(columns=2, width=5.5, height=4.0)
    for label, key, colour in (("ours", "ours", charts.OURS), ("raw broadcast", "bare", charts.RAW)):
        steps = report[key].get("steps", [])
        xs = [s["consoles"] for s in steps]
        for pct, style in (("p99", "o-"), ("p50", "o:")):
            ys = charts.finite([get(s, "latency_ms", pct) for s in steps])
            lat.plot(xs, ys, style, color=colour, label=f"{label} {pct}")
        mem.plot(xs, [s["rss_mib"]["peak"] for s in steps], "o-", color=colour, label=f"{label} RSS peak")
    lat.axhline(GOAL["p99_ms"], color=charts.GOAL, linestyle="--", linewidth=1, label="goal p99")
    lat.set_yscale("log")
    lat.set_xlabel("consoles")
    lat.set_ylabel("publish → receipt, ms (log)")
    mem.set_xlabel("consoles")
    mem.set_ylabel("server RSS, MiB")
    for ax in (lat, mem):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    title = "Fan-out: one update a second to every console"
    if report.get("compress"):
        title += " (consoles offer permessage-deflate)"
    charts.save(fig, path, title, charts.machine_note(report))


def main(argv: list[str] | None = None, *, prog: str = "python -m bench --only fanout") -> int:
    return main_for(
        compress_kind("fanout", argv),
        argv,
        prog=prog,
        description="The most consoles one instance holds, beside a bare aiohttp broadcast server.",
        profiles=PROFILES,
        measure=measure,
        render=render,
        chart=chart,
        add_arguments=compress_option,
    )


if __name__ == "__main__":
    sys.exit(main(prog="python -m bench.fanout"))
