"""asyncpg pool set-up: PostGIS and JSON codecs, and a bounded close.

Geometry crosses the boundary as shapely objects (EWKB in binary), so no
module above this one ever sees WKB or a geometry string.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import asyncpg
import shapely
from shapely.geometry.base import BaseGeometry

log = logging.getLogger(__name__)

SRID = 4326


def _encode_geometry(geometry: Any) -> bytes:
    if not isinstance(geometry, BaseGeometry):
        raise TypeError(f"expected a shapely geometry, got {type(geometry).__name__}")
    return bytes(shapely.to_wkb(shapely.set_srid(geometry, SRID), include_srid=True))


def _decode_geometry(wkb: bytes) -> BaseGeometry:
    return shapely.from_wkb(wkb)


async def register_codecs(conn: asyncpg.Connection) -> None:
    """Teach a connection shapely geometries and JSON (needs the postgis extension)."""
    await conn.set_type_codec("geometry", encoder=_encode_geometry, decoder=_decode_geometry, format="binary")
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _init_connection(conn: asyncpg.Connection) -> None:
    await register_codecs(conn)
    # We acknowledge an alarm to the broker once its transaction commits; an
    # asynchronous commit could still be lost in a database crash after that
    # acknowledgement. So whatever the server's default, ours are synchronous.
    await conn.execute("SET synchronous_commit = on")


async def create_pool(url: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections carry our codecs and commit synchronously."""
    pool = await asyncpg.create_pool(
        url, min_size=min_size, max_size=max_size, init=_init_connection, command_timeout=60
    )
    assert pool is not None
    return pool


async def close_pool(pool: asyncpg.Pool, timeout: float = 10.0) -> None:
    """Close gracefully; past ``timeout`` terminate, so shutdown is bounded."""
    try:
        await asyncio.wait_for(pool.close(), timeout)
    except TimeoutError:
        log.warning("database pool did not close in %.0f s; terminating connections", timeout)
        pool.terminate()
