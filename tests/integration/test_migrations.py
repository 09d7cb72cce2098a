"""Migrations apply once, in order, and refuse a history that does not match the files."""

from __future__ import annotations

import shutil
from pathlib import Path

import asyncpg
import pytest

from command.migrations import MigrationError, load_migrations, migrate, migrations_dir


async def test_apply_twice_changes_nothing(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        first = await migrate(conn)
        assert first == [f"{m.version:04d}_{m.name}" for m in load_migrations()]
        tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        assert {"alarms", "incidents", "events", "dead_letters", "users", "units", "stock"} <= {
            t["tablename"] for t in tables
        }
        recorded = await conn.fetch("SELECT version, name, checksum, applied_at FROM schema_migrations")
        assert await migrate(conn) == []
        assert (
            await conn.fetch("SELECT version, name, checksum, applied_at FROM schema_migrations") == recorded
        )
    finally:
        await conn.close()


async def test_refuses_edited_or_unknown_migrations(empty_database_url: str, tmp_path: Path) -> None:
    files = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), files)
    conn = await asyncpg.connect(empty_database_url)
    try:
        await migrate(conn, files)
        first = sorted(files.glob("*.sql"))[0]
        first.write_text(first.read_text() + "\n-- edited after it was applied\n")
        with pytest.raises(MigrationError, match="differs from the one applied"):
            await migrate(conn, files)
        first.write_text(first.read_text().replace("\n-- edited after it was applied\n", ""))
        await migrate(conn, files)  # restored: fine again
        await conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, 'from_the_future', 'x')"
        )
        with pytest.raises(MigrationError, match="not among the files"):
            await migrate(conn, files)
    finally:
        await conn.close()


async def test_failed_migration_leaves_nothing_behind(empty_database_url: str, tmp_path: Path) -> None:
    files = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), files)
    (files / "9000_broken.sql").write_text("CREATE TABLE half_done (id int);\nSELECT no_such_function();\n")
    conn = await asyncpg.connect(empty_database_url)
    try:
        with pytest.raises(asyncpg.UndefinedFunctionError):
            await migrate(conn, files)
        assert await conn.fetchval("SELECT to_regclass('half_done')") is None
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations WHERE version = 9000") == 0
    finally:
        await conn.close()
