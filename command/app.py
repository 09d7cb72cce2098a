"""Wiring: one cleanup context per resource, started in order, torn down in reverse.

    pool -> hub + feed -> liveness, outbox retention, deadlines
         -> MQTT session + ingest -> unit order delivery

Shutdown therefore stops taking messages first (acks stop; the broker keeps
what we did not acknowledge), then stops the feed, then the pool. Consoles
get 1001 in ``on_shutdown``, before any of that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from aiohttp import web

from command import accounts, db
from command import web as routes
from command.admin_api import add_admin_routes
from command.correlation import RulesError, parse_rules
from command.deadlines import watch_deadlines
from command.delivery import Delivery
from command.dispatch_api import add_dispatch_routes
from command.feed import Feed
from command.field_api import add_field_routes
from command.guard import install as install_guard
from command.guard import security_ctx
from command.hub import Hub
from command.ingest import Ingest
from command.keys import DELIVERY, HUB, METRICS, MQTT, PLANS, POOL, RULES, SETTINGS
from command.metrics import Metrics
from command.outbox import prune_events
from command.settings import Settings
from command.stats_api import add_stats_routes
from command.store import mark_silent_sensors
from command.users_api import add_user_routes
from dispatch.plans import PlanError, parse_plans
from sensors.mqtt import MqttSession
from sensors.topics import shared_subscriptions

log = logging.getLogger(__name__)


async def supervise(name: str, factory: Any) -> None:
    """Run ``factory()`` until cancelled; a crash is logged and the task restarted.

    A long-lived loop that dies silently is the worst failure a command system
    can have (alarms stop, nothing says so), hence the restart and the log.
    """
    delay = 0.5
    while True:
        try:
            await factory()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("task %s crashed; restarting in %.1f s", name, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


async def _stop(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _spawn(name: str, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    return asyncio.create_task(coro, name=name)


async def pool_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.database_url is not None
    app[POOL] = await db.create_pool(settings.database_url)
    yield
    await db.close_pool(app[POOL])


async def feed_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.direct_url is not None
    feed = Feed(app[POOL], settings.direct_url, app[HUB], application_name=settings.feed_application_name)
    await feed.start_position()
    task = _spawn("feed", supervise("feed", feed.run))
    pool = app[POOL]

    async def live_sessions(hashes: list[bytes]) -> set[bytes]:
        async with pool.acquire() as conn:
            return await accounts.live_sessions(conn, hashes, datetime.now(UTC))

    sweep = _spawn("ws-sessions", supervise("ws-sessions", lambda: app[HUB].sweep(live_sessions)))
    yield
    await _stop(sweep)
    await _stop(task)


LIVENESS_INTERVAL_S = 15.0


async def watch_liveness(pool: asyncpg.Pool) -> None:
    """Every few seconds, mark sensors silent beyond their heartbeat offline.

    The edge owns time: this loop reads the clock and sleeps; the rule is
    the SQL in store.mark_silent_sensors.
    """
    while True:
        try:
            async with pool.acquire() as conn:
                went = await mark_silent_sensors(conn, datetime.now(UTC))
            if went:
                log.info("%d sensor(s) went silent and are now offline", went)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("liveness check failed (%s); trying again later", exc)
        await asyncio.sleep(LIVENESS_INTERVAL_S)


async def liveness_ctx(app: web.Application) -> AsyncIterator[None]:
    task = _spawn("liveness", supervise("liveness", lambda: watch_liveness(app[POOL])))
    yield
    await _stop(task)


RETENTION_INTERVAL_S = 60.0


async def prune_outbox(pool: asyncpg.Pool, retention: timedelta) -> None:
    """Keep the outbox (the consoles' replay window) to its retention period.

    Every instance runs this; the deletes are idempotent, so it needs no lock.
    """
    while True:
        try:
            async with pool.acquire() as conn:
                gone = await prune_events(conn, datetime.now(UTC) - retention)
            if gone:
                log.info("outbox: %d event(s) past retention deleted", gone)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("outbox pruning failed (%s); trying again later", exc)
        await asyncio.sleep(RETENTION_INTERVAL_S)


async def retention_ctx(app: web.Application) -> AsyncIterator[None]:
    retention = timedelta(hours=app[SETTINGS].event_retention_h)
    task = _spawn("retention", supervise("retention", lambda: prune_outbox(app[POOL], retention)))
    yield
    await _stop(task)


async def deadlines_ctx(app: web.Application) -> AsyncIterator[None]:
    max_age = timedelta(seconds=app[SETTINGS].position_max_age_s)
    task = _spawn(
        "deadlines", supervise("deadlines", lambda: watch_deadlines(app[POOL], app[PLANS], max_age))
    )
    yield
    await _stop(task)


async def mqtt_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    target = settings.mqtt
    session = MqttSession(
        host=target.host,
        port=target.port,
        username=target.username,
        password=target.password,
        client_id=settings.mqtt_client_id,
        subscriptions=shared_subscriptions(settings.mqtt_share_group),
        session_expiry_s=settings.session_expiry_s,
        receive_maximum=settings.receive_maximum,
    )
    app[MQTT] = session
    ingest = Ingest(app[POOL], session, app[METRICS], rules=app[RULES], batch_max=settings.batch_max)
    task = _spawn("ingest", supervise("ingest", ingest.run))
    await session.start()
    yield
    # Stop storing first: a batch cut short is not acknowledged, so the broker
    # redelivers it to our session next time and the unique key drops copies.
    await _stop(task)
    await session.close()


async def delivery_ctx(app: web.Application) -> AsyncIterator[None]:
    delivery = Delivery(app[POOL], app[MQTT], app[METRICS])
    app[DELIVERY] = delivery
    task = _spawn("delivery", supervise("delivery", delivery.run))
    yield
    # Before mqtt_ctx's teardown: a batch cut short is not marked sent, so the
    # next instance to start sends it again (at-least-once; dispatch_id dedupes).
    await _stop(task)


async def close_consoles(app: web.Application) -> None:
    await app[HUB].close_all()


_Parsed = TypeVar("_Parsed")


def _startup_file(path: Path, parse: Callable[[str], _Parsed]) -> _Parsed:
    """``parse`` the file at ``path``; its error names the file (either file can be overridden)."""
    text = path.read_text()  # OSError names the file already
    try:
        return parse(text)
    except (RulesError, PlanError) as exc:
        raise type(exc)(f"{path}: {exc}") from None


def create_app(settings: Settings) -> web.Application:
    """The server application for ``settings`` (URLs must be set)."""
    if settings.database_url is None or settings.mqtt_url is None:
        raise ValueError("create_app needs database and MQTT URLs")
    app = web.Application(
        middlewares=[routes.errors_middleware, routes.auth_middleware],
        client_max_size=1024 * 1024,
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[HUB] = Hub(queue_max=settings.client_queue_max, heartbeat_s=settings.ws_heartbeat_s)
    # Validated at start-up, before anything connects: a bad plans or rules file
    # stops the server, not a commander's click or the first alarm.
    app[PLANS] = _startup_file(settings.plans_path, parse_plans)
    app[RULES] = _startup_file(settings.correlation_rules_path, parse_rules)
    app.cleanup_ctx.extend(
        [pool_ctx, security_ctx, feed_ctx, liveness_ctx, retention_ctx, deadlines_ctx, mqtt_ctx, delivery_ctx]
    )
    app.on_shutdown.append(close_consoles)
    routes.add_routes(app)
    add_admin_routes(app)
    add_dispatch_routes(app)
    add_field_routes(app)
    add_stats_routes(app)
    add_user_routes(app)
    # Last: the route table's checks, audit, headers and /api/openapi.json;
    # refuses production mode with weak settings (command/guard.py).
    install_guard(app)
    return app
