"""The commander console in a real browser against the real server, database and broker.

Everything here goes through the page the way a commander would: the login
form, the live queue and map fed by MQTT alarms over the WebSocket, a server
restart, the language switch. No sleeps: every wait is playwright's
auto-retrying ``expect``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from playwright.async_api import Page, expect
from shapely.geometry import Point

from command import db
from command.settings import Settings
from tests.integration.helpers import (
    PASSWORD,
    alarm,
    publisher,
    running_server,
    seed_minimal,
    settings_for,
)

ROWS = "#incident-queue > li[data-incident-id]"
SEVERITY_FILL = {"Extreme": "#7f0000", "Severe": "#d7191c", "Moderate": "#f07c00"}


def base_url(settings: Settings) -> str:
    return f"http://{settings.http_host}:{settings.http_port}/"


@asynccontextmanager
async def seeded_server(database_url: str, mqtt_url: str) -> AsyncIterator[Settings]:
    await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings):
        yield settings


async def sign_in(page: Page, settings: Settings, username: str = "commander") -> None:
    """Open the console, sign in through the form, and wait until the feed is live with its snapshot."""
    await page.goto(base_url(settings))
    await expect(page.locator("body")).to_have_attribute("data-view", "login")
    await page.fill("#login-username", username)
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-submit")
    await expect(page.locator("body")).to_have_attribute("data-view", "console")
    state = page.locator("#connection-state")
    await expect(state).to_have_attribute("data-state", "live")
    # data-seq is set once the snapshot has been applied.
    await expect(state).to_have_attribute("data-seq", re.compile(r"^\d+$"))


async def mark_page(page: Page) -> None:
    """A marker that a navigation or reload would wipe."""
    await page.evaluate("window.__marker = 'still-here'")


async def assert_not_navigated(page: Page) -> None:
    assert await page.evaluate("window.__marker") == "still-here", "the page was reloaded or navigated"


def assert_no_page_errors(page: Page) -> None:
    assert page.page_errors == []  # type: ignore[attr-defined]


async def test_login_form_rejects_wrong_password_then_goes_live(
    page: Page, database_url: str, mqtt_url: str
) -> None:
    async with seeded_server(database_url, mqtt_url) as settings:
        await page.goto(base_url(settings))
        body = page.locator("body")
        error = page.locator("#login-error")
        await expect(body).to_have_attribute("data-view", "login")
        await expect(page.locator("#login-form")).to_be_visible()
        await expect(error).to_be_hidden()

        await page.fill("#login-username", "commander")
        await page.fill("#login-password", "not the password")
        await page.click("#login-submit")
        # The server's own message, shown as text.
        await expect(error).to_be_visible()
        await expect(error).to_have_text("unknown user or wrong password")
        await expect(body).to_have_attribute("data-view", "login")
        await expect(page.locator("#login-password")).to_have_value("")

        await page.fill("#login-password", PASSWORD)
        await page.click("#login-submit")
        await expect(body).to_have_attribute("data-view", "console")
        await expect(page.locator("#connection-state")).to_have_attribute("data-state", "live")
        await expect(page.locator("#connection-text")).to_have_text("live")
        await expect(page.locator("#login-view")).to_be_hidden()
        await expect(page.locator("#map")).to_be_visible()
        await expect(page.locator("#user-info")).to_contain_text("commander")
        # The seeded unit arrived with the snapshot and is on the map.
        await expect(page.locator('.leaflet-marker-icon[data-unit-id="U-1"]')).to_have_count(1)
        await expect(page.locator("#queue-empty")).to_be_visible()
        assert_no_page_errors(page)


async def test_alarm_over_mqtt_appears_live_and_escalates(
    page: Page, database_url: str, mqtt_url: str
) -> None:
    async with seeded_server(database_url, mqtt_url) as settings, publisher(mqtt_url) as pub:
        await sign_in(page, settings)
        await mark_page(page)
        rows = page.locator(ROWS)
        await expect(rows).to_have_count(0)

        await pub.publish("sensors/S-1/alarm", alarm("a-1", severity="Moderate"))
        await expect(rows).to_have_count(1)
        row = rows.first
        await expect(row).to_have_attribute("data-severity", "Moderate")
        await expect(row).to_have_attribute("data-kind", "smoke")
        await expect(row).to_have_attribute("data-status", "new")
        await expect(row).to_have_class(re.compile(r"\bis-new\b"))
        await expect(page.locator("#queue-empty")).to_be_hidden()
        incident_id = await row.get_attribute("data-incident-id")
        assert incident_id

        marker = page.locator(f'path[data-map-incident-id="{incident_id}"]')
        await expect(marker).to_have_count(1)
        await expect(marker).to_have_attribute("fill", SEVERITY_FILL["Moderate"])

        await pub.publish("sensors/S-1/alarm", alarm("a-2", severity="Extreme"))
        same_row = page.locator(f'#incident-queue > li[data-incident-id="{incident_id}"]')
        await expect(same_row).to_have_attribute("data-severity", "Extreme")
        await expect(same_row).to_contain_text("2 alarms")
        await expect(rows).to_have_count(1)
        # The marker follows the escalation, and is still the only one.
        await expect(marker).to_have_attribute("fill", SEVERITY_FILL["Extreme"])
        await expect(page.locator("path[data-map-incident-id]")).to_have_count(1)

        await assert_not_navigated(page)
        assert_no_page_errors(page)


async def test_console_reconnects_after_server_restart_and_catches_up(
    page: Page, database_url: str, mqtt_url: str
) -> None:
    await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    state = page.locator("#connection-state")
    rows = page.locator(ROWS)
    async with publisher(mqtt_url) as pub:
        async with running_server(settings):
            await sign_in(page, settings)
            await mark_page(page)
            await pub.publish("sensors/S-1/alarm", alarm("before", severity="Moderate"))
            await expect(rows).to_have_count(1)
            seq_before = int(await state.get_attribute("data-seq") or "0")

        # Server gone: the page says so, and keeps what it had.
        await expect(state).to_have_attribute("data-state", "reconnecting")
        await expect(page.locator("#connection-text")).to_have_text("reconnecting")
        await expect(rows).to_have_count(1)

        # An alarm while the server is down waits in the broker for our session.
        await pub.publish(
            "sensors/S-2/alarm", alarm("during", kind="gas_leak", severity="Extreme", lat=30.3, lon=120.2)
        )

        async with running_server(settings):
            await expect(state).to_have_attribute("data-state", "live", timeout=15_000)
            gas = page.locator(f'{ROWS}[data-kind="gas_leak"]')
            await expect(gas).to_have_count(1)
            await expect(gas).to_have_attribute("data-severity", "Extreme")
            # Priority order: the Extreme one first, and the old one kept.
            await expect(rows).to_have_count(2)
            await expect(rows.first).to_have_attribute("data-kind", "gas_leak")
            # And live events after the restart reach it as well.
            await pub.publish("sensors/S-1/alarm", alarm("after", severity="Severe"))
            await expect(page.locator(f'{ROWS}[data-kind="smoke"]')).to_have_attribute(
                "data-severity", "Severe"
            )
            seq_after = int(await state.get_attribute("data-seq") or "0")
            assert seq_after > seq_before
            await assert_not_navigated(page)
    assert_no_page_errors(page)


async def test_language_switch_relabels_the_console(page: Page, database_url: str, mqtt_url: str) -> None:
    async with seeded_server(database_url, mqtt_url) as settings:
        await sign_in(page, settings)
        conn_text = page.locator("#connection-text")
        queue_title = page.locator("#side-panel h2")
        lang = page.locator("#lang-select")
        await expect(conn_text).to_have_text("live")
        await expect(queue_title).to_have_text("Incident queue")
        await expect(lang).to_have_value("en")

        await lang.select_option("zh-CN")
        await expect(conn_text).to_have_text("实时")
        await expect(queue_title).to_have_text("事件队列")
        await expect(page.locator("#app-title")).to_have_text("应急协同指挥平台")
        await expect(page.locator("#queue-empty")).to_have_text("暂无进行中的事件。")
        await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")

        # The choice is remembered: a reload (signed in by the session cookie) stays in Chinese.
        await page.reload()
        await expect(page.locator("body")).to_have_attribute("data-view", "console")
        await expect(page.locator("#connection-state")).to_have_attribute("data-state", "live")
        await expect(conn_text).to_have_text("实时")
        await expect(lang).to_have_value("zh-CN")

        await lang.select_option("en")
        await expect(conn_text).to_have_text("live")
        await expect(queue_title).to_have_text("Incident queue")
        await expect(page.locator("#app-title")).to_have_text("Emergency Command Console")
        await expect(page.locator("html")).to_have_attribute("lang", "en")
        assert_no_page_errors(page)


async def _box(page: Page, selector: str) -> dict[str, float]:
    box = await page.locator(selector).first.bounding_box()
    assert box is not None, f"{selector} is not rendered"
    return dict(box)


def _inside(inner: dict[str, float], outer: dict[str, float]) -> bool:
    return (
        inner["x"] >= outer["x"]
        and inner["y"] >= outer["y"]
        and inner["x"] + inner["width"] <= outer["x"] + outer["width"]
        and inner["y"] + inner["height"] <= outer["y"] + outer["height"]
    )


async def _check_layout(page: Page, viewport: dict[str, int]) -> None:
    """Map and queue both on screen, with real sizes, and the marker inside the map."""
    map_box = await _box(page, "#map")
    queue_box = await _box(page, "#incident-queue > li[data-incident-id]")
    marker_box = await _box(page, "path[data-map-incident-id]")
    page_box = {"x": 0, "y": 0, **viewport}
    assert map_box["width"] > viewport["width"] * 0.5 and map_box["height"] > 200, map_box
    assert _inside(map_box, page_box), (map_box, viewport)
    assert _inside(queue_box, page_box), (queue_box, viewport)
    assert _inside(marker_box, map_box), (marker_box, map_box)
    # Every incident marker is visible, not hidden under a map control or the queue.
    covered = await page.evaluate(
        """() => [...document.querySelectorAll('path[data-map-incident-id]')].filter((p) => {
            const r = p.getBoundingClientRect();
            const top = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
            return top !== p;
        }).map((p) => p.dataset.mapIncidentId)"""
    )
    assert covered == [], f"incident markers covered by something else: {covered}"
    # Leaflet's own stylesheet loaded (tiles pane positioned), and nothing overflows sideways.
    assert (
        await page.evaluate("getComputedStyle(document.querySelector('.leaflet-pane')).position")
        == "absolute"
    )
    assert await page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]


async def test_screenshots_desktop_and_mobile(
    page: Page, database_url: str, mqtt_url: str, artifacts: Path
) -> None:
    async with seeded_server(database_url, mqtt_url) as settings, publisher(mqtt_url) as pub:
        await sign_in(page, settings)
        await pub.publish("sensors/S-1/alarm", alarm("s-1", severity="Severe", message="Smoke in stairwell"))
        await pub.publish(
            "sensors/S-2/alarm", alarm("g-1", kind="gas_leak", severity="Extreme", lat=30.30, lon=120.18)
        )
        await expect(page.locator(ROWS)).to_have_count(2)
        await expect(page.locator("path[data-map-incident-id]")).to_have_count(2)

        desktop = {"width": 1400, "height": 900}
        await _check_layout(page, desktop)
        await page.screenshot(path=artifacts / "console-desktop.png")

        mobile = {"width": 390, "height": 844}
        await page.set_viewport_size(mobile)
        # Leaflet re-measures on the resize event; wait until the map fits the narrow screen.
        await expect(page.locator("#map")).to_have_js_property("clientWidth", 390)
        await _check_layout(page, mobile)
        await page.screenshot(path=artifacts / "console-mobile.png")
        # The layer list is folded on a phone, and still there: its button opens it (hover, tap or Enter).
        incidents_layer = page.locator("#layer-control input[data-layer=incidents]")
        await expect(incidents_layer).to_be_hidden()
        await page.focus("#layer-control .leaflet-control-layers-toggle")
        await page.keyboard.press("Enter")
        await expect(incidents_layer).to_be_visible()
        await expect(incidents_layer).to_be_checked()
        assert_no_page_errors(page)


async def add_hazard_at_s1(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    await db.register_codecs(conn)
    try:
        await conn.execute(
            """INSERT INTO hazards (id, kind, name, geom)
               VALUES ('H-1', 'chemical_plant', 'Riverside Chemical Works', $1)""",
            Point(120.15, 30.27),
        )
    finally:
        await conn.close()


async def test_incident_detail_shows_recommendation_shortfalls_and_hazards(
    page: Page, database_url: str, mqtt_url: str, artifacts: Path
) -> None:
    await seed_minimal(database_url)
    await add_hazard_at_s1(database_url)
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings), publisher(mqtt_url) as pub:
        await sign_in(page, settings)
        await pub.publish("sensors/S-1/alarm", alarm("hz-1", kind="hazmat", severity="Extreme"))
        rows = page.locator(ROWS)
        await expect(rows).to_have_count(1)
        row = rows.first
        incident_id = await row.get_attribute("data-incident-id")
        assert incident_id
        title = (await row.locator(".item-title").text_content() or "").strip()
        assert title

        detail = page.locator("#incident-detail")
        await expect(detail).to_be_hidden()
        await row.click()
        await expect(detail).to_be_visible()
        await expect(detail).to_have_attribute("data-incident-id", incident_id)
        await expect(detail).to_have_attribute("data-state", "ready")
        await expect(detail.locator(".detail-title")).to_have_text(title)
        await expect(detail.locator(".detail-fields")).to_contain_text("Extreme")
        await expect(detail.locator(".detail-alarm")).to_have_count(1)

        # Only a fire engine in the city: the hazmat need is a shortfall, said as text.
        shortfall = detail.locator(".shortfall").first
        await expect(shortfall).to_be_visible()
        assert (await shortfall.text_content() or "").strip()
        await expect(detail.locator(".rec-plan-name")).to_contain_text("hazmat")
        await expect(detail.locator('.assignment[data-capability="hazmat"]')).to_contain_text("Hazmat")
        hazards = detail.locator('[data-section="hazards"]')
        await expect(hazards.locator(".place-name")).to_contain_text(["Riverside Chemical Works"])
        await expect(hazards).to_contain_text("Chemical plant")

        # A new alarm on the incident (incident.updated) refetches the open detail.
        await pub.publish("sensors/S-1/alarm", alarm("hz-2", kind="hazmat", severity="Extreme"))
        await expect(detail.locator(".detail-alarm")).to_have_count(2)
        await page.screenshot(path=artifacts / "console-detail.png")
        await hazards.scroll_into_view_if_needed()
        await page.screenshot(path=artifacts / "console-detail-lower.png")

        heading = detail.locator('[data-section="recommendation"] > .detail-heading')
        await expect(heading).to_have_text("Recommendation")
        await page.locator("#lang-select").select_option("zh-CN")
        await expect(heading).to_have_text("处置建议")
        await expect(detail.locator('[data-section="hazards"] > .detail-heading')).to_have_text("周边危险源")
        await page.locator("#lang-select").select_option("en")

        # On a phone the detail takes the queue's place; the close button brings the queue back.
        await page.set_viewport_size({"width": 390, "height": 844})
        await expect(page.locator("#incident-queue")).to_be_hidden()
        await page.click("#incident-detail-close")
        await expect(detail).to_be_hidden()
        await expect(row).to_be_visible()
        assert_no_page_errors(page)


async def test_incident_detail_shows_server_error(page: Page, database_url: str, mqtt_url: str) -> None:
    async with seeded_server(database_url, mqtt_url) as settings, publisher(mqtt_url) as pub:
        await sign_in(page, settings)
        await pub.publish("sensors/S-1/alarm", alarm("e-1", severity="Severe"))
        await expect(page.locator(ROWS)).to_have_count(1)
        # The recommendation fails: its error message from {"error":{"message"}} is shown.
        await page.route(
            "**/recommendation",
            lambda route: route.fulfill(
                status=500,
                content_type="application/json",
                body='{"error": {"code": "internal", "message": "planner exploded"}}',
            ),
        )
        await page.locator(ROWS).first.click()
        detail = page.locator("#incident-detail")
        await expect(detail).to_have_attribute("data-state", "error")
        await expect(detail.locator(".detail-error")).to_have_text("planner exploded")
        # The incident itself still loaded.
        await expect(detail.locator(".detail-alarm")).to_have_count(1)
        await page.unroute("**/recommendation")
        assert_no_page_errors(page)
