"""What one console may see, and how that changes as the event stream goes by.

Pure. A :class:`View` is made from what the database said when the console
caught up (its :class:`FieldScope`, read in the same transaction as the
snapshot or replay) and is then fed every later event in seq order; it
answers "send this one?" and updates itself from what it sees, so the scope
of a field team grows the moment a dispatch binds it to an incident, with no
query per event.

Three filters, all of which must pass:

- districts: an account bound to districts sees only events in them;
- field teams: their own unit, the incidents they have been dispatched to,
  and the units whose active dispatch works one of those incidents;
- a bounding box (wall displays): incidents and units inside it, plus the
  event that takes one of them out of it, so the display can drop it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from command.feed_protocol import BBox, Event, Principal, visible, wire_bounds
from dispatch.progress import ACTIVE

DISPATCH_EVENTS = frozenset({"dispatch.created", "dispatch.updated", "dispatch.overdue"})


class BadBBox(ValueError):
    pass


def parse_bbox(raw: object) -> BBox | None:
    """``[west, south, east, north]`` in degrees, or None to drop the filter.

    Raises:
        BadBBox: not four finite numbers in range, or west > east / south > north.
    """
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) != 4:
        raise BadBBox("bbox must be [west, south, east, north]")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in raw):
        raise BadBBox("bbox must hold four numbers")
    west, south, east, north = (float(v) for v in raw)
    if not (-180 <= west <= east <= 180 and -90 <= south <= north <= 90):
        raise BadBBox("bbox must satisfy -180 <= west <= east <= 180 and -90 <= south <= north <= 90")
    return (west, south, east, north)


def _overlaps(a: BBox, b: BBox) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


@dataclass(slots=True)
class FieldScope:
    """A field team's reach as the database holds it: the incidents it was ever
    dispatched to, and the units with an active dispatch to one of them."""

    incidents: set[int] = field(default_factory=set)
    workers: set[str] = field(default_factory=set)


@dataclass(slots=True)
class View:
    principal: Principal
    scope: FieldScope = field(default_factory=FieldScope)
    bbox: BBox | None = None
    # Inside the box as far as this console knows: a located event about one
    # of them is sent even when it lands outside, so the display can drop it.
    inside_incidents: set[int] = field(default_factory=set)
    inside_units: set[str] = field(default_factory=set)
    # Set when a dispatch binds the field team to a new incident: the units
    # already working it are not known from the stream, so the console needs
    # a fresh snapshot of its (larger) world. The hub clears it.
    grew: bool = False

    def admit(self, event: Event) -> bool:
        """Should this console get ``event``? Call once per event, in seq order."""
        if not visible(self.principal, event):
            return False
        if self.principal.role == "field" and not self._field_admits(event):
            return False
        return self.bbox is None or self._box_admits(event, self.bbox)

    def seed(self, snapshot: dict[str, Any]) -> dict[str, Any]:
        """Cut a snapshot to the box, and remember what is inside it."""
        if self.bbox is None:
            return snapshot
        box = self.bbox
        incidents = [i for i in snapshot["incidents"] if _inside(i, box)]
        units = [u for u in snapshot["units"] if _inside(u, box)]
        self.inside_incidents = {i["id"] for i in incidents}
        self.inside_units = {u["id"] for u in units}
        return {**snapshot, "incidents": incidents, "units": units, "bbox": list(box)}

    def _field_admits(self, event: Event) -> bool:
        me, scope = self.principal.unit_id, self.scope
        if event.name in DISPATCH_EVENTS and event.incident_id is not None and event.unit_id is not None:
            if event.unit_id == me:
                if event.incident_id not in scope.incidents:
                    scope.incidents.add(event.incident_id)
                    self.grew = True
            elif event.incident_id in scope.incidents:
                # The dispatch event itself is about our incident, so it is
                # sent either way; it decides whether the unit's own events are.
                if event.data.get("status") in ACTIVE:
                    scope.workers.add(event.unit_id)
                else:
                    scope.workers.discard(event.unit_id)
            else:
                # Working another incident (a replay starts from today's
                # workers, who may have been elsewhere earlier): not ours,
                # and neither is this dispatch.
                scope.workers.discard(event.unit_id)
        if event.unit_id is not None and (event.unit_id == me or event.unit_id in scope.workers):
            return True
        return event.incident_id is not None and event.incident_id in scope.incidents

    def _box_admits(self, event: Event, box: BBox) -> bool:
        name = event.name
        if event.bounds is not None and (name.startswith("incident.") or name.startswith("unit.")):
            inside = _overlaps(event.bounds, box)
            known = self.inside_incidents if name.startswith("incident.") else self.inside_units
            key: Any = event.incident_id if name.startswith("incident.") else event.unit_id
            was = key in known
            if inside:
                known.add(key)
            else:
                known.discard(key)
            return inside or was
        # Unlocated events (dispatches, tasks) follow what they are about.
        return event.incident_id in self.inside_incidents or event.unit_id in self.inside_units


def _inside(item: Mapping[str, Any], box: BBox) -> bool:
    bounds = wire_bounds(item)
    return bounds is not None and _overlaps(bounds, box)
