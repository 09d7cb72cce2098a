"""The scaling benchmark: ingest and latency with 1, 2 and 3 instances sharing the broker and the database.

``python -m bench --only scaling``. For each instance count N, with private
services (bench/rig.py): a fresh database and broker (once-a-second
persistence, so the broker is not the ceiling), and N ``emergency serve``
processes, each with its own ``EMERGENCY_INSTANCE`` and HTTP port, all in the
default MQTT share group (``$share/emergency/…``, docs/scaling.md), so the
broker hands each alarm to one of them.

1. ingest: a publisher process floods ``flood`` QoS 1 alarms; alarms/s =
   stored ÷ (last ``stored_at`` − first alarm ``time``), from the database,
   with every id stored exactly once and exactly five incidents (correlation
   across instances is serialised per spatial cell); how many each instance
   stored comes from its ``/metrics``.
2. latency: ``consoles`` consoles spread round robin over the instances
   (a load balancer's default), alarms at 1,000 a second for ``seconds``;
   publish → console receipt (every console sees every event, whichever
   instance stored the alarm: each instance tails the shared outbox) and
   publish → stored.

Raw baselines in the same run: the same flood through a fresh broker to a
bare counting subscriber, and the same paced alarms to it (receipt −
publish). On a 2-core machine more instances cannot add CPU; the figures
say what they cost or save there.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench import charts
from bench.cpu import CpuMeter, machine_busy_seconds, postgres_pids
from bench.fleet import CLUSTERS
from bench.ingest import (
    MODES,
    Load,
    _broker_drops,
    _broker_pids,
    _measure,
    _patience,
    attempt,
    publish,
    raw_mqtt,
    server,
)
from bench.live import (
    ConsoleFleet,
    console_tokens,
    incident_events,
    stored_latencies,
    wait_delivered,
    wait_stored,
    write_private,
)
from bench.procs import Child
from bench.rig import Rig, rig
from bench.runner import errors_section, get, header, main_for
from bench.stats import fmt_ms, fmt_rate, fmt_ratio, ratio, summary

MODE = "second"
RATE = 1000.0


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    instances: tuple[int, ...]
    flood: int
    consoles: int
    seconds: float


PROFILES: dict[str, Profile] = {
    "quick": Profile("quick", instances=(1, 2), flood=3_000, consoles=20, seconds=3),
    "default": Profile("default", instances=(1, 2, 3), flood=20_000, consoles=100, seconds=10),
}


async def _stored_by(port: int) -> float:
    """``emergency_alarms_stored_total`` of one instance."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        http.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        text = await response.text()
    for line in text.splitlines():
        if line.startswith("emergency_alarms_stored_total "):
            return float(line.split()[1])
    return 0.0


async def instances(r: Rig, n: int, profile: Profile) -> dict[str, Any]:
    name = f"scale{n}"
    url = await r.fresh_database(name)
    tokens = r.directory / f"{name}.tokens"
    write_private(tokens, "\n".join(await console_tokens(url, profile.consoles)))
    async with r.broker(name, save_every_change=MODES[MODE]) as broker, contextlib.AsyncExitStack() as stack:
        servers: list[tuple[Child, int]] = [
            await stack.enter_async_context(server(r, f"{name}-i{i}", url, broker.url)) for i in range(n)
        ]
        conn = await asyncpg.connect(url)
        try:
            # 1. the flood
            meter = CpuMeter(
                {
                    "servers": lambda: [s.pid for s, _ in servers if s.running],
                    "broker": _broker_pids(broker),
                    "postgres": lambda: postgres_pids(r.pg.datadir),
                }
            )
            meter.start()
            busy = machine_busy_seconds()
            flood_prefix = f"sc{n}f"
            pub = await publish(r, f"{name}-flood", broker, flood_prefix, Load(count=profile.flood))
            expected = int(pub["published"])
            stored = await wait_stored(conn, flood_prefix, expected, min(_patience(expected), 600))
            cpu = meter.stop()
            machine = (machine_busy_seconds() - busy) / cpu["wall"]
            flood = await _measure(conn, flood_prefix, expected)
            flood["stored_by_instance"] = [await _stored_by(port) for _, port in servers]
            flood["cpu_cores"] = {k: v / cpu["wall"] for k, v in cpu.items() if k != "wall"}
            flood["cpu_cores"]["publisher"] = pub["cpu_s"] / cpu["wall"]
            # Whatever else ran on the machine meanwhile.
            flood["cpu_cores"]["others"] = max(0.0, machine - sum(flood["cpu_cores"].values()))
            if stored < expected:
                flood["error"] = f"only {stored} of {expected} stored"
            # 2. latency with consoles on every instance
            urls = [f"ws://127.0.0.1:{port}/ws" for _, port in servers]
            async with ConsoleFleet(r, name, urls, profile.consoles, tokens) as fleet:
                lat_prefix = f"sc{n}l"
                paced = await publish(
                    r, f"{name}-paced", broker, lat_prefix, Load(rate=RATE, seconds=profile.seconds)
                )
                await wait_stored(conn, lat_prefix, int(paced["published"]), 120 + 2 * profile.seconds)
                await wait_delivered(fleet, timeout=30)
                events = await incident_events(conn, lat_prefix)
                result = await fleet.stop()
            received = result.received.get(lat_prefix, (0, 0))
            latency = {
                "console_ms": summary(result.latencies.get(lat_prefix, [])),
                "stored_ms": summary(await stored_latencies(conn, lat_prefix)),
                "events": events,
                "least_received": received[0],
                "closed": result.closed,
                "publish_rate": paced["publish_rate"],
            }
        finally:
            await conn.close()
        drops = _broker_drops(broker)
    out = {"instances": n, "flood": flood, "latency": latency, "broker_drop_notices": drops}
    problems = []
    if not flood.get("zero_loss"):
        problems.append(f"flood: {flood.get('missing')} missing")
    if flood.get("incidents") != len(CLUSTERS):
        problems.append(f"{flood.get('incidents')} incidents, {len(CLUSTERS)} expected")
    if latency["least_received"] < events or latency["closed"]:
        problems.append(
            f"a console got {latency['least_received']} of {events} events; closed {latency['closed']}"
        )
    if problems:
        out["error"] = "; ".join(problems)
    return out


def _describe(result: dict[str, Any]) -> str:
    flood = result.get("flood")
    if flood:
        p99 = get(result, "latency", "console_ms", "p99")
        return f": {fmt_rate(flood['rate'])} alarms/s, console p99 {fmt_ms(p99)} ms"
    if "rate" in result:
        return f": {fmt_rate(result['rate'])}/s"
    return ""


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    profile: Profile = args.profile
    errors: list[str] = []
    runs: list[dict[str, Any]] = []
    async with rig(keep=args.keep) as r:
        if args.keep:
            print(f"run folder (kept): {r.directory}", file=sys.stderr)
        raw_flood = await attempt(
            errors,
            "[scaling] raw MQTT flood",
            raw_mqtt(r, "scale-rawflood", MODES[MODE], Load(count=profile.flood)),
            _describe,
        )
        raw_paced = await attempt(
            errors,
            f"[scaling] raw MQTT {RATE:g}/s",
            raw_mqtt(r, "scale-rawpaced", MODES[MODE], Load(rate=RATE, seconds=profile.seconds)),
        )
        for n in profile.instances:
            runs.append(
                await attempt(errors, f"[scaling] {n} instance(s)", instances(r, n, profile), _describe)
                | {"instances": n}
            )
    return {"raw_flood": raw_flood, "raw_paced": raw_paced, "runs": runs, "errors": errors}


def render(report: dict[str, Any]) -> str:
    profile = report["profile"]
    raw_rate = get(report["raw_flood"], "rate")
    raw_p50 = get(report["raw_paced"], "latency_ms", "p50")
    raw_p99 = get(report["raw_paced"], "latency_ms", "p99")
    one: dict[str, Any] = next((r for r in report["runs"] if r["instances"] == 1), {})
    lines = header("Scaling benchmark: instances sharing one broker and one database", report)
    lines += [
        f"N `emergency serve` processes in one MQTT share group (`$share/emergency/…`), one database; broker "
        f"persistence once a second. Ingest: a flood of {profile['flood']:,} QoS 1 alarms. Latency: "
        f"{profile['consoles']} consoles spread round robin over the instances, {RATE:,.0f} alarms/s for "
        f"{profile['seconds']:g} s.",
        "",
        "| instances | alarms/s | ÷ raw MQTT | ÷ 1 instance | stored per instance | incidents | missing "
        "| console p50 ms | p99 | ÷ raw p99 | stored p50 | stored p99 | servers' cores | PostgreSQL "
        "| broker | other processes |",
        "|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for run in report["runs"]:
        n = run["instances"]
        if "flood" not in run:
            lines.append(f"| {n} | failed | | | | | | | | | | | | | | |")
            continue
        f, lat = run["flood"], run["latency"]
        cores = f.get("cpu_cores", {})
        lines.append(
            f"| {n} | {fmt_rate(f['rate'])} | {fmt_ratio(ratio(f['rate'], raw_rate))} "
            f"| {fmt_ratio(ratio(f['rate'], get(one, 'flood', 'rate')))} "
            f"| {' / '.join(f'{v:,.0f}' for v in f['stored_by_instance'])} | {f['incidents']} "
            f"| {f['missing']} "
            f"| {fmt_ms(get(lat, 'console_ms', 'p50'))} | {fmt_ms(get(lat, 'console_ms', 'p99'))} "
            f"| {fmt_ratio(ratio(get(lat, 'console_ms', 'p99'), raw_p99))} "
            f"| {fmt_ms(get(lat, 'stored_ms', 'p50'))} | {fmt_ms(get(lat, 'stored_ms', 'p99'))} "
            f"| {cores.get('servers', 0):.2f} | {cores.get('postgres', 0):.2f} "
            f"| {cores.get('broker', 0):.2f} | {cores.get('others', 0):.2f} |"
        )
    lines += [
        "",
        f"Raw, same run: the flood through a fresh broker to a bare counting subscriber "
        f"{fmt_rate(raw_rate)} msg/s; the paced alarms to it p50 {fmt_ms(raw_p50)} ms, "
        f"p99 {fmt_ms(raw_p99)} ms. "
        "Stored per instance: each instance's `emergency_alarms_stored_total` (the share group's split). "
        "Cores: CPU seconds ÷ wall seconds during the flood "
        f"({report['machine']['nproc']} cores in all).",
    ]
    return "\n".join(lines + errors_section(report)) + "\n"


def chart(report: dict[str, Any], path: Path) -> None:
    runs = [r for r in report["runs"] if "flood" in r]
    fig, (rate, lat) = charts.figure(columns=2, width=5.0, height=3.8)
    xs = [str(r["instances"]) for r in runs]
    charts.bars(rate, xs, {"ours": [get(r, "flood", "rate") for r in runs]}, {"ours": charts.OURS})
    rate.axhline(get(report["raw_flood"], "rate"), color=charts.RAW, linestyle="--", label="raw MQTT ceiling")
    rate.set_xlabel("instances")
    rate.set_ylabel("alarms/s stored (flood)")
    rate.legend(fontsize=7)
    charts.bars(
        lat,
        xs,
        {
            "console p50": [get(r, "latency", "console_ms", "p50") for r in runs],
            "console p99": [get(r, "latency", "console_ms", "p99") for r in runs],
        },
        {"console p50": "#e6837a", "console p99": charts.OURS},
        log=True,
    )
    lat.axhline(
        get(report["raw_paced"], "latency_ms", "p99"), color=charts.RAW, linestyle="--", label="raw MQTT p99"
    )
    lat.set_xlabel("instances")
    lat.set_ylabel(f"publish → console at {RATE:,.0f}/s, ms (log)")
    lat.legend(fontsize=7)
    charts.save(
        fig, path, "Scaling: instances sharing one broker and one database", charts.machine_note(report)
    )


def main(argv: list[str] | None = None, *, prog: str = "python -m bench --only scaling") -> int:
    return main_for(
        "scaling",
        argv,
        prog=prog,
        description="Ingest and latency with 1, 2 and 3 instances sharing the broker and the database.",
        profiles=PROFILES,
        measure=measure,
        render=render,
        chart=chart,
    )


if __name__ == "__main__":
    sys.exit(main(prog="python -m bench.scaling"))
