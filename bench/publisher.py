"""A sensor fleet publishing alarms with QoS 1: ``python -m bench.publisher``.

Runs in its own process so the orchestrator's event loop, the broker and the
server never share its interpreter. Two ways to publish:

- flood (``--rate 0``): as fast as paho and the broker allow, with at most
  ``--window`` messages not yet acknowledged by the broker (paho keeps 1,000
  in flight; the window only stops a long run from queueing millions in memory);
- paced (``--rate R``): R messages a second, sent in batches every 10 ms on an
  absolute schedule, so a slow moment is caught up rather than silently lost.

Each alarm's ``time`` is the moment it is handed to paho. The process waits
until the broker has acknowledged (PUBACK) everything it published, then
prints one JSON line on stdout: counts, wall-clock times (``time.time()``,
comparable across processes on this machine) and how far pacing fell behind.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bench.fleet import alarm_message, build_fleet

TICK_S = 0.010
ACK_TIMEOUT_S = 900.0


def login(client: paho.Client) -> None:
    """Log in as bench/ingest.py says (BENCH_MQTT_USERNAME/PASSWORD; the broker refuses anonymous clients)."""
    username = os.environ.get("BENCH_MQTT_USERNAME")
    if username:
        client.username_pw_set(username, os.environ.get("BENCH_MQTT_PASSWORD"))


class Publisher:
    def __init__(self, host: str, port: int, window: int) -> None:
        self.acked = 0
        self.published = 0
        self._window = threading.Semaphore(window)
        self._lock = threading.Lock()
        self._all_acked = threading.Event()
        self._closing = False
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:8]}")
        login(client)
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.on_publish = self._on_publish
        client.connect(host, port, keepalive=60)
        client.loop_start()
        self._client = client

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self._window.release()
        with self._lock:
            self.acked += 1
            if self._closing and self.acked >= self.published:
                self._all_acked.set()

    def publish(self, topic: str, payload: bytes) -> None:
        self._window.acquire()
        info = self._client.publish(topic, payload, qos=1)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"publish failed: {paho.error_string(info.rc)}")
        self.published += 1

    def wait_acked(self, timeout: float) -> bool:
        with self._lock:
            self._closing = True
            if self.acked >= self.published:
                self._all_acked.set()
        return self._all_acked.wait(timeout)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def cpu_seconds() -> float:
    """CPU time this process used so far (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(args: argparse.Namespace) -> dict[str, Any]:
    fleet = build_fleet()
    total = args.count if args.count else None
    pub = Publisher(args.host, args.port, args.window if args.rate == 0 else 10**9)
    try:
        cpu_start = cpu_seconds()
        t_first = time.time()
        start = time.monotonic()
        max_lag = 0.0
        n = 0
        if args.rate == 0:
            # Flood: until the count is reached or the duration is over.
            limit = total if total is not None else sys.maxsize
            deadline = start + args.duration if total is None else math.inf
            while n < limit and time.monotonic() < deadline:
                pub.publish(*alarm_message(fleet, args.prefix, n, datetime.now(UTC)))
                n += 1
        else:
            if total is None:
                total = round(args.rate * args.duration)
            tick = 0
            while n < total:
                due = min(total, int(args.rate * (tick + 1) * TICK_S))
                while n < due:
                    pub.publish(*alarm_message(fleet, args.prefix, n, datetime.now(UTC)))
                    n += 1
                tick += 1
                scheduled = start + tick * TICK_S
                now = time.monotonic()
                max_lag = max(max_lag, now - scheduled)
                if scheduled > now:
                    time.sleep(scheduled - now)  # pacing, not a measurement
        t_last_publish = time.time()
        complete = pub.wait_acked(ACK_TIMEOUT_S)
        t_acked = time.time()
    finally:
        pub.close()
    return {
        "published": pub.published,
        "acked": pub.acked,
        "all_acked": complete,
        "rate_target": args.rate,
        "t_first_publish": t_first,
        "t_last_publish": t_last_publish,
        "t_all_acked": t_acked,
        "publish_rate": pub.published / max(t_last_publish - t_first, 1e-9),
        "max_lag_ms": max_lag * 1000,
        "cpu_s": cpu_seconds() - cpu_start,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.publisher", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--prefix", required=True, help="alarm ids are PREFIX-0, PREFIX-1, ...")
    p.add_argument("--count", type=int, default=0, help="how many alarms (0: as many as --duration allows)")
    p.add_argument("--duration", type=float, default=0.0, help="seconds to publish for when --count is 0")
    p.add_argument("--rate", type=float, default=0.0, help="alarms per second (0: as fast as possible)")
    p.add_argument("--window", type=int, default=10_000, help="flood: most messages not yet acknowledged")
    args = p.parse_args(argv)
    if not args.count and args.duration <= 0:
        p.error("give --count or --duration")
    result = run(args)
    print(json.dumps(result), flush=True)
    if not result["all_acked"]:
        sys.exit(f"publisher: only {result['acked']} of {result['published']} acknowledged")


if __name__ == "__main__":
    main()
