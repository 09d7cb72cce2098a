"""HTTP routes for a field team's phone beyond its dispatches: where the unit is.

``POST /api/my/position`` ``{"lat", "lon", "time"?, "speed"?, "heading"?}``
is the browser's way to say what MQTT ``units/{id}/position`` says: the field
page has the phone's geolocation but no MQTT client. The report is checked by
the same parser as the MQTT payload (``sensors.alarms.parse_position``) and
stored by the same transaction (``command.store.store_batch``), so it moves
the unit and emits ``unit.moved`` exactly as a telematics box would, and a
report older than the stored position changes nothing, as over MQTT.

Only a field account reports, and only for the unit it is bound to (the unit
comes from the account, never from the body). Each unit is limited to one
accepted report per ``POSITION_MIN_INTERVAL_S``: a phone's GPS can fire
several times a second and every accepted report is a transaction and an
event for every console that sees the unit.
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime

from aiohttp import web

from command.errors import ApiError
from command.keys import POOL
from command.store import Raw, store_batch
from command.web import _require, error, now
from sensors.alarms import Rejected, decode_json_object, parse_position

POSITION_MIN_INTERVAL_S = 2.0


class PositionLimiter:
    """At most one accepted position report per unit per interval, on this instance.

    The limit protects this instance's database pool and the consoles' feed
    from a chatty phone; it is not a security boundary, so it is not shared
    between instances (a unit talks to one instance at a time anyway). Memory
    is one float per unit that ever reported: bounded by the city's units.
    """

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}

    def admit(self, unit_id: str, at: float) -> float:
        """Take the unit's slot at monotonic time ``at``.

        Returns:
            0.0 when admitted (the slot is taken), otherwise the seconds to
            wait before the unit's next report can be admitted.
        """
        last = self._last.get(unit_id)
        if last is not None and at - last < self.interval_s:
            return self.interval_s - (at - last)
        self._last[unit_id] = at
        return 0.0


POSITION_LIMITER = web.AppKey("position_limiter", PositionLimiter)


def position_payload(raw: bytes, at: datetime) -> bytes:
    """The MQTT-shaped payload for an HTTP report: ``time`` is optional over
    HTTP (the phone's clock may be unset), so it defaults to the server's.

    Raises:
        Rejected: not a JSON object (or too large, or not UTF-8).
    """
    doc = decode_json_object(raw)
    if "time" in doc:
        return raw
    return json.dumps(doc | {"time": at.isoformat()}).encode()


async def report_position(request: web.Request) -> web.Response:
    principal = _require(request, "field")
    unit_id = principal.unit_id
    assert unit_id is not None  # the users table's CHECK
    at = now()
    raw = await request.read()
    try:
        position = parse_position(unit_id, position_payload(raw, at), at)
    except Rejected as exc:
        raise ApiError(400, "bad_request", str(exc)) from None
    wait = request.app[POSITION_LIMITER].admit(unit_id, time.monotonic())
    if wait > 0:
        response = error(
            429,
            "too_many_requests",
            f"one position every {request.app[POSITION_LIMITER].interval_s:g} s per unit; "
            f"try again in {wait:.1f} s",
        )
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response
    async with request.app[POOL].acquire() as conn:
        result = await store_batch(
            conn, positions=[(position, Raw(f"units/{unit_id}/position", raw))], now=at
        )
    # No event means the stored position was newer (a late report): not an error.
    return web.json_response({"unit_id": unit_id, "stored": result.events > 0, "seq": result.last_seq})


def add_field_routes(app: web.Application) -> None:
    app[POSITION_LIMITER] = PositionLimiter(POSITION_MIN_INTERVAL_S)
    app.router.add_post("/api/my/position", report_position)
