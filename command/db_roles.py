"""Two database roles: the schema's owner migrates, the server only reads and writes rows.

The append-only tables (the audit log, the incident timeline, task notes,
dead letters) refuse UPDATE, DELETE and TRUNCATE through triggers; only
their owner could drop those triggers. So the server must not be the owner.
It connects as an application role that has, per table, only the DML the
server needs: SELECT and INSERT on the append-only tables, SELECT on the
migration history, SELECT/INSERT/UPDATE/DELETE elsewhere; no CREATE in the
schema, and EXECUTE on ``prune_audit_log()`` (which deletes nothing younger
than six months). The grants are recomputed after every migration, so a table
a later migration adds is covered.

Embedded PostgreSQL (``emergency up``/``serve`` without a database URL): the
role ``emergency_app`` is created here, with a random password kept in the
data folder (mode 0600). External PostgreSQL: a DBA creates the role;
``emergency migrate`` with ``EMERGENCY_MIGRATE_DATABASE_URL`` (the owner)
grants to the user of ``EMERGENCY_DATABASE_URL`` (docs/security.md).
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import asyncpg

log = logging.getLogger(__name__)

APP_ROLE = "emergency_app"
#: The password file of the embedded application role, beside the cluster's own.
APP_SECRET = "app.password"

#: Rows are evidence: the server adds them, never changes or removes them.
APPEND_ONLY = frozenset({"audit_log", "incident_timeline", "task_notes", "dead_letters"})
#: Written by migrations only.
READ_ONLY = frozenset({"schema_migrations"})


def username_of(url: str) -> str | None:
    name = urlsplit(url).username
    return unquote(name) if name else None


def with_login(url: str, username: str, password: str) -> str:
    """``url`` with another user and password (host, port and database kept)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


async def _tables(conn: asyncpg.Connection) -> list[str]:
    # Tables of the public schema, leaving out those an extension owns
    # (PostGIS's spatial_ref_sys is readable by everyone already).
    rows = await conn.fetch(
        """
        SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
          AND NOT EXISTS (SELECT 1 FROM pg_depend d
                          WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
        ORDER BY c.relname
        """
    )
    return [r["relname"] for r in rows]


def privileges_for(table: str) -> str:
    """The table privileges the server's role gets on ``table``."""
    if table in READ_ONLY:
        return "SELECT"
    if table in APPEND_ONLY:
        return "SELECT, INSERT"
    return "SELECT, INSERT, UPDATE, DELETE"


async def grant_app_privileges(conn: asyncpg.Connection, role: str) -> None:
    """Give ``role`` exactly the server's privileges in the current database.

    Run as the schema's owner (or a superuser), after migrating. Idempotent:
    every table's grants are revoked and granted again.
    """
    quoted = await conn.fetchval("SELECT quote_ident($1)", role)
    database = await conn.fetchval("SELECT quote_ident(current_database())")
    async with conn.transaction():
        await conn.execute(f"GRANT CONNECT ON DATABASE {database} TO {quoted}")
        # PostgreSQL 15 no longer lets everyone create in public; older ones did.
        await conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        await conn.execute(f"REVOKE CREATE ON SCHEMA public FROM {quoted}")
        await conn.execute(f"GRANT USAGE ON SCHEMA public TO {quoted}")
        for table in await _tables(conn):
            name = await conn.fetchval("SELECT quote_ident($1)", table)
            await conn.execute(f"REVOKE ALL ON public.{name} FROM {quoted}")
            await conn.execute(f"GRANT {privileges_for(table)} ON public.{name} TO {quoted}")
        await conn.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}")
        await conn.execute(f"GRANT EXECUTE ON FUNCTION public.prune_audit_log(integer) TO {quoted}")


async def ensure_role(conn: asyncpg.Connection, role: str, password: str) -> None:
    """Create the login role ``role`` (or reset its password), with no special powers."""
    exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
    verb = "ALTER" if exists else "CREATE"
    # Utility statements take no parameters: quote_ident/quote_literal in the
    # server build the statement, so nothing here is spliced in by hand.
    statement = await conn.fetchval(
        f"SELECT format('{verb} ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
        "NOREPLICATION NOBYPASSRLS INHERIT PASSWORD %L', $1::text, $2::text)",
        role,
        password,
    )
    await conn.execute(statement)


def _secret(path: Path) -> str:
    """The password kept at ``path``, made (0600 from the start) when missing."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    password = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    return password


async def ensure_embedded_app_role(owner_url: str, secret_dir: Path, role: str = APP_ROLE) -> str:
    """Create (or refresh) the server's role in the embedded cluster and grant it
    the server's privileges; its password lives in ``secret_dir/app.password``.

    Returns:
        the URL the server connects with (it carries the password: do not log it).
    """
    password = _secret(secret_dir / APP_SECRET)
    conn = await asyncpg.connect(owner_url)
    try:
        await ensure_role(conn, role, password)
        await grant_app_privileges(conn, role)
    finally:
        await conn.close()
    log.info("database role %s holds the server's privileges", role)
    return with_login(owner_url, role, password)


async def grant_after_migrate(owner_url: str, server_url: str | None) -> None:
    """After ``emergency migrate`` as the owner: grant the server's user its
    privileges, when it is another role than the owner."""
    if server_url is None:
        return
    owner, server = username_of(owner_url), username_of(server_url)
    if server is None or server == owner:
        return
    conn = await asyncpg.connect(owner_url)
    try:
        await grant_app_privileges(conn, server)
    finally:
        await conn.close()
    log.info("granted the server's privileges to database role %s", server)


async def server_role_problems(conn: asyncpg.Connection) -> list[str]:
    """Why the role ``conn`` is logged in as is too powerful to run the server
    in production: a superuser, or a member of the role owning the audit log,
    could drop the append-only triggers."""
    problems: list[str] = []
    row = await conn.fetchrow(
        """
        SELECT r.rolname, r.rolsuper,
               pg_has_role(current_user, c.relowner, 'USAGE') AS owns_audit
        FROM pg_roles r, pg_class c
        WHERE r.rolname = current_user AND c.oid = 'public.audit_log'::regclass
        """
    )
    if row["rolsuper"]:
        problems.append(f"the server's database role {row['rolname']} is a superuser")
    elif row["owns_audit"]:
        problems.append(
            f"the server's database role {row['rolname']} owns the schema (it could drop the audit "
            "log's triggers): migrate with EMERGENCY_MIGRATE_DATABASE_URL and serve as another role"
        )
    return problems


async def demo_accounts(conn: asyncpg.Connection) -> list[str]:
    """Enabled demo accounts, by name."""
    rows = await conn.fetch("SELECT username FROM users WHERE demo AND NOT disabled ORDER BY username")
    return [r["username"] for r in rows]
