"""Session tokens (issue #8): random, stored only hashed, expiring, revocable,
never taken from a URL, and never written to a log or a table in clear.

The server runs in this process (helpers.running_server), so its logging
(``command.*``, ``aiohttp.*``: the access log included) is captured by
caplog at DEBUG, and anything it prints by capfd.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
import websockets

from command.feed_protocol import CLOSE_UNAUTHORIZED
from command.web import COOKIE
from tests.integration.helpers import (
    PASSWORD,
    base_url,
    console,
    running_server,
    seed_minimal,
    settings_for,
)

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43,}$")  # 32 random bytes, URL-safe base64


async def _login(
    http: aiohttp.ClientSession, base: str, username: str, password: str = PASSWORD, **kwargs: Any
) -> tuple[str, aiohttp.ClientResponse, dict[str, Any]]:
    async with http.post(
        base + "/api/login", json={"username": username, "password": password}, **kwargs
    ) as r:
        body = await r.json()
        assert r.status == 200, body
        return body["token"], r, body


async def _status(
    http: aiohttp.ClientSession, base: str, path: str, token: str | None = None, **kwargs: Any
) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.get(base + path, headers=headers, **kwargs) as r:
        return r.status


async def _secrets_in_database(conn: asyncpg.Connection, secrets: Iterable[str]) -> list[str]:
    """Where any of ``secrets`` appears in any row of any table, as text or as the hex of its bytes."""
    tables = await conn.fetch(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')"
    )
    found = []
    for secret in secrets:
        for needle in (secret, secret.encode().hex()):
            for t in tables:
                name = f'"{t["table_schema"]}"."{t["table_name"]}"'
                hits = await conn.fetchval(
                    f"SELECT count(*) FROM {name} x WHERE strpos(x::text, $1) > 0", needle
                )
                if hits:
                    found.append(f"{name} holds {'the hex of ' if needle != secret else ''}{secret[:6]}…")
    return found


async def test_tokens_are_random_and_stored_only_hashed(database_url: str, mqtt_url: str) -> None:
    await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    base = base_url(settings)
    conn = await asyncpg.connect(database_url)
    try:
        async with running_server(settings), aiohttp.ClientSession() as http:
            before = datetime.now(UTC)
            first, resp, body = await _login(http, base, "viewer")
            second, _, _ = await _login(http, base, "viewer")
            assert first != second
            assert TOKEN_RE.match(first) and TOKEN_RE.match(second), (first, second)
            assert body["role"] == "viewer"
            expires = datetime.fromisoformat(body["expires_at"])
            ttl = timedelta(seconds=settings.token_ttl_s)
            assert before + ttl - timedelta(seconds=5) <= expires <= datetime.now(UTC) + ttl
            # The answer carrying a token is never cached.
            assert "no-store" in resp.headers.get("Cache-Control", "")

            hashes = [hashlib.sha256(t.encode()).digest() for t in (first, second)]
            rows = await conn.fetch(
                "SELECT token_hash, user_id FROM sessions WHERE token_hash = ANY($1)", hashes
            )
            assert len(rows) == 2  # each session is found by its token's SHA-256, and only by that
            assert all(
                len(bytes(r["token_hash"])) == 32 for r in await conn.fetch("SELECT token_hash FROM sessions")
            )
            assert await _secrets_in_database(conn, [first, second, PASSWORD]) == []
            assert await _status(http, base, "/api/me", first) == 200
    finally:
        await conn.close()


async def test_login_cookie_flags(database_url: str, mqtt_url: str) -> None:
    await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    base = base_url(settings)
    async with running_server(settings), aiohttp.ClientSession() as http:
        # A TLS-terminating proxy is believed only when it is a trusted one:
        # here nobody is, so the header cannot make the cookie Secure.
        token, resp, _ = await _login(http, base, "viewer", headers={"X-Forwarded-Proto": "https"})
        cookie = resp.cookies[COOKIE]
        assert cookie.value == token
        assert cookie["httponly"] is True
        assert cookie["samesite"] == "Strict"
        assert cookie["path"] == "/"
        assert cookie["max-age"] == str(settings.token_ttl_s)
        assert not cookie["secure"]  # plain HTTP from an untrusted peer
        header = next(h for h in resp.headers.getall("Set-Cookie") if h.startswith(COOKIE + "="))
        assert "HttpOnly" in header and "SameSite=Strict" in header and "Secure" not in header, header

        # The cookie alone opens the session; logout revokes it and clears the cookie.
        async with aiohttp.ClientSession(cookies={COOKIE: token}) as browser:
            assert await _status(browser, base, "/api/me") == 200
        async with http.post(base + "/api/logout", headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 200
            cleared = r.cookies[COOKIE]
            assert cleared.value == "" and cleared["max-age"] == "0"
        assert await _status(http, base, "/api/me", token) == 401
        async with aiohttp.ClientSession(cookies={COOKIE: token}) as browser:
            assert await _status(browser, base, "/api/me") == 401

    # Behind the documented deployment (TLS at a proxy listed in
    # EMERGENCY_TRUSTED_PROXIES), the cookie must be Secure.
    settings = settings_for(database_url, mqtt_url, trusted_proxies=("127.0.0.1",))
    base = base_url(settings)
    async with running_server(settings), aiohttp.ClientSession() as http:
        _, resp, _ = await _login(http, base, "viewer", headers={"X-Forwarded-Proto": "https"})
        assert resp.cookies[COOKIE]["secure"], resp.headers.getall("Set-Cookie")
        assert "Strict-Transport-Security" in resp.headers
        _, resp, _ = await _login(http, base, "viewer")  # the proxy says it came over plain HTTP
        assert not resp.cookies[COOKIE]["secure"]


async def test_expired_or_url_borne_tokens_open_nothing(database_url: str, mqtt_url: str) -> None:
    await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    base = base_url(settings)
    ws_url = base.replace("http://", "ws://", 1) + "/ws"
    conn = await asyncpg.connect(database_url)

    async def expire(token: str) -> None:
        done = await conn.execute(
            "UPDATE sessions SET expires_at = now() - interval '1 second' WHERE token_hash = $1",
            hashlib.sha256(token.encode()).digest(),
        )
        assert done == "UPDATE 1"

    async def refused_feed(hello: dict[str, Any], **kwargs: Any) -> None:
        """The feed answers this hello with ``unauthorized`` and closes 4401."""
        async with websockets.connect(ws_url, open_timeout=10, **kwargs) as ws:
            await ws.send(json.dumps(hello))
            frame = json.loads(await ws.recv())
            assert frame["type"] == "error" and frame["error"]["code"] == "unauthorized", frame
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            assert ws.close_code == CLOSE_UNAUTHORIZED

    try:
        async with running_server(settings), aiohttp.ClientSession() as http:
            token, _, _ = await _login(http, base, "commander")
            # Never from a URL, whatever the parameter is called.
            for param in ("token", "access_token", "session", COOKIE):
                assert await _status(http, base, f"/api/me?{param}={token}") == 401
            await refused_feed({"type": "hello"})  # no token at all
            async with websockets.connect(f"{ws_url}?token={token}", open_timeout=10) as ws:
                await ws.send(json.dumps({"type": "hello"}))
                assert json.loads(await ws.recv())["error"]["code"] == "unauthorized"

            # A session open on the feed is closed when it expires.
            async with console(settings, token) as feed:
                assert (await feed.receive())["type"] == "snapshot"
                await expire(token)
                with pytest.raises(websockets.ConnectionClosed):
                    while True:
                        await feed.receive(timeout=8)
                assert feed.ws.close_code == CLOSE_UNAUTHORIZED

            # Expired: refused by bearer and by cookie, on REST and on the feed.
            assert await _status(http, base, "/api/me", token) == 401
            assert await _status(http, base, "/api/incidents", token) == 401
            async with aiohttp.ClientSession(cookies={COOKIE: token}) as browser:
                assert await _status(browser, base, "/api/me") == 401
            await refused_feed({"type": "hello", "token": token})
            await refused_feed({"type": "hello"}, additional_headers={"Cookie": f"{COOKIE}={token}"})

            # A fresh login works again: it was the session, not the account.
            fresh, _, _ = await _login(http, base, "commander")
            assert await _status(http, base, "/api/me", fresh) == 200
    finally:
        await conn.close()


def _leaks(records: list[logging.LogRecord], secrets: dict[str, str]) -> list[str]:
    found = []
    for record in records:
        if record.name.startswith("websockets"):
            continue  # the test's own client library (it logs the frames it sends)
        texts = [record.getMessage(), repr(record.args), record.exc_text or "", str(record.__dict__)]
        for label, secret in secrets.items():
            if any(secret in text for text in texts):
                found.append(f"{record.name} {record.levelname}: {label} in {record.getMessage()[:200]!r}")
    return found


async def test_no_token_or_password_reaches_a_log(
    database_url: str, mqtt_url: str, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    base = base_url(settings)
    new_password = "battery staple horse correct"
    wrong_password = PASSWORD + "!"
    bogus = "x" * 43
    caplog.set_level(logging.DEBUG)
    for name in ("command", "aiohttp", "aiohttp.access", "aiohttp.server", "aiohttp.web"):
        caplog.set_level(logging.DEBUG, logger=name)
    secrets: dict[str, str] = {
        "password": PASSWORD,
        "new password": new_password,
        "wrong password": wrong_password,
    }
    conn = await asyncpg.connect(database_url)
    try:
        async with running_server(settings), aiohttp.ClientSession() as http:
            async with http.post(
                base + "/api/login", json={"username": "commander", "password": wrong_password}
            ) as r:
                assert r.status == 401
            token, _, _ = await _login(http, base, "commander")
            secrets["token"] = token
            other, _, _ = await _login(http, base, "commander")  # ended by the password change
            secrets["other session's token"] = other
            assert await _status(http, base, "/api/me", token) == 200
            assert await _status(http, base, "/api/incidents?status=all", token) == 200
            assert await _status(http, base, "/api/me", bogus) == 401
            # A misconfigured client puts a token in the URL: refused, and the
            # access log names the path only (command/access_log.py).
            async with http.get(f"{base}/api/units?token={token}") as r:
                assert r.status == 401
            headers = {"Authorization": f"Bearer {token}"}
            report = {"kind": "fire", "severity": "Minor", "lat": 30.27, "lon": 120.15, "title": "Smoke"}
            async with http.post(base + "/api/incidents", json=report, headers=headers) as r:
                assert r.status == 201
            async with aiohttp.ClientSession(cookies={COOKIE: token}) as browser:
                assert await _status(browser, base, "/api/units") == 200
                async with browser.post(base + "/api/incidents", json=report) as r:
                    assert r.status == 403  # cookie without Origin: refused, and logged
            async with console(settings, token) as feed:
                assert (await feed.receive())["type"] == "snapshot"
            async with console(settings, bogus) as feed:
                assert (await feed.receive())["error"]["code"] == "unauthorized"
            change = {"old_password": PASSWORD, "new_password": new_password}
            async with http.post(base + "/api/me/password", json=change, headers=headers) as r:
                assert r.status == 200
            wrong = {"old_password": wrong_password, "new_password": new_password}
            async with http.post(base + "/api/me/password", json=wrong, headers=headers) as r:
                assert r.status == 403, await r.text()
            async with http.post(base + "/api/logout", headers=headers) as r:
                assert r.status == 200
            assert await _status(http, base, "/api/me", token) == 401

        records = caplog.records
        # The capture did see the server: its access log and its own warnings.
        assert any(r.name == "aiohttp.access" and "/api/units" in r.getMessage() for r in records), [
            r.name for r in records
        ]
        assert any(r.name.startswith("command") for r in records)
        assert _leaks(records, secrets) == []
        assert _leaks(records, {"bogus token": bogus}) == []
        printed = capfd.readouterr()
        for label, secret in secrets.items():
            assert secret not in printed.out and secret not in printed.err, f"{label} printed"
        # Nor in any table (the audit log recorded all of the above).
        assert await conn.fetchval("SELECT count(*) FROM audit_log") >= 6
        assert await _secrets_in_database(conn, [*secrets.values(), bogus]) == []
    finally:
        await conn.close()
