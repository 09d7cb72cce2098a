"""The flood's sensors and alarms (pure: no I/O).

Four clusters of ten sensors, far enough apart (about 5 km) and of four hazard
families, so correlation must turn each cluster's alarms into exactly one
incident however often a fault strikes: a second incident for a cluster is a
duplicate incident. The publisher process and the orchestrator build the same
fleet from this module; the sensor record and the alarm ids are bench/fleet.py's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from bench.fleet import Sensor, alarm_id


@dataclass(frozen=True, slots=True)
class Cluster:
    name: str
    kind: str  # the sensors' and their alarms' kind
    lat: float
    lon: float


CLUSTERS: tuple[Cluster, ...] = (
    Cluster("smoke", "smoke", 30.250, 120.100),
    Cluster("gas", "gas_leak", 30.300, 120.150),
    Cluster("water", "water_level", 30.250, 120.200),
    Cluster("air", "air_quality", 30.200, 120.150),
)
SENSORS_PER_CLUSTER = 10
# Sensors sit within this of their cluster's centre (about 30 m): well inside
# every family's radius, so one cluster can only ever be one incident.
SPREAD_DEG = 0.0003


def build_fleet() -> list[Sensor[Cluster]]:
    """Sensor ``s`` is in cluster ``s % 4``, so any run of consecutive alarms touches all four."""
    sensors = []
    for s in range(len(CLUSTERS) * SENSORS_PER_CLUSTER):
        cluster = CLUSTERS[s % len(CLUSTERS)]
        k = s // len(CLUSTERS)
        sensors.append(
            Sensor(
                id=f"C-{cluster.name}-{k:02d}",
                cluster=cluster,
                lat=cluster.lat + SPREAD_DEG * ((k % 3) - 1),
                lon=cluster.lon + SPREAD_DEG * ((k // 3 % 3) - 1),
            )
        )
    return sensors


def alarm_message(fleet: list[Sensor[Cluster]], prefix: str, n: int, now: datetime) -> tuple[str, bytes]:
    """The ``n``-th alarm of a publisher: (topic, JSON payload), ``time`` = ``now``.

    No coordinates: the sensors are registered with their locations.
    """
    sensor = fleet[n % len(fleet)]
    doc = {
        "id": alarm_id(prefix, n),
        "kind": sensor.cluster.kind,
        "severity": "Moderate",
        "time": now.isoformat(),
        "value": float(n % 97),
    }
    return f"sensors/{sensor.id}/alarm", json.dumps(doc, separators=(",", ":")).encode()
