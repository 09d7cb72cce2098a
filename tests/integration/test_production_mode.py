"""EMERGENCY_MODE=production refuses to start with demo accounts, a too-powerful
database role, or weak secrets; it starts when none of that is so."""

from __future__ import annotations

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from command import accounts
from command.app import create_app
from command.guard import ProductionRefused
from command.settings import Settings
from tests.integration.helpers import PASSWORD, running_server, settings_for
from tests.integration.security_world import app_role


async def _start(settings: Settings) -> None:
    """Start the application, expecting a refusal; what started before it
    (the pool) is cleaned up (runner.cleanup after a failed setup runs only
    the teardowns of the contexts that started)."""
    runner = web.AppRunner(create_app(settings))
    try:
        await runner.setup()
    finally:
        await runner.cleanup()


async def test_production_refuses_the_owner_role_and_demo_accounts(database_url: str, mqtt_url: str) -> None:
    # The test cluster's superuser: it could drop the audit log's triggers.
    with pytest.raises(ProductionRefused, match="superuser"):
        await _start(settings_for(database_url, mqtt_url, mode="production"))
    conn = await asyncpg.connect(database_url)
    try:
        demo_id = await accounts.add_user(
            conn, username="commander", password=PASSWORD, role="commander", demo=True
        )
    finally:
        await conn.close()
    async with app_role(database_url) as server_url:
        with pytest.raises(ProductionRefused, match="demo accounts are enabled: commander"):
            await _start(settings_for(server_url, mqtt_url, mode="production"))
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("UPDATE users SET disabled = true WHERE id = $1", demo_id)
        finally:
            await conn.close()
        settings = settings_for(server_url, mqtt_url, mode="production")
        async with running_server(settings), aiohttp.ClientSession() as http:
            url = f"http://{settings.http_host}:{settings.http_port}/api/openapi.json"
            async with http.get(url) as resp:
                assert resp.status == 200
        # Development mode starts with all of it (the demo's own case).
        async with running_server(settings_for(database_url, mqtt_url)):
            pass


async def test_production_refuses_weak_settings_before_touching_anything(database_url: str) -> None:
    weak = settings_for(database_url, "mqtt://127.0.0.1:1", mode="production")
    with pytest.raises(ProductionRefused, match="EMERGENCY_MQTT_URL has no user name and password"):
        await _start(weak)
