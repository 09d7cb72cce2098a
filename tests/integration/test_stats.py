"""GET /api/stats on a scripted scenario in the real database, against a hand-computed table.

The scenario is the one of tests/unit/test_kpi.py, written as rows (times UTC):

    label kind  district sev.     status      first alarm  opened             dispatches
    A     fire  D-1      Severe   resolved    05-01 10:00:00 05-01 10:00:10   U-1 declined; U-2 arrives
    B     fire  D-2      Moderate responding  05-01 11:59:58 05-01 12:00:00   U-3 never acknowledged
    C     flood D-1      Minor    contained   (none)         05-02 08:00:00   U-1, then U-2 arrives first
    D     fire  D-1      Extreme  closed      05-02 08:59:55 05-02 09:00:00   U-2 cancelled; U-1 arrives
    E     flood D-2      Minor    false_alarm 05-02 09:59:59 05-02 10:00:00   none

plus two fire incidents just outside ``from=2024-05-01&to=2024-05-02`` (the
last second of April, and midnight of May 3rd) that must not be counted.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
from shapely.geometry import MultiPolygon, Point, box

from command import accounts
from dispatch.kpi import METRICS
from tests.integration.helpers import PASSWORD, running_server, seed_minimal, settings_for

N = None
# alarm_to_incident, incident_to_dispatch, dispatch_to_ack, turnout, travel, on_scene, total
EXPECTED: dict[str, tuple[float | None, ...]] = {
    "A": (10, 30, 20, 70, 240, 1800, 390),
    "B": (2, 90, N, N, N, N, N),
    "C": (N, 45, 10, 90, 140, 1800, 300),
    "D": (5, 20, 10, 60, 250, 1200, 375),
    "E": (1, N, N, N, N, N, N),
}


def at(day: int, hhmmss: str, month: int = 5) -> datetime:
    h, m, s = map(int, hhmmss.split(":"))
    return datetime(2024, month, day, h, m, s, tzinfo=UTC)


async def _incident(
    conn: asyncpg.Connection,
    kind: str,
    district: str,
    severity: str,
    status: str,
    opened_at: datetime,
    alarms: tuple[datetime, ...] = (),
) -> int:
    category = {"fire": "accident", "flood": "natural_disaster"}[kind]
    incident_id: int = await conn.fetchval(
        """
        INSERT INTO incidents (kind, category, severity, status, district_id, location, title,
                               opened_at, updated_at, alarm_count)
        VALUES ($1, $2, $3, $4, $5, $6, 'scripted', $7, $7, $8) RETURNING id
        """,
        kind,
        category,
        severity,
        status,
        district,
        Point(120.15, 30.27),
        opened_at,
        len(alarms),
    )
    for n, time in enumerate(alarms):
        await conn.execute(
            """
            INSERT INTO alarms (sensor_id, alarm_id, kind, severity, time, received_at, location,
                                incident_id)
            VALUES ('S-1', $1, $2, $3, $4, $4, $5, $6)
            """,
            f"{incident_id}-{n}",
            kind,
            severity,
            time,
            Point(120.15, 30.27),
            incident_id,
        )
    return incident_id


async def _dispatch(
    conn: asyncpg.Connection, incident_id: int, unit_id: str, status: str, created_at: datetime, **stamps: Any
) -> None:
    """One dispatch row; ``stamps`` are its state timestamps (and overdue_at, reason)."""
    columns = ["incident_id", "unit_id", "status", "created_by", "created_at", "ack_deadline"]
    columns += ["order_doc", "updated_at", *stamps]
    values = [incident_id, unit_id, status, "commander", created_at, created_at + timedelta(seconds=60)]
    values += [{}, max([created_at, *(v for v in stamps.values() if isinstance(v, datetime))])]
    values += list(stamps.values())
    placeholders = ", ".join(f"${n}" for n in range(1, len(values) + 1))
    await conn.execute(f"INSERT INTO dispatches ({', '.join(columns)}) VALUES ({placeholders})", *values)


async def scenario(conn: asyncpg.Connection) -> dict[str, int]:
    """Insert the scenario; returns label -> incident id."""
    await conn.execute(
        "INSERT INTO districts (id, name, geom) VALUES ('D-2', 'Second district', $1)",
        MultiPolygon([box(120.3, 30.0, 120.6, 30.5)]),
    )
    await conn.execute(
        """
        INSERT INTO units (id, callsign, type, capabilities, district_id) VALUES
            ('U-2', 'Engine 2', 'fire_engine', '{fire_suppression}', 'D-1'),
            ('U-3', 'Engine 3', 'fire_engine', '{fire_suppression}', 'D-2')
        """
    )
    incidents = [
        # label, kind, district, severity, status, opened_at, alarm times
        ("A", "fire", "D-1", "Severe", "resolved", at(1, "10:00:10"), (at(1, "10:00:05"), at(1, "10:00:00"))),
        ("B", "fire", "D-2", "Moderate", "responding", at(1, "12:00:00"), (at(1, "11:59:58"),)),
        ("C", "flood", "D-1", "Minor", "contained", at(2, "08:00:00"), ()),
        ("D", "fire", "D-1", "Extreme", "closed", at(2, "09:00:00"), (at(2, "08:59:55"),)),
        ("E", "flood", "D-2", "Minor", "false_alarm", at(2, "10:00:00"), (at(2, "09:59:59"),)),
        ("before", "fire", "D-1", "Minor", "closed", at(30, "23:59:59", month=4), ()),
        ("after", "fire", "D-1", "Minor", "new", at(3, "00:00:00"), ()),
    ]
    ids = {
        label: await _incident(conn, kind, district, severity, status, opened_at, alarms)
        for label, kind, district, severity, status, opened_at, alarms in incidents
    }
    a, b, c, d = ids["A"], ids["B"], ids["C"], ids["D"]
    await _dispatch(
        conn, a, "U-1", "declined", at(1, "10:00:40"), declined_at=at(1, "10:00:50"), reason="busy"
    )
    await _dispatch(
        conn, a, "U-2", "cleared", at(1, "10:01:00"), acknowledged_at=at(1, "10:01:20"),
        en_route_at=at(1, "10:02:30"), on_scene_at=at(1, "10:06:30"), cleared_at=at(1, "10:36:30"),
    )  # fmt: skip
    # Already marked overdue, so no sweep of the running server touches it.
    await _dispatch(conn, b, "U-3", "dispatched", at(1, "12:01:30"), overdue_at=at(1, "12:02:30"))
    await _dispatch(
        conn, c, "U-1", "cleared", at(2, "08:00:45"), acknowledged_at=at(2, "08:01:00"),
        en_route_at=at(2, "08:02:40"), on_scene_at=at(2, "08:07:00"), cleared_at=at(2, "08:17:00"),
    )  # fmt: skip
    await _dispatch(
        conn, c, "U-2", "cleared", at(2, "08:01:00"), acknowledged_at=at(2, "08:01:10"),
        en_route_at=at(2, "08:02:40"), on_scene_at=at(2, "08:05:00"), cleared_at=at(2, "08:35:00"),
    )  # fmt: skip
    await _dispatch(conn, d, "U-2", "cancelled", at(2, "09:00:20"), cancelled_at=at(2, "09:00:30"))
    await _dispatch(
        conn, d, "U-1", "cleared", at(2, "09:00:50"), acknowledged_at=at(2, "09:01:00"),
        en_route_at=at(2, "09:02:00"), on_scene_at=at(2, "09:06:10"), cleared_at=at(2, "09:26:10"),
    )  # fmt: skip
    await _dispatch(
        conn, ids["before"], "U-1", "cleared", at(30, "23:59:59", month=4), cleared_at=at(1, "00:30:00")
    )
    return ids


async def _district_viewer(conn: asyncpg.Connection) -> str:
    await accounts.add_user(conn, username="viewer-d2", password=PASSWORD, role="viewer", districts=["D-2"])
    session = await accounts.login(conn, "viewer-d2", PASSWORD, datetime.now(UTC), timedelta(hours=1))
    assert session is not None
    return session.token


def metrics_of(group: dict[str, Any]) -> dict[str, tuple[int, float | None, float | None]]:
    return {name: (m["count"], m["p50"], m["p90"]) for name, m in group["metrics"].items()}


PERIOD = "from=2024-05-01&to=2024-05-02"


async def test_stats_match_the_hand_computed_table(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection
) -> None:
    tokens = await seed_minimal(database_url)
    ids = await scenario(conn)
    tokens["viewer-d2"] = await _district_viewer(conn)
    settings = settings_for(database_url, mqtt_url)
    base = f"http://{settings.http_host}:{settings.http_port}/api/stats"

    async def get(token: str, query: str) -> tuple[int, dict[str, str], str]:
        async with http.get(f"{base}?{query}", headers={"Authorization": f"Bearer {token}"}) as r:
            return r.status, dict(r.headers), await r.text()

    async with running_server(settings), aiohttp.ClientSession() as http:
        status, _, text = await get(tokens["commander"], PERIOD)
        assert status == 200, text
        by_kind = json.loads(text)
        status, _, text = await get(tokens["commander"], f"{PERIOD}&group=district")
        assert status == 200, text
        by_district = json.loads(text)
        status, headers, csv_text = await get(tokens["commander"], f"{PERIOD}&format=csv")
        assert status == 200, csv_text
        status, _, text = await get(tokens["viewer-d2"], f"{PERIOD}&group=period")
        assert status == 200, text
        scoped = json.loads(text)
        status, _, text = await get(tokens["viewer"], "group=kind")  # the last 30 days
        assert status == 200, text
        recent = json.loads(text)
        status, _, text = await get(tokens["field"], PERIOD)
        assert status == 403 and json.loads(text)["error"]["code"] == "forbidden"
        for bad in ("group=severity", "format=xml", "from=yesterday", "from=2024-05-02&to=2024-05-01"):
            status, _, text = await get(tokens["commander"], bad)
            assert status == 400 and json.loads(text)["error"]["code"] == "bad_request", (bad, text)
        async with http.get(base) as r:
            assert r.status == 401

    # The period: [May 1st 00:00, May 3rd 00:00) UTC, so neither neighbour counts.
    assert by_kind["from"] == "2024-05-01T00:00:00+00:00" and by_kind["to"] == "2024-05-03T00:00:00+00:00"
    assert by_kind["targets"] == {"dispatch_s": 60, "turnout_s": 80, "travel_s": 240, "goal": 0.9}
    assert by_kind["count"] == 5 and by_kind["group_by"] == "kind"
    assert by_kind["by_status"] == {
        "closed": 1,
        "contained": 1,
        "false_alarm": 1,
        "resolved": 1,
        "responding": 1,
    }
    assert by_kind["by_severity"] == {"Extreme": 1, "Minor": 2, "Moderate": 1, "Severe": 1}
    # (count, p50, p90), from the sorted values, worked by hand.
    assert metrics_of(by_kind["overall"]) == {
        "alarm_to_incident": (4, 3.5, 8.5),  # 1 2 5 10
        "incident_to_dispatch": (4, 37.5, 76.5),  # 20 30 45 90
        "dispatch_to_ack": (3, 10, 18),  # 10 10 20
        "turnout": (3, 70, 86),  # 60 70 90
        "travel": (3, 240, 248),  # 140 240 250
        "on_scene": (3, 1800, 1800),  # 1200 1800 1800
        "total": (3, 375, 387),  # 300 375 390
    }
    fire, flood = by_kind["groups"]
    assert (fire["key"], fire["count"], flood["key"], flood["count"]) == ("fire", 3, "flood", 2)
    assert metrics_of(fire) == {
        "alarm_to_incident": (3, 5, 9),  # 2 5 10
        "incident_to_dispatch": (3, 30, 78),  # 20 30 90
        "dispatch_to_ack": (2, 15, 19),  # 10 20
        "turnout": (2, 65, 69),  # 60 70
        "travel": (2, 245, 249),  # 240 250
        "on_scene": (2, 1500, 1740),  # 1200 1800
        "total": (2, 382.5, 388.5),  # 375 390
    }
    assert metrics_of(flood) == {
        "alarm_to_incident": (1, 1, 1),
        "incident_to_dispatch": (1, 45, 45),
        "dispatch_to_ack": (1, 10, 10),
        "turnout": (1, 90, 90),
        "travel": (1, 140, 140),
        "on_scene": (1, 1800, 1800),
        "total": (1, 300, 300),
    }
    sla = by_kind["sla"]
    assert (sla["dispatch"]["within"], sla["dispatch"]["measured"], sla["dispatch"]["met"]) == (3, 4, False)
    assert sla["dispatch"]["fraction"] == 0.75 and sla["dispatch"]["breaches"] == [ids["B"]]
    assert sla["turnout"]["breaches"] == [ids["C"]] and sla["turnout"]["fraction"] == 0.6667
    assert sla["travel"]["breaches"] == [ids["D"]]  # A's 240 s is exactly the target: within

    d1, d2 = by_district["groups"]
    assert (d1["key"], d1["count"], d2["key"], d2["count"]) == ("D-1", 3, "D-2", 2)
    assert metrics_of(d1)["incident_to_dispatch"] == (3, 30, 42)  # 20 30 45
    assert metrics_of(d1)["total"] == (3, 375, 387)  # 300 375 390
    assert metrics_of(d2)["alarm_to_incident"] == (2, 1.5, 1.9)  # 1 2
    assert metrics_of(d2)["travel"] == (0, None, None)

    # A viewer bound to D-2 sees B and E only, here by day.
    assert scoped["count"] == 2 and scoped["by_status"] == {"false_alarm": 1, "responding": 1}
    assert [(g["key"], g["count"]) for g in scoped["groups"]] == [("2024-05-01", 1), ("2024-05-02", 1)]
    assert scoped["sla"]["dispatch"]["breaches"] == [ids["B"]]
    # The scenario lies in 2024: the default period (the last 30 days) holds none of it.
    assert recent["count"] == 0 and recent["groups"] == []

    assert headers["Content-Type"] == "text/csv; charset=utf-8"
    assert headers["Content-Disposition"] == (
        'attachment; filename="kpis-20240501T000000Z-20240503T000000Z.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    label_of = {v: k for k, v in ids.items()}
    assert [label_of[int(r["incident_id"])] for r in rows] == ["A", "B", "C", "D", "E"]
    for row in rows:
        got = tuple(float(row[f"{m}_s"]) if row[f"{m}_s"] else None for m in METRICS)
        assert got == EXPECTED[label_of[int(row["incident_id"])]], row
    assert [r["lead_unit"] for r in rows] == ["U-2", "U-3", "U-2", "U-1", ""]
    assert [r["dispatches"] for r in rows] == ["2", "1", "2", "2", "0"]
    assert rows[0]["first_alarm_at"] == "2024-05-01T10:00:00+00:00" and rows[2]["first_alarm_at"] == ""
