"""The ingest benchmark: how many alarms a second we store, and how fast, beside raw baselines.

For each broker persistence mode (``change``: Mosquitto saves on every change,
the shipped default; ``second``: it saves once a second), with private
services (bench/rig.py) and every actor in a process of its own:

1. raw MQTT ceiling: a publisher process floods N QoS 1 alarms at a bare
   subscriber process (MQTT 5, QoS 1) that only counts; messages/s from the
   first publish to the last receipt.
2. raw asyncpg COPY: ``copy_records_to_table`` of N alarm-shaped rows (EWKB
   points) into a scratch table on the same durable cluster; rows/s.
3. our ingest, sustained: ``emergency serve`` in its own process, 1,000
   registered sensors in 5 clusters, the publisher floods N alarms; alarms/s
   = stored / (last ``stored_at`` - first alarm ``time``), both taken from the
   database. Checks that every published id was stored exactly once and
   reports the incidents created (5 expected).
4. latency at a fixed rate (1,000/s and 100/s): per alarm ``stored_at - time``
   for ours; for the raw baseline, the bare subscriber's receipt time minus
   the publish time carried in the payload, at the same rate.

``stored_at`` is ``clock_timestamp()`` when the row is written, moments before
its transaction commits (the fsync of that commit is not in the figure; it is
in the throughput). All clocks are this machine's wall clock.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import shutil
import signal
import struct
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.cpu import CpuMeter, pids_with_argument, postgres_pids
from bench.files import write_atomic, write_json
from bench.fleet import CLUSTERS, SENSOR_COUNT, Cluster, Sensor, alarm_id, alarm_message, build_fleet
from bench.machine import load_average, machine_info
from bench.procs import BenchError, Child, child_env, python_module, running
from bench.rig import Rig, rig
from bench.stats import fmt_ms, fmt_rate, fmt_ratio, ratio, summary
from command.services import EmbeddedMosquitto, ServiceError, free_port
from command.settings import MqttTarget

RESULTS = Path(__file__).resolve().parent / "results"
EMERGENCY = Path(sys.executable).with_name("emergency")

# Broker persistence modes: name -> save_every_change.
MODES: dict[str, bool] = {"change": True, "second": False}
MODE_LABELS = {"change": "change (shipped default)", "second": "second"}

# Slowest rate we wait for before calling a scenario stuck (messages a second).
_PATIENCE_RATE = 40.0


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    flood: int  # alarms per flood (throughput scenarios)
    copy_rows: int
    latency_s: float  # how long each fixed-rate scenario publishes
    rates: tuple[float, ...] = (1000.0, 100.0)


# A flood is a count, not a duration: the publisher outruns our ingest, and
# Mosquitto drops what exceeds max_queued_messages (200,000) for our session.
# 300,000 keeps the backlog below that unless we store less than a third of
# the publisher's rate; the broker log is checked for drops all the same.
PROFILES: dict[str, Profile] = {
    "quick": Profile("quick", flood=5_000, copy_rows=5_000, latency_s=5),
    "default": Profile("default", flood=20_000, copy_rows=20_000, latency_s=15),
    # Issue #9: about 60 s of sustained ingest with --broker-save second.
    "full": Profile("full", flood=300_000, copy_rows=300_000, latency_s=60),
}


@dataclass(frozen=True, slots=True)
class Load:
    """What the publisher sends: a flood of ``count`` alarms, or ``rate`` a second for ``seconds``."""

    count: int = 0
    rate: float = 0.0
    seconds: float = 0.0

    @property
    def paced(self) -> bool:
        return self.rate > 0

    @property
    def messages(self) -> int:
        return round(self.rate * self.seconds) if self.paced else self.count

    def argv(self) -> list[str | int | float]:
        if self.paced:
            return ["--rate", self.rate, "--duration", self.seconds]
        return ["--count", self.count]


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _patience(messages: float, base: float = 60.0) -> float:
    return base + messages / _PATIENCE_RATE


# -- publisher ---------------------------------------------------------------


def mqtt_login_env(url: str) -> dict[str, str]:
    """A child's environment carrying the broker login of ``url``.

    In the environment, not on the command line: other local users can read
    a process's arguments, not its environment.
    """
    target = MqttTarget.from_url(url)
    login = {"BENCH_MQTT_USERNAME": target.username or "", "BENCH_MQTT_PASSWORD": target.password or ""}
    return child_env(login)


async def publish(rig: Rig, name: str, broker: EmbeddedMosquitto, prefix: str, load: Load) -> dict[str, Any]:
    """Run the publisher process to completion (everything acknowledged). Returns its report.

    It plays the whole sensor fleet, so it logs in as the demo simulator does.
    """
    child = Child(
        "publisher",
        python_module("bench.publisher", "--port", broker.port, "--prefix", prefix, *load.argv()),
        log=rig.log_path(f"{name}-publisher"),
        env=mqtt_login_env(broker.simulator_url()),
    )
    async with running(child):
        return await child.result(timeout=_patience(load.messages, base=120.0 + load.seconds))


def _broker_drops(broker: EmbeddedMosquitto) -> int:
    """How often the broker's log says it dropped messages (a queue over max_queued_messages)."""
    try:
        text = (broker.directory / "mosquitto.log").read_text(errors="replace")
    except OSError:
        return 0
    return sum("dropped" in line.lower() for line in text.splitlines())


def _broker_pids(broker: EmbeddedMosquitto) -> Callable[[], list[int]]:
    conf = str(broker.directory / "mosquitto.conf")
    return lambda: pids_with_argument(conf)


# -- raw baselines -------------------------------------------------------------


async def raw_mqtt(rig: Rig, name: str, save_every_change: bool, load: Load) -> dict[str, Any]:
    """The bare broker path: publisher process -> Mosquitto -> counting subscriber process."""
    latency = load.paced
    async with rig.broker(name, save_every_change=save_every_change) as broker:
        sub_argv = python_module("bench.subscriber", "--port", broker.port, "--timeout", 1800)
        if latency:
            sub_argv.append("--latency")
        # The server's login: it may read every sensor's alarms.
        log = rig.log_path(f"{name}-subscriber")
        sub = Child("subscriber", sub_argv, log=log, stdin=True, env=mqtt_login_env(broker.url))
        async with running(sub):
            if (line := await sub.readline(timeout=30)) != "ready":
                raise sub.failure(f"said {line!r} instead of ready")
            meter = CpuMeter({"broker": _broker_pids(broker)})
            meter.start()
            pub = await publish(rig, name, broker, "raw", load)
            await sub.send(str(pub["published"]))
            got = await sub.result(timeout=_patience(pub["published"]))
            cpu = meter.stop() | {"publisher": pub["cpu_s"], "subscriber": got["cpu_s"]}
        drops = _broker_drops(broker)
    if not got["complete"]:
        dropped = f"; the broker logged {drops} drop notice(s)" if drops else ""
        raise BenchError(f"{name}: subscriber received {got['received']} of {pub['published']}{dropped}")
    latencies = got.pop("latencies_ms")
    span = got["t_last_receipt"] - pub["t_first_publish"]
    return {
        "messages": got["received"],
        "duplicates": got["duplicates"],
        "rate": got["received"] / span,
        "seconds": span,
        "publisher": pub,
        "latency_ms": summary(latencies) if latency else None,
        "cpu_s": cpu,
    }


async def raw_copy(rig: Rig, rows: int, repeats: int = 3) -> dict[str, Any]:
    """``copy_records_to_table`` of alarm-shaped rows into a scratch table; the median of ``repeats``."""
    url = await rig.fresh_database("copy")
    fleet = build_fleet()
    now = datetime.now(UTC)
    records = []
    for n in range(rows):
        sensor = fleet[n % len(fleet)]
        doc = json.loads(alarm_message(fleet, "copy", n, now)[1])
        records.append((sensor.id, alarm_id("copy", n), doc["kind"], doc["severity"], now, _ewkb(sensor)))
    conn = await asyncpg.connect(url)
    rates = []
    try:
        # The bytes are EWKB already: pass them through as PostGIS's binary format.
        await conn.set_type_codec("geometry", encoder=bytes, decoder=bytes, format="binary")
        for attempt in range(repeats):
            table = f"copy_scratch_{attempt}"
            await conn.execute(
                f"""
                CREATE TABLE {table} (
                    sensor_id text NOT NULL, alarm_id text NOT NULL, kind text NOT NULL,
                    severity text NOT NULL, time timestamptz NOT NULL,
                    location geometry(Point, 4326) NOT NULL
                )
                """
            )
            started = time.perf_counter()
            await conn.copy_records_to_table(
                table,
                records=records,
                columns=["sensor_id", "alarm_id", "kind", "severity", "time", "location"],
            )
            elapsed = time.perf_counter() - started
            if (count := await conn.fetchval(f"SELECT count(*) FROM {table}")) != rows:
                raise BenchError(f"COPY stored {count} rows of {rows}")
            rates.append(rows / elapsed)
    finally:
        await conn.close()
    return {"rows": rows, "rate": sorted(rates)[len(rates) // 2], "rates": rates}


def _ewkb(sensor: Sensor[Cluster]) -> bytes:
    """A little-endian EWKB point with SRID 4326."""
    return struct.pack("<BIIdd", 1, 0x20000001, 4326, sensor.lon, sensor.lat)


# -- our server ----------------------------------------------------------------


@asynccontextmanager
async def server(rig: Rig, name: str, database_url: str, mqtt_url: str) -> AsyncIterator[tuple[Child, int]]:
    """``emergency serve`` in its own process, healthy (database and broker connected)."""
    if not EMERGENCY.exists():
        raise BenchError(f"{EMERGENCY} not found: run `make install`")
    port = free_port()
    env = child_env(
        {
            "EMERGENCY_DATABASE_URL": database_url,
            "EMERGENCY_MQTT_URL": mqtt_url,
            "EMERGENCY_INSTANCE": f"bench-{name}-{uuid.uuid4().hex[:6]}",
            "EMERGENCY_HTTP_PORT": str(port),
        }
    )
    child = Child(
        "emergency serve",
        [str(EMERGENCY), "serve"],
        log=rig.log_path(f"{name}-server"),
        env=env,
        log_stdout=True,
    )
    async with running(child):
        await _wait_healthy(child, port)
        yield child, port


async def _wait_healthy(child: Child, port: int, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while loop.time() < deadline:
            if not child.running:
                raise child.failure("exited before it was healthy")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise child.failure(f"not healthy within {timeout:.0f} s")


async def _scrape_metrics(port: int) -> dict[str, float]:
    """The ingest's own counters from /metrics (batches, batch sizes, commit time)."""
    wanted = (
        "emergency_ingest_batches_total",
        "emergency_ingest_batch_size_sum",
        "emergency_ingest_batch_size_count",
        "emergency_ingest_commit_seconds_sum",
        "emergency_ingest_commit_seconds_count",
        "emergency_ingest_retries_total",
        "emergency_alarms_duplicate_total",
    )
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        http.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        text = await response.text()
    values = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key in wanted:
            values[key] = float(value)
    batches = values.get("emergency_ingest_batch_size_count", 0.0)
    return {
        "batches": batches,
        "mean_batch": values.get("emergency_ingest_batch_size_sum", 0.0) / batches if batches else math.nan,
        "mean_commit_ms": 1000 * values.get("emergency_ingest_commit_seconds_sum", 0.0) / batches
        if batches
        else math.nan,
        "retries": values.get("emergency_ingest_retries_total", 0.0),
        "duplicates": values.get("emergency_alarms_duplicate_total", 0.0),
    }


async def _wait_stored(conn: asyncpg.Connection, srv: Child, expected: int, timeout: float) -> int:
    """Poll until ``expected`` alarms are stored (the figures come from the rows, not from this wait)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (count := int(await conn.fetchval("SELECT count(*) FROM alarms"))) < expected:
        if not srv.running:
            raise srv.failure(f"exited with {count} of {expected} alarms stored")
        if loop.time() > deadline:
            return count
        await asyncio.sleep(0.25)
    return count


def _py_spy() -> str:
    return shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))


@asynccontextmanager
async def _profiled(pid: int, out: Path | None) -> AsyncIterator[None]:
    """py-spy record of ``pid`` while the block runs: collapsed stacks with line numbers.

    ``--idle`` keeps the samples of threads waiting (the event loop in epoll is
    waiting for PostgreSQL or the broker), so the file shows where wall time
    goes, not only CPU; ``python -m bench.hotspots FILE`` summarises it.
    """
    if out is None:
        yield
        return
    py_spy = _py_spy()
    child = Child(
        "py-spy",
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--idle",
            "--format",
            "raw",
            "--output",
            str(out),
            "--rate",
            "200",
        ],
        log=out.with_suffix(".log"),
        log_stdout=True,
    )
    await child.start()
    try:
        yield
    finally:
        # py-spy writes its output on SIGINT, like a Ctrl-C.
        await child.stop(grace=30, sig=signal.SIGINT)


async def ours(
    rig: Rig,
    name: str,
    save_every_change: bool,
    load: Load,
    profile_out: Path | None = None,
) -> dict[str, Any]:
    """Publish alarms at our server and measure from the rows it stored."""
    url = await rig.fresh_database(name)
    async with (
        rig.broker(name, save_every_change=save_every_change) as broker,
        server(rig, name, url, broker.url) as (srv, port),
        _profiled(srv.pid, profile_out),
    ):
        meter = CpuMeter(
            {
                "broker": _broker_pids(broker),
                "server": lambda: [srv.pid],
                "postgres": lambda: postgres_pids(rig.pg.datadir),
            }
        )
        meter.start()
        pub = await publish(rig, name, broker, name, load)
        expected = int(pub["published"])
        conn = await asyncpg.connect(url)
        try:
            stored = await _wait_stored(conn, srv, expected, _patience(expected))
            cpu = meter.stop() | {"publisher": pub["cpu_s"]}
            measured = await _measure(conn, name, expected)
        finally:
            await conn.close()
        metrics = await _scrape_metrics(port)
        measured["broker_drop_notices"] = _broker_drops(broker)
    if stored < expected:
        measured["error"] = f"only {stored} of {expected} alarms stored before the timeout"
    if measured["broker_drop_notices"]:
        # Not our loss: the benchmark outran the broker's queue limit for our session.
        measured["error"] = (
            f"the broker dropped messages (max_queued_messages); {measured.get('error', '')}".rstrip("; ")
        )
    return measured | {"publisher": pub, "server": metrics, "cpu_s": cpu}


async def _measure(conn: asyncpg.Connection, prefix: str, expected: int) -> dict[str, Any]:
    row = await conn.fetchrow(
        """
        SELECT count(*) AS stored,
               count(*) FILTER (WHERE incident_id IS NULL) AS unassigned,
               min(time) AS first_time, max(stored_at) AS last_stored
        FROM alarms
        """
    )
    assert row is not None
    ids = {r["alarm_id"] for r in await conn.fetch("SELECT alarm_id FROM alarms")}
    wanted = {alarm_id(prefix, n) for n in range(expected)}
    latencies = [
        float(r[0])
        for r in await conn.fetch("SELECT extract(epoch FROM stored_at - time) * 1000 FROM alarms")
    ]
    incidents = await conn.fetch("SELECT family, alarm_count, sensor_count FROM incidents ORDER BY id")
    dead = int(await conn.fetchval("SELECT count(*) FROM dead_letters"))
    stored = int(row["stored"])
    span = (row["last_stored"] - row["first_time"]).total_seconds() if stored else math.nan
    return {
        "published": expected,
        "stored": stored,
        "missing": len(wanted - ids),
        "unexpected": len(ids - wanted),
        "missing_examples": sorted(wanted - ids)[:5],
        "unassigned": int(row["unassigned"]),
        "dead_letters": dead,
        "incidents": len(incidents),
        "incident_detail": [dict(r) for r in incidents],
        "rate": stored / span if stored else math.nan,
        "seconds": span,
        "latency_ms": summary(latencies),
        "zero_loss": stored == expected and not (wanted - ids) and not (ids - wanted),
    }


# -- the run ---------------------------------------------------------------------


def _describe(result: dict[str, Any]) -> str:
    rate = result.get("rate", math.nan)
    extra = f", {fmt_rate(rate)}/s" if not math.isnan(rate) else ""
    if lat := result.get("latency_ms"):
        extra += f", latency p50 {fmt_ms(lat['p50'])} ms, max {fmt_ms(lat['max'])} ms"
    return extra


async def attempt(
    errors: list[str],
    what: str,
    step: Awaitable[dict[str, Any]],
    describe: Callable[[dict[str, Any]], str] = _describe,
) -> dict[str, Any]:
    """Run one scenario; a failure is recorded and the run goes on with the next."""
    progress(f"{what} ...")
    started = time.monotonic()
    try:
        result = await step
    except (BenchError, ServiceError, OSError, asyncpg.PostgresError) as exc:
        errors.append(f"{what}: {exc}")
        progress(f"{what}: FAILED: {exc}")
        return {"error": str(exc)}
    progress(f"{what}: done in {time.monotonic() - started:.0f} s{describe(result)}")
    if "error" in result:
        errors.append(f"{what}: {result['error']}")
    return result


async def run(profile: Profile, modes: list[str], profile_dir: Path | None, keep: bool) -> dict[str, Any]:
    errors: list[str] = []
    results: dict[str, Any] = {}
    async with rig(keep=keep) as r:
        if keep:
            progress(f"run folder (kept): {r.directory}")
        for mode in modes:
            save = MODES[mode]
            flood = Load(count=profile.flood)
            res: dict[str, Any] = {}
            res["raw_mqtt"] = await attempt(
                errors, f"[{mode}] raw MQTT flood", raw_mqtt(r, f"{mode}-rawflood", save, flood)
            )
            res["raw_copy"] = await attempt(errors, f"[{mode}] raw COPY", raw_copy(r, profile.copy_rows))
            out = profile_dir / f"server-{mode}.txt" if profile_dir else None
            res["ours"] = await attempt(
                errors, f"[{mode}] our ingest flood", ours(r, f"{mode}-flood", save, flood, out)
            )
            if res["ours"].get("zero_loss") is False:
                errors.append(
                    f"[{mode}] our ingest flood lost or mixed up alarms: {res['ours']['missing']} missing"
                )
            res["latency"] = {}
            for rate in profile.rates:
                paced = Load(rate=rate, seconds=profile.latency_s)
                tag = f"{mode}-{rate:g}ps"
                raw = await attempt(
                    errors, f"[{mode}] raw MQTT --rate {rate:g}", raw_mqtt(r, tag + "-raw", save, paced)
                )
                our = await attempt(errors, f"[{mode}] our ingest --rate {rate:g}", ours(r, tag, save, paced))
                if our.get("zero_loss") is False:
                    errors.append(f"[{mode}] our ingest at {rate:g}/s lost or mixed up alarms")
                res["latency"][f"{rate:g}"] = {
                    "rate": rate,
                    "seconds": profile.latency_s,
                    "raw": raw,
                    "ours": our,
                }
            results[mode] = res
    return {"modes": results, "errors": errors}


# -- report ------------------------------------------------------------------------


def _get(result: dict[str, Any], *path: str) -> float:
    value: Any = result
    for key in path:
        if not isinstance(value, dict) or key not in value or value[key] is None:
            return math.nan
        value = value[key]
    return float(value)


def render(report: dict[str, Any]) -> str:
    profile = report["profile"]
    m = report["machine"]
    lines = [
        f"# Ingest benchmark — {profile['name']} profile, {report['started'][:16].replace('T', ' ')} UTC",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']}, Linux {m['kernel']}; Python {m['python']}; "
        f"{m['postgres']}; {m['mosquitto']}; paho-mqtt {m['paho-mqtt']}; asyncpg {m['asyncpg']}; "
        f"revision {m['revision']}. Load average {m['load']} at the start, {report['load_end']} at the end.",
        "",
        f"## Sustained ingest: {profile['flood']:,} alarms from {SENSOR_COUNT:,} sensors "
        f"in {len(CLUSTERS)} clusters, published as fast as possible (QoS 1)",
        "",
        "| broker save | ours: alarms/s | raw MQTT msg/s | ours ÷ MQTT | raw COPY rows/s | ours ÷ COPY "
        "| stored / published | missing | incidents | mean batch | mean commit ms |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for mode, res in report["modes"].items():
        ours_rate = _get(res, "ours", "rate")
        mqtt_rate = _get(res, "raw_mqtt", "rate")
        copy_rate = _get(res, "raw_copy", "rate")
        o = res["ours"]
        stored = f"{o['stored']:,} / {o['published']:,}" if "stored" in o else "failed"
        lines.append(
            f"| {MODE_LABELS[mode]} | {fmt_rate(ours_rate)} | {fmt_rate(mqtt_rate)} | "
            f"{fmt_ratio(ratio(ours_rate, mqtt_rate))} | {fmt_rate(copy_rate)} | "
            f"{fmt_ratio(ratio(ours_rate, copy_rate))} | {stored} | {o.get('missing', 'n/a')} | "
            f"{o.get('incidents', 'n/a')} | {fmt_ms(_get(o, 'server', 'mean_batch'))} | "
            f"{fmt_ms(_get(o, 'server', 'mean_commit_ms'))} |"
        )
    lines += [
        "",
        "Ours: stored ÷ (last `stored_at` − first alarm `time`), from the database. "
        "Raw MQTT: a bare paho subscriber process (MQTT 5, QoS 1, persistent session, "
        "Receive Maximum 1,000) counting, first publish to last receipt. "
        "Raw COPY: asyncpg `copy_records_to_table` of as many alarm-shaped rows (EWKB points) "
        "into an unindexed scratch table, median of 3. 5 incidents expected.",
        "",
        "### CPU per message during the flood (µs)",
        "",
        "| broker save | path | publisher | broker | receiver | PostgreSQL | busy cores |",
        "|---|---|--:|--:|--:|--:|--:|",
        *_cpu_rows(report),
        "",
        "Receiver: the bare subscriber for raw MQTT, `emergency serve` for ours. "
        f"Busy cores: all of them together ÷ wall time ({m['nproc']} available).",
        "",
        "## Latency at a fixed rate (ms)",
        "",
        "| broker save | rate | path | p50 | p90 | p99 | max | published/s | delivered/s |",
        "|---|--:|---|--:|--:|--:|--:|--:|--:|",
    ]
    for mode, res in report["modes"].items():
        for entry in res["latency"].values():
            rate = f"{entry['rate']:,.0f}/s"
            rows = (
                ("ours: publish → stored", entry["ours"]),
                ("raw MQTT: publish → received", entry["raw"]),
            )
            for label, result in rows:
                cells = [fmt_ms(_get(result, "latency_ms", k)) for k in ("p50", "p90", "p99", "max")]
                published = fmt_rate(_get(result, "publisher", "publish_rate"))
                delivered = fmt_rate(_get(result, "rate"))
                row = [MODE_LABELS[mode], rate, label, *cells, published, delivered]
                lines.append(f"| {' | '.join(row)} |")
            ratios = [
                fmt_ratio(ratio(_get(entry["ours"], "latency_ms", k), _get(entry["raw"], "latency_ms", k)))
                for k in ("p50", "p90", "p99", "max")
            ]
            lines.append(f"| {MODE_LABELS[mode]} | {rate} | ours ÷ raw | {' | '.join(ratios)} | | |")
    lines += [
        "",
        f"Each rate runs for {profile['latency_s']:g} s. "
        "Ours: `stored_at` (row written, just before its commit) − the alarm's `time` "
        "(when it was handed to the publisher's paho client). "
        "Raw: receipt in the bare subscriber − the same publish time. "
        "delivered/s below published/s: the path could not keep up and latency grew over the run.",
    ]
    if report["errors"]:
        lines += ["", "## Errors", ""] + [f"- {e.splitlines()[0]}" for e in report["errors"]]
    return "\n".join(lines) + "\n"


def _cpu_rows(report: dict[str, Any]) -> list[str]:
    rows = []
    for mode, res in report["modes"].items():
        for label, result, receiver in (
            ("raw MQTT", res["raw_mqtt"], "subscriber"),
            ("ours", res["ours"], "server"),
        ):
            cpu = result.get("cpu_s")
            messages = result.get("messages", result.get("stored"))
            if not cpu or not messages:
                continue
            cells = [
                f"{1e6 * cpu[name] / messages:,.0f}" if name in cpu else "–"
                for name in ("publisher", "broker", receiver, "postgres")
            ]
            busy = sum(v for k, v in cpu.items() if k != "wall") / cpu["wall"]
            rows.append(f"| {MODE_LABELS[mode]} | {label} | {' | '.join(cells)} | {busy:.2f} |")
    return rows


def save_results(
    kind: str, started: datetime, profile_name: str, report: dict[str, Any], markdown: str
) -> None:
    """Write ``bench/results/{kind}-{date}[-profile].json`` and ``{kind}-latest.md``."""
    RESULTS.mkdir(exist_ok=True)
    suffix = "" if profile_name == "default" else f"-{profile_name}"
    json_path = RESULTS / f"{kind}-{started:%Y-%m-%d}{suffix}.json"
    write_json(json_path, report)
    write_atomic(RESULTS / f"{kind}-latest.md", markdown)
    progress(f"wrote {json_path.relative_to(RESULTS.parent.parent)} and bench/results/{kind}-latest.md")


async def _stoppable(main: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """Run ``main``; SIGTERM cancels it like Ctrl-C, so the cleanup blocks still run."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Ingest benchmark beside raw baselines (default: floods of 20,000, 15 s per rate).",
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        action="store_const",
        const="quick",
        dest="profile",
        help="floods of 5,000, 5 s per rate: about a minute",
    )
    size.add_argument(
        "--full",
        action="store_const",
        const="full",
        dest="profile",
        help="floods of 300,000 (about 60 s of our ingest with second), 60 s per rate",
    )
    p.add_argument(
        "--broker-save",
        choices=[*MODES, "both"],
        default="both",
        help="Mosquitto persistence: change (every change, shipped default), second (once a second), both",
    )
    p.add_argument(
        "--profile-dir", type=Path, help="py-spy record the server during each flood (collapsed stacks)"
    )
    p.add_argument("--keep", action="store_true", help="keep the run folder (service data and logs)")
    p.add_argument("--no-save", action="store_true", help="print only; write nothing under bench/results/")
    args = p.parse_args(argv)
    profile = PROFILES[args.profile or "default"]
    modes = list(MODES) if args.broker_save == "both" else [args.broker_save]
    if args.profile_dir:
        if not Path(_py_spy()).exists():
            p.error("--profile-dir needs py-spy: .venv/bin/pip install py-spy")
        args.profile_dir.mkdir(parents=True, exist_ok=True)

    started = datetime.now(UTC)
    machine = machine_info()
    progress(f"{profile.name} profile, broker save {', '.join(modes)}; {machine['nproc']} CPUs")
    try:
        outcome = asyncio.run(_stoppable(run(profile, modes, args.profile_dir, args.keep)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress("interrupted: every process and service of the run was stopped; nothing written")
        return 130
    report = {
        "benchmark": "ingest",
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_end": load_average(),
        "profile": asdict(profile),
        "machine": machine,
        "fleet": {"sensors": SENSOR_COUNT, "clusters": [c.name for c in CLUSTERS]},
        **outcome,
    }
    markdown = render(report)
    print(markdown, end="")
    if not args.no_save:
        save_results("ingest", started, profile.name, report, markdown)
    return 1 if report["errors"] else 0
