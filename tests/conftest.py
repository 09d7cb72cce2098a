"""Shared fixtures: real PostgreSQL/PostGIS and Mosquitto, and test hygiene.

The servers are the same embedded instances ``emergency up`` runs
(command/services.py), started once per session on free ports in a temporary
folder, unless EMERGENCY_TEST_DATABASE_URL / EMERGENCY_TEST_MQTT_URL point at
existing ones. Each test gets its own database, cloned from a migrated
template, so tests cannot see each other's rows.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from command import db
from command.migrations import migrate
from command.services import EmbeddedMosquitto, EmbeddedPostgres
from tests.integration.helpers import AdminMosquitto, service_tempdir

TEMPLATE = "emergency_template"


class PostgresServer:
    """A cluster the tests may create databases in."""

    def __init__(self, admin_url: str, embedded: EmbeddedPostgres | None) -> None:
        self.admin_url = admin_url
        self.embedded = embedded

    def url_for(self, name: str) -> str:
        return self.admin_url.rsplit("/", 1)[0] + "/" + name

    async def create_database(self, name: str, template: str | None = None) -> str:
        conn = await asyncpg.connect(self.admin_url)
        try:
            tpl = f' TEMPLATE "{template}"' if template else ""
            await conn.execute(f'CREATE DATABASE "{name}"{tpl}')
        finally:
            await conn.close()
        return self.url_for(name)

    async def drop_database(self, name: str) -> None:
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture(scope="session")
def services_dir() -> Iterator[Path]:
    with service_tempdir("emergency-test-") as path:
        yield path


@pytest.fixture(scope="session")
def postgres_server(services_dir: Path) -> Iterator[PostgresServer]:
    configured = os.environ.get("EMERGENCY_TEST_DATABASE_URL")
    if configured:
        yield PostgresServer(configured, None)
        return
    pg = EmbeddedPostgres(services_dir / "pg", durable=False)
    url = pg.start()
    try:
        yield PostgresServer(url, pg)
    finally:
        pg.stop()


@pytest.fixture(scope="session")
def migrated_template(postgres_server: PostgresServer) -> str:
    async def build() -> None:
        await postgres_server.drop_database(TEMPLATE)
        url = await postgres_server.create_database(TEMPLATE)
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
        finally:
            await conn.close()

    asyncio.run(build())
    return TEMPLATE


@pytest.fixture
async def database_url(postgres_server: PostgresServer, migrated_template: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = await postgres_server.create_database(name, template=migrated_template)
    yield url
    await postgres_server.drop_database(name)


@pytest.fixture
async def empty_database_url(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """A fresh database with no schema at all."""
    name = f"e_{uuid.uuid4().hex[:12]}"
    url = await postgres_server.create_database(name)
    yield url
    await postgres_server.drop_database(name)


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    await db.register_codecs(connection)
    yield connection
    await connection.close()


@pytest.fixture(scope="session")
def mosquitto(services_dir: Path) -> Iterator[EmbeddedMosquitto | str]:
    """The broker: an embedded one (restartable by tests), or a configured URL.

    Both need logins; the URL (``mqtt_url``) carries an account allowed every
    topic, since tests play the server and the devices at once.
    """
    configured = os.environ.get("EMERGENCY_TEST_MQTT_URL")
    if configured:
        yield configured
        return
    broker = AdminMosquitto(
        services_dir / "mosquitto", save_every_change=os.environ.get("EMERGENCY_TEST_BROKER_SAVE") != "second"
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mqtt_url(mosquitto: EmbeddedMosquitto | str) -> str:
    return mosquitto if isinstance(mosquitto, str) else mosquitto.url
