"""Correlation: which incident does each new alarm belong to?

Pure. The store gives it a batch of newly stored alarms and the open
incidents for their correlation keys (read under a lock on those keys), and
gets back one :class:`Group` per incident to open or update.

Rule (the foundation's; spatial clustering refines it later): alarms from the
same sensor belong to that sensor's open incident, or open one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from command.incidents import category_of, more_severe
from sensors.alarms import Alarm

KIND_TITLES: dict[str, str] = {
    "fire": "Fire",
    "smoke": "Smoke",
    "gas_leak": "Gas leak",
    "flood": "Flood",
    "water_level": "High water",
    "earthquake": "Earthquake",
    "landslide": "Landslide",
    "traffic_accident": "Traffic accident",
    "structure_collapse": "Structure collapse",
    "hazmat": "Hazardous materials",
    "power_outage": "Power outage",
    "air_quality": "Air quality",
    "medical": "Medical emergency",
    "crowd": "Crowd",
    "other": "Alarm",
}


@dataclass(frozen=True, slots=True)
class Located:
    """A stored alarm with the position it is placed at (its own, or its sensor's)."""

    alarm: Alarm
    lat: float
    lon: float
    sensor_name: str | None = None


@dataclass(frozen=True, slots=True)
class OpenIncident:
    id: int
    key: str
    severity: str
    alarm_count: int


@dataclass(frozen=True, slots=True)
class Group:
    """Alarms that go to one incident.

    ``incident_id`` is None when a new incident must be opened; then ``kind``,
    ``category``, ``lat``/``lon`` and ``title`` describe it. ``severity`` is the
    incident's severity after these alarms, ``last`` the latest of them.
    """

    key: str
    incident_id: int | None
    kind: str
    category: str
    severity: str
    lat: float
    lon: float
    title: str
    alarms: tuple[Located, ...]

    @property
    def last(self) -> Located:
        return max(self.alarms, key=lambda located: located.alarm.time)


def correlation_key(alarm: Alarm) -> str:
    return f"sensor:{alarm.sensor_id}"


def title_for(located: Located) -> str:
    where = located.sensor_name or located.alarm.sensor_id
    return f"{KIND_TITLES.get(located.alarm.kind, 'Alarm')} at {where}"


def correlate(alarms: Iterable[Located], open_incidents: Mapping[str, OpenIncident]) -> list[Group]:
    """Group alarms by incident.

    Args:
        alarms: newly stored alarms (duplicates already removed by the store).
        open_incidents: the open incident per correlation key, if any.
    Returns:
        one group per key, in the order the keys first appear.
    """
    by_key: dict[str, list[Located]] = {}
    for located in alarms:
        by_key.setdefault(correlation_key(located.alarm), []).append(located)
    groups: list[Group] = []
    for key, members in by_key.items():
        members.sort(key=lambda located: located.alarm.time)
        first = members[0]
        existing = open_incidents.get(key)
        severity = existing.severity if existing else first.alarm.severity
        for located in members:
            severity = more_severe(severity, located.alarm.severity)
        groups.append(
            Group(
                key=key,
                incident_id=existing.id if existing else None,
                kind=first.alarm.kind,
                category=category_of(first.alarm.kind),
                severity=severity,
                lat=first.lat,
                lon=first.lon,
                title=title_for(first),
                alarms=tuple(members),
            )
        )
    return groups
