"""Response-time KPIs against a table computed by hand.

The scenario (times UTC, 2024-05-01 and -02; N = not measurable):

    id kind  district sev.     status      alarm    opened   dispatches
    1  fire  D-1      Severe   resolved    10:00:00 10:00:10 U-1 created 10:00:40, declined 10:00:50
                                                             U-2 10:01:00 ack 10:01:20 en route 10:02:30
                                                                 on scene 10:06:30 cleared 10:36:30
    2  fire  D-2      Moderate responding  11:59:58 12:00:00 U-3 12:01:30, never acknowledged
    3  flood D-1      Minor    contained   (none)   08:00:00 U-1 08:00:45 ack 08:01:00 en route 08:02:40
                                                                 on scene 08:07:00 cleared 08:17:00
                                                             U-2 08:01:00 ack 08:01:10 en route 08:02:40
                                                                 on scene 08:05:00 (first) cleared 08:35:00
    4  fire  D-1      Extreme  closed      08:59:55 09:00:00 U-2 09:00:20, cancelled 09:00:30
                                                             U-1 09:00:50 ack 09:01:00 en route 09:02:00
                                                                 on scene 09:06:10 cleared 09:26:10
    5  flood D-2      Minor    false_alarm 09:59:59 10:00:00 (none)

Intervals (s): alarm_to_incident, incident_to_dispatch, dispatch_to_ack, turnout, travel, on_scene, total

    1   10   30   20   70  240  1800  390   (the declined U-1 counts only for incident_to_dispatch)
    2    2   90    N    N    N     N    N
    3    N   45   10   90  140  1800  300   (U-2 arrived first, so it is the lead dispatch)
    4    5   20   10   60  250  1200  375   (the cancelled U-2 counts only for incident_to_dispatch)
    5    1    N    N    N    N     N    N
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta, timezone

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatch.kpi import (
    CSV_COLUMNS,
    METRICS,
    DispatchTimes,
    IncidentTimes,
    Targets,
    intervals,
    lead_dispatch,
    percentile,
    summarise,
    summary_to_wire,
    to_csv,
)


def at(day: int, hhmmss: str) -> datetime:
    h, m, s = map(int, hhmmss.split(":"))
    return datetime(2024, 5, day, h, m, s, tzinfo=UTC)


SCENARIO = [
    IncidentTimes(
        id=1,
        kind="fire",
        district="D-1",
        severity="Severe",
        status="resolved",
        opened_at=at(1, "10:00:10"),
        first_alarm_at=at(1, "10:00:00"),
        dispatches=(
            DispatchTimes("U-1", at(1, "10:00:40"), declined_at=at(1, "10:00:50")),
            DispatchTimes(
                "U-2",
                at(1, "10:01:00"),
                acknowledged_at=at(1, "10:01:20"),
                en_route_at=at(1, "10:02:30"),
                on_scene_at=at(1, "10:06:30"),
                cleared_at=at(1, "10:36:30"),
            ),
        ),
    ),
    IncidentTimes(
        id=2,
        kind="fire",
        district="D-2",
        severity="Moderate",
        status="responding",
        opened_at=at(1, "12:00:00"),
        first_alarm_at=at(1, "11:59:58"),
        dispatches=(DispatchTimes("U-3", at(1, "12:01:30")),),
    ),
    IncidentTimes(
        id=3,
        kind="flood",
        district="D-1",
        severity="Minor",
        status="contained",
        opened_at=at(2, "08:00:00"),
        first_alarm_at=None,
        dispatches=(
            DispatchTimes(
                "U-1",
                at(2, "08:00:45"),
                acknowledged_at=at(2, "08:01:00"),
                en_route_at=at(2, "08:02:40"),
                on_scene_at=at(2, "08:07:00"),
                cleared_at=at(2, "08:17:00"),
            ),
            DispatchTimes(
                "U-2",
                at(2, "08:01:00"),
                acknowledged_at=at(2, "08:01:10"),
                en_route_at=at(2, "08:02:40"),
                on_scene_at=at(2, "08:05:00"),
                cleared_at=at(2, "08:35:00"),
            ),
        ),
    ),
    IncidentTimes(
        id=4,
        kind="fire",
        district="D-1",
        severity="Extreme",
        status="closed",
        opened_at=at(2, "09:00:00"),
        first_alarm_at=at(2, "08:59:55"),
        dispatches=(
            DispatchTimes("U-2", at(2, "09:00:20"), cancelled_at=at(2, "09:00:30")),
            DispatchTimes(
                "U-1",
                at(2, "09:00:50"),
                acknowledged_at=at(2, "09:01:00"),
                en_route_at=at(2, "09:02:00"),
                on_scene_at=at(2, "09:06:10"),
                cleared_at=at(2, "09:26:10"),
            ),
        ),
    ),
    IncidentTimes(
        id=5,
        kind="flood",
        district="D-2",
        severity="Minor",
        status="false_alarm",
        opened_at=at(2, "10:00:00"),
        first_alarm_at=at(2, "09:59:59"),
    ),
]

N = None
# The table of the module docstring, written out by hand.
EXPECTED: dict[int, tuple[float | None, ...]] = {
    1: (10, 30, 20, 70, 240, 1800, 390),
    2: (2, 90, N, N, N, N, N),
    3: (N, 45, 10, 90, 140, 1800, 300),
    4: (5, 20, 10, 60, 250, 1200, 375),
    5: (1, N, N, N, N, N, N),
}


@pytest.mark.parametrize("incident", SCENARIO, ids=lambda i: f"incident-{i.id}")
def test_intervals_match_the_hand_table(incident: IncidentTimes) -> None:
    assert intervals(incident) == dict(zip(METRICS, EXPECTED[incident.id], strict=True))


def test_the_lead_dispatch_is_the_first_to_arrive_else_the_first_live_one() -> None:
    def lead(incident_id: int) -> str | None:
        found = lead_dispatch(next(i for i in SCENARIO if i.id == incident_id))
        return found.unit_id if found is not None else None

    assert lead(1) == "U-2"  # U-1 declined
    assert lead(2) == "U-3"  # none arrived: the first live one
    assert lead(3) == "U-2"  # created after U-1, arrived first
    assert lead(4) == "U-1"  # U-2 was cancelled
    assert lead(5) is None
    only_declined = IncidentTimes(
        9, "fire", "D-1", "Minor", "new", at(1, "10:00:00"), None,
        (DispatchTimes("U-1", at(1, "10:00:30"), declined_at=at(1, "10:00:40")),),
    )  # fmt: skip
    assert lead_dispatch(only_declined) is None
    assert intervals(only_declined)["incident_to_dispatch"] == 30
    assert intervals(only_declined)["dispatch_to_ack"] is None


# numpy.percentile(..., method="linear") gives the same; the values are worked by hand:
# rank r = (n - 1) * q / 100, then v[floor r] + (v[ceil r] - v[floor r]) * frac(r).
@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([7.0], 50, 7.0),
        ([7.0], 90, 7.0),
        ([1.0, 2.0, 5.0, 10.0], 50, 3.5),  # r = 1.5: 2 + 0.5 * 3
        ([10.0, 1.0, 5.0, 2.0], 90, 8.5),  # r = 2.7: 5 + 0.7 * 5, order does not matter
        ([30.0, 30.0, 45.0, 90.0], 90, 76.5),  # r = 2.7: 45 + 0.7 * 45
        ([10.0, 20.0], 90, 19.0),  # r = 0.9
        ([3.0, 1.0, 2.0], 0, 1.0),
        ([3.0, 1.0, 2.0], 100, 3.0),
        ([-4.0, 6.0], 50, 1.0),
    ],
)
def test_percentile_interpolates_linearly(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


@given(
    st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=40),
    st.floats(min_value=0, max_value=100),
)
def test_percentile_agrees_with_numpy(values: list[float], q: float) -> None:
    # numpy (installed with shapely) is an independent implementation of the same definition.
    assert percentile(values, q) == pytest.approx(float(numpy.percentile(values, q)), rel=1e-9, abs=1e-6)


@pytest.mark.parametrize(("values", "q"), [([], 50), ([1.0], -1), ([1.0], 101), ([float("nan")], 50)])
def test_percentile_refuses_what_it_cannot_answer(values: list[float], q: float) -> None:
    with pytest.raises(ValueError):
        percentile(values, q)


def metrics_of(group: dict[str, object]) -> dict[str, tuple[int, float | None, float | None]]:
    metrics = group["metrics"]
    assert isinstance(metrics, dict)
    return {name: (m["count"], m["p50"], m["p90"]) for name, m in metrics.items()}


def test_overall_percentiles_counts_and_sla() -> None:
    wire = summary_to_wire(summarise(SCENARIO, Targets()))
    assert wire["count"] == 5 and wire["group_by"] is None
    groups = wire["groups"]
    assert isinstance(groups, list) and [g["key"] for g in groups] == ["all"]
    # (count, p50, p90): sorted values and ranks worked by hand.
    overall = {
        "alarm_to_incident": (4, 3.5, 8.5),  # 1 2 5 10
        "incident_to_dispatch": (4, 37.5, 76.5),  # 20 30 45 90
        "dispatch_to_ack": (3, 10, 18),  # 10 10 20: r=1.8 -> 10 + 0.8 * 10
        "turnout": (3, 70, 86),  # 60 70 90
        "travel": (3, 240, 248),  # 140 240 250
        "on_scene": (3, 1800, 1800),  # 1200 1800 1800
        "total": (3, 375, 387),  # 300 375 390
    }
    assert metrics_of(groups[0]) == overall
    assert isinstance(wire["overall"], dict) and metrics_of(wire["overall"]) == overall
    assert wire["by_status"] == {
        "closed": 1,
        "contained": 1,
        "false_alarm": 1,
        "resolved": 1,
        "responding": 1,
    }
    assert wire["by_severity"] == {"Extreme": 1, "Minor": 2, "Moderate": 1, "Severe": 1}
    assert wire["sla"] == {
        # 30 90 45 20 against 60 s: incident 2 breaches; 3 of 4 is below the 90 % goal.
        "dispatch": {
            "metric": "incident_to_dispatch",
            "target_s": 60.0,
            "goal": 0.9,
            "measured": 4,
            "within": 3,
            "fraction": 0.75,
            "met": False,
            "breaches": [2],
        },
        # 70 90 60 against 80 s: incident 3.
        "turnout": {
            "metric": "turnout",
            "target_s": 80.0,
            "goal": 0.9,
            "measured": 3,
            "within": 2,
            "fraction": 0.6667,
            "met": False,
            "breaches": [3],
        },
        # 240 140 250 against 240 s: exactly 240 is within; incident 4 breaches.
        "travel": {
            "metric": "travel",
            "target_s": 240.0,
            "goal": 0.9,
            "measured": 3,
            "within": 2,
            "fraction": 0.6667,
            "met": False,
            "breaches": [4],
        },
    }


def test_grouped_by_kind() -> None:
    groups = summary_to_wire(summarise(SCENARIO, Targets(), "kind"))["groups"]
    assert isinstance(groups, list)
    assert [(g["key"], g["count"]) for g in groups] == [("fire", 3), ("flood", 2)]
    assert metrics_of(groups[0]) == {
        "alarm_to_incident": (3, 5, 9),  # 2 5 10
        "incident_to_dispatch": (3, 30, 78),  # 20 30 90
        "dispatch_to_ack": (2, 15, 19),  # 10 20: r=0.5 / 0.9
        "turnout": (2, 65, 69),  # 60 70
        "travel": (2, 245, 249),  # 240 250
        "on_scene": (2, 1500, 1740),  # 1200 1800
        "total": (2, 382.5, 388.5),  # 375 390
    }
    assert metrics_of(groups[1]) == {
        "alarm_to_incident": (1, 1, 1),
        "incident_to_dispatch": (1, 45, 45),
        "dispatch_to_ack": (1, 10, 10),
        "turnout": (1, 90, 90),
        "travel": (1, 140, 140),
        "on_scene": (1, 1800, 1800),
        "total": (1, 300, 300),
    }


def test_grouped_by_district_and_period() -> None:
    by_district = summary_to_wire(summarise(SCENARIO, Targets(), "district"))["groups"]
    assert isinstance(by_district, list)
    assert [(g["key"], g["count"]) for g in by_district] == [("D-1", 3), ("D-2", 2)]
    # D-1: incidents 1, 3, 4; D-2: 2 and 5 (only 2 was dispatched).
    assert metrics_of(by_district[0])["incident_to_dispatch"] == (3, 30, 42)  # 20 30 45
    assert metrics_of(by_district[1])["incident_to_dispatch"] == (1, 90, 90)
    assert metrics_of(by_district[1])["travel"] == (0, None, None)
    by_day = summary_to_wire(summarise(SCENARIO, Targets(), "period"))["groups"]
    assert isinstance(by_day, list)
    assert [(g["key"], g["count"]) for g in by_day] == [("2024-05-01", 2), ("2024-05-02", 3)]
    assert metrics_of(by_day[0])["alarm_to_incident"] == (2, 6, 9.2)  # 2 10
    assert metrics_of(by_day[1])["total"] == (2, 337.5, 367.5)  # 300 375


def test_period_is_the_utc_day() -> None:
    # 01:30 on the 2nd in Beijing is 17:30 on the 1st in UTC.
    opened = datetime(2024, 5, 2, 1, 30, tzinfo=timezone(timedelta(hours=8)))
    incident = IncidentTimes(1, "fire", None, "Minor", "new", opened, None)
    assert incident.period == "2024-05-01"
    assert [g.key for g in summarise([incident], Targets(), "period").groups] == ["2024-05-01"]


def test_incidents_without_a_district_come_last() -> None:
    a = IncidentTimes(1, "fire", None, "Minor", "new", at(1, "10:00:00"), None)
    b = IncidentTimes(2, "fire", "D-9", "Minor", "new", at(1, "10:00:00"), None)
    assert [g.key for g in summarise([a, b], Targets(), "district").groups] == ["D-9", None]


def test_configured_targets_move_the_breaches() -> None:
    sla = summarise(SCENARIO, Targets(dispatch_s=90, turnout_s=60, travel_s=250)).sla
    assert sla["dispatch"].breaches == () and sla["dispatch"].met is True
    assert sla["turnout"].breaches == (1, 3)
    assert sla["travel"].breaches == ()


def test_no_incidents() -> None:
    summary = summarise([], Targets(), "kind")
    assert summary.count == 0 and summary.groups == ()
    assert summary.overall.metrics["total"].p50 is None
    assert summary.sla["dispatch"].fraction is None and summary.sla["dispatch"].met is None


@pytest.mark.parametrize(
    "bad",
    [
        {"dispatch_s": 0},
        {"turnout_s": -1},
        {"travel_s": float("inf")},
        {"goal": 0},
        {"goal": 1.5},
    ],
)
def test_targets_validate_themselves(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Targets(**bad)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        IncidentTimes(1, "fire", None, "Minor", "new", datetime(2024, 5, 1), None)
    with pytest.raises(ValueError, match="timezone-aware"):
        DispatchTimes("U-1", at(1, "10:00:00"), on_scene_at=datetime(2024, 5, 1))


def test_unknown_grouping_is_refused() -> None:
    with pytest.raises(ValueError):
        summarise(SCENARIO, Targets(), "severity")  # type: ignore[arg-type]  # deliberately not a grouping


def test_csv_has_one_row_per_incident_with_every_interval() -> None:
    text = to_csv(reversed(SCENARIO))
    assert text.startswith(",".join(CSV_COLUMNS) + "\r\n")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["incident_id"] for r in rows] == ["1", "2", "3", "4", "5"]  # in order of opening
    for row in rows:
        expected = EXPECTED[int(row["incident_id"])]
        got = tuple(float(row[f"{m}_s"]) if row[f"{m}_s"] else None for m in METRICS)
        assert got == expected
    first = rows[0]
    assert first["kind"] == "fire" and first["district"] == "D-1" and first["status"] == "resolved"
    assert first["opened_at"] == "2024-05-01T10:00:10+00:00"
    assert first["first_alarm_at"] == "2024-05-01T10:00:00+00:00"
    assert first["dispatches"] == "2" and first["lead_unit"] == "U-2"
    assert first["total_s"] == "390.000"
    assert rows[2]["first_alarm_at"] == "" and rows[2]["lead_unit"] == "U-2"
    assert rows[4]["dispatches"] == "0" and rows[4]["lead_unit"] == ""


def test_csv_cells_cannot_become_spreadsheet_formulas() -> None:
    incident = IncidentTimes(1, "=cmd|' /C calc'!A0", "+D", "Minor", "new", at(1, "10:00:00"), None)
    row = next(csv.DictReader(io.StringIO(to_csv([incident]))))
    assert row["kind"] == "'=cmd|' /C calc'!A0" and row["district"] == "'+D"
