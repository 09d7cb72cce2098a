"""The state machines of a dispatch, its supplies and a task.

Pure. A field team reports progress (from the field page, REST or MQTT); this
module says whether the step is allowed, what the unit's own status becomes
and what happens to the supplies it carries. The SQL in
migrations/0003_dispatch.sql repeats the vocabularies in CHECK constraints.
"""

from __future__ import annotations

from dataclasses import dataclass

DISPATCH_STATES: tuple[str, ...] = (
    "dispatched",
    "acknowledged",
    "en_route",
    "on_scene",
    "cleared",
    "declined",
    "cancelled",
)
# A unit in one of these is working the dispatch (one at a time: a unique
# index in the database).
ACTIVE: frozenset[str] = frozenset({"dispatched", "acknowledged", "en_route", "on_scene"})
FINAL: frozenset[str] = frozenset({"cleared", "declined", "cancelled"})

# Forward steps a field team may report. Skipping ahead is allowed (a crew
# that forgot to press "en route" can still report "on scene"); going back is
# not. Declining is possible only before the unit has accepted.
_FIELD_STEPS: dict[str, frozenset[str]] = {
    "dispatched": frozenset({"acknowledged", "en_route", "on_scene", "declined"}),
    "acknowledged": frozenset({"en_route", "on_scene", "cleared"}),
    "en_route": frozenset({"on_scene", "cleared"}),
    "on_scene": frozenset({"cleared"}),
}
FIELD_REPORTS: frozenset[str] = frozenset().union(*_FIELD_STEPS.values())

# What the unit's own status (units.status) becomes with each dispatch state.
UNIT_STATUS_OF: dict[str, str] = {
    "dispatched": "dispatched",
    "acknowledged": "dispatched",
    "en_route": "en_route",
    "on_scene": "on_scene",
    "cleared": "available",
    "declined": "available",
    "cancelled": "available",
}

# The timestamp column each state sets (the KPIs are read from these).
STAMP_OF: dict[str, str] = {
    "acknowledged": "acknowledged_at",
    "en_route": "en_route_at",
    "on_scene": "on_scene_at",
    "cleared": "cleared_at",
    "declined": "declined_at",
    "cancelled": "cancelled_at",
}

REQUISITION_STATES: tuple[str, ...] = ("requested", "committed", "delivered", "released")

TASK_STATES: tuple[str, ...] = ("open", "in_progress", "done", "failed", "cancelled")
TASK_OPEN: frozenset[str] = frozenset({"open", "in_progress"})


class InvalidTransition(ValueError):
    """A step the state machine does not allow; the message says why."""


@dataclass(frozen=True, slots=True)
class Step:
    """What one accepted dispatch transition changes."""

    status: str
    unit_status: str
    stamp: str
    # Supplies carried by the unit: requested → committed when the unit
    # accepts; → delivered on scene; released (back to stock) if it never
    # gets them there.
    requisitions_from: frozenset[str]
    requisitions_to: str | None


def _requisition_change(status: str, reached_scene: bool) -> tuple[frozenset[str], str | None]:
    if status in ("acknowledged", "en_route"):
        return frozenset({"requested"}), "committed"
    if status == "on_scene" or (status == "cleared" and reached_scene):
        return frozenset({"requested", "committed"}), "delivered"
    # Declined, cancelled, or stood down before reaching the scene: the
    # supplies never got there and go back to stock.
    return frozenset({"requested", "committed"}), "released"


def field_step(current: str, requested: str, reason: str | None = None) -> Step:
    """A field team's report on its dispatch.

    Raises:
        InvalidTransition: the report is unknown, goes backwards, follows a
            final state, or declines without a reason.
    """
    if requested not in FIELD_REPORTS:
        raise InvalidTransition(
            f"unknown dispatch status {requested!r}; expected one of {', '.join(sorted(FIELD_REPORTS))}"
        )
    if current in FINAL:
        raise InvalidTransition(f"the dispatch is already {current}")
    if requested not in _FIELD_STEPS[current]:
        raise InvalidTransition(f"a dispatch that is {current} cannot become {requested}")
    if requested == "declined" and not (reason and reason.strip()):
        raise InvalidTransition("declining needs a reason")
    return _step(requested, reached_scene=current == "on_scene")


def cancel_step(current: str) -> Step:
    """A commander calls a unit back.

    Raises:
        InvalidTransition: the dispatch has already ended.
    """
    if current in FINAL:
        raise InvalidTransition(f"the dispatch is already {current}")
    return _step("cancelled", reached_scene=False)


def _step(status: str, *, reached_scene: bool) -> Step:
    source, target = _requisition_change(status, reached_scene)
    return Step(status, UNIT_STATUS_OF[status], STAMP_OF[status], source, target)


def task_step(current: str, requested: str, result: str | None) -> str:
    """A task's next status.

    Raises:
        InvalidTransition: unknown status, a task already finished, or an
            ending without a result.
    """
    if requested not in TASK_STATES:
        raise InvalidTransition(
            f"unknown task status {requested!r}; expected one of {', '.join(TASK_STATES)}"
        )
    if current not in TASK_OPEN:
        raise InvalidTransition(f"the task is already {current}")
    if requested == current:
        raise InvalidTransition(f"the task is already {current}")
    if requested == "open":
        raise InvalidTransition("a task in progress cannot go back to open")
    if requested in ("done", "failed") and not (result and result.strip()):
        raise InvalidTransition(f"a task that is {requested} needs a result")
    return requested
