"""GET /healthz tells the truth about what the server depends on.

With the broker or the database gone, it answers 503 and names the one that is
down; when it comes back, 200 again without restarting the server. Each test
stops a private service of its own, never the session's shared ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from command.services import EmbeddedMosquitto
from command.settings import Settings
from tests.integration.helpers import base_url, private_postgres, running_server, settings_for

# How long the server may take to notice an outage or a recovery: paho's
# reconnect backs off from 1 s to at most 10 s, and the pool finds a dead
# connection on its next use.
NOTICE_S = 30.0


@asynccontextmanager
async def private_broker(directory: Path) -> AsyncIterator[EmbeddedMosquitto]:
    broker = EmbeddedMosquitto(directory / "mosquitto", save_every_change=False)
    await asyncio.to_thread(broker.start)
    try:
        yield broker
    finally:
        await asyncio.to_thread(broker.stop)


async def health(settings: Settings) -> tuple[int, dict[str, Any]]:
    url = f"{base_url(settings)}/healthz"
    # /healthz bounds its own database check at 2 s; 10 s only catches a hang.
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        http.get(url) as response,
    ):
        body: dict[str, Any] = await response.json()
        return response.status, body


async def health_until(settings: Settings, status: int) -> dict[str, Any]:
    """Poll /healthz until it answers ``status``; fail with its last answer after NOTICE_S."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + NOTICE_S
    while True:
        got, body = await health(settings)
        if got == status:
            return body
        assert loop.time() < deadline, f"/healthz still answers {got} {body} after {NOTICE_S:.0f} s"
        await asyncio.sleep(0.1)


async def test_healthz_reports_the_broker_down_then_up_again(database_url: str, private_dir: Path) -> None:
    async with private_broker(private_dir) as broker:
        settings = settings_for(database_url, broker.url)
        async with running_server(settings):
            ok = await health_until(settings, 200)
            assert (ok["status"], ok["database"], ok["broker"]) == ("ok", "ok", "ok")

            await asyncio.to_thread(broker.stop)
            down = await health_until(settings, 503)
            assert down["status"] == "degraded"
            assert down["broker"] != "ok"
            assert down["database"] == "ok"  # it names the broker, not everything

            await asyncio.to_thread(broker.start, broker.port)
            back = await health_until(settings, 200)
            assert (back["status"], back["database"], back["broker"]) == ("ok", "ok", "ok")


async def test_healthz_reports_the_database_down_then_up_again(mqtt_url: str, private_dir: Path) -> None:
    # Not durable: nothing here needs to survive a crash, and it starts faster.
    async with private_postgres(private_dir, durable=False) as pg:
        settings = settings_for(pg.url, mqtt_url)
        async with running_server(settings):
            ok = await health_until(settings, 200)
            assert (ok["status"], ok["database"], ok["broker"]) == ("ok", "ok", "ok")

            # Immediate mode, as a crash: the server's connections die under it.
            await asyncio.to_thread(pg.crash)
            down = await health_until(settings, 503)
            assert down["status"] == "degraded"
            assert down["database"].startswith("error: "), down
            assert down["broker"] == "ok"

            await asyncio.to_thread(pg.start)  # same cluster, same port
            back = await health_until(settings, 200)
            assert (back["status"], back["database"], back["broker"]) == ("ok", "ok", "ok")
