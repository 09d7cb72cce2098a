"""The hub's fast path: when publish writes to a console's socket itself, and
when it leaves the events to the console's writer task.

A recording transport stands in for the socket: what is checked here is the
decision and the bytes, the wire itself is covered by tests/integration/test_feed.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from command.client_buffer import ClientBuffer
from command.feed_protocol import Event, Principal
from command.feed_scope import View
from command.hub import DIRECT_WRITE_MAX, Client, Hub
from command.ws_guard import FrameBudget

BOSS = Principal(2, "boss", "commander")


class Recording(asyncio.WriteTransport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.unsent = 0

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return self.unsent


def frames(written: list[bytes]) -> list[str]:
    """Decode server frames with the websockets library's own parser."""
    reader = StreamReader()
    reader.feed_data(b"".join(written))
    texts = []
    while reader.buffer:
        parser = Frame.parse(reader.read_exact, mask=False)
        try:
            next(parser)
        except StopIteration as done:
            frame: Frame = done.value
            assert frame.opcode is Opcode.TEXT
            texts.append(bytes(frame.data).decode())
        else:
            raise AssertionError("a frame cut short")
    return texts


def console(hub: Hub, *, parked: bool = True) -> tuple[Client, Recording]:
    transport = Recording()
    client = Client(
        BOSS, ClientBuffer(100), web.WebSocketResponse(), b"s", FrameBudget(5, 20), transport=transport
    )
    client.view = View(BOSS)
    client.parked = parked
    hub._clients.add(client)
    return client, transport


def event(seq: int, name: str = "incident.updated", unit: str | None = None) -> Event:
    return Event.create(seq, name, {"n": seq}, None if unit else 7, unit, "D-1")


async def test_idle_consoles_get_one_shared_frame_and_a_busy_one_is_left_to_its_writer() -> None:
    hub = Hub()
    (a, ta), (_, tb) = console(hub), console(hub)
    busy, tbusy = console(hub, parked=False)
    hub.publish([event(1), event(2)])
    assert (
        frames(ta.written)
        == frames(tb.written)
        == [f'{{"type":"batch","events":[{event(1).wire},{event(2).wire}]}}']
    )
    assert ta.written[0] is tb.written[0], "the frame is encoded once for both"
    assert not a.buffer and not a.wake.is_set()
    # The writer is mid-send: the events wait for it, in order, and it is woken.
    assert tbusy.written == [] and [e.seq for e in busy.buffer.take()] == [1, 2] and busy.wake.is_set()


async def test_a_full_socket_or_a_pending_subscription_goes_through_the_writer() -> None:
    hub = Hub()
    full, tfull = console(hub)
    tfull.unsent = DIRECT_WRITE_MAX + 1
    moving, tmoving = console(hub)
    moving.subscribe.append(None)
    catching_up, tcatching = console(hub)
    catching_up.view = None  # still reading its snapshot
    hub.publish([event(1)])
    for client, transport in ((full, tfull), (moving, tmoving), (catching_up, tcatching)):
        assert transport.written == [] and len(client.buffer) == 1 and client.wake.is_set()


async def test_positions_are_written_at_most_every_quarter_second_unless_something_else_comes() -> None:
    hub = Hub()
    client, transport = console(hub)
    hub.publish([event(1, "unit.moved", unit="U-1")])
    assert len(transport.written) == 1
    # Too soon after the last position: held for the writer, which lets a
    # newer one replace it.
    hub.publish([event(2, "unit.moved", unit="U-1")])
    assert len(transport.written) == 1 and client.wake.is_set()
    client.wake.clear()
    # Something urgent: it goes now, with the waiting position, in seq order.
    hub.publish([event(3)])
    assert len(transport.written) == 2
    assert frames(transport.written[1:]) == [
        f'{{"type":"batch","events":[{event(2, "unit.moved", unit="U-1").wire},{event(3).wire}]}}'
    ]
