"""The feed's doors: Origin allowlist, revoked sessions, client frame limits."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from tests.integration.helpers import console, running_server, seed_minimal, settings_for


async def test_a_page_on_a_foreign_origin_cannot_open_the_feed(database_url: str, mqtt_url: str) -> None:
    tokens = await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url, allowed_origins=frozenset({"https://wall.example"}))
    url = f"ws://{settings.http_host}:{settings.http_port}/ws"
    own = f"http://{settings.http_host}:{settings.http_port}"
    async with running_server(settings):
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(url, origin=Origin("https://evil.example"))
        assert refused.value.response.status_code == 403
        for origin in (Origin(own), Origin("https://wall.example"), None):
            async with websockets.connect(url, origin=origin) as ws:
                await ws.send(json.dumps({"type": "hello", "token": tokens["viewer"]}))
                assert json.loads(await ws.recv())["type"] == "snapshot"


async def test_logging_out_closes_that_sessions_socket_within_five_seconds(
    database_url: str, mqtt_url: str
) -> None:
    tokens = await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    base = f"http://{settings.http_host}:{settings.http_port}"
    async with running_server(settings), console(settings, tokens["commander"]) as con:
        assert (await con.receive())["type"] == "snapshot"
        async with console(settings, tokens["viewer"]) as other:
            assert (await other.receive())["type"] == "snapshot"
            async with aiohttp.ClientSession() as http:
                headers = {"Authorization": f"Bearer {tokens['commander']}"}
                async with http.post(base + "/api/logout", headers=headers) as resp:
                    assert resp.status in (200, 204)
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(con.ws.recv(), 5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
            assert loop.time() - started < 5
            # Another session's socket stays open.
            await other.ws.send(json.dumps({"type": "ping", "id": 1}))
            assert await other.receive() == {"type": "pong", "id": 1}


async def test_a_console_flooding_frames_or_sending_a_huge_one_is_closed(
    database_url: str, mqtt_url: str
) -> None:
    tokens = await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings):
        async with console(settings, tokens["viewer"]) as con:
            assert (await con.receive())["type"] == "snapshot"
            for n in range(100):
                await con.ws.send(json.dumps({"type": "ping", "id": n}))
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(con.ws.recv(), 5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        async with console(settings, tokens["viewer"]) as con:
            assert (await con.receive())["type"] == "snapshot"
            await con.ws.send(json.dumps({"type": "ping", "pad": "x" * 70_000}))
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(con.ws.recv(), 5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
