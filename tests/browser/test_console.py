"""The commander console in a real browser against the real server, database and broker.

Everything here goes through the page the way a commander would: the login
form, the live queue and map fed by MQTT alarms over the WebSocket, a server
restart and a dropped connection (the feed's frames, as Chromium saw them on
the wire, show it resume by seq), the language switch. Every console error or
uncaught exception fails a test (conftest.py's ``browser_errors``). No sleeps:
every wait is playwright's auto-retrying ``expect`` or a poll with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
from playwright.async_api import BrowserContext, FloatRect, Page, ViewportSize, WebSocket, expect
from shapely.geometry import Point

from command import db
from command.services import free_port
from command.settings import Settings
from tests.browser.conftest import DESKTOP, SERVER_AWAY, BrowserErrors, http_error
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


async def sign_in(
    page: Page, settings: Settings, errors: BrowserErrors, username: str = "commander", *, url: str = ""
) -> None:
    """Open the console (at ``url``, else the server's), sign in through the form,
    and wait until the feed is live with its snapshot."""
    # Signed out, the console learns it from its first request (GET /api/incidents)
    # being refused, and shows the form: Chromium logs that 401.
    errors.allow(http_error(401, "/api/incidents"), "the signed-out console's first request")
    await page.goto(url or base_url(settings))
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


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


@dataclass
class Socket:
    """One of the page's feed WebSockets: the JSON frames it sent and received, in order."""

    url: str
    sent: list[dict[str, Any]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)

    @property
    def hello(self) -> dict[str, Any] | None:
        return next((f for f in self.sent if f.get("type") == "hello"), None)

    def seqs(self) -> list[int]:
        """The seq of every snapshot and event this socket delivered."""
        out: list[int] = []
        for frame in self.received:
            events = frame.get("events", []) if frame.get("type") == "batch" else [frame]
            out += [e["seq"] for e in events if isinstance(e, dict) and isinstance(e.get("seq"), int)]
        return out

    def names(self) -> list[str]:
        """The name of every event this socket delivered, in order, and its snapshots: "reset
        snapshot" for one that answers a resume the server could not replay, else "snapshot"."""
        out: list[str] = []
        for frame in self.received:
            if frame.get("type") == "snapshot":
                out.append("reset snapshot" if frame.get("reset") else "snapshot")
            events = frame.get("events", []) if frame.get("type") == "batch" else [frame]
            out += [str(e["name"]) for e in events if isinstance(e, dict) and e.get("type") == "event"]
        return out


class FeedFrames:
    """Every feed WebSocket (``/ws``) a page, or each page of a context, opens, as Chromium saw it.

    Attach before the page connects. A socket that could not connect (the
    server away) is listed with no frames.
    """

    def __init__(self, source: Page | BrowserContext) -> None:
        self.sockets: list[Socket] = []
        if isinstance(source, BrowserContext):
            source.on("page", lambda page: page.on("websocket", self._opened))
        else:
            source.on("websocket", self._opened)

    def _opened(self, ws: WebSocket) -> None:
        if urlsplit(ws.url).path != "/ws":
            return
        socket = Socket(ws.url)
        self.sockets.append(socket)
        ws.on("framesent", lambda payload: _add_frame(socket.sent, payload))
        ws.on("framereceived", lambda payload: _add_frame(socket.received, payload))

    def greeted(self) -> list[Socket]:
        """The sockets that got as far as sending their hello."""
        return [s for s in self.sockets if s.hello is not None]

    async def next_hello(self, after: int) -> Socket:
        """Wait until more than ``after`` sockets have said hello; the next one."""

        async def greeted() -> bool:
            return len(self.greeted()) > after

        # The backoff may have grown to a few seconds while the feed was away.
        await eventually(greeted, "the page to connect and say hello again", timeout=20)
        return self.greeted()[after]


async def seq_at_cut(page: Page, before: Socket) -> int:
    """Once the page has seen its feed cut (no frame can still arrive on
    ``before``, its socket until then): the last seq that socket delivered,
    which must be the one the page shows it applied."""
    last_seen = max(before.seqs(), default=None)
    assert last_seen is not None, f"the socket delivered no seq: {before.received}"
    await expect(page.locator("#connection-state")).to_have_attribute("data-seq", str(last_seen))
    return last_seen


async def assert_resumes_by_seq(frames: FeedFrames, before: Socket, last_seen: int) -> Socket:
    """The page's next socket after ``before``: its hello resumes with ``since`` = ``last_seen``."""
    after = await frames.next_hello(next(i for i, s in enumerate(frames.greeted()) if s is before) + 1)
    assert after.hello is not None
    assert after.hello.get("since") == last_seen, (after.hello, before.seqs())
    return after


class Cable:
    """A TCP relay between the browser and the server: the page's network, which a test cuts and mends.

    Cut, every connection through it is reset (as when a network drops,
    without a close handshake) and new ones are refused; mended, it relays
    again on the same port. The server itself stays up throughout.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._relays: set[asyncio.Task[Any]] = set()

    async def mend(self) -> None:
        assert self._server is None
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._open):
            writer.transport.abort()
        await asyncio.gather(*self._relays, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._relays.add(task)
        self._open.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            up_reader, upstream = await asyncio.open_connection(*self.target)
            self._open.add(upstream)
            await asyncio.gather(_pump(reader, upstream), _pump(up_reader, writer))
        except OSError:
            pass  # the server refused: so does the relay
        finally:
            for end in (writer, upstream):
                if end is not None:
                    self._open.discard(end)
                    end.close()
            self._relays.discard(task)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction until it ends; never raises (a reset ends the other direction too)."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError, RuntimeError):
        writer.transport.abort()


@asynccontextmanager
async def cable_to(settings: Settings) -> AsyncIterator[Cable]:
    cable = Cable(settings.http_host, settings.http_port)
    await cable.mend()
    try:
        yield cable
    finally:
        await cable.cut()


# The page's visible UI text in one language that is a dictionary entry of the
# other, as "key: text", against the page's own dictionaries (i18n.js's DICTS).
# UI text is every visible text node, input placeholder and chosen select
# option outside translate="no" (server data: names, ids, titles, reasons).
# An entry's {placeholders} stand for anything. A phrase (two or more words;
# in Chinese, two or more Han characters) is found anywhere in a text, so a
# sentence left in English inside a translated line is caught; a single word
# only as a whole text, since the console puts data into translated lines
# without marking it ("预案：fire/Moderate" names a plan, not a severity).
# Entries the two languages share ("—", "{n} {unit}", the languages' names)
# and entries with no word in them cannot tell the languages apart: skipped.
OTHER_LANGUAGE_STRINGS = r"""async (lang) => {
  const { DICTS } = await import("/static/i18n.js");
  const other = lang === "en" ? "zh-CN" : "en";
  const word = other === "en" ? /[A-Za-z]{2,}/g : /[\u4e00-\u9fff]/g;
  const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const entries = [];
  for (const [key, value] of Object.entries(DICTS[other])) {
    const words = (value.replace(/\{\w+\}/g, " ").match(word) || []).length;
    if (value === DICTS[lang][key] || words === 0) continue;
    const body = value.split(/\{\w+\}/).map(escape).join(".+?");
    if (words === 1) {
      entries.push([key, new RegExp(`^${body}$`)]);
    } else {
      // English words match whole: "Fire" is not in "Firefox".
      const edge = (c) => (other === "en" && /\w/.test(c) ? "\\b" : "");
      entries.push([key, new RegExp(edge(value[0]) + body + edge(value[value.length - 1]))]);
    }
  }
  const shown = (node) => node.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true });
  const texts = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const text = n.textContent.replace(/\s+/g, " ").trim();
    const parent = n.parentElement;
    if (!text || !parent || parent.closest('[translate="no"], option, script, style, noscript')) continue;
    if (shown(parent)) texts.push(text);
  }
  for (const input of document.querySelectorAll("input[placeholder], textarea[placeholder]")) {
    if (shown(input) && !input.closest('[translate="no"]')) texts.push(input.placeholder);
  }
  for (const select of document.querySelectorAll("select")) {
    const chosen = select.selectedOptions[0];
    if (chosen && shown(select) && !select.closest('[translate="no"]')) texts.push(chosen.textContent.trim());
  }
  const found = [];
  for (const text of texts) {
    for (const [key, pattern] of entries) if (pattern.test(text)) found.push(`${key}: ${text}`);
  }
  return { texts: texts.length, found };
}"""


async def other_language_strings(page: Page, lang: str) -> list[str]:
    """The visible UI strings of a page shown in ``lang`` that are the other language's dictionary
    entries (see OTHER_LANGUAGE_STRINGS); checks there is UI text to look at."""
    await expect(page.locator("html")).to_have_attribute("lang", lang)
    result: dict[str, Any] = await page.evaluate(OTHER_LANGUAGE_STRINGS, lang)
    assert result["texts"] >= 5, f"hardly any UI text on the page: {result}"
    found: list[str] = result["found"]
    return found


def _add_frame(frames: list[dict[str, Any]], payload: str | bytes) -> None:
    try:
        frame = json.loads(payload)
    except ValueError:
        return
    if isinstance(frame, dict):
        frames.append(frame)


async def test_login_form_rejects_wrong_password_then_goes_live(
    page: Page, browser_errors: BrowserErrors, database_url: str, mqtt_url: str
) -> None:
    browser_errors.allow(http_error(401, "/api/incidents"), "the signed-out console's first request")
    browser_errors.allow(http_error(401, "/api/login"), "the wrong password, refused")
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
        browser_errors.finish()


async def test_alarm_over_mqtt_appears_live_and_escalates(
    page: Page, browser_errors: BrowserErrors, database_url: str, mqtt_url: str
) -> None:
    async with seeded_server(database_url, mqtt_url) as settings, publisher(mqtt_url) as pub:
        await sign_in(page, settings, browser_errors)
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
        browser_errors.finish()


async def test_console_reconnects_after_server_restart_and_catches_up(
    page: Page, browser_errors: BrowserErrors, database_url: str, mqtt_url: str
) -> None:
    browser_errors.allow(SERVER_AWAY, "the server is stopped on purpose", required=False)
    await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    state = page.locator("#connection-state")
    rows = page.locator(ROWS)
    frames = FeedFrames(page)
    async with publisher(mqtt_url) as pub:
        async with running_server(settings):
            await sign_in(page, settings, browser_errors)
            await mark_page(page)
            await pub.publish("sensors/S-1/alarm", alarm("before", severity="Moderate"))
            await expect(rows).to_have_count(1)
            seq_before = int(await state.get_attribute("data-seq") or "0")
            [first] = frames.greeted()
            assert "since" not in (first.hello or {}), first.hello  # a fresh page: a snapshot

        # Server gone: the page says so, and keeps what it had.
        await expect(state).to_have_attribute("data-state", "reconnecting")
        await expect(page.locator("#connection-text")).to_have_text("reconnecting")
        await expect(rows).to_have_count(1)
        last_seen = await seq_at_cut(page, first)

        # An alarm while the server is down waits in the broker for our session.
        await pub.publish(
            "sensors/S-2/alarm", alarm("during", kind="gas_leak", severity="Extreme", lat=30.3, lon=120.2)
        )

        async with running_server(settings):
            # It says hello again with since = the last seq it got, and is not reloaded.
            second = await assert_resumes_by_seq(frames, first, last_seen)
            await expect(state).to_have_attribute("data-state", "live")
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
            # Resumed, not reset: no fresh snapshot on the new socket, and it alone since.
            assert not [n for n in second.names() if n.endswith("snapshot")], second.names()
            assert "incident.opened" in second.names(), second.names()
            assert len(frames.greeted()) == 2, frames.greeted()
            await assert_not_navigated(page)
    browser_errors.assert_clean()


async def test_console_resumes_by_seq_after_its_connection_drops(
    page: Page, browser_errors: BrowserErrors, database_url: str, mqtt_url: str
) -> None:
    """The network drops (the server stays up): what happened meanwhile is replayed, not reloaded."""
    browser_errors.allow(SERVER_AWAY, "the network is cut on purpose", required=False)
    tokens = await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    state = page.locator("#connection-state")
    rows = page.locator(ROWS)
    frames = FeedFrames(page)
    async with (
        running_server(settings),
        cable_to(settings) as cable,
        aiohttp.ClientSession(
            base_url=base_url(settings), headers={"Authorization": f"Bearer {tokens['commander']}"}
        ) as colleague,
    ):

        async def report(title: str) -> str:
            body = {"kind": "fire", "severity": "Severe", "title": title, "lat": 30.27, "lon": 120.15}
            async with colleague.post("/api/incidents", json=body) as resp:
                assert resp.status == 201, await resp.text()
                return str((await resp.json())["id"])

        await sign_in(page, settings, browser_errors, url=cable.url)
        await mark_page(page)
        before = await report("Kitchen fire, No. 3 Lane")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_have_attribute("data-incident-id", before)
        [first] = frames.greeted()

        await cable.cut()
        await expect(state).to_have_attribute("data-state", "reconnecting")
        last_seen = await seq_at_cut(page, first)
        # Reported while the page cannot hear: not on it yet.
        missed = [await report("Shed fire, No. 5 Lane"), await report("Garage fire, No. 7 Lane")]
        await expect(rows).to_have_count(1)

        await cable.mend()
        second = await assert_resumes_by_seq(frames, first, last_seen)
        await expect(state).to_have_attribute("data-state", "live")
        for incident_id in missed:
            await expect(page.locator(f'{ROWS}[data-incident-id="{incident_id}"]')).to_have_count(1)
        await expect(rows).to_have_count(3)
        # Replayed on the new socket (the events it missed, no fresh snapshot), and not reloaded.
        assert not [n for n in second.names() if n.endswith("snapshot")], second.names()
        assert second.names().count("incident.opened") == 2, second.names()
        assert len(frames.greeted()) == 2, frames.greeted()
        await assert_not_navigated(page)
    browser_errors.assert_clean()


async def test_language_switch_relabels_the_console(
    page: Page, browser_errors: BrowserErrors, database_url: str, mqtt_url: str
) -> None:
    async with seeded_server(database_url, mqtt_url) as settings:
        await sign_in(page, settings, browser_errors)
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
        # Caught up (the snapshot applied), before the test goes on and, at its end, stops the server.
        await expect(page.locator("#connection-state")).to_have_attribute("data-seq", re.compile(r"^\d+$"))
        await expect(conn_text).to_have_text("实时")
        await expect(lang).to_have_value("zh-CN")

        await lang.select_option("en")
        await expect(conn_text).to_have_text("live")
        await expect(queue_title).to_have_text("Incident queue")
        await expect(page.locator("#app-title")).to_have_text("Emergency Command Console")
        await expect(page.locator("html")).to_have_attribute("lang", "en")
        browser_errors.finish()


async def _box(page: Page, selector: str) -> FloatRect:
    box = await page.locator(selector).first.bounding_box()
    assert box is not None, f"{selector} is not rendered"
    return box


def _inside(inner: FloatRect, outer: FloatRect) -> bool:
    return (
        inner["x"] >= outer["x"]
        and inner["y"] >= outer["y"]
        and inner["x"] + inner["width"] <= outer["x"] + outer["width"]
        and inner["y"] + inner["height"] <= outer["y"] + outer["height"]
    )


async def _check_layout(page: Page, viewport: ViewportSize) -> None:
    """Map and queue both on screen, with real sizes, and the marker inside the map."""
    map_box = await _box(page, "#map")
    queue_box = await _box(page, "#incident-queue > li[data-incident-id]")
    marker_box = await _box(page, "path[data-map-incident-id]")
    page_box = FloatRect(x=0, y=0, width=viewport["width"], height=viewport["height"])
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
    page: Page, browser_errors: BrowserErrors, database_url: str, mqtt_url: str, artifacts: Path
) -> None:
    async with seeded_server(database_url, mqtt_url) as settings, publisher(mqtt_url) as pub:
        await sign_in(page, settings, browser_errors)
        await pub.publish("sensors/S-1/alarm", alarm("s-1", severity="Severe", message="Smoke in stairwell"))
        await pub.publish(
            "sensors/S-2/alarm", alarm("g-1", kind="gas_leak", severity="Extreme", lat=30.30, lon=120.18)
        )
        await expect(page.locator(ROWS)).to_have_count(2)
        await expect(page.locator("path[data-map-incident-id]")).to_have_count(2)

        await _check_layout(page, DESKTOP)
        await page.screenshot(path=artifacts / "console-desktop.png")

        mobile = ViewportSize(width=390, height=844)
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
        browser_errors.finish()


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
    page: Page, browser_errors: BrowserErrors, database_url: str, mqtt_url: str, artifacts: Path
) -> None:
    await seed_minimal(database_url)
    await add_hazard_at_s1(database_url)
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings), publisher(mqtt_url) as pub:
        await sign_in(page, settings, browser_errors)
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
        browser_errors.finish()


async def test_incident_detail_shows_server_error(
    page: Page, browser_errors: BrowserErrors, database_url: str, mqtt_url: str
) -> None:
    async with seeded_server(database_url, mqtt_url) as settings, publisher(mqtt_url) as pub:
        await sign_in(page, settings, browser_errors)
        await pub.publish("sensors/S-1/alarm", alarm("e-1", severity="Severe"))
        await expect(page.locator(ROWS)).to_have_count(1)
        # The recommendation fails: its error message from {"error":{"message"}} is shown.
        browser_errors.allow(http_error(500, "/recommendation"), "the failure this test routes in")
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
        browser_errors.finish()
