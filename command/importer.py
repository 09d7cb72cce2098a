"""Store and read the city's data (I/O adapter for command/imports.py), and roads from OpenStreetMap.

Geometry crosses as shapely objects: the connection must carry the codec from
``command.db.register_codecs``. JSON crosses as text cast on the server, so
these statements work whether or not a JSON codec is registered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg

from command.imports import (
    MAX_ERRORS,
    SPECS,
    DepotRow,
    DistrictRow,
    HazardRow,
    InvalidRows,
    Origin,
    Row,
    RowError,
    SensorRow,
    SiteRow,
    StockRow,
    UnitRow,
)

log = logging.getLogger(__name__)

#: Called with (rows done, rows in all) after each chunk.
Progress = Callable[[int, int], None]

#: Rows per executemany; also how often progress is reported.
CHUNK = 500

#: Road speeds and which highways count: the car profile, since every unit drives.
CAR_MAPCONFIG = Path("/usr/share/osm2pgrouting/mapconfig_for_cars.xml")

# The district containing a point, for rows that do not name theirs. The
# lowest id wins on a shared border, so a re-import picks the same one.
_DISTRICT_OF = "(SELECT d.id FROM districts d WHERE ST_Intersects(d.geom, {p}) ORDER BY d.id LIMIT 1)"


@dataclass(frozen=True, slots=True)
class _Upsert:
    sql: str
    args: Callable[[Any], tuple[object, ...]]


# Every statement updates an existing row only when something differs, so
# re-importing the same file changes nothing, not even units.updated_at.
_UPSERTS: MappingProxyType[str, _Upsert] = MappingProxyType(
    {
        "districts": _Upsert(
            """
            INSERT INTO districts AS t (id, name, name_zh, geom) VALUES ($1, $2, $3, $4::geometry)
            ON CONFLICT (id) DO UPDATE SET
                name = EXCLUDED.name, name_zh = EXCLUDED.name_zh, geom = EXCLUDED.geom
            WHERE (t.name, t.name_zh, t.geom)
                  IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.name_zh, EXCLUDED.geom)
            """,
            lambda r: (r.id, r.name, r.name_zh, r.geom),
        ),
        # A new unit is parked at home, available unless the file says
        # otherwise; an existing one keeps its live position and, unless the
        # file gives one, its status.
        "units": _Upsert(
            f"""
            INSERT INTO units AS t (id, callsign, type, capabilities, crew, station, home, district_id,
                                    status, status_at, position, position_at)
            VALUES ($1, $2, $3, $4::text[], $5, $6, $7::geometry,
                    COALESCE($8::text, {_DISTRICT_OF.format(p="$7::geometry")}),
                    COALESCE($9::text, 'available'), CASE WHEN $9::text IS NULL THEN NULL ELSE now() END,
                    $7::geometry, CASE WHEN $7::geometry IS NULL THEN NULL ELSE now() END)
            ON CONFLICT (id) DO UPDATE SET
                callsign = EXCLUDED.callsign, type = EXCLUDED.type, capabilities = EXCLUDED.capabilities,
                crew = EXCLUDED.crew, station = EXCLUDED.station, home = EXCLUDED.home,
                district_id = EXCLUDED.district_id,
                status = COALESCE($9::text, t.status),
                status_at = CASE WHEN $9::text IS DISTINCT FROM t.status AND $9::text IS NOT NULL
                                 THEN now() ELSE t.status_at END,
                updated_at = now()
            WHERE (t.callsign, t.type, t.capabilities, t.crew, t.station, t.home, t.district_id, t.status)
                  IS DISTINCT FROM (EXCLUDED.callsign, EXCLUDED.type, EXCLUDED.capabilities, EXCLUDED.crew,
                                    EXCLUDED.station, EXCLUDED.home, EXCLUDED.district_id,
                                    COALESCE($9::text, t.status))
            """,
            lambda r: (
                r.id,
                r.callsign,
                r.type,
                list(r.capabilities),
                r.crew,
                r.station,
                r.home,
                r.district_id,
                r.status,
            ),
        ),
        "depots": _Upsert(
            f"""
            INSERT INTO depots AS t (id, name, location, district_id)
            VALUES ($1, $2, $3::geometry, COALESCE($4::text, {_DISTRICT_OF.format(p="$3::geometry")}))
            ON CONFLICT (id) DO UPDATE SET
                name = EXCLUDED.name, location = EXCLUDED.location, district_id = EXCLUDED.district_id
            WHERE (t.name, t.location, t.district_id)
                  IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.location, EXCLUDED.district_id)
            """,
            lambda r: (r.id, r.name, r.location, r.district_id),
        ),
        "stock": _Upsert(
            """
            INSERT INTO stock AS t (depot_id, item, quantity, unit, expires_on)
            VALUES ($1, $2, $3::numeric, $4, $5::date)
            ON CONFLICT (depot_id, item) DO UPDATE SET
                quantity = EXCLUDED.quantity, unit = EXCLUDED.unit, expires_on = EXCLUDED.expires_on
            WHERE (t.quantity, t.unit, t.expires_on)
                  IS DISTINCT FROM (EXCLUDED.quantity, EXCLUDED.unit, EXCLUDED.expires_on)
            """,
            lambda r: (r.depot_id, r.item, r.quantity, r.unit, r.expires_on),
        ),
        "hazards": _Upsert(
            """
            INSERT INTO hazards AS t (id, kind, name, geom, attrs)
            VALUES ($1, $2, $3, $4::geometry, $5::text::jsonb)
            ON CONFLICT (id) DO UPDATE SET
                kind = EXCLUDED.kind, name = EXCLUDED.name, geom = EXCLUDED.geom, attrs = EXCLUDED.attrs
            WHERE (t.kind, t.name, t.geom, t.attrs)
                  IS DISTINCT FROM (EXCLUDED.kind, EXCLUDED.name, EXCLUDED.geom, EXCLUDED.attrs)
            """,
            lambda r: (r.id, r.kind, r.name, r.geom, _json(r.attrs)),
        ),
        "sites": _Upsert(
            """
            INSERT INTO sites AS t (id, kind, name, geom, capacity, beds, attrs)
            VALUES ($1, $2, $3, $4::geometry, $5::integer, $6::integer, $7::text::jsonb)
            ON CONFLICT (id) DO UPDATE SET
                kind = EXCLUDED.kind, name = EXCLUDED.name, geom = EXCLUDED.geom,
                capacity = EXCLUDED.capacity, beds = EXCLUDED.beds, attrs = EXCLUDED.attrs
            WHERE (t.kind, t.name, t.geom, t.capacity, t.beds, t.attrs)
                  IS DISTINCT FROM (EXCLUDED.kind, EXCLUDED.name, EXCLUDED.geom,
                                    EXCLUDED.capacity, EXCLUDED.beds, EXCLUDED.attrs)
            """,
            lambda r: (r.id, r.kind, r.name, r.geom, r.capacity, r.beds, _json(r.attrs)),
        ),
        # heartbeat_s left out: 600 for a new sensor, unchanged for an existing one.
        "sensors": _Upsert(
            f"""
            INSERT INTO sensors AS t (id, kind, name, location, district_id, heartbeat_s)
            VALUES ($1, $2, $3, $4::geometry, COALESCE($5::text, {_DISTRICT_OF.format(p="$4::geometry")}),
                    COALESCE($6::integer, 600))
            ON CONFLICT (id) DO UPDATE SET
                kind = EXCLUDED.kind, name = EXCLUDED.name, location = EXCLUDED.location,
                district_id = EXCLUDED.district_id, heartbeat_s = COALESCE($6::integer, t.heartbeat_s)
            WHERE (t.kind, t.name, t.location, t.district_id, t.heartbeat_s)
                  IS DISTINCT FROM (EXCLUDED.kind, EXCLUDED.name, EXCLUDED.location, EXCLUDED.district_id,
                                    COALESCE($6::integer, t.heartbeat_s))
            """,
            lambda r: (r.id, r.kind, r.name, r.location, r.district_id, r.heartbeat_s),
        ),
    }
)


def _json(attrs: Any) -> str:
    return json.dumps(dict(attrs), ensure_ascii=False, sort_keys=True)


async def _missing_references(conn: asyncpg.Connection, kind: str, rows: Sequence[Row]) -> list[RowError]:
    """Rows naming a district (or, for stock, a depot) that does not exist."""
    if kind == "stock":
        table, field_name, hint = "depots", "depot_id", " (import depots first)"
    elif kind in ("units", "depots", "sensors"):
        table, field_name, hint = "districts", "district_id", " (import districts first, or leave it empty)"
    else:
        return []
    wanted = {getattr(r, field_name) for r in rows} - {None}
    if not wanted:
        return []
    # FOR KEY SHARE: a referenced row cannot vanish before our rows commit.
    found = {
        record["id"]
        for record in await conn.fetch(
            f"SELECT id FROM {table} WHERE id = ANY($1::text[]) FOR KEY SHARE", sorted(wanted)
        )
    }
    noun = table[:-1]
    return [
        r.origin.error(field_name, f"unknown {noun} {getattr(r, field_name)!r}{hint}")
        for r in rows
        if getattr(r, field_name) is not None and getattr(r, field_name) not in found
    ]


async def import_rows(
    conn: asyncpg.Connection, kind: str, rows: Sequence[Row], progress: Progress | None = None
) -> int:
    """Insert or update ``rows`` of ``kind`` in one transaction: all of them, or none.

    Rows are matched on their key (``id``; ``depot_id`` and ``item`` for
    stock): a new key is inserted, an existing one updated, and a row equal to
    what is stored is left alone, so importing the same file twice changes
    nothing. Rows absent from the file are kept.

    Args:
        conn: a connection with the geometry codec (inside an outer
            transaction this one becomes a savepoint).
        kind: one of ``command.imports.KINDS``.
        rows: rows of that kind, from ``command.imports.parse``.
        progress: called with (done, total) after each chunk of ``CHUNK`` rows.

    Returns:
        How many rows the file had (all of them were stored).

    Raises:
        InvalidRows: a row names a district or depot that does not exist;
            nothing was written.
        ValueError: a row is not of ``kind`` (a programming error).
        asyncpg.PostgresError: the database refused a row; nothing was written.
    """
    upsert = _UPSERTS.get(kind)
    if upsert is None:
        raise ValueError(f"cannot import {kind!r}")
    row_type = SPECS[kind].row_type
    if not all(isinstance(r, row_type) for r in rows):
        raise ValueError(f"rows must all be {row_type.__name__}")
    total = len(rows)
    async with conn.transaction():
        errors = await _missing_references(conn, kind, rows)
        if errors:
            raise InvalidRows(errors[:MAX_ERRORS], truncated=len(errors) > MAX_ERRORS)
        for start in range(0, total, CHUNK):
            chunk = rows[start : start + CHUNK]
            await conn.executemany(upsert.sql, [upsert.args(r) for r in chunk])
            if progress is not None:
                progress(start + len(chunk), total)
    if progress is not None and total == 0:
        progress(0, 0)
    log.debug("imported %d %s", total, kind)
    return total


_EXPORTS: MappingProxyType[str, tuple[str, Callable[[Origin, asyncpg.Record], Row]]] = MappingProxyType(
    {
        "districts": (
            "SELECT id, name, name_zh, geom FROM districts ORDER BY id",
            lambda o, r: DistrictRow(o, r["id"], r["name"], r["name_zh"], r["geom"]),
        ),
        "units": (
            "SELECT id, callsign, type, capabilities, crew, station, district_id, status, home "
            "FROM units ORDER BY id",
            lambda o, r: UnitRow(
                o,
                r["id"],
                r["callsign"],
                r["type"],
                tuple(r["capabilities"]),
                r["crew"],
                r["station"],
                r["district_id"],
                r["status"],
                r["home"],
            ),
        ),
        "depots": (
            "SELECT id, name, district_id, location FROM depots ORDER BY id",
            lambda o, r: DepotRow(o, r["id"], r["name"], r["district_id"], r["location"]),
        ),
        "stock": (
            "SELECT depot_id, item, quantity, unit, expires_on FROM stock ORDER BY depot_id, item",
            lambda o, r: StockRow(o, r["depot_id"], r["item"], r["quantity"], r["unit"], r["expires_on"]),
        ),
        "hazards": (
            "SELECT id, kind, name, attrs::text AS attrs, geom FROM hazards ORDER BY id",
            lambda o, r: HazardRow(
                o, r["id"], r["kind"], r["name"], MappingProxyType(json.loads(r["attrs"])), r["geom"]
            ),
        ),
        "sites": (
            "SELECT id, kind, name, capacity, beds, attrs::text AS attrs, geom FROM sites ORDER BY id",
            lambda o, r: SiteRow(
                o,
                r["id"],
                r["kind"],
                r["name"],
                r["capacity"],
                r["beds"],
                MappingProxyType(json.loads(r["attrs"])),
                r["geom"],
            ),
        ),
        "sensors": (
            "SELECT id, kind, name, district_id, heartbeat_s, location FROM sensors ORDER BY id",
            lambda o, r: SensorRow(
                o, r["id"], r["kind"], r["name"], r["district_id"], r["heartbeat_s"], r["location"]
            ),
        ),
    }
)


async def export_rows(conn: asyncpg.Connection, kind: str) -> list[Row]:
    """Every row of ``kind``, in key order, as ``command.imports.dump`` writes them.

    Raises:
        ValueError: ``kind`` is not exportable.
    """
    export = _EXPORTS.get(kind)
    if export is None:
        raise ValueError(f"cannot export {kind!r}")
    sql, build = export
    return [build(Origin("database", n), record) for n, record in enumerate(await conn.fetch(sql), 1)]


# --- roads from OpenStreetMap ---------------------------------------------------


class RoadImportError(Exception):
    """The road network could not be imported; the stored one is unchanged."""


class RoadToolMissing(RoadImportError):
    """A tool the road import needs is not installed: the server's fault, not the file's."""


@dataclass(frozen=True, slots=True)
class RoadStage:
    """A step of a road import, reported as it starts.

    ``name`` is ``converting`` (``.osm.pbf`` only: osmium writes OSM XML),
    ``osm2pgrouting`` (building the routable graph) or ``loading`` (the one
    transaction that replaces the network); ``number`` counts from 1 to
    ``total`` (2 for ``.osm``, 3 for ``.osm.pbf``); ``detail`` says it in words.
    """

    name: str
    number: int
    total: int
    detail: str


#: Called with each stage of a road import as it starts.
RoadProgress = Callable[[RoadStage], None]


# osm2pgrouting splits OSM ways at intersections into ``ways``. one_way is 1
# (forward only), -1 (backward only: we reverse the edge so our ``oneway``,
# which means source -> target, holds), 2 or 0 (both ways). Vertex ids are
# the OSM node ids, which stay the same from one import to the next, and edge
# ids are numbered in a fixed order, so re-importing a file changes nothing.
_COPY_ROADS = """
WITH edges AS (
    SELECT w.osm_id, w.name, w.one_way, w.length_m, w.the_geom, w.source_osm, w.target_osm,
           NULLIF(CASE WHEN w.one_way = -1 THEN w.maxspeed_backward ELSE w.maxspeed_forward END, 0)
               AS maxspeed,
           NULLIF(c.maxspeed, 0) AS tag_default
    FROM {schema}.ways w LEFT JOIN {schema}.configuration c ON c.tag_id = w.tag_id
    WHERE w.length_m > 0 AND w.the_geom IS NOT NULL
      AND w.source_osm IS NOT NULL AND w.target_osm IS NOT NULL
), inserted AS (
    INSERT INTO roads (id, name, source, target, length_m, speed_kmh, oneway, geom)
    SELECT row_number() OVER (ORDER BY osm_id, source_osm, target_osm, ST_AsBinary(the_geom)),
           name,
           CASE WHEN one_way = -1 THEN target_osm ELSE source_osm END,
           CASE WHEN one_way = -1 THEN source_osm ELSE target_osm END,
           length_m,
           COALESCE(maxspeed, tag_default, 50),
           one_way IN (1, -1),
           CASE WHEN one_way = -1 THEN ST_Reverse(the_geom) ELSE the_geom END
    FROM edges
    RETURNING 1
)
SELECT count(*) FROM inserted
"""


def _pgpass_line(password: str) -> str:
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    return f"*:*:*:*:{escaped}\n"


def _osm2pgrouting_args(database_url: str, osm: Path, schema: str, mapconfig: Path | None) -> list[str]:
    parts = urlsplit(database_url)
    query = parse_qs(parts.query)
    host = parts.hostname or next(iter(query.get("host", [])), None)
    args = ["osm2pgrouting", "-f", str(osm), "--schema", schema, "-d", unquote(parts.path.lstrip("/"))]
    if mapconfig is not None:
        args += ["-c", str(mapconfig)]
    if parts.username:
        args += ["-U", unquote(parts.username)]
    if host:
        args += ["-h", host]
    if parts.port:
        args += ["-p", str(parts.port)]
    return args


async def _run(args: list[str], env: dict[str, str] | None = None) -> None:
    """Run a tool to completion; its output goes to the debug log, or into the error."""
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env
    )
    try:
        output, _ = await proc.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    text = output.decode(errors="replace")
    log.debug("%s said:\n%s", args[0], text)
    if proc.returncode != 0:
        tail = "\n".join(line for line in text.splitlines()[-8:] if line.strip())
        raise RoadImportError(f"{args[0]} failed (exit status {proc.returncode}):\n{tail}")


@dataclass(frozen=True, slots=True)
class _Plan:
    folder: Path  # private scratch folder, removed afterwards
    env: dict[str, str]  # the tools' environment, with the password file
    mapconfig: Path | None


def _plan(path: Path, database_url: str, mapconfig: Path | None) -> _Plan:
    """Check the file and the tools, and write a private password file (blocking: run in a thread)."""
    name = path.name.lower()
    if not name.endswith((".osm", ".osm.pbf")):
        raise RoadImportError(f"{path.name}: roads come from OpenStreetMap files (.osm or .osm.pbf)")
    if not path.is_file():
        raise RoadImportError(f"{path}: no such file")
    if shutil.which("osm2pgrouting") is None:
        raise RoadToolMissing("osm2pgrouting is not installed (Debian: apt-get install osm2pgrouting)")
    if name.endswith(".pbf") and shutil.which("osmium") is None:
        raise RoadToolMissing(
            f"{path.name}: reading .osm.pbf needs osmium (Debian: apt-get install osmium-tool); "
            "or convert it to .osm XML first"
        )
    if mapconfig is None and CAR_MAPCONFIG.is_file():
        mapconfig = CAR_MAPCONFIG
    folder = Path(tempfile.mkdtemp(prefix="emergency-roads-"))
    # The password goes in a 0600 file, never on a command line others can read.
    password = unquote(urlsplit(database_url).password or "")
    fd = os.open(folder / "pgpass", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(_pgpass_line(password))
    # osm2pgrouting always passes a password (empty when we give none), which
    # makes libpq ignore PGPASSWORD but still read the password file.
    env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
    env["PGPASSFILE"] = str(folder / "pgpass")
    return _Plan(folder, env, mapconfig)


async def import_roads(
    conn: asyncpg.Connection,
    database_url: str,
    path: Path,
    *,
    mapconfig: Path | None = None,
    progress: RoadProgress | None = None,
) -> int:
    """Replace the road network with the one in an OpenStreetMap file.

    ``osm2pgrouting`` loads the file into a private schema (it writes its own
    tables and holds its own connection); one transaction then replaces every
    row of ``roads`` with the routable edges, and the schema is dropped.
    The network is replaced, not merged: a road absent from the file is gone.

    Args:
        conn: a connection outside any transaction (the staging schema must be
            committed for osm2pgrouting's own connection to see it).
        database_url: where osm2pgrouting connects (the same database).
        path: an ``.osm`` XML file, or ``.osm.pbf`` (converted with osmium).
        mapconfig: osm2pgrouting's configuration; default the car profile.
        progress: called with each :class:`RoadStage` as it starts (the
            tools report no progress of their own that could be trusted, so
            the stages are what there is to show).

    Returns:
        How many road edges are stored.

    Raises:
        RoadToolMissing: osm2pgrouting (or, for ``.osm.pbf``, osmium) is not
            installed.
        RoadImportError: a tool failed, the file is not OSM, or it holds no
            drivable road; the stored network is unchanged.
    """
    if conn.is_in_transaction():
        raise RoadImportError("import roads outside a transaction: osm2pgrouting uses its own connection")
    plan = await asyncio.to_thread(_plan, path, database_url, mapconfig)
    schema = f"osm_import_{secrets.token_hex(6)}"
    pbf = path.name.lower().endswith(".pbf")
    stages = iter(range(1, 4 if pbf else 3))

    def stage(name: str, detail: str) -> None:
        started = RoadStage(name, next(stages), 3 if pbf else 2, detail)
        log.debug("road import, step %d of %d: %s", started.number, started.total, detail)
        if progress is not None:
            progress(started)

    try:
        osm = path
        if pbf:
            osm = plan.folder / "roads.osm"
            stage("converting", f"converting {path.name} to OSM XML (osmium)")
            # --no-progress: its output is captured for the error message, not shown.
            await _run(["osmium", "cat", "--no-progress", str(path), "-o", str(osm)])
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        try:
            stage("osm2pgrouting", f"building the routable graph from {path.name} (osm2pgrouting)")
            await _run(_osm2pgrouting_args(database_url, osm, schema, plan.mapconfig), plan.env)
            stage("loading", "replacing the road network in one transaction")
            async with conn.transaction():
                # Two road imports at once would mix networks: the second waits for the first.
                await conn.execute("LOCK TABLE roads IN EXCLUSIVE MODE")
                await conn.execute("DELETE FROM roads")
                count: int = await conn.fetchval(_COPY_ROADS.format(schema=f'"{schema}"'))
                if count == 0:
                    raise RoadImportError(
                        f"{path.name}: no drivable roads in the file; the network is unchanged"
                    )
                await conn.execute(
                    "SELECT setval(pg_get_serial_sequence('roads', 'id'), (SELECT max(id) FROM roads))"
                )
        finally:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await asyncio.to_thread(shutil.rmtree, plan.folder, True)
    log.debug("imported %d road edges from %s", count, path.name)
    return count


# One feature per edge, built by PostgreSQL: a city's network is hundreds of
# thousands of edges, streamed out a batch at a time rather than held whole.
_ROAD_FEATURES = """
SELECT json_build_object(
           'type', 'Feature', 'id', id,
           'geometry', ST_AsGeoJSON(geom, 7)::json,
           'properties', json_build_object(
               'id', id, 'name', name, 'source', source, 'target', target,
               'length_m', round(length_m::numeric, 1), 'speed_kmh', speed_kmh, 'oneway', oneway))::text
FROM roads ORDER BY id
"""

#: Edges per batch of a road export.
ROAD_EXPORT_BATCH = 2000


async def export_roads(conn: asyncpg.Connection) -> AsyncGenerator[str, None]:
    """The road network as GeoJSON text, in pieces: a ``FeatureCollection`` of
    ``LineString`` edges in id order, with ``id``, ``name``, ``source``,
    ``target`` (vertex ids: OSM node ids after an import), ``length_m``,
    ``speed_kmh`` and ``oneway`` (source -> target only).

    For reading and checking the graph; it does not import back (roads come
    from OpenStreetMap). One snapshot: the pieces come from one transaction,
    so a road import committing meanwhile is not half seen.
    """
    first = True
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        cursor = await conn.cursor(_ROAD_FEATURES)
        # Only once the query runs, so a caller can still answer its error.
        yield '{"type": "FeatureCollection", "features": [\n'
        while batch := await cursor.fetch(ROAD_EXPORT_BATCH):
            text = ",\n".join(r[0] for r in batch)
            yield text if first else ",\n" + text
            first = False
    yield "\n]}\n"
