"""GET /api/openapi.json: honest (every registered route, nothing else) and
held to by the server (schemathesis finds no 5xx and no response outside it)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import aiohttp

from command.api_routes import ROUTES, STATIC_PREFIXES, roles_markdown
from tests.integration.helpers import running_server, settings_for
from tests.integration.security_world import app_role, build_world, seed_accounts_and_city

ROOT = Path(__file__).resolve().parents[2]
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"

#: Checks run on every generated call. Together: no 5xx, every status, media
#: type, header and body as the document says.
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)

#: Left out of the fuzzing, each covered by its own tests: they end or take
#: over the session the fuzzer runs with (logging out, demoting or resetting
#: the administrator it signs in as), so every later call would only get 401.
NOT_FUZZED = ("/api/logout", "/api/users/{id}", "/api/users/{id}/password")


async def test_the_document_lists_exactly_the_registered_routes(database_url: str, mqtt_url: str) -> None:
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings) as app, aiohttp.ClientSession() as http:
        registered: set[tuple[str, str]] = set()
        static: set[str] = set()
        for route in app.router.routes():
            info = route.resource.get_info() if route.resource is not None else {}
            if "prefix" in info:  # a static file tree
                static.add(str(info["prefix"]).rstrip("/") + "/")
                continue
            if route.method in ("HEAD", "OPTIONS"):
                continue  # aiohttp adds HEAD beside every GET
            assert route.resource is not None
            registered.add((route.method, route.resource.canonical))
        listed = {r.key for r in ROUTES}
        assert registered - listed == set(), "registered but missing from command/api_routes.py ROUTES"
        assert listed - registered == set(), "in command/api_routes.py ROUTES but not registered"
        assert static <= set(STATIC_PREFIXES)

        base = f"http://{settings.http_host}:{settings.http_port}"
        async with http.get(base + "/api/openapi.json") as resp:
            assert resp.status == 200
            doc = await resp.json()
        assert doc["openapi"].startswith("3.1")
        documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
        assert documented == listed
        # Every state change is audited, except the phone's position reports (telemetry).
        unaudited = {r.key for r in ROUTES if r.method == "POST" and r.audit is None}
        assert unaudited == {("POST", "/api/my/position")}


def test_the_roles_table_in_the_docs_is_the_route_table() -> None:
    text = (ROOT / "docs" / "security.md").read_text()
    assert roles_markdown() in text, "regenerate the table: python -m command.api_routes"


async def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    database_url: str, mqtt_url: str, tmp_path: Path
) -> None:
    tokens, ids = await seed_accounts_and_city(database_url)
    async with app_role(database_url) as server_url:
        # The owner's URL too, as `emergency up` gives it: road imports stage in a schema of their own.
        settings = settings_for(server_url, mqtt_url, migrate_database_url=database_url)
        async with running_server(settings), aiohttp.ClientSession() as http:
            await build_world(http, settings, tokens, ids)
            base = f"http://{settings.http_host}:{settings.http_port}"
            args = [
                str(SCHEMATHESIS),
                "run",
                f"{base}/api/openapi.json",
                "--checks",
                ",".join(CHECKS),
                "--max-examples",
                "6",
                "--phases",
                "examples,coverage,fuzzing",
                "--seed",
                "8",
                "--generation-database",
                "none",
                "--request-timeout",
                "20",
                # One worker: hypothesis describing strategies from several
                # threads at once trips a CPython 3.11 ast.parse race.
                "--workers",
                "1",
                "--no-color",
                "-H",
                f"Authorization: Bearer {tokens['admin']}",
            ]
            for path in NOT_FUZZED:
                args += ["--exclude-path", path]
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
                # It keeps a crash cache in ./.schemathesis: not in the checkout.
                cwd=tmp_path,
            )
            out, _ = await asyncio.wait_for(proc.communicate(), 100)
    text = out.decode(errors="replace")
    (tmp_path / "schemathesis.txt").write_text(text)
    assert proc.returncode == 0, f"{tmp_path / 'schemathesis.txt'}:\n{text[-6000:]}"
    # It did test something: every operation it was given, many cases each.
    selected = re.search(r"Selected: (\d+)/(\d+)", text)
    tested = re.search(r"Tested: (\d+)", text)
    assert selected and tested and tested.group(1) == selected.group(1), text[-2000:]
    # Its own total is one lower than the document's (4.32 reports 43 of our 44).
    assert int(selected.group(1)) >= sum(r.path not in NOT_FUZZED for r in ROUTES) - 1, text[-2000:]
    cases = re.search(r"(\d+) generated, (\d+) passed", text)
    assert cases and int(cases.group(1)) >= 500 and cases.group(1) == cases.group(2), text[-2000:]
