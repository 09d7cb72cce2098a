"""The alarm contract, case by case."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from sensors.alarms import MAX_PAYLOAD, Rejected, parse_alarm, parse_position, parse_state
from sensors.topics import SensorAlarm, SensorState, UnitPosition, parse_topic

NOW = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)


def payload(**fields: object) -> bytes:
    doc: dict[str, object] = {
        "id": "a1",
        "kind": "fire",
        "severity": "Severe",
        "time": "2026-11-28T15:59:00+08:00",
    }
    doc.update(fields)
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


def test_valid_alarm_keeps_every_field() -> None:
    alarm = parse_alarm("S-1", payload(lat=30.27, lon=120.15, value=3.5, unit="m", message="rising"), NOW)
    assert (alarm.sensor_id, alarm.id, alarm.kind, alarm.severity) == ("S-1", "a1", "fire", "Severe")
    assert alarm.time == datetime(2026, 11, 28, 7, 59, tzinfo=UTC)
    assert (alarm.lat, alarm.lon, alarm.value, alarm.unit, alarm.message) == (
        30.27,
        120.15,
        3.5,
        "m",
        "rising",
    )


def test_location_is_optional() -> None:
    alarm = parse_alarm("S-1", payload(), NOW)
    assert alarm.lat is None and alarm.lon is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{", "invalid JSON"),
        (b"\xc3\x28", "not UTF-8"),
        (b"[1, 2]", "must be a JSON object"),
        (
            b'{"id": "a", "kind": "fire", "severity": "Severe", '
            b'"time": "2026-11-28T08:00:00Z", "value": NaN}',
            "not a number JSON allows",
        ),
        (payload(id=...), "missing required field 'id'"),
        (payload(id=""), "field 'id' is empty"),
        (payload(id=5), "field 'id' must be a string"),
        (payload(kind="volcano"), "unknown kind"),
        (payload(severity="severe"), "unknown severity"),
        (payload(time="2026-11-28 08:00"), "no UTC offset"),
        (payload(time="yesterday"), "not an RFC 3339 timestamp"),
        (payload(time=(NOW + timedelta(days=2)).isoformat()), "in the future"),
        (payload(lat=90.5, lon=120), "lat 90.5 out of range"),
        (payload(lat=30, lon=-181), "lon -181.0 out of range"),
        (payload(lat=30), "lat and lon must come together"),
        (payload(lat="30", lon=120), "field 'lat' must be a number"),
        (payload(lat=True, lon=120), "field 'lat' must be a number"),
        (payload(message="x" * 2001), "longer than 2000"),
        (b" " * (MAX_PAYLOAD + 1), "exceeds"),
        (b"[" * 60000, "invalid JSON"),
    ],
)
def test_rejections_say_why(body: bytes, reason: str) -> None:
    with pytest.raises(Rejected) as info:
        parse_alarm("S-1", body, NOW)
    assert reason in info.value.reason


def test_small_clock_skew_is_accepted() -> None:
    alarm = parse_alarm("S-1", payload(time=(NOW + timedelta(minutes=5)).isoformat()), NOW)
    assert alarm.time > NOW


def test_position_and_state() -> None:
    position = parse_position(
        "U-1", b'{"lat": 30.1, "lon": 120.2, "time": "2026-11-28T08:00:00Z", "speed": 3}', NOW
    )
    assert (position.lat, position.lon, position.speed, position.heading) == (30.1, 120.2, 3.0, None)
    with pytest.raises(Rejected, match="missing required field"):
        parse_position("U-1", b'{"lat": 30.1, "time": "2026-11-28T08:00:00Z"}', NOW)
    with pytest.raises(Rejected, match="speed is negative"):
        parse_position("U-1", b'{"lat": 30.1, "lon": 1, "time": "2026-11-28T08:00:00Z", "speed": -1}', NOW)
    assert parse_state(b"online") == "online"
    assert parse_state(b"offline\n") == "offline"
    assert parse_state(b'{"battery": 0.8}') == "online"
    with pytest.raises(Rejected):
        parse_state(b"maybe")


@pytest.mark.parametrize(
    ("topic", "route"),
    [
        ("sensors/S-1/alarm", SensorAlarm("S-1")),
        ("sensors/S-1/state", SensorState("S-1")),
        ("units/U.7/position", UnitPosition("U.7")),
        ("sensors/S-1/alarm/extra", None),
        ("sensors//alarm", None),
        ("sensors/bad id/alarm", None),
        ("sensors/" + "x" * 65 + "/alarm", None),
        ("units/U-1/dispatch", None),
        ("other/S-1/alarm", None),
    ],
)
def test_topics(topic: str, route: object) -> None:
    assert parse_topic(topic) == route
