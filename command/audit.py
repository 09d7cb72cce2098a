"""The audit log in PostgreSQL: who did what, when, from where, and how it ended.

Written in the same transaction as the action it records wherever there is
one (a dispatch and its audit row commit together or not at all); a refusal
is recorded after its transaction rolled back, in one of its own
(``command/guard.py``). The table is append-only for every role
(migrations/0004_security.sql); the server's role may only insert and read,
and prune through ``prune_audit_log()``, which never deletes a row younger
than six months.

Actions (``action`` column): ``session.login``, ``session.logout``,
``user.create``, ``user.update``, ``user.password_reset``,
``user.password_change``, ``incident.create``, ``incident.status``,
``dispatch.create``, ``dispatch.status``, ``task.create``, ``task.update``,
``import.data``, ``import.roads``, ``export.data``, ``export.roads``, and
``cli.user_create`` / ``cli.import`` for the command line.
"""

from __future__ import annotations

import getpass
import os
from datetime import datetime
from typing import Any

import asyncpg

#: The legal floor (graded protection: six months), enforced again in the database.
MIN_RETENTION_DAYS = 183


def cli_actor() -> str:
    """The actor of a command-line action, which has no session: the
    operating-system user who ran it, as ``cli:NAME`` (its uid when the
    system has no name for it)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:{os.getuid()}"


async def record(
    conn: asyncpg.Connection,
    *,
    action: str,
    outcome: str,
    actor: str | None,
    role: str | None,
    address: str | None,
    target: str | None = None,
    status: int | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one entry, in the caller's transaction if it has one.

    Args:
        action: what was attempted (see the module docstring).
        outcome: ``ok``, ``failed`` (refused as invalid or conflicting),
            ``denied`` (not allowed, throttled) or ``error``.
        actor: the account's name, or what was typed at a failed login.
        role: the account's role, when known.
        address: where the request came from (``command/client_address.py``).
        target: what it was done to, as ``kind:id``.
        status: the HTTP status answered.
        detail: what else an investigator needs (never a password or token).
    """
    await conn.execute(
        """
        INSERT INTO audit_log (actor, actor_role, action, target, outcome, status, address, detail)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)
        """,
        actor[:64] if actor is not None else None,
        role,
        action,
        target[:200] if target is not None else None,
        outcome,
        status,
        address[:64] if address is not None else None,
        detail or {},
    )


def entry_wire(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "at": row["at"].isoformat(),
        "actor": row["actor"],
        "actor_role": row["actor_role"],
        "action": row["action"],
        "target": row["target"],
        "outcome": row["outcome"],
        "status": row["status"],
        "address": row["address"],
        "detail": row["detail"],
    }


async def entries(
    conn: asyncpg.Connection,
    *,
    since: datetime | None = None,
    actor: str | None = None,
    action: str | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Entries, newest first. ``action`` ending in ``.`` matches every action with that prefix."""
    prefix = action is not None and action.endswith(".")
    rows = await conn.fetch(
        """
        SELECT id, at, actor, actor_role, action, target, outcome, status, address, detail
        FROM audit_log
        WHERE ($1::timestamptz IS NULL OR at >= $1)
          AND ($2::text IS NULL OR actor = $2)
          AND ($3::text IS NULL OR (CASE WHEN $4 THEN starts_with(action, $3) ELSE action = $3 END))
        ORDER BY id DESC LIMIT $5
        """,
        since,
        actor,
        action,
        prefix,
        limit,
    )
    return [entry_wire(r) for r in rows]


async def prune(conn: asyncpg.Connection, keep_days: int) -> int:
    """Delete entries older than ``keep_days`` (at least 183) through the
    database's own retention function. Returns how many."""
    if keep_days < MIN_RETENTION_DAYS:
        raise ValueError(f"audit entries are kept at least {MIN_RETENTION_DAYS} days")
    gone: int = await conn.fetchval("SELECT prune_audit_log($1)", keep_days)
    return gone
