"""Browser fixtures: Debian's Chromium driven by playwright's async API, in the test's own loop.

The browser runs in the same event loop as the server under test, so the
integration tests' loop hygiene applies here too: a test fails if playwright
(or the server) leaves a task running or an unhandled exception on the loop.
Playwright and the browser are started per test and closed in teardown,
before the hygiene check looks for leftovers.

Every browser context a test opens is watched (``browser_errors.watch``): the
test fails on any uncaught page error and on any console message of type
error, unless the test allowed that message beforehand, with its reason
(``browser_errors.allow``). Chromium logs an HTTP error answer to a page's
request, and a WebSocket that cannot connect, as console errors: a test that
provokes one on purpose says so, and the rest fail it.

The watch ends with the test's last check, ``browser_errors.finish()``, or
else with its body: a test that stops its server while a page is still open
(the ``page`` fixture outlives the test's body) calls ``finish()`` first, since
the page then logs its refused reconnects, which are not the test's doing.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    ViewportSize,
    WebError,
    async_playwright,
    expect,
)

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
DESKTOP = ViewportSize(width=1400, height=900)

# Generous for a loaded CI machine, far below the test timeout.
expect.set_options(timeout=10_000)

# What Chromium logs (as console errors) when the server is away: a refused
# WebSocket and refused requests. How many depends on the backoff's timing and
# on what the page was doing, so the tests that stop the server allow these
# with required=False.
SERVER_AWAY = (
    r"^console: (WebSocket connection to 'ws://[^']*/ws' failed"
    r"|Failed to load resource: net::ERR_CONNECTION_REFUSED)"
)


def http_error(status: int, path: str) -> str:
    """The console error Chromium logs when a request to ``path`` (a regex) is answered ``status``."""
    text = rf"Failed to load resource: the server responded with a status of {status} \(.*\)"
    return rf"^console: {text} \[[^\]]*{path}\]$"


@dataclass
class Allowed:
    pattern: re.Pattern[str]
    why: str
    required: bool


@dataclass
class BrowserErrors:
    """Page errors and console errors of every watched browser context, and the ones a test allows."""

    seen: list[str] = field(default_factory=list)
    allowed: list[Allowed] = field(default_factory=list)
    # What assert_clean last failed on: the teardown does not report it twice.
    reported: list[str] = field(default_factory=list)
    stopped: bool = False

    def watch(self, context: BrowserContext) -> BrowserContext:
        """Watch every page the context has or will have. Call for each context a test opens."""
        context.on("console", self._console)
        context.on("weberror", self._weberror)
        return context

    def stop(self) -> None:
        """What the pages log from now on is not the test's doing."""
        self.stopped = True

    def finish(self) -> None:
        """The test's last check (assert_clean), after which the watch ends: call it
        before stopping the server under a page that stays open."""
        self.assert_clean()
        self.stop()

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not self.stopped:
            self.seen.append(f"console: {message.text} [{message.location.get('url', '')}]")

    def _weberror(self, error: WebError) -> None:
        if not self.stopped:
            self.seen.append(f"pageerror: {error.error} [{error.page.url if error.page else ''}]")

    def allow(self, pattern: str, why: str, *, required: bool = True) -> None:
        """Allow the errors matching ``pattern`` (a regex), for the reason ``why``.

        With ``required`` (the default) the test also fails unless one occurred:
        an allowance that matches nothing says the test no longer provokes what
        it claims to, or that the pattern is wrong.
        """
        assert why, "say why the error is expected"
        self.allowed.append(Allowed(re.compile(pattern), why, required))

    def problems(self) -> list[str]:
        unexpected = [e for e in self.seen if not any(a.pattern.search(e) for a in self.allowed)]
        missing = [
            f"expected an error matching {a.pattern.pattern!r} ({a.why})"
            for a in self.allowed
            if a.required and not any(a.pattern.search(e) for e in self.seen)
        ]
        return unexpected + missing

    def assert_clean(self) -> None:
        """No error so far but the allowed ones (and each required one seen)."""
        problems = self.problems()
        self.reported = problems
        assert problems == [], problems


@pytest.fixture
def browser_errors() -> Iterator[BrowserErrors]:
    """The test's error watch; checked after the test (and its browser) are done.

    Synchronous, so it works in any event loop scope (test_console_boards.py
    shares one loop across the module).
    """
    errors = BrowserErrors()
    yield errors
    problems = errors.problems()
    if problems and problems != errors.reported:
        pytest.fail(f"browser errors: {problems}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    try:
        return (yield)
    finally:
        errors = getattr(item, "funcargs", {}).get("browser_errors")
        if isinstance(errors, BrowserErrors):
            errors.stop()


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
async def browser(
    playwright: Playwright, chromium: str, browser_errors: BrowserErrors
) -> AsyncIterator[Browser]:
    # Depends on browser_errors so the errors are checked after the browser is closed.
    browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        await browser.close()


@pytest.fixture
async def page(browser: Browser, browser_errors: BrowserErrors) -> AsyncIterator[Page]:
    """An English page at a desktop size, watched by ``browser_errors``."""
    context = browser_errors.watch(await browser.new_context(viewport=DESKTOP, locale="en-US"))
    context.set_default_timeout(10_000)
    page = await context.new_page()
    try:
        yield page
    finally:
        await context.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
