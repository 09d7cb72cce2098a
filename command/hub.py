"""The WebSocket hub: one bounded queue per console, fed in seq order by the feed.

Overflow policy: :meth:`Hub.publish` never awaits. When a console's queue is
full it is emptied and marked, and that console's writer closes it with 1013
(try again later); the console reconnects with ``since`` and the outbox
replays what it missed. One slow console therefore never delays another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from command.feed_protocol import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNAUTHORIZED,
    BadHello,
    Event,
    Principal,
    batch_frame,
    error_frame,
    parse_hello,
    visible,
)

log = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 10.0
# More events than this behind, a console gets a fresh snapshot instead of a replay.
MAX_REPLAY = 10_000


@dataclass(eq=False, slots=True)
class Client:
    principal: Principal
    queue: asyncio.Queue[Event]
    overflowed: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)


# What the hub needs from the store, as plain callables so it never sees SQL.
Authenticate = Callable[[str], Awaitable[Principal | None]]
Snapshot = Callable[[Principal], Awaitable[dict[str, Any]]]
Replay = Callable[[Principal, int, int], Awaitable[list[Event] | None]]


class Hub:
    """Connected consoles and the fan-out to them."""

    def __init__(self, *, queue_max: int = 1000) -> None:
        self._clients: set[Client] = set()
        self._sockets: set[web.WebSocketResponse] = set()
        self._queue_max = queue_max
        self.overflows = 0
        self.last_seq = 0

    def __len__(self) -> int:
        return len(self._clients)

    def publish(self, events: Iterable[Event]) -> None:
        """Offer events (in seq order) to every console that may see them. Never blocks."""
        events = list(events)
        if not events:
            return
        self.last_seq = max(self.last_seq, events[-1].seq)
        for client in self._clients:
            if client.overflowed:
                continue
            for event in events:
                if not visible(client.principal, event):
                    continue
                try:
                    client.queue.put_nowait(event)
                except asyncio.QueueFull:
                    self._overflow(client)
                    break
            client.wake.set()

    def _overflow(self, client: Client) -> None:
        self.overflows += 1
        client.overflowed = True
        # Free the memory now; the console resumes by seq from the outbox.
        while not client.queue.empty():
            client.queue.get_nowait()
        client.wake.set()

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
        # Server pings every 10 s; a client that does not answer is closed
        # well within 30 s (aiohttp closes after one missed pong).
        ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=64 * 1024)
        await ws.prepare(request)
        self._sockets.add(ws)
        try:
            await self._session(ws, authenticate, snapshot, replay, cookie_token)
        finally:
            self._sockets.discard(ws)
            if not ws.closed:
                await ws.close()
        return ws

    async def _session(
        self,
        ws: web.WebSocketResponse,
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
        if first.type != WSMsgType.TEXT:
            return
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

        client = Client(principal, asyncio.Queue(self._queue_max))
        # Registered before reading the database: whatever commits after our
        # read arrives through the queue, and the seq check drops the overlap.
        self._clients.add(client)
        try:
            sent = await self._catch_up(ws, client, hello.since, snapshot, replay)
            async with asyncio.TaskGroup() as group:
                writer = group.create_task(
                    self._write(ws, client, sent), name=f"ws-writer-{principal.username}"
                )
                await self._read(ws)
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
    ) -> int:
        if since is not None:
            events = await replay(client.principal, since, MAX_REPLAY)
            if events is not None:
                for start in range(0, len(events), 500):
                    await ws.send_str(batch_frame(events[start : start + 500]))
                return events[-1].seq if events else since
        state = await snapshot(client.principal)
        # A console that asked to resume but is too far behind learns it
        # got a fresh picture, not a replay.
        state["reset"] = since is not None
        await ws.send_json(state)
        return int(state["seq"])

    async def _write(self, ws: web.WebSocketResponse, client: Client, sent: int) -> None:
        try:
            await self._write_loop(ws, client, sent)
        except ConnectionError:
            return  # the reader sees the close and ends the session

    async def _write_loop(self, ws: web.WebSocketResponse, client: Client, sent: int) -> None:
        while True:
            await client.wake.wait()
            client.wake.clear()
            if client.overflowed:
                await ws.close(code=CLOSE_TRY_AGAIN_LATER, message=b"too slow; resume with since")
                return
            pending: list[Event] = []
            while not client.queue.empty():
                event = client.queue.get_nowait()
                if event.seq > sent:
                    pending.append(event)
            if pending:
                await ws.send_str(batch_frame(pending))
                sent = pending[-1].seq

    async def _read(self, ws: web.WebSocketResponse) -> None:
        # Clients have nothing to say after hello yet (subscriptions come with
        # the feed issue); reading keeps pings answered and notices the close.
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                with contextlib.suppress(ConnectionError):
                    await ws.send_str(error_frame("unsupported", "no client messages after hello"))
            elif message.type == WSMsgType.ERROR:
                log.info("websocket error: %s", ws.exception())
                return
