"""The console's views beside the map (issue #7), in a real browser against the real server.

The units board with live position ages, the depots board's low-stock
warnings, the rejected-messages panel (administrators only), the KPI
dashboard's charts, the queue's SLA clock and district filter, the raster
tile setting, the language switch on every view, and screenshots of every
view at desktop and phone sizes (saved under ``test-artifacts/`` at the repo
root).

One database, one server and one Chromium serve the whole module (each test
has its own browser context), so the tests share a city and never assume an
empty one: each creates what it checks and looks for its own rows. Every test
fails on a browser console error or an uncaught page error. Pages sign in
through the API (the session cookie), not the form: the form's path starts
with the 401 that tells the page to show it, which Chromium logs as a console
error; the form itself is tested in test_console.py. No sleeps: every wait is
playwright's auto-retrying ``expect``.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Browser, BrowserContext, Page, ViewportSize, async_playwright, expect
from shapely.geometry import MultiPolygon, Point, box

from command import db
from command.keys import HUB
from command.settings import Settings
from tests.browser.conftest import CHROMIUM_ARGS, BrowserErrors
from tests.browser.test_console import other_language_strings
from tests.conftest import PostgresServer
from tests.integration.helpers import (
    PASSWORD,
    end_sessions,
    publisher,
    running_server,
    seed_minimal,
    settings_for,
    wait_for_value,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
ROWS = "#incident-queue > li[data-incident-id]"
DESKTOP = ViewportSize(width=1440, height=900)
PHONE = ViewportSize(width=390, height=844)
# Short, so a test sees an incident cross it (the default is NFPA 1221's 60 s).
SLA_DISPATCH_S = 4
TILE_URL = "/test-tiles/{z}/{x}/{y}.png"
TILE_ATTRIBUTION = "Test tiles © Example Mapping"
# A 1x1 transparent PNG: what the tile route answers.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


@dataclass
class City:
    settings: Settings
    app: web.Application
    database_url: str
    mqtt_url: str
    tokens: dict[str, str]

    @property
    def base(self) -> str:
        return f"http://{self.settings.http_host}:{self.settings.http_port}"


async def seed_city(database_url: str) -> dict[str, str]:
    """seed_minimal (district D-1, Engine 1, the users) plus a second district,
    units of several types and states, and three depots whose stock is ok, low,
    out, expired, or of an item no plan names."""
    tokens = await seed_minimal(database_url)
    conn = await asyncpg.connect(database_url)
    await db.register_codecs(conn)
    try:
        await conn.execute(
            "INSERT INTO districts (id, name, geom) VALUES ('D-2', 'River district', $1)",
            MultiPolygon([box(121.0, 30.0, 121.3, 30.5)]),
        )
        hour = timedelta(hours=1)
        units = [
            # id, callsign, type, capabilities, position, age of the position, status
            ("U-2", "Engine 2", "fire_engine", ["rescue"], Point(120.165, 30.265), 2 * hour, "available"),
            ("U-3", "Medic 3", "ambulance", ["medical"], Point(120.162, 30.262), 0 * hour, "available"),
            ("U-4", "Rescue 4", "rescue_squad", ["rescue"], Point(120.17, 30.27), hour, "available"),
            ("U-5", "Crew 5", "utility_crew", ["power"], None, None, "out_of_service"),
            ("U-6", "Medic 6", "ambulance", ["medical"], Point(121.1, 30.2), 0 * hour, "available"),
        ]
        for uid, callsign, utype, caps, position, age, status in units:
            await conn.execute(
                """INSERT INTO units
                     (id, callsign, type, capabilities, position, position_at, status, district_id)
                   VALUES ($1, $2, $3, $4, $5, now() - $6::interval, $7, $8)""",
                uid,
                callsign,
                utype,
                caps,
                position,
                age,
                status,
                "D-2" if uid == "U-6" else "D-1",
            )
        depots = [
            ("DEP-1", "North depot", Point(120.15, 30.26), "D-1"),
            ("DEP-2", "River depot", Point(121.1, 30.21), "D-2"),
            ("DEP-3", "Spare depot", Point(120.2, 30.3), "D-1"),
        ]
        for did, name, point, district in depots:
            await conn.execute(
                "INSERT INTO depots (id, name, location, district_id) VALUES ($1, $2, $3, $4)",
                did,
                name,
                point,
                district,
            )
        await conn.executemany(
            "INSERT INTO stock (depot_id, item, quantity, unit, expires_on) VALUES ($1, $2, $3, $4, $5)",
            [
                ("DEP-1", "blankets", 1000, "pcs", None),  # line 500: ok
                ("DEP-1", "medical_kits", 5, "kits", None),  # line 100: low
                ("DEP-1", "tents", 300, "pcs", datetime(2001, 1, 1).date()),  # expired
                ("DEP-2", "sandbags", 5000, "bags", None),  # line 3000: ok
                ("DEP-2", "pumps", 0, "pcs", None),  # out
                ("DEP-3", "radios", 3, "pcs", None),  # no plan names it: no line, ok
            ],
        )
    finally:
        await conn.close()
    return tokens


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def city(
    postgres_server: PostgresServer, migrated_template: str, mosquitto: Any
) -> AsyncIterator[City]:
    name = f"b_{uuid.uuid4().hex[:12]}"
    database_url = await postgres_server.create_database(name, template=migrated_template)
    mqtt_url = mosquitto if isinstance(mosquitto, str) else mosquitto.url
    try:
        tokens = await seed_city(database_url)
        settings = settings_for(
            database_url,
            mqtt_url,
            tile_url=TILE_URL,
            tile_attribution=TILE_ATTRIBUTION,
            sla_dispatch_s=SLA_DISPATCH_S,
        )
        async with running_server(settings) as app:
            yield City(settings, app, database_url, mqtt_url, tokens)
    finally:
        # The server's broker session, now that it is gone (the per-test hygiene
        # below must not end it while the shared server still uses it).
        await asyncio.to_thread(end_sessions)
        await postgres_server.drop_database(name)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(loop_scope="module", autouse=True)
async def _loop_hygiene() -> AsyncIterator[None]:
    """tests/integration/conftest.py's check, in this module's shared loop.

    The server's own tasks started before the first test; what a test starts
    (request handlers, a console's writer) must be gone after it. A closed
    browser context is noticed by the server a moment later, so lingering
    tasks get a bounded grace period instead of one turn of the loop.
    """
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    before = asyncio.all_tasks(loop)
    yield

    def lingering() -> list[asyncio.Task[Any]]:
        # The shared server's feed and delivery loops poll with asyncio.wait_for(event.wait(), ...),
        # which on Python 3.11 runs each wait as a fresh task: those belong to loops that started
        # before the test and are cancelled by them at each timeout, so they are not the test's.
        return [
            t
            for t in asyncio.all_tasks(loop) - before
            if t is not asyncio.current_task()
            and not t.done()
            and getattr(t.get_coro(), "__qualname__", "") != "Event.wait"
        ]

    left = lingering()
    for _ in range(100):  # at most 5 s
        if not left:
            break
        await asyncio.sleep(0.05)
        left = lingering()
    loop.set_exception_handler(previous)
    if errors:
        first = errors[0]
        pytest.fail(f"unhandled loop exception: {first.get('message')} {first.get('exception')!r}")
    if left:
        pytest.fail(f"tasks left running after the test: {[(t.get_name(), t.get_coro()) for t in left]}")


@dataclass
class Browsing:
    """Opens signed-in console pages, each watched for console errors and page errors."""

    city: City
    browser: Browser
    errors: BrowserErrors
    contexts: list[BrowserContext] = field(default_factory=list)
    requests: dict[int, list[str]] = field(default_factory=dict)

    async def open(
        self,
        role: str = "commander",
        *,
        viewport: ViewportSize = DESKTOP,
        path: str = "/",
        tiles: bool = True,
    ) -> Page:
        context = self.errors.watch(await self.browser.new_context(viewport=viewport, locale="en-US"))
        self.contexts.append(context)
        context.set_default_timeout(10_000)
        page = await context.new_page()
        asked = self.requests.setdefault(id(page), [])
        page.on("request", lambda request: asked.append(request.url))
        if tiles:
            await page.route(
                "**/test-tiles/**", lambda route: route.fulfill(body=PNG, content_type="image/png")
            )
        # Signed in by the session cookie, as after a reload (see the module docstring).
        resp = await context.request.post(
            f"{self.city.base}/api/login", data={"username": role, "password": PASSWORD}
        )
        assert resp.ok, await resp.text()
        await page.goto(self.city.base + path)
        await expect(page.locator("body")).to_have_attribute("data-view", "console")
        state = page.locator("#connection-state")
        await expect(state).to_have_attribute("data-state", "live")
        await expect(state).to_have_attribute("data-seq", re.compile(r"^\d+$"))
        # The role comes from /api/me after a cookie sign-in.
        await expect(page.locator("#user-info")).to_contain_text(role)
        return page

    def assert_clean(self) -> None:
        self.errors.assert_clean()


@pytest_asyncio.fixture(loop_scope="module")
async def browsing(city: City, browser: Browser, browser_errors: BrowserErrors) -> AsyncIterator[Browsing]:
    b = Browsing(city, browser, browser_errors)
    try:
        yield b
    finally:
        for context in b.contexts:
            await context.close()
        # Wait for the server to see those consoles go, so none of their tasks outlives the test.
        hub = city.app[HUB]
        for _ in range(100):  # at most 5 s
            if not len(hub):
                break
            await asyncio.sleep(0.05)


class Api:
    """The REST API as another desk (or a unit's tablet) uses it."""

    def __init__(self, session: aiohttp.ClientSession, city: City, role: str) -> None:
        self.session, self.city, self.token = session, city, city.tokens[role]

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.session.request(method, self.city.base + path, json=body, headers=headers) as resp:
            return resp.status, await resp.json()

    async def report(
        self,
        title: str,
        *,
        kind: str = "fire",
        severity: str = "Moderate",
        lat: float = 30.27,
        lon: float = 120.15,
    ) -> str:
        status, incident = await self.call(
            "POST",
            "/api/incidents",
            {"kind": kind, "severity": severity, "title": title, "lat": lat, "lon": lon},
        )
        assert status == 201, incident
        return str(incident["id"])

    async def dispatch(self, incident_id: str, unit_id: str) -> dict[str, Any]:
        status, body = await self.call(
            "POST", f"/api/incidents/{incident_id}/dispatches", {"units": [unit_id]}
        )
        assert status == 201, body
        dispatch: dict[str, Any] = body["dispatches"][0]
        return dispatch


async def api(city: City, role: str = "commander") -> tuple[aiohttp.ClientSession, Api]:
    session = aiohttp.ClientSession()
    return session, Api(session, city, role)


async def open_tab(page: Page, tab: str) -> None:
    await page.click(f'#view-nav button[data-tab="{tab}"]')
    await expect(page.locator("body")).to_have_attribute("data-tab", tab)


async def test_units_board_shows_status_dispatch_and_a_live_position_age(
    browsing: Browsing, city: City
) -> None:
    page = await browsing.open("commander")
    await open_tab(page, "units")
    await expect(page.locator("#map")).to_be_hidden()
    rows = page.locator("#units-rows > tr[data-unit-id]")
    await expect(rows).to_have_count(6)
    # Call-sign order, naturally sorted.
    await expect(rows.locator(".unit-callsign")).to_have_text(
        ["Crew 5", "Engine 1", "Engine 2", "Medic 3", "Medic 6", "Rescue 4"]
    )
    crew = page.locator('#units-rows > tr[data-unit-id="U-5"]')
    await expect(crew).to_have_attribute("data-status", "out_of_service")
    await expect(crew.locator(".unit-status")).to_have_text("Out of service")
    await expect(crew.locator(".unit-age")).to_have_text("no position")
    await expect(crew.locator(".col-type")).to_have_text("Utility crew")
    # Two hours old: past the recommender's 15 minutes, flagged.
    await expect(page.locator('#units-rows > tr[data-unit-id="U-2"] .stale-badge')).to_be_visible()
    await expect(page.locator('#units-rows > tr[data-unit-id="U-2"] .unit-age')).to_have_text("2 h 0 min")
    await expect(page.locator('#units-rows > tr[data-unit-id="U-3"] .stale-badge')).to_be_hidden()

    # A dispatch from another desk: the unit's status and current dispatch change live.
    session, desk = await api(city)
    async with session:
        incident_id = await desk.report("Kitchen fire, 3rd floor")
        await desk.dispatch(incident_id, "U-3")
    medic = page.locator('#units-rows > tr[data-unit-id="U-3"]')
    await expect(medic).to_have_attribute("data-status", "dispatched")
    await expect(medic.locator(".unit-status")).to_have_text("Dispatched")
    link = medic.locator(".unit-dispatch-link")
    await expect(link).to_contain_text(f"Incident #{incident_id}")
    await expect(link).to_contain_text("Kitchen fire, 3rd floor")
    await expect(medic.locator(".dispatch-status")).to_have_text("Dispatched")

    # A position report over MQTT (unit.moved): the age restarts from the report's time and ticks.
    rescue = page.locator('#units-rows > tr[data-unit-id="U-4"]')
    await expect(rescue.locator(".unit-age")).to_have_text("1 h 0 min")
    status_before = await rescue.get_attribute("data-status")
    sent = datetime.now(UTC) - timedelta(seconds=25)
    async with publisher(city.mqtt_url) as pub:
        await pub.publish(
            "units/U-4/position", {"lat": 30.271, "lon": 120.171, "time": sent.isoformat()}, qos=1
        )
    age = rescue.locator(".unit-age")
    await expect(age).to_have_text(re.compile(r"^(2[5-9]|3\d) s$"))
    first = await age.text_content()
    await expect(age).not_to_have_text(first or "")  # a second later, without any event
    await expect(age).to_have_text(re.compile(r"^\d+ s$"))
    await expect(rescue).to_have_attribute("data-status", status_before or "")  # a position is not a status

    # The dispatch link opens the incident on the map view.
    await link.click()
    await expect(page.locator("body")).to_have_attribute("data-tab", "map")
    await expect(page.locator("#incident-detail")).to_have_attribute("data-incident-id", incident_id)
    browsing.assert_clean()


async def test_depots_board_flags_low_stock(browsing: Browsing) -> None:
    page = await browsing.open("viewer")
    # The tab warns before the board is opened (the map's depot layer brought the stock).
    await expect(page.locator("#tab-depots-badge")).to_have_text("2")
    await open_tab(page, "depots")
    depots = page.locator("#depots-board > .depot[data-depot-id]")
    await expect(depots).to_have_count(3)
    # Depots that need attention first.
    await expect(depots.locator(".depot-name")).to_have_text(["North depot", "River depot", "Spare depot"])
    north = page.locator('.depot[data-depot-id="DEP-1"]')
    river = page.locator('.depot[data-depot-id="DEP-2"]')
    spare = page.locator('.depot[data-depot-id="DEP-3"]')
    await expect(north).to_have_attribute("data-low", "true")
    await expect(river).to_have_attribute("data-low", "true")
    await expect(spare).to_have_attribute("data-low", "false")

    def level(depot: Any, item: str) -> Any:
        return depot.locator(f'.stock-item[data-item="{item}"]')

    # The line is the most one plan up to Severe asks for: 100 medical kits, 500 blankets, 3000 sandbags.
    await expect(level(north, "medical_kits")).to_have_attribute("data-level", "low")
    await expect(level(north, "medical_kits")).to_contain_text("Medical kits")
    await expect(level(north, "medical_kits")).to_contain_text("Low")
    await expect(level(north, "medical_kits").locator("td").nth(2)).to_have_text("100 kits")
    await expect(level(north, "blankets")).to_have_attribute("data-level", "ok")
    await expect(level(north, "tents")).to_have_attribute("data-level", "expired")
    await expect(level(river, "pumps")).to_have_attribute("data-level", "out")
    await expect(level(river, "sandbags")).to_have_attribute("data-level", "ok")
    # An item no plan names has no line: shown, not flagged.
    await expect(level(spare, "radios")).to_have_attribute("data-level", "ok")
    await expect(north.locator(".depot-flag")).to_have_text("2 warnings")
    await expect(river.locator(".depot-flag")).to_have_text("1 warning")
    await expect(spare.locator(".depot-flag")).to_have_text("Stock OK")
    # Worst first inside a depot.
    levels = await north.locator(".stock-item").evaluate_all("rows => rows.map((r) => r.dataset.level)")
    assert levels == ["expired", "low", "ok"]
    await expect(page.locator("#depots-rule")).to_contain_text("Severe")
    await expect(page.locator("#depots-summary")).to_have_text("3 depots · 2 with warnings")
    await open_tab(page, "map")
    await expect(page.locator("#tab-depots-badge")).to_have_text("2")
    browsing.assert_clean()


def sent_at() -> str:
    return datetime.now(UTC).isoformat()


async def dead_letter_reason(city: City, payload: bytes) -> str:
    conn = await asyncpg.connect(city.database_url)
    try:
        stored = f"SELECT count(*) FROM dead_letters WHERE payload = '\\x{payload.hex()}'"
        await wait_for_value(conn, stored, 1)
        reason = await conn.fetchval("SELECT reason FROM dead_letters WHERE payload = $1", payload)
    finally:
        await conn.close()
    assert isinstance(reason, str) and reason
    return reason


async def test_dead_letter_panel_lists_a_malformed_payload_for_an_admin_only(
    browsing: Browsing, city: City
) -> None:
    first = b'{"id": "dl-1", "kind": "fire", "severity": '  # cut short: not JSON
    async with publisher(city.mqtt_url) as pub:
        await pub.publish("sensors/S-1/alarm", first)
        reason = await dead_letter_reason(city, first)

        page = await browsing.open("admin")
        tab = page.locator('#view-nav button[data-tab="dead-letters"]')
        await expect(tab).to_be_visible()
        await open_tab(page, "dead-letters")
        row = page.locator(".dead-letter", has=page.locator(".dead-payload", has_text='"id": "dl-1"'))
        await expect(row).to_have_count(1)
        await expect(row.locator(".dead-reason")).to_have_text(reason)
        await expect(row.locator(".col-topic")).to_have_text("sensors/S-1/alarm")
        await expect(row.locator(".dead-size")).to_have_text(f"{len(first)} bytes")
        await expect(row).to_have_attribute("data-source", "mqtt")

        # Another one while the panel is open: the refresh button brings it (it also refreshes every 30 s).
        second = json.dumps({"id": "dl-2", "kind": "meteor", "severity": "Severe", "time": sent_at()})
        await pub.publish("sensors/S-1/alarm", second)
        second_reason = await dead_letter_reason(city, second.encode())
    await page.click("#dead-letters-refresh")
    newest = page.locator(".dead-letter").first
    await expect(newest.locator(".dead-payload")).to_contain_text('"id": "dl-2"')
    await expect(newest.locator(".dead-reason")).to_have_text(second_reason)
    browsing.assert_clean()

    # A viewer has no such tab, cannot reach it by the address, and never asks the server.
    viewer = await browsing.open("viewer", path="/#dead-letters")
    await expect(viewer.locator('#view-nav button[data-tab="dead-letters"]')).to_be_hidden()
    await expect(viewer.locator("#dead-letters-view")).to_be_hidden()
    await expect(viewer.locator("body")).to_have_attribute("data-tab", "map")
    await expect(viewer.locator("#map")).to_be_visible()
    await expect(viewer.locator('#view-nav button[data-tab="units"]')).to_be_visible()
    asked = browsing.requests[id(viewer)]
    assert any("/api/units" in u or "/api/depots" in u for u in asked), asked
    assert not [u for u in asked if "/api/dead-letters" in u], asked
    browsing.assert_clean()


async def test_dashboard_renders_charts_after_a_scripted_dispatch(browsing: Browsing, city: City) -> None:
    session, desk = await api(city)
    field_session, field_unit = await api(city, "field")
    async with session, field_session:
        incident_id = await desk.report("Basement flooding", kind="flood", lat=30.2, lon=121.1)
        dispatch = await desk.dispatch(incident_id, "U-1")
        for step in ("acknowledged", "en_route"):
            status, body = await field_unit.call(
                "POST", f"/api/dispatches/{dispatch['id']}/status", {"status": step}
            )
            assert status == 200, body

    page = await browsing.open("commander")
    await open_tab(page, "dashboard")
    dashboard = page.locator("#dashboard")
    await expect(dashboard).to_have_attribute("data-state", "ready")
    response = dashboard.locator('svg.chart[data-chart="response"]')
    await expect(response).to_be_visible()
    dispatch_row = response.locator('g[data-sla="dispatch"]')
    await expect(dispatch_row.locator('rect.bar[data-stat="p50"]')).to_have_count(1)
    await expect(dispatch_row.locator('rect.bar[data-stat="p90"]')).to_have_count(1)
    await expect(dispatch_row.locator("line.target")).to_have_attribute("data-target", str(SLA_DISPATCH_S))
    # The unit acknowledged and left: its turnout is measured, against the 80 s target.
    turnout = response.locator('g[data-sla="turnout"]')
    await expect(turnout.locator('rect.bar[data-stat="p50"]')).to_have_count(1)
    await expect(turnout.locator("line.target")).to_have_attribute("data-target", "80")
    # Travel (nobody arrived yet) has a target and no bars.
    await expect(response.locator('g[data-sla="travel"] rect.bar')).to_have_count(0)

    flood = dashboard.locator('svg.chart[data-chart="kind"] rect.bar[data-key="flood"]')
    await expect(flood).to_have_count(1)
    assert int(await flood.get_attribute("data-value") or "0") >= 1
    assert float(await flood.get_attribute("width") or "0") > 0
    await expect(
        dashboard.locator('svg.chart[data-chart="district"] rect.bar[data-key="D-2"]')
    ).to_have_count(1)
    await expect(dashboard.locator('svg.chart[data-chart="district"]')).to_contain_text("River district")
    card = dashboard.locator('.sla-card[data-sla="dispatch"]')
    await expect(card).to_have_attribute("data-met", re.compile("^(true|false)$"))
    await expect(card.locator(".sla-figure")).to_have_text(re.compile(rf"^\d+% within {SLA_DISPATCH_S} s$"))
    await expect(dashboard.locator('.dash-metrics tr[data-metric="turnout"]')).to_be_visible()
    # The period changes what is asked for.
    async with page.expect_response(re.compile(r"/api/stats\?group=kind")) as answer:
        await page.select_option("#dashboard-period", "7")
    assert (await answer.value).ok
    await expect(dashboard).to_have_attribute("data-state", "ready")
    browsing.assert_clean()


async def test_queue_ranks_by_sla_risk_and_filters_by_district(browsing: Browsing, city: City) -> None:
    page = await browsing.open("commander")
    session, desk = await api(city)
    async with session:
        worked = await desk.report("Severe fire, already sent", severity="Severe")
        await desk.dispatch(worked, "U-6")
        waiting = await desk.report("Moderate fire, nobody sent", lat=30.25, lon=121.2)
    worked_row = page.locator(f'{ROWS}[data-incident-id="{worked}"]')
    waiting_row = page.locator(f'{ROWS}[data-incident-id="{waiting}"]')
    await expect(worked_row).to_have_attribute("data-status", "responding")
    await expect(worked_row).to_have_attribute("data-sla", "none")

    async def order() -> list[str]:
        ids = await page.locator(ROWS).evaluate_all("rows => rows.map((r) => r.dataset.incidentId)")
        return [i for i in ids if i in (worked, waiting)]

    # Before its target the Moderate one waits below the Severe one, counting down.
    await expect(waiting_row).to_have_attribute("data-sla", "due")
    await expect(waiting_row.locator(".sla-badge")).to_have_text(re.compile(r"^dispatch due in 0:0\d$"))
    assert await order() == [worked, waiting]
    # Past it, nobody sent: it rises above the Severe one, live, with no event from the server.
    await expect(waiting_row).to_have_attribute("data-sla", "breached", timeout=SLA_DISPATCH_S * 1000 + 5000)
    await expect(waiting_row.locator(".sla-badge")).to_have_text(re.compile(r"^no dispatch for 0:\d\d$"))
    assert await order() == [waiting, worked]

    # The district filter: D-2 (River district) only.
    await page.select_option("#filter-district", "D-2")
    rows = page.locator(ROWS)
    await expect(waiting_row).to_be_visible()
    await expect(worked_row).to_have_count(0)
    for district in await rows.evaluate_all("rows => rows.map((r) => r.dataset.district)"):
        assert district == "D-2"
    await expect(page.locator("#queue-count")).to_contain_text("of")
    await page.select_option("#filter-district", "")
    await expect(worked_row).to_be_visible()
    browsing.assert_clean()


async def test_tile_url_setting_reaches_the_page(browsing: Browsing, city: City) -> None:
    session, desk = await api(city, "viewer")
    async with session:
        status, config = await desk.call("GET", "/api/config")
    assert status == 200
    assert config["tile_url"] == TILE_URL and config["tile_attribution"] == TILE_ATTRIBUTION
    assert config["sla"]["dispatch_s"] == SLA_DISPATCH_S
    assert config["stock_minimums"]["blankets"] == 500

    page = await browsing.open("viewer")
    tiles = page.locator(".leaflet-tile-pane img.leaflet-tile")
    await expect(tiles.first).to_have_attribute("src", re.compile(r"/test-tiles/\d+/\d+/\d+\.png$"))
    await expect(page.locator(".leaflet-control-attribution")).to_contain_text(TILE_ATTRIBUTION)
    tiles_layer = page.locator("#layer-control input[data-layer=tiles]")
    await expect(tiles_layer).to_be_checked()
    # Our own basemap stays, above the tiles.
    await expect(page.locator("#layer-control input[data-layer=districts]")).to_be_checked()
    await tiles_layer.uncheck()
    await expect(tiles).to_have_count(0)
    # And the page got it without any inline script: every script is a file from this server.
    inline = await page.evaluate("[...document.scripts].filter((s) => !s.src).length")
    assert inline == 0
    browsing.assert_clean()


# What the language test reads: every visible text node outside translate="no"
# (server data: names, ids, titles, reasons, payloads, SI symbols), and the
# chosen option of every visible select.
VISIBLE_TEXT = """() => {
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const text = n.textContent.replace(/\\s+/g, " ").trim();
    const parent = n.parentElement;
    if (!text || !parent) continue;
    if (["SCRIPT", "STYLE", "NOSCRIPT", "OPTION", "TITLE"].includes(parent.tagName.toUpperCase())) continue;
    if (parent.closest('[translate="no"]')) continue;
    if (!parent.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true })) continue;
    out.push(text);
  }
  for (const select of document.querySelectorAll("select")) {
    const chosen = select.selectedOptions[0];
    if (!chosen || !select.checkVisibility() || select.closest('[translate="no"]')) continue;
    out.push(chosen.textContent.trim());
  }
  return out;
}"""

VIEWS = ["map", "units", "depots", "dashboard", "dead-letters"]

OVERFLOW = """(view) => {
  const right = view.getBoundingClientRect().right + 0.5;
  const out = [...view.querySelectorAll("*")].filter((e) => e.getBoundingClientRect().right > right);
  return [view.scrollWidth, view.clientWidth, out.slice(0, 5).map((e) => `${e.tagName}.${e.className}`)];
}"""


async def view_ready(page: Page, tab: str) -> None:
    """Wait until the view shows its data (not just "Loading…")."""
    if tab == "map":
        await expect(page.locator(ROWS).first).to_be_visible()
        await expect(page.locator("#map .leaflet-tile-loaded").first).to_be_attached()
    elif tab == "units":
        await expect(page.locator("#units-rows > tr").first).to_be_visible()
    elif tab == "depots":
        await expect(page.locator("#depots-board > .depot").first).to_be_visible()
    elif tab == "dashboard":
        await expect(page.locator("#dashboard")).to_have_attribute("data-state", "ready")
        await expect(page.locator('svg.chart[data-chart="kind"] rect.bar').first).to_be_attached()
    else:
        await expect(page.locator(".dead-letter").first).to_be_visible()


async def populate(city: City) -> None:
    """Something on every view: an incident with a dispatched unit, and a rejected message."""
    session, desk = await api(city)
    async with session:
        incident_id = await desk.report("Smoke from a warehouse roof", kind="smoke", severity="Severe")
        status, body = await desk.call("POST", f"/api/incidents/{incident_id}/dispatches", {"units": ["U-4"]})
        assert status in (201, 409), body  # 409: the screenshots test already sent it
    async with publisher(city.mqtt_url) as pub:
        await pub.publish("sensors/S-2/alarm", b"not json at all")


async def test_language_switch_changes_every_visible_string_on_each_view(
    browsing: Browsing, city: City
) -> None:
    await populate(city)
    page = await browsing.open("admin")
    english: dict[str, list[str]] = {}
    chinese: dict[str, list[str]] = {}
    # Dictionary entries of the other language on a view (test_console.OTHER_LANGUAGE_STRINGS).
    foreign: dict[str, list[str]] = {}
    for tab in VIEWS:
        await open_tab(page, tab)
        await view_ready(page, tab)
        english[tab] = await page.evaluate(VISIBLE_TEXT)
    await page.select_option("#lang-select", "zh-CN")
    await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    for tab in VIEWS:
        await open_tab(page, tab)
        await view_ready(page, tab)
        chinese[tab] = await page.evaluate(VISIBLE_TEXT)
        foreign[f"{tab} (zh-CN)"] = await other_language_strings(page, "zh-CN")

    for tab in VIEWS:
        words = {s for s in english[tab] if re.search(r"[A-Za-z]", s)}
        assert len(words) >= 8, (tab, english[tab])
        untranslated = sorted(words & set(chinese[tab]))
        assert untranslated == [], f"{tab}: still in English after switching: {untranslated}"
        assert any(re.search(r"[\u4e00-\u9fff]", s) for s in chinese[tab]), chinese[tab]
    # And back.
    await page.select_option("#lang-select", "en")
    await expect(page.locator('#view-nav button[data-tab="dashboard"]')).to_have_text("Dashboard")
    for tab in VIEWS:
        await open_tab(page, tab)
        await view_ready(page, tab)
        foreign[f"{tab} (back in en)"] = await other_language_strings(page, "en")
    assert {view: found for view, found in foreign.items() if found} == {}
    browsing.assert_clean()


async def test_screenshots_of_each_view_at_desktop_and_phone(browsing: Browsing, city: City) -> None:
    await populate(city)
    ARTIFACTS.mkdir(exist_ok=True)
    for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page = await browsing.open("admin", viewport=viewport)
        for tab in VIEWS:
            await open_tab(page, tab)
            await view_ready(page, tab)
            # Usable at this width: nothing runs off the side of the page, or of the view's own box.
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= viewport["width"], (tab, size, width)
            if tab != "map":
                # [scrollWidth, clientWidth, what sticks out (for the failure message)]
                box = await page.locator(f"#{tab}-view").evaluate(OVERFLOW)
                assert box[0] <= box[1], (tab, size, box)
            await page.screenshot(path=ARTIFACTS / f"console-{tab}-{size}.png")
    for tab in VIEWS:
        for size in ("desktop", "phone"):
            assert (ARTIFACTS / f"console-{tab}-{size}.png").stat().st_size > 1000
    browsing.assert_clean()
