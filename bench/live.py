"""What the console benchmarks (latency, storm, fan-out, scaling) share.

- accounts: one commander and a session (bearer token) per console, written
  straight into the database (a login per console would spend 50 ms of
  scrypt each, for nothing the benchmark measures);
- :class:`ConsoleFleet`: the ``bench.consoles`` processes, split so that no
  one process holds more than ``PER_PROCESS`` consoles;
- the server's memory (RSS from /proc) sampled during a run;
- alarm-to-screen latency for *every* alarm, from console 0's trace.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import math
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bench.cpu import process_cpu
from bench.fleet import CLUSTERS
from bench.procs import BenchError, Child, child_env, python_module
from bench.rig import Rig
from command.accounts import add_user
from command.auth import token_hash

# A console process receives every frame of every console it holds; past a
# few hundred consoles at a thousand events a second one Python process is
# the bottleneck, so larger fleets are split.
PER_PROCESS = 500
MAX_PROCESSES = 4
CONSOLE_USER = "bench-console"


def fleet_processes(consoles: int) -> int:
    return max(1, min(MAX_PROCESSES, math.ceil(consoles / PER_PROCESS)))


async def console_tokens(url: str, count: int) -> list[str]:
    """A commander account and ``count`` live sessions on it; the bearer tokens.

    Also marks every registered sensor online and recently seen, as they are
    when a storm starts in a city whose sensors send heartbeats: otherwise
    the first alarm of each sensor adds a ``sensor.online`` event that a
    steady state would not have.
    """
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("UPDATE sensors SET state = 'online', last_seen = now()")
        user_id = await conn.fetchval("SELECT id FROM users WHERE username = $1", CONSOLE_USER)
        if user_id is None:
            user_id = await add_user(
                conn, username=CONSOLE_USER, password=secrets.token_urlsafe(16), role="commander"
            )
        tokens = [secrets.token_urlsafe(32) for _ in range(count)]
        await conn.execute(
            """
            INSERT INTO sessions (token_hash, user_id, expires_at)
            SELECT h, $2, now() + interval '1 day' FROM unnest($1::bytea[]) AS h
            """,
            [token_hash(t) for t in tokens],
            user_id,
        )
        return tokens
    finally:
        await conn.close()


async def commander_tokens(url: str, count: int) -> list[str]:
    """``count`` commander accounts (``bench-commander-N``), one session each; their bearer tokens."""
    conn = await asyncpg.connect(url)
    try:
        tokens = []
        for n in range(count):
            user_id = await add_user(
                conn, username=f"bench-commander-{n}", password=secrets.token_urlsafe(16), role="commander"
            )
            token = secrets.token_urlsafe(32)
            await conn.execute(
                """
                INSERT INTO sessions (token_hash, user_id, expires_at)
                VALUES ($1, $2, now() + interval '1 day')
                """,
                token_hash(token),
                user_id,
            )
            tokens.append(token)
        return tokens
    finally:
        await conn.close()


def write_private(path: Path, text: str) -> None:
    """A file only we can read (bearer tokens)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def read_latencies(path: str) -> list[float]:
    values = array.array("d")
    with open(path, "rb") as f:
        values.frombytes(f.read())
    return values.tolist()


@dataclass(slots=True)
class FleetResult:
    """The fleet processes' results, merged."""

    consoles: int
    connected: int
    connect_s: float
    cpu_s: float
    frames: int
    frame_bytes: int
    latencies: dict[str, list[float]]
    # prefix -> (fewest, most) matching events one connected console received
    received: dict[str, tuple[int, int]]
    closed: dict[str, int]
    errors: dict[str, int]
    trace: list[tuple[str, int, float]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "consoles": self.consoles,
            "connected": self.connected,
            "connect_s": self.connect_s,
            "cpu_s": self.cpu_s,
            "frames": self.frames,
            "mean_frame_bytes": self.frame_bytes / self.frames if self.frames else math.nan,
            "received": {p: list(v) for p, v in self.received.items()},
            "closed": self.closed,
            "errors": self.errors,
        }


class ConsoleFleet:
    """``consoles`` WebSocket consoles in ``fleet_processes(consoles)`` processes.

    ``async with ConsoleFleet(...) as fleet``: started, every console connected
    (else :class:`BenchError`), and every process stopped when the block ends,
    however it ends.
    """

    def __init__(
        self,
        rig: Rig,
        name: str,
        urls: Sequence[str],
        consoles: int,
        tokens: Path,
        *,
        trace: bool = False,
        compress: bool = False,
        first: int = 0,
    ) -> None:
        self.name = name
        self.consoles = consoles
        self.children: list[Child] = []
        processes = fleet_processes(consoles)
        base, extra = divmod(consoles, processes)
        start = first
        for n in range(processes):
            count = base + (n < extra)
            # Consoles are spread over the instances round robin (a load balancer's default).
            url = urls[n % len(urls)]
            argv = python_module(
                "bench.consoles",
                "--url",
                url,
                "--tokens",
                str(tokens),
                "--first",
                start,
                "--count",
                count,
                "--out",
                str(rig.directory / f"{name}-fleet{n}"),
            )
            if trace and n == 0:
                argv.append("--trace")
            if compress:
                argv.append("--compress")
            self.children.append(
                Child(
                    f"console fleet {n}",
                    argv,
                    log=rig.log_path(f"{name}-fleet{n}"),
                    stdin=True,
                    env=child_env(),
                )
            )
            start += count
        self.ready: list[dict[str, Any]] = []

    async def __aenter__(self) -> ConsoleFleet:
        try:
            connected = await self.start()
            if connected < self.consoles:
                errors = [e for r in self.ready for e in r.get("connect_errors", [])]
                raise BenchError(
                    f"{self.name}: only {connected} of {self.consoles} consoles connected: {errors[:3]}"
                )
        except BaseException:
            await self.kill()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.kill()

    @property
    def pids(self) -> list[int]:
        return [c.pid for c in self.children if c.running]

    async def start(self, timeout: float = 180.0) -> int:
        """Start every process; return once each has connected its consoles. Returns how many did."""
        for child in self.children:
            await child.start()
        self.ready = [json.loads(await c.readline(timeout=timeout)) for c in self.children]
        return sum(int(r["ready"]) for r in self.ready)

    async def stats(self) -> dict[str, float]:
        """CPU seconds, frames and open sockets so far, all processes together."""
        total: dict[str, float] = {"cpu_s": 0.0, "frames": 0.0, "frame_bytes": 0.0, "open": 0.0}
        for child in self.children:
            await child.send("stats")
            doc = json.loads(await child.readline(timeout=60))
            for key in total:
                total[key] += float(doc[key])
        return total

    async def stop(self, timeout: float = 120.0) -> FleetResult:
        docs = []
        for child in self.children:
            await child.send("stop")
        for child in self.children:
            docs.append(await child.result(timeout=timeout))
        latencies: dict[str, list[float]] = {}
        received: dict[str, tuple[int, int]] = {}
        for doc in docs:
            for prefix, path in doc["latency_files"].items():
                latencies.setdefault(prefix, []).extend(read_latencies(path))
                with contextlib.suppress(OSError):
                    os.unlink(path)
            for prefix, (least, most, _total) in doc["received"].items():
                old = received.get(prefix)
                received[prefix] = (least, most) if old is None else (min(old[0], least), max(old[1], most))
        closed: dict[str, int] = {}
        errors: dict[str, int] = {}
        for doc in docs:
            for k, v in doc["closed"].items():
                closed[k] = closed.get(k, 0) + v
            for k, v in doc["errors"].items():
                errors[k] = errors.get(k, 0) + v
        return FleetResult(
            consoles=sum(d["consoles"] for d in docs),
            connected=sum(d["connected"] for d in docs),
            connect_s=max(d["connect_s"] for d in docs),
            cpu_s=sum(d["cpu_s"] for d in docs),
            frames=sum(d["frames"] for d in docs),
            frame_bytes=sum(d["frame_bytes"] for d in docs),
            latencies=latencies,
            received=received,
            closed=closed,
            errors=errors,
            trace=[(str(p), int(n), float(t)) for d in docs for p, n, t in d["trace"]],
        )

    async def kill(self) -> None:
        for child in self.children:
            await child.stop(grace=5)


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` in MiB (NaN when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return math.nan


class Sampler:
    """RSS (peak and last) and CPU seconds of one process, sampled in the background."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_mib = rss_mib(pid)
        self.last_mib = self.peak_mib
        self._cpu0 = process_cpu(pid) or 0.0
        self._t0 = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self.cpu_s = math.nan
        self.wall_s = math.nan

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            value = rss_mib(self.pid)
            if not math.isnan(value):
                self.last_mib = value
                self.peak_mib = max(self.peak_mib, value)

    def __enter__(self) -> Sampler:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"rss-{self.pid}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        self.cpu_s = (process_cpu(self.pid) or math.nan) - self._cpu0
        self.wall_s = time.monotonic() - self._t0


async def wait_stored(conn: asyncpg.Connection, prefix: str, expected: int, timeout: float) -> int:
    """Poll until ``expected`` alarms with ids ``prefix-n`` are stored. Returns how many are."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pattern = prefix + "-%"
    while True:
        count = int(await conn.fetchval("SELECT count(*) FROM alarms WHERE alarm_id LIKE $1", pattern))
        if count >= expected or loop.time() > deadline:
            return count
        await asyncio.sleep(0.2)


async def incident_events(conn: asyncpg.Connection, prefix: str) -> int:
    """How many incident events in the outbox name an alarm of ``prefix``: what each console should get."""
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM events WHERE name LIKE 'incident.%' AND data->'last_alarm'->>'id' LIKE $1",
            prefix + "-%",
        )
    )


async def stored_latencies(conn: asyncpg.Connection, prefix: str) -> list[float]:
    """Per alarm: ``stored_at - time`` in ms (publish to row written)."""
    rows = await conn.fetch(
        "SELECT extract(epoch FROM stored_at - time) * 1000 FROM alarms WHERE alarm_id LIKE $1", prefix + "-%"
    )
    return [float(r[0]) for r in rows]


async def wait_delivered(fleet: ConsoleFleet, timeout: float) -> None:
    """Wait until the consoles' frame count stops growing for half a second (at most ``timeout``).

    Called once the last alarm is stored: its event is committed, so what is
    still coming is what the server's writers have yet to send.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = -1.0
    while loop.time() < deadline:
        frames = (await fleet.stats())["frames"]
        if frames == last:
            return
        last = frames
        await asyncio.sleep(0.5)


async def every_alarm(
    conn: asyncpg.Connection, prefix: str, trace: Sequence[tuple[str, int, float]]
) -> list[float]:
    """When each alarm first reached console 0, minus its publish time (ms).

    An event names only the newest alarm of its batch for that incident, but
    it shows every older one of the same incident too. The benchmark's alarm
    ``n`` belongs to cluster ``n % 5`` (bench/fleet.py), and each cluster is
    one incident; a single instance stores each cluster's alarms in publish
    order. So an event naming alarm ``m`` of cluster ``c`` is the first
    showing of every alarm ``k <= m`` of ``c`` not shown before.
    Alarms never shown are left out (counted by the caller).
    """
    rows = await conn.fetch(
        "SELECT alarm_id, extract(epoch FROM time) AS t FROM alarms WHERE alarm_id LIKE $1", prefix + "-%"
    )
    sent = {int(r["alarm_id"].rpartition("-")[2]): float(r["t"]) for r in rows}
    clusters = len(CLUSTERS)
    # Per cluster, alarm numbers in order, and how far we have shown them.
    numbers: list[list[int]] = [sorted(n for n in sent if n % clusters == c) for c in range(clusters)]
    shown_upto = [0] * clusters  # index into numbers[c]
    out: list[float] = []
    for p, m, received in trace:
        if p != prefix:
            continue
        c = m % clusters
        seq = numbers[c]
        i = shown_upto[c]
        while i < len(seq) and seq[i] <= m:
            out.append((received - sent[seq[i]]) * 1000)
            i += 1
        shown_upto[c] = i
    return out
