"""A sensor fleet publishing QoS 1 alarms through faults: ``python -m chaos.publisher``.

It runs in a process of its own and records, for every message, whether and
when the broker acknowledged it (MQTT 5 PUBACK with a success reason code).
Those acknowledged ids are the ground truth of every flood case: a message
counts as sent only once its PUBACK came back, since only then has the broker
taken responsibility for it.

Faults are expected: when the broker goes away, paho reconnects (every 0.1 to
1 s) and re-sends what was in flight (with DUP set); what is published
meanwhile waits in paho's queue and goes out after the reconnect. So nothing
is published "into the void": an id is either acknowledged or reported as
unacknowledged.

Two modes:

- paced (default): ``--rate`` alarms a second from the fleet in chaos/fleet.py,
  on an absolute 10 ms schedule, until ``stop`` arrives on stdin;
- corpus (``--corpus FILE``): every (topic, payload) record of FILE once, as
  fast as the window allows (the fuzz case), then stop by itself.

Protocol with the orchestrator: stdout ``ready`` after the first CONNACK;
stdin ``stop`` (or end of input) ends publishing; the process then waits up
to ``--drain-timeout`` s for outstanding acknowledgements, writes the result
(every acknowledged id with its time) to ``--out`` as JSON, prints a one-line
summary on stdout and exits.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import struct
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from chaos.fleet import alarm_message, build_fleet

TICK_S = 0.010
# MQTT 5 "No matching subscribers": a success code, but the broker kept the
# message nowhere. Counted apart: an alarm acknowledged so is lost.
NO_MATCHING_SUBSCRIBERS = 0x10
_RECORD = struct.Struct(">HI")


def write_corpus(path: Path, records: list[tuple[str, bytes]]) -> None:
    """Write (topic, payload) records for ``--corpus``."""
    with path.open("wb") as f:
        for topic, payload in records:
            encoded = topic.encode()
            f.write(_RECORD.pack(len(encoded), len(payload)))
            f.write(encoded)
            f.write(payload)


def read_corpus(path: Path) -> Iterator[tuple[str, bytes]]:
    data = path.read_bytes()
    at = 0
    while at < len(data):
        topic_len, payload_len = _RECORD.unpack_from(data, at)
        at += _RECORD.size
        topic = data[at : at + topic_len].decode()
        at += topic_len
        yield topic, data[at : at + payload_len]
        at += payload_len


class Publisher:
    """A paho MQTT 5 client that maps every PUBACK back to the message number it acknowledges."""

    def __init__(self, host: str, port: int, window: int) -> None:
        # Outstanding messages are bounded: paho's message ids are 16 bits and
        # it refuses an id still in use, so never approach 65,535.
        self._window = threading.Semaphore(window)
        # (mid, time, reason code) appended by paho's thread; resolved to message
        # numbers by ours. No lock is shared with paho's callbacks: paho calls
        # on_publish holding its own message lock, which publish() also takes.
        self._acks: collections.deque[tuple[int, float, int]] = collections.deque()
        self._pending: dict[int, int] = {}  # mid -> message number, not yet acknowledged
        self._early: list[tuple[int, float, int]] = []  # acks that beat their publish() return
        self.acked: dict[int, tuple[float, int]] = {}  # message number -> (time, reason code)
        self.published = 0
        self.connects = 0
        self.disconnects = 0
        self.connected = threading.Event()
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"chaos-pub-{uuid.uuid4().hex[:8]}", protocol=paho.MQTTv5
        )
        username = os.environ.get("CHAOS_MQTT_USERNAME")
        if username:
            client.username_pw_set(username, os.environ.get("CHAOS_MQTT_PASSWORD"))
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(min_delay=0.1, max_delay=1)  # type: ignore[arg-type]
        client.on_publish = self._on_publish
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.connect_async(host, port, keepalive=30)
        client.loop_start()
        self._client = client

    # -- paho's thread

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        code = reason.value if isinstance(reason, ReasonCode) else int(reason or 0)
        self._acks.append((mid, time.time(), code))
        self._window.release()

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            self.connects += 1
            self.connected.set()
        else:
            print(f"publisher: CONNACK refused: {reason}", file=sys.stderr, flush=True)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.disconnects += 1

    # -- ours

    def publish(self, n: int, topic: str, payload: bytes) -> None:
        self._window.acquire()
        info = self._client.publish(topic, payload, qos=1)
        # NO_CONN: paho keeps the message and sends it once reconnected.
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            raise RuntimeError(f"publish refused by paho: {paho.error_string(info.rc)}")
        self._pending[info.mid] = n
        self.published += 1

    def resolve(self) -> None:
        """Turn the acks paho's thread recorded into message numbers."""
        entries = self._early
        self._early = []
        while self._acks:
            entries.append(self._acks.popleft())
        for mid, when, code in entries:
            n = self._pending.pop(mid, None)
            if n is None:
                self._early.append((mid, when, code))  # publish() has not returned yet
            else:
                self.acked[n] = (when, code)

    def wait_acked(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self.resolve()
            if not self._pending:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _watch_stdin(stop: threading.Event) -> None:
    for line in sys.stdin:
        if line.strip() == "stop":
            break
    stop.set()  # "stop", or the orchestrator went away


def run(args: argparse.Namespace) -> dict[str, Any]:
    stop = threading.Event()
    threading.Thread(target=_watch_stdin, args=(stop,), daemon=True, name="stdin").start()
    pub = Publisher(args.host, args.port, args.window)
    if not pub.connected.wait(30):
        raise SystemExit("publisher: no CONNACK within 30 s")
    print("ready", flush=True)
    max_lag = 0.0
    t_first = time.time()
    if args.corpus is not None:
        for n, (topic, payload) in enumerate(read_corpus(args.corpus)):
            if stop.is_set():
                break
            pub.publish(n, topic, payload)
            if n % 100 == 0:
                pub.resolve()
    else:
        fleet = build_fleet()
        start = time.monotonic()
        tick = 0
        n = 0
        while not stop.is_set():
            due = int(args.rate * (tick + 1) * TICK_S)
            while n < due:
                pub.publish(n, *alarm_message(fleet, args.prefix, n, datetime.now(UTC)))
                n += 1
            pub.resolve()
            tick += 1
            scheduled = start + tick * TICK_S
            now = time.monotonic()
            max_lag = max(max_lag, now - scheduled)
            if scheduled > now:
                stop.wait(scheduled - now)
    t_last = time.time()
    complete = pub.wait_acked(args.drain_timeout)
    pub.close()
    acks = sorted(pub.acked.items())
    return {
        "prefix": args.prefix,
        "published": pub.published,
        "acked": sum(1 for _, (_, code) in acks if code < 0x80),
        "all_acked": complete,
        "refused": sum(1 for _, (_, code) in acks if code >= 0x80),
        "no_matching_subscribers": sum(1 for _, (_, code) in acks if code == NO_MATCHING_SUBSCRIBERS),
        "connects": pub.connects,
        "disconnects": pub.disconnects,
        "t_first_publish": t_first,
        "t_last_publish": t_last,
        "max_lag_ms": max_lag * 1000,
        # [message number, ack time, reason code] for every PUBACK.
        "acks": [[n, when, code] for n, (when, code) in acks],
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m chaos.publisher", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--prefix", default="c", help="alarm ids are PREFIX-0, PREFIX-1, ...")
    p.add_argument("--rate", type=float, default=200.0, help="alarms a second (paced mode)")
    p.add_argument("--corpus", type=Path, help="publish these (topic, payload) records instead")
    p.add_argument("--window", type=int, default=20_000, help="most messages not yet acknowledged")
    p.add_argument("--drain-timeout", type=float, default=120.0)
    p.add_argument("--out", type=Path, required=True, help="where to write the result JSON")
    args = p.parse_args(argv)
    result = run(args)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, args.out)
    summary = {k: v for k, v in result.items() if k != "acks"}
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
