"""Private services for one benchmark run, in a temporary folder removed at the end.

One durable PostgreSQL cluster (fsync and synchronous commit on, as in
production) for the whole run, with a migrated template database holding the
ingest's sensor fleet (or nothing, for the geolocation benchmark); every
scenario gets a fresh database cloned from it. Every scenario also gets a
fresh Mosquitto in a folder of its own, so no session, queue or persistence
file of one scenario weighs on the next.

The services are command/services.py's, the very ones ``emergency up`` runs.
Their calls block, so they run in threads.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from shapely.geometry import Point

from bench.fleet import build_fleet
from command import db
from command.migrations import migrate
from command.services import EmbeddedMosquitto, EmbeddedPostgres

TEMPLATE = "bench_template"


def _make_run_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="emergency-bench-"))
    # When we are root the services run as the postgres and mosquitto accounts.
    path.chmod(0o755)
    return path


class Rig:
    """The run's folder and PostgreSQL cluster; brokers and databases per scenario."""

    def __init__(self, directory: Path, pg: EmbeddedPostgres) -> None:
        self.directory = directory
        self.pg = pg
        self._databases = itertools.count(1)
        self._brokers = itertools.count(1)

    def log_path(self, name: str) -> Path:
        return self.directory / "logs" / f"{name}.log"

    async def fresh_database(self, name: str) -> str:
        """A new database cloned from the template (schema and sensor fleet). Returns its URL."""
        dbname = f"b{next(self._databases):02d}_{name}".replace("-", "_")
        return await asyncio.to_thread(self.pg.create_database, dbname, TEMPLATE)

    @asynccontextmanager
    async def broker(self, name: str, *, save_every_change: bool) -> AsyncIterator[EmbeddedMosquitto]:
        """A new Mosquitto with the shipped configuration but for the save policy."""
        broker = EmbeddedMosquitto(
            self.directory / f"mq{next(self._brokers):02d}-{name}", save_every_change=save_every_change
        )
        try:
            await asyncio.to_thread(broker.start)
            yield broker
        finally:
            await asyncio.to_thread(broker.stop)


async def _build_template(pg: EmbeddedPostgres, fleet: bool) -> None:
    url = await asyncio.to_thread(pg.create_database, TEMPLATE)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        if not fleet:
            return
        await db.register_codecs(conn)
        await conn.executemany(
            "INSERT INTO sensors (id, kind, name, location) VALUES ($1, $2, $3, $4)",
            [(s.id, s.cluster.sensor_kind, s.cluster.name, Point(s.lon, s.lat)) for s in build_fleet()],
        )
    finally:
        await conn.close()


@asynccontextmanager
async def rig(keep: bool = False, fleet: bool = True) -> AsyncIterator[Rig]:
    """Start the run's PostgreSQL and template; stop and remove everything at the end.

    Args:
        keep: leave the run's folder (service data and logs) in place.
        fleet: register the ingest benchmark's sensor fleet in the template
            (False: the template is only migrated).
    """
    directory = await asyncio.to_thread(_make_run_dir)
    pg = EmbeddedPostgres(directory / "pg", durable=True)
    try:
        await asyncio.to_thread(pg.start)
        await _build_template(pg, fleet)
        yield Rig(directory, pg)
    finally:
        await asyncio.to_thread(pg.stop)
        if not keep:
            await asyncio.to_thread(shutil.rmtree, directory, True)
