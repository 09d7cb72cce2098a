"""Response plans: what an incident of a kind and severity needs.

Pure. The plans are data (``dispatch/plans.toml``); see that file for the
format and the meaning of each field. :func:`parse_plans` turns the text into
:class:`Plans`, which refuses anything a commander could be misled by: a
kind without a plan, a misspelt capability or item, a tier that needs less
than the tier below it. A bad file stops the server at start, with a
:class:`PlanError` naming the entry and the field, rather than giving a
wrong recommendation in the middle of an incident.
"""

from __future__ import annotations

import itertools
import math
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dispatch.units import CAPABILITIES, SUPPLY_ITEMS
from sensors.alarms import KINDS, SEVERITIES

#: The plans shipped with the server.
DEFAULT_PLANS_PATH = Path(__file__).resolve().parent / "plans.toml"

#: CAP severities from least to most severe: the order tiers escalate in.
SEVERITY_ORDER: tuple[str, ...] = tuple(reversed(SEVERITIES))
_RANK = {severity: rank for rank, severity in enumerate(SEVERITY_ORDER)}

_ENTRY_FIELDS = frozenset(
    {"units", "supplies", "radius_m", "closes_roads", "ack_deadline_s", "max_eta_s", "offer_next", "tasks"}
)
_OPTIONAL_FIELDS = frozenset({"supplies", "offer_next", "tasks"})
_SUPPLY_FIELDS = frozenset({"item", "quantity", "unit"})
_TASK_FIELDS = frozenset({"title", "due_s"})


class PlanError(ValueError):
    """A response plan or plans file is invalid; the message names the entry and field."""


def _positive_int(value: object) -> bool:
    # bool is an int to Python, but `count = true` is a typo, not a 1.
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True, slots=True)
class UnitNeed:
    """``count`` units that have ``capability``."""

    capability: str
    count: int

    def __post_init__(self) -> None:
        if not isinstance(self.capability, str) or not self.capability:
            raise PlanError(f"capability must be a non-empty string, got {self.capability!r}")
        if not _positive_int(self.count):
            raise PlanError(f"units.{self.capability}: count must be a positive integer, got {self.count!r}")


@dataclass(frozen=True, slots=True)
class SupplyNeed:
    """``quantity`` of ``item``, counted in ``unit`` (e.g. 200 sandbags in "bags")."""

    item: str
    quantity: int
    unit: str

    def __post_init__(self) -> None:
        if not isinstance(self.item, str) or not self.item:
            raise PlanError(f"supply item must be a non-empty string, got {self.item!r}")
        if not _positive_int(self.quantity):
            raise PlanError(
                f"supplies.{self.item}: quantity must be a positive integer, got {self.quantity!r}"
            )
        if not isinstance(self.unit, str) or not self.unit:
            raise PlanError(f"supplies.{self.item}: unit must be a non-empty string, got {self.unit!r}")


@dataclass(frozen=True, slots=True)
class TaskNeed:
    """A task the plan always sets (e.g. "set up a cordon"), due ``due_s`` after dispatch."""

    title: str
    due_s: int

    def __post_init__(self) -> None:
        if not isinstance(self.title, str) or not 1 <= len(self.title) <= 200:
            raise PlanError(f"tasks: title must be a string of 1 to 200 characters, got {self.title!r}")
        if not _positive_int(self.due_s):
            raise PlanError(f"tasks.{self.title}: due_s must be a positive integer, got {self.due_s!r}")


@dataclass(frozen=True, slots=True)
class Plan:
    """The response to an incident of ``kind`` at ``min_severity`` or above
    (up to the next tier of the same kind).

    ``units`` and ``supplies`` keep the order of the plans file, which is the
    order a recommendation lists them in; each capability and item appears
    once. ``radius_m`` is how far around an incident without an area to look
    for hazards and protection sites; ``closes_roads`` says routing must
    avoid roads inside the incident's area (within ``radius_m`` of its point
    when it has no area); ``ack_deadline_s`` is how long a unit has to
    acknowledge a dispatch; ``max_eta_s`` is the arrival time within
    which a unit counts as covering a need; ``offer_next`` says an overdue
    dispatch comes with the next-best unit to send instead; ``tasks`` are the
    supervision tasks the plan sets besides those derived from its supplies,
    road closures and the protection sites in the area (dispatch/tasks.py).
    """

    kind: str
    min_severity: str
    units: tuple[UnitNeed, ...]
    supplies: tuple[SupplyNeed, ...]
    radius_m: float
    closes_roads: bool
    ack_deadline_s: int
    max_eta_s: int
    offer_next: bool = True
    tasks: tuple[TaskNeed, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise PlanError(f"plan {self.name}: {self.kind!r} is not an alarm kind")
        if self.min_severity not in _RANK:
            raise PlanError(
                f"plan {self.name}: min_severity {self.min_severity!r} is not one of "
                f"{', '.join(SEVERITY_ORDER)}"
            )
        if not self.units:
            # A plan that dispatches nobody is not a response.
            raise PlanError(f"plan {self.name}: units: needs at least one unit")
        capabilities = [need.capability for need in self.units]
        for capability in capabilities:
            if capabilities.count(capability) > 1:
                raise PlanError(f"plan {self.name}: units.{capability}: listed twice")
        items = [need.item for need in self.supplies]
        for item in items:
            if items.count(item) > 1:
                raise PlanError(f"plan {self.name}: supplies.{item}: listed twice")
        radius = self.radius_m
        if isinstance(radius, bool) or not isinstance(radius, int | float) or not math.isfinite(radius):
            raise PlanError(f"plan {self.name}: radius_m must be a finite number, got {radius!r}")
        if radius <= 0:
            raise PlanError(f"plan {self.name}: radius_m must be positive, got {radius!r}")
        # TOML gives 150 for "150": keep the declared type either way.
        object.__setattr__(self, "radius_m", float(radius))
        if not isinstance(self.closes_roads, bool):
            raise PlanError(
                f"plan {self.name}: closes_roads must be true or false, got {self.closes_roads!r}"
            )
        if not isinstance(self.offer_next, bool):
            raise PlanError(f"plan {self.name}: offer_next must be true or false, got {self.offer_next!r}")
        for name in ("ack_deadline_s", "max_eta_s"):
            value = getattr(self, name)
            if not _positive_int(value):
                raise PlanError(f"plan {self.name}: {name} must be a positive integer, got {value!r}")

    @property
    def name(self) -> str:
        """``kind/min_severity``, e.g. ``"fire/Severe"``: how messages name the entry."""
        return f"{self.kind}/{self.min_severity}"

    def unit_count(self, capability: str) -> int:
        """How many units with ``capability`` the plan needs (0 if none)."""
        return next((need.count for need in self.units if need.capability == capability), 0)

    def supply_quantity(self, item: str) -> int:
        """How much of ``item`` the plan needs (0 if none)."""
        return next((need.quantity for need in self.supplies if need.item == item), 0)


@dataclass(frozen=True, slots=True)
class RoadClosure:
    """Active incidents of ``kind`` at ``severity`` close roads: those crossing
    their area, or, for an incident without an area, those within ``radius_m``
    of its point (the plan's radius stands for the area it has not got)."""

    kind: str
    severity: str
    radius_m: float


def _check_escalation(lower: Plan, higher: Plan) -> None:
    """A higher tier needs at least what the tier below needs, and more of something.

    "When severity rises the recommendation grows with it": a commander who
    sees an incident upgraded must never see units or supplies disappear
    from its recommendation, nor a road closure lifted.
    """
    for need in lower.units:
        count = higher.unit_count(need.capability)
        if count < need.count:
            raise PlanError(
                f"plan {higher.name}: units.{need.capability}: needs {count}, "
                f"fewer than the {need.count} of {lower.name}"
            )
    for supply in lower.supplies:
        quantity = higher.supply_quantity(supply.item)
        if quantity < supply.quantity:
            raise PlanError(
                f"plan {higher.name}: supplies.{supply.item}: needs {quantity}, "
                f"less than the {supply.quantity} of {lower.name}"
            )
    grows = sum(n.count for n in higher.units) > sum(n.count for n in lower.units) or sum(
        n.quantity for n in higher.supplies
    ) > sum(n.quantity for n in lower.supplies)
    if not grows:
        raise PlanError(f"plan {higher.name}: needs no more units or supplies than {lower.name}")
    if higher.radius_m < lower.radius_m:
        raise PlanError(
            f"plan {higher.name}: radius_m {higher.radius_m:g} is smaller than the "
            f"{lower.radius_m:g} of {lower.name}"
        )
    if lower.closes_roads and not higher.closes_roads:
        raise PlanError(f"plan {higher.name}: closes_roads is false but {lower.name} closes roads")


@dataclass(frozen=True, slots=True)
class Plans:
    """A complete, consistent set of response plans.

    Invariants, checked at construction:

    - every alarm kind has a tier with ``min_severity = "Unknown"``, so
      :meth:`plan_for` always finds a plan;
    - no two plans share ``(kind, min_severity)``;
    - every capability is in ``capabilities`` and every supply item is in
      ``supply_items`` with the same unit;
    - tiers escalate: a higher tier of a kind needs at least as many units of
      each capability and as much of each item as the tier below, strictly
      more in total, a radius at least as large, and closes roads if the
      tier below does.

    Args:
        plans: the plans, in any order.
        capabilities: the capability vocabulary (default: ``dispatch.units``).
        supply_items: item -> unit of measure (default: ``dispatch.units``).
    Raises:
        PlanError: an invariant does not hold; the message names the entry.
    """

    plans: tuple[Plan, ...]
    capabilities: Collection[str] = field(default=CAPABILITIES, compare=False)
    # A default_factory only because dataclasses refuse an unhashable default;
    # SUPPLY_ITEMS is read-only, so sharing it is safe.
    supply_items: Mapping[str, str] = field(default_factory=lambda: SUPPLY_ITEMS, compare=False, hash=False)
    # (kind, severity) -> plan, for every kind and every severity.
    _table: Mapping[tuple[str, str], Plan] = field(init=False, repr=False, compare=False, hash=False)
    _closures: tuple[RoadClosure, ...] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        tiers: dict[str, dict[str, Plan]] = {}
        for plan in self.plans:
            for need in plan.units:
                if need.capability not in self.capabilities:
                    raise PlanError(
                        f"plan {plan.name}: units.{need.capability}: not a known capability "
                        f"(known: {', '.join(sorted(self.capabilities))})"
                    )
            for supply in plan.supplies:
                expected = self.supply_items.get(supply.item)
                if expected is None:
                    raise PlanError(
                        f"plan {plan.name}: supplies.{supply.item}: not a known supply item "
                        f"(known: {', '.join(sorted(self.supply_items))})"
                    )
                if supply.unit != expected:
                    raise PlanError(
                        f"plan {plan.name}: supplies.{supply.item}: unit {supply.unit!r}, "
                        f"but {supply.item} is counted in {expected!r}"
                    )
            by_severity = tiers.setdefault(plan.kind, {})
            if plan.min_severity in by_severity:
                raise PlanError(f"plan {plan.name}: defined twice")
            by_severity[plan.min_severity] = plan

        missing = sorted(kind for kind in KINDS if "Unknown" not in tiers.get(kind, {}))
        if missing:
            raise PlanError(f"no plan with min_severity 'Unknown' for kinds: {', '.join(missing)}")

        table: dict[tuple[str, str], Plan] = {}
        for kind, by_severity in tiers.items():
            ordered = [by_severity[s] for s in SEVERITY_ORDER if s in by_severity]
            for lower, higher in itertools.pairwise(ordered):
                _check_escalation(lower, higher)
            current = by_severity["Unknown"]
            for severity in SEVERITY_ORDER:
                current = by_severity.get(severity, current)
                table[kind, severity] = current
        object.__setattr__(self, "_table", table)
        closures = (
            RoadClosure(kind, severity, plan.radius_m)
            for (kind, severity), plan in sorted(table.items())
            if plan.closes_roads
        )
        object.__setattr__(self, "_closures", tuple(closures))

    def plan_for(self, kind: str, severity: str) -> Plan:
        """The plan for an incident: the tier of its kind with the highest
        ``min_severity`` not above ``severity``.

        Args:
            kind: an alarm kind (``sensors.alarms.KINDS``).
            severity: a CAP severity; "Unknown" ranks lowest.
        Returns:
            The plan; there always is one for a valid kind and severity.
        Raises:
            ValueError: ``kind`` is not an alarm kind or ``severity`` not a CAP severity.
        """
        plan = self._table.get((kind, severity))
        if plan is None:
            if kind not in KINDS:
                raise ValueError(f"{kind!r} is not an alarm kind")
            raise ValueError(f"{severity!r} is not a CAP severity")
        return plan

    def road_closures(self) -> tuple[RoadClosure, ...]:
        """Every (kind, severity) whose plan closes roads, with that plan's radius.

        Exactly the pairs for which ``plan_for(kind, severity).closes_roads``
        holds, so routing closes roads by an incident's own plan: a Moderate
        fire whose plan keeps roads open closes nothing even though a Severe
        fire's plan closes them. Sorted by kind, then severity name.
        """
        return self._closures

    def tiers(self, kind: str) -> tuple[Plan, ...]:
        """The plans of ``kind``, least severe tier first."""
        return tuple(sorted((p for p in self.plans if p.kind == kind), key=lambda p: _RANK[p.min_severity]))


def _entry(kind: str, severity: str, body: Any) -> Plan:
    name = f"{kind}/{severity}"
    if not isinstance(body, dict):
        raise PlanError(f"plan {name}: must be a table")
    unknown = sorted(body.keys() - _ENTRY_FIELDS)
    if unknown:
        raise PlanError(f"plan {name}: unknown field {unknown[0]!r}")
    missing = sorted(_ENTRY_FIELDS - body.keys() - _OPTIONAL_FIELDS)
    if missing:
        raise PlanError(f"plan {name}: missing field {missing[0]!r}")

    units_doc = body["units"]
    if not isinstance(units_doc, dict):
        raise PlanError(f"plan {name}: units must be a table of capability = count")
    supplies_doc = body.get("supplies", [])
    if not isinstance(supplies_doc, list):
        raise PlanError(f"plan {name}: supplies must be an array of {{ item, quantity, unit }} tables")
    try:
        units = tuple(UnitNeed(capability, count) for capability, count in units_doc.items())
        supplies = []
        for index, supply in enumerate(supplies_doc):
            if not isinstance(supply, dict):
                raise PlanError(f"supplies[{index}]: must be a {{ item, quantity, unit }} table")
            fields = set(supply)
            if fields != _SUPPLY_FIELDS:
                wrong = sorted(fields ^ _SUPPLY_FIELDS)
                raise PlanError(f"supplies[{index}]: missing or unknown field {wrong[0]!r}")
            supplies.append(SupplyNeed(supply["item"], supply["quantity"], supply["unit"]))
        tasks_doc = body.get("tasks", [])
        if not isinstance(tasks_doc, list):
            raise PlanError("tasks must be an array of { title, due_s } tables")
        tasks = []
        for index, task in enumerate(tasks_doc):
            if not isinstance(task, dict) or set(task) != _TASK_FIELDS:
                raise PlanError(f"tasks[{index}]: must be a {{ title, due_s }} table")
            tasks.append(TaskNeed(task["title"], task["due_s"]))
    except PlanError as exc:
        raise PlanError(f"plan {name}: {exc}") from None
    return Plan(
        kind=kind,
        min_severity=severity,
        units=units,
        supplies=tuple(supplies),
        radius_m=body["radius_m"],
        closes_roads=body["closes_roads"],
        ack_deadline_s=body["ack_deadline_s"],
        max_eta_s=body["max_eta_s"],
        offer_next=body.get("offer_next", True),
        tasks=tuple(tasks),
    )


def parse_plans(
    text: str,
    *,
    capabilities: Collection[str] = CAPABILITIES,
    supply_items: Mapping[str, str] = SUPPLY_ITEMS,
) -> Plans:
    """Plans from the TOML text of a plans file (format: ``dispatch/plans.toml``).

    Args:
        text: the file's text.
        capabilities: the capability vocabulary plans may use.
        supply_items: item -> unit of measure, for the items plans may use.
    Returns:
        The validated plans.
    Raises:
        PlanError: malformed TOML, an unknown or missing field, a bad value,
            or a broken invariant of :class:`Plans`; the message names the
            entry (``plan fire/Severe: ...``) and the field.
    """
    try:
        doc: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(f"plans file: {exc}") from None
    unknown = sorted(doc.keys() - {"plans"})
    if unknown:
        raise PlanError(
            f"plans file: unknown top-level key {unknown[0]!r} (plans go under [plans.KIND.SEVERITY])"
        )
    kinds = doc.get("plans", {})
    if not isinstance(kinds, dict):
        raise PlanError("plans file: 'plans' must be a table of [plans.KIND.SEVERITY] tables")
    plans = []
    for kind, tiers in kinds.items():
        if kind not in KINDS:
            raise PlanError(f"plans.{kind}: {kind!r} is not an alarm kind")
        if not isinstance(tiers, dict):
            raise PlanError(f"plans.{kind}: must contain [plans.{kind}.SEVERITY] tables")
        for severity, body in tiers.items():
            plans.append(_entry(kind, severity, body))
    return Plans(tuple(plans), capabilities=frozenset(capabilities), supply_items=supply_items)
