"""The field team's app (/field) in a real browser, beside the commander's console.

Two browser contexts, as two people: a commander at a desktop on ``/`` and a
unit's crew on a phone (390 x 844, touch) on ``/field``, against the real
server, database and broker. The alarm comes over MQTT; everything after it
travels through the pages. The field page runs under its own strict CSP
(``script-src 'self'``, no violation may occur), and every console error or
uncaught exception in either page fails the test (conftest.py's
``browser_errors``; the two that provoke a refusal or a restart allow exactly
the errors Chromium logs for them). No sleeps: every wait is playwright's
auto-retrying ``expect`` or a poll with a deadline.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from playwright.async_api import (
    Browser,
    BrowserContext,
    Geolocation,
    Locator,
    Page,
    Route,
    ViewportSize,
    expect,
)
from shapely.geometry import Point

from command import db
from command.settings import Settings
from tests.browser.conftest import SERVER_AWAY, BrowserErrors, http_error
from tests.browser.test_console import (
    ROWS,
    FeedFrames,
    assert_not_navigated,
    assert_resumes_by_seq,
    base_url,
    eventually,
    mark_page,
    other_language_strings,
    seq_at_cut,
)
from tests.browser.test_dispatch_console import api_for, dispatch_row, open_incident, seed_city, untick
from tests.integration.helpers import PASSWORD, alarm, publisher, running_server, settings_for

DESKTOP = ViewportSize(width=1400, height=900)
PHONE = ViewportSize(width=390, height=844)
# Where the crew's phone says it is: next to Engine 1's seeded position.
PARKED = Geolocation(latitude=30.2605, longitude=120.1605)
NEARER = Geolocation(latitude=30.268, longitude=120.152)
# Records what the page asks of the vibration motor and the speaker.
SENSES = """
window.__vibrations = [];
Object.defineProperty(Navigator.prototype, "vibrate", {
  configurable: true,
  value(pattern) { window.__vibrations.push(pattern); return true; },
});
window.__csp_violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp_violations.push(e.violatedDirective);
});
window.__tones = 0;
const oscillator = AudioContext.prototype.createOscillator;
AudioContext.prototype.createOscillator = function () { window.__tones += 1; return oscillator.call(this); };
"""
# Every visible string on the page that is not data (data sits under translate="no").
VISIBLE_UI_TEXT = """() => {
  const out = [];
  const shown = (node) => node && node.checkVisibility({ visibilityProperty: true, opacityProperty: true });
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const parent = n.parentElement;
    const text = n.textContent.trim();
    if (!text || !parent || parent.closest('[translate="no"], option, script, style, noscript')) continue;
    if (shown(parent)) out.push(text);
  }
  for (const input of document.querySelectorAll("input[placeholder], textarea[placeholder]")) {
    if (shown(input) && !input.closest('[translate="no"]')) out.push(input.placeholder);
  }
  return out;
}"""


async def seed_field_city(database_url: str) -> dict[str, str]:
    """seed_city (four units, a depot with blankets, roads; the ``field`` account
    is Engine 1's crew) plus a gas station and a school near the scene."""
    tokens = await seed_city(database_url)
    conn = await asyncpg.connect(database_url)
    await db.register_codecs(conn)
    try:
        await conn.execute(
            "INSERT INTO hazards (id, kind, name, geom) VALUES ('HZ-1', 'gas_station', 'Lane 3 fuel', $1)",
            Point(120.1508, 30.2702),
        )
        await conn.execute(
            "INSERT INTO sites (id, kind, name, geom) VALUES ('SCH-1', 'school', 'No. 1 School', $1)",
            Point(120.1501, 30.2701),
        )
    finally:
        await conn.close()
    return tokens


@asynccontextmanager
async def desk_and_phone(
    browser: Browser, errors: BrowserErrors
) -> AsyncIterator[tuple[BrowserContext, BrowserContext]]:
    """The commander's desktop and the crew's phone (touch, geolocation allowed), both in English,
    both watched by ``errors``."""
    desk = errors.watch(await browser.new_context(viewport=DESKTOP, locale="en-US"))
    phone = await browser.new_context(
        viewport=PHONE,
        is_mobile=True,
        has_touch=True,
        locale="en-US",
        geolocation=PARKED,
        permissions=["geolocation"],
    )
    errors.watch(phone)
    for context in (desk, phone):
        context.set_default_timeout(10_000)
    await phone.add_init_script(SENSES)
    try:
        yield desk, phone
    finally:
        await phone.close()
        await desk.close()


async def open_field(context: BrowserContext, settings: Settings, username: str = "field") -> Page:
    """The field page, signed in through its form, live with its snapshot."""
    page = await context.new_page()
    await page.goto(base_url(settings) + "field")
    # The page carries its own strict policy: scripts from our files only.
    csp = page.locator('meta[http-equiv="Content-Security-Policy"]')
    await expect(csp).to_have_attribute("content", re.compile(r"(^|; )script-src 'self'(;|$)"))
    body = page.locator("body")
    await expect(body).to_have_attribute("data-view", "login")
    await page.fill("#login-username", username)
    await page.fill("#login-password", PASSWORD)
    await page.locator("#login-submit").tap()
    return page


async def wait_live(page: Page, view: str) -> None:
    await expect(page.locator("body")).to_have_attribute("data-view", view)
    state = page.locator("#connection-state")
    await expect(state).to_have_attribute("data-state", "live")
    await expect(state).to_have_attribute("data-seq", re.compile(r"^\d+$"))


async def open_console(context: BrowserContext, settings: Settings) -> Page:
    """The commander's console, signed in by a session cookie.

    The login request goes through the context (its cookie is the browser's):
    the console's own form is tested in test_console.py, and an anonymous
    visit makes the console probe with a 401 that Chromium logs as an error.
    """
    answer = await context.request.post(
        base_url(settings) + "api/login", data={"username": "commander", "password": PASSWORD}
    )
    assert answer.ok, await answer.text()
    page = await context.new_page()
    await page.goto(base_url(settings))
    await wait_live(page, "console")
    return page


async def assert_clean_text(page: Page) -> None:
    """No placeholder or missing value leaked into the page's text."""
    text: str = await page.evaluate("document.body.innerText")
    leaks = re.findall(r"\b(?:null|undefined|NaN|\[object Object\])\b|\{\w+\}", text)
    assert leaks == [], leaks


async def touch_targets_fit(page: Page, locator: Locator) -> None:
    """Each control is at least 48 px tall and on screen across the width."""
    width = page.viewport_size["width"] if page.viewport_size else 0
    # The card re-renders on every live event: a button counted a moment ago
    # may be replaced (no box) by the time it is measured, so measure the
    # current set again until it holds still.
    for _ in range(50):
        boxes = [await locator.nth(i).bounding_box() for i in range(await locator.count())]
        if boxes and all(box is not None for box in boxes):
            break
        await asyncio.sleep(0.1)
    for box in boxes:
        assert box is not None and box["height"] >= 48, box
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, box


async def test_a_dispatch_reaches_the_crews_phone_live_and_each_step_reaches_the_commander(
    browser: Browser, browser_errors: BrowserErrors, database_url: str, mqtt_url: str, artifacts: Path
) -> None:
    tokens = await seed_field_city(database_url)
    settings = settings_for(database_url, mqtt_url)
    async with (
        running_server(settings),
        api_for(settings, tokens["commander"]) as colleague,
        publisher(mqtt_url) as pub,
        desk_and_phone(browser, browser_errors) as (desk, phone),
    ):
        # The crew signs in and stands by; the phone shares its position.
        field = await open_field(phone, settings)
        await wait_live(field, "field")
        await mark_page(field)
        await expect(field.locator("#standby")).to_be_visible()
        await expect(field.locator("#standby h2")).to_have_text("No current dispatch")
        await expect(field.locator("#dispatch-card")).to_be_hidden()
        await expect(field.locator("#unit-info")).to_have_attribute("data-status", "available")
        await expect(field.locator("#unit-info .unit-callsign")).to_have_text("Engine 1")
        await expect(field.locator("#geo-state")).to_have_attribute("data-state", "on")
        await expect(field.locator("#geo-state")).to_contain_text(
            re.compile(r"Sharing position.*sent \d\d:\d\d")
        )

        async def unit_at(where: Geolocation) -> bool:
            status, body = await colleague.call("GET", "/api/units")
            assert status == 200
            u1 = next(u for u in body["units"] if u["id"] == "U-1")
            return bool(u1["lat"] == where["latitude"] and u1["lon"] == where["longitude"])

        await eventually(lambda: unit_at(PARKED), "the phone's position to reach the server")
        await expect(field.locator('.own-marker[data-unit-id="U-1"]')).to_have_count(1)

        # The commander: an alarm over MQTT appears live, and one click dispatches Engine 1.
        commander = await open_console(desk, settings)
        await mark_page(commander)
        await pub.publish("sensors/S-1/alarm", alarm("kitchen-1", kind="fire", severity="Moderate"))
        rows = commander.locator(ROWS)
        await expect(rows).to_have_count(1)
        incident_id = await rows.first.get_attribute("data-incident-id")
        assert incident_id
        await expect(commander.locator(f'path[data-map-incident-id="{incident_id}"]')).to_have_count(1)
        status, incident = await colleague.call("GET", f"/api/incidents/{incident_id}")
        assert status == 200
        detail = await open_incident(commander, incident_id)
        await expect(detail.locator('input.pick[data-pick="unit:U-1"]')).to_be_checked()
        for key in ("unit:U-2", "unit:U-3", "unit:U-4"):
            await untick(detail, key)
        await detail.locator("#dispatch-recommended").click()
        engine1 = dispatch_row(detail, "U-1")
        await expect(engine1).to_have_attribute("data-status", "dispatched")
        status, listed = await colleague.call("GET", f"/api/incidents/{incident_id}/dispatches")
        assert status == 200 and len(listed["dispatches"]) == 1
        dispatch_id = str(listed["dispatches"][0]["id"])

        # On the phone, without a reload: the order, announced by sound and vibration.
        card = field.locator("#dispatch-card")
        await expect(card).to_have_attribute("data-dispatch-id", dispatch_id)
        await expect(card).to_have_attribute("data-status", "dispatched")
        await expect(card).to_have_class(re.compile(r"\bis-incoming\b"))
        await expect(field.locator("#standby")).to_be_hidden()
        await expect(card.locator(".incoming-label")).to_have_text("New dispatch")
        await expect(card.locator(".incident-title")).to_have_text(incident["title"])
        await expect(card.locator(".incident-fields")).to_contain_text("Fire")
        await expect(card.locator(".incident-fields")).to_contain_text("Moderate")
        await expect(card.locator(".eta-value")).to_have_text(re.compile(r"^ETA \d+ min$"))
        await expect(card.locator(".eta-by")).to_have_text(re.compile(r"^arrive by \d\d:\d\d$"))
        await expect(card.locator(".to-go")).to_have_text(re.compile(r"^[\d.]+ k?m to go$"))
        await expect(card.locator(".ack-countdown")).to_have_text(
            re.compile(r"^acknowledge within \d+:\d\d$")
        )
        steps = card.locator(".step-button")
        await expect(steps).to_have_text(["Acknowledge", "En route", "On scene", "Decline"])
        await expect(card.locator(".step-button.is-primary")).to_have_text("Acknowledge")
        assert await field.evaluate("window.emergencyField.announcements") == [dispatch_id]
        assert await field.evaluate("window.__vibrations.length") == 1
        assert await field.evaluate("window.__tones") >= 1

        supply = field.locator('[data-section="supplies"] .supply')
        await expect(supply).to_have_count(1)
        await expect(supply).to_have_attribute("data-status", "requested")
        await expect(supply.locator(".supply-what")).to_have_text("blankets 50 pcs")
        await expect(supply.locator(".supply-where")).to_have_text("at North depot")
        await expect(supply.locator(".supply-status")).to_have_text("To collect")
        hazard = field.locator('[data-section="hazards"] .hazard[data-place-id="HZ-1"]')
        await expect(hazard).to_contain_text("Lane 3 fuel")
        await expect(hazard.locator(".place-meta")).to_have_text(re.compile(r"^Gas station · \d+ m$"))
        await expect(field.locator('[data-section="sites"] .site[data-place-id="SCH-1"]')).to_contain_text(
            "School"
        )
        await expect(field.locator('[data-section="tasks"]')).to_contain_text("No tasks for your unit.")
        await expect(field.locator(f'.dest-marker[data-dispatch-id="{dispatch_id}"]')).to_have_count(1)
        await expect(field.locator('.pickup-marker[data-depot-id="DEP-1"]')).to_have_count(1)
        await expect(field.locator('path[data-map-hazard-id="HZ-1"]')).to_have_count(1)
        await touch_targets_fit(field, steps)
        assert await field.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        await assert_clean_text(field)
        await field.screenshot(path=artifacts / "field-phone-dispatched.png")
        # The details are re-rendered as their data arrives: scroll in the page, not on a held element.
        await field.evaluate("document.querySelector('[data-section=\"supplies\"]').scrollIntoView()")
        await field.screenshot(path=artifacts / "field-phone-dispatched-details.png")
        await field.evaluate("window.scrollTo(0, 0)")

        # Acknowledge on the phone; the commander sees it.
        await steps.filter(has_text="Acknowledge").tap()
        await expect(card).to_have_attribute("data-status", "acknowledged")
        await expect(card).not_to_have_class(re.compile(r"\bis-incoming\b"))
        await expect(steps).to_have_text(["En route", "On scene", "Cleared"])
        await expect(supply).to_have_attribute("data-status", "committed")
        await expect(engine1).to_have_attribute("data-status", "acknowledged")
        await expect(engine1.locator(".dispatch-status")).to_have_text("Acknowledged")

        # En route, and the phone moves: the commander's map follows.
        await steps.filter(has_text="En route").tap()
        await expect(card).to_have_attribute("data-status", "en_route")
        await expect(engine1).to_have_attribute("data-status", "en_route")
        await expect(field.locator("#unit-info")).to_have_attribute("data-status", "en_route")
        await phone.set_geolocation(NEARER)
        await eventually(lambda: unit_at(NEARER), "the moved position to reach the server")
        await expect(commander.locator('.leaflet-marker-icon[data-unit-id="U-1"]')).to_have_attribute(
            "data-status", "en_route"
        )

        # A task for the crew appears live; they note progress and start it.
        status, task = await colleague.call(
            "POST",
            f"/api/incidents/{incident_id}/tasks",
            {"title": "Check the hydrants on No. 3 Lane", "due_in_s": 600, "owner_unit": "U-1"},
        )
        assert status == 201, task
        row = field.locator(f'[data-section="tasks"] .task[data-task-id="{task["id"]}"]')
        await expect(row).to_have_attribute("data-status", "open")
        await expect(row.locator(".task-title")).to_have_text("Check the hydrants on No. 3 Lane")
        await expect(row.locator(".task-due")).to_have_text(re.compile(r"^\d+:\d\d left$"))
        await row.locator(".task-note-add").tap()
        await expect(row.locator(".task-error")).to_have_text("Write the note first.")
        await row.locator(".task-note-input").fill("Hydrant 3 works, hydrant 5 frozen")
        await row.locator(".task-note-add").tap()
        await expect(row.locator(".task-notes")).to_contain_text("Hydrant 3 works, hydrant 5 frozen")
        await expect(row.locator(".task-note-input")).to_have_value("")
        await row.locator(".task-start").tap()
        await expect(row).to_have_attribute("data-status", "in_progress")

        # On scene: the blankets are delivered.
        await steps.filter(has_text="On scene").tap()
        await expect(card).to_have_attribute("data-status", "on_scene")
        await expect(engine1).to_have_attribute("data-status", "on_scene")
        await expect(supply).to_have_attribute("data-status", "delivered")
        await expect(supply.locator(".supply-status")).to_have_text("Delivered")

        # The task is done, with a result; the commander's panel shows it.
        await row.locator(".task-done").tap()
        await row.locator(".task-result-submit").tap()
        await expect(row.locator(".task-error")).to_have_text("Enter the result first.")
        await row.locator(".task-result-input").fill("Hydrant 5 thawed, both in use")
        await row.locator(".task-result-submit").tap()
        await expect(row).to_have_attribute("data-status", "done")
        await expect(row.locator(".task-result")).to_have_text("Result: Hydrant 5 thawed, both in use")
        commander_task = detail.locator('[data-section="tasks"] .task', has_text="Check the hydrants")
        await expect(commander_task).to_have_attribute("data-status", "done")
        await assert_clean_text(field)
        await field.evaluate("window.scrollTo(0, 0)")
        await field.screenshot(path=artifacts / "field-phone-on-scene.png")
        await field.evaluate("document.querySelector('[data-section=\"tasks\"]').scrollIntoView()")
        await field.screenshot(path=artifacts / "field-phone-task-done.png")

        # Both pages at the other size.
        await field.set_viewport_size(DESKTOP)
        await expect(field.locator("#field-map")).to_be_visible()
        map_box = await field.locator("#field-map").bounding_box()
        card_box = await card.bounding_box()
        assert map_box and card_box and map_box["x"] > card_box["x"] + card_box["width"] - 1, (
            map_box,
            card_box,
        )
        await assert_clean_text(field)
        await field.screenshot(path=artifacts / "field-desktop.png")
        await commander.screenshot(path=artifacts / "console-field-acknowledged-desktop.png")
        await commander.set_viewport_size(PHONE)
        await expect(detail).to_be_visible()
        await commander.screenshot(path=artifacts / "console-field-acknowledged-phone.png")
        await field.set_viewport_size(PHONE)

        # Cleared ends the dispatch, after a confirmation.
        await steps.filter(has_text="Cleared").tap()
        form = field.locator('#step-form[data-step="cleared"]')
        await expect(form).to_contain_text("Report the job done? This ends the dispatch.")
        await field.locator("#step-back").tap()
        await expect(form).to_have_count(0)
        await steps.filter(has_text="Cleared").tap()
        await field.locator("#step-confirm").tap()
        await expect(field.locator("#standby")).to_be_visible()
        await expect(card).to_be_hidden()
        await expect(field.locator("#standby-last")).to_have_text(
            f"Last dispatch: {incident['title']} · Cleared"
        )
        await expect(field.locator("#unit-info")).to_have_attribute("data-status", "available")
        await expect(engine1).to_have_attribute("data-status", "cleared")
        await assert_clean_text(field)
        await field.screenshot(path=artifacts / "field-phone-standby.png")

        await assert_not_navigated(field)
        await assert_not_navigated(commander)
        assert await field.evaluate("window.__csp_violations") == []
        browser_errors.finish()


async def test_declining_needs_a_reason_and_a_refused_step_shows_the_servers_reason(
    browser: Browser, browser_errors: BrowserErrors, database_url: str, mqtt_url: str, artifacts: Path
) -> None:
    tokens = await seed_field_city(database_url)
    settings = settings_for(database_url, mqtt_url)
    async with (
        running_server(settings),
        api_for(settings, tokens["commander"]) as commander,
        desk_and_phone(browser, browser_errors) as (_desk, phone),
    ):
        kitchen = await commander.phone_report("Kitchen fire, No. 3 Lane")
        status, sent = await commander.call(
            "POST", f"/api/incidents/{kitchen}/dispatches", {"units": ["U-1"]}
        )
        assert status == 201, sent
        first = str(sent["dispatches"][0]["id"])

        # An order already waiting when the crew signs in is announced too.
        field = await open_field(phone, settings)
        await wait_live(field, "field")
        card = field.locator("#dispatch-card")
        await expect(card).to_have_attribute("data-dispatch-id", first)
        await expect(card.locator(".incident-title")).to_have_text("Kitchen fire, No. 3 Lane")
        await expect(field.locator('[data-section="supplies"]')).to_contain_text("Nothing to collect.")
        assert await field.evaluate("window.emergencyField.announcements") == [first]

        await card.locator('.step-button[data-step="declined"]').tap()
        reason = field.locator("#step-reason")
        await expect(reason).to_be_focused()
        await expect(field.locator("#step-form label")).to_have_text("Why can't you take it?")
        await touch_targets_fit(field, field.locator("#step-form button"))
        await field.locator("#step-confirm").tap()
        await expect(field.locator("#step-form .form-error")).to_have_text("A reason is required.")
        await reason.fill("Pump failure on the engine")
        await expect(field.locator("#step-form .form-error")).to_have_count(0)
        await field.screenshot(path=artifacts / "field-phone-decline.png")
        await field.locator("#step-confirm").tap()
        await expect(field.locator("#standby")).to_be_visible()
        await expect(field.locator("#standby-last")).to_have_text(
            "Last dispatch: Kitchen fire, No. 3 Lane · Declined"
        )
        status, declined = await commander.call("GET", f"/api/dispatches/{first}")
        assert status == 200 and declined["status"] == "declined", declined
        assert declined["reason"] == "Pump failure on the engine"

        # The engine is fixed and sent again: a second order, announced again, live.
        status, sent = await commander.call(
            "POST", f"/api/incidents/{kitchen}/dispatches", {"units": ["U-1"]}
        )
        assert status == 201, sent
        second = str(sent["dispatches"][0]["id"])
        await expect(card).to_have_attribute("data-dispatch-id", second)
        await expect(field.locator("#step-form")).to_have_count(0)
        assert await field.evaluate("window.emergencyField.announcements") == [first, second]
        assert await field.evaluate("window.__vibrations.length") == 2

        # The crew taps Acknowledge while the commander, on the radio, reports it for them:
        # the crew's report is refused, and the page shows the server's reason.
        browser_errors.allow(http_error(409, f"/api/dispatches/{second}/status"), "the refused report")
        held: list[Route] = []
        release = asyncio.Event()

        async def hold(route: Route) -> None:
            held.append(route)
            await release.wait()
            await route.continue_()

        await field.route("**/api/dispatches/*/status", hold)
        acknowledge = card.locator('.step-button[data-step="acknowledged"]')
        await acknowledge.tap()
        await expect(acknowledge).to_have_text("Sending…")
        await expect(acknowledge).to_be_disabled()
        status, _ = await commander.call(
            "POST", f"/api/dispatches/{second}/status", {"status": "acknowledged"}
        )
        assert status == 200
        release.set()
        error = card.locator(".action-error")
        await expect(error).to_have_text("a dispatch that is acknowledged cannot become acknowledged")
        await expect(card).to_have_attribute("data-status", "acknowledged")
        await expect(card.locator(".step-button")).to_have_text(["En route", "On scene", "Cleared"])
        await expect(error).to_be_visible()
        assert len(held) == 1
        await field.unroute("**/api/dispatches/*/status", hold)
        # The next step clears the refusal.
        await card.locator('.step-button[data-step="en_route"]').tap()
        await expect(card).to_have_attribute("data-status", "en_route")
        await expect(error).to_have_count(0)

        # Called back by the commander: the crew is told, with a buzz, and stands by.
        status, _ = await commander.call("POST", f"/api/dispatches/{second}/status", {"status": "cancelled"})
        assert status == 200
        await expect(field.locator("#standby")).to_be_visible()
        await expect(field.locator("#standby-last")).to_have_text(
            "Last dispatch: Kitchen fire, No. 3 Lane · Called back"
        )
        await expect(field.locator("#unit-info")).to_have_attribute("data-status", "available")
        assert await field.evaluate("window.__vibrations.length") == 3
        assert await field.evaluate("window.emergencyField.announcements") == [first, second]
        browser_errors.finish()


async def test_every_visible_string_follows_the_language_and_other_roles_are_sent_to_the_console(
    browser: Browser, browser_errors: BrowserErrors, database_url: str, mqtt_url: str, artifacts: Path
) -> None:
    tokens = await seed_field_city(database_url)
    settings = settings_for(database_url, mqtt_url)
    async with (
        running_server(settings),
        api_for(settings, tokens["commander"]) as commander,
        desk_and_phone(browser, browser_errors) as (_desk, phone),
    ):
        kitchen = await commander.phone_report("Kitchen fire, No. 3 Lane")
        order = {
            "units": ["U-1"],
            "supplies": [{"depot_id": "DEP-1", "item": "blankets", "quantity": 20, "unit_id": "U-1"}],
        }
        status, sent = await commander.call("POST", f"/api/incidents/{kitchen}/dispatches", order)
        assert status == 201, sent
        status, task = await commander.call(
            "POST",
            f"/api/incidents/{kitchen}/tasks",
            {"title": "Close No. 3 Lane", "due_in_s": 900, "owner_unit": "U-1"},
        )
        assert status == 201, task

        field = await open_field(phone, settings)
        await wait_live(field, "field")
        task_row = field.locator(f'.task[data-task-id="{task["id"]}"]')
        await expect(task_row).to_be_visible()
        await expect(field.locator('[data-section="hazards"] .hazard')).to_have_count(1)
        await expect(field.locator("#geo-state")).to_have_attribute("data-state", "on")
        await expect(field.locator("#geo-state .geo-sent")).to_be_visible()

        async def ui_text() -> list[str]:
            texts: list[str] = await field.evaluate(VISIBLE_UI_TEXT)
            return texts

        english = await ui_text()
        assert len(english) > 25, english
        for expected in ("Field unit", "live", "Acknowledge", "Supplies to collect", "Add note"):
            assert any(expected in text for text in english), (expected, english)

        async def all_chinese(where: str) -> None:
            latin = [text for text in await ui_text() if re.search(r"[A-Za-z]", text)]
            assert latin == [], f"{where}: untranslated {latin}"

        await field.locator("#lang-select").select_option("zh-CN")
        await expect(field.locator(".app-header h1")).to_have_text("现场处置")
        await expect(field.locator("html")).to_have_attribute("lang", "zh-CN")
        assert await field.title() == "现场处置 · 应急指挥"
        await expect(field.locator('.step-button[data-step="acknowledged"]')).to_have_text("接收任务")
        await all_chinese("dispatch")
        chinese = await ui_text()
        assert not set(chinese) & {t for t in english if re.search(r"[A-Za-z]", t)}
        await assert_clean_text(field)
        await field.screenshot(path=artifacts / "field-phone-zh.png")
        await field.set_viewport_size(DESKTOP)
        await all_chinese("dispatch at desktop size")
        await field.screenshot(path=artifacts / "field-desktop-zh.png")
        await field.set_viewport_size(PHONE)

        # And back: the dispatch view holds no Chinese entry of the dictionaries, then Chinese again.
        await field.locator("#lang-select").select_option("en")
        await expect(field.locator('.step-button[data-step="acknowledged"]')).to_have_text("Acknowledge")
        assert await other_language_strings(field, "en") == [], "dispatch view back in English"
        await field.locator("#lang-select").select_option("zh-CN")
        await expect(field.locator('.step-button[data-step="acknowledged"]')).to_have_text("接收任务")

        # The forms that open on demand, too.
        await field.locator('.step-button[data-step="declined"]').tap()
        await expect(field.locator("#step-form")).to_be_visible()
        await all_chinese("decline form")
        await field.locator("#step-back").tap()
        await task_row.locator(".task-done").tap()
        await expect(task_row.locator(".task-result-form")).to_be_visible()
        await all_chinese("task result form")

        # Signing out shows the form in Chinese; a commander signing in here is sent to the console.
        await field.locator("#logout-button").tap()
        await expect(field.locator("body")).to_have_attribute("data-view", "login")
        await all_chinese("sign-in")
        await field.fill("#login-username", "commander")
        await field.fill("#login-password", PASSWORD)
        await field.locator("#login-submit").tap()
        await expect(field.locator("body")).to_have_attribute("data-view", "wrong-role")
        await expect(field.locator("#wrong-role-text")).to_have_text(
            "commander 当前的身份是“指挥员”。现场页面需要绑定队伍的账号。"
        )
        await all_chinese("wrong role")
        await field.locator("#lang-select").select_option("en")
        await expect(field.locator("#wrong-role-view h2")).to_have_text("This page is for field units")
        await expect(field.locator("#wrong-role-text")).to_have_text(
            "commander is signed in as Commander. The field page needs an account bound to a unit."
        )
        link = field.locator("#console-link")
        await expect(link).to_have_attribute("href", "/")
        await expect(link).to_have_text("Open the command console")
        await link.tap()
        await expect(field.locator("body")).to_have_attribute("data-view", "console")
        browser_errors.finish()


async def test_the_field_page_rides_out_a_server_restart_and_resumes_by_seq(
    browser: Browser, browser_errors: BrowserErrors, database_url: str, mqtt_url: str
) -> None:
    browser_errors.allow(SERVER_AWAY, "the server is stopped on purpose", required=False)
    tokens = await seed_field_city(database_url)
    settings = settings_for(database_url, mqtt_url)
    async with desk_and_phone(browser, browser_errors) as (_desk, phone):
        frames = FeedFrames(phone)
        async with running_server(settings):
            field = await open_field(phone, settings)
            await wait_live(field, "field")
            await expect(field.locator("#standby")).to_be_visible()
            await mark_page(field)
            state = field.locator("#connection-state")
            seq_before = int(await state.get_attribute("data-seq") or "0")
            [first] = frames.greeted()

        await expect(state).to_have_attribute("data-state", "reconnecting")
        await expect(field.locator("#connection-text")).to_have_text("reconnecting")
        last_seen = await seq_at_cut(field, first)

        async with running_server(settings), api_for(settings, tokens["commander"]) as commander:
            kitchen = await commander.phone_report("Kitchen fire, No. 3 Lane")
            status, sent = await commander.call(
                "POST", f"/api/incidents/{kitchen}/dispatches", {"units": ["U-1"]}
            )
            assert status == 201, sent
            await expect(state).to_have_attribute("data-state", "live", timeout=15_000)
            card = field.locator("#dispatch-card")
            await expect(card).to_have_attribute("data-dispatch-id", str(sent["dispatches"][0]["id"]))
            await expect(card.locator(".incident-title")).to_have_text("Kitchen fire, No. 3 Lane")
            # A list that failed while the server was down said so; the next one took it back.
            await expect(field.locator("#message-banner")).to_be_hidden()
            assert int(await state.get_attribute("data-seq") or "0") > seq_before
            # It said hello again with since = the last seq it got, and was sent what followed:
            # a replay, not a reset. (A dispatch widens a crew's world, which the server
            # answers with a fresh snapshot of it, not a reset one.)
            second = await assert_resumes_by_seq(frames, first, last_seen)
            assert "reset snapshot" not in second.names(), second.names()
            assert any(name.startswith("dispatch.") for name in second.names()), second.names()
            await assert_not_navigated(field)
    browser_errors.assert_clean()


async def test_position_sharing_waits_for_the_browsers_permission(
    browser: Browser, browser_errors: BrowserErrors, database_url: str, mqtt_url: str
) -> None:
    tokens = await seed_field_city(database_url)
    settings = settings_for(database_url, mqtt_url)
    # A phone whose browser has not been told yet whether this site may know where it is.
    phone = await browser.new_context(
        viewport=PHONE, is_mobile=True, has_touch=True, locale="en-US", geolocation=NEARER
    )
    browser_errors.watch(phone)
    try:
        async with running_server(settings), api_for(settings, tokens["commander"]) as commander:
            field = await open_field(phone, settings)
            await wait_live(field, "field")
            geo = field.locator("#geo-state")
            button = field.locator("#geo-button")
            await expect(geo).to_have_attribute("data-state", "prompt")
            await expect(geo).to_have_text("Position not shared")
            await expect(button).to_have_text("Share my position")
            await touch_targets_fit(field, button)

            # Asked on a tap; headless Chromium answers a prompt with "no".
            await button.tap()
            await expect(geo).to_have_attribute("data-state", "denied")
            await expect(geo).to_have_text("Location blocked by the browser")
            await expect(button).to_be_hidden()

            # Allowed later in the browser's settings: sharing starts by itself.
            await phone.grant_permissions(["geolocation"])
            await expect(geo).to_have_attribute("data-state", "on")

            async def moved() -> bool:
                status, body = await commander.call("GET", "/api/units")
                u1 = next(u for u in body["units"] if u["id"] == "U-1")
                return bool(status == 200 and u1["lat"] == NEARER["latitude"])

            await eventually(moved, "the position to reach the server once allowed")
            browser_errors.finish()
    finally:
        await phone.close()
