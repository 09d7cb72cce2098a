"""Account management in PostgreSQL: listing, changing, disabling, passwords, revocation.

Every change that alters what a session may do (role, unit, districts,
disabled) or who may open one (password) ends the account's sessions, so a
token issued under the old terms stops working at once, on every instance
(the WebSocket hub's sweep closes its sockets within 2 s). Each function runs
in the caller's transaction: the handler writes the audit row in the same one.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import asyncpg

from command.accounts import AccountError
from command.auth import hash_password, token_hash, validate_new_password, verify_password
from command.feed_protocol import ROLES

_COLUMNS = """
    id, username, role, unit_id, districts, disabled, demo, created_at, updated_at, password_changed_at
"""


def user_wire(row: asyncpg.Record) -> dict[str, Any]:
    """An account as the API shows it (never its password hash)."""
    changed = row["password_changed_at"]
    return {
        "id": row["id"],
        "username": row["username"],
        "role": row["role"],
        "unit_id": row["unit_id"],
        "districts": list(row["districts"]) if row["districts"] is not None else None,
        "disabled": row["disabled"],
        "demo": row["demo"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "password_changed_at": changed.isoformat() if changed is not None else None,
    }


async def list_users(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM users ORDER BY id")
    return [user_wire(r) for r in rows]


async def get_user(conn: asyncpg.Connection, user_id: int, *, lock: bool = False) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM users WHERE id = $1{' FOR UPDATE' if lock else ''}", user_id
    )
    return user_wire(row) if row is not None else None


async def check_districts(conn: asyncpg.Connection, districts: list[str] | None) -> None:
    """Raises AccountError naming the first district that does not exist."""
    if not districts:
        return
    known = {
        r["id"] for r in await conn.fetch("SELECT id FROM districts WHERE id = ANY($1::text[])", districts)
    }
    missing = [d for d in districts if d not in known]
    if missing:
        raise AccountError(f"district {missing[0]!r} does not exist")


async def revoke_sessions(
    conn: asyncpg.Connection, user_id: int, now: datetime, reason: str, *, keep_token: str | None = None
) -> int:
    """End the account's live sessions (all but ``keep_token``'s). Returns how many."""
    keep = token_hash(keep_token) if keep_token is not None else b""
    result: str = await conn.execute(
        """
        UPDATE sessions SET revoked_at = $2, revoked_reason = $3
        WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 AND token_hash <> $4
        """,
        user_id,
        now,
        reason,
        keep,
    )
    return int(result.split()[-1])


async def _enabled_admins_besides(conn: asyncpg.Connection, user_id: int) -> int:
    # Locks every enabled admin row: two admins demoting each other at once
    # cannot both see the other still there.
    rows = await conn.fetch(
        "SELECT id FROM users WHERE role = 'admin' AND NOT disabled AND id <> $1 FOR UPDATE", user_id
    )
    return len(rows)


class LastAdmin(AccountError):
    """The change would leave no enabled administrator."""


async def update_user(
    conn: asyncpg.Connection, user_id: int, changes: dict[str, Any], now: datetime
) -> tuple[dict[str, Any], dict[str, Any], int] | None:
    """Apply ``changes`` (role, unit_id, districts, disabled) to an account.

    Returns:
        (the account after, what changed as {field: [before, after]}, sessions
        ended), or None when there is no such account.
    Raises:
        AccountError: an invalid combination (a field account without a unit,
            a unit or district that does not exist); LastAdmin when it would
            leave no enabled administrator.
    """
    before = await get_user(conn, user_id, lock=True)
    if before is None:
        return None
    after = dict(before)
    after.update(changes)
    if after["role"] not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    # Leaving the field role drops the unit binding with it, unless the
    # caller explicitly kept one (which the check below then refuses).
    if after["role"] != "field" and "unit_id" not in changes:
        after["unit_id"] = None
    if (after["role"] == "field") != (after["unit_id"] is not None):
        raise AccountError("a field account needs unit_id, and only a field account may have one")
    await check_districts(conn, after["districts"])
    was_admin = before["role"] == "admin" and not before["disabled"]
    is_admin = after["role"] == "admin" and not after["disabled"]
    if was_admin and not is_admin and await _enabled_admins_besides(conn, user_id) == 0:
        raise LastAdmin("this is the last enabled administrator: create or enable another first")
    diff = {
        k: [before[k], after[k]]
        for k in ("role", "unit_id", "districts", "disabled")
        if before[k] != after[k]
    }
    if not diff:
        return before, {}, 0
    try:
        row = await conn.fetchrow(
            f"""
            UPDATE users SET role = $2, unit_id = $3, districts = $4, disabled = $5, updated_at = $6
            WHERE id = $1 RETURNING {_COLUMNS}
            """,
            user_id,
            after["role"],
            after["unit_id"],
            after["districts"],
            after["disabled"],
            now,
        )
    except asyncpg.ForeignKeyViolationError:
        raise AccountError(f"unit {after['unit_id']!r} does not exist") from None
    reason = "disabled" if diff.keys() == {"disabled"} and after["disabled"] else "account_changed"
    ended = await revoke_sessions(conn, user_id, now, reason)
    return user_wire(row), diff, ended


async def set_password(
    conn: asyncpg.Connection, user_id: int, password: str, now: datetime, *, keep_token: str | None = None
) -> int | None:
    """Set a new password; ends the account's sessions (all but ``keep_token``'s)
    and clears its recorded login failures (an administrator's reset unlocks it).

    Returns:
        how many sessions were ended, or None when there is no such account.
    Raises:
        AccountError: the password is too weak.
    """
    try:
        validate_new_password(password)
    except ValueError as exc:
        raise AccountError(str(exc)) from None
    hashed = await asyncio.to_thread(hash_password, password)
    username = await conn.fetchval(
        "UPDATE users SET password_hash = $2, password_changed_at = $3, updated_at = $3 WHERE id = $1 "
        "RETURNING username",
        user_id,
        hashed,
        now,
    )
    if username is None:
        return None
    await conn.execute("DELETE FROM login_failures WHERE username = $1", username)
    return await revoke_sessions(conn, user_id, now, "password_changed", keep_token=keep_token)


async def password_matches(conn: asyncpg.Connection, user_id: int, password: str) -> bool:
    stored = await conn.fetchval("SELECT password_hash FROM users WHERE id = $1", user_id)
    if stored is None:
        return False
    return await asyncio.to_thread(verify_password, password, stored)
