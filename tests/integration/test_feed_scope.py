"""A field team never receives an event outside its scope, in snapshot, replay
or live: a property test over random scenarios against the real server.

Hypothesis draws scenarios (incidents reported, units dispatched to them,
field steps, call-backs, positions over MQTT); each runs through the real
HTTP API and broker while the field team of U-1 watches live. Afterwards
every frame it got is checked against its scope as an independent oracle
computes it from the outbox table itself, replaying the rule in plain
Python: an event is in U-1's scope when it is about U-1, about an incident
U-1 has been dispatched to (by then), or about a unit whose dispatch to such
an incident was active at that moment. The live console must get exactly
the in-scope events (positions may be coalesced, never lost at the end); a
replay from the scenario's start and a fresh snapshot must hold nothing out
of scope.

As in test_dispatch_invariants.py, hypothesis runs in a worker thread and
hands coroutines to the test's loop, where the server runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from command.outbox import NewEvent, append_events
from dispatch.progress import ACTIVE
from tests.integration.helpers import (
    Api,
    api_for,
    console,
    publisher,
    running_server,
    seed_city,
    settings_for,
)

T = TypeVar("T")
ME = "U-1"
UNITS = ("U-1", "U-2", "U-3", "U-4")
DISPATCH_EVENTS = ("dispatch.created", "dispatch.updated", "dispatch.overdue")


@dataclass(frozen=True)
class Open:
    east: int  # incidents ~1 km apart, so each report is its own incident


@dataclass(frozen=True)
class Send:
    unit: str
    incident: int  # index into the scenario's incidents (modulo)


@dataclass(frozen=True)
class Step:
    unit: str
    status: str


@dataclass(frozen=True)
class Move:
    unit: str


STEPS = st.one_of(
    st.builds(Open, st.integers(0, 9)),
    st.builds(Send, st.sampled_from(UNITS), st.integers(0, 3)),
    st.builds(
        Step,
        st.sampled_from(UNITS),
        st.sampled_from(["acknowledged", "on_scene", "cleared", "declined", "cancelled"]),
    ),
    st.builds(Move, st.sampled_from(UNITS)),
)


def in_scope(
    events: list[dict[str, Any]], known: set[int] | None = None, working: Iterable[str] = ()
) -> dict[int, bool]:
    """The oracle: seq -> is this event in U-1's scope when it happens?

    ``known`` and ``working``: U-1's incidents and the units working them as
    the database holds them when a replay starts (a replay starts from
    today's scope, so it may show their earlier life); None to learn them
    from the stream as it goes, as live delivery does.
    """
    today = -1  # stands for "one of U-1's incidents" for the units working them at the start
    mine: set[int] = {*(known or ()), today}
    active: dict[str, int] = dict.fromkeys(working, today)  # unit -> incident of its active dispatch
    verdict: dict[int, bool] = {}
    for e in events:
        incident, unit = e["incident_id"], e["unit_id"]
        if e["name"] in DISPATCH_EVENTS and incident is not None and unit is not None:
            if unit == ME and known is None:
                mine.add(incident)
            if e["data"].get("status") in ACTIVE:
                active[unit] = incident
            else:
                active.pop(unit, None)
        fellows = {u for u, i in active.items() if i in mine}
        verdict[e["seq"]] = unit == ME or incident in mine or (unit is not None and unit in fellows)
    return verdict


async def test_a_field_team_gets_exactly_its_scope_live_and_nothing_outside_it_in_replay_or_snapshot(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection
) -> None:
    tokens = await seed_city(database_url)
    server = settings_for(database_url, mqtt_url)
    loop = asyncio.get_running_loop()

    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(120)

    async with running_server(server), api_for(server) as api, publisher(mqtt_url) as pub:

        async def scenario(steps: list[Any]) -> None:
            boss = tokens["commander"]
            incidents: list[int] = []
            async with console(server, tokens["field"]) as live:
                first = await live.receive()
                assert first["type"] == "snapshot"
                start = first["seq"]
                for step in steps:
                    await perform(api, pub, conn, boss, incidents, step)
                # A last event about U-1 itself: when it arrives, everything
                # before it has been decided on.
                end = await append_events(conn, [NewEvent("unit.status", {"probe": True}, None, ME, "D-1")])
                assert end is not None
                got: list[dict[str, Any]] = []
                snapshots: list[tuple[int, dict[str, Any]]] = []  # (last event seq before it, snapshot)
                while not got or got[-1]["seq"] != end:
                    frame = await live.receive()
                    if frame["type"] == "snapshot":
                        # A dispatch widened the scope: a fresh picture of it.
                        snapshots.append((got[-1]["seq"] if got else start, frame))
                    else:
                        got.extend(frame["events"] if frame["type"] == "batch" else [frame])
            rows = await conn.fetch("SELECT seq, name, data, incident_id, unit_id FROM events ORDER BY seq")
            history = [dict(r) for r in rows]
            verdict = in_scope(history)
            expected = [e for e in history if start < e["seq"] <= end and verdict[e["seq"]]]
            # What a mid-stream snapshot covers is in it, not in events.
            covered = {s for before, snap in snapshots for s in range(before + 1, snap["seq"] + 1)}
            check_live(got, expected, covered)
            by_seq = history_by_seq(history)
            fellows_seen.append(sum(1 for e in got if by_seq[e["seq"]]["unit_id"] not in (None, ME)))
            for _, snap in snapshots:
                check_snapshot(snap, history)

            async with console(server, tokens["field"], since=start) as replayed:
                seen: list[dict[str, Any]] = []
                while not seen or seen[-1]["seq"] != end:
                    seen.extend(await replayed.events())
            # The replay starts from today's scope, so it may show an
            # incident's earlier life and the units working it then; never
            # anything else.
            ever_mine = {
                e["incident_id"] for e in history if e["name"] == "dispatch.created" and e["unit_id"] == ME
            }
            working = {
                r["unit_id"]
                for r in await conn.fetch(
                    """SELECT unit_id FROM dispatches WHERE status = ANY($1::text[])
                       AND incident_id IN (SELECT incident_id FROM dispatches WHERE unit_id = $2)
                       AND unit_id <> $2""",
                    sorted(ACTIVE),
                    ME,
                )
            }
            replay_verdict = in_scope([e for e in history if e["seq"] > start], ever_mine, working)
            for e in seen:
                assert replay_verdict[e["seq"]], e

            async with console(server, tokens["field"]) as fresh:
                snap = await fresh.receive()
            assert {u["id"] for u in snap["units"]} == working | {ME}
            assert {i["id"] for i in snap["incidents"]} <= ever_mine
            # Call everyone back, so the next scenario starts with free units.
            for row in await conn.fetch(
                "SELECT id FROM dispatches WHERE status = ANY($1::text[])", sorted(ACTIVE)
            ):
                status, body = await api.call(
                    "POST",
                    f"/api/dispatches/{row['id']}/status",
                    boss,
                    {"status": "cancelled", "reason": "reset"},
                )
                assert status == 200, body

        @settings(
            max_examples=10,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(st.lists(STEPS, min_size=6, max_size=16))
        def check(steps: list[Any]) -> None:
            # Start with U-2 on an incident before U-1 joins it, so that every scenario
            # has a fellow unit to see and to stop seeing.
            run(scenario([Open(0), Open(5), Send("U-2", 0), Send(ME, 0), Send("U-3", 1), *steps]))

        fellows_seen: list[int] = []
        await asyncio.to_thread(check)
        # The scenarios did exercise the interesting part: fellow units' events.
        assert sum(fellows_seen) > 0, fellows_seen


def history_by_seq(history: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {e["seq"]: e for e in history}


def check_snapshot(snap: dict[str, Any], history: list[dict[str, Any]]) -> None:
    """A snapshot holds only what was in scope at its seq."""
    upto = [e for e in history if e["seq"] <= snap["seq"]]
    mine = {e["incident_id"] for e in upto if e["name"] == "dispatch.created" and e["unit_id"] == ME}
    active: dict[str, int] = {}
    for e in upto:
        if e["name"] in DISPATCH_EVENTS and e["incident_id"] is not None and e["unit_id"] is not None:
            if e["data"].get("status") in ACTIVE:
                active[e["unit_id"]] = e["incident_id"]
            else:
                active.pop(e["unit_id"], None)
    assert {i["id"] for i in snap["incidents"]} <= mine, snap
    assert {u["id"] for u in snap["units"]} == {u for u, i in active.items() if i in mine} | {ME}, snap


def check_live(got: list[dict[str, Any]], expected: list[dict[str, Any]], covered: set[int]) -> None:
    """Exactly the in-scope events, in order; positions may be coalesced, but
    each unit's last one within the run always arrives."""
    seqs = [e["seq"] for e in got]
    assert seqs == sorted(set(seqs)), "out of order or repeated"
    allowed = {e["seq"] for e in expected}
    assert set(seqs) <= allowed, f"out of scope: {sorted(set(seqs) - allowed)}"
    must = [e["seq"] for e in expected if e["name"] != "unit.moved" and e["seq"] not in covered]
    assert [s for s in seqs if s in set(must)] == must, "an in-scope event is missing"
    last_moved: dict[str, int] = {}
    for e in expected:
        if e["name"] == "unit.moved":
            last_moved[e["unit_id"]] = e["seq"]
    # A position a snapshot covers is in the snapshot's units instead.
    last_moved = {u: s for u, s in last_moved.items() if s not in covered}
    assert set(last_moved.values()) <= set(seqs), "a unit's last position never came"


async def perform(
    api: Api, pub: Any, conn: asyncpg.Connection, boss: str, incidents: list[int], step: Any
) -> None:
    if isinstance(step, Open):
        status, body = await api.call(
            "POST",
            "/api/incidents",
            boss,
            {
                "kind": "fire",
                "severity": "Moderate",
                "lat": 30.27,
                "lon": 120.15 + step.east * 0.01 + len(incidents) * 0.001,
                "title": "t",
            },
        )
        assert status == 201, body
        incidents.append(body["id"])
    elif isinstance(step, Send) and incidents:
        incident = incidents[step.incident % len(incidents)]
        status, body = await api.dispatch(boss, incident, [step.unit])
        assert status in (201, 409), body
    elif isinstance(step, Step):
        dispatch = await conn.fetchval(
            "SELECT id FROM dispatches WHERE unit_id = $1 AND status = ANY($2::text[])",
            step.unit,
            sorted(ACTIVE),
        )
        if dispatch is not None:
            status, body = await api.call(
                "POST", f"/api/dispatches/{dispatch}/status", boss, {"status": step.status, "reason": "test"}
            )
            assert status in (200, 409), body
    elif isinstance(step, Move):
        lat = 30.26 + (datetime.now(UTC).microsecond % 1000) * 1e-6
        await pub.publish(
            f"units/{step.unit}/position", {"lat": lat, "lon": 120.16, "time": datetime.now(UTC).isoformat()}
        )
        # Positions go through ingest asynchronously: wait until stored, so the
        # scenario's order is the outbox's order.
        for _ in range(200):
            if await conn.fetchval(
                "SELECT abs(ST_Y(position) - $2) < 1e-9 FROM units WHERE id = $1", step.unit, lat
            ):
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"position of {step.unit} not stored")
