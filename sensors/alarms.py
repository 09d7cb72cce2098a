"""The alarm contract: parse and validate a sensor's JSON alarm.

Pure. Every way an alarm can be wrong raises :class:`Rejected` with a reason
a person can act on; the ingest stores that reason in the dead-letter table.
Nothing else escapes: :func:`parse_alarm` raises only ``Rejected``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

MAX_PAYLOAD = 64 * 1024

KINDS: frozenset[str] = frozenset(
    {
        "fire",
        "smoke",
        "gas_leak",
        "flood",
        "water_level",
        "earthquake",
        "landslide",
        "traffic_accident",
        "structure_collapse",
        "hazmat",
        "power_outage",
        "air_quality",
        "medical",
        "crowd",
        "other",
    }
)

# The plan's four classes of events.
CATEGORY_OF_KIND: dict[str, str] = {
    "fire": "accident",
    "smoke": "accident",
    "gas_leak": "accident",
    "hazmat": "accident",
    "traffic_accident": "accident",
    "structure_collapse": "accident",
    "power_outage": "accident",
    "flood": "natural_disaster",
    "water_level": "natural_disaster",
    "earthquake": "natural_disaster",
    "landslide": "natural_disaster",
    "air_quality": "public_health",
    "medical": "public_health",
    "crowd": "public_security",
    "other": "public_security",
}


# CAP 1.2 severity, most severe first; the order is the ranking.
SEVERITIES: tuple[str, ...] = ("Extreme", "Severe", "Moderate", "Minor", "Unknown")

# A sensor clock may run a little fast; an alarm from further ahead than this
# is a broken clock, not an alarm about the future.
MAX_CLOCK_AHEAD = timedelta(hours=1)

_MAX_ID = 128
_MAX_TEXT = 2000
_MAX_UNIT = 32


class Rejected(ValueError):
    """The input breaks the contract; ``reason`` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Alarm:
    """One alarm as a sensor reported it. Coordinates may be absent when the
    sensor is registered with a location; the store fills them in."""

    sensor_id: str
    id: str
    kind: str
    severity: str
    time: datetime
    lat: float | None = None
    lon: float | None = None
    value: float | None = None
    unit: str | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise Rejected(f"unknown kind {self.kind!r}")
        if self.severity not in SEVERITIES:
            raise Rejected(f"unknown severity {self.severity!r}")
        if self.time.tzinfo is None:
            raise Rejected("time has no UTC offset")
        if (self.lat is None) != (self.lon is None):
            raise Rejected("lat and lon must come together")
        if self.lat is not None and not -90.0 <= self.lat <= 90.0:
            raise Rejected(f"lat {self.lat} out of range [-90, 90]")
        if self.lon is not None and not -180.0 <= self.lon <= 180.0:
            raise Rejected(f"lon {self.lon} out of range [-180, 180]")


def _reject_constant(name: str) -> Any:
    raise Rejected(f"{name} is not a number JSON allows")


def decode_json_object(payload: bytes) -> dict[str, Any]:
    """Decode a UTF-8 JSON object of at most MAX_PAYLOAD bytes.

    Raises:
        Rejected: too large, not UTF-8, not JSON, or not an object.
    """
    if len(payload) > MAX_PAYLOAD:
        raise Rejected(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(f"payload is not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise Rejected(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise Rejected("invalid JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer beyond Python's digit limit
        raise Rejected(f"invalid JSON: {str(exc)[:80]}") from None
    if not isinstance(value, dict):
        raise Rejected(f"payload must be a JSON object, got {type(value).__name__}")
    return value


def _string(doc: dict[str, Any], name: str, *, required: bool, limit: int) -> str | None:
    value = doc.get(name)
    if value is None:
        if required:
            raise Rejected(f"missing required field {name!r}")
        return None
    if not isinstance(value, str):
        raise Rejected(f"field {name!r} must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise Rejected(f"field {name!r} is empty")
    if len(value) > limit:
        raise Rejected(f"field {name!r} longer than {limit} characters")
    return value


def _number(doc: dict[str, Any], name: str) -> float | None:
    value = doc.get(name)
    if value is None:
        return None
    # bool is an int to Python but not a number to anyone sending JSON.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Rejected(f"field {name!r} must be a number, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        raise Rejected(f"field {name!r} is out of range") from None
    if not math.isfinite(number):
        raise Rejected(f"field {name!r} is not finite")
    return number


def parse_time(value: str, now: datetime, name: str = "time") -> datetime:
    """An RFC 3339 timestamp with an offset, not absurdly in the future.

    Raises:
        Rejected: unparseable, no offset, or beyond ``now + MAX_CLOCK_AHEAD``.
    """
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Rejected(f"field {name!r} is not an RFC 3339 timestamp: {value[:40]!r}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise Rejected(f"field {name!r} has no UTC offset: {value[:40]!r}")
    if parsed > now + MAX_CLOCK_AHEAD:
        raise Rejected(f"field {name!r} is {parsed - now} in the future")
    return parsed


def parse_alarm(sensor_id: str, payload: bytes, now: datetime) -> Alarm:
    """Parse one alarm published on ``sensors/{sensor_id}/alarm``.

    Args:
        sensor_id: from the topic (already checked against the id pattern).
        payload: the raw MQTT payload.
        now: the receiving edge's clock, for the future-timestamp check.
    Returns:
        the validated alarm.
    Raises:
        Rejected: with the reason, for anything that breaks the contract.
    """
    doc = decode_json_object(payload)
    alarm_id = _string(doc, "id", required=True, limit=_MAX_ID)
    kind = _string(doc, "kind", required=True, limit=64)
    severity = _string(doc, "severity", required=True, limit=32)
    time_text = _string(doc, "time", required=True, limit=64)
    assert alarm_id is not None and kind is not None and severity is not None
    assert time_text is not None
    return Alarm(
        sensor_id=sensor_id,
        id=alarm_id,
        kind=kind,
        severity=severity,
        time=parse_time(time_text, now),
        lat=_number(doc, "lat"),
        lon=_number(doc, "lon"),
        value=_number(doc, "value"),
        unit=_string(doc, "unit", required=False, limit=_MAX_UNIT),
        message=_string(doc, "message", required=False, limit=_MAX_TEXT),
    )


@dataclass(frozen=True, slots=True)
class Position:
    """A unit's reported position (``units/{id}/position``)."""

    unit_id: str
    lat: float
    lon: float
    time: datetime
    speed: float | None = None
    heading: float | None = None

    def __post_init__(self) -> None:
        if not -90.0 <= self.lat <= 90.0:
            raise Rejected(f"lat {self.lat} out of range [-90, 90]")
        if not -180.0 <= self.lon <= 180.0:
            raise Rejected(f"lon {self.lon} out of range [-180, 180]")
        if self.speed is not None and self.speed < 0:
            raise Rejected("speed is negative")


def parse_position(unit_id: str, payload: bytes, now: datetime) -> Position:
    """Parse a unit position report.

    Raises:
        Rejected: for anything that breaks the contract.
    """
    doc = decode_json_object(payload)
    lat, lon = _number(doc, "lat"), _number(doc, "lon")
    if lat is None or lon is None:
        raise Rejected("missing required field 'lat' or 'lon'")
    time_text = _string(doc, "time", required=True, limit=64)
    assert time_text is not None
    return Position(
        unit_id=unit_id,
        lat=lat,
        lon=lon,
        time=parse_time(time_text, now),
        speed=_number(doc, "speed"),
        heading=_number(doc, "heading"),
    )


UNIT_STATUSES: tuple[str, ...] = (
    "available",
    "dispatched",
    "en_route",
    "on_scene",
    "returning",
    "out_of_service",
)


# Progress on a dispatch a unit may report with its dispatch_id (the state
# machine is dispatch/progress.py; a unit test keeps the two in step).
DISPATCH_REPORTS: tuple[str, ...] = ("acknowledged", "en_route", "on_scene", "cleared", "declined")


@dataclass(frozen=True, slots=True)
class StatusReport:
    """A unit's own status report (``units/{id}/status``).

    Without ``dispatch_id``, ``status`` is the unit's status (e.g. out of
    service); with it, progress on that dispatch.
    """

    unit_id: str
    status: str
    time: datetime
    dispatch_id: int | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.dispatch_id is None and self.status not in UNIT_STATUSES:
            raise Rejected(f"unknown unit status {self.status!r}")
        if self.dispatch_id is not None and self.status not in DISPATCH_REPORTS:
            raise Rejected(
                f"unknown dispatch status {self.status!r}; expected one of {', '.join(DISPATCH_REPORTS)}"
            )


def parse_status(unit_id: str, payload: bytes, now: datetime) -> StatusReport:
    """Parse a unit status report.

    Raises:
        Rejected: for anything that breaks the contract.
    """
    doc = decode_json_object(payload)
    status = _string(doc, "status", required=True, limit=32)
    time_text = _string(doc, "time", required=True, limit=64)
    dispatch = doc.get("dispatch_id")
    if isinstance(dispatch, str) and dispatch.isdigit() and len(dispatch) <= 18:
        dispatch = int(dispatch)
    if dispatch is not None and (isinstance(dispatch, bool) or not isinstance(dispatch, int) or dispatch < 1):
        raise Rejected("field 'dispatch_id' must be a positive integer")
    reason = _string(doc, "reason", required=False, limit=500)
    assert status is not None and time_text is not None
    return StatusReport(
        unit_id=unit_id,
        status=status,
        time=parse_time(time_text, now),
        dispatch_id=dispatch,
        reason=reason,
    )


def parse_state(payload: bytes) -> str:
    """``online`` / ``offline``, or a JSON heartbeat (which means online).

    Raises:
        Rejected: anything else.
    """
    if len(payload) > MAX_PAYLOAD:
        raise Rejected(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    text = payload.strip()
    if text in (b"online", b"offline"):
        return text.decode()
    decode_json_object(payload)
    return "online"
