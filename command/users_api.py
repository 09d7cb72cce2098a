"""Account management and the audit log over HTTP.

    GET  /api/users                      admin: every account
    POST /api/users                      admin: create {username, password, role, unit_id?, districts?}
    GET  /api/users/{id}                 admin: one account
    POST /api/users/{id}                 admin: {role?, unit_id?, districts?, disabled?}
    POST /api/users/{id}/password        admin: {password}, someone else's
    POST /api/me/password                anyone signed in: {old_password, new_password}
    GET  /api/audit?since=&actor=&action=&limit=   admin

Every change is audited in its own transaction and ends the sessions it
makes stale (command/user_admin.py). A dispatcher or commander cannot manage
users: the route table (command/api_routes.py) lists only admin, and each
handler checks again.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from aiohttp import web

from command import accounts, audit, login_limit, user_admin
from command.audit_http import audit_request, client_of
from command.errors import ApiError
from command.keys import POOL
from command.web import COOKIE, _bearer, _int_query, _json_body, _require, now, principal_of

_FIELDS = {"role", "unit_id", "districts", "disabled"}


def _user_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise ApiError(404, "not_found", "no such user")
    return int(raw)


def _districts(body: dict[str, Any]) -> list[str] | None:
    value = body.get("districts")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(d, str) and 0 < len(d) <= 64 for d in value):
        raise ApiError(400, "bad_request", "districts must be a list of district ids, or null")
    return sorted(set(value))


def _string(body: dict[str, Any], name: str, *, optional: bool = False) -> str | None:
    value = body.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ApiError(400, "bad_request", f"{name} must be a string")
    return value


async def list_users(request: web.Request) -> web.Response:
    _require(request, "admin")
    async with request.app[POOL].acquire() as conn:
        return web.json_response({"users": await user_admin.list_users(conn)})


async def get_user(request: web.Request) -> web.Response:
    _require(request, "admin")
    async with request.app[POOL].acquire() as conn:
        user = await user_admin.get_user(conn, _user_id(request))
    if user is None:
        raise ApiError(404, "not_found", "no such user")
    return web.json_response(user)


async def create_user(request: web.Request) -> web.Response:
    principal = _require(request, "admin")
    body = await _json_body(request)
    username = _string(body, "username")
    password = _string(body, "password")
    role = _string(body, "role")
    unit_id = _string(body, "unit_id", optional=True)
    districts = _districts(body)
    assert username is not None and password is not None and role is not None
    if (role == "field") != (unit_id is not None):
        # accounts.add_user says the same in the command line's words (--unit).
        raise ApiError(
            400, "bad_request", "a field account needs unit_id, and only a field account may have one"
        )
    async with request.app[POOL].acquire() as conn, conn.transaction():
        try:
            await user_admin.check_districts(conn, districts)
            user_id = await accounts.add_user(
                conn, username=username, password=password, role=role, unit_id=unit_id, districts=districts
            )
        except accounts.AccountError as exc:
            status = 409 if "already exists" in str(exc) else 400
            raise ApiError(status, "conflict" if status == 409 else "bad_request", str(exc)) from None
        user = await user_admin.get_user(conn, user_id)
        assert user is not None
        await audit_request(
            request,
            conn,
            principal,
            "user.create",
            target=f"user:{user_id}",
            status=201,
            detail={"username": username, "role": role, "unit_id": unit_id, "districts": districts},
        )
    return web.json_response(user, status=201)


async def update_user(request: web.Request) -> web.Response:
    principal = _require(request, "admin")
    user_id = _user_id(request)
    body = await _json_body(request)
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise ApiError(
            400, "bad_request", f"unknown field {unknown[0]!r}; one of {', '.join(sorted(_FIELDS))}"
        )
    changes: dict[str, Any] = {}
    if "role" in body:
        changes["role"] = _string(body, "role")
    if "unit_id" in body:
        changes["unit_id"] = _string(body, "unit_id", optional=True)
    if "districts" in body:
        changes["districts"] = _districts(body)
    if "disabled" in body:
        if not isinstance(body["disabled"], bool):
            raise ApiError(400, "bad_request", "disabled must be true or false")
        changes["disabled"] = body["disabled"]
    async with request.app[POOL].acquire() as conn, conn.transaction():
        try:
            result = await user_admin.update_user(conn, user_id, changes, now())
        except user_admin.LastAdmin as exc:
            raise ApiError(409, "last_admin", str(exc)) from None
        except accounts.AccountError as exc:
            raise ApiError(400, "bad_request", str(exc)) from None
        if result is None:
            raise ApiError(404, "not_found", "no such user")
        user, diff, ended = result
        await audit_request(
            request,
            conn,
            principal,
            "user.update",
            target=f"user:{user_id}",
            detail={"username": user["username"], "changes": diff, "sessions_ended": ended},
        )
    return web.json_response(user)


async def reset_password(request: web.Request) -> web.Response:
    principal = _require(request, "admin")
    user_id = _user_id(request)
    if user_id == principal.user_id:
        # The old password is asked for when it is one's own: POST /api/me/password.
        raise ApiError(409, "own_password", "change your own password with POST /api/me/password")
    body = await _json_body(request)
    password = _string(body, "password")
    assert password is not None
    async with request.app[POOL].acquire() as conn, conn.transaction():
        try:
            ended = await user_admin.set_password(conn, user_id, password, now())
        except accounts.AccountError as exc:
            raise ApiError(400, "bad_request", str(exc)) from None
        if ended is None:
            raise ApiError(404, "not_found", "no such user")
        await audit_request(
            request,
            conn,
            principal,
            "user.password_reset",
            target=f"user:{user_id}",
            detail={"sessions_ended": ended},
        )
    return web.json_response({"ok": True})


async def change_own_password(request: web.Request) -> web.Response:
    """Needs the old password: a session left open on a shared screen must not
    be enough to take the account over. Ends every other session of the account."""
    principal = principal_of(request)
    body = await _json_body(request)
    old, new = _string(body, "old_password"), _string(body, "new_password")
    assert old is not None and new is not None
    address = client_of(request)
    at = now()
    async with request.app[POOL].acquire() as conn, conn.transaction():
        # The old password is a password guess like a login's: same throttle.
        wait = await login_limit.retry_after(conn, principal.username, address, at)
        if wait is not None:
            await audit_request(
                request,
                conn,
                principal,
                "user.password_change",
                outcome="denied",
                status=429,
                target=f"user:{principal.user_id}",
            )
            refused = web.json_response(
                {
                    "error": {
                        "code": "too_many_attempts",
                        "message": f"too many failed attempts; try again in {wait} s",
                    }
                },
                status=429,
                headers={"Retry-After": str(wait)},
            )
        elif not await user_admin.password_matches(conn, principal.user_id, old):
            await login_limit.record_failure(conn, principal.username, address, at)
            await audit_request(
                request,
                conn,
                principal,
                "user.password_change",
                outcome="failed",
                status=403,
                target=f"user:{principal.user_id}",
                detail={"message": "wrong old password"},
            )
            refused = web.json_response(
                {"error": {"code": "wrong_password", "message": "the old password is wrong"}}, status=403
            )
        else:
            try:
                ended = await user_admin.set_password(
                    conn,
                    principal.user_id,
                    new,
                    at,
                    keep_token=_bearer(request) or request.cookies.get(COOKIE),
                )
            except accounts.AccountError as exc:
                raise ApiError(400, "bad_request", str(exc)) from None
            await audit_request(
                request,
                conn,
                principal,
                "user.password_change",
                target=f"user:{principal.user_id}",
                detail={"sessions_ended": ended},
            )
            return web.json_response({"ok": True})
    # Outside the transaction block, so the failure it counted is committed.
    return refused


def _since(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        pass
    else:
        return datetime.combine(day, time(), UTC)
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, "bad_request", "since must be an ISO 8601 date or date-time") from None
    return value if value.utcoffset() is not None else value.replace(tzinfo=UTC)


async def list_audit(request: web.Request) -> web.Response:
    _require(request, "admin")
    since = _since(request.query.get("since"))
    actor = request.query.get("actor") or None
    action = request.query.get("action") or None
    limit = _int_query(request, "limit", 200, 5000)
    async with request.app[POOL].acquire() as conn:
        rows = await audit.entries(conn, since=since, actor=actor, action=action, limit=limit)
    return web.json_response({"entries": rows})


def add_user_routes(app: web.Application) -> None:
    """Register the account and audit routes (``command.web``'s middlewares must be installed)."""
    r = app.router
    r.add_get("/api/users", list_users)
    r.add_post("/api/users", create_user)
    r.add_get("/api/users/{id}", get_user)
    r.add_post("/api/users/{id}", update_user)
    r.add_post("/api/users/{id}/password", reset_password)
    r.add_post("/api/me/password", change_own_password)
    r.add_get("/api/audit", list_audit)
