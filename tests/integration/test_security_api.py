"""Accounts, sessions, the login limit, cross-site requests, headers and the audit trail over HTTP."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from command.web import COOKIE
from tests.integration.helpers import PASSWORD, base_url, running_server, settings_for
from tests.integration.security_world import app_role, build_world, call, seed_accounts_and_city

NEW_PASSWORD = "a much better passphrase"


async def _login(
    http: aiohttp.ClientSession, base: str, username: str, password: str, **kwargs: Any
) -> tuple[int, Any]:
    """POST /api/login (``kwargs`` as for ``call``, e.g. ``headers``): its status and body."""
    return await call(
        http, base, "POST", "/api/login", None, {"username": username, "password": password}, **kwargs
    )


async def test_five_failed_logins_lock_the_account_and_twenty_lock_the_address(
    database_url: str, mqtt_url: str
) -> None:
    tokens, ids = await seed_accounts_and_city(database_url)
    # The test client connects from 127.0.0.1: trusted as a proxy here, so
    # X-Forwarded-For plays the part of many client addresses.
    settings = settings_for(database_url, mqtt_url, trusted_proxies=("127.0.0.1",))
    base = base_url(settings)
    async with running_server(settings), aiohttp.ClientSession() as http:
        one = {"X-Forwarded-For": "203.0.113.7"}
        for _ in range(5):
            status, _body = await _login(http, base, "commander", "wrong", headers=one)
            assert status == 401
        # The sixth, even with the right password, is refused unchecked.
        async with http.post(
            base + "/api/login", json={"username": "commander", "password": PASSWORD}, headers=one
        ) as resp:
            assert resp.status == 429
            wait = int(resp.headers["Retry-After"])
            assert 800 < wait <= 900
            assert (await resp.json())["error"]["code"] == "too_many_attempts"
        # From another address too: the limit is the account's.
        status, _ = await _login(
            http, base, "commander", PASSWORD, headers={"X-Forwarded-For": "198.51.100.1"}
        )
        assert status == 429
        # Another account is not affected.
        status, _ = await _login(http, base, "viewer", PASSWORD, headers=one)
        assert status == 200

        # One address guessing at many accounts: 20 failures, then 429 for any account.
        many = {"X-Forwarded-For": "192.0.2.50"}
        for n in range(20):
            status, _ = await _login(http, base, f"nobody{n}", "x", headers=many)
            assert status == 401
        status, _ = await _login(http, base, "viewer", PASSWORD, headers=many)
        assert status == 429
        # The client cannot pick its address: a forged header to the left of
        # the trusted proxy's is not believed.
        status, _ = await _login(
            http, base, "viewer", PASSWORD, headers={"X-Forwarded-For": "192.0.2.99, 192.0.2.50"}
        )
        assert status == 429

        # An administrator's password reset unlocks the account.
        status, _ = await call(
            http,
            base,
            "POST",
            f"/api/users/{ids['commander']}/password",
            tokens["admin"],
            {"password": NEW_PASSWORD},
        )
        assert status == 200
        status, _ = await _login(http, base, "commander", NEW_PASSWORD, headers=one)
        assert status == 200
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT outcome, status, address FROM audit_log "
            "WHERE action = 'session.login' AND actor = 'commander'"
        )
    finally:
        await conn.close()
    outcomes = [(r["outcome"], r["status"]) for r in rows]
    assert outcomes.count(("failed", 401)) == 5 and outcomes.count(("denied", 429)) == 2
    assert {r["address"] for r in rows} == {"203.0.113.7", "198.51.100.1"}


async def test_untrusted_forwarded_for_is_ignored(database_url: str, mqtt_url: str) -> None:
    await seed_accounts_and_city(database_url)
    settings = settings_for(database_url, mqtt_url)  # no trusted proxy
    async with running_server(settings), aiohttp.ClientSession() as http:
        await _login(http, base_url(settings), "viewer", "nope", headers={"X-Forwarded-For": "203.0.113.9"})
    conn = await asyncpg.connect(database_url)
    try:
        assert (
            await conn.fetchval("SELECT address FROM audit_log WHERE action = 'session.login'") == "127.0.0.1"
        )
    finally:
        await conn.close()


async def test_metrics_answer_only_the_monitoring_network(database_url: str, mqtt_url: str) -> None:
    await seed_accounts_and_city(database_url)
    elsewhere = settings_for(database_url, mqtt_url, metrics_networks=("10.8.0.0/16",))
    # We are 127.0.0.1, not the scraper; a forwarded address changes nothing.
    forwarded = {"X-Forwarded-For": "10.8.0.5"}
    async with (
        running_server(elsewhere),
        aiohttp.ClientSession() as http,
        http.get(f"{base_url(elsewhere)}/metrics", headers=forwarded) as r,
    ):
        assert r.status == 403
        assert (await r.json())["error"]["code"] == "forbidden"
    here = settings_for(database_url, mqtt_url)  # the host itself, by default
    async with (
        running_server(here),
        aiohttp.ClientSession() as http,
        http.get(f"{base_url(here)}/metrics") as r,
    ):
        assert r.status == 200
        assert "emergency_" in await r.text()


async def test_password_and_role_changes_end_sessions(database_url: str, mqtt_url: str) -> None:
    tokens, ids = await seed_accounts_and_city(database_url)
    settings = settings_for(database_url, mqtt_url)
    base = base_url(settings)
    async with running_server(settings), aiohttp.ClientSession() as http:
        # Two sessions of the commander: the one that changes the password stays.
        status, body = await _login(http, base, "commander", PASSWORD)
        other = body["token"]
        status, body = await call(
            http,
            base,
            "POST",
            "/api/me/password",
            tokens["commander"],
            {"old_password": "not it at all", "new_password": NEW_PASSWORD},
        )
        assert status == 403 and body["error"]["code"] == "wrong_password"
        status, _ = await call(
            http,
            base,
            "POST",
            "/api/me/password",
            tokens["commander"],
            {"old_password": PASSWORD, "new_password": "short"},
        )
        assert status == 400
        status, _ = await call(
            http,
            base,
            "POST",
            "/api/me/password",
            tokens["commander"],
            {"old_password": PASSWORD, "new_password": NEW_PASSWORD},
        )
        assert status == 200
        assert (await call(http, base, "GET", "/api/me", other))[0] == 401
        assert (await call(http, base, "GET", "/api/me", tokens["commander"]))[0] == 200
        assert (await _login(http, base, "commander", PASSWORD))[0] == 401
        assert (await _login(http, base, "commander", NEW_PASSWORD))[0] == 200

        # A role change ends the sessions, WebSockets included (within the hub's 2 s sweep).
        ws_url = f"ws://{settings.http_host}:{settings.http_port}/ws"
        async with websockets.connect(ws_url) as ws:
            await ws.send(json.dumps({"type": "hello", "token": tokens["dispatcher"]}))
            assert json.loads(await ws.recv())["type"] == "snapshot"
            status, body = await call(
                http, base, "POST", f"/api/users/{ids['dispatcher']}", tokens["admin"], {"role": "viewer"}
            )
            assert status == 200 and body["role"] == "viewer"
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        assert (await call(http, base, "GET", "/api/me", tokens["dispatcher"]))[0] == 401
        status, body = await _login(http, base, "dispatcher", PASSWORD)
        assert status == 200 and body["role"] == "viewer"

        # An administrator resets a password: the account's sessions end.
        status, _ = await call(
            http,
            base,
            "POST",
            f"/api/users/{ids['viewer']}/password",
            tokens["admin"],
            {"password": NEW_PASSWORD},
        )
        assert status == 200
        assert (await call(http, base, "GET", "/api/me", tokens["viewer"]))[0] == 401
        # One's own password is not reset this way (it needs the old one).
        status, _ = await call(
            http,
            base,
            "POST",
            f"/api/users/{ids['admin']}/password",
            tokens["admin"],
            {"password": NEW_PASSWORD},
        )
        assert status == 409

        # Disabling ends the sessions and refuses logins.
        status, body = await call(
            http, base, "POST", f"/api/users/{ids['field']}", tokens["admin"], {"disabled": True}
        )
        assert status == 200 and body["disabled"] is True
        assert (await call(http, base, "GET", "/api/me", tokens["field"]))[0] == 401
        assert (await _login(http, base, "field", PASSWORD))[0] == 401


async def test_admins_manage_users_within_the_rules(database_url: str, mqtt_url: str) -> None:
    tokens, ids = await seed_accounts_and_city(database_url)
    settings = settings_for(database_url, mqtt_url)
    base = base_url(settings)
    admin = tokens["admin"]
    async with running_server(settings), aiohttp.ClientSession() as http:
        status, body = await call(
            http,
            base,
            "POST",
            "/api/users",
            admin,
            {
                "username": "medic7",
                "password": PASSWORD,
                "role": "field",
                "unit_id": "U-2",
                "districts": ["D-1"],
            },
        )
        assert status == 201 and body["unit_id"] == "U-2" and body["districts"] == ["D-1"]
        assert "password_hash" not in body
        for bad, why in (
            ({"username": "x1", "password": PASSWORD, "role": "field"}, "needs unit_id"),
            ({"username": "x2", "password": PASSWORD, "role": "viewer", "unit_id": "U-2"}, "only a field"),
            ({"username": "x3", "password": "short", "role": "viewer"}, "at least 10"),
            ({"username": "x4", "password": PASSWORD, "role": "viewer", "districts": ["D-9"]}, "D-9"),
            ({"username": "x5", "password": PASSWORD, "role": "boss"}, "role must be"),
        ):
            status, body = await call(http, base, "POST", "/api/users", admin, bad)
            assert status == 400 and why in body["error"]["message"], (bad, body)
        status, body = await call(
            http,
            base,
            "POST",
            "/api/users",
            admin,
            {"username": "medic7", "password": PASSWORD, "role": "viewer"},
        )
        assert status == 409
        # Field -> commander drops the unit with the field role.
        status, body = await call(
            http, base, "POST", f"/api/users/{ids['field']}", admin, {"role": "commander"}
        )
        assert status == 200 and body["unit_id"] is None
        status, body = await call(http, base, "POST", f"/api/users/{ids['viewer']}", admin, {"password": "x"})
        assert status == 400
        # The last enabled administrator cannot be demoted or disabled.
        for change in ({"role": "viewer"}, {"disabled": True}):
            status, body = await call(http, base, "POST", f"/api/users/{ids['admin']}", admin, change)
            assert status == 409 and body["error"]["code"] == "last_admin"
        status, _ = await call(http, base, "POST", f"/api/users/{ids['commander']}", admin, {"role": "admin"})
        assert status == 200
        status, _ = await call(http, base, "POST", f"/api/users/{ids['admin']}", admin, {"role": "viewer"})
        assert status == 200
        assert (await call(http, base, "GET", "/api/me", admin))[0] == 401  # demoted: its sessions ended
        assert (await call(http, base, "GET", "/api/me", tokens["commander"]))[
            0
        ] == 401  # promoted: so did these
        assert (await call(http, base, "GET", "/api/users", tokens["dispatcher"]))[0] == 403


async def test_cookie_requests_must_come_from_our_origin(database_url: str, mqtt_url: str) -> None:
    await seed_accounts_and_city(database_url)
    settings = settings_for(database_url, mqtt_url, allowed_origins=frozenset({"https://wall.example"}))
    base = base_url(settings)
    report = {"kind": "fire", "severity": "Minor", "lat": 30.2, "lon": 120.1, "title": "Smoke"}
    async with running_server(settings), aiohttp.ClientSession() as http:
        async with http.post(
            base + "/api/login", json={"username": "commander", "password": PASSWORD}
        ) as resp:
            assert resp.status == 200
            cookie = resp.cookies[COOKIE]
            assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
            token = (await resp.json())["token"]
        jar = {COOKIE: cookie.value}

        async def post(headers: dict[str, str]) -> int:
            async with (
                aiohttp.ClientSession(cookies=jar) as browser,
                browser.post(base + "/api/incidents", json=report, headers=headers) as r,
            ):
                return r.status

        assert await post({}) == 403  # cookie, no Origin, no Referer
        assert await post({"Origin": "https://evil.example"}) == 403
        assert await post({"Origin": "null"}) == 403
        assert await post({"Referer": "https://evil.example/page"}) == 403
        assert await post({"Origin": base}) == 201
        assert await post({"Referer": base + "/?bbox=1,2,3,4"}) == 201
        assert await post({"Origin": "https://wall.example"}) == 201
        # Reading with the cookie needs no Origin (it changes nothing).
        async with aiohttp.ClientSession(cookies=jar) as browser, browser.get(base + "/api/me") as r:
            assert r.status == 200
        # A bearer token is not sent by browsers on their own: no Origin needed.
        status, _ = await call(http, base, "POST", "/api/incidents", token, report)
        assert status == 201
        # Login CSRF: another site's page cannot log us in.
        status, body = await _login(
            http, base, "viewer", PASSWORD, headers={"Origin": "https://evil.example"}
        )
        assert status == 403 and body["error"]["code"] == "cross_site_request"


async def test_security_headers_on_pages_api_and_files(database_url: str, mqtt_url: str) -> None:
    settings = settings_for(database_url, mqtt_url)
    base = base_url(settings)
    async with running_server(settings), aiohttp.ClientSession() as http:
        for path, kind in (
            ("/", "page"),
            ("/field", "page"),
            ("/api/me", "api"),
            ("/api/nothing-here", "api"),
            ("/static/console.js", "file"),
            ("/healthz", "other"),
        ):
            async with http.get(base + path) as resp:
                h = resp.headers
                assert h["X-Content-Type-Options"] == "nosniff", path
                assert h["X-Frame-Options"] == "DENY", path
                assert h["Referrer-Policy"] == "same-origin", path
                csp = h["Content-Security-Policy"]
                assert "frame-ancestors 'none'" in csp, path
                if kind == "page":
                    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
                else:
                    assert csp.startswith("default-src 'none'"), path
                if kind == "api":
                    assert h["Cache-Control"] == "no-store"
                assert "Strict-Transport-Security" not in h  # plain HTTP here
        # The pages run no inline script (the CSP would block it).
        for page in ("index.html", "field.html"):
            html = (settings.frontend_dir / page).read_text()
            assert "<script>" not in html and " on" not in html.split("<body", 1)[1].split(">", 1)[0]
            for tag in html.split("<script")[1:]:
                assert "src=" in tag.split(">", 1)[0], f"{page}: an inline <script>"


async def test_a_scripted_scenario_leaves_its_audit_trail(database_url: str, mqtt_url: str) -> None:
    tokens, ids = await seed_accounts_and_city(database_url)
    async with app_role(database_url) as server_url:
        settings = settings_for(server_url, mqtt_url)
        base = base_url(settings)
        started = datetime.now(UTC) - timedelta(seconds=1)
        async with running_server(settings), aiohttp.ClientSession() as http:
            world = await build_world(http, settings, tokens, ids)  # 3 incidents, 3 dispatches, 3 tasks
            cmd = tokens["commander"]
            i1, p1, t1 = world.incidents["I1"], world.dispatches["P1"], world.tasks["T1"]
            assert (await _login(http, base, "viewer", "bad"))[0] == 401
            status, body = await _login(http, base, "viewer", PASSWORD)
            viewer = body["token"]
            assert (await call(http, base, "POST", "/api/logout", viewer))[0] == 200
            assert (
                await call(
                    http,
                    base,
                    "POST",
                    f"/api/dispatches/{p1}/status",
                    tokens["field"],
                    {"status": "acknowledged"},
                )
            )[0] == 200
            assert (
                await call(http, base, "POST", f"/api/incidents/{i1}/status", cmd, {"status": "contained"})
            )[0] == 200
            assert (
                await call(
                    http,
                    base,
                    "POST",
                    f"/api/tasks/{t1}",
                    tokens["field"],
                    {"status": "done", "result": "ok"},
                )
            )[0] == 200
            # Refused: U-1 is busy. Nothing dispatched, and the refusal recorded.
            status, _ = await call(
                http, base, "POST", f"/api/incidents/{i1}/dispatches", cmd, {"units": ["U-1"]}
            )
            assert status == 409
            status, _ = await call(
                http,
                base,
                "POST",
                "/api/import/units",
                tokens["admin"],
                data=b"id,callsign,type,capabilities,crew,station,district_id,status,lat,lon\n"
                b"U-9,Engine 9,fire_engine,,4,,D-1,available,30.27,120.15\n",
                headers={"Content-Type": "text/csv"},
            )
            assert status == 201
            status, body = await call(
                http,
                base,
                "POST",
                "/api/users",
                tokens["admin"],
                {"username": "newbie", "password": PASSWORD, "role": "viewer"},
            )
            assert status == 201
            assert (
                await call(
                    http, base, "POST", f"/api/users/{body['id']}", tokens["admin"], {"disabled": True}
                )
            )[0] == 200

            status, body = await call(http, base, "GET", "/api/audit?limit=5000", tokens["admin"])
            assert status == 200
            entries = body["entries"]
            assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)
            seen = {(e["action"], e["actor"], e["outcome"]) for e in entries}
            for expected in (
                ("session.login", "viewer", "failed"),
                ("session.login", "viewer", "ok"),
                ("session.logout", "viewer", "ok"),
                ("incident.create", "admin", "ok"),
                ("dispatch.create", "admin", "ok"),
                ("task.create", "admin", "ok"),
                ("dispatch.status", "field", "ok"),
                ("incident.status", "commander", "ok"),
                ("task.update", "field", "ok"),
                ("dispatch.create", "commander", "failed"),
                ("import.data", "admin", "ok"),
                ("user.create", "admin", "ok"),
                ("user.update", "admin", "ok"),
            ):
                assert expected in seen, expected
            for e in entries:
                assert e["address"] == "127.0.0.1" and e["at"] >= started.isoformat()[:19]
            refused = next(
                e for e in entries if e["action"] == "dispatch.create" and e["outcome"] == "failed"
            )
            assert refused["status"] == 409 and refused["target"] == f"incident:{i1}"
            assert "U-1" in refused["detail"]["message"]
            update = next(e for e in entries if e["action"] == "user.update")
            assert update["detail"]["changes"] == {"disabled": [False, True]}

            # Filters.
            status, body = await call(
                http, base, "GET", "/api/audit?actor=field&action=dispatch.", tokens["admin"]
            )
            assert {(e["actor"], e["action"]) for e in body["entries"]} == {("field", "dispatch.status")}
            status, body = await call(
                http, base, "GET", "/api/audit?action=session.login&limit=1", tokens["admin"]
            )
            assert len(body["entries"]) == 1 and body["entries"][0]["outcome"] == "ok"
            tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
            status, body = await call(http, base, "GET", f"/api/audit?since={tomorrow}", tokens["admin"])
            assert status == 200 and body["entries"] == []
            assert (await call(http, base, "GET", "/api/audit?since=yesterday", tokens["admin"]))[0] == 400
            assert (await call(http, base, "GET", "/api/audit", tokens["commander"]))[0] == 403

        conn = await asyncpg.connect(database_url)
        try:
            # The refused dispatch left no dispatch row and no "ok" audit row.
            assert await conn.fetchval("SELECT count(*) FROM dispatches WHERE unit_id = 'U-1'") == 1
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM audit_log "
                    "WHERE action = 'dispatch.create' AND actor = 'commander' AND outcome = 'ok'"
                )
                == 0
            )
        finally:
            await conn.close()
