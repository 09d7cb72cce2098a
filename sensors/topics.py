"""MQTT topic names: the one place that knows how they are spelt.

Pure: no MQTT library here. The server subscribes with ``SUBSCRIPTIONS`` and
turns every topic it receives into one of the frozen route types below, or
``None`` for a topic it does not understand (which becomes a dead letter).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Same rule as the CHECK constraints on sensors.id and units.id.
ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")

# What the server subscribes to (QoS 1; positions may arrive with QoS 0).
SUBSCRIPTIONS: tuple[str, ...] = (
    "sensors/+/alarm",
    "sensors/+/state",
    "units/+/position",
    "units/+/status",
    "cap/+",
)


@dataclass(frozen=True, slots=True)
class SensorAlarm:
    sensor_id: str


@dataclass(frozen=True, slots=True)
class SensorState:
    sensor_id: str


@dataclass(frozen=True, slots=True)
class UnitPosition:
    unit_id: str


@dataclass(frozen=True, slots=True)
class UnitStatus:
    unit_id: str


@dataclass(frozen=True, slots=True)
class CapFeed:
    """A CAP alert from an external feed, ``cap/{source}``."""

    source: str


Route = SensorAlarm | SensorState | UnitPosition | UnitStatus | CapFeed


def parse_topic(topic: str) -> Route | None:
    """The route a topic names, or None when it is not one of ours or its id is malformed."""
    parts = topic.split("/")
    if len(parts) == 2 and parts[0] == "cap" and ID_RE.match(parts[1]):
        return CapFeed(parts[1])
    if len(parts) != 3 or not ID_RE.match(parts[1]):
        return None
    head, ident, leaf = parts
    if head == "sensors" and leaf == "alarm":
        return SensorAlarm(ident)
    if head == "sensors" and leaf == "state":
        return SensorState(ident)
    if head == "units" and leaf == "position":
        return UnitPosition(ident)
    if head == "units" and leaf == "status":
        return UnitStatus(ident)
    return None


def alarm_topic(sensor_id: str) -> str:
    return f"sensors/{sensor_id}/alarm"


def unit_dispatch_topic(unit_id: str) -> str:
    return f"units/{unit_id}/dispatch"
