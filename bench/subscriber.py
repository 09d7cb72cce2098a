"""A bare MQTT subscriber that only counts: ``python -m bench.subscriber``.

The raw baseline for the broker path. It connects the way the server does
(MQTT 5, QoS 1, a persistent session with a Receive Maximum of 1,000) but does
nothing with a message except count it (``--latency``: also take receipt time
minus the ``time`` in the payload), and paho acknowledges it at once.

Protocol with the orchestrator: prints ``ready`` once subscribed; then reads
one line on stdin, the number of messages to expect (the publisher's count,
known only when it is done); prints one JSON line when it has received that
many, or when ``--timeout`` passes.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time
import uuid
from datetime import datetime
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.publisher import login

TOPIC = "sensors/+/alarm"


class Counter:
    def __init__(self, latency: bool) -> None:
        self.received = 0
        self.duplicates = 0
        self.t_first = 0.0
        self.t_last = 0.0
        self.latencies_ms: list[float] = []
        self.expected = sys.maxsize
        self.done = threading.Event()
        self.subscribed = threading.Event()
        self._latency = latency

    def on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        now = time.time()
        if self.received == 0:
            self.t_first = now
        self.received += 1
        self.t_last = now
        if message.dup:
            self.duplicates += 1
        if self._latency:
            sent = datetime.fromisoformat(json.loads(message.payload)["time"]).timestamp()
            self.latencies_ms.append((now - sent) * 1000)
        if self.received >= self.expected:
            self.done.set()

    def on_subscribe(self, client: paho.Client, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        self.subscribed.set()

    def expect(self, count: int) -> None:
        self.expected = count
        if self.received >= count:
            self.done.set()


def cpu_seconds() -> float:
    """CPU time this process used so far (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.subscriber", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--latency", action="store_true", help="record receipt - publish time per message")
    p.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    args = p.parse_args(argv)

    counter = Counter(args.latency)
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{uuid.uuid4().hex[:8]}", protocol=paho.MQTTv5
    )
    login(client)
    client.on_message = counter.on_message
    client.on_subscribe = counter.on_subscribe
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = 1000
    client.connect(args.host, args.port, keepalive=60, clean_start=False, properties=props)
    client.loop_start()
    try:
        client.subscribe(TOPIC, qos=1)
        if not counter.subscribed.wait(30):
            sys.exit("subscriber: no SUBACK within 30 s")
        cpu_start = cpu_seconds()
        print("ready", flush=True)
        line = sys.stdin.readline()
        if not line.strip():
            sys.exit("subscriber: stdin closed before the expected count arrived")
        counter.expect(int(line))
        complete = counter.done.wait(args.timeout)
        print(
            json.dumps(
                {
                    "received": counter.received,
                    "expected": counter.expected,
                    "complete": complete,
                    "duplicates": counter.duplicates,
                    "t_first_receipt": counter.t_first,
                    "t_last_receipt": counter.t_last,
                    "latencies_ms": counter.latencies_ms,
                    "cpu_s": cpu_seconds() - cpu_start,
                }
            ),
            flush=True,
        )
    finally:
        # End the session (expiry 0 on DISCONNECT), so the broker keeps nothing for us.
        gone = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
        gone.SessionExpiryInterval = 0
        client.disconnect(properties=gone)
        client.loop_stop()


if __name__ == "__main__":
    main()
