"""Response-time KPIs over HTTP.

    GET /api/stats?from=&to=&group=kind|district|period[&format=csv]

``from`` and ``to`` are ISO 8601 dates or date-times (UTC when no offset is
given; write ``+`` in an offset as ``%2B`` or use ``Z``). Incidents opened in
``[from, to)`` are counted; a ``to`` that is a date includes that whole day.
The default is the 30 days before now; a request spans at most 366 days.
JSON: :func:`dispatch.kpi.summary_to_wire` plus the period, the grouping and
the targets; ``format=csv`` gives one row per incident instead
(:func:`dispatch.kpi.to_csv`), as an attachment.

Roles admin, commander, dispatcher and viewer may read (field: 403); an
account bound to districts sees only incidents in them. Definitions and
targets: docs/kpis.md.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta

from aiohttp import web

from command.errors import ApiError
from command.feed_protocol import READERS
from command.keys import POOL, SETTINGS
from command.stats import incident_timings
from command.web import _require, now
from dispatch.kpi import GROUPS, Targets, summarise, summary_to_wire, to_csv

DEFAULT_SPAN = timedelta(days=30)
#: A bound on the work one request can ask for (every incident in the span is read).
MAX_SPAN = timedelta(days=366)


def _instant(name: str, raw: str, *, end: bool) -> datetime:
    """A query parameter as an aware instant; a bare date is its UTC midnight, or the next
    day's when it ends the period (so ``to=2024-05-31`` includes the 31st)."""
    # A date first: datetime.fromisoformat would also take one, as midnight.
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        pass
    else:
        return datetime.combine(day + timedelta(days=1 if end else 0), time(), UTC)
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, "bad_request", f"{name} must be an ISO 8601 date or date-time") from None
    return value.astimezone(UTC) if value.utcoffset() is not None else value.replace(tzinfo=UTC)


def _period(request: web.Request) -> tuple[datetime, datetime]:
    raw_from, raw_to = request.query.get("from"), request.query.get("to")
    until = _instant("to", raw_to, end=True) if raw_to else now()
    since = _instant("from", raw_from, end=False) if raw_from else until - DEFAULT_SPAN
    if since >= until:
        raise ApiError(400, "bad_request", "from must be before to")
    if until - since > MAX_SPAN:
        raise ApiError(400, "bad_request", f"the period may span at most {MAX_SPAN.days} days")
    return since, until


async def get_stats(request: web.Request) -> web.Response:
    """KPIs of the incidents opened in a period, as JSON or CSV."""
    principal = _require(request, *READERS)
    group = request.query.get("group", "kind")
    if group not in GROUPS:
        raise ApiError(400, "bad_request", f"group must be one of: {', '.join(GROUPS)}")
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise ApiError(400, "bad_request", "format must be 'json' or 'csv'")
    since, until = _period(request)
    async with request.app[POOL].acquire() as conn:
        incidents = await incident_timings(conn, since, until, principal.districts)
    if fmt == "csv":
        # A year of incidents is CPU work: off the loop, so alarms keep flowing.
        text = await asyncio.to_thread(to_csv, incidents)
        name = f"kpis-{since:%Y%m%dT%H%M%SZ}-{until:%Y%m%dT%H%M%SZ}.csv"
        return web.Response(
            text=text,
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    settings = request.app[SETTINGS]
    targets = Targets(
        dispatch_s=settings.sla_dispatch_s,
        turnout_s=settings.sla_turnout_s,
        travel_s=settings.sla_travel_s,
    )
    summary = await asyncio.to_thread(summarise, incidents, targets, group)
    body = {
        "from": since.isoformat(),
        "to": until.isoformat(),
        "targets": {
            "dispatch_s": targets.dispatch_s,
            "turnout_s": targets.turnout_s,
            "travel_s": targets.travel_s,
            "goal": targets.goal,
        },
        **summary_to_wire(summary),
    }
    return web.json_response(body)


def add_stats_routes(app: web.Application) -> None:
    """Register ``GET /api/stats`` (``command.web``'s middlewares must be installed)."""
    app.router.add_get("/api/stats", get_stats)
