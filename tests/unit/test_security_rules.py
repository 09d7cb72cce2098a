"""Pure security rules: client addresses, cross-site requests, headers, production
settings, the route table."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from command import api_routes, auth
from command.client_address import client_address, parse_networks, peer_in
from command.http_guard import cross_site_refusal, outcome_of, page_csp, security_headers, tile_source
from command.production import settings_problems
from command.settings import Settings, load

PROXIES = parse_networks(["10.0.0.0/8", "::1"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.5", [], "203.0.113.5"),
        # Not from a trusted proxy: the header is the client's own word, ignored.
        ("203.0.113.5", ["198.51.100.1"], "203.0.113.5"),
        ("10.0.0.2", ["198.51.100.1"], "198.51.100.1"),
        # The client wrote the left part itself; the proxy appended what it saw.
        ("10.0.0.2", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),
        # Two trusted proxies in a row are skipped.
        ("10.0.0.2", ["198.51.100.1, 10.0.0.7"], "198.51.100.1"),
        ("10.0.0.2", ["198.51.100.1", "10.0.0.9"], "198.51.100.1"),
        # Garbage from the proxy: we know no further than the proxy.
        ("10.0.0.2", ["not-an-address"], "10.0.0.2"),
        ("10.0.0.2", ["[2001:db8::1]:443"], "2001:db8::1"),
        ("10.0.0.2", ["192.0.2.1:5555"], "192.0.2.1"),
        ("::ffff:203.0.113.5", [], "203.0.113.5"),
        ("::1", ["2001:db8::2"], "2001:db8::2"),
        (None, ["198.51.100.1"], "unknown"),
    ],
)
def test_client_address(peer: str | None, forwarded: list[str], expected: str) -> None:
    assert client_address(peer, forwarded, PROXIES) == expected


def test_metrics_are_for_the_monitoring_network_by_its_own_address() -> None:
    assert load({}).metrics_networks == ("127.0.0.0/8", "::1")
    networks = parse_networks(load({"EMERGENCY_METRICS_NETWORKS": "10.8.0.0/16"}).metrics_networks)
    assert peer_in("10.8.3.4", networks)
    assert not peer_in("10.9.0.1", networks)
    assert not peer_in("127.0.0.1", networks)
    assert not peer_in(None, networks)
    assert peer_in("::ffff:10.8.0.1", networks)
    with pytest.raises(ValueError, match="EMERGENCY_METRICS_NETWORKS"):
        load({"EMERGENCY_METRICS_NETWORKS": "everyone"})


def test_bad_proxy_entries_are_refused_at_start() -> None:
    with pytest.raises(ValueError, match="EMERGENCY_TRUSTED_PROXIES"):
        load({"EMERGENCY_TRUSTED_PROXIES": "10.0.0.1, nonsense"})
    assert load({"EMERGENCY_TRUSTED_PROXIES": "10.0.0.1, 10.1.0.0/16"}).trusted_proxies == (
        "10.0.0.1",
        "10.1.0.0/16",
    )


OWN = "console.example:8080"


@pytest.mark.parametrize(
    ("method", "origin", "referer", "cookie", "refused"),
    [
        ("GET", "https://evil.example", None, True, False),  # safe methods change nothing
        ("POST", None, None, True, True),  # a cookie must say where it comes from
        ("POST", None, None, False, False),  # not a browser: nothing to forge
        ("POST", "http://console.example:8080", None, True, False),
        ("POST", "https://console.example:8080", None, True, False),
        ("POST", "http://console.example", None, True, True),  # another port is another origin
        ("POST", "https://evil.example", None, True, True),
        ("POST", "https://evil.example", None, False, True),  # login CSRF: named foreign origin
        ("POST", "null", None, True, True),
        ("POST", None, "http://console.example:8080/field?x=1", True, False),
        ("POST", None, "https://evil.example/", True, True),
        ("POST", None, "about:blank", True, True),
        ("POST", "https://wall.example", None, True, False),
        ("DELETE", "https://evil.example", None, True, True),
    ],
)
def test_cross_site_refusal(
    method: str, origin: str | None, referer: str | None, cookie: bool, refused: bool
) -> None:
    answer = cross_site_refusal(
        method, origin, referer, OWN, frozenset({"https://wall.example"}), cookie_auth=cookie
    )
    assert (answer is not None) == refused, answer


def test_security_headers() -> None:
    page = security_headers(True, "/", secure=True, page_policy=page_csp())
    assert page["Content-Security-Policy"] == page_csp()
    assert "'unsafe-inline'" not in page_csp() and "frame-ancestors 'none'" in page_csp()
    assert page["Strict-Transport-Security"].startswith("max-age=")
    assert "Cache-Control" not in page
    api = security_headers(False, "/api/incidents", secure=False, page_policy=page_csp())
    assert api["Content-Security-Policy"].startswith("default-src 'none'")
    assert api["Cache-Control"] == "no-store" and "Strict-Transport-Security" not in api
    for headers in (page, api):
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"


def test_the_map_may_load_tiles_from_the_configured_tile_server_only() -> None:
    assert tile_source("https://{s}.tiles.example/{z}/{x}/{y}.png") == "https://*.tiles.example"
    assert tile_source("http://tiles.local:8081/{z}/{x}/{y}.png") == "http://tiles.local:8081"
    assert tile_source("/tiles/{z}/{x}/{y}.png") is None
    assert tile_source("") is None
    assert "img-src 'self' data: blob: https://t.example;" in page_csp(("https://t.example",))


def test_outcomes() -> None:
    assert [outcome_of(s) for s in (200, 201, 400, 401, 403, 404, 409, 429, 500, 503)] == [
        "ok",
        "ok",
        "failed",
        "denied",
        "denied",
        "failed",
        "failed",
        "denied",
        "error",
        "error",
    ]


GOOD = Settings(
    database_url="postgresql://app:long-enough-secret@db.internal:5432/city",
    mqtt_url="mqtt://server:another-long-secret@broker.internal:1883",
    mode="production",
)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({}, None),
        ({"database_url": "postgresql://app@db.internal/city"}, "no password for the non-local host"),
        ({"database_url": "postgresql://app@127.0.0.1/city"}, None),  # loopback: the OS vouches
        ({"database_url": "postgresql://app@/city?host=/run/postgresql"}, None),  # a Unix socket
        ({"database_url": "postgresql://app:short@db.internal/city"}, "shorter than 12"),
        ({"direct_database_url": "postgresql://app@db.internal/city"}, "EMERGENCY_DIRECT_DATABASE_URL"),
        ({"mqtt_url": "mqtt://broker.internal:1883"}, "anonymous"),
        ({"mqtt_url": "mqtt://server:pw@broker.internal:1883"}, "shorter than 12"),
        ({"trusted_proxies": ("0.0.0.0/0",)}, "trusts every address"),
        ({"trusted_proxies": ("10.0.0.0/8",)}, None),
    ],
)
def test_production_settings(changes: dict[str, Any], problem: str | None) -> None:
    from dataclasses import replace

    problems = settings_problems(replace(GOOD, **changes))
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0]


def test_mode_and_retention_are_checked_at_start() -> None:
    assert load({}).mode == "development"
    assert load({"EMERGENCY_MODE": "production"}).mode == "production"
    with pytest.raises(ValueError, match="EMERGENCY_MODE"):
        load({"EMERGENCY_MODE": "prod"})
    assert load({}).audit_retention_days == 400
    with pytest.raises(ValueError, match="at least 183"):
        load({"EMERGENCY_AUDIT_RETENTION_DAYS": "90"})


def test_every_state_change_is_audited_and_every_route_is_described() -> None:
    doc = api_routes.openapi("1")
    assert doc["openapi"] == "3.1.0"
    for route in api_routes.ROUTES:
        op = doc["paths"][route.path][route.method.lower()]
        assert op["summary"] and op["responses"], route.key
        if route.roles is not None:
            assert {"401", "403"} <= op["responses"].keys(), route.key
        if route.method == "POST" and route.key != ("POST", "/api/my/position"):
            assert route.audit, f"{route.key} changes something and must be audited"
        if "{" in route.path:
            names = {p.name for p in route.params if p.location == "path"}
            assert names == {route.path.split("{")[1].split("}")[0]}, route.key
    # Administration is for administrators only.
    for route in api_routes.ROUTES:
        if route.path.startswith(
            ("/api/users", "/api/audit", "/api/import", "/api/export", "/api/dead-letters")
        ):
            assert route.roles == ("admin",), route.key
    # A viewer changes nothing.
    assert not [
        r.key
        for r in api_routes.ROUTES
        if r.method == "POST"
        and r.roles
        and "viewer" in r.roles
        and r.path not in ("/api/logout", "/api/me/password")
    ]


def test_passwords_are_salted_scrypt_with_their_parameters_and_old_hashes_still_verify() -> None:
    first, second = auth.hash_password("correct horse"), auth.hash_password("correct horse")
    assert first != second, "a fresh salt each time"
    scheme, n, r, p, salt, digest = first.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", 2**14, 8, 1)
    assert (
        len(base64.urlsafe_b64decode(salt + "==")) == 16 and len(base64.urlsafe_b64decode(digest + "=")) == 32
    )
    assert auth.verify_password("correct horse", first) and auth.verify_password("correct horse", second)
    assert not auth.verify_password("correct horse!", first)
    # Parameters travel with the hash: one made with weaker ones still verifies.
    old_salt = b"\x07" * 16
    old = hashlib.scrypt(b"pw", salt=old_salt, n=2**10, r=8, p=1, dklen=32)
    stored = f"scrypt${2**10}$8$1${base64.urlsafe_b64encode(old_salt).decode().rstrip('=')}$" + (
        base64.urlsafe_b64encode(old).decode().rstrip("=")
    )
    assert auth.verify_password("pw", stored) and not auth.verify_password("pw2", stored)
    assert not auth.verify_password("pw", "md5$whatever") and not auth.verify_password("pw", "garbage")
