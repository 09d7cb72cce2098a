"""Malformed MQTT at the broker: raw TCP connections that do not speak MQTT properly.

Each connection sends one broken sequence and waits (up to a second) for the
broker to close it. Some break the very first packet (random bytes, a
truncated CONNECT, a remaining length of five bytes or one claiming 256 MB,
a wrong protocol name or level, reserved flags, a client id that is not
UTF-8, MQTT 5 properties that run past the packet, a packet before CONNECT);
others log in properly (the all-topics account) and then break a later
packet (a PUBLISH with QoS 3, a topic running past the packet, a wildcard or
invalid UTF-8 in a topic, an empty topic, packet id 0, a SUBSCRIBE with
wrong flags or no filters, a second CONNECT, reserved packet types, a PUBLISH
cut off mid-payload).

Any PUBLISH among them carries a topic ``sensors/MQ-{k}/alarm``: should the
broker forward one anyway, the server dead-letters it under that name and
the case reports it (the payload is not JSON).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def string(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def connect(
    client_id: bytes,
    *,
    username: bytes | None = None,
    password: bytes | None = None,
    name: bytes = b"MQTT",
    level: int = 4,
    flags: int | None = None,
    properties: bytes | None = None,
) -> bytes:
    """A CONNECT (clean session), well-formed unless the arguments say otherwise."""
    if flags is None:
        flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    body = string(name) + bytes([level, flags]) + (10).to_bytes(2, "big")
    if level >= 5:
        body += properties if properties is not None else b"\x00"
    body += string(client_id)
    if username is not None:
        body += string(username)
    if password is not None:
        body += string(password)
    return packet(0x10, body)


def publish(topic: bytes, payload: bytes, *, qos: int = 0, packet_id: int = 1) -> bytes:
    body = string(topic) + (packet_id.to_bytes(2, "big") if qos else b"") + payload
    return packet(0x30 | (qos << 1), body)


@dataclass(frozen=True, slots=True)
class Attack:
    name: str
    login: bool  # log in properly first, then send ``data``
    data: bytes


def _attacks(rng: random.Random, k: int) -> list[Attack]:
    """Every kind of broken sequence for connection number ``k``."""
    cid = f"mq-{k}".encode()
    topic = f"sensors/MQ-{k}/alarm".encode()
    good = connect(cid)
    cut = rng.randrange(1, len(good))
    return [
        Attack("random bytes", False, rng.randbytes(rng.randint(1, 64))),
        Attack("truncated CONNECT", False, good[:cut]),
        Attack("remaining length of five bytes", False, b"\x10\xff\xff\xff\xff\x7f"),
        Attack("remaining length past the data", False, b"\x10" + varint(1000) + good[2:12]),
        Attack("remaining length of 256 MB", False, b"\x10\xff\xff\xff\x7f" + good[2:]),
        Attack("wrong protocol name", False, connect(cid, name=b"MQTX")),
        Attack("protocol level 9", False, connect(cid, level=9)),
        Attack("protocol level 0", False, connect(cid, level=0)),
        Attack("reserved CONNECT flag", False, connect(cid, flags=0x03)),
        Attack("password without username", False, connect(cid, flags=0x42, password=b"x")),
        Attack("will QoS 3", False, connect(cid, flags=0x1E)),
        Attack("client id not UTF-8", False, connect(b"\xff\xfe\xc0\xaf")),
        Attack(
            "client id past the packet", False, packet(0x10, string(b"MQTT") + b"\x04\x02\x00\x0a\x01\x00ab")
        ),
        Attack(
            "MQTT 5 properties past the packet",
            False,
            connect(cid, level=5, properties=varint(100) + b"\x11"),
        ),
        Attack("MQTT 5 unknown property", False, connect(cid, level=5, properties=b"\x02\xff\x00")),
        Attack("PUBLISH before CONNECT", False, publish(topic, b"not json", qos=1)),
        Attack("PINGREQ before CONNECT", False, b"\xc0\x00"),
        Attack("PUBLISH QoS 3", True, packet(0x36, string(topic) + b"\x00\x01not json")),
        Attack("topic past the packet", True, packet(0x32, (500).to_bytes(2, "big") + topic)),
        Attack("wildcard in a PUBLISH topic", True, publish(b"sensors/MQ-#/alarm", b"not json", qos=1)),
        Attack("topic not UTF-8", True, publish(b"sensors/MQ-\xff\xfe/alarm", b"not json", qos=1)),
        Attack("topic with NUL", True, publish(b"sensors/MQ-\x00/alarm", b"not json", qos=1)),
        Attack("empty topic", True, publish(b"", b"not json", qos=1)),
        Attack("packet id 0", True, publish(topic, b"not json", qos=1, packet_id=0)),
        Attack("SUBSCRIBE with wrong flags", True, packet(0x80, b"\x00\x01" + string(b"#") + b"\x01")),
        Attack("SUBSCRIBE with no filters", True, packet(0x82, b"\x00\x01")),
        Attack("second CONNECT", True, good),
        Attack("reserved packet type 0", True, b"\x00\x00"),
        Attack("reserved packet type 15", True, b"\xf0\x00"),
        Attack("PUBLISH cut off mid-payload", True, publish(topic, b"not json " * 20, qos=1)[:-30]),
        Attack("PUBACK for nothing, malformed", True, b"\x40\x01\x00"),
    ]


@dataclass(slots=True)
class Outcome:
    sent: int = 0
    by_attack: Counter[str] = field(default_factory=Counter)
    # How each connection ended: closed by the broker, CONNACK refusal, still open (we closed it), refused.
    endings: Counter[str] = field(default_factory=Counter)
    login_failures: int = 0


async def _one(
    host: str, port: int, attack: Attack, login: Callable[[int], bytes], k: int, out: Outcome
) -> None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    except (OSError, TimeoutError):
        out.endings["connection refused"] += 1
        return
    try:
        if attack.login:
            writer.write(login(k))
            await writer.drain()
            connack = await asyncio.wait_for(reader.readexactly(4), 5)
            if connack[0] != 0x20 or connack[3] != 0:
                out.login_failures += 1
                return
        writer.write(attack.data)
        await writer.drain()
        out.sent += 1
        out.by_attack[attack.name] += 1
        try:
            data = await asyncio.wait_for(reader.read(4096), 1.0)
            while data:
                if data[0] == 0x20 and len(data) >= 4 and data[3] != 0:
                    out.endings["refused with a CONNACK"] += 1
                    return
                data = await asyncio.wait_for(reader.read(4096), 1.0)
            out.endings["closed by the broker"] += 1
        except TimeoutError:
            out.endings["left open (we closed it after 1 s)"] += 1
    except (OSError, asyncio.IncompleteReadError, TimeoutError):
        out.endings["reset"] += 1
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def attack(host: str, port: int, count: int, username: str, password: str, seed: int) -> Outcome:
    """Open ``count`` connections, each with one broken sequence, 20 at a time."""
    rng = random.Random(seed)
    out = Outcome()

    def login(k: int) -> bytes:
        return connect(f"mq-login-{k}".encode(), username=username.encode(), password=password.encode())

    semaphore = asyncio.Semaphore(20)

    async def bounded(item: Attack, k: int) -> None:
        async with semaphore:
            await _one(host, port, item, login, k, out)

    async with asyncio.TaskGroup() as group:
        for k in range(count):
            kinds = _attacks(rng, k)
            group.create_task(bounded(kinds[k % len(kinds)], k), name=f"garbage-{k}")
    return out
