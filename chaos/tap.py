"""An MQTT-aware TCP proxy between the server and the broker that sees every PUBACK.

"No PUBACK while the database is down" is a claim about packets on the wire,
so the database case checks it on the wire: the server connects to the broker
through this proxy, which forwards every byte unchanged and, on the side,
reads the MQTT framing of both directions. It remembers which alarm id each
QoS 1 PUBLISH from the broker carried (by packet id, per connection) and
records, with the time, every PUBACK the server sends and the alarm it
acknowledges. The case then holds each PUBACK against the database: an alarm
acknowledged but not stored, or stored only after its PUBACK, breaks the
at-least-once contract.

It reads MQTT 5 (what the server speaks: a PUBLISH has properties) and, from
the CONNECT's protocol level, 3.1.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from urllib.parse import quote

from command.settings import MqttTarget

PUBLISH = 3
PUBACK = 4
CONNECT = 1


def url_via(url: str, port: int) -> str:
    """``url``'s login, to the tap on ``port`` instead of the broker."""
    target = MqttTarget.from_url(url)
    user, password = quote(target.username or "", safe=""), quote(target.password or "", safe="")
    return f"mqtt://{user}:{password}@127.0.0.1:{port}"


def _varint(data: bytes | bytearray, at: int) -> tuple[int, int] | None:
    """MQTT's variable byte integer at ``at``: (value, bytes used), or None when incomplete."""
    value = 0
    for i in range(4):
        if at + i >= len(data):
            return None
        byte = data[at + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, i + 1
    raise ValueError("malformed remaining length")


def split_packets(buffer: bytearray) -> list[tuple[int, int, bytes]]:
    """Take the complete packets off the front of ``buffer``: (type, flags, body) each."""
    packets = []
    while len(buffer) >= 2:
        length = _varint(buffer, 1)
        if length is None:
            break
        size, used = length
        end = 1 + used + size
        if len(buffer) < end:
            break
        packets.append((buffer[0] >> 4, buffer[0] & 0x0F, bytes(buffer[1 + used : end])))
        del buffer[:end]
    return packets


def _alarm_id(payload: bytes) -> str | None:
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    value = doc.get("id") if isinstance(doc, dict) else None
    return value if isinstance(value, str) else None


@dataclass(slots=True)
class _Connection:
    version: int = 5
    in_flight: dict[int, str | None] = field(default_factory=dict)  # packet id -> alarm id


class MqttTap:
    """``start()`` listens on a free loopback port; point the server's MQTT URL at :attr:`port`.

    As an async context manager: started on entry, closed on exit.
    """

    def __init__(self, broker_port: int) -> None:
        self.broker_port = broker_port
        self.port = 0
        # (time, alarm id or None) of every PUBACK the server sent.
        self.pubacks: list[tuple[float, str | None]] = []
        # (time, alarm id or None) of every QoS 1 PUBLISH the broker delivered.
        self.publishes: list[tuple[float, str | None]] = []
        self.errors: list[str] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> MqttTap:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            try:
                broker_r, broker_w = await asyncio.open_connection("127.0.0.1", self.broker_port)
            except OSError:
                return  # the broker is down: the client sees a closed connection, as it would
            state = _Connection()
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._pump(client_r, broker_w, state, upstream=True), name="tap-up")
                    group.create_task(self._pump(broker_r, client_w, state, upstream=False), name="tap-down")
            except* (ConnectionError, OSError):
                pass
            finally:
                broker_w.close()
        finally:
            client_w.close()
            self._tasks.discard(task)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        state: _Connection,
        *,
        upstream: bool,
    ) -> None:
        buffer = bytearray()
        while data := await reader.read(65536):
            writer.write(data)  # forward first: the tap never delays or changes a byte
            buffer += data
            try:
                for kind, flags, body in split_packets(buffer):
                    self._observe(kind, flags, body, state, upstream)
            except (ValueError, IndexError) as exc:
                self.errors.append(f"unparseable MQTT stream: {exc}")
                buffer.clear()
            await writer.drain()
        # One side closed: close the other, which ends the other pump.
        with contextlib.suppress(OSError):
            writer.close()
        raise ConnectionError("closed")

    def _observe(self, kind: int, flags: int, body: bytes, state: _Connection, upstream: bool) -> None:
        now = time.time()
        if upstream and kind == CONNECT:
            name_len = int.from_bytes(body[0:2], "big")
            state.version = body[2 + name_len]
        elif not upstream and kind == PUBLISH and (flags >> 1) & 3 == 1:
            topic_len = int.from_bytes(body[0:2], "big")
            at = 2 + topic_len
            packet_id = int.from_bytes(body[at : at + 2], "big")
            at += 2
            if state.version >= 5:
                length = _varint(body, at)
                if length is None:
                    raise ValueError("truncated properties")
                at += length[1] + length[0]
            alarm = _alarm_id(body[at:])
            state.in_flight[packet_id] = alarm
            self.publishes.append((now, alarm))
        elif upstream and kind == PUBACK:
            packet_id = int.from_bytes(body[0:2], "big")
            self.pubacks.append((now, state.in_flight.pop(packet_id, None)))
