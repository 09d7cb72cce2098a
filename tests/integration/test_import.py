"""Import and export against real PostGIS: all or nothing, idempotent, round trips; CLI, REST, OSM roads."""

from __future__ import annotations

import asyncio
import fcntl
import getpass
import json
import logging
import os
import platform
import pty
import shutil
import struct
import subprocess
import sys
import tempfile
import termios
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from command import db, db_roles
from command.admin_api import MAX_BODY, ROAD_IMPORT_LOCK, add_admin_routes
from command.demo_city import build_city
from command.guard import guard_middleware
from command.importer import RoadImportError, export_rows, import_roads, import_rows
from command.imports import KINDS, Format, InvalidRows, dump, parse
from command.keys import POOL, SETTINGS
from command.seed import seed_demo
from command.settings import Settings
from command.web import auth_middleware, errors_middleware
from tests.integration.helpers import running_server, seed_minimal, settings_for
from tests.integration.security_world import app_role

ROOT = Path(__file__).resolve().parents[2]
OSM = ROOT / "tests" / "fixtures" / "tiny_city.osm"
TABLES = ("districts", "units", "depots", "stock", "hazards", "sites", "sensors", "roads")
ROAD_CAP = 64 * 1024  # the admin_client's cap on road uploads

UNITS = (
    "id,callsign,type,capabilities,crew,station,district_id,status,lat,lon\n"
    "U-1,Engine 1,fire_engine,fire_suppression;rescue,4,Station 1,D-1,available,30.27,120.15\n"
    "U-2,Ladder 2,rescue_squad,rescue;search,3,,,,30.26,120.16\n"
)


async def snapshot(conn: asyncpg.Connection, *, versions: bool = False) -> dict[str, list[str]]:
    """Every row of the city's tables as JSON (with xmin: a rewritten row shows even if equal)."""
    result = {}
    for table in TABLES:
        extra = "xmin::text || ' ' || " if versions else ""
        result[table] = [
            r[0] for r in await conn.fetch(f"SELECT {extra}to_jsonb(t)::text FROM {table} t ORDER BY 1")
        ]
    return result


async def load(conn: asyncpg.Connection, kind: str, text: str, fmt: Format = "csv") -> int:
    rows = parse(kind, text, file=f"{kind}.{fmt}", fmt=fmt)
    return await import_rows(conn, kind, rows)


async def seed_district(conn: asyncpg.Connection) -> None:
    await load(
        conn,
        "districts",
        'id,name,wkt\nD-1,West,"POLYGON ((120 30, 120.3 30, 120.3 30.5, 120 30.5, 120 30))"\n'
        'D-2,East,"POLYGON ((120.3 30, 120.6 30, 120.6 30.5, 120.3 30.5, 120.3 30))"\n',
    )


# --- all or nothing, upsert ------------------------------------------------------------------


async def test_one_bad_row_leaves_the_database_unchanged(conn: asyncpg.Connection) -> None:
    await seed_district(conn)
    await load(conn, "units", UNITS)
    before = await snapshot(conn, versions=True)
    changed = UNITS.replace("Engine 1", "Engine One") + "U-3,Boat 3,boat,,three,,,,30.2,120.1\n"
    with pytest.raises(InvalidRows) as caught:
        await load(conn, "units", changed)
    assert [str(e) for e in caught.value.errors] == [
        "units.csv: row 4, field 'crew': must be a whole number >= 0, got 'three'"
    ]
    assert await snapshot(conn, versions=True) == before


async def test_a_row_the_database_finds_wrong_stops_the_whole_file(conn: asyncpg.Connection) -> None:
    await seed_district(conn)
    await load(conn, "depots", "id,name,lat,lon\nDEP-1,North,30.3,120.1\n")
    before = await snapshot(conn)
    stock = "depot_id,item,quantity,unit\nDEP-1,water,10,l\nDEP-9,tents,5,pcs\nDEP-1,rice,3,kg\n"
    with pytest.raises(InvalidRows) as caught:
        await load(conn, "stock", stock)
    assert [str(e) for e in caught.value.errors] == [
        "stock.csv: row 3, field 'depot_id': unknown depot 'DEP-9' (import depots first)"
    ]
    units = UNITS.replace(",D-1,", ",D-7,")
    with pytest.raises(InvalidRows) as caught:
        await load(conn, "units", units)
    assert [str(e) for e in caught.value.errors] == [
        "units.csv: row 2, field 'district_id': unknown district 'D-7' "
        "(import districts first, or leave it empty)"
    ]
    assert await snapshot(conn) == before


async def test_reimporting_the_same_file_changes_nothing(conn: asyncpg.Connection) -> None:
    await seed_district(conn)
    assert await load(conn, "units", UNITS) == 2
    first = await snapshot(conn, versions=True)
    assert await load(conn, "units", UNITS) == 2
    # Same xmin: not one row was even rewritten (units.updated_at is untouched).
    assert await snapshot(conn, versions=True) == first


async def test_import_inserts_updates_and_keeps_live_state(conn: asyncpg.Connection) -> None:
    await seed_district(conn)
    await load(conn, "units", UNITS)
    u2 = await conn.fetchrow("SELECT * FROM units WHERE id = 'U-2'")
    # A blank district is the one containing home; a new unit is available, parked at home.
    assert (u2["district_id"], u2["status"], u2["position"], u2["crew"]) == (
        "D-1",
        "available",
        u2["home"],
        3,
    )
    await conn.execute("UPDATE units SET status = 'on_scene' WHERE id = 'U-2'")
    await load(conn, "units", UNITS.replace("rescue;search,3", "rescue;search,5"))
    u2 = await conn.fetchrow("SELECT * FROM units WHERE id = 'U-2'")
    # Updated what the file says; a blank status keeps the live one.
    assert (u2["crew"], u2["status"]) == (5, "on_scene")
    await load(conn, "units", UNITS.replace(",,,,30.26", ",,,out_of_service,30.26"))
    assert await conn.fetchval("SELECT status FROM units WHERE id = 'U-2'") == "out_of_service"
    assert await conn.fetchval("SELECT count(*) FROM units") == 2


async def test_sensors_keep_their_heartbeat_unless_given(conn: asyncpg.Connection) -> None:
    await seed_district(conn)
    await load(conn, "sensors", "id,kind,heartbeat_s,lat,lon\nS-1,smoke,60,30.27,120.45\nS-2,gas,,,\n")
    rows = await conn.fetch("SELECT id, heartbeat_s, district_id, state FROM sensors ORDER BY id")
    assert [tuple(r) for r in rows] == [("S-1", 60, "D-2", "unknown"), ("S-2", 600, None, "unknown")]
    await load(conn, "sensors", "id,kind\nS-1,smoke\n")
    assert await conn.fetchval("SELECT heartbeat_s FROM sensors WHERE id = 'S-1'") == 60


# --- export -> import round trip -----------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "geojson"])
async def test_export_then_import_round_trips_the_demo_city(conn: asyncpg.Connection, fmt: Format) -> None:
    await seed_demo(conn, build_city())
    exported = {kind: dump(kind, await export_rows(conn, kind), fmt) for kind in KINDS}
    assert all(text.count("\n") > 2 for text in exported.values())
    before = await snapshot(conn, versions=True)

    # Into the same database: nothing changes, not even a row version.
    for kind in KINDS:
        await load(conn, kind, exported[kind], fmt)
    assert await snapshot(conn, versions=True) == before

    # Into an emptied one: the same city comes back, exported identically.
    for table in ("stock", "depots", "units", "sensors", "hazards", "sites", "districts"):
        await conn.execute(f"DELETE FROM {table}")
    for kind in KINDS:
        await load(conn, kind, exported[kind], fmt)
    for kind in KINDS:
        assert dump(kind, await export_rows(conn, kind), fmt) == exported[kind], kind


# --- the command line ----------------------------------------------------------------------

# Runs `emergency` as a user would, whether or not cli.py wires the commands
# yet: the harness adds them to the parser only when they are missing.
HARNESS = """
import argparse, sys
from command import cli
from command.import_cli import add_import_commands
original = cli.parser
def parser():
    p = original()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    if "import" not in sub.choices:
        add_import_commands(sub)
    return p
cli.parser = parser
cli.main(sys.argv[1:])
"""


def emergency(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", HARNESS, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def cli_env(database_url: str, tmp_path: Path, *, mqtt: bool = True) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMERGENCY_")}
    env.update(EMERGENCY_DATABASE_URL=database_url, EMERGENCY_DATA_DIR=str(tmp_path / "var"))
    if mqtt:
        # Well-formed, and nothing listens there: import never talks to the broker.
        env["EMERGENCY_MQTT_URL"] = "mqtt://127.0.0.1:9"
    return env


async def test_cli_import_and_export(conn: asyncpg.Connection, database_url: str, tmp_path: Path) -> None:
    await seed_district(conn)
    env = cli_env(database_url, tmp_path)
    (tmp_path / "units.csv").write_text(UNITS)
    bad = tmp_path / "bad_units.csv"
    bad.write_text(UNITS + "U-3,Boat,boat,,three,,,,,\nU-4,Boat,boat,,,,,busy,,\n")

    done = await asyncio.to_thread(emergency, env, "import", "units", str(tmp_path / "units.csv"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"imported 2 units from {tmp_path / 'units.csv'}"
    assert "imported 2 of 2" in done.stderr.splitlines()  # stderr is a pipe: plain lines, no bar

    before = await snapshot(conn)
    failed = await asyncio.to_thread(emergency, env, "import", "units", str(bad))
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines()[-3:] == [
        f"emergency import: {bad}: nothing imported; 2 error(s):",
        f"{bad}: row 4, field 'crew': must be a whole number >= 0, got 'three'",
        f"{bad}: row 5, field 'status': must be one of available, dispatched, en_route, on_scene, "
        "returning, out_of_service, got 'busy'",
    ]
    assert await snapshot(conn) == before

    out = tmp_path / "export.geojson"
    exported = await asyncio.to_thread(emergency, env, "export", "units", str(out))
    assert exported.returncode == 0, exported.stderr
    assert out.read_text() == dump("units", await export_rows(conn, "units"), "geojson")
    # Exported GeoJSON imports back without a change.
    again = await asyncio.to_thread(emergency, env, "import", "units", str(out))
    assert again.returncode == 0, again.stderr
    assert await snapshot(conn) == before

    # Only the database is needed: no broker URL at all works too.
    stdout = await asyncio.to_thread(
        emergency, cli_env(database_url, tmp_path, mqtt=False), "export", "units", "-", "--format", "csv"
    )
    assert stdout.returncode == 0, stdout.stderr
    assert stdout.stdout == dump("units", await export_rows(conn, "units"), "csv")


async def cli_audit(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """The command line's import entries in the audit log, oldest first."""
    rows = await conn.fetch(
        "SELECT at, actor, actor_role, target, outcome, status, address, detail "
        "FROM audit_log WHERE action = 'cli.import' ORDER BY id"
    )
    return [dict(r) for r in rows]


async def test_cli_imports_are_audited_as_the_servers_own_role(
    conn: asyncpg.Connection, database_url: str, tmp_path: Path
) -> None:
    # As the DML-only role the server runs as (command/db_roles.py): it may
    # append to the audit log, and every import, good or bad, does.
    await seed_district(conn)
    units = tmp_path / "units.csv"
    units.write_text(UNITS)
    bad = tmp_path / "bad_units.csv"
    bad.write_text(UNITS + "U-3,Boat,boat,,three,,,,,\n")
    stranger = tmp_path / "stranger.csv"  # valid, but names a district that does not exist
    stranger.write_text(UNITS.splitlines()[0] + "\nU-9,Boat 9,boat,,2,,D-9,available,30.2,120.1\n")
    async with app_role(database_url) as app_url:
        env = cli_env(app_url, tmp_path)
        done = await asyncio.to_thread(emergency, env, "import", "units", str(units))
        assert done.returncode == 0, done.stderr
        failed = await asyncio.to_thread(emergency, env, "import", "units", str(bad))
        assert failed.returncode == 1
        refused = await asyncio.to_thread(emergency, env, "import", "units", str(stranger))
        assert refused.returncode == 1
        missing = await asyncio.to_thread(emergency, env, "import", "units", str(tmp_path / "nowhere.csv"))
        assert missing.returncode == 1
    for result in (done, failed, refused, missing):
        assert "audit log could not" not in result.stderr
    assert await conn.fetchval("SELECT count(*) FROM units") == 2

    entries = await cli_audit(conn)
    assert len(entries) == 4
    for entry in entries:
        assert entry["actor"] == f"cli:{getpass.getuser()}"
        assert (entry["actor_role"], entry["status"], entry["address"]) == (None, None, "local")
        assert entry["target"] == "import:units"
        assert entry["detail"]["host"] == (platform.node() or None)
        assert entry["at"] is not None
    ok, invalid, stranger_entry, unreadable = entries
    assert ok["outcome"] == "ok"
    assert ok["detail"] == {"file": str(units), "host": platform.node() or None, "format": "csv", "rows": 2}
    assert invalid["outcome"] == "failed"
    assert (invalid["detail"]["file"], invalid["detail"]["rows"]) == (str(bad), None)
    crew = f"{bad}: row 4, field 'crew': must be a whole number >= 0, got 'three'"
    assert crew in invalid["detail"]["error"]
    assert invalid["detail"]["error"].startswith(f"emergency import: {bad}: nothing imported; 1 error(s)")
    # Refused by what the database holds: the file parsed, its row count is known.
    assert stranger_entry["outcome"] == "failed"
    assert (stranger_entry["detail"]["file"], stranger_entry["detail"]["rows"]) == (str(stranger), 1)
    assert "row 2" in stranger_entry["detail"]["error"] and "D-9" in stranger_entry["detail"]["error"]
    assert unreadable["outcome"] == "failed"
    assert unreadable["detail"]["file"] == str(tmp_path / "nowhere.csv")
    assert "cannot read" in unreadable["detail"]["error"]


async def test_a_cli_import_that_cannot_reach_the_audit_log_imports_nothing(
    conn: asyncpg.Connection, database_url: str, tmp_path: Path
) -> None:
    # The entry commits with the rows: a role that may write units but not
    # the audit log imports nothing, and says that even the failure went unrecorded.
    await seed_district(conn)
    (tmp_path / "units.csv").write_text(UNITS)
    async with app_role(database_url) as app_url:
        role = db_roles.username_of(app_url)
        await conn.execute(f'REVOKE INSERT ON audit_log FROM "{role}"')
        result = await asyncio.to_thread(
            emergency, cli_env(app_url, tmp_path), "import", "units", str(tmp_path / "units.csv")
        )
    assert result.returncode == 1
    assert "permission denied for table audit_log" in result.stderr
    assert "the audit log could not record this failure" in result.stderr
    assert await conn.fetchval("SELECT count(*) FROM units") == 0
    assert await cli_audit(conn) == []


# --- REST ------------------------------------------------------------------------------------


@pytest.fixture
async def admin_client(database_url: str) -> AsyncIterator[tuple[TestClient[Any, Any], dict[str, str]]]:
    """The import routes on a small app with the server's own error, auth and
    guard (role check and audit) middlewares."""
    tokens = await seed_minimal(database_url)
    app = web.Application(
        middlewares=[errors_middleware, auth_middleware, guard_middleware], client_max_size=1024 * 1024
    )

    async def pool_ctx(app: web.Application) -> AsyncIterator[None]:
        app[POOL] = await db.create_pool(database_url, min_size=1, max_size=2)
        yield
        await db.close_pool(app[POOL])

    app.cleanup_ctx.append(pool_ctx)
    app[SETTINGS] = Settings(database_url=database_url, mqtt_url=None)
    # A small cap on road uploads, so the limit can be tested without sending 512 MiB.
    add_admin_routes(app, max_road_upload=ROAD_CAP)
    async with TestClient(TestServer(app)) as client:
        yield client, tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_rest_import_and_export(
    admin_client: tuple[TestClient[Any, Any], dict[str, str]], conn: asyncpg.Connection
) -> None:
    client, tokens = admin_client
    headers = {**bearer(tokens["admin"]), "Content-Type": "text/csv"}
    response = await client.post("/api/import/units", data=UNITS, headers=headers)
    assert response.status == 201, await response.text()
    assert await response.json() == {"imported": 2}
    assert await conn.fetchval("SELECT callsign FROM units WHERE id = 'U-2'") == "Ladder 2"

    before = await snapshot(conn)
    bad = UNITS + "U-3,Boat,boat,,three,,,,,\n"
    response = await client.post(
        "/api/import/units",
        data=bad,
        headers={**headers, "Content-Disposition": 'attachment; filename="units.csv"'},
    )
    assert response.status == 422
    body = await response.json()
    assert body["error"]["code"] == "invalid_rows"
    assert body["error"]["rows"] == [
        {"row": 4, "field": "crew", "message": "must be a whole number >= 0, got 'three'"}
    ]
    assert "units.csv: row 4, field 'crew'" in body["error"]["message"]
    assert await snapshot(conn) == before
    # The audit trail says who tried, and which row was wrong.
    refused = await conn.fetchrow(
        "SELECT actor, outcome, status, target, detail FROM audit_log "
        "WHERE action = 'import.data' ORDER BY id DESC LIMIT 1"
    )
    assert (refused["actor"], refused["outcome"], refused["status"], refused["target"]) == (
        "admin",
        "failed",
        422,
        "import:units",
    )
    assert "units.csv: row 4, field 'crew'" in refused["detail"]["message"]

    geojson = await client.get("/api/export/units?format=geojson", headers=bearer(tokens["admin"]))
    assert geojson.status == 200
    assert geojson.content_type == "application/geo+json"
    text = await geojson.text()
    assert text == dump("units", await export_rows(conn, "units"), "geojson")
    response = await client.post(
        "/api/import/units",
        data=text,
        headers={**bearer(tokens["admin"]), "Content-Type": "application/geo+json"},
    )
    assert response.status == 201
    assert await snapshot(conn) == before

    csv_export = await client.get("/api/export/units?format=csv", headers=bearer(tokens["admin"]))
    assert (csv_export.status, csv_export.content_type) == (200, "text/csv")
    assert csv_export.headers["Content-Disposition"] == 'attachment; filename="units.csv"'


async def test_rest_import_is_for_admins(admin_client: tuple[TestClient[Any, Any], dict[str, str]]) -> None:
    client, tokens = admin_client
    for role in ("commander", "viewer", "field"):
        response = await client.post(
            "/api/import/units", data=UNITS, headers={**bearer(tokens[role]), "Content-Type": "text/csv"}
        )
        assert response.status == 403, role
        assert (await client.get("/api/export/units", headers=bearer(tokens[role]))).status == 403
    response = await client.post("/api/import/units", data=UNITS, headers={"Content-Type": "text/csv"})
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthorized"


async def test_rest_refuses_what_it_cannot_read(
    admin_client: tuple[TestClient[Any, Any], dict[str, str]],
) -> None:
    client, tokens = admin_client
    admin = bearer(tokens["admin"])
    response = await client.post(
        "/api/import/units", data=UNITS, headers={**admin, "Content-Type": "text/plain"}
    )
    assert response.status == 415
    response = await client.post(
        "/api/import/bogus", data=UNITS, headers={**admin, "Content-Type": "text/csv"}
    )
    assert response.status == 404
    # Roads are imported over HTTP too, but only from a file that says it is OpenStreetMap.
    response = await client.post(
        "/api/import/roads", data="<osm/>", headers={**admin, "Content-Type": "text/csv"}
    )
    assert response.status == 400
    assert "?filename=city.osm.pbf" in (await response.json())["error"]["message"]
    assert (await client.get("/api/export/units?format=xlsx", headers=admin)).status == 400
    response = await client.post(
        "/api/import/units", data=b"id,callsign\n\xff\n", headers={**admin, "Content-Type": "text/csv"}
    )
    assert response.status == 422
    assert (await response.json())["error"]["rows"] == [
        {"row": None, "field": None, "message": "is not UTF-8 text (bad byte at offset 12)"}
    ]
    # Over 1 MiB (the app's general limit) is fine; over MAX_BODY is not.
    big = UNITS + "".join(f"U-{n},E{n},t,,,,,,,\n" for n in range(3, 60_000))
    assert 1024 * 1024 < len(big) < MAX_BODY
    response = await client.post("/api/import/units", data=big, headers={**admin, "Content-Type": "text/csv"})
    assert response.status == 201, await response.text()
    response = await client.post(
        "/api/import/units", data=b"x" * (MAX_BODY + 1), headers={**admin, "Content-Type": "text/csv"}
    )
    assert response.status == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit holds while reading
        for _ in range(21):
            yield b"x" * (1024 * 1024)

    response = await client.post(
        "/api/import/units", data=chunks(), headers={**admin, "Content-Type": "text/csv"}
    )
    assert response.status == 413


async def test_rest_import_through_the_real_app(database_url: str, mqtt_url: str) -> None:
    tokens = await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings) as app, aiohttp.ClientSession() as session:
        # command/app.py wires add_admin_routes: without it this fails, it is not skipped.
        routes = {r.canonical for r in app.router.resources()}
        assert {"/api/import/{kind}", "/api/export/{kind}"} <= routes, sorted(routes)
        url = f"http://{settings.http_host}:{settings.http_port}/api/import/units"
        headers = {**bearer(tokens["admin"]), "Content-Type": "text/csv"}
        async with session.post(url, data=UNITS, headers=headers) as response:
            assert response.status == 201
            assert await response.json() == {"imported": 2}
        async with session.post(
            url, data=UNITS, headers={**headers, **bearer(tokens["commander"])}
        ) as response:
            assert response.status == 403


# --- roads from OpenStreetMap -------------------------------------------------------------


def _have(tool: str) -> bool:
    """Whether ``tool`` is installed; under CI (``$CI`` set) a missing tool fails the test.

    `make install` (tools/install.sh) installs osm2pgrouting and osmium, so in CI
    their absence is a broken setup that must not pass as skipped road tests.
    """
    if shutil.which(tool) is not None:
        return True
    if os.environ.get("CI"):
        pytest.fail(f"{tool} is not installed (`make install` installs it); under CI a missing tool fails")
    return False


def _require(tool: str) -> None:
    if not _have(tool):
        pytest.skip(
            f"{tool} not installed (`make install` installs it); skipped outside CI only, fails with $CI set"
        )


@pytest.fixture
def osm2pgrouting() -> None:
    _require("osm2pgrouting")


@pytest.fixture
def osmium() -> None:
    _require("osmium")


needs_osm2pgrouting = pytest.mark.usefixtures("osm2pgrouting")
needs_osmium = pytest.mark.usefixtures("osmium")


async def roads(conn: asyncpg.Connection) -> list[tuple[Any, ...]]:
    rows = await conn.fetch(
        """SELECT id, name, source, target, round(length_m) AS length_m, speed_kmh, oneway, reverse_cost_s,
                  ST_AsText(geom) AS geom FROM roads ORDER BY id"""
    )
    return [tuple(r) for r in rows]


@needs_osm2pgrouting
async def test_roads_from_osm_replace_the_network(conn: asyncpg.Connection, database_url: str) -> None:
    await seed_demo(conn, build_city())
    assert await import_roads(conn, database_url, OSM) == 4
    by_name = {r[1]: r for r in await roads(conn)}
    assert sorted(by_name) == ["Bridge Street", "Canal Lane", "Lake Road"]  # the footway is not for cars
    assert await conn.fetchval("SELECT count(*) FROM roads") == 4  # Lake Road split where Bridge Street joins
    lake = [r for r in await roads(conn) if r[1] == "Lake Road"]
    assert [(r[2], r[3], r[5], r[6]) for r in lake] == [
        (1, 2, 40.0, False),
        (2, 3, 40.0, False),
    ]  # maxspeed=40
    # oneway=yes: n2 -> n4 only; primary road's default speed from the car profile.
    bridge = by_name["Bridge Street"]
    assert (bridge[2], bridge[3], bridge[5], bridge[6], bridge[7]) == (2, 4, 90.0, True, -1.0)
    # oneway=-1 on a way drawn n5 -> n4: stored as n4 -> n5, geometry reversed to match.
    canal = by_name["Canal Lane"]
    assert (canal[2], canal[3], canal[6], canal[8]) == (
        4,
        5,
        True,
        "LINESTRING(120.15 30.266,120.154 30.266)",
    )
    # pgRouting drives the imported graph the right way down one-way streets:
    # n2 -> n4 over Bridge Street, but nothing leads back from n4 (Canal Lane
    # only leaves it, and the footway n3 - n5 is not for cars).
    edges = "SELECT id, source, target, cost_s AS cost, reverse_cost_s AS reverse_cost FROM roads"
    cost = "SELECT agg_cost FROM pgr_dijkstraCost($1, $2::bigint, $3::bigint, true)"
    assert await conn.fetchval(cost, edges, 2, 4) == pytest.approx(443.4 / (90 / 3.6), rel=1e-3)
    assert await conn.fetchval(cost, edges, 4, 2) is None
    assert await conn.fetchval(cost, edges, 1, 5) == pytest.approx(
        384.9 / (40 / 3.6) + 443.4 / 25 + 384.9 / 25, rel=1e-3
    )
    first = await roads(conn)
    # Re-importing changes nothing, and the staging schema is gone.
    assert await import_roads(conn, database_url, OSM) == 4
    assert await roads(conn) == first
    assert await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'osm_import_%'") == 0
    assert await conn.fetchval("SELECT nextval(pg_get_serial_sequence('roads', 'id'))") == 5


@needs_osm2pgrouting
async def test_a_bad_osm_file_leaves_the_roads_alone(
    conn: asyncpg.Connection, database_url: str, tmp_path: Path
) -> None:
    await seed_demo(conn, build_city())
    before = await roads(conn)
    broken = tmp_path / "broken.osm"
    broken.write_text("<osm><way")
    with pytest.raises(RoadImportError, match="osm2pgrouting failed"):
        await import_roads(conn, database_url, broken)
    footpaths = tmp_path / "footpaths.osm"
    footpaths.write_text(
        OSM.read_text()
        .replace('v="residential"', 'v="footway"')
        .replace('v="primary"', 'v="footway"')
        .replace('v="tertiary"', 'v="footway"')
    )
    with pytest.raises(RoadImportError, match="no drivable roads"):
        await import_roads(conn, database_url, footpaths)
    with pytest.raises(RoadImportError, match=r"\.osm or \.osm\.pbf"):
        await import_roads(conn, database_url, tmp_path / "roads.geojson")
    assert await roads(conn) == before
    assert await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'osm_import_%'") == 0


@needs_osm2pgrouting
@needs_osmium
async def test_roads_from_pbf_through_the_cli(
    conn: asyncpg.Connection, database_url: str, tmp_path: Path
) -> None:
    pbf = tmp_path / "tiny_city.osm.pbf"
    await asyncio.to_thread(subprocess.run, ["osmium", "cat", str(OSM), "-o", str(pbf)], check=True)
    done = await asyncio.to_thread(emergency, cli_env(database_url, tmp_path), "import", "roads", str(pbf))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"imported 4 road edges from {pbf} (the road network was replaced)"
    assert await conn.fetchval("SELECT count(*) FROM roads") == 4
    # stderr is a pipe: one plain line per step, in order, no bar.
    assert done.stderr.splitlines() == [
        "roads: step 1 of 3: converting tiny_city.osm.pbf to OSM XML (osmium)",
        "roads: step 2 of 3: building the routable graph from tiny_city.osm.pbf (osm2pgrouting)",
        "roads: step 3 of 3: replacing the road network in one transaction",
    ]


@needs_osm2pgrouting
async def test_road_import_steps_and_export_through_the_cli(
    conn: asyncpg.Connection, database_url: str, tmp_path: Path
) -> None:
    env = cli_env(database_url, tmp_path)
    done = await asyncio.to_thread(emergency, env, "import", "roads", str(OSM))
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "roads: step 1 of 2: building the routable graph from tiny_city.osm (osm2pgrouting)",
        "roads: step 2 of 2: replacing the road network in one transaction",
    ]
    # A failed import stops at the step that failed.
    broken = tmp_path / "broken.osm"
    broken.write_text("<osm><way")
    failed = await asyncio.to_thread(emergency, env, "import", "roads", str(broken))
    assert failed.returncode == 1
    lines = failed.stderr.splitlines()
    assert lines[0] == "roads: step 1 of 2: building the routable graph from broken.osm (osm2pgrouting)"
    assert lines[1].startswith("emergency import roads: osm2pgrouting failed")
    assert await conn.fetchval("SELECT count(*) FROM roads") == 4
    # Both are in the audit log, as the operating-system user who ran them.
    ok, bad = await cli_audit(conn)
    assert (ok["actor"], ok["target"], ok["outcome"]) == (f"cli:{getpass.getuser()}", "import:roads", "ok")
    assert (ok["detail"]["file"], ok["detail"]["rows"]) == (str(OSM), 4)
    assert (bad["target"], bad["outcome"], bad["detail"]["file"]) == ("import:roads", "failed", str(broken))
    assert bad["detail"]["error"].startswith("emergency import roads: osm2pgrouting failed")

    out = tmp_path / "roads.geojson"
    exported = await asyncio.to_thread(emergency, env, "export", "roads", str(out))
    assert exported.returncode == 0, exported.stderr
    assert exported.stderr.strip() == f"exported 4 road edges to {out}"
    assert json.loads(out.read_text()) == await expected_road_geojson(conn)
    assert not out.with_name("roads.geojson.partial").exists()
    stdout = await asyncio.to_thread(emergency, env, "export", "roads", "-", "--format", "geojson")
    assert stdout.returncode == 0, stdout.stderr
    assert stdout.stdout == out.read_text()
    as_csv = await asyncio.to_thread(emergency, env, "export", "roads", str(tmp_path / "roads.csv"))
    assert as_csv.returncode == 1
    assert "roads are exported as GeoJSON only" in as_csv.stderr


async def expected_road_geojson(conn: asyncpg.Connection) -> dict[str, Any]:
    """The road table as the export should render it, built independently of the export's SQL."""
    rows = await conn.fetch(
        """SELECT id, name, source, target, length_m, speed_kmh, oneway, ST_AsGeoJSON(geom, 7) AS geom
           FROM roads ORDER BY id"""
    )
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "id": r["id"],
                "geometry": json.loads(r["geom"]),
                "properties": {
                    "id": r["id"],
                    "name": r["name"],
                    "source": r["source"],
                    "target": r["target"],
                    "length_m": round(r["length_m"], 1),
                    "speed_kmh": r["speed_kmh"],
                    "oneway": r["oneway"],
                },
            }
            for r in rows
        ],
    }


def upload_folders() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("emergency-roads-upload-*"))


@needs_osm2pgrouting
async def test_rest_road_import_and_export(
    admin_client: tuple[TestClient[Any, Any], dict[str, str]],
    conn: asyncpg.Connection,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, tokens = admin_client
    admin = bearer(tokens["admin"])
    leftovers = upload_folders()
    await seed_demo(conn, build_city())
    demo_roads = await roads(conn)
    assert len(demo_roads) > 4

    # Non-admins may do neither.
    for role in ("commander", "viewer", "field"):
        response = await client.post(
            "/api/import/roads?filename=tiny_city.osm", data=OSM.read_bytes(), headers=bearer(tokens[role])
        )
        assert response.status == 403, role
        assert (await client.get("/api/export/roads", headers=bearer(tokens[role]))).status == 403, role
    response = await client.post("/api/import/roads?filename=tiny_city.osm", data=OSM.read_bytes())
    assert response.status == 401

    # What is wrong with a request is said, and the demo network stays.
    async def refused(
        status: int, path: str, data: bytes | str | AsyncIterator[bytes], **headers: str
    ) -> str:
        response = await client.post(path, data=data, headers={**admin, **headers})
        assert response.status == status, await response.text()
        body = await response.json()
        assert await roads(conn) == demo_roads
        message: str = body["error"]["message"]
        return message

    assert "'roads.geojson': roads come from OpenStreetMap files" in await refused(
        400, "/api/import/roads?filename=roads.geojson", OSM.read_bytes()
    )
    assert "format=pbf but the file is named 'tiny_city.osm'" in await refused(
        400, "/api/import/roads?filename=tiny_city.osm&format=pbf", OSM.read_bytes()
    )
    assert "tiny_city.osm: the file is empty" in await refused(
        400, "/api/import/roads?filename=tiny_city.osm", b""
    )
    broken = await refused(
        400, "/api/import/roads", b"<osm><way", **{"Content-Disposition": 'attachment; filename="broken.osm"'}
    )
    assert broken.startswith("nothing imported, the road network is unchanged: osm2pgrouting failed")
    footpaths = (
        OSM.read_text().replace('v="residential"', 'v="footway"').replace('v="primary"', 'v="footway"')
    )
    footpaths = footpaths.replace('v="tertiary"', 'v="footway"')
    assert "footpaths.osm: no drivable roads" in await refused(
        400, "/api/import/roads?filename=footpaths.osm", footpaths
    )
    assert "at most" in await refused(413, "/api/import/roads?format=osm", b" " * (ROAD_CAP + 1))

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the cap holds while streaming
        for _ in range(ROAD_CAP // 1024 + 1):
            yield b" " * 1024

    assert "at most" in await refused(413, "/api/import/roads?format=osm", chunks())
    async with client.app[ROAD_IMPORT_LOCK]:  # another road import is running
        assert "a road import is running" in await refused(
            409, "/api/import/roads?format=osm", OSM.read_bytes()
        )

    # A raw body named by ?filename: the network is replaced, as by the CLI.
    with caplog.at_level(logging.INFO, logger="command.admin_api"):
        response = await client.post(
            "/api/import/roads?filename=tiny_city.osm", data=OSM.read_bytes(), headers=admin
        )
    assert response.status == 201, await response.text()
    assert await response.json() == {"imported": 4, "vertices": 5}
    imported = await roads(conn)
    assert sorted({r[1] for r in imported}) == ["Bridge Street", "Canal Lane", "Lake Road"]
    audit = [r.getMessage() for r in caplog.records if r.name == "command.admin_api"]
    assert f"admin started a road import from tiny_city.osm ({OSM.stat().st_size} bytes)" in audit
    assert (
        f"admin imported 4 road edges (5 vertices) from tiny_city.osm ({OSM.stat().st_size} bytes): "
        "the road network was replaced"
    ) in audit
    # Refusals are logged too, each on one line, naming who and which file.
    refusals = [m for m in audit if m.startswith("admin: road import from broken.osm refused:")]
    assert len(refusals) == 1 and "\n" not in refusals[0], refusals
    assert "osm2pgrouting failed" in refusals[0]
    # A multipart upload (as a browser form sends it) of the same file changes nothing.
    form = aiohttp.FormData()
    form.add_field("file", OSM.read_bytes(), filename="tiny_city.osm", content_type="application/xml")
    response = await client.post("/api/import/roads", data=form, headers=admin)
    assert response.status == 201, await response.text()
    assert await roads(conn) == imported
    if _have("osmium"):  # the .pbf path too, where osmium is installed (always under CI)
        pbf = tmp_path / "tiny_city.osm.pbf"
        await asyncio.to_thread(subprocess.run, ["osmium", "cat", str(OSM), "-o", str(pbf)], check=True)
        form = aiohttp.FormData()
        form.add_field("file", pbf.read_bytes(), filename="tiny_city.osm.pbf")
        response = await client.post("/api/import/roads", data=form, headers=admin)
        assert response.status == 201, await response.text()
        assert await roads(conn) == imported
    # Every upload's folder is gone, whatever the outcome.
    assert upload_folders() <= leftovers

    response = await client.get("/api/export/roads", headers=admin)
    assert response.status == 200
    assert response.content_type == "application/geo+json"
    assert response.headers["Content-Disposition"] == 'attachment; filename="roads.geojson"'
    assert json.loads(await response.text()) == await expected_road_geojson(conn)
    assert (await client.get("/api/export/roads?format=csv", headers=admin)).status == 400


@needs_osm2pgrouting
async def test_rest_road_import_through_the_real_app(
    database_url: str, mqtt_url: str, tmp_path: Path
) -> None:
    tokens = await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    # Over the app's general 1 MiB request limit: a road upload is streamed to disk, not read whole.
    text = OSM.read_text()
    padded = text.replace("</osm>", "<!-- " + "x" * (2 * 1024 * 1024) + " -->\n</osm>")
    assert padded != text and len(padded) > 2 * 1024 * 1024
    async with running_server(settings), aiohttp.ClientSession() as session:
        url = f"http://{settings.http_host}:{settings.http_port}/api/import/roads?filename=city.osm"
        async with session.post(url, data=padded.encode(), headers=bearer(tokens["admin"])) as response:
            assert response.status == 201, await response.text()
            assert await response.json() == {"imported": 4, "vertices": 5}
        async with session.post(url, data=padded.encode(), headers=bearer(tokens["commander"])) as response:
            assert response.status == 403
        export = f"http://{settings.http_host}:{settings.http_port}/api/export/roads"
        async with session.get(export, headers=bearer(tokens["admin"])) as response:
            assert response.status == 200
            assert len((await response.json(content_type=None))["features"]) == 4


@needs_osm2pgrouting
async def test_road_import_shows_a_bar_on_a_terminal(
    conn: asyncpg.Connection, database_url: str, tmp_path: Path
) -> None:
    def run_on_a_terminal() -> tuple[int, str]:
        leader, follower = pty.openpty()
        # A real terminal has a size; a fresh pty has 0 columns, in which tqdm draws nothing.
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", HARNESS, "import", "roads", str(OSM)],
                env=cli_env(database_url, tmp_path),
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=follower,
            )
            os.close(follower)
            output = b""
            while True:
                try:
                    data = os.read(leader, 4096)
                except OSError:  # EIO: the terminal's other side closed
                    break
                if not data:
                    break
                output += data
            return proc.wait(timeout=60), output.decode(errors="replace")
        finally:
            os.close(leader)

    status, stderr = await asyncio.to_thread(run_on_a_terminal)
    assert status == 0, stderr
    assert "import roads: osm2pgrouting:   0%" in stderr and "0/2 steps done" in stderr
    assert "import roads: loading:  50%" in stderr and "1/2 steps done" in stderr
    assert "roads: step" not in stderr  # no plain lines on a terminal
    assert await conn.fetchval("SELECT count(*) FROM roads") == 4
