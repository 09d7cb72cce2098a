"""Incidents: the vocabulary, the domain type and its wire form.

Pure. The store converts database rows into :class:`Incident` at its edge;
everything past that point (the hub, the HTTP API, correlation) speaks this
type, and :func:`to_wire` is the one place that decides the JSON shape the
design's contract promises.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sensors.alarms import CATEGORY_OF_KIND, SEVERITIES

STATUSES: tuple[str, ...] = (
    "new",
    "confirmed",
    "responding",
    "contained",
    "resolved",
    "closed",
    "false_alarm",
    "cancelled",
)
# An incident in one of these no longer collects alarms.
ENDED: frozenset[str] = frozenset({"resolved", "closed", "false_alarm", "cancelled"})

# The lifecycle a commander drives (POST /api/incidents/{id}/status). The
# first dispatch also moves a new or confirmed incident to responding.
# Reopening (from an ended state, with a reason) goes back to confirmed.
_NEXT: dict[str, frozenset[str]] = {
    "new": frozenset({"confirmed", "responding", "false_alarm", "cancelled"}),
    "confirmed": frozenset({"responding", "contained", "resolved", "false_alarm", "cancelled"}),
    "responding": frozenset({"contained", "resolved", "false_alarm", "cancelled"}),
    "contained": frozenset({"responding", "resolved"}),
    "resolved": frozenset({"closed"}),
    "closed": frozenset(),
    "false_alarm": frozenset(),
    "cancelled": frozenset(),
}
REOPEN = "reopen"
# Ending an incident this way needs a reason in the timeline.
NEEDS_REASON: frozenset[str] = frozenset({"false_alarm", "cancelled", REOPEN})


class InvalidStatusChange(ValueError):
    """A lifecycle step that is not allowed; the message says why."""


def next_status(current: str, requested: str, reason: str | None) -> str:
    """The status an incident moves to when a commander asks for ``requested``.

    ``requested`` is a status, or ``"reopen"`` for an ended incident.

    Raises:
        InvalidStatusChange: unknown status, a step the lifecycle does not
            allow, or a missing reason where one is required.
    """
    if requested != REOPEN and requested not in STATUSES:
        raise InvalidStatusChange(
            f"unknown status {requested!r}; expected one of {', '.join(STATUSES)} or reopen"
        )
    if requested in NEEDS_REASON and not (reason and reason.strip()):
        raise InvalidStatusChange(f"{requested} needs a reason")
    if requested == REOPEN:
        if current not in ENDED:
            raise InvalidStatusChange(f"only an ended incident can be reopened; this one is {current}")
        return "confirmed"
    if requested not in _NEXT[current]:
        allowed = ", ".join(sorted(_NEXT[current])) or "nothing (reopen it first)"
        raise InvalidStatusChange(f"an incident that is {current} can become: {allowed}")
    return requested


_RANK = {severity: rank for rank, severity in enumerate(SEVERITIES)}


def more_severe(a: str, b: str) -> str:
    """The more severe of two CAP severities ('Unknown' ranks lowest)."""
    return a if _RANK[a] <= _RANK[b] else b


def category_of(kind: str) -> str:
    return CATEGORY_OF_KIND.get(kind, "public_security")


@dataclass(frozen=True, slots=True)
class Incident:
    id: int
    kind: str
    category: str
    severity: str
    status: str
    # None only for an alert that carries no geometry (see migrations/0001).
    lat: float | None
    lon: float | None
    area: dict[str, Any] | None
    district: str | None
    title: str
    alarm_count: int
    opened_at: datetime
    updated_at: datetime
    sensor_count: int = 0
    source: str = "sensor"

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown incident status {self.status!r}")
        if self.severity not in _RANK:
            raise ValueError(f"unknown severity {self.severity!r}")


@dataclass(frozen=True, slots=True)
class AlarmRef:
    """Which alarm caused an event: lets a console show it and anyone measure latency."""

    sensor_id: str
    id: str
    time: datetime


@dataclass(frozen=True, slots=True)
class AlertRef:
    """Which CAP message caused an event (the CAP counterpart of AlarmRef)."""

    sender: str
    identifier: str
    msg_type: str
    sent: datetime


def to_wire(
    incident: Incident, last_alarm: AlarmRef | None = None, last_alert: AlertRef | None = None
) -> dict[str, Any]:
    """The incident as the contract's JSON object."""
    wire: dict[str, Any] = {
        "id": incident.id,
        "kind": incident.kind,
        "category": incident.category,
        "severity": incident.severity,
        "status": incident.status,
        "lat": incident.lat,
        "lon": incident.lon,
        "area": incident.area,
        "district": incident.district,
        "title": incident.title,
        "alarm_count": incident.alarm_count,
        "sensor_count": incident.sensor_count,
        "source": incident.source,
        "opened_at": incident.opened_at.isoformat(),
        "updated_at": incident.updated_at.isoformat(),
    }
    if last_alarm is not None:
        wire["last_alarm"] = {
            "sensor_id": last_alarm.sensor_id,
            "id": last_alarm.id,
            "time": last_alarm.time.isoformat(),
        }
    if last_alert is not None:
        wire["last_alert"] = {
            "sender": last_alert.sender,
            "identifier": last_alert.identifier,
            "msg_type": last_alert.msg_type,
            "sent": last_alert.sent.isoformat(),
        }
    return wire
