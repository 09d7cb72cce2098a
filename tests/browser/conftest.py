"""Browser fixtures: Debian's Chromium driven by playwright's async API, in the test's own loop.

The browser runs in the same event loop as the server under test, so the
integration tests' loop hygiene applies here too: a test fails if playwright
(or the server) leaves a task running or an unhandled exception on the loop.
Playwright and the browser are started per test and closed in teardown,
before the hygiene check looks for leftovers.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, Playwright, async_playwright, expect

# Re-exported so pytest applies it (autouse) to every test in this folder.
from tests.integration.conftest import _loop_hygiene  # noqa: F401

CHROMIUM = os.environ.get("EMERGENCY_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

# Generous for a loaded CI machine, far below the test timeout.
expect.set_options(timeout=10_000)


@pytest.fixture(scope="session")
def chromium() -> str:
    # A failure, not a skip: CI must not go green without having run these.
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: run `make install` (or set EMERGENCY_TEST_CHROMIUM)")
    return CHROMIUM


@pytest.fixture
async def playwright() -> AsyncIterator[Playwright]:
    async with async_playwright() as p:
        yield p


@pytest.fixture
async def browser(playwright: Playwright, chromium: str) -> AsyncIterator[Browser]:
    browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        await browser.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """An English page at a desktop size; uncaught script errors are collected in ``page.page_errors``."""
    context = await browser.new_context(viewport={"width": 1400, "height": 900}, locale="en-US")
    context.set_default_timeout(10_000)
    page = await context.new_page()
    # Console messages are not collected: Chromium logs every refused WebSocket
    # and 401 as an error, which are expected here. Uncaught exceptions are bugs.
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.page_errors = errors  # type: ignore[attr-defined]
    try:
        yield page
    finally:
        await context.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
