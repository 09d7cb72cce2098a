"""The console feed's wire format and scope rules.

Pure. An outbox row becomes an :class:`Event` once, is serialised once, and
the same text goes to every client that may see it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

BBox = tuple[float, float, float, float]  # west, south, east, north (lon, lat)

# Roles, from most to least privileged. 'field' accounts are bound to a unit.
ROLES: tuple[str, ...] = ("admin", "commander", "dispatcher", "field", "viewer")
# Who may act on incidents (dispatch, lifecycle, tasks), and who may read the
# command picture (everyone but field teams, who see only their own work).
ACTORS: tuple[str, ...] = ("admin", "commander", "dispatcher")
READERS: tuple[str, ...] = (*ACTORS, "viewer")

# Close codes (4000-4999 are ours to define).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_UNAUTHORIZED = 4401


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: the account behind a token or cookie."""

    user_id: int
    username: str
    role: str
    unit_id: str | None = None
    districts: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    name: str
    data: dict[str, Any]
    incident_id: int | None = None
    unit_id: str | None = None
    district_id: str | None = None
    wire: str = field(default="", compare=False)
    # Where an incident or unit event happens, for bounding-box subscriptions.
    bounds: BBox | None = field(default=None, compare=False)

    @classmethod
    def create(
        cls,
        seq: int,
        name: str,
        data: dict[str, Any],
        incident_id: int | None = None,
        unit_id: str | None = None,
        district_id: str | None = None,
    ) -> Event:
        wire = json.dumps({"type": "event", "seq": seq, "name": name, "data": data}, separators=(",", ":"))
        located = name.startswith("incident.") or name.startswith("unit.")
        bounds = wire_bounds(data) if located else None
        return cls(seq, name, data, incident_id, unit_id, district_id, wire, bounds)


def _walk(coords: Any) -> Iterable[tuple[float, float]]:
    if (
        isinstance(coords, list | tuple)
        and len(coords) >= 2
        and all(isinstance(v, int | float) for v in coords[:2])
    ):
        yield float(coords[0]), float(coords[1])
    elif isinstance(coords, list | tuple):
        for part in coords:
            yield from _walk(part)


def wire_bounds(data: Mapping[str, Any]) -> BBox | None:
    """Bounds of an incident or unit as the wire shows it: its area, else its point."""
    area = data.get("area")
    if isinstance(area, Mapping):
        points = list(_walk(area.get("coordinates")))
        if points:
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            return (min(xs), min(ys), max(xs), max(ys))
    lat, lon = data.get("lat"), data.get("lon")
    if isinstance(lat, int | float) and isinstance(lon, int | float):
        return (float(lon), float(lat), float(lon), float(lat))
    return None


def visible(principal: Principal, event: Event) -> bool:
    """May this principal see this event, as far as the event alone can tell?

    An account bound to districts sees only events in them. A field team's
    scope depends on its dispatches, which the stream itself changes: that
    part lives in :mod:`command.feed_scope`, which calls this first.
    """
    if principal.districts is not None:
        return event.district_id in principal.districts
    return True


def batch_frame(events: list[Event]) -> str:
    """Several events in one frame, reusing each event's serialised text."""
    if len(events) == 1:
        return events[0].wire
    return '{"type":"batch","events":[' + ",".join(e.wire for e in events) + "]}"


def error_frame(code: str, message: str) -> str:
    return json.dumps({"type": "error", "error": {"code": code, "message": message}})


@dataclass(frozen=True, slots=True)
class Hello:
    token: str | None
    since: int | None


class BadHello(ValueError):
    pass


def parse_hello(text: str) -> Hello:
    """The client's first frame.

    Raises:
        BadHello: not JSON, not a hello, or ill-typed fields.
    """
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise BadHello("first frame must be JSON") from None
    if not isinstance(doc, dict) or doc.get("type") != "hello":
        raise BadHello('first frame must be {"type":"hello",...}')
    token = doc.get("token")
    since = doc.get("since")
    if token is not None and not isinstance(token, str):
        raise BadHello("token must be a string")
    if since is not None and (isinstance(since, bool) or not isinstance(since, int) or since < 0):
        raise BadHello("since must be a non-negative integer")
    return Hello(token, since)
