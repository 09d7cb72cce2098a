"""The field page's position route, the parts that need no server: the per-unit
rate limit and the MQTT-shaped payload it hands to the MQTT parser."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from command.field_api import PositionLimiter, position_payload
from sensors.alarms import Rejected, parse_position

AT = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def test_one_report_per_unit_per_interval() -> None:
    limit = PositionLimiter(2.0)
    assert limit.admit("U-1", 100.0) == 0.0
    assert limit.admit("U-1", 101.5) == pytest.approx(0.5)
    # A refused report does not move the window.
    assert limit.admit("U-1", 101.9) == pytest.approx(0.1)
    assert limit.admit("U-2", 101.9) == 0.0
    assert limit.admit("U-1", 102.0) == 0.0
    assert limit.admit("U-1", 103.0) == pytest.approx(1.0)


def test_time_defaults_to_the_servers_and_is_kept_when_given() -> None:
    without = position_payload(b'{"lat": 30.1, "lon": 120.2, "speed": 3}', AT)
    assert json.loads(without) == {"lat": 30.1, "lon": 120.2, "speed": 3, "time": AT.isoformat()}
    position = parse_position("U-1", without, AT)
    assert (position.unit_id, position.lat, position.lon, position.time, position.speed) == (
        "U-1",
        30.1,
        120.2,
        AT,
        3.0,
    )
    given = b'{"lat": 30.1, "lon": 120.2, "time": "2024-05-01T09:59:00+08:00"}'
    assert position_payload(given, AT) is given


@pytest.mark.parametrize(
    ("raw", "reason"),
    [(b"[1, 2]", "payload must be a JSON object"), (b"\xff", "payload is not UTF-8"), (b"{", "invalid JSON")],
)
def test_what_is_not_a_json_object_is_refused_as_over_mqtt(raw: bytes, reason: str) -> None:
    with pytest.raises(Rejected, match=reason):
        position_payload(raw, AT)
