"""The console's view (who sees what, evolving with the stream) and its buffer."""

from __future__ import annotations

from typing import Any

import pytest

from command.client_buffer import ClientBuffer, Overflow
from command.feed_protocol import Event, Principal
from command.feed_scope import BadBBox, FieldScope, View, parse_bbox

FIELD = Principal(1, "engine1", "field", unit_id="U-1")
BOSS = Principal(2, "boss", "commander")
NORTH = Principal(3, "north", "viewer", districts=("D-N",))


class Stream:
    def __init__(self) -> None:
        self.seq = 0

    def __call__(
        self,
        name: str,
        data: dict[str, Any] | None = None,
        *,
        incident: int | None = None,
        unit: str | None = None,
    ) -> Event:
        self.seq += 1
        return Event.create(self.seq, name, data or {}, incident, unit, "D-1")


def test_a_field_team_sees_its_unit_then_its_incident_and_the_units_working_it() -> None:
    ev = Stream()
    view = View(FIELD)
    assert view.admit(ev("unit.moved", unit="U-1"))
    assert not view.admit(ev("incident.opened", incident=7))
    assert not view.admit(ev("unit.moved", unit="U-2"))
    # U-2 is sent to 7 first: not our business yet.
    assert not view.admit(ev("dispatch.created", {"status": "dispatched"}, incident=7, unit="U-2"))
    assert not view.grew
    assert view.admit(ev("dispatch.created", {"status": "dispatched"}, incident=7, unit="U-1"))
    # The hub answers this with a fresh snapshot, which brings U-2 along.
    assert view.grew
    view.grew = False
    assert view.admit(ev("incident.updated", incident=7))
    assert view.admit(ev("dispatch.updated", {"status": "en_route"}, incident=7, unit="U-2"))
    assert view.admit(ev("unit.moved", unit="U-2"))
    assert view.admit(ev("task.created", incident=7))
    assert view.admit(ev("dispatch.updated", {"status": "cleared"}, incident=7, unit="U-2"))
    assert not view.admit(ev("unit.status", unit="U-2"))
    assert not view.admit(ev("incident.updated", incident=8))
    assert not view.admit(ev("sensor.online"))


def test_the_scope_read_at_catch_up_is_where_the_view_starts() -> None:
    ev = Stream()
    view = View(FIELD, FieldScope({7}, {"U-3"}))
    assert view.admit(ev("unit.moved", unit="U-3"))
    assert view.admit(ev("incident.closed", incident=7))
    assert not view.admit(ev("unit.moved", unit="U-4"))


def test_a_fellow_unit_seen_on_another_incident_is_not_ours_there() -> None:
    # A replay starts from today's fellows; earlier, U-3 worked incident 9.
    ev = Stream()
    view = View(FIELD, FieldScope({7}, {"U-3"}))
    assert not view.admit(ev("dispatch.created", {"status": "dispatched"}, incident=9, unit="U-3"))
    assert not view.admit(ev("unit.moved", unit="U-3"))
    assert view.admit(ev("dispatch.created", {"status": "dispatched"}, incident=7, unit="U-3"))
    assert view.admit(ev("unit.moved", unit="U-3"))


def test_district_bound_accounts_and_everyone_else() -> None:
    ev = Stream()
    assert View(BOSS).admit(ev("sensor.online"))
    inside = Event.create(1, "incident.opened", {}, 1, None, "D-N")
    outside = Event.create(2, "incident.opened", {}, 2, None, "D-S")
    assert View(NORTH).admit(inside) and not View(NORTH).admit(outside)


def test_a_bounding_box_follows_things_in_and_out() -> None:
    ev = Stream()
    view = View(BOSS, bbox=(120.0, 30.0, 120.1, 30.1))
    snapshot = {
        "incidents": [{"id": 1, "lat": 30.05, "lon": 120.05, "area": None}, {"id": 2, "lat": 31, "lon": 121}],
        "units": [{"id": "U-1", "lat": 30.01, "lon": 120.01}, {"id": "U-2", "lat": None, "lon": None}],
    }
    cut = view.seed({"type": "snapshot", "seq": 0, **snapshot})
    assert [i["id"] for i in cut["incidents"]] == [1] and [u["id"] for u in cut["units"]] == ["U-1"]
    assert view.admit(ev("unit.moved", {"lat": 30.5, "lon": 120.5}, unit="U-1"))  # leaves: told once
    assert not view.admit(ev("unit.moved", {"lat": 30.6, "lon": 120.5}, unit="U-1"))
    assert view.admit(ev("unit.moved", {"lat": 30.02, "lon": 120.02}, unit="U-1"))  # comes back
    # An area reaching into the box counts, though its centre is outside.
    area = {
        "type": "Polygon",
        "coordinates": [[[120.09, 30.09], [120.3, 30.09], [120.3, 30.3], [120.09, 30.09]]],
    }
    assert view.admit(ev("incident.opened", {"lat": 30.2, "lon": 120.2, "area": area}, incident=3))
    assert view.admit(ev("dispatch.created", {"status": "dispatched"}, incident=3, unit="U-9"))
    assert not view.admit(ev("dispatch.created", {"status": "dispatched"}, incident=2, unit="U-8"))


@pytest.mark.parametrize(
    "raw", [[1, 2, 3], "box", [0, 0, "1", 1], [10, 0, 5, 1], [0, 50, 1, 40], [0, 0, 200, 1], [True, 0, 1, 1]]
)
def test_bad_boxes_are_refused(raw: object) -> None:
    with pytest.raises(BadBBox):
        parse_bbox(raw)


def test_good_boxes() -> None:
    assert parse_bbox([120, 30, 120.5, 30.5]) == (120.0, 30.0, 120.5, 30.5)
    assert parse_bbox(None) is None


def test_the_buffer_keeps_only_each_units_newest_position_and_everything_else() -> None:
    ev = Stream()
    buffer = ClientBuffer(limit=10)
    buffer.push(ev("unit.moved", unit="U-1"))
    buffer.push(ev("unit.moved", unit="U-2"))
    assert not buffer.urgent
    buffer.push(ev("incident.updated", incident=1))
    buffer.push(ev("unit.moved", unit="U-1"))
    assert buffer.urgent and buffer.conflated == 1
    assert [(e.seq, e.name) for e in buffer.take()] == [
        (2, "unit.moved"),
        (3, "incident.updated"),
        (4, "unit.moved"),
    ]
    assert not buffer and not buffer.urgent


def test_the_buffer_overflows_at_its_limit_and_holding_keeps_every_position() -> None:
    ev = Stream()
    buffer = ClientBuffer(limit=3)
    for _ in range(3):
        buffer.push(ev("unit.moved", unit="U-1"), conflate=False)
    assert len(buffer) == 3
    with pytest.raises(Overflow):
        buffer.push(ev("incident.updated", incident=1))
