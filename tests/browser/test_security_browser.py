"""The console under its security headers in real Chromium: the CSP blocks
nothing the page needs, and after a reload (the token gone from memory, only
the HttpOnly cookie left) the page's own POSTs pass the cross-site check."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.browser.conftest import BrowserErrors
from tests.browser.test_console import base_url, seeded_server, sign_in


async def test_the_console_works_under_its_csp_and_posts_with_its_cookie(
    page: Page, browser_errors: BrowserErrors, database_url: str, mqtt_url: str
) -> None:
    # Any other violation is a console error too, and fails the test (see conftest.py).
    browser_errors.allow(
        r"^console: Executing inline script violates the following Content Security Policy directive "
        r"'script-src 'self''",
        "the inline script this test adds, refused",
    )
    async with seeded_server(database_url, mqtt_url) as settings:
        await sign_in(page, settings, browser_errors)
        await page.reload()
        # Signed in again from the cookie alone, and live on the feed.
        await expect(page.locator("body")).to_have_attribute("data-view", "console")
        await expect(page.locator("#connection-state")).to_have_attribute("data-state", "live")
        assert await page.evaluate("document.cookie") == ""  # HttpOnly: no script can read it
        # A state-changing request the way the page makes it (same-origin
        # fetch, cookie, no bearer): the browser's Origin lets it through.
        report = """async () => {
            const resp = await fetch("/api/incidents", {
                method: "POST", credentials: "same-origin",
                headers: {"Content-Type": "application/json", "Accept": "application/json"},
                body: JSON.stringify(
                    {kind: "fire", severity: "Minor", lat: 30.2, lon: 120.1, title: "Smoke"}),
            });
            return resp.status;
        }"""
        assert await page.evaluate(report) == 201
        # Inline script is refused by the CSP (the pages have none of their own).
        await page.evaluate(
            """() => { const s = document.createElement("script"); s.textContent = "window.__inline = 1";
                      document.body.append(s); }"""
        )
        assert await page.evaluate("window.__inline === undefined")
        # The field app's page loads under the same policy.
        await page.goto(base_url(settings) + "field")
        await page.wait_for_load_state("load")
        # Its script ran: a first visit in this browser shows the sign-in form.
        await expect(page.locator("body")).to_have_attribute("data-view", "login")
        browser_errors.finish()
