"""An incident's plan becomes supervision tasks (督查督办).

Pure. At an incident's first dispatch the response plan is turned into
tasks, each with a stable key so that doing it twice (a retry, a second
instance) creates nothing new: the database has UNIQUE (incident_id, plan_key).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from dispatch.plans import Plan

# Protection sites that must be warned or evacuated when inside the area,
# and how long the plan allows for it.
PROTECT_KINDS: dict[str, str] = {
    "school": "Evacuate or shelter",
    "kindergarten": "Evacuate or shelter",
    "hospital": "Warn and protect",
    "care_home": "Evacuate or shelter",
}
PROTECT_DUE_S = 900
CLOSE_ROADS_DUE_S = 600
# Supplies must arrive within the plan's arrival time, plus loading.
LOADING_S = 600


@dataclass(frozen=True, slots=True)
class Site:
    """A protection site in the affected area (from dispatch/postgis.places_near)."""

    id: str
    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class PlannedTask:
    key: str
    title: str
    due_at: datetime


def plan_tasks(plan: Plan, sites: Iterable[Site], now: datetime) -> list[PlannedTask]:
    """The tasks for an incident under ``plan``, due relative to ``now``.

    Derived: deliver each of the plan's supplies; close the roads in the area
    when the plan closes roads; protect each school, hospital or care home in
    the area. Then the plan's own ``tasks``.
    """
    tasks = [
        PlannedTask(
            f"supply:{need.item}",
            f"Deliver {need.quantity} {need.unit} of {need.item.replace('_', ' ')}",
            now + timedelta(seconds=plan.max_eta_s + LOADING_S),
        )
        for need in plan.supplies
    ]
    if plan.closes_roads:
        tasks.append(
            PlannedTask(
                "roads", "Close the roads in the affected area", now + timedelta(seconds=CLOSE_ROADS_DUE_S)
            )
        )
    for site in sorted(sites, key=lambda s: s.id):
        verb = PROTECT_KINDS.get(site.kind)
        if verb is not None:
            tasks.append(
                PlannedTask(f"site:{site.id}", f"{verb} {site.name}", now + timedelta(seconds=PROTECT_DUE_S))
            )
    tasks.extend(
        PlannedTask(f"plan:{index}", need.title, now + timedelta(seconds=need.due_s))
        for index, need in enumerate(plan.tasks)
    )
    return tasks
