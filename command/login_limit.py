"""Login throttling: at most 5 failed logins per account and 20 per address in 15 minutes.

Failures are rows in ``login_failures`` (PostgreSQL), not counters in
memory, so the limit holds whichever instance a guess lands on and across
restarts. A throttled login is refused (429 with ``Retry-After``) before its
password is checked, so guessing the right password while throttled tells
the guesser nothing. A successful login clears its account's failures (the
address's stay: one valid account must not buy an address more guesses); an
administrator's password reset clears them too (command/user_admin.py).

The per-account limit lets anyone who knows a user name keep that account
locked out (5 bad guesses every 15 minutes). That is the price of stopping
password guessing; docs/security.md says how an administrator unlocks an account.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import asyncpg

WINDOW = timedelta(minutes=15)
ACCOUNT_LIMIT = 5
ADDRESS_LIMIT = 20
# Keep the rows a little past the window, so pruning never races a count.
_KEEP = WINDOW * 2


def _key(text: str) -> str:
    return text[:64]


async def _wait(conn: asyncpg.Connection, column: str, value: str, limit: int, now: datetime) -> float | None:
    # The limit-th most recent failure in the window: once it leaves the
    # window, fewer than `limit` remain and a login may be tried again.
    at = await conn.fetchval(
        f"""
        SELECT at FROM login_failures WHERE {column} = $1 AND at > $2
        ORDER BY at DESC OFFSET $3 LIMIT 1
        """,
        value,
        now - WINDOW,
        limit - 1,
    )
    if at is None:
        return None
    assert isinstance(at, datetime)
    return max((at + WINDOW - now).total_seconds(), 1.0)


async def retry_after(conn: asyncpg.Connection, username: str, address: str, now: datetime) -> int | None:
    """Seconds to wait before this login may be tried, or None when it may be tried now.

    Call inside the login's transaction: it takes a transaction-scoped lock
    on the user name, so concurrent guesses at one account (on any instance)
    are counted one after another and cannot slip past the limit together.
    """
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('login:' || $1, 0))", _key(username))
    waits = [
        w
        for w in (
            await _wait(conn, "username", _key(username), ACCOUNT_LIMIT, now),
            await _wait(conn, "address", _key(address), ADDRESS_LIMIT, now),
        )
        if w is not None
    ]
    return math.ceil(max(waits)) if waits else None


async def record_failure(conn: asyncpg.Connection, username: str, address: str, now: datetime) -> None:
    await conn.execute(
        "INSERT INTO login_failures (at, username, address) VALUES ($1, $2, $3)",
        now,
        _key(username),
        _key(address),
    )


async def clear_account(conn: asyncpg.Connection, username: str) -> None:
    await conn.execute("DELETE FROM login_failures WHERE username = $1", _key(username))


async def prune(conn: asyncpg.Connection, now: datetime) -> int:
    """Forget failures that can no longer count. Returns how many."""
    result: str = await conn.execute("DELETE FROM login_failures WHERE at < $1", now - _KEEP)
    return int(result.split()[-1])
