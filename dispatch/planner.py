"""Recommend a response: which units and which depots' supplies, and what is short.

Pure ranking. The caller (the PostGIS adapter) has already found the free
units and the stocked depots and routed each to the incident; this module
only ranks what it is given, so the same candidates always give the same
recommendation, whatever order they arrive in.

Units. Candidates are ranked by road ETA, then straight-line distance, then
id, so ties never depend on input order. A unit that cannot reach the
incident by road (``eta_s`` None) is never chosen. A unit fills at most one
need even when it has several capabilities. Needs are filled scarcest
capability first (fewest reachable candidates), each with its nearest free
candidates; if a need is still unfilled and moving a multi-capable unit to it
and a replacement into its place would fill it, that swap is made (an
augmenting path, as in bipartite matching), so no multi-capable unit is
wasted and as many needs as the city can meet are met. A unit further than
the plan's ``max_eta_s`` is still chosen when no nearer unit is free (late
beats never), and the need is reported short.

Supplies. Each need is filled from depots in ETA order, taking what each
holds and splitting across depots until the need is met. Only stock counted
in the plan's unit is used: litres cannot be added to boxes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from dispatch.plans import Plan
from dispatch.units import describe_units

#: Units counted in these are measures ("40 L of drinking water"); any other
#: unit is a count of the item itself ("200 sandbags").
_MEASURES = frozenset({"L", "kg", "t", "m", "m3"})


def _check_metres_seconds(owner: str, distance_m: float, eta_s: float | None) -> None:
    if not math.isfinite(distance_m) or distance_m < 0:
        raise ValueError(f"{owner}: distance_m must be finite and >= 0, got {distance_m!r}")
    if eta_s is not None and (not math.isfinite(eta_s) or eta_s < 0):
        raise ValueError(f"{owner}: eta_s must be None or finite and >= 0, got {eta_s!r}")


@dataclass(frozen=True, slots=True)
class UnitCandidate:
    """A free unit, with its route to the incident.

    ``eta_s`` is the road travel time in seconds, or None when no road route
    reaches the incident (closed roads, a cut-off district); ``distance_m`` is
    the road distance when routed, else the straight-line distance.
    """

    id: str
    callsign: str
    type: str
    capabilities: frozenset[str]
    distance_m: float
    eta_s: float | None

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("unit candidate id is empty")
        # Accept any iterable from the adapter, keep a frozenset: the
        # candidate stays hashable and membership tests stay O(1).
        object.__setattr__(self, "capabilities", frozenset(self.capabilities))
        _check_metres_seconds(f"unit {self.id}", self.distance_m, self.eta_s)

    @property
    def reachable(self) -> bool:
        return self.eta_s is not None


@dataclass(frozen=True, slots=True)
class DepotStock:
    """What one depot holds of one item, with the depot's route to the incident."""

    depot_id: str
    name: str
    item: str
    quantity: int
    unit: str
    distance_m: float
    eta_s: float | None

    def __post_init__(self) -> None:
        if not self.depot_id:
            raise ValueError("depot id is empty")
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int) or self.quantity < 0:
            raise ValueError(f"depot {self.depot_id}/{self.item}: quantity must be an integer >= 0")
        _check_metres_seconds(f"depot {self.depot_id}", self.distance_m, self.eta_s)


@dataclass(frozen=True, slots=True)
class Assignment:
    """The units recommended for one capability of the plan.

    ``chosen`` are the units to dispatch, nearest first (fewer than
    ``needed`` when the city has no more); ``alternates`` are the next-best
    reachable units with the capability that are not chosen for any need,
    offered for a commander's swap. A unit may be an alternate for several
    capabilities, but is chosen for at most one.
    """

    capability: str
    needed: int
    chosen: tuple[UnitCandidate, ...]
    alternates: tuple[UnitCandidate, ...]

    def __post_init__(self) -> None:
        if len(self.chosen) > self.needed:
            raise ValueError(f"{self.capability}: {len(self.chosen)} units chosen for {self.needed} needed")
        for unit in (*self.chosen, *self.alternates):
            if self.capability not in unit.capabilities:
                raise ValueError(f"{self.capability}: unit {unit.id} lacks the capability")
        if {u.id for u in self.chosen} & {u.id for u in self.alternates}:
            raise ValueError(f"{self.capability}: a unit is both chosen and an alternate")


@dataclass(frozen=True, slots=True)
class SupplyAssignment:
    """Where one supply need comes from: ``(depot stock, quantity taken)``, nearest first."""

    item: str
    needed: int
    unit: str
    sources: tuple[tuple[DepotStock, int], ...]

    def __post_init__(self) -> None:
        for stock, quantity in self.sources:
            if not 0 < quantity <= stock.quantity:
                raise ValueError(
                    f"{self.item}: takes {quantity} from {stock.depot_id}, which has {stock.quantity}"
                )
        if self.filled > self.needed:
            raise ValueError(f"{self.item}: takes {self.filled}, more than the {self.needed} needed")

    @property
    def filled(self) -> int:
        """How much of the need the sources cover."""
        return sum(quantity for _, quantity in self.sources)


@dataclass(frozen=True, slots=True)
class Shortfall:
    """A need the city cannot meet as the plan asks.

    For units, ``key`` is the capability and ``available`` the number of
    chosen units arriving within the plan's ``max_eta_s``; for supplies,
    ``key`` is the item and ``available`` the total reachable stock.
    """

    what: Literal["units", "supplies"]
    key: str
    needed: int
    available: int
    message: str

    def __post_init__(self) -> None:
        if self.what not in ("units", "supplies"):
            raise ValueError(f"shortfall of {self.what!r}: must be 'units' or 'supplies'")
        if not 0 <= self.available < self.needed:
            raise ValueError(
                f"shortfall of {self.key}: {self.available} available is not short of {self.needed}"
            )


@dataclass(frozen=True, slots=True)
class Recommendation:
    """The recommended response to an incident under ``plan``.

    ``assignments`` and ``supplies`` follow the order of the plan's needs;
    ``shortfalls`` lists unit shortfalls in that order, then supply ones.
    """

    plan: Plan
    assignments: tuple[Assignment, ...]
    supplies: tuple[SupplyAssignment, ...]
    shortfalls: tuple[Shortfall, ...]

    @property
    def complete(self) -> bool:
        """Whether every need is met in full and in time."""
        return not self.shortfalls

    @property
    def unit_ids(self) -> tuple[str, ...]:
        """Every chosen unit's id, in assignment order."""
        return tuple(u.id for a in self.assignments for u in a.chosen)


def _unit_rank(unit: UnitCandidate) -> tuple[bool, float, float, str]:
    # Unreachable sorts last; among them the ETA field is a placeholder.
    return (unit.eta_s is None, unit.eta_s or 0.0, unit.distance_m, unit.id)


def _depot_rank(stock: DepotStock) -> tuple[bool, float, float, str]:
    return (stock.eta_s is None, stock.eta_s or 0.0, stock.distance_m, stock.depot_id)


def _minutes(seconds: float) -> str:
    # Rounded up: "arrives in 12 min" must not promise more than the route does.
    return f"{max(1, math.ceil(seconds / 60))} min"


def _assign_units(
    plan: Plan, candidates: Mapping[str, Sequence[UnitCandidate]]
) -> dict[str, list[UnitCandidate]]:
    """Choose units for every need: greedy scarcest first, then augmenting paths.

    Returns:
        capability -> chosen units (unordered); no unit appears twice.
    """
    owner: dict[str, str] = {}  # unit id -> capability it is chosen for
    chosen: dict[str, list[UnitCandidate]] = {need.capability: [] for need in plan.units}
    # Scarcest first: a capability few units have takes its units before a
    # common one can use them up. Ties keep the plan's order.
    order = sorted(range(len(plan.units)), key=lambda i: (len(candidates[plan.units[i].capability]), i))
    for index in order:
        need = plan.units[index]
        for unit in candidates[need.capability]:
            if len(chosen[need.capability]) == need.count:
                break
            if unit.id not in owner:
                owner[unit.id] = need.capability
                chosen[need.capability].append(unit)

    def augment(capability: str, seen: set[str]) -> bool:
        # Find a unit for one more slot of `capability`: a free one, or one
        # chosen elsewhere whose own slot can be refilled the same way.
        # Candidates are tried nearest first, so repairs stay close.
        for unit in candidates[capability]:
            if unit.id in seen:
                continue
            seen.add(unit.id)
            previous = owner.get(unit.id)
            if previous == capability:
                continue
            if previous is None or augment(previous, seen):
                if previous is not None:
                    chosen[previous].remove(unit)
                owner[unit.id] = capability
                chosen[capability].append(unit)
                return True
        return False

    # Kuhn's algorithm: a slot that cannot be filled now cannot be filled by
    # later augmentations either, so one pass over the open slots reaches the
    # largest number of filled slots.
    for index in order:
        need = plan.units[index]
        while len(chosen[need.capability]) < need.count and augment(need.capability, set()):
            pass
    return chosen


def _unit_shortfall(
    plan: Plan, capability: str, needed: int, chosen: Sequence[UnitCandidate]
) -> Shortfall | None:
    in_time = [u for u in chosen if u.eta_s is not None and u.eta_s <= plan.max_eta_s]
    if len(in_time) >= needed:
        return None
    late = [u for u in chosen if u not in in_time]
    within = f"within {_minutes(plan.max_eta_s)}"
    message = f"needs {describe_units(capability, needed)}, {len(in_time) or 'none'} available {within}"
    if late:
        latest = max(u.eta_s or 0.0 for u in late)
        message += f"; {len(late)} more can arrive, the last in {_minutes(latest)}"
    missing = needed - len(chosen)
    if missing:
        message += f"; {missing} cannot be found" if chosen else "; none can be found"
    return Shortfall("units", capability, needed, len(in_time), message)


def _supply_phrase(quantity: int, item: str, unit: str) -> str:
    label = item.replace("_", " ")
    return f"{quantity} {unit} of {label}" if unit in _MEASURES else f"{quantity} {label}"


def recommend(
    plan: Plan,
    units: Iterable[UnitCandidate],
    depots: Iterable[DepotStock],
    *,
    alternates: int = 2,
) -> Recommendation:
    """Recommend units and supplies for an incident under ``plan``.

    Args:
        plan: the plan for the incident's kind and severity.
        units: free units with their routes; capabilities the plan does not
            need are ignored.
        depots: depot stock rows with the depot's route; items the plan does
            not need are ignored.
        alternates: how many next-best units to offer per capability.
    Returns:
        The recommendation; equal inputs in any order give an equal result.
    Raises:
        ValueError: ``alternates`` is negative, or a unit id or a
            (depot, item) pair appears twice.
    """
    if alternates < 0:
        raise ValueError(f"alternates must be >= 0, got {alternates}")
    ranked_units = sorted(units, key=_unit_rank)
    ranked_depots = sorted(depots, key=_depot_rank)
    ids = [u.id for u in ranked_units]
    if len(set(ids)) != len(ids):
        raise ValueError(f"unit {next(i for i in ids if ids.count(i) > 1)!r} is listed twice")
    rows = [(d.depot_id, d.item) for d in ranked_depots]
    if len(set(rows)) != len(rows):
        raise ValueError(f"stock {next(r for r in rows if rows.count(r) > 1)!r} is listed twice")

    # Reachable candidates per needed capability, best first.
    candidates = {
        need.capability: [u for u in ranked_units if u.reachable and need.capability in u.capabilities]
        for need in plan.units
    }
    chosen = _assign_units(plan, candidates)
    taken = {u.id for picked in chosen.values() for u in picked}

    assignments: list[Assignment] = []
    shortfalls: list[Shortfall] = []
    for need in plan.units:
        picked = tuple(sorted(chosen[need.capability], key=_unit_rank))
        spare = tuple(u for u in candidates[need.capability] if u.id not in taken)[:alternates]
        assignments.append(Assignment(need.capability, need.count, picked, spare))
        shortfall = _unit_shortfall(plan, need.capability, need.count, picked)
        if shortfall is not None:
            shortfalls.append(shortfall)

    supplies: list[SupplyAssignment] = []
    for supply in plan.supplies:
        stock = [
            d for d in ranked_depots if d.item == supply.item and d.unit == supply.unit and d.quantity > 0
        ]
        reachable = [d for d in stock if d.eta_s is not None]
        sources: list[tuple[DepotStock, int]] = []
        remaining = supply.quantity
        for depot in reachable:
            if remaining == 0:
                break
            take = min(remaining, depot.quantity)
            sources.append((depot, take))
            remaining -= take
        supplies.append(SupplyAssignment(supply.item, supply.quantity, supply.unit, tuple(sources)))
        if remaining:
            in_stock = sum(d.quantity for d in reachable)
            message = (
                f"needs {_supply_phrase(supply.quantity, supply.item, supply.unit)}, "
                f"{in_stock} in stock within reach"
            )
            cut_off = sum(d.quantity for d in stock if d.eta_s is None)
            if cut_off:
                message += f" ({cut_off} more at depots no road reaches)"
            shortfalls.append(Shortfall("supplies", supply.item, supply.quantity, in_stock, message))

    return Recommendation(plan, tuple(assignments), tuple(supplies), tuple(shortfalls))


def _round(value: float | None) -> int | None:
    return None if value is None else round(value)


def _unit_to_wire(unit: UnitCandidate, max_eta_s: int) -> dict[str, Any]:
    return {
        "id": unit.id,
        "callsign": unit.callsign,
        "type": unit.type,
        "capabilities": sorted(unit.capabilities),
        "distance_m": round(unit.distance_m),
        "eta_s": _round(unit.eta_s),
        # Lets a console mark a unit that is chosen but arrives after max_eta_s.
        "late": unit.eta_s is None or unit.eta_s > max_eta_s,
    }


def recommendation_to_wire(rec: Recommendation) -> dict[str, Any]:
    """The recommendation as a JSON-ready object.

    ETAs are whole seconds, distances whole metres; capability lists are
    sorted. Every list keeps the recommendation's order.
    """
    plan = rec.plan
    return {
        "plan": {
            "name": plan.name,
            "kind": plan.kind,
            "min_severity": plan.min_severity,
            "units": [{"capability": n.capability, "count": n.count} for n in plan.units],
            "supplies": [{"item": s.item, "quantity": s.quantity, "unit": s.unit} for s in plan.supplies],
            "radius_m": round(plan.radius_m),
            "closes_roads": plan.closes_roads,
            "ack_deadline_s": plan.ack_deadline_s,
            "max_eta_s": plan.max_eta_s,
        },
        "assignments": [
            {
                "capability": a.capability,
                "needed": a.needed,
                "chosen": [_unit_to_wire(u, plan.max_eta_s) for u in a.chosen],
                "alternates": [_unit_to_wire(u, plan.max_eta_s) for u in a.alternates],
            }
            for a in rec.assignments
        ],
        "supplies": [
            {
                "item": s.item,
                "needed": s.needed,
                "unit": s.unit,
                "filled": s.filled,
                "sources": [
                    {
                        "depot_id": stock.depot_id,
                        "name": stock.name,
                        "quantity": quantity,
                        "in_stock": stock.quantity,
                        "distance_m": round(stock.distance_m),
                        "eta_s": _round(stock.eta_s),
                    }
                    for stock, quantity in s.sources
                ],
            }
            for s in rec.supplies
        ],
        "shortfalls": [
            {"what": f.what, "key": f.key, "needed": f.needed, "available": f.available, "message": f.message}
            for f in rec.shortfalls
        ],
        "complete": rec.complete,
    }
