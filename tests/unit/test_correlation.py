"""Correlation rules and decisions."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import Point

from command.correlation import (
    Candidate,
    Located,
    RulesError,
    correlate,
    distance_m,
    lock_keys,
    parse_rules,
)
from command.incidents import more_severe
from command.settings import load
from sensors.alarms import Alarm

T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
RULES = parse_rules(load({}).correlation_rules_path.read_text())
M_LAT = 1 / 110_574.0  # degrees per metre northwards


def located(
    sensor: str,
    alarm_id: str,
    *,
    kind: str = "smoke",
    severity: str = "Moderate",
    north_m: float = 0.0,
    minutes: float = 0,
) -> Located:
    alarm = Alarm(sensor, alarm_id, kind, severity, T0 + timedelta(minutes=minutes))
    return Located(alarm, 30.0 + north_m * M_LAT, 120.0, sensor_name=f"{sensor} name")


def test_default_rules_cover_every_kind_once() -> None:
    assert RULES.family_of("smoke") is RULES.family_of("fire")
    assert RULES.family_of("gas_leak") is RULES.family_of("hazmat")
    assert RULES.family_of("flood").radius_m == 2000
    assert RULES.family_of("earthquake").radius_m == 20000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[families.a]\nkinds=['fire']\nradius_m=1\nwindow_s=1\n", "no family for kinds"),
        ("[families.a\n", "rules file"),
        ("[families.a]\nkinds=['fire']\nwindow_s=1\n", "missing or invalid"),
        ("[families.a]\nkinds=['volcano']\nradius_m=1\nwindow_s=1\n", "not an alarm kind"),
        ("[families.a]\nkinds=['fire']\nradius_m=-1\nwindow_s=1\n", "radius_m must be positive"),
    ],
)
def test_bad_rules_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(RulesError, match=message):
        parse_rules(text)


def test_nearby_compatible_alarms_form_one_incident() -> None:
    groups = correlate(
        [
            located("S-1", "a"),
            located("S-2", "b", kind="fire", severity="Severe", north_m=250),
            located("S-3", "c", north_m=500),  # within 300 m of the hull grown by b
            located("S-4", "d", kind="gas_leak", north_m=10),  # another family
            located("S-5", "e", north_m=2000),  # too far
        ],
        [],
        RULES,
    )
    assert [(g.incident_id, g.family, [a.alarm.id for a in g.alarms]) for g in groups] == [
        (None, "fire", ["a", "b", "c"]),
        (None, "gas", ["d"]),
        (None, "fire", ["e"]),
    ]
    assert groups[0].severity == "Severe"
    assert groups[0].kind == "smoke" and groups[0].title == "Smoke near S-1 name"


def test_joins_an_open_incident_within_radius_and_window() -> None:
    incident = Candidate(7, "fire", Point(120.0, 30.0), T0)
    (joined,) = correlate([located("S-9", "x", north_m=100, minutes=10)], [incident], RULES)
    assert joined.incident_id == 7
    late = correlate([located("S-9", "y", north_m=100, minutes=31)], [incident], RULES)
    assert [g.incident_id for g in late] == [None]  # outside the 30 min window


def test_nearest_of_two_incidents_wins() -> None:
    near = Candidate(1, "fire", Point(120.0, 30.0 + 200 * M_LAT), T0)
    far = Candidate(2, "fire", Point(120.0, 30.0 - 250 * M_LAT), T0)
    (group,) = correlate([located("S-1", "a")], [far, near], RULES)
    assert group.incident_id == 1


def test_distance_is_metres() -> None:
    assert math.isclose(distance_m(30.0, 120.0, Point(120.0, 30.0 + 1000 * M_LAT)), 1000, rel_tol=1e-3)
    east = 1000 / (111_320 * math.cos(math.radians(30)))
    assert math.isclose(distance_m(30.0, 120.0, Point(120.0 + east, 30.0)), 1000, rel_tol=1e-3)


@settings(max_examples=300, deadline=None)
@given(
    lat=st.floats(-59, 59),
    lon=st.floats(-179, 179),
    bearing=st.floats(0, 2 * math.pi),
    fraction=st.floats(0, 0.999),
    kind=st.sampled_from(["fire", "flood", "earthquake", "medical"]),
)
def test_alarms_within_radius_always_share_a_lock(
    lat: float, lon: float, bearing: float, fraction: float, kind: str
) -> None:
    """The invariant that keeps two concurrent batches from opening two incidents for one cluster."""
    radius = RULES.family_of(kind).radius_m * fraction
    dlat = radius * math.cos(bearing) / 110_574.0
    dlon = radius * math.sin(bearing) / (111_320.0 * math.cos(math.radians(lat)))
    a = Located(Alarm("A", "1", kind, "Minor", T0), lat, lon)
    b = Located(Alarm("B", "1", kind, "Minor", T0), lat + dlat, lon + dlon)
    assert set(lock_keys([a], RULES)) & set(lock_keys([b], RULES))


def _storm(spacing_north_m: float) -> list[Located]:
    """300 alarms from 40 sensors in each of three clusters of one family (smoke
    and fire), the clusters' centres ``spacing_north_m`` apart, interleaved in time."""
    alarms = []
    for cluster in range(3):
        for i in range(300):
            alarms.append(
                Located(
                    Alarm(
                        f"S-{cluster}-{i % 40}",
                        f"{cluster}-{i}",
                        ("smoke", "fire")[i % 2],
                        "Minor",
                        T0 + timedelta(seconds=i / 10),
                    ),
                    # A cluster is 6 x 0.0002 degrees (about 130 m) north-south, 4 x 0.0002 east-west.
                    30.0 + cluster * spacing_north_m * M_LAT + (i % 7) * 0.0002,
                    120.0 + (i % 5) * 0.0002,
                )
            )
    return alarms


def test_storm_of_three_clusters_is_three_incidents() -> None:
    # One family, so only distance can tell the clusters apart: 900 m between
    # centres leaves some 770 m between their edges, beyond the 300 m fire radius.
    assert RULES.family_of("smoke").radius_m == 300
    groups = correlate(_storm(900), [], RULES)
    assert len(groups) == 3
    for group in groups:
        assert (group.incident_id, group.family) == (None, "fire")
        (cluster,) = {a.alarm.sensor_id.split("-")[1] for a in group.alarms}  # one cluster each
        assert len(group.alarms) == 300
        assert {a.alarm.sensor_id for a in group.alarms} == {f"S-{cluster}-{n}" for n in range(40)}
        assert {a.alarm.kind for a in group.alarms} == {"smoke", "fire"}


def test_the_same_storm_within_the_radius_is_one_incident() -> None:
    # The control for the test above: with 250 m between centres, the clusters'
    # first alarms (same place in each, same time) are already within the radius
    # of each other, and the same alarms become one incident. (Open incidents
    # are never merged later, so it is the first alarms' distance that decides.)
    (group,) = correlate(_storm(250), [], RULES)
    assert (group.family, len(group.alarms)) == ("fire", 900)


def test_severity_order() -> None:
    assert more_severe("Unknown", "Minor") == "Minor"
    assert more_severe("Extreme", "Severe") == "Extreme"
    assert more_severe("Moderate", "Moderate") == "Moderate"
