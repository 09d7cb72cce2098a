"""Small versions of the fault-injection cases (``make chaos``, chaos/) that the suite lacked.

The others live beside the code they test: SIGKILLed server, crashed
database and restarted or SIGKILLed broker in test_faults.py, a killed
instance in test_instances.py, resume by seq in test_feed.py, 1,000
hypothesis-drawn malformed messages in test_inputs.py. Here:

- a broker restart while the server is away, with alarms published before
  and after it: the shipped configuration (the embedded broker's, and the
  server's default plain subscriptions) keeps the server's session, its
  queue and its subscriptions; Mosquitto's default configuration loses them
  (the control); with an opt-in share group, alarms published after the
  restart and before the server is back are lost (a known Mosquitto 2.0.11
  limitation, documented in docs/scaling.md: a strict xfail, so a Mosquitto
  that fixes it makes the test say so);
- a console dropping again and again (clean closes and aborted connections)
  during a flood and resuming by seq: every event exactly once, in order;
- 2,000 payloads of the chaos fuzz corpus (hypothesis and mutations): each
  dead-lettered with the parser's reason, no alarm and no incident;
- malformed MQTT packets on raw TCP connections: the broker and the server
  keep working;
- PostgreSQL crashed while alarms arrive, the server connected to the broker
  through the chaos MQTT tap (chaos/tap.py): no PUBACK on the wire while the
  database is down, every alarm acknowledged once it is back, each stored once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import fields, replace
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from chaos import fuzz, garbage
from chaos.rig import Broker, DefaultMosquitto
from chaos.tap import MqttTap, url_via
from command.settings import MqttTarget, Settings
from tests.integration.helpers import (
    SESSIONS,
    Console,
    assert_exactly_once,
    console,
    flood_alarm,
    private_postgres,
    publisher,
    running_server,
    seed_cluster,
    seed_minimal,
    settings_for,
    wait_for_value,
    wait_stored,
)

# The server's default share group (none: plain subscriptions). settings_for gives each test a
# group of its own, so the shipped cases set this back.
SHIPPED_GROUP = next(f.default for f in fields(Settings) if f.name == "mqtt_share_group")


@asynccontextmanager
async def _broker(directory: Path, shipped: bool) -> AsyncIterator[Broker | DefaultMosquitto]:
    broker: Broker | DefaultMosquitto = (
        Broker(directory / "mq") if shipped else DefaultMosquitto(directory / "mq")
    )
    await asyncio.to_thread(broker.start)
    try:
        yield broker
    finally:
        await asyncio.to_thread(broker.stop)


def _url(broker: Broker | DefaultMosquitto) -> str:
    return broker.admin_url if isinstance(broker, Broker) else broker.url


async def _restart(broker: Broker | DefaultMosquitto) -> None:
    """SIGTERM (a clean stop: the shipped broker saves its persistence), then start on the same port."""
    await asyncio.to_thread(broker.stop)
    if isinstance(broker, Broker):
        await asyncio.to_thread(broker.start, broker.port)
    else:
        await asyncio.to_thread(broker.start)


async def _publish(url: str, numbers: range) -> None:
    async with publisher(url) as pub:
        for n in numbers:
            topic, payload = flood_alarm(n)
            await pub.publish(topic, payload)  # each waits for the broker's PUBACK


# -- broker restart while the server is away ------------------------------------------------


@pytest.mark.parametrize(
    ("shipped", "share_group", "kept"),
    [
        pytest.param(True, SHIPPED_GROUP, True, id="shipped-config"),
        pytest.param(
            True,
            "emergency",
            True,
            id="opt-in-share-group",
            marks=pytest.mark.xfail(
                strict=True,
                reason="known Mosquitto 2.0.11 limitation, documented in docs/scaling.md: it does not "
                "restore a session's shared subscriptions from its persistence file, so until the server "
                "subscribes again alarms match no subscription (PUBACK 0x10) and are dropped (make chaos "
                "reports it apart, †)",
            ),
        ),
        pytest.param(False, SHIPPED_GROUP, False, id="default-config-control"),
    ],
)
async def test_a_broker_restart_while_the_server_is_away(
    database_url: str,
    conn: asyncpg.Connection,
    private_dir: Path,
    shipped: bool,
    share_group: str,
    kept: bool,
) -> None:
    await seed_cluster(database_url)
    async with _broker(private_dir, shipped) as broker:
        url = _url(broker)
        settings = replace(settings_for(database_url, url), mqtt_share_group=share_group)
        async with running_server(settings):
            pass  # subscribed, then left: the broker keeps the session and queues for it
        await _publish(url, range(0, 20))  # queued in the session
        await _restart(broker)
        await _publish(url, range(20, 40))  # the server is still away
        async with running_server(settings):  # the same instance: the same session
            if kept:
                await wait_stored(conn, {f"flood-{n}" for n in range(40)}, timeout=10)
            else:
                # The control: everything lived in memory. Give it time to show up if it would.
                await asyncio.sleep(3)
                assert await conn.fetchval("SELECT count(*) FROM alarms") == 0


# -- a console dropping and resuming -----------------------------------------------------------


async def _read_some(con: Console, seen: list[int], count: int) -> None:
    """Read event frames until ``count`` more seqs arrived (snapshots are not expected here)."""
    want = len(seen) + count
    while len(seen) < want:
        message = await con.receive(timeout=20)
        assert message["type"] in ("event", "batch"), message
        seen.extend(e["seq"] for e in (message["events"] if message["type"] == "batch" else [message]))


async def test_a_console_dropping_again_and_again_resumes_every_event_exactly_once(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection
) -> None:
    tokens = await seed_minimal(database_url)
    await seed_cluster(database_url)
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings), publisher(mqtt_url) as pub:

        async def trickle() -> None:
            for n in range(400):
                topic, payload = flood_alarm(n)
                pub.publish_nowait(topic, payload)
                await asyncio.sleep(0.01)

        seen: list[int] = []
        sending = asyncio.create_task(trickle(), name="trickle")
        try:
            async with console(settings, tokens["commander"]) as con:
                first = await con.receive()
                assert first["type"] == "snapshot"
                start = first["seq"]
                await _read_some(con, seen, 5)
            for drop in range(6):
                async with console(settings, tokens["commander"], since=seen[-1]) as con:
                    await _read_some(con, seen, 5)
                    if drop % 2:
                        con.ws.transport.abort()  # the network went: no close handshake
        finally:
            await sending
        await wait_stored(conn, {f"flood-{n}" for n in range(400)})
        await asyncio.sleep(1)  # the last events of the flood
        last = await conn.fetchval("SELECT max(seq) FROM events")
        async with console(settings, tokens["commander"], since=seen[-1]) as con:
            while seen[-1] < last:
                await _read_some(con, seen, 1)
    expected = [
        r["seq"] for r in await conn.fetch("SELECT seq FROM events WHERE seq > $1 ORDER BY seq", start)
    ]
    assert seen == [s for s in expected if s <= seen[-1]] and seen[-1] == last, "missed or repeated events"


# -- fuzz corpus and malformed MQTT ------------------------------------------------------------


async def test_two_thousand_fuzzed_payloads_are_each_dead_lettered_with_the_parsers_reason(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection
) -> None:
    corpus = await asyncio.to_thread(fuzz.build, 2000, 200, 7)
    assert not corpus.parser_bugs, corpus.parser_bugs[:3]
    # Registered, with a location: a payload wrongly accepted would be stored.
    await conn.execute(
        """INSERT INTO sensors (id, kind, location)
           SELECT 'FZ-' || g, 'smoke', ST_SetSRID(ST_MakePoint(120.0 + g * 1e-6, 30.0), 4326)
           FROM generate_series(0, 1999) AS g"""
    )
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings), publisher(mqtt_url) as pub:
        infos = [pub.publish_nowait(p.topic, p.payload) for p in corpus.payloads]
        await pub.wait_all(infos, timeout=90)
        await wait_for_value(conn, "SELECT count(*) FROM dead_letters", 2000, timeout=60)
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{settings.http_port}/healthz") as r,
        ):
            assert r.status == 200
    reasons = {r["topic"]: r["reason"] for r in await conn.fetch("SELECT topic, reason FROM dead_letters")}
    wrong = [
        (p.topic, p.reason, reasons.get(p.topic))
        for p in corpus.payloads
        if not fuzz.matches(p.reason, reasons.get(p.topic, ""))
    ]
    assert not wrong, wrong[:5]
    assert await conn.fetchval("SELECT count(*) FROM alarms") == 0
    assert await conn.fetchval("SELECT count(*) FROM incidents") == 0


async def test_malformed_mqtt_at_the_broker_leaves_broker_and_server_working(
    database_url: str, conn: asyncpg.Connection, private_dir: Path
) -> None:
    await seed_cluster(database_url)
    async with _broker(private_dir, shipped=True) as broker:
        assert isinstance(broker, Broker)
        pid = broker.pid
        login = MqttTarget.from_url(broker.admin_url)
        assert login.username is not None and login.password is not None
        settings = settings_for(database_url, broker.admin_url)
        async with running_server(settings):
            outcome = await garbage.attack(
                "127.0.0.1", broker.port, 124, login.username, login.password, seed=3
            )
            assert outcome.sent == 124 and outcome.login_failures == 0, outcome
            assert len(outcome.by_attack) == 31  # every kind, four times
            assert broker.pid == pid, "the broker died"
            await _publish(broker.admin_url, range(1))  # logs in and gets its PUBACK
            await wait_stored(conn, {"flood-0"}, timeout=20)
        # Nothing malformed got through to the server as a message.
        assert await conn.fetchval("SELECT count(*) FROM dead_letters WHERE topic LIKE 'sensors/MQ-%'") == 0


# -- no PUBACK while the database is down, on the wire ------------------------------------------


async def _until(condition: Callable[[], bool], what: str, timeout: float = 15) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_no_puback_while_the_database_is_down_and_all_once_it_is_back(
    mqtt_url: str, private_dir: Path
) -> None:
    """The small version of chaos/case_database.py. The server reaches the broker
    through the tap, which records each alarm the broker delivers and each PUBACK
    the server sends. With PostgreSQL crashed (immediate stop), alarms keep
    arriving and reach the server, which acknowledges none of them; once it is
    back, the server stores and acknowledges them all, each stored once."""
    before = {f"flood-{n}" for n in range(20)}
    during = {f"flood-{n}" for n in range(20, 60)}
    broker_port = MqttTarget.from_url(mqtt_url).port
    async with private_postgres(private_dir, durable=True) as pg, MqttTap(broker_port) as tap:

        def acked() -> set[str]:
            return {alarm for _, alarm in tap.pubacks if alarm is not None}

        def delivered() -> set[str]:
            return {alarm for _, alarm in tap.publishes if alarm is not None}

        await seed_cluster(pg.url)
        settings = settings_for(pg.url, url_via(mqtt_url, tap.port))
        # Its broker session is ended straight at the broker after the test: the tap is gone by then.
        SESSIONS.append((mqtt_url, settings.mqtt_client_id))
        async with running_server(settings):
            await _publish(mqtt_url, range(20))
            await _until(lambda: before <= acked(), "the PUBACKs of the alarms before the outage")
            crashed = time.time()
            await asyncio.to_thread(pg.crash)
            await _publish(mqtt_url, range(20, 60))  # the broker acknowledges them to the sensors
            await _until(lambda: during <= delivered(), "the broker to deliver them to the server")
            await asyncio.sleep(1)  # room for a PUBACK that must not come
            starting = time.time()
            assert [a for t, a in tap.pubacks if t >= crashed] == [], (
                "PUBACK sent while the database was down"
            )
            assert not during & acked()
            await asyncio.to_thread(pg.start)
            await _until(lambda: during <= acked(), "the PUBACKs once the database is back", timeout=30)
        assert tap.errors == []
        assert all(t > starting for t, a in tap.pubacks if a in during)
        conn = await asyncpg.connect(pg.url)
        try:
            await assert_exactly_once(conn, acked())
        finally:
            await conn.close()
    assert acked() == before | during
