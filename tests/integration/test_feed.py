"""The console feed against the real server, database and broker: resume by
seq after a disconnect in a burst, heartbeats, a slow console closed with 1013
while a normal one keeps up, positions coalesced per unit, bounding-box
subscriptions, and the outbox's retention window."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest

from command.keys import HUB
from command.outbox import NewEvent, append_events, prune_events
from tests.integration.helpers import (
    alarm,
    base_url,
    console,
    publisher,
    running_server,
    seed_minimal,
    settings_for,
)

ALL_SEQS = "SELECT coalesce(array_agg(seq ORDER BY seq), '{}') FROM events"


async def _until(condition: Any, what: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _collect_until(con: Any, last_seq: int, seqs: list[int], timeout: float = 30.0) -> None:
    """Read event frames into ``seqs`` until ``last_seq`` has arrived."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not seqs or seqs[-1] < last_seq:
        for event in await con.events(max(0.01, deadline - loop.time())):
            seqs.append(event["seq"])


async def test_resume_with_since_after_a_disconnect_in_a_burst_replays_exactly_the_missed_events(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection
) -> None:
    tokens = await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings), publisher(mqtt_url) as pub:
        seen: list[int] = []
        async with console(settings, tokens["commander"]) as con:
            first = await con.receive()
            assert first["type"] == "snapshot"
            start = first["seq"]
            # Far apart, so each alarm opens its own incident and writes its own event.
            infos = [
                pub.publish_nowait(
                    "sensors/S-2/alarm",
                    json.dumps(
                        alarm(
                            f"burst-{n}",
                            kind="gas_leak",
                            lat=30.01 + (n // 20) * 0.02,
                            lon=120.01 + (n % 20) * 0.012,
                        )
                    ),
                )
                for n in range(400)
            ]
            # Leave in the middle of the burst, after some events arrived.
            while len(seen) < 30:
                seen.extend(e["seq"] for e in await con.events())
        await pub.wait_all(infos)
        async with console(settings, tokens["commander"], since=seen[-1]) as con:
            await _until_stored(conn, 400)
            last = await conn.fetchval("SELECT max(seq) FROM events")
            await _collect_until(con, last, seen)
        everything = await conn.fetchval(ALL_SEQS)
        assert seen == [s for s in everything if s > start], "missed or repeated events"


async def _until_stored(conn: asyncpg.Connection, n: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while await conn.fetchval("SELECT count(*) FROM alarms") < n:
        assert loop.time() < deadline, "alarms not stored"
        await asyncio.sleep(0.05)


async def test_a_console_that_stops_answering_pings_is_dropped_and_a_console_ping_is_answered(
    database_url: str, mqtt_url: str
) -> None:
    tokens = await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url, ws_heartbeat_s=1.0)
    async with running_server(settings) as app, aiohttp.ClientSession() as session:
        url = f"{base_url(settings)}/ws"
        # autoping off and nobody reading: the server's pings go unanswered.
        dead = await session.ws_connect(url, autoping=False)
        await dead.send_json({"type": "hello", "token": tokens["viewer"]})
        assert (await dead.receive_json())["type"] == "snapshot"
        async with console(settings, tokens["viewer"]) as alive:
            assert (await alive.receive())["type"] == "snapshot"
            await _until(lambda: len(app[HUB]) == 2, "both consoles registered")
            await _until(lambda: len(app[HUB]) == 1, "the silent console dropped", timeout=10)
            # The console's own half of the heartbeat (browsers cannot send pings).
            await alive.ws.send(json.dumps({"type": "ping", "id": 7}))
            assert await alive.receive() == {"type": "pong", "id": 7}
            await alive.ws.send("not json")
            assert (await alive.receive())["error"]["code"] == "bad_message"
        await dead.close()


async def test_a_slow_console_is_closed_with_1013_while_a_normal_one_gets_everything_promptly(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection
) -> None:
    tokens = await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url, client_queue_max=100)
    padding = "x" * 50_000
    async with running_server(settings) as app:
        slow = await _stalled_console(settings.http_host, settings.http_port, tokens["commander"])
        try:
            async with console(settings, tokens["commander"]) as normal:
                start = (await normal.receive())["seq"]
                seqs: list[int] = []
                reader = asyncio.create_task(_read_forever(normal, seqs))
                for _ in range(400):
                    await append_events(conn, [NewEvent("sensor.online", {"pad": padding}) for _ in range(5)])
                    await asyncio.sleep(0.01)  # a flood, not one giant frame
                    if app[HUB].overflows:
                        break
                await _until(lambda: app[HUB].overflows >= 1, "the slow console to overflow")
                assert app[HUB].overflows == 1, "the normal console overflowed too"
                # A marker after the flood reaches the normal console promptly:
                # the slow one holds nobody up.
                sent_at = asyncio.get_running_loop().time()
                marker = await append_events(conn, [NewEvent("sensor.online", {"marker": True})])
                assert marker is not None
                await _until(lambda: bool(seqs) and seqs[-1] >= marker, "the marker", timeout=10)
                lag = asyncio.get_running_loop().time() - sent_at
                reader.cancel()
                everything = await conn.fetchval(ALL_SEQS)
                assert seqs == [s for s in everything if s > start], "the normal console missed or repeated"
                assert lag < 2.0, f"the normal console waited {lag:.2f} s behind a slow one"
            # Now it reads: what was in flight, then the close frame with 1013.
            assert await asyncio.wait_for(_close_code(slow), 30) == 1013
        finally:
            slow.close()


async def _stalled_console(host: str, port: int, token: str) -> socket.socket:
    """A console that says hello and then reads nothing: a raw socket with a
    small receive buffer (which also turns off the kernel's autotuning, up to
    32 MB on this machine), so TCP pushes back on the server at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += await loop.sock_recv(sock, 1)  # byte by byte: leave the frames unread
    assert response.startswith(b"HTTP/1.1 101"), response
    await loop.sock_sendall(sock, _client_frame(0x1, json.dumps({"type": "hello", "token": token}).encode()))
    return sock


def _client_frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    assert len(payload) < 126
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


async def _close_code(sock: socket.socket) -> int:
    """Read frames until the server's close frame; return its code."""
    loop = asyncio.get_running_loop()
    buffer = b""

    async def need(n: int) -> bytes:
        nonlocal buffer
        while len(buffer) < n:
            chunk = await loop.sock_recv(sock, 1 << 20)
            assert chunk, "connection ended without a close frame"
            buffer += chunk
        head, buffer = buffer[:n], buffer[n:]
        return head

    while True:
        first, second = await need(2)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(await need(2), "big")
        elif length == 127:
            length = int.from_bytes(await need(8), "big")
        payload = await need(length)
        if first & 0x0F == 0x8:
            return int.from_bytes(payload[:2], "big")


async def _read_forever(con: Any, seqs: list[int]) -> None:
    while True:
        seqs.extend(e["seq"] for e in await con.events(timeout=60))


async def test_positions_are_coalesced_per_unit_and_the_last_one_always_arrives(
    database_url: str, mqtt_url: str
) -> None:
    tokens = await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings), publisher(mqtt_url) as pub:
        async with console(settings, tokens["commander"]) as con:
            assert (await con.receive())["type"] == "snapshot"
            loop = asyncio.get_running_loop()
            started = loop.time()
            for n in range(60):
                position = {"lat": 30.26 + n * 1e-4, "lon": 120.16, "time": datetime.now(UTC).isoformat()}
                await pub.publish("units/U-1/position", position)
                await asyncio.sleep(0.02)
            moved: list[dict[str, Any]] = []
            while not moved or moved[-1]["data"]["lat"] != pytest.approx(30.26 + 59e-4):
                moved.extend(e for e in await con.events() if e["name"] == "unit.moved")
            elapsed = loop.time() - started
        # At most one position per 250 ms (plus the first), not one per report.
        assert len(moved) <= elapsed / 0.25 + 2, (len(moved), elapsed)
        assert len(moved) < 60
        seqs = [e["seq"] for e in moved]
        assert seqs == sorted(set(seqs))


async def test_a_bounding_box_subscription_limits_snapshot_and_events_to_the_box(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection
) -> None:
    tokens = await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings), publisher(mqtt_url) as pub:
        # S-1 stands at (120.15, 30.27): an alarm there opens an incident inside
        # the box; one from S-2 with its own far-away coordinates falls outside.
        await pub.publish("sensors/S-1/alarm", alarm("in-1"))
        await pub.publish("sensors/S-2/alarm", alarm("out-1", kind="gas_leak", lat=30.45, lon=120.28))
        await _until_stored(conn, 2)
        async with console(settings, tokens["viewer"]) as wall:
            assert len((await wall.receive())["incidents"]) == 2
            await wall.ws.send(json.dumps({"type": "subscribe", "bbox": [120.1, 30.2, 120.2, 30.3]}))
            snap = await wall.receive()
            assert snap["type"] == "snapshot" and snap["bbox"] == [120.1, 30.2, 120.2, 30.3]
            assert [i["lat"] for i in snap["incidents"]] == [30.27]
            assert [u["id"] for u in snap["units"]] == ["U-1"]  # at (120.16, 30.26)

            # A unit leaving the box is sent once (so the wall can drop it), then not.
            await pub.publish("units/U-1/position", {"lat": 30.4, "lon": 120.25, "time": _now()})
            left = await wall.until("unit.moved")
            assert left["data"]["lat"] == 30.4
            await pub.publish("units/U-1/position", {"lat": 30.41, "lon": 120.25, "time": _now()})
            await pub.publish("sensors/S-2/alarm", alarm("out-2", kind="gas_leak", lat=30.45, lon=120.28))
            await pub.publish("sensors/S-1/alarm", alarm("in-2"))
            # The next thing the wall hears of is the alarm inside; nothing outside came first.
            events = await wall.events()
            assert [(e["name"], e["data"].get("lat")) for e in events] == [("incident.updated", 30.27)]

            await wall.ws.send(json.dumps({"type": "subscribe", "bbox": [121, 30, 120, 31]}))
            assert (await wall.receive())["error"]["code"] == "bad_bbox"
            await wall.ws.send(json.dumps({"type": "subscribe", "bbox": None}))
            assert len((await wall.receive())["incidents"]) == 2


def _now() -> str:
    return datetime.now(UTC).isoformat()


async def test_past_the_outbox_retention_a_resuming_console_gets_a_snapshot_marked_reset(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection
) -> None:
    tokens = await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings):
        for n in range(5):
            await append_events(conn, [NewEvent("sensor.online", {"n": n})])
        await conn.execute("UPDATE events SET created_at = now() - interval '2 days' WHERE seq <= 3")
        assert await prune_events(conn, datetime.now(UTC) - timedelta(hours=24)) == 3
        assert await conn.fetchval(ALL_SEQS) == [4, 5]
        # Seq 3 is the last one gone: resuming after it is still exact.
        async with console(settings, tokens["commander"], since=3) as con:
            assert [e["seq"] for e in await con.events()] == [4, 5]
        # Seq 2 is older than what the outbox keeps: a fresh picture, flagged.
        async with console(settings, tokens["commander"], since=2) as con:
            snap = await con.receive()
            assert snap["type"] == "snapshot" and snap["reset"] is True and snap["seq"] == 5
        # The newest event is never pruned, however old.
        await conn.execute("UPDATE events SET created_at = now() - interval '2 days'")
        assert await prune_events(conn, datetime.now(UTC) - timedelta(hours=24)) == 1
        assert await conn.fetchval(ALL_SEQS) == [5]
