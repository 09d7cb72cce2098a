"""The server's database role can change rows but not the schema, nor the evidence."""

from __future__ import annotations

import stat
from pathlib import Path

import asyncpg
import pytest

from command import audit, db_roles
from command.keys import POOL
from tests.integration.helpers import running_server, settings_for
from tests.integration.security_world import app_role

REFUSED = (
    "DROP TRIGGER audit_log_append_only ON audit_log",
    "DROP TRIGGER incident_timeline_append_only ON incident_timeline",
    "ALTER TABLE audit_log DISABLE TRIGGER ALL",
    "ALTER TABLE incidents ADD COLUMN x integer",
    "UPDATE audit_log SET outcome = 'ok'",
    "DELETE FROM audit_log",
    "TRUNCATE audit_log",
    "DELETE FROM incident_timeline",
    "UPDATE incident_timeline SET actor = 'someone else'",
    "TRUNCATE incident_timeline",
    "DELETE FROM task_notes",
    "UPDATE dead_letters SET reason = ''",
    "DELETE FROM schema_migrations",
    "CREATE TABLE mine (id integer)",
    "CREATE SCHEMA mine",
    "DROP TABLE events",
    "DROP FUNCTION audit_log_guard() CASCADE",
    "CREATE OR REPLACE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'",
)


async def _timeline_row(conn: asyncpg.Connection) -> None:
    incident = await conn.fetchval(
        """INSERT INTO incidents (kind, category, severity, title, opened_at, updated_at)
           VALUES ('fire', 'accident', 'Minor', 't', now(), now()) RETURNING id"""
    )
    await conn.execute(
        "INSERT INTO incident_timeline (incident_id, at, actor, action) VALUES ($1, now(), 'x', 'status')",
        incident,
    )


async def test_the_servers_own_pool_cannot_touch_schema_or_evidence(database_url: str, mqtt_url: str) -> None:
    owner = await asyncpg.connect(database_url)
    try:
        await _timeline_row(owner)
    finally:
        await owner.close()
    async with app_role(database_url) as server_url:
        settings = settings_for(server_url, mqtt_url)
        async with running_server(settings) as app, app[POOL].acquire() as conn:
            # What it needs works: reading, appending evidence, changing rows.
            await audit.record(
                conn, action="test.append", outcome="ok", actor="t", role=None, address="local"
            )
            assert await conn.fetchval("SELECT count(*) FROM incident_timeline") == 1
            await conn.execute("UPDATE incidents SET title = 'renamed'")
            assert await audit.prune(conn, 400) == 0
            for statement in REFUSED:
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(statement)
            # Nothing younger than six months, whatever it asks.
            with pytest.raises(asyncpg.InvalidParameterValueError):
                await conn.fetchval("SELECT prune_audit_log(30)")
            # Setting the pruning flag by hand gives it nothing either.
            async with conn.transaction():
                await conn.execute("SELECT set_config('emergency.audit_prune', 'on', true)")
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute("DELETE FROM audit_log")
            assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'test.append'") == 1


async def test_even_the_owner_cannot_rewrite_the_audit_log_but_retention_prunes_it(
    conn: asyncpg.Connection,
) -> None:
    await audit.record(conn, action="test.recent", outcome="ok", actor="t", role=None, address="local")
    # An old row: the stamping trigger dates every insert now, so the test
    # (as the owner) steps around it to plant one.
    await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_stamp")
    await conn.execute(
        "INSERT INTO audit_log (at, action, outcome) VALUES (now() - interval '500 days', 'test.old', 'ok')"
    )
    await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_stamp")
    # A row cannot be back-dated by its writer.
    await conn.execute(
        "INSERT INTO audit_log (at, action, outcome) "
        "VALUES (now() - interval '900 days', 'test.forged', 'ok')"
    )
    assert await conn.fetchval(
        "SELECT at > now() - interval '1 minute' FROM audit_log WHERE action = 'test.forged'"
    )
    for statement in (
        "UPDATE audit_log SET outcome = 'error'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute(statement)
    with pytest.raises(ValueError):
        await audit.prune(conn, 100)
    assert await audit.prune(conn, 400) == 1
    assert {r["action"] for r in await conn.fetch("SELECT action FROM audit_log")} == {
        "test.recent",
        "test.forged",
    }


async def test_the_embedded_app_role_is_made_once_with_a_private_password(
    database_url: str, tmp_path: Path
) -> None:
    role = "emergency_app_test_embedded"
    try:
        url = await db_roles.ensure_embedded_app_role(database_url, tmp_path, role)
        secret = tmp_path / db_roles.APP_SECRET
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert db_roles.username_of(url) == role
        again = await db_roles.ensure_embedded_app_role(database_url, tmp_path, role)
        assert again == url  # the same password, kept
        conn = await asyncpg.connect(url)
        try:
            problems = await db_roles.server_role_problems(conn)
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("DROP TABLE audit_log")
        finally:
            await conn.close()
        assert problems == []
        owner = await asyncpg.connect(database_url)
        try:
            assert await db_roles.server_role_problems(owner) != []  # the test's superuser
        finally:
            await owner.close()
    finally:
        owner = await asyncpg.connect(database_url)
        try:
            await owner.execute(f'DROP OWNED BY "{role}"')
            await owner.execute(f'DROP ROLE "{role}"')
        finally:
            await owner.close()


def test_privileges_per_table() -> None:
    assert db_roles.privileges_for("audit_log") == "SELECT, INSERT"
    assert db_roles.privileges_for("incident_timeline") == "SELECT, INSERT"
    assert db_roles.privileges_for("schema_migrations") == "SELECT"
    assert db_roles.privileges_for("incidents") == "SELECT, INSERT, UPDATE, DELETE"
    url = db_roles.with_login("postgresql://owner:secret@db.example:5433/city?sslmode=require", "app", "p@ss")
    assert url == "postgresql://app:p%40ss@db.example:5433/city?sslmode=require"
