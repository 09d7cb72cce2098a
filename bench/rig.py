"""Private services for one benchmark run, in a temporary folder removed at the end.

One durable PostgreSQL cluster (fsync and synchronous commit on, as in
production) for the whole run, with a migrated template database holding the
ingest's sensor fleet (or nothing, for the geolocation benchmark); every
scenario gets a fresh database cloned from it. Every scenario also gets a
fresh Mosquitto in a folder of its own, so no session, queue or persistence
file of one scenario weighs on the next.

The services are command/services.py's, the very ones ``emergency up`` runs.
Their calls block, so they run in threads. The chaos run (chaos/rig.py)
builds its rig on the same pieces: :class:`Services` and :func:`cluster`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol, TypeVar

import asyncpg
from shapely.geometry import Point

from bench.fleet import build_fleet
from command import db
from command.migrations import migrate
from command.services import EmbeddedMosquitto, EmbeddedPostgres

TEMPLATE = "bench_template"

# A sensor to register in the template: id, kind, name, longitude, latitude.
SensorRow = tuple[str, str, str, float, float]
Stoppers = list[Callable[[], None]]


class Service(Protocol):
    """A service with blocking start and stop calls (a broker)."""

    def start(self) -> object: ...

    def stop(self) -> None: ...


ServiceT = TypeVar("ServiceT", bound=Service)


def _make_run_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    # When we are root the services run as the postgres and mosquitto accounts, which must enter it.
    path.chmod(0o755)
    return path


class Services:
    """The run's folder and PostgreSQL cluster; databases and started services per scenario.

    Args:
        stoppers: where a started service's ``stop`` is registered until it is
            stopped (chaos's process registry, which sweeps whatever a failure left).
    """

    database_prefix = "b"

    def __init__(self, directory: Path, pg: EmbeddedPostgres, stoppers: Stoppers | None = None) -> None:
        self.directory = directory
        self.pg = pg
        self._stoppers = stoppers
        self._databases = itertools.count(1)
        self._brokers = itertools.count(1)

    def log_path(self, name: str) -> Path:
        return self.directory / "logs" / f"{name}.log"

    async def fresh_database(self, name: str) -> str:
        """A new database cloned from the template (schema and sensor fleet). Returns its URL."""
        dbname = f"{self.database_prefix}{next(self._databases):02d}_{name}".replace("-", "_")
        return await asyncio.to_thread(self.pg.create_database, dbname, TEMPLATE)

    def broker_dir(self, name: str) -> Path:
        """A new folder for one broker: nothing of another scenario's broker is in it."""
        return self.directory / f"mq{next(self._brokers):02d}-{name}"

    @asynccontextmanager
    async def running(self, service: ServiceT) -> AsyncIterator[ServiceT]:
        """``service`` started, and stopped when the block ends, however it ends."""
        if self._stoppers is not None:
            self._stoppers.append(service.stop)
        try:
            await asyncio.to_thread(service.start)
            yield service
        finally:
            await asyncio.to_thread(service.stop)
            if self._stoppers is not None:
                with contextlib.suppress(ValueError):
                    self._stoppers.remove(service.stop)


class Rig(Services):
    """The benchmark's services: brokers with the shipped configuration but for the save policy."""

    @asynccontextmanager
    async def broker(self, name: str, *, save_every_change: bool) -> AsyncIterator[EmbeddedMosquitto]:
        """A new Mosquitto with the shipped configuration but for the save policy."""
        broker = EmbeddedMosquitto(self.broker_dir(name), save_every_change=save_every_change)
        async with self.running(broker):
            yield broker


async def _build_template(pg: EmbeddedPostgres, sensors: Sequence[SensorRow]) -> None:
    url = await asyncio.to_thread(pg.create_database, TEMPLATE)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        if not sensors:
            return
        await db.register_codecs(conn)
        await conn.executemany(
            "INSERT INTO sensors (id, kind, name, location) VALUES ($1, $2, $3, $4)",
            [(id_, kind, name, Point(lon, lat)) for id_, kind, name, lon, lat in sensors],
        )
    finally:
        await conn.close()


@asynccontextmanager
async def cluster(
    prefix: str, sensors: Sequence[SensorRow], *, keep: bool, stoppers: Stoppers | None = None
) -> AsyncIterator[tuple[Path, EmbeddedPostgres]]:
    """A run folder and a durable PostgreSQL in it with the template; stopped and removed at the end.

    Args:
        prefix: the run folder's name starts with this.
        sensors: registered in the template (none: it is only migrated).
        keep: leave the run's folder (service data and logs) in place.
        stoppers: see :class:`Services`.
    """
    directory = await asyncio.to_thread(_make_run_dir, prefix)
    pg = EmbeddedPostgres(directory / "pg", durable=True)
    if stoppers is not None:
        stoppers.append(pg.stop)
    try:
        await asyncio.to_thread(pg.start)
        await _build_template(pg, sensors)
        yield directory, pg
    finally:
        await asyncio.to_thread(pg.stop)
        if stoppers is not None:
            with contextlib.suppress(ValueError):
                stoppers.remove(pg.stop)
        if not keep:
            await asyncio.to_thread(shutil.rmtree, directory, True)


@asynccontextmanager
async def rig(keep: bool = False, fleet: bool = True) -> AsyncIterator[Rig]:
    """Start the run's PostgreSQL and template; stop and remove everything at the end.

    Args:
        keep: leave the run's folder (service data and logs) in place.
        fleet: register the ingest benchmark's sensor fleet in the template
            (False: the template is only migrated).
    """
    sensors: list[SensorRow] = []
    if fleet:
        sensors = [(s.id, s.cluster.sensor_kind, s.cluster.name, s.lon, s.lat) for s in build_fleet()]
    async with cluster("emergency-bench-", sensors, keep=keep) as (directory, pg):
        yield Rig(directory, pg)
