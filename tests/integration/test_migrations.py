"""Migrations apply once, in order, and refuse a history that does not match the files."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
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


# -- the command line: `emergency migrate` says no, and exits non-zero --------------


@dataclass(frozen=True, slots=True)
class Migrated:
    """What `python -m command migrate` did: its exit status and what it said."""

    status: int
    stderr: str

    @property
    def last_line(self) -> str:
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else ""


async def cli_migrate(database_url: str, files: Path) -> Migrated:
    """Run `python -m command migrate` on ``database_url`` with the migrations in ``files``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMERGENCY_")} | {
        "EMERGENCY_DATABASE_URL": database_url,
        # migrate never talks to the broker, but the command line resolves both
        # URLs first (and would otherwise go looking for `emergency up`'s).
        "EMERGENCY_MQTT_URL": "mqtt://127.0.0.1:1",
        "EMERGENCY_MIGRATIONS_DIR": str(files),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "command",
        "migrate",
        env=env,
        cwd=files.parent,  # away from the checkout's var/, which it must not need
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return Migrated(proc.returncode, stderr.decode())


def refused(run: Migrated, message: str) -> None:
    """The command refused cleanly: status 1, one line saying why, no traceback."""
    assert run.status == 1, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    assert run.last_line.startswith("emergency migrate: "), run.stderr
    assert message in run.last_line, run.stderr


async def history(database_url: str) -> list[tuple[int, str, str]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
        return [(r["version"], r["name"], r["checksum"]) for r in rows]
    finally:
        await conn.close()


async def test_cli_migrate_refuses_a_mismatched_history(empty_database_url: str, tmp_path: Path) -> None:
    files = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), files)
    names = [f"{m.version:04d}_{m.name}" for m in load_migrations(files)]

    first = await cli_migrate(empty_database_url, files)
    assert first.status == 0, first.stderr
    assert all(f"applied migration {name}" in first.stderr for name in names), first.stderr
    again = await cli_migrate(empty_database_url, files)
    assert again.status == 0 and "database schema is up to date" in again.stderr, again.stderr
    applied = await history(empty_database_url)
    assert [f"{v:04d}_{n}" for v, n, _ in applied] == names

    # An applied migration edited afterwards.
    oldest = files / f"{names[0]}.sql"
    original = oldest.read_text()
    oldest.write_text(original + "\n-- edited after it was applied\n")
    refused(
        await cli_migrate(empty_database_url, files),
        f"migration {names[0]} differs from the one applied as {names[0]}",
    )
    oldest.write_text(original)

    # A database newer than the checkout: its newest migration has no file here.
    newest = files / f"{names[-1]}.sql"
    newest.unlink()
    refused(
        await cli_migrate(empty_database_url, files),
        f"database has migration {names[-1]} which is not among the files",
    )
    assert await history(empty_database_url) == applied  # refusing changed nothing


async def test_cli_migrate_refuses_a_new_file_numbered_below_one_applied(
    empty_database_url: str, tmp_path: Path
) -> None:
    """Two branches each added a migration; the later-numbered one was applied
    first. Applying the other now would run it out of order on a schema it was
    not written against, so the command refuses and says to renumber it."""
    files = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), files)
    (files / "9000_later.sql").write_text("CREATE TABLE later_branch (id int);\n")
    assert (await cli_migrate(empty_database_url, files)).status == 0
    applied = await history(empty_database_url)
    assert applied[-1][:2] == (9000, "later")

    # Newer than every file the database had when 9000 was applied, numbered below it.
    (files / "8000_forgotten.sql").write_text("CREATE TABLE forgotten_branch (id int);\n")
    refused(
        await cli_migrate(empty_database_url, files),
        "migration 8000_forgotten is older than migrations already applied; renumber it after the newest",
    )
    assert await history(empty_database_url) == applied
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('forgotten_branch')") is None

        # Renumbered after the newest, as the message says, it applies.
        (files / "8000_forgotten.sql").rename(files / "9001_forgotten.sql")
        fixed = await cli_migrate(empty_database_url, files)
        assert fixed.status == 0 and "applied migration 9001_forgotten" in fixed.stderr, fixed.stderr
        assert await conn.fetchval("SELECT to_regclass('forgotten_branch')") is not None
    finally:
        await conn.close()
