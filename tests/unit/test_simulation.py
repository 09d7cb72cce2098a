"""The simulator's pure scenario: contract-valid payloads, honest timing."""

from __future__ import annotations

import json
import random
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise
from typing import Any

import pytest

from command.demo_city import build_city, distance_m, sensor_alarm_kinds
from command.simulation import (
    Outgoing,
    SimSensor,
    Simulation,
    SimUnit,
    cruise_speed,
    rfc3339,
)
from sensors.alarms import KINDS, parse_alarm, parse_position

START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
ALARM_KINDS = KINDS  # the contract's vocabulary, from the parser that enforces it
SEVERITIES = {"Extreme", "Severe", "Moderate", "Minor", "Unknown"}
ALARM_FIELDS = {"id", "kind", "severity", "time", "lat", "lon", "value", "unit", "message"}
# RFC 3339 date-time: an offset (or Z) is mandatory.
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")

CITY = build_city()
SENSORS = [SimSensor(s.id, s.kind, s.location.y, s.location.x) for s in CITY.sensors]
UNITS = [SimUnit(u.id, u.home.y, u.home.x, cruise_speed(u.type)) for u in CITY.units]
SENSOR_BY_ID = {s.id: s for s in SENSORS}
Messages = list[tuple[datetime, Outgoing]]
Run = tuple[Simulation, Messages]
Payload = dict[str, Any]
UNIT_BY_ID = {u.id: u for u in UNITS}


def run(seed: int = 1, rate: float = 2.0, seconds: float = 900.0, start: datetime = START) -> Run:
    """Drive a simulation the way the adapter does, on a fake clock."""
    sim = Simulation(SENSORS, UNITS, random.Random(seed), start, rate=rate)
    now = start
    end = start + timedelta(seconds=seconds)
    out: list[tuple[datetime, Outgoing]] = []
    while now < end:
        out.extend((now, m) for m in sim.step(now))
        deadline = sim.next_deadline(now)
        assert deadline > now
        now = deadline
    return sim, out


@pytest.fixture(scope="module")
def fifteen_minutes() -> Run:
    return run()


def alarms(messages: Messages) -> list[tuple[datetime, str, Payload]]:
    found = []
    for at, m in messages:
        if m.topic.endswith("/alarm"):
            sensor_id = m.topic.split("/")[1]
            found.append((at, sensor_id, json.loads(m.payload)))
    return found


def test_alarm_payloads_follow_the_contract(fifteen_minutes: Run) -> None:
    _, messages = fifteen_minutes
    found = alarms(messages)
    assert found
    for _, m in messages:
        if not m.topic.endswith("/alarm"):
            continue
        assert re.fullmatch(r"sensors/[A-Za-z0-9_.:-]{1,64}/alarm", m.topic)
        assert m.qos == 1
        m.payload.decode("utf-8")  # valid UTF-8
    for at, sensor_id, p in found:
        sensor = SENSOR_BY_ID[sensor_id]
        assert set(p) <= ALARM_FIELDS
        assert {"id", "kind", "severity", "time"} <= set(p)
        assert isinstance(p["id"], str) and 0 < len(p["id"]) <= 64
        assert p["kind"] in ALARM_KINDS
        assert p["kind"] in sensor_alarm_kinds(sensor.kind)
        assert p["severity"] in SEVERITIES
        assert RFC3339.match(p["time"]), p["time"]
        stamped = datetime.fromisoformat(p["time"])
        assert stamped.utcoffset() is not None
        # Stamped with the time it was handed over, to the millisecond.
        assert abs(stamped - at) < timedelta(milliseconds=1)
        assert ("lat" in p) == ("lon" in p)
        if "lat" in p:
            assert isinstance(p["lat"], float) and isinstance(p["lon"], float)
            assert distance_m(p["lon"], p["lat"], sensor.lon, sensor.lat) < 1.0
        if sensor.kind in ("water_level", "gas", "air_quality"):
            assert isinstance(p["value"], (int, float)) and p["value"] >= 0
            assert isinstance(p["unit"], str) and p["unit"]
        assert ("value" in p) == ("unit" in p)
        if "message" in p:
            assert isinstance(p["message"], str)


def test_the_servers_own_parser_accepts_every_message(fifteen_minutes: Run) -> None:
    # The contract's owner is sensors/alarms.py: whatever it rejects would
    # land in the dead-letter store instead of the demo.
    _, messages = fifteen_minutes
    for at, m in messages:
        _, ident, leaf = m.topic.split("/")
        if leaf == "alarm":
            alarm = parse_alarm(ident, m.payload, at)
            assert alarm.time == at.replace(microsecond=at.microsecond // 1000 * 1000)
        else:
            assert leaf == "position"
            parse_position(ident, m.payload, at)


def test_alarm_ids_are_unique_per_sensor(fifteen_minutes: Run) -> None:
    _, messages = fifteen_minutes
    keys = [(sensor_id, p["id"]) for _, sensor_id, p in alarms(messages)]
    assert len(set(keys)) == len(keys)


def test_alarm_ids_differ_between_runs() -> None:
    # The server drops a repeated (sensor, id) pair: a restarted simulator
    # must not reuse ids, or its alarms would silently vanish.
    _, first = run(seed=1, seconds=120)
    _, second = run(seed=1, seconds=120, start=START + timedelta(seconds=5))
    ids_first = {(s, p["id"]) for _, s, p in alarms(first)}
    ids_second = {(s, p["id"]) for _, s, p in alarms(second)}
    assert ids_first and ids_second
    assert not ids_first & ids_second


def test_both_with_and_without_coordinates(fifteen_minutes: Run) -> None:
    _, messages = fifteen_minutes
    found = alarms(messages)
    assert any("lat" in p for _, _, p in found)
    assert any("lat" not in p for _, _, p in found)


def test_most_sensors_are_quiet_and_events_burst(fifteen_minutes: Run) -> None:
    sim, messages = fifteen_minutes
    found = alarms(messages)
    # At 2 alarms/s, in any minute most of the 500 sensors say nothing...
    per_minute: dict[int, set[str]] = defaultdict(set)
    for at, sensor_id, _ in found:
        per_minute[int((at - START).total_seconds() // 60)].add(sensor_id)
    assert max(len(ids) for ids in per_minute.values()) < len(SENSORS) / 4
    # ...and most alarms come from sensors that fired repeatedly (events),
    # not from one-off noise.
    per_sensor = Counter(sensor_id for _, sensor_id, _ in found)
    assert sum(n for n in per_sensor.values() if n >= 3) > 0.6 * len(found)
    assert sim.stats.events > 0
    # A burst: some sensor raises several alarms within about a minute.
    times: dict[str, list[datetime]] = defaultdict(list)
    for at, sensor_id, _ in found:
        times[sensor_id].append(at)
    assert any(len(ts) >= 3 and ts[2] - ts[0] <= timedelta(seconds=70) for ts in times.values())
    # Events escalate: severities above Minor occur.
    assert {p["severity"] for _, _, p in found} & {"Moderate", "Severe", "Extreme"}


def test_events_spread_to_neighbours() -> None:
    _, messages = run(seed=3, rate=5.0, seconds=900)
    found = alarms(messages)
    # Some alarm has, within a minute, an alarm of another sensor within 1 km.
    assert any(
        s1 != s2
        and abs(t1 - t2) <= timedelta(seconds=60)
        and distance_m(SENSOR_BY_ID[s1].lon, SENSOR_BY_ID[s1].lat, SENSOR_BY_ID[s2].lon, SENSOR_BY_ID[s2].lat)
        <= 1_000
        for i, (t1, s1, _) in enumerate(found)
        for (t2, s2, _) in found[i + 1 : i + 30]
    )


@pytest.mark.parametrize("rate", [0.5, 2.0, 10.0])
def test_average_rate_is_honoured(rate: float) -> None:
    seconds = 3_600.0
    _, messages = run(seed=5, rate=rate, seconds=seconds)
    observed = len(alarms(messages)) / seconds
    assert observed == pytest.approx(rate, rel=0.25)


def test_rate_holds_from_the_first_seconds() -> None:
    # A short benchmark must not see a minute-long ramp-up.
    _, messages = run(seed=6, rate=100.0, seconds=20.0)
    assert len(alarms(messages)) / 20.0 == pytest.approx(100.0, rel=0.25)


def test_rate_zero_means_no_alarms() -> None:
    _, messages = run(rate=0.0, seconds=120)
    assert not alarms(messages)
    assert messages  # units still report


def test_same_seed_same_story() -> None:
    _, a = run(seed=9, seconds=300)
    _, b = run(seed=9, seconds=300)
    assert a == b
    _, c = run(seed=10, seconds=300)
    assert a != c


def test_position_payloads(fifteen_minutes: Run) -> None:
    _, messages = fifteen_minutes
    reports: dict[str, list[tuple[datetime, Payload]]] = defaultdict(list)
    for at, m in messages:
        if not m.topic.endswith("/position"):
            continue
        assert m.qos == 0
        unit_id = m.topic.split("/")[1]
        assert m.topic == f"units/{unit_id}/position"
        p = json.loads(m.payload)
        assert set(p) == {"lat", "lon", "time", "speed", "heading"}
        assert RFC3339.match(p["time"])
        assert abs(datetime.fromisoformat(p["time"]) - at) < timedelta(milliseconds=1)
        assert 0 <= p["speed"] <= 1.2 * UNIT_BY_ID[unit_id].speed
        assert 0 <= p["heading"] < 360
        reports[unit_id].append((at, p))
    assert set(reports) == set(UNIT_BY_ID)
    for unit_id, seq in reports.items():
        unit = UNIT_BY_ID[unit_id]
        # Every 5 s: 15 minutes give about 180 reports.
        assert 170 <= len(seq) <= 185, unit_id
        for (t1, p1), (t2, p2) in pairwise(seq):
            moved = distance_m(p1["lon"], p1["lat"], p2["lon"], p2["lat"])
            # No teleporting: never faster than the reported speed allows.
            assert moved <= p2["speed"] * (t2 - t1).total_seconds() + 1.0, unit_id
        # Drifting near home, not wandering off.
        far = max(distance_m(p["lon"], p["lat"], unit.lon, unit.lat) for _, p in seq)
        assert far < 3_000, unit_id
    assert any(p["speed"] > 0 for seq in reports.values() for _, p in seq)


def test_next_deadline_is_always_in_the_future() -> None:
    sim = Simulation(SENSORS, UNITS, random.Random(2), START, rate=50.0)
    assert sim.next_deadline(START) > START
    now = START
    for _ in range(2_000):
        sim.step(now)
        deadline = sim.next_deadline(now)
        assert now < deadline <= now + timedelta(seconds=5)
        now = deadline
    empty = Simulation([], [], random.Random(2), START, rate=1.0)
    assert empty.step(START) == []
    assert empty.next_deadline(START) > START


def test_a_stalled_caller_gets_a_bounded_catch_up() -> None:
    sim = Simulation(SENSORS, UNITS, random.Random(4), START, rate=2.0)
    sim.step(START)
    later = START + timedelta(hours=2)
    messages = sim.step(later)
    n_alarms = sum(m.topic.endswith("/alarm") for m in messages)
    # At most ~30 s of arrivals (plus events already under way), not 2 hours.
    assert n_alarms < 2.0 * 30 * 5
    for m in messages:
        if m.topic.endswith("/position"):
            p = json.loads(m.payload)
            unit = UNIT_BY_ID[m.topic.split("/")[1]]
            assert distance_m(p["lon"], p["lat"], unit.lon, unit.lat) < 3_000


def test_time_is_utc_rfc3339_even_for_other_offsets() -> None:
    shanghai = timezone(timedelta(hours=8))
    local = datetime(2026, 3, 1, 16, 0, 0, 123456, tzinfo=shanghai)
    assert rfc3339(local) == "2026-03-01T08:00:00.123+00:00"
    with pytest.raises(ValueError):
        rfc3339(datetime(2026, 3, 1))
    with pytest.raises(ValueError):
        Simulation(SENSORS, UNITS, random.Random(1), datetime(2026, 3, 1))
    sim = Simulation(SENSORS, UNITS, random.Random(1), START)
    with pytest.raises(ValueError):
        sim.step(datetime(2026, 3, 1))


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Simulation(SENSORS, UNITS, random.Random(1), START, rate=-1.0)
    with pytest.raises(ValueError):
        Simulation(SENSORS, UNITS, random.Random(1), START, position_interval_s=0.0)
    with pytest.raises(ValueError):
        SimUnit("U-1", 30.0, 120.0, float("nan"))
