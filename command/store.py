"""The ingest transaction: alarms, incidents, positions, dead letters and their events.

Everything one batch of MQTT messages changes is written in one transaction,
together with the outbox rows that tell every console about it. Only after
that commits does the ingest acknowledge the messages (command/ingest.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from shapely.geometry import Point

from command.cap_store import apply_alert
from command.correlation import Candidate, Group, Located, Rules, correlate, lock_keys
from command.dispatch_store import field_report
from command.incidents import ENDED, AlarmRef, Incident, to_wire
from command.outbox import NewEvent, append_events
from command.rows import INCIDENT_COLUMNS, UNIT_COLUMNS, incident_from_row, unit_wire
from dispatch.progress import ACTIVE, InvalidTransition
from sensors.alarms import SEVERITIES, Alarm, Position, Rejected, StatusReport
from sensors.cap import CapAlert

# Dead-letter payloads are evidence, not storage: keep enough to diagnose.
DEAD_LETTER_PAYLOAD_MAX = 4096


@dataclass(frozen=True, slots=True)
class Raw:
    """Where a parsed item came from, kept so it can still be dead-lettered."""

    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class DeadLetter:
    source: str
    topic: str
    payload: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class BatchResult:
    alarms_stored: int = 0
    alarms_duplicate: int = 0
    incidents_opened: int = 0
    dead_letters: int = 0
    events: int = 0
    last_seq: int | None = None
    alerts_opened: int = 0
    cap_dead_letters: int = 0


async def insert_dead_letters(conn: asyncpg.Connection, letters: Sequence[DeadLetter]) -> None:
    if not letters:
        return
    await conn.executemany(
        """
        INSERT INTO dead_letters (source, topic, payload, payload_size, reason)
        VALUES ($1, $2, $3, $4, $5)
        """,
        [
            (d.source, d.topic[:512], d.payload[:DEAD_LETTER_PAYLOAD_MAX], len(d.payload), d.reason[:1000])
            for d in letters
        ],
    )


async def _store_alarms(
    conn: asyncpg.Connection,
    alarms: Sequence[tuple[Alarm, Raw]],
    now: datetime,
    dead: list[DeadLetter],
    events: list[NewEvent],
    rules: Rules,
) -> tuple[int, int, int]:
    """Insert alarms, correlate the new ones, write incident events.

    Returns:
        (stored, duplicates, incidents opened).
    """
    sensor_rows = await conn.fetch(
        "SELECT id, name, location FROM sensors WHERE id = ANY($1::text[])",
        list({a.sensor_id for a, _ in alarms}),
    )
    sensors = {r["id"]: r for r in sensor_rows}
    placed: dict[tuple[str, str], Located] = {}
    for alarm, raw in alarms:
        sensor = sensors.get(alarm.sensor_id)
        if sensor is None:
            dead.append(
                DeadLetter("mqtt", raw.topic, raw.payload, f"unregistered sensor {alarm.sensor_id!r}")
            )
            continue
        if alarm.lat is not None and alarm.lon is not None:
            lat, lon = alarm.lat, alarm.lon
        elif sensor["location"] is not None:
            lat, lon = sensor["location"].y, sensor["location"].x
        else:
            dead.append(
                DeadLetter(
                    "mqtt",
                    raw.topic,
                    raw.payload,
                    "no lat/lon in the alarm and the sensor has no registered location",
                )
            )
            continue
        # A redelivery inside one batch: keep the first copy.
        placed.setdefault((alarm.sensor_id, alarm.id), Located(alarm, lat, lon, sensor["name"]))
    if not placed:
        return 0, 0, 0

    candidates = list(placed.values())
    inserted = await conn.fetch(
        """
        INSERT INTO alarms (sensor_id, alarm_id, kind, severity, time, received_at, location,
                            value, unit, message)
        SELECT s, a, k, sev, t, $11, ST_SetSRID(ST_MakePoint(lon, lat), 4326), v, u, m
        FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
                    $6::float8[], $7::float8[], $8::float8[], $9::text[], $10::text[])
             AS x(s, a, k, sev, t, lat, lon, v, u, m)
        ON CONFLICT (sensor_id, alarm_id) DO NOTHING
        RETURNING id, sensor_id, alarm_id
        """,
        [c.alarm.sensor_id for c in candidates],
        [c.alarm.id for c in candidates],
        [c.alarm.kind for c in candidates],
        [c.alarm.severity for c in candidates],
        [c.alarm.time for c in candidates],
        [c.lat for c in candidates],
        [c.lon for c in candidates],
        [c.alarm.value for c in candidates],
        [c.alarm.unit for c in candidates],
        [c.alarm.message for c in candidates],
        now,
    )
    row_ids = {(r["sensor_id"], r["alarm_id"]): r["id"] for r in inserted}
    fresh = [c for c in candidates if (c.alarm.sensor_id, c.alarm.id) in row_ids]
    duplicates = len(candidates) - len(fresh)
    if not fresh:
        return 0, duplicates, 0

    await _heard_from(conn, sorted({c.alarm.sensor_id for c in fresh}), now, events)
    # Serialise correlation per spatial cell across transactions and
    # instances (see correlation.lock_keys); sorted so batches cannot deadlock.
    keys = lock_keys(fresh, rules)
    await conn.execute(
        """
        SELECT pg_advisory_xact_lock(hashtextextended(k, 0))
        FROM unnest($1::text[]) WITH ORDINALITY AS x(k, ord) ORDER BY ord
        """,
        keys,
    )
    nearby = await _candidates(conn, fresh, rules)
    opened = 0
    links: list[tuple[int, int]] = []  # (alarm row, incident)
    for group in correlate(fresh, nearby, rules):
        incident = await _apply_group(conn, group, now)
        links += [(row_ids[(c.alarm.sensor_id, c.alarm.id)], incident.id) for c in group.alarms]
        last = group.last.alarm
        name = "incident.updated" if group.incident_id is not None else "incident.opened"
        opened += group.incident_id is None
        events.append(
            NewEvent(
                name=name,
                data=to_wire(incident, AlarmRef(last.sensor_id, last.id, last.time)),
                incident_id=incident.id,
                district_id=incident.district,
            )
        )
    # One statement for the whole batch, not one per incident.
    await conn.execute(
        """
        UPDATE alarms AS a SET incident_id = x.incident
        FROM unnest($1::bigint[], $2::bigint[]) AS x(id, incident)
        WHERE a.id = x.id
        """,
        [alarm for alarm, _ in links],
        [incident for _, incident in links],
    )
    return len(fresh), duplicates, opened


async def _candidates(conn: asyncpg.Connection, fresh: Sequence[Located], rules: Rules) -> list[Candidate]:
    """Open sensor incidents that any alarm of the batch could join.

    A generous prefilter in degrees (using the GiST index on ``extent``);
    correlation then measures exact distances and checks the time window.
    """
    families = [rules.family_of(c.alarm.kind) for c in fresh]
    rows = await conn.fetch(
        """
        SELECT DISTINCT i.id, i.family, i.extent, i.last_alarm_at
        FROM unnest($1::text[], $2::float8[], $3::float8[], $4::float8[], $5::timestamptz[])
             AS a(family, lon, lat, radius_deg, earliest)
        JOIN incidents i
          ON i.family = a.family
         AND i.status <> ALL($6::text[])
         AND i.last_alarm_at >= a.earliest
         AND ST_DWithin(i.extent, ST_SetSRID(ST_MakePoint(a.lon, a.lat), 4326), a.radius_deg)
        """,
        [f.name for f in families],
        [c.lon for c in fresh],
        [c.lat for c in fresh],
        [f.cell_deg for f in families],
        [c.alarm.time - f.window for c, f in zip(fresh, families, strict=True)],
        sorted(ENDED),
    )
    return [Candidate(r["id"], r["family"], r["extent"], r["last_alarm_at"]) for r in rows]


# Severity ranks for SQL: array_position over this array grows with severity.
_SEVERITY_ORDER = list(reversed(SEVERITIES))


async def _apply_group(conn: asyncpg.Connection, group: Group, now: datetime) -> Incident:
    """Open or extend an incident.

    An existing incident is extended in SQL, from its current row, so two
    transactions adding alarms to one incident from far-apart cells (which
    do not share a lock) both land: severity only rises, counts add, the
    extent is the hull of both.
    """
    last_time = group.last.alarm.time
    sensors = sorted({c.alarm.sensor_id for c in group.alarms})
    if group.incident_id is None:
        point = Point(group.lon, group.lat)
        extent = group.points.convex_hull
        row = await conn.fetchrow(
            f"""
            WITH opened AS (
                INSERT INTO incidents AS i (source, kind, category, severity, status, location, area,
                                            district_id, title, family, extent, last_alarm_at,
                                            alarm_count, sensor_count, opened_at, updated_at)
                VALUES ('sensor', $1, $2, $3, 'new', ST_Centroid($9::geometry),
                        CASE WHEN GeometryType($9::geometry) = 'POLYGON' THEN $9::geometry END,
                        (SELECT d.id FROM districts d WHERE ST_Intersects(d.geom, $4) LIMIT 1),
                        $5, $6, $9, $7, $8, cardinality($10::text[]), $11, $11)
                RETURNING i.*
            ), members AS (
                INSERT INTO incident_sensors (incident_id, sensor_id)
                SELECT opened.id, s FROM opened, unnest($10::text[]) AS s
            )
            SELECT {INCIDENT_COLUMNS} FROM opened i
            """,
            group.kind,
            group.category,
            group.severity,
            point,
            group.title,
            group.family,
            last_time,
            len(group.alarms),
            extent,
            sensors,
            now,
        )
    else:
        row = await conn.fetchrow(
            f"""
            WITH added AS (
                INSERT INTO incident_sensors (incident_id, sensor_id)
                SELECT $1, s FROM unnest($5::text[]) AS s
                ON CONFLICT DO NOTHING
                RETURNING 1
            )
            UPDATE incidents AS i
            SET severity = CASE
                    WHEN array_position($7::text[], $2) > array_position($7::text[], i.severity)
                    THEN $2 ELSE i.severity END,
                alarm_count = i.alarm_count + $3,
                sensor_count = i.sensor_count + (SELECT count(*) FROM added),
                -- From i.extent, not a value read earlier: under a concurrent
                -- update PostgreSQL re-evaluates SET on the newest row version.
                extent = ST_ConvexHull(ST_Collect(i.extent, $6::geometry)),
                location = ST_Centroid(ST_ConvexHull(ST_Collect(i.extent, $6::geometry))),
                area = CASE WHEN GeometryType(ST_ConvexHull(ST_Collect(i.extent, $6::geometry))) = 'POLYGON'
                            THEN ST_ConvexHull(ST_Collect(i.extent, $6::geometry)) ELSE i.area END,
                last_alarm_at = greatest(i.last_alarm_at, $4),
                updated_at = $8
            WHERE i.id = $1
            RETURNING {INCIDENT_COLUMNS}
            """,
            group.incident_id,
            group.severity,
            len(group.alarms),
            last_time,
            sensors,
            group.points,
            _SEVERITY_ORDER,
            now,
        )
    assert row is not None  # candidates are open and nothing deletes incidents
    return incident_from_row(row)


async def _heard_from(
    conn: asyncpg.Connection, sensor_ids: list[str], now: datetime, events: list[NewEvent]
) -> None:
    """Any message from a sensor shows it is alive: note when, and say so if it was not.

    ``last_seen`` only needs to be as fresh as the liveness check can tell
    (heartbeats are minutes apart), so a sensor already online and seen in the
    last few seconds is not rewritten: in a storm that is most of them, and
    it spares a locked row update per alarm.
    """
    rows = await conn.fetch(
        """
        WITH old AS (
            SELECT id, state FROM sensors
            WHERE id = ANY($1::text[])
              AND (state <> 'online' OR last_seen IS NULL
                   OR last_seen < $2::timestamptz - interval '5 seconds')
            ORDER BY id FOR UPDATE
        )
        UPDATE sensors AS s SET last_seen = $2, state = 'online'
        FROM old WHERE s.id = old.id
        RETURNING s.id, s.district_id, old.state AS previous
        """,
        sensor_ids,
        now,
    )
    for row in sorted(rows, key=lambda r: str(r["id"])):
        if row["previous"] != "online":
            events.append(
                NewEvent(
                    "sensor.online",
                    {"id": row["id"], "state": "online", "time": now.isoformat()},
                    district_id=row["district_id"],
                )
            )


# How long past its heartbeat interval a sensor may stay silent before we
# call it offline: one missed heartbeat is jitter, not an outage.
HEARTBEAT_GRACE = 1.5


async def mark_silent_sensors(conn: asyncpg.Connection, now: datetime) -> int:
    """Mark online sensors silent beyond their heartbeat interval offline, once.

    Safe with several instances: the UPDATE's row locks make each sensor's
    transition, and so its ``sensor.offline`` event, happen in one of them.

    Returns:
        how many sensors went offline.
    """
    async with conn.transaction():
        rows = await conn.fetch(
            """
            UPDATE sensors SET state = 'offline'
            WHERE state = 'online'
              AND last_seen < $1::timestamptz - make_interval(secs => heartbeat_s * $2::float8)
            RETURNING id, district_id, last_seen
            """,
            now,
            HEARTBEAT_GRACE,
        )
        events = [
            NewEvent(
                "sensor.offline",
                {
                    "id": r["id"],
                    "state": "offline",
                    "time": now.isoformat(),
                    "last_seen": r["last_seen"].isoformat(),
                    "reason": "silent",
                },
                district_id=r["district_id"],
            )
            for r in sorted(rows, key=lambda r: str(r["id"]))
        ]
        await append_events(conn, events)
    return len(rows)


async def _store_positions(
    conn: asyncpg.Connection,
    positions: Sequence[tuple[Position, Raw]],
    dead: list[DeadLetter],
    events: list[NewEvent],
) -> None:
    latest: dict[str, tuple[Position, Raw]] = {}
    for position, raw in positions:
        kept = latest.get(position.unit_id)
        if kept is None or kept[0].time <= position.time:
            latest[position.unit_id] = (position, raw)
    known = {
        r["id"] for r in await conn.fetch("SELECT id FROM units WHERE id = ANY($1::text[])", list(latest))
    }
    # Every report from an unknown unit is dead-lettered, not just the latest.
    for position, raw in positions:
        if position.unit_id not in known:
            dead.append(DeadLetter("mqtt", raw.topic, raw.payload, f"unknown unit {position.unit_id!r}"))
    for unit_id in latest.keys() - known:
        del latest[unit_id]
    if not latest:
        return
    reports = [p for p, _ in latest.values()]
    # A report older than the stored one (reordered QoS 0) is ignored, not an error.
    rows = await conn.fetch(
        f"""
        UPDATE units AS u
        SET position = ST_SetSRID(ST_MakePoint(p.lon, p.lat), 4326), position_at = p.t,
            speed = p.speed, heading = p.heading, updated_at = now()
        FROM unnest($1::text[], $2::float8[], $3::float8[], $4::timestamptz[],
                    $5::float8[], $6::float8[]) AS p(id, lat, lon, t, speed, heading)
        WHERE u.id = p.id AND (u.position_at IS NULL OR u.position_at <= p.t)
        RETURNING {UNIT_COLUMNS}
        """,
        [p.unit_id for p in reports],
        [p.lat for p in reports],
        [p.lon for p in reports],
        [p.time for p in reports],
        [p.speed for p in reports],
        [p.heading for p in reports],
    )
    for row in sorted(rows, key=lambda r: str(r["id"])):
        events.append(
            NewEvent("unit.moved", unit_wire(row), unit_id=row["id"], district_id=row["district_id"])
        )


async def _store_states(
    conn: asyncpg.Connection,
    states: Sequence[tuple[str, str, Raw]],
    now: datetime,
    dead: list[DeadLetter],
    events: list[NewEvent],
) -> None:
    latest = {sensor_id: (state, raw) for sensor_id, state, raw in states}
    for sensor_id, (state, _raw) in sorted(latest.items()):
        row = await conn.fetchrow(
            """
            WITH old AS (SELECT state FROM sensors WHERE id = $1 FOR UPDATE)
            UPDATE sensors AS s SET last_seen = $3, state = $2
            FROM old WHERE s.id = $1
            RETURNING s.district_id, old.state AS previous
            """,
            sensor_id,
            state,
            now,
        )
        if row is None:
            dead.extend(
                DeadLetter("mqtt", r.topic, r.payload, f"unregistered sensor {sensor_id!r}")
                for s, _, r in states
                if s == sensor_id
            )
        elif row["previous"] != state:
            events.append(
                NewEvent(
                    f"sensor.{state}",
                    {"id": sensor_id, "state": state, "time": now.isoformat()},
                    district_id=row["district_id"],
                )
            )


async def _store_statuses(
    conn: asyncpg.Connection,
    statuses: Sequence[tuple[StatusReport, Raw]],
    dead: list[DeadLetter],
    events: list[NewEvent],
) -> None:
    progress = sorted(
        ((r, raw) for r, raw in statuses if r.dispatch_id is not None), key=lambda item: item[0].time
    )
    for report, raw in progress:
        assert report.dispatch_id is not None
        try:
            events.extend(
                await field_report(
                    conn, report.unit_id, report.dispatch_id, report.status, report.reason, report.time
                )
            )
        except InvalidTransition as exc:
            dead.append(DeadLetter("mqtt", raw.topic, raw.payload, str(exc)))
    latest: dict[str, tuple[StatusReport, Raw]] = {}
    for report, raw in statuses:
        if report.dispatch_id is not None:
            continue
        kept = latest.get(report.unit_id)
        if kept is None or kept[0].time <= report.time:
            latest[report.unit_id] = (report, raw)
    for unit_id, (report, _raw) in sorted(latest.items()):
        # An older report than the one stored (reordered delivery) changes nothing.
        # A unit on a dispatch reports progress on it (with its dispatch_id);
        # a bare status would free a unit that is still working.
        row = await conn.fetchrow(
            f"""
            UPDATE units AS u SET status = $2, status_at = $3, updated_at = now()
            WHERE u.id = $1 AND (u.status_at IS NULL OR u.status_at <= $3)
              AND NOT EXISTS (SELECT 1 FROM dispatches d
                              WHERE d.unit_id = u.id AND d.status = ANY($4::text[]))
            RETURNING {UNIT_COLUMNS}
            """,
            unit_id,
            report.status,
            report.time,
            sorted(ACTIVE),
        )
        if row is not None:
            events.append(
                NewEvent("unit.status", unit_wire(row), unit_id=unit_id, district_id=row["district_id"])
            )
            continue
        busy = await conn.fetchval(
            "SELECT d.id FROM dispatches d WHERE d.unit_id = $1 AND d.status = ANY($2::text[])",
            unit_id,
            sorted(ACTIVE),
        )
        if busy is not None:
            reason = f"unit {unit_id} is on dispatch {busy}: report progress on it with its dispatch_id"
        elif not await conn.fetchval("SELECT true FROM units WHERE id = $1", unit_id):
            reason = f"unknown unit {unit_id!r}"
        else:
            continue  # older than the status stored: changes nothing
        dead.extend(
            DeadLetter("mqtt", r.topic, r.payload, reason)
            for s, r in statuses
            if s.unit_id == unit_id and s.dispatch_id is None
        )


async def _store_alert(
    conn: asyncpg.Connection,
    source: str,
    alert: CapAlert,
    raw: Raw,
    now: datetime,
    dead: list[DeadLetter],
    events: list[NewEvent],
) -> int:
    """Apply one CAP message in a savepoint, so a bad one is dead-lettered alone.

    Returns:
        1 when it opened an incident, else 0.
    """
    try:
        async with conn.transaction():
            outcome = await apply_alert(conn, source, alert, now)
    except Rejected as exc:
        dead.append(DeadLetter("cap", raw.topic, raw.payload, f"CAP: {exc.reason}"))
        return 0
    if isinstance(outcome, str):
        return 0
    opened = 0
    for name, incident, ref in outcome:
        opened += name == "incident.opened"
        events.append(
            NewEvent(
                name,
                to_wire(incident, last_alert=ref),
                incident_id=incident.id,
                district_id=incident.district,
            )
        )
    return opened


async def store_batch(
    conn: asyncpg.Connection,
    *,
    alarms: Sequence[tuple[Alarm, Raw]] = (),
    positions: Sequence[tuple[Position, Raw]] = (),
    states: Sequence[tuple[str, str, Raw]] = (),
    statuses: Sequence[tuple[StatusReport, Raw]] = (),
    alerts: Sequence[tuple[str, CapAlert, Raw]] = (),
    rejected: Sequence[DeadLetter] = (),
    now: datetime,
    rules: Rules | None = None,
) -> BatchResult:
    """Store one batch in one transaction.

    Args:
        conn: a connection with our codecs, not in a transaction.
        alarms: parsed alarms with their raw message.
        positions: parsed unit positions.
        states: (sensor id, 'online'|'offline', raw) reports.
        rejected: messages that failed parsing, to dead-letter.
        now: the ingest edge's clock.
        rules: the correlation rules.
    Returns:
        counts, and the last outbox seq written.
    Raises:
        asyncpg.PostgresError, OSError: nothing was committed; retry or split.
    """
    dead = list(rejected)
    events: list[NewEvent] = []
    stored = duplicates = opened = 0
    async with conn.transaction():
        if alarms:
            if rules is None:
                raise ValueError("storing alarms needs the correlation rules")
            stored, duplicates, opened = await _store_alarms(conn, alarms, now, dead, events, rules)
        if positions:
            await _store_positions(conn, positions, dead, events)
        if states:
            await _store_states(conn, states, now, dead, events)
        if statuses:
            await _store_statuses(conn, statuses, dead, events)
        alerts_opened = 0
        for source, alert, raw in alerts:
            alerts_opened += await _store_alert(conn, source, alert, raw, now, dead, events)
        await insert_dead_letters(conn, dead)
        last_seq = await append_events(conn, events)
    return BatchResult(
        stored,
        duplicates,
        opened,
        len(dead),
        len(events),
        last_seq,
        alerts_opened,
        sum(d.source == "cap" for d in dead),
    )
