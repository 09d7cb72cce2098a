"""The console's main views hold no string of the other language, in Chinese and back in English.

Checked against the page's own dictionaries (i18n.js's DICTS, see
test_console.OTHER_LANGUAGE_STRINGS): the sign-in form, the incident queue
and the incident detail panel with every section filled (recommendation,
dispatches, tasks, lifecycle, timeline, hazards). test_console_boards.py
checks the other views, test_field.py the field app. No sleeps: every wait
is playwright's auto-retrying ``expect``.
"""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Page, expect

from tests.browser.conftest import BrowserErrors, http_error
from tests.browser.test_console import ROWS, add_hazard_at_s1, base_url, other_language_strings
from tests.browser.test_dispatch_console import api_for, open_incident, seed_city
from tests.integration.helpers import PASSWORD, running_server, settings_for


async def test_console_views_hold_no_string_of_the_other_language(
    page: Page, browser_errors: BrowserErrors, database_url: str, mqtt_url: str, artifacts: Path
) -> None:
    # Signed out, the console learns it from its first request being refused (and Chromium logs that 401).
    browser_errors.allow(http_error(401, "/api/incidents"), "the signed-out console's first request")
    tokens = await seed_city(database_url)
    await add_hazard_at_s1(database_url)
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings), api_for(settings, tokens["commander"]) as colleague:
        kitchen = await colleague.phone_report("Kitchen fire, No. 3 Lane")
        status, sent = await colleague.call(
            "POST",
            f"/api/incidents/{kitchen}/dispatches",
            {"units": [{"id": "U-3", "capability": "medical"}]},
        )
        assert status == 201, sent
        status, task = await colleague.call(
            "POST", f"/api/incidents/{kitchen}/tasks", {"title": "Close No. 3 Lane", "due_in_s": 900}
        )
        assert status == 201, task

        # The sign-in form, in English, then in Chinese.
        await page.goto(base_url(settings))
        body = page.locator("body")
        await expect(body).to_have_attribute("data-view", "login")
        assert await other_language_strings(page, "en") == []
        lang = page.locator("#lang-select")
        await lang.select_option("zh-CN")
        await expect(page.locator("#login-submit")).to_have_text("登录")
        assert await other_language_strings(page, "zh-CN") == [], "sign-in form"

        # Signed in, in Chinese: the queue, then the incident's detail beside it.
        await page.fill("#login-username", "commander")
        await page.fill("#login-password", PASSWORD)
        await page.click("#login-submit")
        await expect(body).to_have_attribute("data-view", "console")
        await expect(page.locator("#connection-state")).to_have_attribute("data-state", "live")
        await expect(page.locator(f'{ROWS}[data-incident-id="{kitchen}"]')).to_be_visible()
        assert await other_language_strings(page, "zh-CN") == [], "queue"
        detail = await open_incident(page, kitchen)
        for section in ("recommendation", "dispatches", "tasks", "status", "timeline", "hazards"):
            await expect(detail.locator(f'[data-section="{section}"]')).to_be_visible()
        await expect(
            detail.locator('[data-section="dispatches"] .dispatch[data-unit-id="U-3"]')
        ).to_be_visible()
        await expect(
            detail.locator('[data-section="tasks"] .task', has_text="Close No. 3 Lane")
        ).to_be_visible()
        await expect(detail.locator('[data-section="hazards"] .place-name')).to_have_count(1)
        assert await other_language_strings(page, "zh-CN") == [], "incident detail"
        await page.screenshot(path=artifacts / "console-detail-zh.png")

        # And back: no Chinese left on the same views.
        await lang.select_option("en")
        await expect(detail.locator('[data-section="recommendation"] > .detail-heading')).to_have_text(
            "Recommendation"
        )
        assert await other_language_strings(page, "en") == [], "queue and incident detail"
        await page.click("#logout-button")
        await expect(body).to_have_attribute("data-view", "login")
        assert await other_language_strings(page, "en") == [], "sign-in form after signing out"
        browser_errors.finish()
