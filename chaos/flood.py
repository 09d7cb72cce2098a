"""A QoS 1 flood running through a case, and the exactly-once check against the database.

The ground truth is what the broker acknowledged to the publisher processes
(chaos/publisher.py): every acknowledged alarm must be stored exactly once,
and each of the fleet's four clusters must be exactly one incident whose
alarm count is the number of alarms stored for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from bench.fleet import alarm_id, parse_alarm_id
from bench.procs import python_module
from chaos.fleet import CLUSTERS
from chaos.procs import Child
from chaos.report import Row
from chaos.rig import Rig, mqtt_login_env

NO_MATCHING_SUBSCRIBERS = 0x10


@dataclass(slots=True)
class Truth:
    """What the publishers sent and the broker acknowledged."""

    published: int = 0
    published_by_prefix: dict[str, int] = field(default_factory=dict)
    # alarm id -> time of its PUBACK (wall clock); success codes only.
    acked: dict[str, float] = field(default_factory=dict)
    refused: int = 0  # PUBACK with a failure reason code
    # Acknowledged with 0x10: a success code, but the broker kept the message nowhere.
    no_subscribers: set[str] = field(default_factory=set)
    unacked: int = 0  # published, never acknowledged (in flight when the run ended, or lost with a broker)
    max_lag_ms: float = 0.0
    reconnects: int = 0

    def add(self, result: dict[str, Any]) -> None:
        prefix = result["prefix"]
        self.published += result["published"]
        self.published_by_prefix[prefix] = result["published"]
        for n, when, code in result["acks"]:
            if code < 0x80:
                self.acked[alarm_id(prefix, n)] = when
            if code == NO_MATCHING_SUBSCRIBERS:
                self.no_subscribers.add(alarm_id(prefix, n))
        self.refused += result["refused"]
        self.unacked += result["published"] - len(result["acks"])
        self.max_lag_ms = max(self.max_lag_ms, result["max_lag_ms"])
        self.reconnects += max(0, result["connects"] - 1)

    def acked_between(self, start: float, end: float) -> int:
        return sum(1 for when in self.acked.values() if start <= when < end)


class Flood:
    """Publisher processes at a paced rate until :meth:`stop`."""

    def __init__(self, rig: Rig, name: str, port: int, mqtt_url: str, rate: float, processes: int) -> None:
        self.prefixes = [f"{name}{k}" for k in range(processes)]
        self._children = [
            Child(
                f"publisher {prefix}",
                python_module(
                    "chaos.publisher",
                    "--port",
                    port,
                    "--prefix",
                    prefix,
                    "--rate",
                    rate / processes,
                    "--out",
                    rig.directory / f"{prefix}.acks.json",
                ),
                log=rig.log_path(f"{prefix}-publisher"),
                env=mqtt_login_env(mqtt_url),
            )
            for prefix in self.prefixes
        ]
        self._outs = [rig.directory / f"{prefix}.acks.json" for prefix in self.prefixes]

    async def start(self) -> None:
        for child in self._children:
            await child.start()
        for child in self._children:
            if (line := await child.readline(timeout=60)) != "ready":
                raise child.failure(f"said {line!r} instead of ready")

    async def stop(self, drain_timeout: float = 120.0) -> Truth:
        """Stop publishing; wait for the outstanding acknowledgements; return the ground truth."""
        for child in self._children:
            await child.send("stop")
        truth = Truth()
        for child, out in zip(self._children, self._outs, strict=True):
            await child.finish(timeout=drain_timeout + 60)
            truth.add(json.loads(out.read_text()))
        return truth

    async def abort(self) -> None:
        for child in self._children:
            await child.stop(grace=5)


@contextlib.asynccontextmanager
async def flood(
    rig: Rig, name: str, port: int, mqtt_url: str, rate: float, processes: int
) -> AsyncIterator[Flood]:
    """A running flood; stopped (without a result) if the block fails before :meth:`Flood.stop`."""
    f = Flood(rig, name, port, mqtt_url, rate, processes)
    try:
        await f.start()
        yield f
    finally:
        await f.abort()


async def stored_times(conn: asyncpg.Connection) -> dict[str, float]:
    """alarm id -> stored_at (epoch seconds) of every stored alarm."""
    rows = await conn.fetch("SELECT alarm_id, extract(epoch FROM stored_at)::float8 AS t FROM alarms")
    return {r["alarm_id"]: r["t"] for r in rows}


async def wait_stored(conn: asyncpg.Connection, expected: set[str], timeout: float) -> set[str]:
    """Poll until every id of ``expected`` is stored, the count stays put for 3 s, or ``timeout``.

    Returns the ids of ``expected`` still missing (the lost ones, once quiet).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last, since = -1, loop.time()
    while True:
        stored = {r["alarm_id"] for r in await conn.fetch("SELECT alarm_id FROM alarms")}
        missing = expected - stored
        if not missing:
            return missing
        if len(stored) != last:
            last, since = len(stored), loop.time()
        # Nothing new for a while: whatever is missing is not coming (the
        # server retries a batch every few seconds at most, so allow that).
        if loop.time() - since > 15 or loop.time() > deadline:
            return missing
        await asyncio.sleep(0.25)


@dataclass(slots=True)
class Check:
    """The exactly-once verdict of one flood."""

    acked: int
    stored: int
    lost: list[str]
    duplicate_alarms: int  # rows beyond one per (sensor, alarm id)
    phantoms: int  # stored ids no publisher published
    incidents: dict[str, int]  # family -> incidents of it
    duplicate_incidents: int  # incidents beyond one per cluster
    count_mismatches: int  # incidents whose alarm_count differs from their stored alarms

    @property
    def duplicated(self) -> int:
        return self.duplicate_alarms + self.duplicate_incidents + self.count_mismatches

    @property
    def clean(self) -> bool:
        """Exactly once: nothing lost, nothing duplicated, nothing stored that no publisher sent."""
        return not self.lost and self.duplicated == 0 and self.phantoms == 0

    def row(
        self,
        case: str,
        title: str,
        runs: int,
        *,
        recovery_s: list[float],
        recovery_meaning: str,
        notes: list[str],
        details: dict[str, Any],
        also_ok: bool = True,
    ) -> Row:
        """The row of a case that must lose nothing: it passes when the flood was :attr:`clean` and
        ``also_ok`` (the case's own checks) holds."""
        ok = self.clean and also_ok
        return Row(
            case=case,
            title=title,
            runs=runs,
            ok=ok,
            verdict="pass" if ok else "FAIL",
            acked=self.acked,
            lost=len(self.lost),
            duplicated=self.duplicated,
            recovery_s=recovery_s,
            recovery_meaning=recovery_meaning,
            notes=notes,
            details=details,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "acked": self.acked,
            "stored": self.stored,
            "lost": len(self.lost),
            "lost_examples": sorted(self.lost)[:10],
            "duplicate_alarms": self.duplicate_alarms,
            "phantoms": self.phantoms,
            "incidents": self.incidents,
            "duplicate_incidents": self.duplicate_incidents,
            "count_mismatches": self.count_mismatches,
        }


def _phantom(alarm: str, published: dict[str, int]) -> bool:
    """An id no publisher published (acknowledged or not): the prefix is unknown or the number too high."""
    parsed = parse_alarm_id(alarm)
    return parsed is None or parsed[0] not in published or parsed[1] >= published[parsed[0]]


async def settle(database_url: str, truth: Truth, timeout: float) -> tuple[Check, dict[str, float]]:
    """After a flood: wait until what the broker acknowledged is stored (or stops coming), then check.

    Returns the verdict and every stored alarm's ``stored_at`` (epoch seconds) by id.
    """
    conn = await asyncpg.connect(database_url)
    try:
        await wait_stored(conn, set(truth.acked), timeout=timeout)
        return await check(conn, truth), await stored_times(conn)
    finally:
        await conn.close()


async def check(conn: asyncpg.Connection, truth: Truth) -> Check:
    """Compare the database with the ground truth."""
    rows = await conn.fetch("SELECT sensor_id, alarm_id FROM alarms")
    stored = {r["alarm_id"] for r in rows}
    # Also a unique constraint; checked anyway, since it is the claim.
    duplicates = len(rows) - len({(r["sensor_id"], r["alarm_id"]) for r in rows})
    families = {
        r["family"]: r["n"]
        for r in await conn.fetch(
            "SELECT family, count(*) AS n FROM incidents GROUP BY family ORDER BY family"
        )
    }
    mismatches = await conn.fetchval(
        """SELECT count(*) FROM incidents i
           WHERE i.alarm_count <> (SELECT count(*) FROM alarms a WHERE a.incident_id = i.id)"""
    )
    orphans = await conn.fetchval("SELECT count(*) FROM alarms WHERE incident_id IS NULL")
    # One incident per cluster that got any alarm; a cluster's second incident is a duplicate.
    expected = len(CLUSTERS) if stored else 0
    return Check(
        acked=len(truth.acked),
        stored=len(stored),
        lost=sorted(set(truth.acked) - stored),
        duplicate_alarms=duplicates,
        phantoms=sum(_phantom(a, truth.published_by_prefix) for a in stored),
        incidents=families,
        duplicate_incidents=max(0, sum(families.values()) - expected),
        count_mismatches=int(mismatches) + int(orphans),
    )
