"""HTTP routes for acting on incidents: dispatch, progress, lifecycle, tasks, phone reports.

Who may do what:
- commanders, dispatchers and administrators act on incidents in their
  districts (all of them when their account has no district binding);
- a field account reports progress on its own unit's dispatches and tasks,
  and reads them; anything else answers 404, so existence does not leak;
- a viewer reads and changes nothing.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from shapely.geometry import Point

from command import dispatch_store, incident_store, queries, tasks_store
from command.audit_http import audit_request
from command.errors import ApiError
from command.feed_protocol import ACTORS, Principal
from command.keys import DELIVERY, PLANS, POOL
from command.web import _json_body, _require, now, principal_of
from dispatch.orders import BadRequest, parse_request
from sensors.alarms import KINDS, SEVERITIES

MAX_TEXT = 500


def _id(request: web.Request, what: str) -> int:
    try:
        return int(request.match_info["id"])
    except ValueError:
        raise ApiError(404, "not_found", f"no such {what}") from None


def _text(body: dict[str, Any], name: str, *, required: bool = False, limit: int = MAX_TEXT) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(400, "bad_request", f"{name} is required")
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise ApiError(400, "bad_request", f"{name} must be a non-empty string of at most {limit} characters")
    return value.strip()


async def _in_scope(request: web.Request, principal: Principal, incident_id: int) -> None:
    """404 unless the incident exists and the principal may see it."""
    async with request.app[POOL].acquire() as conn:
        if await queries.incident_place(conn, principal, incident_id) is None:
            raise ApiError(404, "not_found", "no such incident")


def _wake_delivery(request: web.Request) -> None:
    delivery = request.app.get(DELIVERY)
    if delivery is not None:
        delivery.wake()


async def create_dispatch(request: web.Request) -> web.Response:
    principal = _require(request, *ACTORS)
    incident_id = _id(request, "incident")
    try:
        order = parse_request(await _json_body(request))
    except BadRequest as exc:
        raise ApiError(400, "bad_request", str(exc)) from None
    await _in_scope(request, principal, incident_id)
    # The audit row commits with the dispatch, or neither does (a refusal is
    # recorded by command/guard.py after the rollback).
    async with request.app[POOL].acquire() as conn, conn.transaction():
        outcome = await dispatch_store.create_dispatches(
            conn, incident_id, order, actor=principal.username, now=now(), plans=request.app[PLANS]
        )
        await audit_request(
            request,
            conn,
            principal,
            "dispatch.create",
            target=f"incident:{incident_id}",
            status=201,
            detail={"units": [u.unit_id for u in order.units], "supplies": len(order.supplies)},
        )
    _wake_delivery(request)
    return web.json_response(outcome.body, status=201)


async def list_incident_dispatches(request: web.Request) -> web.Response:
    principal = principal_of(request)
    incident_id = _id(request, "incident")
    await _in_scope(request, principal, incident_id)
    async with request.app[POOL].acquire() as conn:
        dispatches = await dispatch_store.incident_dispatches(conn, incident_id)
    if principal.role == "field":
        dispatches = [d for d in dispatches if d["unit_id"] == principal.unit_id]
    return web.json_response({"dispatches": dispatches})


async def list_my_dispatches(request: web.Request) -> web.Response:
    """A field account's own dispatches (``?all=1`` includes finished ones)."""
    principal = _require(request, "field")
    assert principal.unit_id is not None  # the users table's CHECK
    async with request.app[POOL].acquire() as conn:
        dispatches = await dispatch_store.unit_dispatches(
            conn, principal.unit_id, active_only=request.query.get("all") != "1"
        )
    return web.json_response({"unit_id": principal.unit_id, "dispatches": dispatches})


async def _visible_dispatch(request: web.Request, principal: Principal, dispatch_id: int) -> dict[str, Any]:
    async with request.app[POOL].acquire() as conn:
        found = await dispatch_store.get_dispatch(conn, dispatch_id)
        if found is not None and principal.role == "field" and found["unit_id"] != principal.unit_id:
            found = None
        if found is not None and await queries.incident_place(conn, principal, found["incident_id"]) is None:
            found = None
    if found is None:
        raise ApiError(404, "not_found", "no such dispatch")
    return found


async def get_dispatch(request: web.Request) -> web.Response:
    principal = principal_of(request)
    return web.json_response(await _visible_dispatch(request, principal, _id(request, "dispatch")))


async def dispatch_status(request: web.Request) -> web.Response:
    """``{"status": "acknowledged"|"en_route"|"on_scene"|"cleared"|"declined"|"cancelled", "reason"?}``."""
    principal = _require(request, "field", *ACTORS)
    dispatch_id = _id(request, "dispatch")
    body = await _json_body(request)
    status = _text(body, "status", required=True, limit=32)
    reason = _text(body, "reason")
    assert status is not None
    if principal.role == "field" and status == "cancelled":
        raise ApiError(403, "forbidden", "a field team declines a dispatch; only a commander cancels one")
    await _visible_dispatch(request, principal, dispatch_id)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        outcome = await dispatch_store.change_dispatch_status(
            conn,
            dispatch_id,
            status,
            reason=reason,
            actor=principal.username,
            now=now(),
            only_unit=principal.unit_id if principal.role == "field" else None,
        )
        await audit_request(
            request,
            conn,
            principal,
            "dispatch.status",
            target=f"dispatch:{dispatch_id}",
            detail={"status": status, "reason": reason},
        )
    if outcome.unit_mail:
        _wake_delivery(request)
    return web.json_response(outcome.body)


async def incident_status(request: web.Request) -> web.Response:
    """``{"status": <lifecycle status>|"reopen", "reason"?}``."""
    principal = _require(request, *ACTORS)
    incident_id = _id(request, "incident")
    body = await _json_body(request)
    status = _text(body, "status", required=True, limit=32)
    assert status is not None
    await _in_scope(request, principal, incident_id)
    reason = _text(body, "reason")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        incident = await incident_store.change_status(
            conn, incident_id, status, reason=reason, actor=principal.username, now=now()
        )
        await audit_request(
            request,
            conn,
            principal,
            "incident.status",
            target=f"incident:{incident_id}",
            detail={"status": status, "reason": reason},
        )
    _wake_delivery(request)  # a false alarm calls units back
    return web.json_response(incident)


def _coordinate(body: dict[str, Any], name: str, limit: float) -> float:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ApiError(400, "bad_request", f"{name} must be a number")
    if not -limit <= value <= limit:
        raise ApiError(400, "bad_request", f"{name} must be between -{limit:g} and {limit:g}")
    return float(value)


async def create_incident(request: web.Request) -> web.Response:
    """A phone report: ``{"kind", "severity", "lat", "lon", "title"}``."""
    principal = _require(request, *ACTORS)
    body = await _json_body(request)
    kind, severity = body.get("kind"), body.get("severity", "Unknown")
    # isinstance first: a JSON object or list is unhashable (a 500, not a 400).
    if not isinstance(kind, str) or kind not in KINDS:
        raise ApiError(400, "bad_request", f"kind must be one of {', '.join(sorted(KINDS))}")
    if not isinstance(severity, str) or severity not in SEVERITIES:
        raise ApiError(400, "bad_request", f"severity must be one of {', '.join(SEVERITIES)}")
    location = Point(_coordinate(body, "lon", 180), _coordinate(body, "lat", 90))
    title = _text(body, "title", required=True, limit=200)
    assert title is not None
    async with request.app[POOL].acquire() as conn, conn.transaction():
        incident = await incident_store.create_manual(
            conn,
            kind=kind,
            severity=severity,
            location=location,
            title=title,
            actor=principal.username,
            now=now(),
        )
        await audit_request(
            request,
            conn,
            principal,
            "incident.create",
            target=f"incident:{incident['id']}",
            status=201,
            detail={"kind": kind, "severity": severity, "title": title},
        )
    if principal.districts is not None and incident["district"] not in principal.districts:
        # Created (the call was real) but outside this account's jurisdiction.
        return web.json_response(incident | {"note": "outside your districts"}, status=201)
    return web.json_response(incident, status=201)


# -- tasks ----------------------------------------------------------------------


async def list_tasks(request: web.Request) -> web.Response:
    principal = principal_of(request)
    incident_id = _id(request, "incident")
    await _in_scope(request, principal, incident_id)
    async with request.app[POOL].acquire() as conn:
        tasks = await tasks_store.list_tasks(conn, incident_id)
    if principal.role == "field":
        tasks = [t for t in tasks if t["owner_unit"] == principal.unit_id]
    return web.json_response({"tasks": tasks})


def _due(body: dict[str, Any], at: datetime) -> datetime:
    """``due_in_s`` (seconds from now) or ``due_at`` (RFC 3339 with offset)."""
    if "due_in_s" in body:
        seconds = body["due_in_s"]
        if isinstance(seconds, bool) or not isinstance(seconds, int) or not 1 <= seconds <= 30 * 86400:
            raise ApiError(400, "bad_request", "due_in_s must be an integer from 1 to 2592000 (30 days)")
        return at + timedelta(seconds=seconds)
    text = _text(body, "due_at", required=True, limit=64)
    assert text is not None
    try:
        due = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, "bad_request", "due_at must be an RFC 3339 time") from None
    if due.tzinfo is None:
        raise ApiError(400, "bad_request", "due_at needs a UTC offset")
    return due


async def add_task(request: web.Request) -> web.Response:
    principal = _require(request, *ACTORS)
    incident_id = _id(request, "incident")
    body = await _json_body(request)
    title = _text(body, "title", required=True, limit=200)
    assert title is not None
    at = now()
    due = _due(body, at)
    await _in_scope(request, principal, incident_id)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        task = await tasks_store.add_task(
            conn,
            incident_id,
            title=title,
            due_at=due,
            owner_unit=_text(body, "owner_unit", limit=64),
            owner_name=_text(body, "owner_name", limit=100),
            actor=principal.username,
            now=at,
        )
        await audit_request(
            request,
            conn,
            principal,
            "task.create",
            target=f"task:{task['id']}",
            status=201,
            detail={"incident_id": incident_id, "title": title},
        )
    return web.json_response(task, status=201)


async def update_task(request: web.Request) -> web.Response:
    """``{"status"?, "result"?, "note"?, "owner_unit"?, "owner_name"?}``; a field team
    may report on the tasks its unit owns, but not hand them to someone else."""
    principal = _require(request, "field", *ACTORS)
    task_id = _id(request, "task")
    body = await _json_body(request)
    field = principal.role == "field"
    if field and ({"owner_unit", "owner_name"} & body.keys()):
        raise ApiError(403, "forbidden", "only a commander reassigns a task")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        incident_id = await conn.fetchval("SELECT incident_id FROM tasks WHERE id = $1", task_id)
        if incident_id is None or (
            not field and await queries.incident_place(conn, principal, incident_id) is None
        ):
            raise ApiError(404, "not_found", "no such task")
        task = await tasks_store.update_task(
            conn,
            task_id,
            status=_text(body, "status", limit=32),
            result=_text(body, "result", limit=2000),
            note=_text(body, "note", limit=2000),
            owner_unit=_text(body, "owner_unit", limit=64),
            owner_name=_text(body, "owner_name", limit=100),
            actor=principal.username,
            now=now(),
            only_unit=principal.unit_id if field else None,
        )
        await audit_request(
            request,
            conn,
            principal,
            "task.update",
            target=f"task:{task_id}",
            detail={k: body[k] for k in ("status", "owner_unit", "owner_name") if k in body},
        )
    return web.json_response(task)


def add_dispatch_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/incidents", create_incident)
    r.add_post("/api/incidents/{id}/status", incident_status)
    r.add_post("/api/incidents/{id}/dispatches", create_dispatch)
    r.add_get("/api/incidents/{id}/dispatches", list_incident_dispatches)
    r.add_get("/api/incidents/{id}/tasks", list_tasks)
    r.add_post("/api/incidents/{id}/tasks", add_task)
    r.add_get("/api/my/dispatches", list_my_dispatches)
    r.add_get("/api/dispatches/{id}", get_dispatch)
    r.add_post("/api/dispatches/{id}/status", dispatch_status)
    r.add_post("/api/tasks/{id}", update_task)
