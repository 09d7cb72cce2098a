"""What a console page needs to know about this server: ``GET /api/config``.

The console is static files with no inline script (so a strict
``script-src 'self'`` CSP works), which leaves no place for an operator's
hand-written ``window.*`` settings. Whatever shapes the page therefore comes
from here: the raster tile URL (``EMERGENCY_TILE_URL``; absent, the console
draws its offline basemap from our own districts and roads), the SLA targets
its incident queue ranks by, how old a position may be before the recommender
ignores the unit, and the stock levels its depots board warns at.

Any signed-in role may read it (the auth middleware of :mod:`command.web`
applies, as to every ``/api`` route): nothing here is secret from a user of
the console, but a tile URL may carry a tile server's key, so it is not public.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from command.keys import PLANS, SETTINGS
from command.settings import Settings
from dispatch.kpi import Targets
from dispatch.plans import SEVERITY_ORDER, Plans

#: Low stock is judged against the response plans up to this tier. Extreme
#: tiers ask for more than one district holds on purpose (a shortfall is how
#: the console says "ask for mutual aid", dispatch/plans.toml), so judging a
#: depot by them would flag nearly every depot and the warning would mean
#: nothing; one Severe incident is what a depot should be able to supply alone.
STOCK_REFERENCE_SEVERITY = "Severe"


def stock_minimums(plans: Plans, up_to: str = STOCK_REFERENCE_SEVERITY) -> dict[str, int]:
    """The low-stock line of each supply item: the most that any single plan of
    tier ``up_to`` or below asks for.

    A depot holding less cannot on its own supply one such incident. Items no
    plan asks for have no line (the console flags them only when none is left).

    Args:
        plans: the response plans the server runs with.
        up_to: the highest tier considered, a CAP severity.
    Returns:
        item -> quantity, sorted by item.
    Raises:
        ValueError: ``up_to`` is not a CAP severity.
    """
    limit = SEVERITY_ORDER.index(up_to)
    lines: dict[str, int] = {}
    for plan in plans.plans:
        if SEVERITY_ORDER.index(plan.min_severity) > limit:
            continue
        for need in plan.supplies:
            lines[need.item] = max(lines.get(need.item, 0), need.quantity)
    return dict(sorted(lines.items()))


def console_config(settings: Settings, plans: Plans) -> dict[str, Any]:
    """The body of ``GET /api/config`` (documented in frontend/README.md)."""
    targets = Targets(
        dispatch_s=settings.sla_dispatch_s,
        turnout_s=settings.sla_turnout_s,
        travel_s=settings.sla_travel_s,
    )
    return {
        "tile_url": settings.tile_url or None,
        "tile_attribution": settings.tile_attribution or None,
        # The same targets GET /api/stats judges by, so the queue's "dispatch
        # due" clock and the dashboard's breaches agree.
        "sla": {
            "dispatch_s": settings.sla_dispatch_s,
            "turnout_s": settings.sla_turnout_s,
            "travel_s": settings.sla_travel_s,
            "goal": targets.goal,
        },
        "position_max_age_s": settings.position_max_age_s,
        "stock_minimums": stock_minimums(plans),
        "stock_reference_severity": STOCK_REFERENCE_SEVERITY,
    }


async def get_config(request: web.Request) -> web.Response:
    """``GET /api/config``: the console's server-side settings."""
    return web.json_response(console_config(request.app[SETTINGS], request.app[PLANS]))
