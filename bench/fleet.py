"""The benchmark's sensor fleet and its alarms (pure: no I/O).

:class:`Sensor` and the alarm ids are chaos/fleet.py's too (its fleet is
another: four small clusters, one incident each however often a fault strikes).

About 1,000 sensors in five clusters far enough apart that correlation must
turn each cluster's alarms into exactly one incident: two smoke clusters
(fire family, 300 m radius), two water-level clusters (flood, 2 km) and one
gas cluster (gas, 500 m). The fleet is deterministic, so the publisher
process rebuilds the same one the orchestrator registered in the database.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar


@dataclass(frozen=True, slots=True)
class Cluster:
    name: str
    sensor_kind: str
    alarm_kinds: tuple[str, str]
    lat: float
    lon: float
    spread_deg: float  # sensors are placed within +- this of the centre
    unit: str
    value_base: float


CLUSTERS: tuple[Cluster, ...] = (
    Cluster("fire-west", "smoke", ("smoke", "fire"), 30.250, 120.100, 0.0008, "%obs/m", 4.0),
    Cluster("fire-east", "smoke", ("smoke", "fire"), 30.220, 120.180, 0.0008, "%obs/m", 4.0),
    Cluster("flood-river", "water_level", ("water_level", "flood"), 30.280, 120.220, 0.005, "m", 2.5),
    Cluster("flood-underpass", "water_level", ("water_level", "flood"), 30.330, 120.060, 0.005, "m", 0.8),
    Cluster("gas-plant", "gas", ("gas_leak", "hazmat"), 30.300, 120.140, 0.0015, "ppm", 300.0),
)

SENSOR_COUNT = 1000
SEVERITIES = ("Minor", "Moderate", "Severe", "Moderate")
ALARM_TOPIC = "sensors/{}/alarm"


ClusterT = TypeVar("ClusterT")


@dataclass(frozen=True, slots=True)
class Sensor(Generic[ClusterT]):
    """One sensor of a fleet, registered at (lat, lon) near its cluster's centre."""

    id: str
    cluster: ClusterT
    lat: float
    lon: float


def build_fleet(count: int = SENSOR_COUNT, seed: int = 9) -> list[Sensor[Cluster]]:
    """``count`` sensors, sensor ``n`` in cluster ``n % 5`` (so any run of alarms touches all five)."""
    rng = random.Random(seed)
    sensors = []
    for n in range(count):
        cluster = CLUSTERS[n % len(CLUSTERS)]
        spread = cluster.spread_deg
        sensors.append(
            Sensor(
                id=f"B-{cluster.name}-{n:04d}",
                cluster=cluster,
                lat=cluster.lat + rng.uniform(-spread, spread),
                lon=cluster.lon + rng.uniform(-spread, spread),
            )
        )
    return sensors


def alarm_id(prefix: str, n: int) -> str:
    return f"{prefix}-{n}"


def parse_alarm_id(text: str) -> tuple[str, int] | None:
    """``"p0-17"`` -> ``("p0", 17)``; None for an id :func:`alarm_id` did not make."""
    prefix, _, number = text.rpartition("-")
    if not prefix or not number.isdigit():
        return None
    return prefix, int(number)


def alarm_message(fleet: list[Sensor[Cluster]], prefix: str, n: int, now: datetime) -> tuple[str, bytes]:
    """The ``n``-th alarm of a run: (topic, JSON payload) with ``time`` = ``now``.

    Coordinates are left out: every sensor is registered with its location,
    as most fixed sensors are, so the server looks them up.
    """
    sensor = fleet[n % len(fleet)]
    cluster = sensor.cluster
    doc = {
        "id": alarm_id(prefix, n),
        "kind": cluster.alarm_kinds[(n // len(fleet)) % 2],
        "severity": SEVERITIES[n % len(SEVERITIES)],
        "time": now.isoformat(),
        "value": round(cluster.value_base * (1 + (n % 17) / 10), 3),
        "unit": cluster.unit,
    }
    return ALARM_TOPIC.format(sensor.id), json.dumps(doc, separators=(",", ":")).encode()
