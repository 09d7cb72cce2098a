"""The dispatch transactions: send units and supplies, report progress, call back.

Each function here is one transaction over the connection it is given, and
writes, in that transaction, everything the change implies: the unit's
status, the stock, the incident's status, its timeline, the order for the
unit (unit_outbox, published by command/delivery.py) and the console events
(the outbox). The state machines are pure (dispatch/progress.py,
command/incidents.py); the database backs every invariant with a constraint
(migrations/0003_dispatch.sql), so a bug here fails loudly instead of
dispatching a unit twice or overdrawing a depot.

Locks are always taken in the same order (incident, then units by id, then
stock by depot and item), so concurrent dispatches cannot deadlock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from shapely.geometry import Point

from command.errors import ApiError
from command.incidents import ENDED, to_wire
from command.outbox import NewEvent, append_events
from command.rows import INCIDENT_COLUMNS, UNIT_COLUMNS, incident_from_row, unit_wire
from command.tasks_store import TASK_COLUMNS, task_wire
from command.timeline import record
from dispatch import postgis
from dispatch.orders import DispatchRequest, Pickup, order_document
from dispatch.plans import Plans
from dispatch.progress import ACTIVE, InvalidTransition, Step, cancel_step, field_step
from dispatch.recommendation import IncidentPlace, destination, surroundings
from dispatch.tasks import PlannedTask, Site, plan_tasks

DISPATCH_COLUMNS = """
    d.id, d.incident_id, d.unit_id, d.capability, d.status, d.created_by, d.created_at,
    d.ack_deadline, d.eta_s, d.order_doc, d.overdue_at, d.acknowledged_at, d.en_route_at,
    d.on_scene_at, d.cleared_at, d.declined_at, d.cancelled_at, d.reason, d.updated_at
"""

_STAMPS = ("acknowledged_at", "en_route_at", "on_scene_at", "cleared_at", "declined_at", "cancelled_at")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def dispatch_wire(row: asyncpg.Record, supplies: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A dispatch row (DISPATCH_COLUMNS) as the API's and the feed's JSON object."""
    wire: dict[str, Any] = {
        "id": row["id"],
        "incident_id": row["incident_id"],
        "unit_id": row["unit_id"],
        "capability": row["capability"],
        "status": row["status"],
        "created_by": row["created_by"],
        "created_at": row["created_at"].isoformat(),
        "ack_deadline": row["ack_deadline"].isoformat(),
        "eta_s": round(row["eta_s"]) if row["eta_s"] is not None else None,
        "overdue_at": _iso(row["overdue_at"]),
        "reason": row["reason"],
        "order": row["order_doc"],
    }
    wire.update({stamp: _iso(row[stamp]) for stamp in _STAMPS})
    if supplies is not None:
        wire["supplies"] = supplies
    return wire


def _requisition_wire(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "dispatch_id": row["dispatch_id"],
        "depot_id": row["depot_id"],
        "item": row["item"],
        "quantity": int(row["quantity"]),
        "unit": row["unit"],
        "status": row["status"],
    }


async def _requisitions(conn: asyncpg.Connection, dispatch_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    rows = await conn.fetch(
        """
        SELECT id, dispatch_id, depot_id, item, quantity, unit, status
        FROM requisitions WHERE dispatch_id = ANY($1::bigint[]) ORDER BY id
        """,
        dispatch_ids,
    )
    by_dispatch: dict[int, list[dict[str, Any]]] = {d: [] for d in dispatch_ids}
    for row in rows:
        by_dispatch[row["dispatch_id"]].append(_requisition_wire(row))
    return by_dispatch


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a transaction decided: the response body and whether a unit has mail."""

    body: dict[str, Any]
    unit_mail: bool = False


async def incident_dispatches(conn: asyncpg.Connection, incident_id: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"SELECT {DISPATCH_COLUMNS} FROM dispatches d WHERE d.incident_id = $1 ORDER BY d.id", incident_id
    )
    supplies = await _requisitions(conn, [r["id"] for r in rows])
    return [dispatch_wire(r, supplies[r["id"]]) for r in rows]


async def unit_dispatches(
    conn: asyncpg.Connection, unit_id: str, *, active_only: bool
) -> list[dict[str, Any]]:
    """A unit's dispatches, newest first (what the field page shows)."""
    rows = await conn.fetch(
        f"""
        SELECT {DISPATCH_COLUMNS} FROM dispatches d
        WHERE d.unit_id = $1 AND (NOT $2 OR d.status = ANY($3::text[]))
        ORDER BY d.id DESC LIMIT 100
        """,
        unit_id,
        active_only,
        sorted(ACTIVE),
    )
    supplies = await _requisitions(conn, [r["id"] for r in rows])
    return [dispatch_wire(r, supplies[r["id"]]) for r in rows]


async def get_dispatch(conn: asyncpg.Connection, dispatch_id: int) -> dict[str, Any] | None:
    row = await conn.fetchrow(f"SELECT {DISPATCH_COLUMNS} FROM dispatches d WHERE d.id = $1", dispatch_id)
    if row is None:
        return None
    return dispatch_wire(row, (await _requisitions(conn, [dispatch_id]))[dispatch_id])


async def create_dispatches(
    conn: asyncpg.Connection,
    incident_id: int,
    request: DispatchRequest,
    *,
    actor: str,
    now: datetime,
    plans: Plans,
) -> Outcome:
    """Dispatch units (and supplies they collect) to an incident, all or nothing.

    Raises:
        ApiError: 404 for an unknown incident; 409 naming the unit that is not
            available, the stock that is short, or an incident that has ended.
    """
    async with conn.transaction():
        inc = await conn.fetchrow(
            f"SELECT {INCIDENT_COLUMNS} FROM incidents i WHERE i.id = $1 FOR UPDATE",
            incident_id,
        )
        if inc is None:
            raise ApiError(404, "not_found", "no such incident")
        if inc["status"] in ENDED:
            raise ApiError(
                409, "incident_ended", f"incident {incident_id} is {inc['status']}: reopen it first"
            )
        target = destination(inc["location"], inc["area"])
        if target is None:
            raise ApiError(409, "no_location", f"incident {incident_id} has no location to send units to")
        plan = plans.plan_for(inc["kind"], inc["severity"])

        units = []
        for order in sorted(request.units, key=lambda o: o.unit_id):
            row = await conn.fetchrow(
                f"""
                UPDATE units AS u SET status = 'dispatched', status_at = $2, updated_at = $2
                WHERE u.id = $1 AND u.status = 'available'
                RETURNING {UNIT_COLUMNS}
                """,
                order.unit_id,
                now,
            )
            if row is None:
                status = await conn.fetchval("SELECT status FROM units WHERE id = $1", order.unit_id)
                if status is None:
                    raise ApiError(409, "unknown_unit", f"there is no unit {order.unit_id}")
                raise ApiError(
                    409,
                    "unit_unavailable",
                    f"unit {order.unit_id} is not available: it is {status.replace('_', ' ')}",
                )
            units.append((order, row))

        positioned = [(order, row) for order, row in units if row["position"] is not None]
        times = await postgis.travel_times(
            conn,
            [row["position"] for _, row in positioned],
            target,
            closures=plans.road_closures(),
            exclude_incident=incident_id,
        )
        eta = {order.unit_id: t for (order, _), t in zip(positioned, times, strict=True)}

        taken = []
        for supply in sorted(request.supplies, key=lambda s: (s.depot_id, s.item)):
            row = await conn.fetchrow(
                """
                UPDATE stock SET quantity = quantity - $3::numeric
                WHERE depot_id = $1 AND item = $2 AND quantity >= $3::numeric
                RETURNING unit, (SELECT name FROM depots WHERE id = $1) AS depot_name,
                          (SELECT location FROM depots WHERE id = $1) AS location
                """,
                supply.depot_id,
                supply.item,
                supply.quantity,
            )
            if row is None:
                have = await conn.fetchrow(
                    "SELECT quantity, unit FROM stock WHERE depot_id = $1 AND item = $2",
                    supply.depot_id,
                    supply.item,
                )
                if have is None:
                    raise ApiError(409, "unknown_stock", f"depot {supply.depot_id} holds no {supply.item}")
                raise ApiError(
                    409,
                    "stock_short",
                    f"depot {supply.depot_id} has {int(have['quantity'])} {have['unit']} of {supply.item}, "
                    f"{supply.quantity} requested",
                )
            taken.append((supply, row))

        around = await surroundings(
            conn,
            IncidentPlace(incident_id, inc["kind"], inc["severity"], inc["location"], inc["area"]),
            plans,
        )
        incident_wire = to_wire(incident_from_row(inc))
        deadline = now + timedelta(seconds=plan.ack_deadline_s)
        events: list[NewEvent] = []
        dispatches = []
        created: list[tuple[asyncpg.Record, asyncpg.Record]] = []
        for order, unit in units:
            dispatch_id: int = await conn.fetchval(
                "SELECT nextval(pg_get_serial_sequence('dispatches', 'id'))"
            )
            pickups = []
            for supply, stock in taken:
                if supply.carrier != order.unit_id:
                    continue
                requisition_id = await conn.fetchval(
                    """
                    INSERT INTO requisitions
                        (incident_id, dispatch_id, depot_id, item, quantity, unit, requested_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id
                    """,
                    incident_id,
                    dispatch_id,
                    supply.depot_id,
                    supply.item,
                    supply.quantity,
                    stock["unit"],
                    now,
                )
                location = stock["location"]
                pickups.append(
                    Pickup(
                        requisition_id,
                        supply.depot_id,
                        stock["depot_name"],
                        location.y,
                        location.x,
                        supply.item,
                        supply.quantity,
                        stock["unit"],
                    )
                )
            doc = order_document(
                dispatch_id=dispatch_id,
                unit_id=order.unit_id,
                incident=incident_wire,
                destination=(target.y, target.x),
                eta_s=eta.get(order.unit_id),
                created_at=now,
                ack_deadline=deadline,
                hazards=around["hazards"],
                pickups=pickups,
            )
            row = await _insert_dispatch(
                conn,
                f"""
                INSERT INTO dispatches AS d (id, incident_id, unit_id, capability, created_by, created_at,
                                        ack_deadline, eta_s, order_doc, updated_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $6)
                RETURNING {DISPATCH_COLUMNS}
                """,
                dispatch_id,
                incident_id,
                order.unit_id,
                order.capability,
                actor,
                now,
                deadline,
                eta.get(order.unit_id),
                doc,
            )
            await _mail_unit(conn, order.unit_id, dispatch_id, doc, now)
            await record(
                conn,
                incident_id,
                now,
                actor,
                "dispatch",
                detail={"dispatch_id": dispatch_id, "unit_id": order.unit_id, "supplies": doc["supplies"]},
            )
            created.append((row, unit))

        supplies = await _requisitions(conn, [row["id"] for row, _ in created])
        for row, unit in created:
            wire = dispatch_wire(row, supplies[row["id"]])
            dispatches.append(wire)
            events.append(NewEvent("dispatch.created", wire, incident_id, row["unit_id"], inc["district_id"]))
            unit_data = unit_wire(unit) | {"dispatch_id": row["id"]}
            events.append(NewEvent("unit.status", unit_data, None, row["unit_id"], unit["district_id"]))

        if inc["status"] in ("new", "confirmed"):
            changed = await set_incident_status(conn, incident_id, "responding", now)
            incident_wire = changed
            await record(
                conn, incident_id, now, actor, "status", inc["status"], "responding", {"by": "dispatch"}
            )
            events.append(NewEvent("incident.updated", changed, incident_id, None, inc["district_id"]))

        sites = [Site(s["id"], s["kind"], s["name"]) for s in around["sites"]]
        tasks = await _insert_tasks(conn, incident_id, plan_tasks(plan, sites, now), actor, now)
        events.extend(NewEvent("task.created", t, incident_id, None, inc["district_id"]) for t in tasks)
        await append_events(conn, events)
    return Outcome({"dispatches": dispatches, "incident": incident_wire, "tasks": tasks}, unit_mail=True)


async def _mail_unit(
    conn: asyncpg.Connection, unit_id: str, dispatch_id: int, payload: dict[str, Any], now: datetime
) -> None:
    """Queue a message for units/{unit_id}/dispatch (sent by command/delivery.py after commit)."""
    await conn.execute(
        "INSERT INTO unit_outbox (unit_id, dispatch_id, payload, created_at) VALUES ($1, $2, $3, $4)",
        unit_id,
        dispatch_id,
        payload,
        now,
    )


async def _insert_dispatch(conn: asyncpg.Connection, sql: str, *args: Any) -> asyncpg.Record:
    """Insert a dispatch; the one-active-dispatch-per-unit index turns a unit
    that the code thought free (a bug, or a status written behind our back)
    into the same 409 as any unavailable unit, never a 500."""
    try:
        async with conn.transaction():
            row: asyncpg.Record = await conn.fetchrow(sql, *args)
    except asyncpg.UniqueViolationError:
        raise ApiError(409, "unit_unavailable", f"unit {args[2]} is already on another dispatch") from None
    return row


async def set_incident_status(
    conn: asyncpg.Connection, incident_id: int, status: str, now: datetime
) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"""
        UPDATE incidents AS i SET status = $2, updated_at = $3,
               closed_at = CASE WHEN $2 = ANY($4::text[]) THEN $3::timestamptz ELSE NULL END
        WHERE i.id = $1
        RETURNING {INCIDENT_COLUMNS}
        """,
        incident_id,
        status,
        now,
        sorted(ENDED),
    )
    return to_wire(incident_from_row(row))


async def _insert_tasks(
    conn: asyncpg.Connection, incident_id: int, planned: list[PlannedTask], actor: str, now: datetime
) -> list[dict[str, Any]]:
    """The plan's tasks, once per incident: a task already set (or cancelled) is not set again."""
    if not planned:
        return []
    rows = await conn.fetch(
        f"""
        INSERT INTO tasks AS t
            (incident_id, title, source, plan_key, due_at, created_by, created_at, updated_at)
        SELECT $1, title, 'plan', key, due_at, $2, $3, $3
        FROM unnest($4::text[], $5::text[], $6::timestamptz[]) AS p(key, title, due_at)
        ON CONFLICT (incident_id, plan_key) DO NOTHING
        RETURNING {TASK_COLUMNS}
        """,
        incident_id,
        actor,
        now,
        [t.key for t in planned],
        [t.title for t in planned],
        [t.due_at for t in planned],
    )
    return [task_wire(r) for r in rows]


# -- progress -------------------------------------------------------------------


async def change_dispatch_status(
    conn: asyncpg.Connection,
    dispatch_id: int,
    requested: str,
    *,
    reason: str | None,
    actor: str,
    now: datetime,
    only_unit: str | None = None,
) -> Outcome:
    """A field team's report (or a commander calling a unit back with ``cancelled``).

    Args:
        only_unit: for a field account, the unit it is bound to: another
            unit's dispatch answers 404, as if it did not exist.
    Raises:
        ApiError: 404 unknown (or not yours); 409 with the state machine's reason.
    """
    async with conn.transaction():
        row = await _lock_dispatch(conn, dispatch_id)
        if row is None or (only_unit is not None and row["unit_id"] != only_unit):
            raise ApiError(404, "not_found", "no such dispatch")
        try:
            step = (
                cancel_step(row["status"])
                if requested == "cancelled"
                else field_step(row["status"], requested, reason)
            )
        except InvalidTransition as exc:
            raise ApiError(409, "invalid_transition", str(exc)) from None
        events = await apply_step(conn, row, step, reason=reason, actor=actor, now=now)
        await append_events(conn, events)
        updated = events[0].data
    return Outcome({"dispatch": updated}, unit_mail=step.status == "cancelled")


async def _lock_dispatch(conn: asyncpg.Connection, dispatch_id: int) -> asyncpg.Record | None:
    """The dispatch (with its incident's district, for events), locked until commit."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"""
        SELECT {DISPATCH_COLUMNS}, i.district_id
        FROM dispatches d JOIN incidents i ON i.id = d.incident_id
        WHERE d.id = $1 FOR UPDATE OF d
        """,
        dispatch_id,
    )
    return row


async def apply_step(
    conn: asyncpg.Connection,
    row: asyncpg.Record,
    step: Step,
    *,
    reason: str | None,
    actor: str,
    now: datetime,
) -> list[NewEvent]:
    """Write one accepted transition and return its events (dispatch.updated first)."""
    # step.stamp is one of a fixed set of column names (dispatch/progress.py).
    assert step.stamp in _STAMPS
    updated = await conn.fetchrow(
        f"""
        UPDATE dispatches AS d SET status = $2, {step.stamp} = $3, updated_at = $3,
               reason = COALESCE($4, d.reason)
        WHERE d.id = $1
        RETURNING {DISPATCH_COLUMNS}
        """,
        row["id"],
        step.status,
        now,
        reason,
    )
    unit = await conn.fetchrow(
        f"""
        UPDATE units AS u SET status = $2, status_at = GREATEST(u.status_at, $3), updated_at = $3
        WHERE u.id = $1 RETURNING {UNIT_COLUMNS}
        """,
        row["unit_id"],
        step.unit_status,
        now,
    )
    if step.requisitions_to is not None:
        moved = await conn.fetch(
            f"""
            UPDATE requisitions SET status = $2, {step.requisitions_to}_at = $3
            WHERE dispatch_id = $1 AND status = ANY($4::text[])
            RETURNING depot_id, item, quantity
            """,
            row["id"],
            step.requisitions_to,
            now,
            sorted(step.requisitions_from),
        )
        if step.requisitions_to == "released":
            # Back to stock: what was taken when the dispatch was made.
            for r in sorted(moved, key=lambda r: (r["depot_id"], r["item"])):
                await conn.execute(
                    "UPDATE stock SET quantity = quantity + $3 WHERE depot_id = $1 AND item = $2",
                    r["depot_id"],
                    r["item"],
                    r["quantity"],
                )
    if step.status == "cancelled":
        cancel = {
            "type": "cancel",
            "dispatch_id": row["id"],
            "unit_id": row["unit_id"],
            "time": now.isoformat(),
        }
        await _mail_unit(conn, row["unit_id"], row["id"], cancel, now)
    await record(
        conn,
        row["incident_id"],
        now,
        actor,
        "dispatch.status",
        row["status"],
        step.status,
        {"dispatch_id": row["id"], "unit_id": row["unit_id"]} | ({"reason": reason} if reason else {}),
    )
    supplies = (await _requisitions(conn, [row["id"]]))[row["id"]]
    wire = dispatch_wire(updated, supplies)
    district = row["district_id"]
    unit_data = unit_wire(unit) | {"dispatch_id": row["id"]}
    return [
        NewEvent("dispatch.updated", wire, row["incident_id"], row["unit_id"], district),
        NewEvent("unit.status", unit_data, None, row["unit_id"], unit["district_id"]),
    ]


async def field_report(
    conn: asyncpg.Connection,
    unit_id: str,
    dispatch_id: int,
    requested: str,
    reason: str | None,
    now: datetime,
) -> list[NewEvent]:
    """A unit's report over MQTT (``units/{id}/status`` with a dispatch_id), inside
    the ingest's transaction. Returns the events to append.

    Raises:
        InvalidTransition: the dispatch is unknown, not this unit's, or the
            step is not allowed; the ingest dead-letters the message with it.
    """
    row = await _lock_dispatch(conn, dispatch_id)
    if row is None or row["unit_id"] != unit_id:
        raise InvalidTransition(f"dispatch {dispatch_id} is not a dispatch of unit {unit_id}")
    if row["status"] == requested:
        return []  # a repeated report (QoS 1 redelivery) changes nothing
    step = field_step(row["status"], requested, reason)
    # The unit's clock stamps its report, but a step never precedes the one
    # before it: a late or skewed report is stamped when it can have happened.
    earlier = [row["created_at"], *(row[stamp] for stamp in _STAMPS if row[stamp] is not None)]
    return await apply_step(conn, row, step, reason=reason, actor=f"unit:{unit_id}", now=max(now, *earlier))


# -- deadlines --------------------------------------------------------------------


async def fire_overdue_dispatches(
    conn: asyncpg.Connection, now: datetime, plans: Plans, position_max_age: timedelta
) -> int:
    """Flag every dispatch whose acknowledgement deadline has passed, once.

    The UPDATE both selects and marks the rows: a second instance running the
    same sweep waits on the row lock, then finds ``overdue_at`` set and skips
    it, so each deadline fires exactly once across instances and restarts.
    Returns the number flagged.
    """
    async with conn.transaction():
        rows = await conn.fetch(
            f"""
            UPDATE dispatches AS d SET overdue_at = $1
            FROM incidents i
            WHERE i.id = d.incident_id AND d.status = 'dispatched' AND d.ack_deadline <= $1
              AND d.overdue_at IS NULL
            RETURNING {DISPATCH_COLUMNS}, i.kind, i.severity, i.location, i.area, i.district_id
            """,
            now,
        )
        events = []
        for row in sorted(rows, key=lambda r: r["id"]):
            offer = None
            plan = plans.plan_for(row["kind"], row["severity"])
            if plan.offer_next:
                offer = await _next_best(conn, row, now - position_max_age, plans)
            await record(
                conn,
                row["incident_id"],
                now,
                "system",
                "dispatch.overdue",
                detail={"dispatch_id": row["id"], "unit_id": row["unit_id"], "offer": offer},
            )
            data = dispatch_wire(row) | {"offer": offer}
            events.append(
                NewEvent("dispatch.overdue", data, row["incident_id"], row["unit_id"], row["district_id"])
            )
        await append_events(conn, events)
    return len(rows)


async def _next_best(
    conn: asyncpg.Connection, row: asyncpg.Record, fresh_since: datetime, plans: Plans
) -> dict[str, Any] | None:
    """The nearest available unit that can fill the overdue unit's need."""
    target = destination(row["location"], row["area"])
    assert target is not None  # a dispatch is only made to an incident with a place
    capability = row["capability"]
    if capability is None:
        caps = await conn.fetchval("SELECT capabilities FROM units WHERE id = $1", row["unit_id"])
        wanted = [n.capability for n in plans.plan_for(row["kind"], row["severity"]).units]
        capability = next((c for c in wanted if c in caps), caps[0] if caps else None)
    if capability is None:
        return None
    near = await postgis.nearest_available_units(conn, target, capability, fresh_since=fresh_since, limit=1)
    if not near:
        return None
    unit = near[0]
    # Routed like the recommendation: around the roads other incidents close.
    eta = (
        await postgis.travel_times(
            conn,
            [Point(unit.lon, unit.lat)],
            target,
            closures=plans.road_closures(),
            exclude_incident=row["incident_id"],
        )
    )[0]
    return {
        "unit_id": unit.id,
        "callsign": unit.callsign,
        "type": unit.type,
        "capability": capability,
        "distance_m": round(unit.distance_m),
        "eta_s": round(eta) if eta is not None else None,
    }
