"""The feed's conversation at its edges (docs/feed.md), against the real server,
database and broker: bad or missing hellos (1008), a graceful shutdown (1001),
resuming from a ``since`` too far behind or ahead of the outbox, and accounts
bound to districts on the live feed and in a replay."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import websockets
from shapely.geometry import MultiPolygon, Point, box
from websockets.exceptions import ConnectionClosed

import command.hub
import command.queries
from command import accounts
from command.keys import HUB
from command.outbox import NewEvent, append_events
from command.settings import Settings
from tests.integration.helpers import (
    PASSWORD,
    Console,
    alarm,
    base_url,
    console,
    publisher,
    running_server,
    seed_minimal,
    settings_for,
    wait_for_value,
)


def _ws_url(settings: Settings) -> str:
    return base_url(settings).replace("http://", "ws://", 1) + "/ws"


async def _closed_with(ws: websockets.ClientConnection, timeout: float = 5.0) -> int:
    """Read until the server closes; return the code of its close frame."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    assert closed.value.rcvd is not None, "the connection ended without a close frame from the server"
    return closed.value.rcvd.code


# -- 1. hello ---------------------------------------------------------------------------


async def test_a_bad_hello_gets_an_error_frame_and_close_1008(database_url: str, mqtt_url: str) -> None:
    tokens = await seed_minimal(database_url)
    token = tokens["viewer"]  # valid, so only the hello's shape can be refused
    settings = settings_for(database_url, mqtt_url)
    bad_hellos: list[str | bytes] = [
        json.dumps({"type": "hello", "token": token}).encode(),  # a binary frame, not a text one
        "not json",
        "{",
        json.dumps({"type": "ping", "id": 1}),  # JSON, but not a hello
        json.dumps([{"type": "hello", "token": token}]),  # not an object
        json.dumps({"token": token}),  # no type
        json.dumps({"type": "hello", "token": token, "since": -1}),
        json.dumps({"type": "hello", "token": token, "since": "5"}),
        json.dumps({"type": "hello", "token": token, "since": 1.5}),
        json.dumps({"type": "hello", "token": token, "since": True}),
        json.dumps({"type": "hello", "token": 42}),
    ]
    async with running_server(settings):
        for frame in bad_hellos:
            async with websockets.connect(_ws_url(settings), open_timeout=10) as ws:
                await ws.send(frame)
                answer = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert answer["type"] == "error", (frame, answer)
                assert answer["error"]["code"] == "bad_hello", (frame, answer)
                assert await _closed_with(ws) == 1008, frame
        # Control: the same server takes a good hello with a since.
        async with console(settings, token, since=0) as con:
            await con.ws.send(json.dumps({"type": "ping", "id": 3}))
            assert await con.receive() == {"type": "pong", "id": 3}


async def test_no_hello_within_the_timeout_closes_with_1008(
    database_url: str, mqtt_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = await seed_minimal(database_url)
    monkeypatch.setattr(command.hub, "HELLO_TIMEOUT_S", 0.5)
    settings = settings_for(database_url, mqtt_url)
    loop = asyncio.get_running_loop()
    async with running_server(settings) as app:
        async with websockets.connect(_ws_url(settings), open_timeout=10) as ws:
            opened = loop.time()
            assert await _closed_with(ws) == 1008
            waited = loop.time() - opened
        assert 0.3 < waited < 3.0, f"closed after {waited:.2f} s, the hello timeout is 0.5 s"
        assert len(app[HUB]) == 0
        # A hello in time is taken.
        async with websockets.connect(_ws_url(settings), open_timeout=10) as ws:
            await asyncio.sleep(0.2)
            await ws.send(json.dumps({"type": "hello", "token": tokens["viewer"]}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "snapshot"
            await asyncio.sleep(0.6)  # past the hello timeout: still open
            await ws.send(json.dumps({"type": "ping", "id": 1}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "pong", "id": 1}


# -- 2. shutdown ------------------------------------------------------------------------


async def test_a_graceful_shutdown_closes_every_console_with_1001(database_url: str, mqtt_url: str) -> None:
    tokens = await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    loop = asyncio.get_running_loop()
    url = _ws_url(settings)
    sockets: list[websockets.ClientConnection] = []
    try:
        async with running_server(settings) as app:
            # Connected, no hello yet: the server is waiting for its first frame.
            silent = await websockets.connect(url, open_timeout=10)
            sockets.append(silent)
            for who in ("commander", "viewer"):
                ws = await websockets.connect(url, open_timeout=10)
                sockets.append(ws)
                await ws.send(json.dumps({"type": "hello", "token": tokens[who]}))
                assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "snapshot"
            assert len(app[HUB]) == 2
            stopping = loop.time()
        stopped = loop.time() - stopping
        for ws in sockets:
            assert await _closed_with(ws) == 1001
            assert ws.close_reason == "server shutting down"
        # The consoles did not hold the shutdown until aiohttp's own deadline (5 s).
        assert stopped < 4.0, f"shutdown took {stopped:.2f} s"
    finally:
        for ws in sockets:
            await ws.close()


async def test_a_database_outage_mid_hello_closes_the_console_with_1013_and_the_server_goes_on(
    database_url: str, mqtt_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the upgrade no HTTP error can be answered: a database that cannot be
    reached while a console catches up gets it a close frame, 1013, not an HTTP
    503 written onto the socket (a browser's "Invalid frame header")."""
    tokens = await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)

    async def pool_closing(*_: Any) -> Any:
        raise asyncpg.InterfaceError("pool is closing")

    async with running_server(settings) as app:
        with monkeypatch.context() as patch:
            patch.setattr(command.queries, "snapshot", pool_closing)
            async with websockets.connect(_ws_url(settings), open_timeout=10) as ws:
                await ws.send(json.dumps({"type": "hello", "token": tokens["commander"]}))
                assert await _closed_with(ws) == 1013
                assert ws.close_reason == "database unavailable; resume with since"
        assert len(app[HUB]) == 0
        # The database is back: the next console is served as usual.
        async with console(settings, tokens["commander"]) as again:
            assert (await again.receive())["type"] == "snapshot"


# -- 3. resume edges --------------------------------------------------------------------


async def _append(conn: asyncpg.Connection, n: int, district: str | None = None) -> int:
    last = 0
    for i in range(n):
        seq = await append_events(conn, [NewEvent("sensor.online", {"n": i}, district_id=district)])
        assert seq is not None
        last = seq
    return last


async def test_a_since_more_than_max_replay_behind_gets_a_reset_snapshot_and_then_live_events(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = await seed_minimal(database_url)
    monkeypatch.setattr(command.hub, "MAX_REPLAY", 5)
    settings = settings_for(database_url, mqtt_url)
    token = tokens["commander"]
    async with running_server(settings):
        newest = await _append(conn, 10)
        assert newest == 10
        # Exactly MAX_REPLAY behind: still a replay, of exactly those events.
        async with console(settings, token, since=newest - 5) as con:
            assert [e["seq"] for e in await con.events()] == [6, 7, 8, 9, 10]
        # One more behind: a fresh picture, flagged, at the newest seq.
        for since in (newest - 6, 0):
            async with console(settings, token, since=since) as con:
                snap = await con.receive()
                assert snap["type"] == "snapshot", snap
                assert snap["reset"] is True and snap["seq"] == newest, snap
                # ...and the console is live from there, nothing replayed before it.
                live = await _append(conn, 1)
                assert [e["seq"] for e in await con.events()] == [live]
                newest = live


async def test_a_since_newer_than_the_newest_event_gets_a_reset_snapshot_and_then_live_events(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection
) -> None:
    """queries.replay answers None when ``since`` is past the outbox's last seq
    (a seq of another database), so the hub sends a snapshot with reset true at
    the outbox's real seq; the console's floor is that seq, not its ``since``,
    so the next events reach it although their seqs are below its ``since``."""
    tokens = await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    token = tokens["commander"]
    async with running_server(settings):
        # An empty outbox: any since but 0 is from elsewhere.
        async with console(settings, token, since=100) as con:
            snap = await con.receive()
            assert snap["type"] == "snapshot" and snap["reset"] is True and snap["seq"] == 0, snap
        newest = await _append(conn, 3)
        async with console(settings, token, since=newest + 100) as con:
            snap = await con.receive()
            assert snap["type"] == "snapshot" and snap["reset"] is True and snap["seq"] == newest, snap
            live = await _append(conn, 2)
            seqs: list[int] = []
            while not seqs or seqs[-1] < live:
                seqs.extend(e["seq"] for e in await con.events())
            assert seqs == [newest + 1, newest + 2]
        # since == newest: nothing was missed, so nothing is sent (no snapshot,
        # no empty batch) until the next event, and the console is live.
        async with console(settings, token, since=live) as con:
            with pytest.raises(TimeoutError):
                await con.receive(timeout=0.5)
            nxt = await _append(conn, 1)
            assert [e["seq"] for e in await con.events()] == [nxt]


# -- 4. districts -----------------------------------------------------------------------

#: Accounts of the district test: name -> (role, districts).
BOUND: dict[str, tuple[str, list[str] | None]] = {
    "viewer_d1": ("viewer", ["D-1"]),
    "dispatcher_d2": ("dispatcher", ["D-2"]),
    "boss": ("commander", None),
}


async def _seed_two_districts(conn: asyncpg.Connection) -> dict[str, str]:
    """seed_minimal's D-1 (S-1, U-1), plus D-2 east of it with sensor S-3 and
    unit U-2, and the accounts of :data:`BOUND`. Returns their tokens."""
    await conn.execute(
        "INSERT INTO districts (id, name, geom) VALUES ('D-2', 'East', $1)",
        MultiPolygon([box(120.3, 30.0, 120.6, 30.5)]),
    )
    await conn.execute(
        "INSERT INTO sensors (id, kind, location, district_id) VALUES ('S-3', 'smoke', $1, 'D-2')",
        Point(120.45, 30.27),
    )
    await conn.execute(
        """INSERT INTO units (id, callsign, type, capabilities, position, position_at, district_id)
           VALUES ('U-2', 'Engine 2', 'fire_engine', '{fire_suppression}', $1, now(), 'D-2')""",
        Point(120.46, 30.26),
    )
    tokens = {}
    for name, (role, districts) in BOUND.items():
        await accounts.add_user(conn, username=name, password=PASSWORD, role=role, districts=districts)
        session = await accounts.login(conn, name, PASSWORD, datetime.now(UTC), timedelta(hours=1))
        assert session is not None
        tokens[name] = session.token
    return tokens


def _visible_to(name: str, rows: Iterable[asyncpg.Record]) -> list[int]:
    districts = BOUND[name][1]
    return [r["seq"] for r in rows if districts is None or r["district_id"] in districts]


async def _read_all(
    con: Console, last: int, timeout: float = 10.0, quiet: float = 0.75
) -> list[dict[str, Any]]:
    """Events until seq ``last`` has arrived (or ``timeout``), then until nothing
    comes for ``quiet`` seconds, so an event that should not come has time to."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    events: list[dict[str, Any]] = []
    while not events or events[-1]["seq"] < last:
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        try:
            events.extend(await con.events(remaining))
        except TimeoutError:
            break
    while True:
        try:
            events.extend(await con.events(quiet))
        except TimeoutError:
            return events


def _districts_shown(events: list[dict[str, Any]]) -> set[str | None]:
    return {e["data"]["district"] for e in events if "district" in e["data"]}


async def test_accounts_bound_to_a_district_get_only_its_events_live_and_in_a_replay(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection
) -> None:
    await seed_minimal(database_url)
    tokens = await _seed_two_districts(conn)
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings) as app, publisher(mqtt_url) as pub:
        async with (
            console(settings, tokens["viewer_d1"]) as d1,
            console(settings, tokens["dispatcher_d2"]) as d2,
            console(settings, tokens["boss"]) as boss,
        ):
            consoles = {"viewer_d1": d1, "dispatcher_d2": d2, "boss": boss}
            starts: dict[str, int] = {}
            for name, con in consoles.items():
                snap = await con.receive()
                assert snap["type"] == "snapshot", snap
                starts[name] = snap["seq"]
                units = {u["id"] for u in snap["units"]}
                assert units == {"viewer_d1": {"U-1"}, "dispatcher_d2": {"U-2"}, "boss": {"U-1", "U-2"}}[name]

            # Each district's incidents (opened, then updated), units moving,
            # an unlocated event in each, and one in no district at all; D-2's
            # first, so a leak to D-1's console would arrive before what it waits for.
            await pub.publish("sensors/S-3/alarm", alarm("d2-1"))
            await pub.publish("sensors/S-1/alarm", alarm("d1-1"))
            await wait_for_value(conn, "SELECT count(*) FROM alarms", 2)
            await pub.publish("sensors/S-3/alarm", alarm("d2-2"))
            await pub.publish("sensors/S-1/alarm", alarm("d1-2"))
            await pub.publish("units/U-2/position", {"lat": 30.261, "lon": 120.461, "time": _now()})
            await pub.publish("units/U-1/position", {"lat": 30.261, "lon": 120.161, "time": _now()})
            await wait_for_value(conn, "SELECT count(*) FROM alarms", 4)
            await wait_for_value(conn, "SELECT count(*) FROM events WHERE name = 'unit.moved'", 2)
            last = await append_events(
                conn,
                [
                    NewEvent("task.updated", {"marker": "D-2"}, district_id="D-2"),
                    NewEvent("task.updated", {"marker": "D-1"}, district_id="D-1"),
                    NewEvent("sensor.online", {"marker": "nowhere"}),
                ],
            )
            assert last is not None
            rows = await conn.fetch(
                "SELECT seq, name, district_id FROM events WHERE seq <= $1 ORDER BY seq", last
            )
            by_district = {r["district_id"] for r in rows}
            assert {"D-1", "D-2", None} <= by_district, rows
            incidents = {
                r["district_id"]: r["id"]
                for r in await conn.fetch(
                    "SELECT district_id, id FROM incidents WHERE district_id IS NOT NULL"
                )
            }
            assert set(incidents) == {"D-1", "D-2"}

            live: dict[str, list[dict[str, Any]]] = {}
            for name, con in consoles.items():
                want = [s for s in _visible_to(name, rows) if s > starts[name]]
                live[name] = await _read_all(con, want[-1])
                got = [e["seq"] for e in live[name] if e["seq"] <= last]
                assert got == want, f"{name} live: got {got}, want {want}"

        # What each saw, by what the events say of themselves (not only the outbox's column).
        assert _districts_shown(live["viewer_d1"]) == {"D-1"}
        assert _districts_shown(live["dispatcher_d2"]) == {"D-2"}
        assert _districts_shown(live["boss"]) == {"D-1", "D-2"}
        for name, district in (("viewer_d1", "D-1"), ("dispatcher_d2", "D-2")):
            seen = {e["data"].get("id") for e in live[name] if e["name"].startswith("incident.")}
            assert seen == {incidents[district]}, (name, seen)
            assert not any(e["data"].get("marker") == "nowhere" for e in live[name]), name
        assert any(e["data"].get("marker") == "nowhere" for e in live["boss"])

        # A replay from before all of it is cut the same way.
        since = min(starts.values())
        for name in BOUND:
            want = [s for s in _visible_to(name, rows) if s > since]
            async with console(settings, tokens[name], since=since) as con:
                replayed = await _read_all(con, want[-1])
            got = [e["seq"] for e in replayed if e["seq"] <= last]
            assert got == want, f"{name} replay: got {got}, want {want}"
            # ...and each replayed event is the very event sent live.
            sent = {e["seq"]: e for e in live[name]}
            assert [e for e in replayed if e["seq"] in sent] == [sent[s] for s in want if s in sent], name
        assert app[HUB].overflows == 0


def _now() -> str:
    return datetime.now(UTC).isoformat()
