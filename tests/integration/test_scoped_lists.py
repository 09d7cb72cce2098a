"""What a scoped account's lists CONTAIN, route by route (issue #8).

test_authorization.py checks each route's status for each role, and 404 for
a single foreign object; this checks that the lists hold nothing out of scope:

- a field account (unit U-1, dispatched to I1, where U-4 works alongside it)
  lists only the incidents it was dispatched to, its own unit and the units
  working those incidents, its own dispatches, and in an incident's lists of
  dispatches and tasks only its own unit's;
- an account bound to a district (a dispatcher, a viewer, an administrator)
  lists only that district's incidents and units, its KPIs count only them,
  and the live feed's snapshot holds only them;
- an account bound to nothing sees all of it (so the checks above cannot pass
  on an empty answer);
- the city's layers (depots, hazards, sites, districts, roads) and sensors
  are the whole city for every role that may read them (docs/security.md:
  "yes", not "own").

Every GET route of command/api_routes.py answering a list is accounted for
below: a new one fails :func:`test_every_list_route_is_accounted_for` until
it is given a check here.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

import aiohttp
import asyncpg
from shapely.geometry import Point

from command import accounts, db
from command.api_routes import ROUTES, Route
from tests.integration.helpers import PASSWORD, console, running_server, settings_for
from tests.integration.security_world import World, build_world, call, seed_accounts_and_city

#: Accounts added to security_world's: a viewer bound to the other district,
#: and an administrator bound to one (its binding scopes it like anyone's).
EXTRA_ACCOUNTS: dict[str, tuple[str, list[str]]] = {
    "viewer_d1": ("viewer", ["D-1"]),
    "admin_d2": ("admin", ["D-2"]),
}

#: List routes checked for their contents by test_scoped_lists_hold_only_what_the_caller_may_see.
CHECKED_LISTS = {
    ("GET", "/api/incidents"),
    ("GET", "/api/units"),
    ("GET", "/api/my/dispatches"),
    ("GET", "/api/incidents/{id}/dispatches"),
    ("GET", "/api/incidents/{id}/tasks"),
    ("GET", "/api/depots"),
    ("GET", "/api/hazards"),
    ("GET", "/api/sites"),
    ("GET", "/api/districts"),
    ("GET", "/api/roads"),
    ("GET", "/api/sensors"),
}
#: Administrators' lists of the whole system: accounts, the audit log, refused
#: inputs (which carry no district: a topic and a payload). Only role "admin"
#: may read them (test_authorization.py), bound to districts or not.
ADMIN_LISTS = {
    ("GET", "/api/users"),
    ("GET", "/api/audit"),
    ("GET", "/api/dead-letters"),
}


def _answers_a_list(route: Route) -> bool:
    schema = route.responses.get(200, {})
    properties = schema.get("properties", {})
    return route.method == "GET" and any(p.get("type") == "array" for p in properties.values())


def test_every_list_route_is_accounted_for() -> None:
    lists = {r.key for r in ROUTES if _answers_a_list(r)}
    assert lists, "no list route found: has the route table's shape changed?"
    unchecked = lists - CHECKED_LISTS - ADMIN_LISTS
    assert not unchecked, f"list routes whose contents nobody checks: {sorted(unchecked)}"
    assert lists >= CHECKED_LISTS | ADMIN_LISTS, "a checked route no longer answers a list"


async def _seed_more(database_url: str, ids: dict[str, int]) -> None:
    """U-6, a unit in no district, and the EXTRA_ACCOUNTS (they log in once the server runs)."""
    conn = await asyncpg.connect(database_url)
    await db.register_codecs(conn)
    try:
        await conn.execute(
            """INSERT INTO units (id, callsign, type, capabilities, position, position_at)
               VALUES ('U-6', 'Engine 6', 'fire_engine', '{fire_suppression}', $1, now())""",
            Point(121.0, 30.25),
        )
        for name, (role, districts) in EXTRA_ACCOUNTS.items():
            ids[name] = await accounts.add_user(
                conn, username=name, password=PASSWORD, role=role, districts=districts
            )
    finally:
        await conn.close()


async def _login(http: aiohttp.ClientSession, base: str, name: str) -> str:
    status, body = await call(
        http, base, "POST", "/api/login", None, {"username": name, "password": PASSWORD}
    )
    assert status == 200, body
    token: str = body["token"]
    return token


async def _get(http: aiohttp.ClientSession, world: World, who: str, path: str) -> Any:
    status, body = await call(http, world.base, "GET", path, world.tokens[who])
    assert status == 200, f"GET {path} as {who}: {status} {body}"
    return body


def _ids(items: Iterable[dict[str, Any]], key: str = "id") -> set[Any]:
    return {item[key] for item in items}


async def _extend_world(http: aiohttp.ClientSession, world: World) -> None:
    """I4 in no district; U-4 dispatched to I1 beside the field team's U-1 (P4),
    with a task of its own there (T4)."""
    admin = world.tokens["admin"]
    status, body = await call(
        http,
        world.base,
        "POST",
        "/api/incidents",
        admin,
        {"kind": "fire", "severity": "Moderate", "lat": 30.25, "lon": 121.0, "title": "Fire I4"},
    )
    assert status == 201 and body["district"] is None, body
    world.incidents["I4"] = body["id"]
    status, body = await call(
        http,
        world.base,
        "POST",
        f"/api/incidents/{world.incidents['I1']}/dispatches",
        admin,
        {"units": ["U-4"]},
    )
    assert status == 201, body
    world.dispatches["P4"] = body["dispatches"][0]["id"]
    status, body = await call(
        http,
        world.base,
        "POST",
        f"/api/incidents/{world.incidents['I1']}/tasks",
        admin,
        {"title": "Check T4", "due_in_s": 3600, "owner_unit": "U-4"},
    )
    assert status == 201, body
    world.tasks["T4"] = body["id"]


async def test_scoped_lists_hold_only_what_the_caller_may_see(database_url: str, mqtt_url: str) -> None:
    tokens, ids = await seed_accounts_and_city(database_url)
    await _seed_more(database_url, ids)
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings), aiohttp.ClientSession() as http:
        world = await build_world(http, settings, tokens, ids)
        for name in EXTRA_ACCOUNTS:
            tokens[name] = await _login(http, world.base, name)
        await _extend_world(http, world)
        inc, disp, task = world.incidents, world.dispatches, world.tasks
        every_incident = set(inc.values())
        every_unit = {"U-1", "U-2", "U-3", "U-4", "U-5", "U-6"}

        # Who sees which incidents and units, by the rules of docs/security.md.
        incidents_of = {
            "commander": every_incident,
            "viewer": every_incident,
            "admin": every_incident,
            "field": {inc["I1"]},
            "dispatcher_d2": {inc["I3"]},
            "admin_d2": {inc["I3"]},
            "viewer_d1": {inc["I1"], inc["I2"]},
        }
        units_of = {
            "commander": every_unit,
            "viewer": every_unit,
            "admin": every_unit,
            # Its own unit and the one working its incident beside it.
            "field": {"U-1", "U-4"},
            "dispatcher_d2": {"U-3", "U-5"},
            "admin_d2": {"U-3", "U-5"},
            "viewer_d1": {"U-1", "U-2", "U-4"},
        }
        problems: list[str] = []

        def expect(what: str, got: set[Any], want: set[Any]) -> None:
            if got != want:
                problems.append(f"{what}: got {sorted(got)}, expected {sorted(want)}")

        for who, want in incidents_of.items():
            for query in ("", "?status=all", "?status=open&limit=5000"):
                body = await _get(http, world, who, f"/api/incidents{query}")
                expect(f"GET /api/incidents{query} as {who}", _ids(body["incidents"]), want)
            body = await _get(http, world, who, "/api/units")
            expect(f"GET /api/units as {who}", _ids(body["units"]), units_of[who])
            # A unit's active dispatch rides along: only ones to incidents it may see.
            shown = {u["dispatch"]["incident_id"] for u in body["units"] if u["dispatch"] is not None}
            if not shown <= want:
                problems.append(f"GET /api/units as {who}: dispatches to unseen incidents {shown - want}")
            # The live feed's snapshot is made by the same reads.
            async with console(settings, tokens[who]) as feed:
                snapshot = await feed.receive()
            assert snapshot["type"] == "snapshot", snapshot
            expect(f"feed snapshot's incidents for {who}", _ids(snapshot["incidents"]), want)
            expect(f"feed snapshot's units for {who}", _ids(snapshot["units"]), units_of[who])

        # The field team: its own dispatches, and its own unit's in an incident's lists.
        for query, want in (("", {disp["P1"]}), ("?all=1", {disp["P1"]})):
            body = await _get(http, world, "field", f"/api/my/dispatches{query}")
            expect(f"GET /api/my/dispatches{query} as field", _ids(body["dispatches"]), want)
            if body["unit_id"] != "U-1":
                problems.append(f"GET /api/my/dispatches as field: unit {body['unit_id']}")
        i1 = inc["I1"]
        body = await _get(http, world, "field", f"/api/incidents/{i1}/dispatches")
        expect("GET /api/incidents/I1/dispatches as field", _ids(body["dispatches"]), {disp["P1"]})
        body = await _get(http, world, "field", f"/api/incidents/{i1}/tasks")
        if task["T1"] not in _ids(body["tasks"]) or _ids(body["tasks"], "owner_unit") != {"U-1"}:
            problems.append(
                f"GET /api/incidents/I1/tasks as field: {[(t['id'], t['owner_unit']) for t in body['tasks']]}"
            )
        # The incident's detail is the incident's (as the live feed, which sends
        # a field team every event about its incidents, fellow units' dispatches
        # and tasks included: test_feed_scope.py); never another incident's.
        detail = await _get(http, world, "field", f"/api/incidents/{i1}")
        got = _ids(detail["dispatches"])
        if disp["P1"] not in got or not got <= {disp["P1"], disp["P4"]}:
            problems.append(f"GET /api/incidents/I1 as field: dispatches {sorted(got)}")
        if task["T1"] not in _ids(detail["tasks"]) or _ids(detail["tasks"], "incident_id") != {i1}:
            problems.append(f"GET /api/incidents/I1 as field: tasks {detail['tasks']}")
        # The same lists in full for an account bound to nothing (the control).
        body = await _get(http, world, "commander", f"/api/incidents/{i1}/dispatches")
        expect(
            "GET /api/incidents/I1/dispatches as commander",
            _ids(body["dispatches"]),
            {disp["P1"], disp["P4"]},
        )
        body = await _get(http, world, "commander", f"/api/incidents/{i1}/tasks")
        if not {task["T1"], task["T4"]} <= _ids(body["tasks"]):
            problems.append(f"GET /api/incidents/I1/tasks as commander lacks T1 or T4: {body['tasks']}")
        detail = await _get(http, world, "commander", f"/api/incidents/{i1}")
        expect(
            "GET /api/incidents/I1 as commander: its dispatches",
            _ids(detail["dispatches"]),
            {disp["P1"], disp["P4"]},
        )
        # A district-bound account's incident: its lists are the incident's in full.
        body = await _get(http, world, "dispatcher_d2", f"/api/incidents/{inc['I3']}/dispatches")
        expect("GET /api/incidents/I3/dispatches as dispatcher_d2", _ids(body["dispatches"]), {disp["P3"]})

        # KPIs: only the incidents in the caller's districts (all of them when unbound).
        for who in ("commander", "viewer", "admin", "dispatcher_d2", "admin_d2", "viewer_d1"):
            want = incidents_of[who]
            body = await _get(http, world, who, "/api/stats?group=district")
            if body["count"] != len(want):
                problems.append(f"GET /api/stats as {who}: count {body['count']}, expected {len(want)}")
            districts = {g["key"] for g in body["groups"]}
            want_districts = {
                "dispatcher_d2": {"D-2"},
                "admin_d2": {"D-2"},
                "viewer_d1": {"D-1"},
            }.get(who, {"D-1", "D-2", None})
            expect(f"GET /api/stats?group=district as {who}: groups", districts, want_districts)
            status, text = await call(http, world.base, "GET", "/api/stats?format=csv", tokens[who])
            assert status == 200, text
            rows = list(csv.DictReader(io.StringIO(text)))
            expect(f"GET /api/stats?format=csv as {who}", {int(r["incident_id"]) for r in rows}, want)

        # The city's layers and sensors: the whole city for everyone who may read them.
        for layer in ("depots", "hazards", "sites", "districts", "roads", "sensors"):
            whole = await _get(http, world, "commander", f"/api/{layer}")
            readers = (
                ("field", "dispatcher_d2", "viewer_d1")
                if layer != "sensors"
                else ("dispatcher_d2", "viewer_d1")
            )
            for who in readers:
                body = await _get(http, world, who, f"/api/{layer}")
                if body != whole:
                    problems.append(f"GET /api/{layer} as {who} differs from the whole city's")
        body = await _get(http, world, "field", "/api/districts")
        expect("GET /api/districts as field", _ids(body["districts"]), {"D-1", "D-2"})

        # The administrators' lists are the whole system's, bound or not.
        whole = await _get(http, world, "admin", "/api/users")
        bound = await _get(http, world, "admin_d2", "/api/users")
        expect("GET /api/users as admin_d2", _ids(bound["users"]), _ids(whole["users"]))

        assert not problems, f"{len(problems)} lists hold the wrong things:\n" + "\n".join(problems)
