"""How much of each fault a run injects: the quick and full profiles, and progress lines."""

from __future__ import annotations

import bisect
import math
import sys
import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    rate: float  # QoS 1 alarms a second, all publishers together
    publishers: int
    server_kills: int
    db_restarts: int
    broker_restarts: int
    control_restarts: int  # Mosquitto's default configuration: expected to lose
    broker_kills: int  # SIGKILL of the shipped broker: bounded loss, reported apart
    consoles: int
    console_instances: int
    console_seconds: float
    console_mean_up_s: float  # mean time a console stays connected before it drops
    fuzz_payloads: int
    fuzz_hypothesis: int  # of those, drawn by hypothesis (the rest: random mutations)
    malformed_packets: int  # raw TCP connections with broken MQTT, besides the payloads


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        "quick",
        rate=200,
        publishers=2,
        server_kills=3,
        db_restarts=2,
        broker_restarts=2,
        control_restarts=1,
        broker_kills=1,
        consoles=10,
        console_instances=2,
        console_seconds=10,
        console_mean_up_s=2.0,
        fuzz_payloads=5_000,
        fuzz_hypothesis=500,
        malformed_packets=300,
    ),
    "full": Profile(
        "full",
        rate=200,
        publishers=2,
        server_kills=10,
        db_restarts=5,
        broker_restarts=5,
        control_restarts=2,
        broker_kills=3,
        consoles=30,
        console_instances=2,
        console_seconds=60,
        console_mean_up_s=3.0,
        fuzz_payloads=100_000,
        fuzz_hypothesis=5_000,
        malformed_packets=5_000,
    ),
}


def progress(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def first_between(ordered: list[float], start: float, end: float) -> float:
    """The first value of sorted ``ordered`` in (start, end), or NaN."""
    i = bisect.bisect_right(ordered, start)
    if i < len(ordered) and ordered[i] < end:
        return ordered[i]
    return math.nan
