"""Acting on an incident from the console, in a real browser against the real server.

A commander dispatches the recommendation in one click (and sees a refusal in
the server's own words), follows the dispatches live (an overdue unit, the
next-best unit offered in its place, a unit called back), moves the incident
along its lifecycle, and sets and closes tasks. No sleeps: every wait is
playwright's auto-retrying ``expect`` (or a route the test itself releases).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from playwright.async_api import Locator, Page, Route, expect
from shapely.geometry import LineString, Point

from command import db
from command.settings import Settings
from tests.browser.conftest import BrowserErrors, http_error
from tests.browser.test_console import ROWS, sign_in
from tests.integration.helpers import running_server, seed_minimal, settings_for

PLANS = Path(__file__).resolve().parents[2] / "dispatch" / "plans.toml"
# Where every phone report in these tests happens.
SCENE = {"lat": 30.27, "lon": 120.15}
# Scroll to the first match of a selector and return its box, in one turn of the page's event loop.
SCROLL_AND_MEASURE = """(selector) => {
  const node = document.querySelector(selector);
  node.scrollIntoView({ block: "nearest" });
  const r = node.getBoundingClientRect();
  return { x: r.x, width: r.width };
}"""


async def seed_city(database_url: str) -> dict[str, str]:
    """seed_minimal (users, district D-1, Engine 1), three more units, a depot and a few roads.

    A Moderate fire's plan wants 3 fire_suppression, 1 rescue, 1 medical and 50
    blankets: the recommendation is all four units (Medic 3 for medical, the
    three engines between fire_suppression and rescue, one short) and the
    blankets from DEP-1.
    """
    tokens = await seed_minimal(database_url)
    conn = await asyncpg.connect(database_url)
    await db.register_codecs(conn)
    try:
        await conn.executemany(
            """INSERT INTO units (id, callsign, type, capabilities, position, position_at, district_id)
               VALUES ($1, $2, $3, $4, $5, now(), 'D-1')""",
            [
                ("U-2", "Engine 2", "fire_engine", ["fire_suppression", "rescue"], Point(120.161, 30.261)),
                ("U-3", "Medic 3", "ambulance", ["medical"], Point(120.162, 30.262)),
                ("U-4", "Engine 4", "fire_engine", ["fire_suppression", "rescue"], Point(120.17, 30.27)),
            ],
        )
        await conn.execute(
            "INSERT INTO depots (id, name, location, district_id) VALUES ('DEP-1', 'North depot', $1, 'D-1')",
            Point(120.15, 30.26),
        )
        await conn.execute(
            "INSERT INTO stock (depot_id, item, quantity, unit) VALUES ('DEP-1', 'blankets', 100, 'pcs')"
        )
        # Without roads nothing is reachable, and an unreachable unit is never recommended.
        hub = Point(120.16, 30.27)
        for source, target, a, b in [
            (1, 2, Point(120.14, 30.27), hub),
            (2, 3, hub, Point(120.18, 30.27)),
            (2, 4, hub, Point(120.16, 30.25)),
        ]:
            line = LineString([a, b])
            length = await conn.fetchval("SELECT ST_Length($1::geometry::geography)", line)
            await conn.execute(
                """INSERT INTO roads (source, target, length_m, speed_kmh, oneway, geom)
                   VALUES ($1, $2, $3, 40, false, $4)""",
                source,
                target,
                length,
                line,
            )
    finally:
        await conn.close()
    return tokens


class Api:
    """The REST API as another commander at another desk uses it."""

    def __init__(self, session: aiohttp.ClientSession, base: str, token: str) -> None:
        self.session, self.base, self.token = session, base, token

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.session.request(method, self.base + path, json=body, headers=headers) as resp:
            return resp.status, await resp.json()

    async def phone_report(self, title: str) -> str:
        status, incident = await self.call(
            "POST", "/api/incidents", {"kind": "fire", "severity": "Moderate", "title": title, **SCENE}
        )
        assert status == 201, incident
        return str(incident["id"])


@asynccontextmanager
async def api_for(settings: Settings, token: str) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, f"http://{settings.http_host}:{settings.http_port}", token)


def plans_with_ack_deadline(tmp_path: Path, seconds: int) -> Path:
    """The shipped plans, with a Moderate fire's acknowledgement deadline cut to ``seconds``."""
    text = PLANS.read_text()
    start = text.index("[plans.fire.Moderate]")
    end = text.index("[plans.", start + 1)
    section = re.sub(r"(?m)^ack_deadline_s = \d+$", f"ack_deadline_s = {seconds}", text[start:end])
    assert section != text[start:end]
    path = tmp_path / "plans.toml"
    path.write_text(text[:start] + section + text[end:])
    return path


async def open_incident(page: Page, incident_id: str) -> Locator:
    await page.locator(f'{ROWS}[data-incident-id="{incident_id}"]').click()
    detail = page.locator("#incident-detail")
    await expect(detail).to_have_attribute("data-incident-id", incident_id)
    await expect(detail).to_have_attribute("data-state", "ready")
    return detail


def dispatch_row(detail: Locator, unit_id: str) -> Locator:
    return detail.locator(f'[data-section="dispatches"] .dispatch[data-unit-id="{unit_id}"]')


async def untick(detail: Locator, key: str) -> None:
    box = detail.locator(f'input.pick[data-pick="{key}"]')
    await expect(box).to_be_checked()
    await box.click()
    await expect(detail.locator(f'input.pick[data-pick="{key}"]')).not_to_be_checked()


async def test_dispatch_recommended_in_one_click_then_a_busy_unit_is_refused(
    page: Page, browser_errors: BrowserErrors, database_url: str, mqtt_url: str, artifacts: Path
) -> None:
    tokens = await seed_city(database_url)
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings), api_for(settings, tokens["commander"]) as colleague:
        kitchen = await colleague.phone_report("Kitchen fire, No. 3 Lane")
        shed = await colleague.phone_report("Shed fire, No. 5 Lane")
        status, recommended = await colleague.call("GET", f"/api/incidents/{kitchen}/recommendation")
        assert status == 200
        chosen = {u["id"]: a["capability"] for a in recommended["assignments"] for u in a["chosen"]}
        assert set(chosen) == {"U-1", "U-2", "U-3", "U-4"}, recommended
        await sign_in(page, settings, browser_errors)
        detail = await open_incident(page, kitchen)
        rec = detail.locator('[data-section="recommendation"]')
        button = detail.locator("#dispatch-recommended")
        for key in ("unit:U-1", "unit:U-2", "unit:U-3", "unit:U-4", "supply:DEP-1:blankets"):
            await expect(rec.locator(f'input.pick[data-pick="{key}"]')).to_be_checked()
        await expect(detail.locator('[data-section="dispatches"]')).to_contain_text("No unit dispatched yet.")
        # The commander keeps Engine 4 back.
        await untick(detail, "unit:U-4")
        await expect(detail.locator(".dispatch-summary")).to_have_text("Selected: units 3 · supplies 1")

        # Hold the request in flight: the button is disabled, a second click sends nothing.
        sent: list[Any] = []
        release = asyncio.Event()

        async def hold(route: Route) -> None:
            sent.append(route.request.post_data_json)
            await release.wait()
            await route.continue_()

        await page.route("**/api/incidents/*/dispatches", hold)
        await button.click()
        await expect(button).to_be_disabled()
        await expect(button).to_have_text("Dispatching…")
        await button.click(force=True)
        release.set()

        result = detail.locator(".dispatch-result")
        await expect(result).to_be_visible()
        await expect(result.locator("li")).to_have_count(3)
        await expect(result.locator('li[data-unit-id="U-1"]')).to_have_text(
            re.compile(r"^Engine 1 · ETA \d+ min$")
        )
        await expect(result).to_contain_text("Medic 3")
        await page.unroute("**/api/incidents/*/dispatches", hold)
        assert len(sent) == 1, sent
        body = sent[0]
        # Each unit goes with the capability the recommendation chose it for.
        units = {u["id"]: u["capability"] for u in body["units"]}
        assert units == {k: v for k, v in chosen.items() if k != "U-4"}, body
        # The supplies go with the first unit listed.
        assert body["supplies"] == [
            {"depot_id": "DEP-1", "item": "blankets", "quantity": 50, "unit_id": body["units"][0]["id"]}
        ]

        # The dispatches are listed, live, with ETA and acknowledgement countdown; Engine 4 stayed home.
        for unit_id in ("U-1", "U-2", "U-3"):
            row = dispatch_row(detail, unit_id)
            await expect(row).to_have_attribute("data-status", "dispatched")
            await expect(row.locator(".dispatch-eta")).to_have_text(re.compile(r"^ETA \d+ min$"))
            await expect(row.locator(".dispatch-countdown")).to_have_text(
                re.compile(r"^acknowledge within \d+:\d\d$")
            )
            await expect(row.locator(".dispatch-cancel")).to_have_text("Call back")
        await expect(dispatch_row(detail, "U-4")).to_have_count(0)
        await expect(detail.locator(".dispatch:has-text('blankets')")).to_have_count(1)
        await expect(detail.locator(".detail-fields")).to_contain_text("Responding")
        await expect(detail.locator('.timeline-entry[data-action="dispatch"]')).to_have_count(3)
        await page.screenshot(path=artifacts / "console-dispatched.png")

        # The shed fire's recommendation is Engine 4 (and what is left of the blankets)...
        detail = await open_incident(page, shed)
        await expect(detail.locator('input.pick[data-pick="unit:U-4"]')).to_be_checked()
        await expect(detail.locator('input.pick[data-pick="unit:U-1"]')).to_have_count(0)
        # ...but a colleague sends Engine 4 to the kitchen fire meanwhile.
        browser_errors.allow(http_error(409, f"/api/incidents/{shed}/dispatches"), "Engine 4 is taken")
        status, sent_by_colleague = await colleague.call(
            "POST", f"/api/incidents/{kitchen}/dispatches", {"units": ["U-4"]}
        )
        assert status == 201, sent_by_colleague
        await detail.locator("#dispatch-recommended").click()
        error = detail.locator(".dispatch-error")
        await expect(error).to_be_visible()
        await expect(error).to_have_text("unit U-4 is not available: it is dispatched")
        # All or nothing: the shed fire has no dispatch; the refreshed recommendation has nobody left.
        await expect(detail).to_have_attribute("data-state", "ready")
        await expect(detail.locator('input.pick[data-pick="unit:U-4"]')).to_have_count(0)
        await expect(detail.locator("#dispatch-recommended")).to_be_disabled()
        await expect(detail.locator(".dispatch-hint")).to_have_text("No recommended unit to send.")
        await expect(error).to_have_text("unit U-4 is not available: it is dispatched")
        await expect(detail.locator(".dispatch")).to_have_count(0)
        status, shed_now = await colleague.call("GET", f"/api/incidents/{shed}")
        assert status == 200 and shed_now["dispatches"] == [] and shed_now["status"] == "confirmed"
        browser_errors.finish()


async def test_overdue_dispatch_offers_the_next_unit_and_the_lifecycle_says_why_not(
    page: Page,
    browser_errors: BrowserErrors,
    database_url: str,
    mqtt_url: str,
    tmp_path: Path,
    artifacts: Path,
) -> None:
    tokens = await seed_city(database_url)
    settings = settings_for(database_url, mqtt_url, plans_path=plans_with_ack_deadline(tmp_path, 2))
    async with running_server(settings), api_for(settings, tokens["commander"]) as colleague:
        kitchen = await colleague.phone_report("Kitchen fire, No. 3 Lane")
        await sign_in(page, settings, browser_errors)
        detail = await open_incident(page, kitchen)
        status_buttons = detail.locator('[data-section="status"] .status-action')
        await expect(status_buttons).to_have_text(
            ["Responding", "Contained", "Resolved", "False alarm", "Cancel incident"]
        )
        for key in ("unit:U-2", "unit:U-3", "unit:U-4"):
            await untick(detail, key)
        await detail.locator("#dispatch-recommended").click()
        engine1 = dispatch_row(detail, "U-1")
        await expect(engine1).to_have_attribute("data-status", "dispatched")
        await expect(engine1).to_contain_text("collects 50 pcs blankets at DEP-1")

        # Engine 1 does not acknowledge within 2 s: dispatch.overdue flags it and offers Engine 2.
        await expect(engine1).to_have_class(re.compile(r"\bis-overdue\b"))
        await expect(engine1.locator(".overdue-note")).to_have_text("Overdue: not acknowledged in time")
        offer = engine1.locator(".offer-send")
        await expect(offer).to_have_text("Send Engine 2")
        await detail.locator('[data-section="status"]').scroll_into_view_if_needed()
        await page.screenshot(path=artifacts / "console-overdue.png")
        await offer.click()
        engine2 = dispatch_row(detail, "U-2")
        await expect(engine2).to_have_attribute("data-status", "dispatched")
        # Engine 2 is on its way: no more offering it.
        await expect(engine1.locator(".offer-send")).to_have_count(0)

        # Units still out: resolving is refused, in the server's words.
        browser_errors.allow(http_error(409, f"/api/incidents/{kitchen}/status"), "units still out")
        await status_buttons.filter(has_text="Resolved").click()
        await expect(detail.locator(".status-error")).to_have_text(
            "clear or cancel the dispatches of U-1, U-2 first"
        )
        await expect(detail.locator(".detail-fields")).to_contain_text("Responding")

        for row in (engine1, engine2):
            await row.locator(".dispatch-cancel").click()
            await expect(row).to_have_attribute("data-status", "cancelled")
            await expect(row.locator(".dispatch-status")).to_have_text("Called back")
            await expect(row.locator(".dispatch-cancel")).to_have_count(0)
        await status_buttons.filter(has_text="Resolved").click()
        await expect(detail.locator(".detail-fields")).to_contain_text("Resolved")
        await expect(detail.locator(".status-error")).to_have_count(0)
        await expect(status_buttons).to_have_text(["Close", "Reopen"])
        await expect(page.locator(f'{ROWS}[data-incident-id="{kitchen}"]')).to_have_count(0)

        timeline = detail.locator('[data-section="timeline"]')
        await expect(timeline.locator(".timeline-entry").first).to_contain_text("Responding → Resolved")
        overdue = timeline.locator('.timeline-entry[data-action="dispatch.overdue"]')
        await expect(overdue.last).to_contain_text("offered Engine 2")
        await expect(
            timeline.locator('.timeline-entry[data-action="dispatch.status"]').first
        ).to_contain_text("Dispatched → Called back")

        # Reopening needs a reason: asked for inline, refused empty, recorded when given.
        await status_buttons.filter(has_text="Reopen").click()
        reason = detail.locator(".reason-input")
        await expect(reason).to_be_focused()
        await detail.locator(".reason-submit").click()
        await expect(detail.locator(".status-error")).to_have_text("A reason is required.")
        await reason.fill("Smoke seen again from the kitchen")
        await reason.press("Enter")
        await expect(detail.locator(".detail-fields")).to_contain_text("Confirmed")
        await expect(detail.locator(".reason-form")).to_have_count(0)
        newest = timeline.locator(".timeline-entry").first
        await expect(newest).to_have_attribute("data-action", "reopen")
        await expect(newest).to_contain_text("Smoke seen again from the kitchen")
        await expect(page.locator(f'{ROWS}[data-incident-id="{kitchen}"]')).to_have_count(1)
        browser_errors.finish()


async def test_tasks_false_alarm_and_a_phone_screen(
    page: Page, browser_errors: BrowserErrors, database_url: str, mqtt_url: str, artifacts: Path
) -> None:
    tokens = await seed_city(database_url)
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings), api_for(settings, tokens["commander"]) as colleague:
        kitchen = await colleague.phone_report("Kitchen fire, No. 3 Lane")
        await sign_in(page, settings, browser_errors)
        detail = await open_incident(page, kitchen)
        tasks = detail.locator('[data-section="tasks"]')
        await expect(tasks).to_contain_text("No tasks.")

        form = tasks.locator(".task-form")
        await form.locator(".task-add").click()
        await expect(tasks.locator(".tasks-error")).to_have_text("Say what needs doing.")
        await form.locator("input[name=title]").fill("Check the hydrants on No. 3 Lane")
        await form.locator("input[name=due]").fill("10")
        await form.locator("input[name=owner]").fill("U-3")
        await form.locator(".task-add").click()
        hydrants = tasks.locator(".task", has_text="Check the hydrants on No. 3 Lane")
        await expect(hydrants).to_have_attribute("data-status", "open")
        await expect(hydrants).to_contain_text("Owner: Medic 3")
        await expect(hydrants.locator(".task-due")).to_have_text(re.compile(r"^\d+:\d\d left$"))
        await expect(tasks.locator(".tasks-error")).to_have_count(0)
        await expect(form.locator("input[name=title]")).to_have_value("")

        # A colleague's task that is due at once: task.overdue flags it live.
        status, _ = await colleague.call(
            "POST", f"/api/incidents/{kitchen}/tasks", {"title": "Report casualties", "due_in_s": 1}
        )
        assert status == 201
        casualties = tasks.locator(".task", has_text="Report casualties")
        await expect(casualties).to_have_class(re.compile(r"\bis-overdue\b"))
        await expect(casualties.locator(".overdue-note")).to_have_text("Overdue")
        await casualties.locator(".task-done").click()
        result = casualties.locator(".result-input")
        await expect(result).to_be_focused()
        await casualties.locator(".result-submit").click()
        await expect(tasks.locator(".tasks-error")).to_have_text("Enter the result first.")
        await result.fill("Two minor injuries, treated on scene")
        await casualties.locator(".result-submit").click()
        await expect(casualties).to_have_attribute("data-status", "done")
        await expect(casualties).not_to_have_class(re.compile(r"\bis-overdue\b"))
        await expect(casualties).to_contain_text("Result: Two minor injuries, treated on scene")
        timeline = detail.locator('[data-section="timeline"]')
        await expect(timeline.locator('.timeline-entry[data-action="task.overdue"]')).to_contain_text(
            "Report casualties"
        )
        await expect(timeline.locator(".timeline-entry").first).to_contain_text("Open → Done")

        # A false alarm asks why, calls the incident off and leaves only "Reopen".
        status_buttons = detail.locator('[data-section="status"] .status-action')
        await status_buttons.filter(has_text="False alarm").click()
        await detail.locator(".reason-input").fill("Burnt toast")
        await detail.locator(".reason-submit").click()
        await expect(detail.locator(".detail-fields")).to_contain_text("False alarm")
        await expect(status_buttons).to_have_text(["Reopen"])
        await expect(page.locator(f'{ROWS}[data-incident-id="{kitchen}"]')).to_have_count(0)
        await expect(detail.locator("#dispatch-recommended")).to_be_disabled()
        await expect(detail.locator(".dispatch-hint")).to_have_text(
            "The incident has ended: reopen it to dispatch."
        )

        # In Chinese, every new label follows.
        await page.locator("#lang-select").select_option("zh-CN")
        await expect(status_buttons).to_have_text(["重新打开"])
        await expect(detail.locator('[data-section="tasks"] > .detail-heading')).to_have_text("督办任务")
        await expect(casualties.locator(".task-status")).to_have_text("已完成")
        await page.locator("#lang-select").select_option("en")

        # On a phone the panel fits the width, buttons included.
        await page.set_viewport_size({"width": 390, "height": 844})
        await expect(page.locator("#incident-queue")).to_be_hidden()
        await expect(detail).to_be_visible()
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        # Each control is scrolled to and measured in one step in the page: the panel is
        # rebuilt when the refresh the false alarm's events scheduled lands (up to 2 s
        # later), and a control found a moment ago may be gone by the time it is measured.
        for selector in ("#dispatch-recommended", ".task-form .task-add", ".status-action"):
            box = await page.evaluate(SCROLL_AND_MEASURE, f"#incident-detail {selector}")
            assert box["width"] > 0 and box["x"] >= 0 and box["x"] + box["width"] <= 390, (selector, box)
        await page.evaluate(SCROLL_AND_MEASURE, '#incident-detail [data-section="tasks"]')
        await page.screenshot(path=artifacts / "console-tasks-mobile.png")
        browser_errors.finish()


async def test_a_viewer_follows_dispatches_but_has_no_controls(
    page: Page, browser_errors: BrowserErrors, database_url: str, mqtt_url: str
) -> None:
    tokens = await seed_city(database_url)
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings), api_for(settings, tokens["commander"]) as commander:
        kitchen = await commander.phone_report("Kitchen fire, No. 3 Lane")
        status, body = await commander.call(
            "POST",
            f"/api/incidents/{kitchen}/dispatches",
            {"units": [{"id": "U-3", "capability": "medical"}]},
        )
        assert status == 201, body
        await sign_in(page, settings, browser_errors, username="viewer")
        detail = await open_incident(page, kitchen)
        await expect(dispatch_row(detail, "U-3")).to_contain_text("Medic 3")
        await expect(detail.locator('[data-section="recommendation"] .unit-choice').first).to_be_visible()
        for control in (
            "#dispatch-recommended",
            "input.pick",
            ".dispatch-cancel",
            ".status-action",
            ".task-form",
        ):
            await expect(detail.locator(control)).to_have_count(0)
        await expect(detail.locator('[data-section="status"]')).to_have_count(0)
        # Live all the same: the commander calls Medic 3 back.
        dispatch_id = body["dispatches"][0]["id"]
        status, _ = await commander.call(
            "POST", f"/api/dispatches/{dispatch_id}/status", {"status": "cancelled"}
        )
        assert status == 200
        await expect(dispatch_row(detail, "U-3")).to_have_attribute("data-status", "cancelled")
        browser_errors.finish()
