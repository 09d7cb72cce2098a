"""Load the synthetic demo city into PostgreSQL (I/O adapter).

Geometry parameters are shapely objects: the connection must carry the
PostGIS codec from ``command.db.register_codecs``.
"""

from __future__ import annotations

import json
import logging

import asyncpg

from command.demo_city import City

log = logging.getLogger(__name__)

# Any 64-bit constant will do; it only has to be the same for every seeder.
_SEED_LOCK_KEY = 0x656D_6572_6465_6D6F  # "emerdemo"

TABLES: tuple[str, ...] = (
    "districts",
    "roads",
    "units",
    "depots",
    "stock",
    "hazards",
    "sites",
    "sensors",
)


async def seed_demo(conn: asyncpg.Connection, city: City) -> dict[str, int]:
    """Insert the demo city in one transaction, unless it is already there.

    Idempotent: when every district of ``city`` already exists nothing is
    inserted and every count is zero, so re-running ``make demo`` reuses the
    data (and whatever state the previous demo left in it).

    Args:
        conn: a connection with the geometry codec registered (inside an
            outer transaction this one becomes a savepoint).
        city: what to insert, usually ``build_city()``.

    Returns:
        Rows inserted per table, keyed by table name (see ``TABLES``).

    Raises:
        RuntimeError: only some of the city's districts exist, which means
            the database holds a different or half-loaded city; refusing is
            safer than mixing two cities.
        asyncpg.PostgresError: the insert failed; nothing was written.
    """
    counts = dict.fromkeys(TABLES, 0)
    district_ids = [d.id for d in city.districts]
    async with conn.transaction():
        # Two seeders started at once (two `make demo`s) would both see an
        # empty table and the second would fail on a primary key; the lock
        # makes the second one wait and then find the data.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _SEED_LOCK_KEY)
        existing = await conn.fetchval(
            "SELECT count(*) FROM districts WHERE id = ANY($1::text[])", district_ids
        )
        if existing == len(district_ids):
            log.info("demo city already loaded (%d districts); nothing to seed", existing)
            return counts
        if existing:
            raise RuntimeError(
                f"{existing} of the {len(district_ids)} demo districts exist already: "
                "the database holds a partial or different city"
            )

        await conn.executemany(
            "INSERT INTO districts (id, name, name_zh, geom) VALUES ($1, $2, $3, $4)",
            [(d.id, d.name, d.name_zh, d.geom) for d in city.districts],
        )
        # cost_s and reverse_cost_s are generated columns: never inserted.
        await conn.executemany(
            """
            INSERT INTO roads (name, source, target, length_m, speed_kmh, oneway, geom)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            """,
            [(r.name, r.source, r.target, r.length_m, r.speed_kmh, r.oneway, r.geom) for r in city.roads],
        )
        # Units start parked at home, available, with a fresh position fix.
        await conn.executemany(
            """
            INSERT INTO units (id, callsign, type, capabilities, crew, station, home,
                               district_id, status, position, position_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'available', $7, now())
            """,
            [
                (u.id, u.callsign, u.type, list(u.capabilities), u.crew, u.station, u.home, u.district_id)
                for u in city.units
            ],
        )
        await conn.executemany(
            "INSERT INTO depots (id, name, location, district_id) VALUES ($1, $2, $3, $4)",
            [(d.id, d.name, d.location, d.district_id) for d in city.depots],
        )
        # quantity goes in as bigint and is cast by the server, so the
        # parameter does not depend on how the numeric codec takes ints.
        await conn.executemany(
            """
            INSERT INTO stock (depot_id, item, quantity, unit, expires_on)
            VALUES ($1, $2, $3::bigint, $4, $5)
            """,
            [(s.depot_id, s.item, s.quantity, s.unit, s.expires_on) for s in city.stock],
        )
        # attrs crosses as text and is cast, so this works whether or not a
        # jsonb codec is registered on the connection.
        await conn.executemany(
            """
            INSERT INTO hazards (id, kind, name, geom, attrs)
            VALUES ($1, $2, $3, $4, $5::text::jsonb)
            """,
            [
                (h.id, h.kind, h.name, h.geom, json.dumps(dict(h.attrs), ensure_ascii=False))
                for h in city.hazards
            ],
        )
        await conn.executemany(
            """
            INSERT INTO sites (id, kind, name, geom, capacity, beds)
            VALUES ($1, $2, $3, $4, $5, $6)
            """,
            [(s.id, s.kind, s.name, s.geom, s.capacity, s.beds) for s in city.sites],
        )
        await conn.executemany(
            """
            INSERT INTO sensors (id, kind, name, district_id, location)
            VALUES ($1, $2, $3, $4, $5)
            """,
            [(s.id, s.kind, s.name, s.district_id, s.location) for s in city.sensors],
        )

    counts.update(
        districts=len(city.districts),
        roads=len(city.roads),
        units=len(city.units),
        depots=len(city.depots),
        stock=len(city.stock),
        hazards=len(city.hazards),
        sites=len(city.sites),
        sensors=len(city.sensors),
    )
    log.info("seeded demo city: %s", counts)
    return counts
