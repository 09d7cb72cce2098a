"""The WebSocket hub: every connected console, and the fan-out to them.

Each console has a bounded :class:`ClientBuffer` filled by :meth:`Hub.publish`
(called by the feed, in seq order, never awaiting) and emptied by that
console's own writer task. Overflow policy: when a console's buffer is full it
is emptied and marked, and its writer closes it with 1013 (try again later);
the console reconnects with ``since`` and the outbox replays what it missed.
A writer whose socket accepts nothing for ``SEND_TIMEOUT_S`` is treated the
same way. One slow console therefore never delays another, and never holds
more than its limit in memory.

Fast path: a console whose writer is idle (nothing buffered, nothing being
sent) and whose socket has little unsent data gets new events written
straight to its transport by :meth:`Hub.publish`, as one WebSocket frame
encoded once and shared by every console that sees the same events. With a
thousand consoles, waking a thousand writer tasks and framing each message a
thousand times was most of the server's time in the fan-out benchmark;
everything that needs waiting (positions held back, a full socket, a
subscription change) still goes through the writer, and because the fast
path only runs while the writer is idle, frames stay in seq order.

What a console may see is its :class:`View` (command/feed_scope.py). Until
the console has caught up (snapshot or replay) events are held unfiltered;
the view is then built from the database state read for the catch-up and
the held events are filtered through it in order, in one step with no await
in between, so nothing committed meanwhile is lost or sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from websockets.frames import Frame, Opcode

from command.auth import token_hash
from command.client_buffer import MOVED, ClientBuffer, Overflow
from command.feed_protocol import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNAUTHORIZED,
    BadHello,
    BBox,
    Event,
    Principal,
    batch_frame,
    error_frame,
    parse_hello,
)
from command.feed_scope import BadBBox, FieldScope, View, parse_bbox
from command.ws_guard import FrameBudget

log = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 10.0
# More events than this behind, a console gets a fresh snapshot instead of a replay.
MAX_REPLAY = 10_000
# Positions are sent at most this often per console (newer ones replace
# older ones meanwhile); anything else is sent as soon as it arrives.
MOVED_INTERVAL_S = 0.25
# A socket that takes nothing for this long belongs to a console that has
# stopped reading: it is closed like one that overflowed.
SEND_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 5.0
REPLAY_FRAME = 500
# A logout, password or role change revokes a session; its sockets, on every
# instance, are closed at the next sweep.
SWEEP_INTERVAL_S = 2.0
# Client frames (pings, subscriptions): plenty for a console, too few to
# make the server work for a hostile one.
FRAMES_PER_S = 5.0
FRAME_BURST = 20.0
# The fast path writes to a socket only while less than this is unsent on
# it; past it the console's writer takes over, with aiohttp's flow control.
DIRECT_WRITE_MAX = 64 * 1024


@dataclass(eq=False, slots=True)
class Client:
    principal: Principal
    buffer: ClientBuffer
    ws: web.WebSocketResponse
    session: bytes  # the hash of the token that opened it, to notice its revocation
    budget: FrameBudget
    # None while catching up: events are then held unfiltered (see module doc).
    view: View | None = None
    # The highest seq the snapshot or replay already covered.
    floor: int = 0
    overflowed: bool = False
    # A bounding-box change asked for by the console, applied by its writer.
    subscribe: list[BBox | None] = field(default_factory=list)
    # The deadline of the send in progress, if any: an overflow cuts it short.
    # The task sending to this console right now, and since when: an overflow
    # or the sweep cuts a send to a socket nobody reads (no timer per send:
    # with a thousand consoles, arming one per frame was a seventh of the
    # server's time in the latency benchmark).
    sender: asyncio.Task[Any] | None = None
    send_started: float = 0.0
    cut: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    # The writer is waiting for events with nothing in hand: publish may then
    # write to the socket itself (the fast path; see module doc).
    parked: bool = False
    last_moved: float = float("-inf")
    transport: asyncio.BaseTransport | None = None


# What the hub needs from the store, as plain callables so it never sees SQL.
# Each returns the field scope read in the same transaction as its data.
Authenticate = Callable[[str], Awaitable[Principal | None]]
Snapshot = Callable[[Principal], Awaitable[tuple[dict[str, Any], FieldScope]]]
Replay = Callable[[Principal, int, int], Awaitable[tuple[list[Event], FieldScope] | None]]
LiveSessions = Callable[[list[bytes]], Awaitable[set[bytes]]]


class Hub:
    """Connected consoles and the fan-out to them."""

    def __init__(self, *, queue_max: int = 1000, heartbeat_s: float = 10.0) -> None:
        self._clients: set[Client] = set()
        self._sockets: set[web.WebSocketResponse] = set()
        self._queue_max = queue_max
        self._heartbeat_s = heartbeat_s
        self.overflows = 0
        self.last_seq = 0

    def __len__(self) -> int:
        return len(self._clients)

    @property
    def conflated(self) -> int:
        return sum(c.buffer.conflated for c in self._clients)

    def publish(self, events: Iterable[Event]) -> None:
        """Offer events (in seq order) to every console that may see them. Never blocks."""
        events = list(events)
        if not events:
            return
        self.last_seq = max(self.last_seq, events[-1].seq)
        now = asyncio.get_running_loop().time()
        frames: dict[tuple[int, ...], bytes] = {}  # shared by consoles seeing the same events
        for client in self._clients:
            if client.overflowed:
                continue
            pushed = False
            try:
                for event in events:
                    if event.seq <= client.floor:
                        continue
                    if client.view is None:
                        client.buffer.push(event, conflate=False)
                        pushed = True
                    elif client.view.admit(event):
                        client.buffer.push(event)
                        pushed = True
                        if client.view.grew:
                            # A new incident for this field team: after what is
                            # buffered, it gets a fresh snapshot of its scope.
                            client.view.grew = False
                            client.subscribe.append(client.view.bbox)
            except Overflow:
                self._overflow(client)
                continue
            if pushed and not _write_direct(client, now, frames):
                client.wake.set()

    def _activate(self, client: Client, view: View, floor: int) -> None:
        """Start filtering through ``view``; what was held meanwhile goes through it
        in order. Synchronous on purpose: no event can slip in between."""
        held = client.buffer.take()
        client.view, client.floor = view, floor
        try:
            for event in held:
                if event.seq > floor and view.admit(event):
                    client.buffer.push(event)
        except Overflow:
            self._overflow(client)
        if view.grew:  # a dispatch among the held events: see publish
            view.grew = False
            client.subscribe.append(view.bbox)
        client.wake.set()

    def _overflow(self, client: Client) -> None:
        self.overflows += 1
        client.overflowed = True
        # Free the memory now; the console resumes by seq from the outbox.
        client.buffer.clear()
        client.wake.set()
        if client.sender is not None and not client.cut:
            # Its writer waits on a socket nobody reads: stop waiting now.
            client.cut = True
            client.sender.cancel()

    async def sweep(self, live_sessions: LiveSessions) -> None:
        """Close, every few seconds, the consoles whose session has ended
        (logout, password or role change, expiry, account disabled)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            clients = list(self._clients)
            if not clients:
                continue
            for client in clients:
                if client.sender is not None and loop.time() - client.send_started > SEND_TIMEOUT_S:
                    self._overflow(client)  # its socket took nothing for too long
            live = await live_sessions(sorted({c.session for c in clients}))
            ended = [c for c in clients if c.session not in live and not c.ws.closed]
            for client in ended:
                log.info("closing the console of %s: its session ended", client.principal.username)
            await asyncio.gather(*(_end_session(c.ws) for c in ended))

    async def close_all(self) -> None:
        """Graceful close for shutdown: every console gets 1001 (going away)."""
        sockets = list(self._sockets)
        await asyncio.gather(
            *(ws.close(code=CLOSE_GOING_AWAY, message=b"server shutting down") for ws in sockets),
            return_exceptions=True,
        )

    async def serve(
        self,
        request: web.Request,
        *,
        authenticate: Authenticate,
        snapshot: Snapshot,
        replay: Replay,
        cookie_token: str | None,
    ) -> web.WebSocketResponse:
        """Run one console connection: hello, snapshot or replay, then live events."""
        # The server pings every heartbeat; aiohttp closes a connection whose
        # pong does not come within half of it, so a dead client is dropped
        # within 1.5 heartbeats (15 s by default; the issue asks for 30).
        # No permessage-deflate: browsers offer it, and it costs each console
        # ~150 KiB of zlib state and CPU per frame (bench fan-out: 1 GiB at
        # 5,000 consoles); the feed runs on the command centre's own network.
        ws = web.WebSocketResponse(heartbeat=self._heartbeat_s, max_msg_size=64 * 1024, compress=False)
        await ws.prepare(request)
        self._sockets.add(ws)
        try:
            await self._session(ws, request, authenticate, snapshot, replay, cookie_token)
        except StoreUnavailable as exc:
            log.warning("closing a console: %s", exc)
            if not ws.closed:
                await _close(ws, request, CLOSE_TRY_AGAIN_LATER, b"database unavailable; resume with since")
        finally:
            self._sockets.discard(ws)
            if not ws.closed:
                await _close(ws, request, CLOSE_NORMAL, b"")
        return ws

    async def _session(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        authenticate: Authenticate,
        snapshot: Snapshot,
        replay: Replay,
        cookie_token: str | None,
    ) -> None:
        try:
            first = await asyncio.wait_for(ws.receive(), HELLO_TIMEOUT_S)
        except TimeoutError:
            await ws.close(code=CLOSE_POLICY, message=b"no hello")
            return
        if first.type == WSMsgType.BINARY:
            # Not a hello either: the client is told so, as for a bad text one.
            await ws.send_str(error_frame("bad_hello", "first frame must be a JSON text frame"))
            await ws.close(code=CLOSE_POLICY, message=b"bad hello")
            return
        if first.type != WSMsgType.TEXT:
            return  # the client closed (or the connection failed) before its hello
        try:
            hello = parse_hello(first.data)
        except BadHello as exc:
            await ws.send_str(error_frame("bad_hello", str(exc)))
            await ws.close(code=CLOSE_POLICY, message=b"bad hello")
            return
        token = hello.token or cookie_token
        principal = await authenticate(token) if token else None
        if principal is None:
            await ws.send_str(error_frame("unauthorized", "a valid token or session cookie is required"))
            await ws.close(code=CLOSE_UNAUTHORIZED, message=b"unauthorized")
            return

        assert token is not None  # a principal came from it
        client = Client(
            principal,
            ClientBuffer(self._queue_max),
            ws,
            token_hash(token),
            FrameBudget(FRAMES_PER_S, FRAME_BURST),
            transport=request.transport,
        )
        # Registered before reading the database: whatever commits after our
        # read is held in the buffer, and the floor drops the overlap.
        self._clients.add(client)
        try:
            try:
                await self._catch_up(ws, client, hello.since, snapshot, replay)
            except TooSlow:
                self._overflow(client)
                await _close(ws, request, CLOSE_TRY_AGAIN_LATER, b"too slow; resume with since")
                return
            async with asyncio.TaskGroup() as group:
                writer = group.create_task(
                    self._write(ws, request, client, snapshot), name=f"ws-writer-{principal.username}"
                )
                await self._read(ws, client)
                writer.cancel()
        finally:
            self._clients.discard(client)

    async def _catch_up(
        self,
        ws: web.WebSocketResponse,
        client: Client,
        since: int | None,
        snapshot: Snapshot,
        replay: Replay,
    ) -> None:
        if since is not None:
            replayed = await replay(client.principal, since, MAX_REPLAY)
            if replayed is not None:
                events, scope = replayed
                view = View(client.principal, scope)
                shown = [e for e in events if view.admit(e)]
                for start in range(0, len(shown), REPLAY_FRAME):
                    await _send(ws, client, batch_frame(shown[start : start + REPLAY_FRAME]))
                self._activate(client, view, events[-1].seq if events else since)
                return
        await self._send_snapshot(ws, client, snapshot, None, reset=since is not None)

    async def _send_snapshot(
        self, ws: web.WebSocketResponse, client: Client, snapshot: Snapshot, bbox: BBox | None, *, reset: bool
    ) -> None:
        state, scope = await snapshot(client.principal)
        view = View(client.principal, scope, bbox)
        state = view.seed(state)
        # A console that asked to resume but is too far behind (or past the
        # outbox's retention) learns it got a fresh picture, not a replay.
        state["reset"] = reset
        await _send(ws, client, json.dumps(state, separators=(",", ":")))
        self._activate(client, view, int(state["seq"]))

    async def _write(
        self, ws: web.WebSocketResponse, request: web.Request, client: Client, snapshot: Snapshot
    ) -> None:
        try:
            await self._write_loop(ws, client, snapshot)
        except ConnectionError:
            return  # the reader sees the close and ends the session
        except TooSlow:
            pass
        if not client.overflowed:
            self._overflow(client)
        await _close(ws, request, CLOSE_TRY_AGAIN_LATER, b"too slow; resume with since")

    async def _write_loop(self, ws: web.WebSocketResponse, client: Client, snapshot: Snapshot) -> None:
        """Send until the console overflows (returns), or is too slow (:class:`TooSlow`)."""
        loop = asyncio.get_running_loop()
        while True:
            client.parked = not client.buffer
            await client.wake.wait()
            client.parked = False
            client.wake.clear()
            if client.overflowed:
                return
            if client.subscribe:
                bbox = client.subscribe.pop()
                client.subscribe.clear()
                # What the old view let through goes first (it may hold the very
                # dispatch that widened the scope); then everything is held
                # until the new view exists.
                if client.buffer:
                    await _send(ws, client, batch_frame(client.buffer.take()))
                client.view = None
                await self._send_snapshot(ws, client, snapshot, bbox, reset=False)
                continue
            if not client.buffer:
                continue
            wait = client.last_moved + MOVED_INTERVAL_S - loop.time()
            if wait > 0 and not client.buffer.urgent:
                # Only positions are waiting: let newer ones replace them for a
                # moment; anything else arriving meanwhile wakes us early.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(client.wake.wait(), wait)
                client.wake.set()
                continue
            events = client.buffer.take()
            if any(e.name == MOVED for e in events):
                client.last_moved = loop.time()
            await _send(ws, client, batch_frame(events))

    async def _read(self, ws: web.WebSocketResponse, client: Client) -> None:
        """Client frames after hello: pings and bounding-box subscriptions."""
        loop = asyncio.get_running_loop()
        async for message in ws:
            if message.type == WSMsgType.ERROR:
                log.info("websocket error: %s", ws.exception())
                return
            if not client.budget.take(loop.time()):
                await ws.close(code=CLOSE_POLICY, message=b"too many frames")
                return
            if message.type != WSMsgType.TEXT:
                continue
            reply = self._answer(client, message.data)
            if reply is not None:
                try:
                    await ws.send_str(reply)
                except ConnectionError:
                    return

    def _answer(self, client: Client, text: str) -> str | None:
        try:
            doc = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            return error_frame("bad_message", "frames must be JSON objects")
        kind = doc.get("type") if isinstance(doc, dict) else None
        if kind == "ping":
            # The console's half of the heartbeat: browsers cannot send
            # WebSocket pings, so they send this and expect a pong.
            return json.dumps({"type": "pong", "id": doc.get("id")})
        if kind == "subscribe":
            try:
                bbox = parse_bbox(doc.get("bbox"))
            except BadBBox as exc:
                return error_frame("bad_bbox", str(exc))
            client.subscribe.append(bbox)
            client.wake.set()
            return None
        return error_frame("unsupported", 'expected {"type":"ping"} or {"type":"subscribe","bbox":[...]}')


def _write_direct(client: Client, now: float, frames: dict[tuple[int, ...], bytes]) -> bool:
    """The fast path: write what ``client`` has buffered straight to its socket.

    Only while its writer is idle, so nothing it is sending can be overtaken;
    returns False (the writer must be woken) when anything asks for waiting.
    """
    transport = client.transport
    buffer = client.buffer
    if (
        not client.parked
        or client.view is None
        or client.subscribe
        or transport is None
        or transport.is_closing()
        or client.ws.closed
        or not isinstance(transport, asyncio.WriteTransport)
        or transport.get_write_buffer_size() > DIRECT_WRITE_MAX
        # Only positions, and the last ones went out too recently: the
        # writer holds them so newer ones can replace them.
        or (buffer.positions and not buffer.urgent and now - client.last_moved < MOVED_INTERVAL_S)
    ):
        return False
    events = buffer.take()
    key = tuple(e.seq for e in events)
    frame = frames.get(key)
    if frame is None:
        # The same framing aiohttp writes (server frames are never masked,
        # and this socket negotiated no extension: compress=False).
        payload = batch_frame(events).encode()
        frame = frames[key] = Frame(Opcode.TEXT, payload).serialize(mask=False)
    transport.write(frame)
    if any(e.name == MOVED for e in events):
        client.last_moved = now
    return True


async def _end_session(ws: web.WebSocketResponse) -> None:
    # Bounded: a console that reads nothing cannot hold up the sweep; its
    # heartbeat or its writer's send deadline ends it.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ws.close(code=CLOSE_UNAUTHORIZED, message=b"session ended"), CLOSE_TIMEOUT_S)


class StoreUnavailable(Exception):
    """Raised by the hub's callables when the database cannot be reached: the
    console is closed with 1013 and comes back by seq."""


class TooSlow(Exception):
    """The console's socket took nothing for ``SEND_TIMEOUT_S``, or it overflowed mid-send."""


async def _send(ws: web.WebSocketResponse, client: Client, frame: str) -> None:
    """Send one frame, giving up when the console stops reading.

    Raises:
        TooSlow: an overflow, or the sweep after ``SEND_TIMEOUT_S``, cut the send short.
    """
    task = asyncio.current_task()
    client.sender, client.send_started = task, asyncio.get_running_loop().time()
    try:
        await ws.send_str(frame)
    except asyncio.CancelledError:
        # Ours (the cut) is turned into TooSlow; anyone else's propagates.
        if client.cut and task is not None and task.uncancel() == 0:
            raise TooSlow from None
        raise
    finally:
        client.sender = None


async def _close(ws: web.WebSocketResponse, request: web.Request, code: int, message: bytes) -> None:
    """Close with ``code``; a peer that reads nothing cannot take even the close
    frame, so after a while the connection is cut."""
    try:
        await asyncio.wait_for(ws.close(code=code, message=message), CLOSE_TIMEOUT_S)
    except TimeoutError:
        if request.transport is not None:
            request.transport.abort()
