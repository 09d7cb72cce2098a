"""Correlation groups alarms into incidents and escalates severity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from command.correlation import Located, OpenIncident, correlate
from command.incidents import more_severe
from sensors.alarms import Alarm

T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)


def located(
    sensor: str, alarm_id: str, severity: str = "Moderate", kind: str = "smoke", minutes: int = 0
) -> Located:
    alarm = Alarm(sensor, alarm_id, kind, severity, T0 + timedelta(minutes=minutes))
    return Located(alarm, 30.0, 120.0, sensor_name=f"{sensor} name")


def test_new_sensor_opens_one_incident_per_sensor() -> None:
    groups = correlate([located("S-1", "a"), located("S-2", "b"), located("S-1", "c", minutes=1)], {})
    assert [(g.key, g.incident_id, len(g.alarms)) for g in groups] == [
        ("sensor:S-1", None, 2),
        ("sensor:S-2", None, 1),
    ]
    assert groups[0].title == "Smoke at S-1 name"
    assert groups[0].category == "accident"
    assert groups[0].last.alarm.id == "c"


def test_open_incident_is_joined_and_severity_only_escalates() -> None:
    open_incidents = {"sensor:S-1": OpenIncident(42, "sensor:S-1", "Severe", 3)}
    (group,) = correlate([located("S-1", "x", severity="Minor")], open_incidents)
    assert group.incident_id == 42
    assert group.severity == "Severe"
    (group,) = correlate([located("S-1", "y", severity="Extreme")], open_incidents)
    assert group.severity == "Extreme"


def test_last_is_latest_by_alarm_time_not_arrival() -> None:
    (group,) = correlate([located("S-1", "late", minutes=5), located("S-1", "early", minutes=1)], {})
    assert group.last.alarm.id == "late"


def test_severity_order() -> None:
    assert more_severe("Unknown", "Minor") == "Minor"
    assert more_severe("Extreme", "Severe") == "Extreme"
    assert more_severe("Moderate", "Moderate") == "Moderate"
