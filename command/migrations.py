"""Apply ``migrations/NNNN_name.sql`` in order, each in one transaction, recorded.

Refuses to touch a database whose recorded history does not match the files
(an edited, renamed or missing migration), because applying on top of an
unknown schema is how data gets damaged quietly.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

# Any constant will do; it only has to be the same for every instance, so two
# servers starting together do not both apply migration 3.
_MIGRATION_LOCK = 0x4D494752

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """The database's history and the files disagree; the message says where."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations_dir() -> Path:
    configured = os.environ.get("EMERGENCY_MIGRATIONS_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent.parent / "migrations"


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """The migration files, in order.

    Raises:
        MigrationError: a file is misnamed or two share a version.
    """
    directory = directory or migrations_dir()
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"{path.name}: version {version} is used twice")
        found[version] = Migration(version, match.group(2), path.read_text())
    return [found[v] for v in sorted(found)]


async def migrate(conn: asyncpg.Connection, directory: Path | None = None) -> list[str]:
    """Bring the database up to date.

    Returns:
        the names of the migrations applied now (empty when already current).
    Raises:
        MigrationError: the recorded history does not match the files.
    """
    files = load_migrations(directory)
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version    integer PRIMARY KEY,
                name       text NOT NULL,
                checksum   text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        applied = await conn.fetch("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
        by_version = {m.version: m for m in files}
        for row in applied:
            local = by_version.get(row["version"])
            if local is None:
                raise MigrationError(
                    f"database has migration {row['version']:04d}_{row['name']} "
                    "which is not among the files: is this checkout older than the database?"
                )
            if (local.name, local.checksum) != (row["name"], row["checksum"]):
                raise MigrationError(
                    f"migration {local.version:04d}_{local.name} differs from the one applied "
                    f"as {row['version']:04d}_{row['name']}: applied migrations must not change"
                )
        done = {row["version"] for row in applied}
        pending = [m for m in files if m.version not in done]
        if done and pending and min(m.version for m in pending) < max(done):
            raise MigrationError(
                f"migration {pending[0].version:04d}_{pending[0].name} is older than "
                "migrations already applied; renumber it after the newest"
            )
        names = []
        for migration in pending:
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            names.append(f"{migration.version:04d}_{migration.name}")
        return names
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
