"""The clock for deadlines: acknowledgement deadlines of dispatches, due times of tasks.

The edge owns time: this loop reads the clock and sleeps; which deadlines
have passed, and what firing one writes, is the SQL in
command/dispatch_store.fire_overdue_dispatches and
command/tasks_store.fire_overdue_tasks. Deadlines live in the database, so
a restarted server (or any of several instances) fires them, each once.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import asyncpg

from command.dispatch_store import fire_overdue_dispatches
from command.tasks_store import fire_overdue_tasks
from dispatch.plans import Plans

log = logging.getLogger(__name__)

# Deadlines are tens of seconds to hours; firing within a second of one is
# what a commander can notice, and a one-row index scan a second is nothing.
TICK_S = 1.0


async def watch_deadlines(pool: asyncpg.Pool, plans: Plans, position_max_age: timedelta) -> None:
    while True:
        try:
            async with pool.acquire() as conn:
                at = datetime.now(UTC)
                dispatches = await fire_overdue_dispatches(conn, at, plans, position_max_age)
                tasks = await fire_overdue_tasks(conn, at)
            if dispatches or tasks:
                log.info("overdue: %d dispatch(es) unacknowledged, %d task(s) late", dispatches, tasks)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("deadline check failed (%s); trying again shortly", exc)
        await asyncio.sleep(TICK_S)
