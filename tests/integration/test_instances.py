"""Several `emergency serve` processes against one database and one broker.

Each server here is a real subprocess (so it can be SIGKILLed like a crash),
all in one MQTT share group: the broker hands each alarm to one of them. The
ground truth is the database: consoles must show exactly the events table's
seqs, in order, once each, whichever instance they are on; and every alarm
the broker acknowledged to the publisher must be stored exactly once.

What Mosquitto 2.0 does with a member that dies (docs/scaling.md): its
persistent session keeps what was in flight to it and keeps receiving its
round-robin share of new messages, delivered only to a client with its
client id. So a killed instance's alarms wait for it to come back under the
same name (``test_killing_an_instance_...``) or for ``emergency drain-session``
(``test_drain_session_...``).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import paho.mqtt.client as paho
import websockets
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from command.outbox import NewEvent, append_events
from command.settings import MqttTarget, client_id_for
from tests.integration.helpers import (
    PASSWORD,
    ROOT,
    Console,
    ServerProcess,
    acknowledged_ids,
    alarm,
    assert_exactly_once,
    console_at,
    flood,
    publisher,
    seed_cluster,
    seed_minimal,
    server_process,
    share_group,
    wait_stored,
)


async def login(base_url: str, username: str) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base_url}/api/login", json={"username": username, "password": PASSWORD}) as r,
    ):
        assert r.status == 200, await r.text()
        token: str = (await r.json())["token"]
        return token


async def ingested_by(base_url: str) -> tuple[int, int]:
    """(new alarms stored, redelivered copies recognised) by this instance, from its /metrics."""
    async with aiohttp.ClientSession() as http, http.get(f"{base_url}/metrics") as r:
        text = await r.text()
    counts = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("emergency_alarms_stored_total", "emergency_alarms_duplicate_total"):
            counts[name] = int(float(value))
    return counts["emergency_alarms_stored_total"], counts["emergency_alarms_duplicate_total"]


async def kill_once_storing(server: ServerProcess) -> None:
    """SIGKILL ``server`` once it is storing alarms: mid-flood for real, with some in flight to it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while (await ingested_by(server.url))[0] == 0:
        assert loop.time() < deadline, f"{server.instance} never stored an alarm"
        await asyncio.sleep(0.05)
    server.kill()


def record(message: dict[str, Any], seen: list[int]) -> None:
    """Append the seqs of an event or batch frame; a snapshot or error frame is a failure here."""
    if message["type"] == "batch":
        seen.extend(e["seq"] for e in message["events"])
    else:
        assert message["type"] == "event", message
        seen.append(message["seq"])


async def snapshot_seq(console: Console) -> int:
    message = await console.receive()
    assert message["type"] == "snapshot", message
    return int(message["seq"])


async def collect(console: Console, seen: list[int], expected: list[int], timeout: float = 20.0) -> None:
    """Read frames into ``seen`` until it holds every seq of ``expected`` (or fail with both)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    want = set(expected)
    while not want <= set(seen):
        remaining = deadline - loop.time()
        assert remaining > 0, f"console still lacks {sorted(want - set(seen))[:10]} (saw {len(seen)})"
        try:
            record(await console.receive(min(remaining, 1.0)), seen)
        except TimeoutError:
            continue


async def collect_until_closed(console: Console, seen: list[int], timeout: float = 20.0) -> None:
    """Read frames into ``seen`` until the server side goes away."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        assert loop.time() < deadline, "the console of a killed server was never closed"
        try:
            record(await console.receive(1.0), seen)
        except TimeoutError:
            continue
        except websockets.ConnectionClosed:
            return


async def seqs_after(conn: asyncpg.Connection, after: int) -> list[int]:
    return [r["seq"] for r in await conn.fetch("SELECT seq FROM events WHERE seq > $1 ORDER BY seq", after)]


async def wait_quiet(conn: asyncpg.Connection, quiet: float = 2.0, timeout: float = 30.0) -> int:
    """Wait until the stored alarm count stops moving for ``quiet`` seconds; return it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    count = await conn.fetchval("SELECT count(*) FROM alarms")
    since = loop.time()
    while loop.time() - since < quiet and loop.time() < deadline:
        await asyncio.sleep(0.2)
        now = await conn.fetchval("SELECT count(*) FROM alarms")
        if now != count:
            count, since = now, loop.time()
    return int(count)


@asynccontextmanager
async def two_instances(
    database_url: str, mqtt_url: str, log_dir: Path
) -> AsyncIterator[tuple[ServerProcess, ServerProcess]]:
    """Instances ``a`` and ``b`` in one share group of their own, logging to ``log_dir``."""
    group = share_group()
    async with (
        server_process(database_url, mqtt_url, log_dir, group, "a") as a,
        server_process(database_url, mqtt_url, log_dir, group, "b") as b,
    ):
        yield a, b


def assert_one_story(seen: list[int], expected: list[int], who: str) -> None:
    assert seen == expected, (
        f"{who}: {len(seen)} seqs, expected {len(expected)};"
        f" missing {sorted(set(expected) - set(seen))[:10]},"
        f" twice {sorted({s for s in seen if seen.count(s) > 1})[:10]},"
        f" in order {seen == sorted(seen)}"
    )


# -- (a) two instances, one story ---------------------------------------------------


async def test_consoles_on_two_instances_see_the_same_ordered_events_once(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await seed_minimal(database_url)
    async with two_instances(database_url, mqtt_url, tmp_path) as (a, b):
        token = await login(a.url, "commander")  # a login on one instance is good on all
        async with console_at(a.url, token) as on_a, console_at(b.url, token) as on_b:
            start = await snapshot_seq(on_a)
            assert await snapshot_seq(on_b) == start
            async with publisher(mqtt_url) as pub:
                for n in range(30):
                    if n % 2:  # S-1 has a location: one incident
                        await pub.publish("sensors/S-1/alarm", alarm(f"s1-{n}"))
                    else:  # S-2 reports where: three places far apart, three incidents
                        where = {"lat": 30.05 + 0.1 * (n % 3), "lon": 120.05 + 0.1 * (n % 3)}
                        await pub.publish("sensors/S-2/alarm", alarm(f"s2-{n}", kind="gas_leak", **where))
            alarms = {f"s1-{n}" for n in range(1, 30, 2)} | {f"s2-{n}" for n in range(0, 30, 2)}
            await wait_stored(conn, alarms)
            # The share group split the ingest: each alarm reached one instance
            # (with plain subscriptions both would see all 30, one as copies).
            (new_a, copies_a), (new_b, copies_b) = await ingested_by(a.url), await ingested_by(b.url)
            assert new_a > 0 and new_b > 0 and new_a + new_b == 30, (new_a, new_b)
            assert copies_a == copies_b == 0, (copies_a, copies_b)

            incident = await conn.fetchval("SELECT id FROM incidents WHERE kind = 'smoke'")
            async with (
                aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
                http.post(f"{b.url}/api/incidents/{incident}/status", json={"status": "confirmed"}) as r,
            ):
                assert r.status == 200, await r.text()
            confirmed = await conn.fetchval(
                "SELECT max(seq) FROM events"
                " WHERE name = 'incident.updated' AND data->>'status' = 'confirmed'"
            )
            assert confirmed is not None

            expected = await seqs_after(conn, start)
            assert expected[-1] == confirmed  # nothing else writes events now
            seen_a: list[int] = []
            seen_b: list[int] = []
            await collect(on_a, seen_a, expected)
            await collect(on_b, seen_b, expected)
    assert_one_story(seen_a, expected, "console on A")
    assert_one_story(seen_b, expected, "console on B")
    assert len(expected) >= 5  # 4 incidents opened, one confirmed, plus their updates


# -- (b) kill -9 one instance mid-flood ----------------------------------------------


async def test_killing_an_instance_mid_flood_loses_nothing_and_its_console_resumes_on_a_survivor(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await seed_minimal(database_url)
    await seed_cluster(database_url)
    async with two_instances(database_url, mqtt_url, tmp_path) as (a, b):
        token = await login(a.url, "commander")
        async with console_at(b.url, token) as on_b:
            start = await snapshot_seq(on_b)
            seen_a: list[int] = []
            async with console_at(a.url, token) as on_a:
                assert await snapshot_seq(on_a) == start
                async with publisher(mqtt_url) as pub:
                    acknowledged = await acknowledged_ids(
                        await flood(pub, 1200, lambda _: kill_once_storing(a))
                    )
                assert len(acknowledged) == 1200  # the broker never went away
                await collect_until_closed(on_a, seen_a)
            last = seen_a[-1] if seen_a else start

            # A's console resumes on the survivor from the last seq it saw.
            async with console_at(b.url, token, since=last) as resumed:
                # Mosquitto keeps the dead member's share in its session: B
                # alone cannot store everything...
                parked = len(acknowledged) - await wait_quiet(conn)
                assert parked > 0, "expected Mosquitto 2.0 to park the dead member's share in its session"
                # ...until A comes back under the same name and drains its session.
                await a.start()
                await wait_stored(conn, acknowledged, timeout=60)
                await assert_exactly_once(conn, acknowledged)

                expected = await seqs_after(conn, start)
                seen_b: list[int] = []
                seen_resumed: list[int] = []
                await collect(on_b, seen_b, expected)
                await collect(resumed, seen_resumed, [s for s in expected if s > last])
    assert_one_story(seen_a, [s for s in expected if s <= last], "A's console before the kill")
    assert_one_story(seen_resumed, [s for s in expected if s > last], "A's console resumed on B")
    assert_one_story(seen_b, expected, "console on B")


# -- emergency drain-session: retiring a dead instance ------------------------------------


def session_present(mqtt_url: str, client_id: str) -> bool:
    """Did the broker hold a session for ``client_id``? (Asks with session expiry 0: leaves none behind.)"""
    target = MqttTarget.from_url(mqtt_url)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    if target.username is not None:
        client.username_pw_set(target.username, target.password)
    answers: list[tuple[bool, bool]] = []
    connected = threading.Event()

    def on_connect(_c: paho.Client, _u: object, flags: Any, reason: Any, _p: object) -> None:
        answers.append((not reason.is_failure, bool(flags.session_present)))
        connected.set()

    client.on_connect = on_connect
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho: __init__ unannotated
    props.SessionExpiryInterval = 0
    client.connect(target.host, target.port, clean_start=False, properties=props)
    client.loop_start()
    try:
        assert connected.wait(10), "no CONNACK"
        accepted, present = answers[0]
        assert accepted, "the broker refused the connection: the answer would mean nothing"
        return present
    finally:
        client.disconnect()
        client.loop_stop()


async def test_drain_session_stores_what_a_dead_instance_left_and_ends_its_session(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await seed_cluster(database_url)
    async with two_instances(database_url, mqtt_url, tmp_path) as (a, _), publisher(mqtt_url) as pub:
        acknowledged = await acknowledged_ids(await flood(pub, 600, lambda _: kill_once_storing(a)))
        assert len(acknowledged) == 600
        parked = len(acknowledged) - await wait_quiet(conn)
        assert parked > 0, "expected Mosquitto 2.0 to park the dead member's share in its session"

        # A is retired for good: an operator drains its session instead of restarting it.
        drained = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "command", "drain-session", a.instance, "--idle-timeout", "20"],
            env=a.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert drained.returncode == 0, drained.stderr
        assert f"session {client_id_for(a.instance)}:" in drained.stdout, drained.stdout
        # Stored before the command returned: no waiting here.
        stored = {r["alarm_id"] for r in await conn.fetch("SELECT alarm_id FROM alarms")}
        assert acknowledged <= stored, f"{len(acknowledged - stored)} acknowledged alarms not stored"

        # The session is gone with its share: every new alarm now reaches B at once.
        for n in range(40):
            await pub.publish(f"sensors/F-{n % 20:02d}/alarm", alarm(f"after-{n}"))
        await wait_stored(conn, {f"after-{n}" for n in range(40)}, timeout=30)
    assert not await asyncio.to_thread(session_present, mqtt_url, client_id_for(a.instance))
    await assert_exactly_once(conn, acknowledged | {f"after-{n}" for n in range(40)})


# -- (c) the LISTEN connection killed ---------------------------------------------------


async def listener_pid(
    conn: asyncpg.Connection, name: str, other_than: int = 0, timeout: float = 15.0
) -> int:
    """The pid of the one backend called ``name`` (waiting for one that is not ``other_than``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        pids = [
            r["pid"]
            for r in await conn.fetch("SELECT pid FROM pg_stat_activity WHERE application_name = $1", name)
        ]
        if len(pids) == 1 and pids[0] != other_than:
            return int(pids[0])
        assert loop.time() < deadline, f"listeners named {name}: {pids} (the old one was {other_than})"
        await asyncio.sleep(0.05)


async def commit_events(conn: asyncpg.Connection, first: int, count: int) -> list[int]:
    """``count`` events, each in its own transaction, as fast as they commit; their seqs."""
    seqs = []
    for n in range(first, first + count):
        async with conn.transaction():
            seq = await append_events(conn, [NewEvent("task.updated", {"id": n, "note": "listener test"})])
        assert seq is not None
        seqs.append(seq)
    return seqs


async def test_a_killed_listener_connection_is_noticed_and_no_event_is_missed(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    tokens = await seed_minimal(database_url)
    async with server_process(database_url, mqtt_url, tmp_path, share_group(), "a") as a:
        name = f"emergency-feed-{a.instance}"
        old = await listener_pid(conn, name)
        async with console_at(a.url, tokens["commander"]) as console:
            start = await snapshot_seq(console)
            seen: list[int] = []
            await collect(console, seen, await commit_events(conn, 0, 5))

            assert await conn.fetchval(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", name
            )
            # Committed while the listener is gone or reconnecting: no NOTIFY reaches it.
            await commit_events(conn, 5, 30)
            new = await listener_pid(conn, name, other_than=old)  # noticed, and listening again
            await commit_events(conn, 35, 10)

            expected = await seqs_after(conn, start)
            assert len(expected) == 45
            await collect(console, seen, expected)
    assert new != old
    assert_one_story(seen, expected, "console")
    # The server said why (and did not crash the feed task).
    log = a.log.read_text(errors="replace")
    assert "LISTEN connection lost" in log, a.log_tail()
    assert "task feed crashed" not in log
