"""Users and sessions in PostgreSQL."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from command.auth import (
    DUMMY_HASH,
    hash_password,
    new_token,
    token_hash,
    validate_new_password,
    verify_password,
)
from command.feed_protocol import ROLES, Principal


class AccountError(ValueError):
    """A user cannot be created as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    principal: Principal
    expires_at: datetime


async def add_user(
    conn: asyncpg.Connection,
    *,
    username: str,
    password: str,
    role: str,
    unit_id: str | None = None,
    districts: list[str] | None = None,
    demo: bool = False,
) -> int:
    """Create a user. Returns its id. ``demo`` marks a demo account (a
    production server refuses to start while one is enabled).

    Raises:
        AccountError: bad role, weak password, missing or unexpected unit, duplicate name.
    """
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    if (role == "field") != (unit_id is not None):
        raise AccountError("a field account needs --unit, and only a field account may have one")
    try:
        validate_new_password(password)
    except ValueError as exc:
        raise AccountError(str(exc)) from None
    hashed = await asyncio.to_thread(hash_password, password)
    try:
        user_id: int = await conn.fetchval(
            """
            INSERT INTO users (username, password_hash, role, unit_id, districts, demo)
            VALUES ($1, $2, $3, $4, $5, $6) RETURNING id
            """,
            username,
            hashed,
            role,
            unit_id,
            districts,
            demo,
        )
    except asyncpg.UniqueViolationError:
        raise AccountError(f"user {username!r} already exists") from None
    except asyncpg.ForeignKeyViolationError:
        raise AccountError(f"unit {unit_id!r} does not exist") from None
    except asyncpg.CheckViolationError as exc:
        raise AccountError(f"invalid user: {exc.constraint_name}") from None
    return user_id


def _principal(row: asyncpg.Record) -> Principal:
    districts = row["districts"]
    return Principal(
        user_id=row["id"],
        username=row["username"],
        role=row["role"],
        unit_id=row["unit_id"],
        districts=tuple(districts) if districts is not None else None,
    )


async def login(
    conn: asyncpg.Connection, username: str, password: str, now: datetime, ttl: timedelta
) -> Session | None:
    """Check credentials and open a session. None when they are wrong (no hint which part)."""
    row = await conn.fetchrow(
        """
        SELECT id, username, password_hash, role, unit_id, districts, disabled
        FROM users WHERE username = $1
        """,
        username,
    )
    stored = row["password_hash"] if row is not None else DUMMY_HASH
    ok = await asyncio.to_thread(verify_password, password, stored)
    if row is None or not ok or row["disabled"]:
        return None
    token = new_token()
    expires_at = now + ttl
    await conn.execute(
        "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        token_hash(token),
        row["id"],
        now,
        expires_at,
    )
    return Session(token, _principal(row), expires_at)


async def authenticate(conn: asyncpg.Connection, token: str, now: datetime) -> Principal | None:
    """The principal behind a live, unrevoked, unexpired token, else None."""
    row = await conn.fetchrow(
        """
        SELECT u.id, u.username, u.role, u.unit_id, u.districts
        FROM sessions s JOIN users u ON u.id = s.user_id
        WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 AND NOT u.disabled
        """,
        token_hash(token),
        now,
    )
    return _principal(row) if row is not None else None


async def logout(conn: asyncpg.Connection, token: str, now: datetime) -> None:
    await conn.execute(
        """
        UPDATE sessions SET revoked_at = $2, revoked_reason = 'logout'
        WHERE token_hash = $1 AND revoked_at IS NULL
        """,
        token_hash(token),
        now,
    )


async def live_sessions(conn: asyncpg.Connection, hashes: list[bytes], now: datetime) -> set[bytes]:
    """Which of these token hashes still open a session (unrevoked, unexpired,
    account enabled): the WebSocket hub asks every few seconds, in one query."""
    rows = await conn.fetch(
        """
        SELECT s.token_hash FROM sessions s JOIN users u ON u.id = s.user_id
        WHERE s.token_hash = ANY($1::bytea[]) AND s.revoked_at IS NULL AND s.expires_at > $2
          AND NOT u.disabled
        """,
        hashes,
        now,
    )
    return {bytes(r["token_hash"]) for r in rows}
