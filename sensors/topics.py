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

# A shared-subscription group name (MQTT 5 forbids "/", "+" and "#" in it; we
# allow the same small alphabet as instance names, so it is safe in any broker).
GROUP_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def shared_subscriptions(group: str, filters: tuple[str, ...] = SUBSCRIPTIONS) -> tuple[str, ...]:
    """``filters`` as members of the shared-subscription group ``group``.

    Every instance subscribing to ``$share/{group}/{filter}`` is one member of
    the group, and the broker hands each matching message to one member only,
    so N instances share the ingest instead of storing every alarm N times.
    The messages still carry their real topic (``sensors/S-1/alarm``), so
    :func:`parse_topic` reads them unchanged.

    Args:
        group: the share name; ``""`` means plain subscriptions (every
            instance receives every message).
        filters: the topic filters to share.

    Raises:
        ValueError: ``group`` is not 1-64 letters, digits, ``-``, ``_`` or ``.``.
    """
    if group == "":
        return filters
    if not GROUP_RE.match(group):
        raise ValueError(f"share group must be 1-64 letters, digits, '-', '_' or '.', got {group!r}")
    return tuple(f"$share/{group}/{topic}" for topic in filters)


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


def drain_marker_topic(client_id: str) -> str:
    """Where ``emergency drain-session`` sends itself the marker that ends its drain.

    Private to the drained session: no sensor publishes here, and the marker
    is queued behind everything the broker had queued for that session.
    """
    return f"emergency/drain/{client_id}"
