"""The route table: every HTTP route the server registers, who may call it, what
it audits, and its request and response shapes. Pure (data and dict building).

One table, four uses, so they cannot drift apart:

- ``GET /api/openapi.json`` is generated from it (:func:`openapi`);
- the access middleware (``command/guard.py``) refuses a role the table does
  not list for a route (403), before the handler's own checks run;
- the audit middleware names each state-changing request by its ``audit`` action;
- the roles table in ``docs/security.md`` is generated from it (:func:`roles_markdown`).

``tests/integration/test_openapi.py`` fails when a registered aiohttp route
is missing here or one listed here is not registered; the authorization
matrix (``tests/integration/test_authorization.py``) calls every route as
every role and checks the answer against this table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from command.feed_protocol import ACTORS, READERS, ROLES
from command.imports import KINDS as IMPORT_KINDS
from sensors.alarms import KINDS as ALARM_KINDS
from sensors.alarms import SEVERITIES

Schema = dict[str, Any]

#: Everyone signed in, whatever the role.
SIGNED_IN: tuple[str, ...] = ROLES
ADMIN: tuple[str, ...] = ("admin",)
FIELD: tuple[str, ...] = ("field",)


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    location: str  # "path" or "query"
    schema: Schema
    description: str = ""

    @property
    def required(self) -> bool:
        return self.location == "path"


@dataclass(frozen=True, slots=True)
class Route:
    """One method on one path, as aiohttp registers it (``{id}`` placeholders).

    ``roles`` None means public (no sign-in). ``scope`` says which objects
    the route is about, for the own/foreign rule: a field account sees only
    its unit's dispatches, their incidents and tasks, a district-bound account
    only its districts; anything else answers 404 (not 403, so existence
    does not leak). ``audit`` is the action recorded for each call (every
    state-changing route has one).
    """

    method: str
    path: str
    summary: str
    roles: tuple[str, ...] | None
    tag: str
    responses: dict[int, Schema]
    scope: str = ""
    audit: str | None = None
    params: tuple[Param, ...] = ()
    body: Schema | None = None
    body_media: tuple[str, ...] = ("application/json",)
    response_media: str = "application/json"
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, self.path)


# --- shapes ---------------------------------------------------------------------

_NULLABLE_STR: Schema = {"type": ["string", "null"]}
_ID = Param("id", "path", {"type": "string", "pattern": "^[0-9]{1,18}$"}, "a numeric id")
_LIMIT = Param("limit", "query", {"type": "integer", "minimum": 1}, "at most this many")

COMPONENTS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "Incident": {
        "type": "object",
        "required": ["id", "kind", "severity", "status", "title"],
        "properties": {
            "id": {"type": "integer"},
            "kind": {"type": "string"},
            "severity": {"type": "string"},
            "status": {"type": "string"},
            "title": {"type": "string"},
            "lat": {"type": ["number", "null"]},
            "lon": {"type": ["number", "null"]},
            "district": _NULLABLE_STR,
        },
    },
    "Unit": {
        "type": "object",
        "required": ["id", "callsign", "type", "status"],
        "properties": {
            "id": {"type": "string"},
            "callsign": {"type": "string"},
            "type": {"type": "string"},
            "status": {"type": "string"},
            "lat": {"type": ["number", "null"]},
            "lon": {"type": ["number", "null"]},
        },
    },
    "Dispatch": {
        "type": "object",
        "required": ["id", "incident_id", "unit_id", "status"],
        "properties": {
            "id": {"type": "integer"},
            "incident_id": {"type": "integer"},
            "unit_id": {"type": "string"},
            "status": {"type": "string"},
        },
    },
    "Task": {
        "type": "object",
        "required": ["id", "incident_id", "title", "status", "due_at"],
        "properties": {
            "id": {"type": "integer"},
            "incident_id": {"type": "integer"},
            "title": {"type": "string"},
            "status": {"type": "string"},
            "due_at": {"type": "string"},
        },
    },
    "User": {
        "type": "object",
        "required": ["id", "username", "role", "unit_id", "districts", "disabled", "created_at"],
        "properties": {
            "id": {"type": "integer"},
            "username": {"type": "string"},
            "role": {"type": "string", "enum": list(ROLES)},
            "unit_id": _NULLABLE_STR,
            "districts": {"type": ["array", "null"], "items": {"type": "string"}},
            "disabled": {"type": "boolean"},
            "demo": {"type": "boolean"},
            "created_at": {"type": "string"},
            "updated_at": {"type": "string"},
            "password_changed_at": _NULLABLE_STR,
        },
    },
    "AuditEntry": {
        "type": "object",
        "required": ["id", "at", "actor", "action", "outcome"],
        "properties": {
            "id": {"type": "integer"},
            "at": {"type": "string"},
            "actor": _NULLABLE_STR,
            "actor_role": _NULLABLE_STR,
            "action": {"type": "string"},
            "target": _NULLABLE_STR,
            "outcome": {"type": "string", "enum": ["ok", "failed", "denied", "error"]},
            "status": {"type": ["integer", "null"]},
            "address": _NULLABLE_STR,
            "detail": {"type": "object"},
        },
    },
}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _list_of(key: str, item: Schema, **more: Schema) -> Schema:
    return {
        "type": "object",
        "required": [key],
        "properties": {key: {"type": "array", "items": item}, **more},
    }


_ANY_OBJECT: Schema = {"type": "object"}
_OK: Schema = {"type": "object", "required": ["ok"], "properties": {"ok": {"type": "boolean"}}}
_TEXT: Schema = {"type": "string"}
_STATUS_BODY: Schema = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": {"type": "string", "minLength": 1, "maxLength": 32},
        "reason": {"type": "string", "minLength": 1, "maxLength": 500},
    },
}
_PASSWORD: Schema = {"type": "string", "minLength": 10, "maxLength": 1024}
_USERNAME: Schema = {"type": "string", "pattern": "^[A-Za-z0-9_.@-]{1,64}$"}
_DISTRICTS: Schema = {"type": ["array", "null"], "items": {"type": "string", "minLength": 1, "maxLength": 64}}

# Errors every signed-in route can answer besides its own.
_SIGNED_IN_ERRORS = (401, 403)


def _r(
    method: str,
    path: str,
    summary: str,
    roles: tuple[str, ...] | None,
    tag: str,
    ok: dict[int, Schema],
    *,
    errors: tuple[int, ...] = (),
    **kwargs: Any,
) -> Route:
    responses: dict[int, Schema] = dict(ok)
    codes = set(errors)
    if roles is not None:
        codes |= set(_SIGNED_IN_ERRORS)
    if method == "POST":
        codes |= {400, 403}  # bad JSON; cross-site requests
    if any(p.location == "query" for p in kwargs.get("params", ())):
        codes.add(400)  # a query parameter out of range
    for code in sorted(codes):
        responses.setdefault(code, _ref("Error"))
    return Route(method, path, summary, roles, tag, responses, **kwargs)


ROUTES: tuple[Route, ...] = (
    # -- sessions and accounts --------------------------------------------------
    _r(
        "POST",
        "/api/login",
        "Sign in: a bearer token, and the same token as an HttpOnly SameSite=Strict cookie",
        None,
        "sessions",
        {
            200: {
                "type": "object",
                "required": ["token", "role", "expires_at"],
                "properties": {
                    "token": {"type": "string"},
                    "role": {"type": "string"},
                    "expires_at": {"type": "string"},
                },
            }
        },
        errors=(401, 429),
        audit="session.login",
        body={
            "type": "object",
            "required": ["username", "password"],
            "properties": {"username": {"type": "string"}, "password": {"type": "string"}},
        },
        notes="5 failures per account, or 20 per address, in 15 minutes: 429 with Retry-After",
    ),
    _r("POST", "/api/logout", "End this session", SIGNED_IN, "sessions", {200: _OK}, audit="session.logout"),
    _r(
        "GET",
        "/api/me",
        "Who this session belongs to",
        SIGNED_IN,
        "sessions",
        {
            200: {
                "type": "object",
                "required": ["username", "role"],
                "properties": {"username": {"type": "string"}, "role": {"type": "string"}},
            }
        },
    ),
    _r(
        "POST",
        "/api/me/password",
        "Change one's own password (the old one is required); ends one's other sessions",
        SIGNED_IN,
        "sessions",
        {200: _OK},
        errors=(429,),
        audit="user.password_change",
        body={
            "type": "object",
            "required": ["old_password", "new_password"],
            "properties": {"old_password": {"type": "string"}, "new_password": _PASSWORD},
        },
    ),
    _r(
        "GET",
        "/api/config",
        "What a console page needs to know: tile URL, SLA targets, stock lines",
        SIGNED_IN,
        "sessions",
        {200: _ANY_OBJECT},
    ),
    _r(
        "GET",
        "/api/users",
        "Every account",
        ADMIN,
        "users",
        {200: _list_of("users", _ref("User"))},
    ),
    _r(
        "POST",
        "/api/users",
        "Create an account",
        ADMIN,
        "users",
        {201: _ref("User")},
        errors=(409,),
        audit="user.create",
        body={
            "type": "object",
            "required": ["username", "password", "role"],
            "properties": {
                "username": _USERNAME,
                "password": _PASSWORD,
                "role": {"type": "string", "enum": list(ROLES)},
                "unit_id": _NULLABLE_STR,
                "districts": _DISTRICTS,
            },
        },
        notes="a field account needs unit_id; no other role may have one",
    ),
    _r(
        "GET",
        "/api/users/{id}",
        "One account",
        ADMIN,
        "users",
        {200: _ref("User")},
        errors=(404,),
        params=(_ID,),
    ),
    _r(
        "POST",
        "/api/users/{id}",
        "Change an account's role, unit, districts or disabled flag; ends its sessions",
        ADMIN,
        "users",
        {200: _ref("User")},
        errors=(404, 409),
        audit="user.update",
        params=(_ID,),
        body={
            "type": "object",
            "properties": {
                "role": {"type": "string", "enum": list(ROLES)},
                "unit_id": _NULLABLE_STR,
                "districts": _DISTRICTS,
                "disabled": {"type": "boolean"},
            },
        },
        notes="the last enabled admin cannot be demoted or disabled (409)",
    ),
    _r(
        "POST",
        "/api/users/{id}/password",
        "Set another account's password; ends its sessions and clears its login failures",
        ADMIN,
        "users",
        {200: _OK},
        errors=(404, 409),
        audit="user.password_reset",
        params=(_ID,),
        body={"type": "object", "required": ["password"], "properties": {"password": _PASSWORD}},
        notes="one's own password is changed with POST /api/me/password",
    ),
    _r(
        "GET",
        "/api/audit",
        "The audit log, newest first",
        ADMIN,
        "audit",
        {200: _list_of("entries", _ref("AuditEntry"))},
        params=(
            Param("since", "query", {"type": "string"}, "ISO 8601 date or date-time (UTC without offset)"),
            Param("actor", "query", {"type": "string"}, "an account name"),
            Param("action", "query", {"type": "string"}, "an action, or a prefix ending in '.'"),
            _LIMIT,
        ),
    ),
    # -- the picture ----------------------------------------------------------------
    _r(
        "GET",
        "/api/incidents",
        "Incidents the caller may see",
        SIGNED_IN,
        "incidents",
        {200: _list_of("incidents", _ref("Incident"))},
        scope="incidents",
        params=(
            Param("status", "query", {"type": "string", "enum": ["open", "all"]}),
            _LIMIT,
        ),
    ),
    _r(
        "GET",
        "/api/incidents/{id}",
        "One incident with its alarms, dispatches, tasks, timeline and surroundings",
        SIGNED_IN,
        "incidents",
        {200: _ref("Incident")},
        errors=(404,),
        scope="incident",
        params=(_ID,),
    ),
    _r(
        "GET",
        "/api/incidents/{id}/recommendation",
        "Who and what should go, and how soon",
        SIGNED_IN,
        "incidents",
        {200: _ANY_OBJECT},
        errors=(404,),
        scope="incident",
        params=(_ID,),
    ),
    _r(
        "GET",
        "/api/units",
        "Units the caller may see",
        SIGNED_IN,
        "city",
        {200: _list_of("units", _ref("Unit"))},
        scope="units",
    ),
    *(
        _r(
            "GET",
            f"/api/{layer}",
            f"The city's {layer}",
            SIGNED_IN,
            "city",
            {200: _list_of(layer, _ANY_OBJECT)},
        )
        for layer in ("depots", "hazards", "sites", "districts", "roads")
    ),
    _r(
        "GET",
        "/api/sensors",
        "Registered sensors and their liveness",
        READERS,
        "city",
        {200: _list_of("sensors", _ANY_OBJECT)},
        params=(_LIMIT,),
    ),
    _r(
        "GET",
        "/api/dead-letters",
        "Inputs that were refused, with why",
        ADMIN,
        "operations",
        {200: _list_of("dead_letters", _ANY_OBJECT)},
        params=(_LIMIT,),
    ),
    _r(
        "GET",
        "/api/stats",
        "Response-time KPIs (docs/kpis.md)",
        READERS,
        "incidents",
        {200: _ANY_OBJECT},
        params=(
            Param("from", "query", {"type": "string"}),
            Param("to", "query", {"type": "string"}),
            Param("group", "query", {"type": "string", "enum": ["kind", "district", "period"]}),
            Param("format", "query", {"type": "string", "enum": ["json", "csv"]}),
        ),
        extra={"csv": True},
    ),
    # -- acting on incidents ----------------------------------------------------------
    _r(
        "POST",
        "/api/incidents",
        "Open an incident from a phone report",
        ACTORS,
        "incidents",
        {201: _ref("Incident")},
        audit="incident.create",
        body={
            "type": "object",
            "required": ["kind", "lat", "lon", "title"],
            "properties": {
                "kind": {"type": "string", "enum": sorted(ALARM_KINDS)},
                "severity": {"type": "string", "enum": list(SEVERITIES)},
                "lat": {"type": "number", "minimum": -90, "maximum": 90},
                "lon": {"type": "number", "minimum": -180, "maximum": 180},
                "title": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "\\S"},
            },
        },
    ),
    _r(
        "POST",
        "/api/incidents/{id}/status",
        "Move an incident along its lifecycle (or reopen it)",
        ACTORS,
        "incidents",
        {200: _ref("Incident")},
        errors=(404, 409),
        scope="incident",
        audit="incident.status",
        params=(_ID,),
        body=_STATUS_BODY,
    ),
    _r(
        "POST",
        "/api/incidents/{id}/dispatches",
        "Dispatch units and supplies, all or nothing",
        ACTORS,
        "dispatch",
        {201: _ANY_OBJECT},
        errors=(404, 409),
        scope="incident",
        audit="dispatch.create",
        params=(_ID,),
        body={
            "type": "object",
            "required": ["units"],
            "properties": {
                "units": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                "supplies": {"type": "array", "items": _ANY_OBJECT},
            },
        },
    ),
    _r(
        "GET",
        "/api/incidents/{id}/dispatches",
        "An incident's dispatches (a field account: its own unit's)",
        SIGNED_IN,
        "dispatch",
        {200: _list_of("dispatches", _ref("Dispatch"))},
        errors=(404,),
        scope="incident",
        params=(_ID,),
    ),
    _r(
        "GET",
        "/api/incidents/{id}/tasks",
        "An incident's tasks (a field account: its own unit's)",
        SIGNED_IN,
        "tasks",
        {200: _list_of("tasks", _ref("Task"))},
        errors=(404,),
        scope="incident",
        params=(_ID,),
    ),
    _r(
        "POST",
        "/api/incidents/{id}/tasks",
        "Add a supervision task",
        ACTORS,
        "tasks",
        {201: _ref("Task")},
        errors=(404,),
        scope="incident",
        audit="task.create",
        params=(_ID,),
        body={
            "type": "object",
            "required": ["title", "due_in_s"],
            "properties": {
                "title": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "\\S"},
                "due_in_s": {"type": "integer", "minimum": 1, "maximum": 2592000},
                "owner_unit": {"type": "string", "minLength": 1, "maxLength": 64},
                "owner_name": {"type": "string", "minLength": 1, "maxLength": 100},
            },
        },
    ),
    _r(
        "GET",
        "/api/my/dispatches",
        "A field account's own dispatches",
        FIELD,
        "dispatch",
        {200: _list_of("dispatches", _ref("Dispatch"))},
        params=(Param("all", "query", {"type": "string", "enum": ["0", "1"]}),),
    ),
    _r(
        "GET",
        "/api/dispatches/{id}",
        "One dispatch",
        SIGNED_IN,
        "dispatch",
        {200: _ref("Dispatch")},
        errors=(404,),
        scope="dispatch",
        params=(_ID,),
    ),
    _r(
        "POST",
        "/api/dispatches/{id}/status",
        "Report progress on a dispatch (field: its own; only a commander cancels)",
        ("field", *ACTORS),
        "dispatch",
        {200: _ANY_OBJECT},
        errors=(404, 409),
        scope="dispatch",
        audit="dispatch.status",
        params=(_ID,),
        body=_STATUS_BODY,
    ),
    _r(
        "POST",
        "/api/tasks/{id}",
        "Report on a task (field: its unit's own; only a commander reassigns)",
        ("field", *ACTORS),
        "tasks",
        {200: _ref("Task")},
        errors=(404, 409),
        scope="task",
        audit="task.update",
        params=(_ID,),
        body={
            "type": "object",
            "properties": {
                "status": {"type": "string", "minLength": 1, "maxLength": 32},
                "result": {"type": "string", "minLength": 1, "maxLength": 2000},
                "note": {"type": "string", "minLength": 1, "maxLength": 2000},
            },
        },
    ),
    _r(
        "POST",
        "/api/my/position",
        "A field team's phone reports its unit's position",
        FIELD,
        "field",
        {200: _ANY_OBJECT},
        errors=(429,),
        body={
            "type": "object",
            "required": ["lat", "lon"],
            "properties": {
                "lat": {"type": "number", "minimum": -90, "maximum": 90},
                "lon": {"type": "number", "minimum": -180, "maximum": 180},
                "speed": {"type": "number", "minimum": 0},
                "heading": {"type": "number", "minimum": 0, "maximum": 360},
            },
        },
        notes="telemetry, like MQTT units/{id}/position: stored as the unit's position, not audited",
    ),
    # -- the city's data ---------------------------------------------------------------
    _r(
        "POST",
        "/api/import/roads",
        "Replace the road network from an OpenStreetMap file",
        ADMIN,
        "import",
        {201: _ANY_OBJECT},
        errors=(409, 413, 503),
        audit="import.roads",
        body={"type": "string", "format": "binary"},
        body_media=("application/octet-stream",),
        params=(
            Param("filename", "query", {"type": "string"}),
            Param("format", "query", {"type": "string", "enum": ["osm", "pbf"]}),
        ),
    ),
    _r(
        "GET",
        "/api/export/roads",
        "The road graph as GeoJSON",
        ADMIN,
        "import",
        {200: _ANY_OBJECT},
        audit="export.roads",
        response_media="application/geo+json",
        params=(Param("format", "query", {"type": "string", "enum": ["geojson"]}),),
    ),
    _r(
        "POST",
        "/api/import/{kind}",
        "Import districts, units, depots, stock, hazards, sites or sensors (all or nothing)",
        ADMIN,
        "import",
        {201: {"type": "object", "required": ["imported"], "properties": {"imported": {"type": "integer"}}}},
        errors=(404, 413, 415, 422),
        audit="import.data",
        params=(Param("kind", "path", {"type": "string", "enum": list(IMPORT_KINDS)}),),
        body={"type": "string"},
        body_media=("text/csv", "application/geo+json"),
    ),
    _r(
        "GET",
        "/api/export/{kind}",
        "Export one kind of the city's data",
        ADMIN,
        "import",
        {200: _ANY_OBJECT},
        errors=(400, 404),
        audit="export.data",
        response_media="application/geo+json",
        extra={"csv": True},
        params=(
            Param("kind", "path", {"type": "string", "enum": list(IMPORT_KINDS)}),
            Param("format", "query", {"type": "string", "enum": ["geojson", "csv"]}),
        ),
    ),
    # -- operations and pages -----------------------------------------------------------
    _r(
        "GET",
        "/api/openapi.json",
        "This document",
        None,
        "operations",
        {200: _ANY_OBJECT},
    ),
    _r(
        "GET",
        "/healthz",
        "Database and broker connectivity (503 when degraded)",
        None,
        "operations",
        {200: _ANY_OBJECT, 503: _ANY_OBJECT},
    ),
    _r(
        "GET",
        "/metrics",
        "Prometheus metrics, for the monitoring network only (EMERGENCY_METRICS_NETWORKS)",
        None,
        "operations",
        {200: _TEXT, 403: _ref("Error")},
        response_media="text/plain",
    ),
    _r(
        "GET",
        "/ws",
        "The live feed (WebSocket; docs/feed.md): authenticated by the first frame or the cookie",
        None,
        "feed",
        {101: _TEXT, 400: _TEXT, 403: _ref("Error")},
        response_media="text/plain",
        extra={"websocket": True},
    ),
    _r("GET", "/", "The command console (HTML)", None, "pages", {200: _TEXT}, response_media="text/html"),
    _r(
        "GET",
        "/field",
        "The field team's app (HTML)",
        None,
        "pages",
        {200: _TEXT},
        response_media="text/html",
    ),
)

#: Static file trees served under these prefixes (not operations of the API).
STATIC_PREFIXES = ("/static/", "/vendor/leaflet/")

BY_KEY: dict[tuple[str, str], Route] = {r.key: r for r in ROUTES}
assert len(BY_KEY) == len(ROUTES), "a route is listed twice"


def lookup(method: str, path: str) -> Route | None:
    """The table's entry for an aiohttp route (``path`` as registered, with placeholders)."""
    return BY_KEY.get((method.upper(), path))


# --- OpenAPI -----------------------------------------------------------------------


def _operation(route: Route) -> Schema:
    op: Schema = {
        "operationId": route.method.lower() + route.path.replace("/", "_").replace("{", "").replace("}", ""),
        "summary": route.summary,
        "tags": [route.tag],
        "x-roles": list(route.roles) if route.roles is not None else "public",
    }
    if route.roles is None:
        op["security"] = []
    if route.audit:
        op["x-audit-action"] = route.audit
    if route.scope:
        op["x-scope"] = route.scope
    description = [route.notes] if route.notes else []
    if route.roles is not None:
        description.append(f"Roles: {', '.join(route.roles)}.")
    if route.scope:
        description.append("Objects outside the caller's scope answer 404.")
    if description:
        op["description"] = " ".join(description)
    if route.params:
        op["parameters"] = [
            {"name": p.name, "in": p.location, "required": p.required, "schema": p.schema}
            | ({"description": p.description} if p.description else {})
            for p in route.params
        ]
    if route.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {media: {"schema": route.body} for media in route.body_media},
        }
    responses: Schema = {}
    for status, schema in sorted(route.responses.items()):
        is_error = status >= 400 and schema == _ref("Error")
        media = "application/json" if is_error else route.response_media
        entry: Schema = {"description": _DESCRIPTIONS.get(status, "see the summary")}
        if status != 101:
            content: Schema = {media: {"schema": schema}}
            if route.extra.get("csv") and status == 200:
                content["text/csv"] = {"schema": _TEXT}
            entry["content"] = content
        if status == 429:
            entry["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "required": True}}
        responses[str(status)] = entry
    op["responses"] = responses
    return op


_DESCRIPTIONS = {
    101: "switching to the WebSocket protocol",
    200: "done",
    201: "created",
    400: "a malformed request",
    401: "no valid session",
    403: "this role may not do this, or a cross-site request",
    404: "no such object, or not in the caller's scope",
    409: "conflicts with the current state (the message says which)",
    413: "too large",
    415: "unsupported media type",
    422: "nothing stored: the rows named are invalid",
    429: "too many failed attempts; wait Retry-After seconds",
    503: "unavailable",
}


def openapi(version: str) -> Schema:
    """The OpenAPI 3.1 document of every route in :data:`ROUTES`."""
    paths: Schema = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Emergency command platform",
            "version": version,
            "description": "Roles, scopes and the audit trail: docs/security.md. Errors are "
            '{"error": {"code", "message"}}.',
        },
        "components": {
            "schemas": COMPONENTS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "emergency_session"},
            },
        },
        "security": [{"bearer": []}, {"cookie": []}],
        "paths": paths,
    }


# --- docs ---------------------------------------------------------------------------

_ROLE_COLUMNS = ("admin", "commander", "dispatcher", "field", "viewer")


def roles_markdown() -> str:
    """The roles table of docs/security.md: one row per route, one column per role."""
    lines = [
        "| route | " + " | ".join(_ROLE_COLUMNS) + " | audited as |",
        "| --- | " + " | ".join("---" for _ in _ROLE_COLUMNS) + " | --- |",
    ]
    for route in ROUTES:
        if route.roles is None:
            cells = ["public"] * len(_ROLE_COLUMNS)
        else:
            mark = "own" if route.scope else "yes"
            cells = [mark if role in route.roles else "" for role in _ROLE_COLUMNS]
        lines.append(f"| `{route.method} {route.path}` | " + " | ".join(cells) + f" | {route.audit or ''} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m command.api_routes: the table for docs/security.md
    print(roles_markdown(), end="")
