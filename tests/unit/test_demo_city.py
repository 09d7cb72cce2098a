"""The synthetic demo city: deterministic, complete, and geometrically sound."""

from __future__ import annotations

import json
import re
from collections import deque

import pytest
from shapely.geometry import Point, Polygon, box
from shapely.ops import unary_union

from command.demo_city import (
    ALARM_KINDS,
    BBOX,
    CAPABILITIES,
    HAZARD_KINDS,
    REFERENCE_DATE,
    SENSOR_KINDS,
    SITE_KINDS,
    UNIT_TYPES,
    City,
    District,
    Hazard,
    Site,
    build_city,
    distance_m,
    sensor_alarm_kinds,
)
from sensors.alarms import KINDS

# Same pattern as the CHECK constraints on sensors.id and units.id.
DB_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
CONTRACT_ALARM_KINDS = KINDS  # the contract's vocabulary, from the parser that enforces it


@pytest.fixture(scope="module")
def city() -> City:
    return build_city()


def test_same_seed_same_city(city: City) -> None:
    again = build_city(7)
    assert again == city
    # Equality of shapely objects is exact, but compare bytes too, since the
    # database sees WKB.
    assert [d.geom.wkb for d in again.districts] == [d.geom.wkb for d in city.districts]
    assert [s.location.wkb for s in again.sensors] == [s.location.wkb for s in city.sensors]


def test_other_seed_other_city(city: City) -> None:
    other = build_city(8)
    assert other != city
    assert [s.location for s in other.sensors] != [s.location for s in city.sensors]


@pytest.mark.parametrize("seed", [1, 2, 3, 42, 1234])
def test_any_seed_builds_a_sound_city(seed: int) -> None:
    c = build_city(seed)
    assert len(c.districts) == 6
    assert all(d.geom.area > 0.05 * sum(x.geom.area for x in c.districts) for d in c.districts)
    for s in c.sensors:
        assert _district(c, s.district_id).geom.contains(s.location)


def test_counts_in_range(city: City) -> None:
    assert len(city.districts) == 6
    assert 200 <= len(city.roads) <= 500
    assert 50 <= len(city.units) <= 80
    assert len(city.depots) == 10
    assert len(city.stock) >= 50
    assert 450 <= len(city.sensors) <= 600
    assert len(city.hazards) >= 15
    assert len(city.sites) >= 25


def test_district_ids_and_names(city: City) -> None:
    ids = [d.id for d in city.districts]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"D-[A-Z]+", i) for i in ids)
    assert "D-XIHU" in ids
    assert all(d.name and d.name_zh for d in city.districts)


def test_districts_tile_the_box_without_overlap(city: City) -> None:
    west, south, east, north = BBOX
    city_box = box(west, south, east, north)
    for d in city.districts:
        assert d.geom.geom_type == "MultiPolygon"
        assert d.geom.is_valid
        # No sliver districts: each holds at least a twentieth of the city.
        assert d.geom.area > city_box.area / 20
    union = unary_union([d.geom for d in city.districts])
    assert union.symmetric_difference(city_box).area < city_box.area * 1e-9
    for i, a in enumerate(city.districts):
        for b in city.districts[i + 1 :]:
            assert a.geom.intersection(b.geom).area < city_box.area * 1e-9, (a.id, b.id)


def test_box_is_about_16_by_12_km_around_hangzhou_latitude() -> None:
    west, south, east, north = BBOX
    mid_lat = (south + north) / 2
    assert distance_m(west, mid_lat, east, mid_lat) == pytest.approx(16_000, rel=0.01)
    assert distance_m(west, south, west, north) == pytest.approx(12_000, rel=0.01)
    assert mid_lat == pytest.approx(30.27, abs=0.01)
    assert (west + east) / 2 == pytest.approx(120.15, abs=0.01)


def _district(city: City, district_id: str) -> District:
    matches = [d for d in city.districts if d.id == district_id]
    assert len(matches) == 1, district_id
    return matches[0]


def _containing(city: City, geom: Point | Polygon) -> list[str]:
    return [d.id for d in city.districts if d.geom.contains(geom)]


def test_every_point_lies_in_its_own_district_only(city: City) -> None:
    located: list[tuple[str, Point, str]] = (
        [(u.id, u.home, u.district_id) for u in city.units]
        + [(d.id, d.location, d.district_id) for d in city.depots]
        + [(s.id, s.location, s.district_id) for s in city.sensors]
    )
    for ident, point, district_id in located:
        assert isinstance(point, Point), ident
        assert _containing(city, point) == [district_id], ident


def test_sites_and_hazards_lie_inside_one_district(city: City) -> None:
    items: list[Site | Hazard] = [*city.sites, *city.hazards]
    for item in items:
        assert item.geom.is_valid, item.id
        assert len(_containing(city, item.geom)) == 1, item.id


def test_ids_are_unique_and_database_safe(city: City) -> None:
    groups = {
        "units": [u.id for u in city.units],
        "depots": [d.id for d in city.depots],
        "sensors": [s.id for s in city.sensors],
        "hazards": [h.id for h in city.hazards],
        "sites": [s.id for s in city.sites],
    }
    for name, ids in groups.items():
        assert len(set(ids)) == len(ids), name
        assert all(DB_ID.match(i) for i in ids), name
    assert all(re.fullmatch(r"S-\d{4}", s.id) for s in city.sensors)
    stock_keys = [(s.depot_id, s.item) for s in city.stock]
    assert len(set(stock_keys)) == len(stock_keys)


def test_sensors_cover_every_kind(city: City) -> None:
    kinds = {s.kind for s in city.sensors}
    assert kinds == set(SENSOR_KINDS)
    assert {s.district_id for s in city.sensors} == {d.id for d in city.districts}


def test_units_are_complete_and_capable(city: City) -> None:
    assert {u.type for u in city.units} == set(UNIT_TYPES)
    for u in city.units:
        assert u.capabilities, u.id
        assert set(u.capabilities) <= set(CAPABILITIES), u.id
        assert u.crew > 0 and u.station and u.callsign, u.id
    by_type = {t: {c for u in city.units if u.type == t for c in u.capabilities} for t in UNIT_TYPES}
    assert "fire_suppression" in by_type["fire_engine"]
    assert "medical" in by_type["ambulance"]
    assert "hazmat" in by_type["hazmat_team"]
    assert "traffic_control" in by_type["police"]
    assert "epidemiology" in by_type["public_health_team"]
    assert "power" in by_type["utility_crew"]
    assert "water_rescue" in by_type["rescue_squad"]
    # Every capability is offered by some unit, or a plan could never be met.
    assert {c for u in city.units for c in u.capabilities} == set(CAPABILITIES)


def test_stock_is_sane(city: City) -> None:
    depot_ids = {d.id for d in city.depots}
    items = {s.item for s in city.stock}
    assert {
        "tents",
        "drinking_water",
        "sandbags",
        "pumps",
        "generators",
        "medical_kits",
        "protective_suits",
    } <= items
    for s in city.stock:
        assert s.depot_id in depot_ids
        assert isinstance(s.quantity, int) and s.quantity >= 0
        assert s.unit
        assert s.expires_on is None or s.expires_on > REFERENCE_DATE
    assert any(s.expires_on is not None for s in city.stock)
    assert any(s.expires_on is None for s in city.stock)


def test_hazards_and_sites_cover_their_kinds(city: City) -> None:
    assert {h.kind for h in city.hazards} == set(HAZARD_KINDS)
    assert {s.kind for s in city.sites} == set(SITE_KINDS)
    assert {h.geom.geom_type for h in city.hazards} == {"Point", "Polygon"}
    for h in city.hazards:
        json.dumps(dict(h.attrs))  # what seed.py does with it
        hash(h)  # attrs is excluded from the hash
    for s in city.sites:
        assert s.name
        assert s.capacity is None or s.capacity >= 0
        assert s.beds is None or s.beds >= 0
    assert all(s.beds for s in city.sites if s.kind == "hospital")


def test_roads_are_a_routable_graph(city: City) -> None:
    speeds = {r.speed_kmh for r in city.roads}
    assert speeds <= {30.0, 50.0, 60.0, 80.0}
    assert {30.0, 50.0, 60.0, 80.0} <= speeds
    assert 0 < sum(r.oneway for r in city.roads) < len(city.roads) // 10
    pairs = [frozenset((r.source, r.target)) for r in city.roads]
    assert len(set(pairs)) == len(pairs), "duplicate edges"
    # Diagonals exist: some edge is much longer than a grid step.
    assert any(r.name == "Tianmushan Road" for r in city.roads)

    for r in city.roads:
        assert r.source != r.target
        (lon1, lat1), (lon2, lat2) = r.geom.coords
        assert r.length_m == pytest.approx(distance_m(lon1, lat1, lon2, lat2), abs=0.1)
        assert 300 < r.length_m < 3_000

    # Edges that share a vertex id meet at the same coordinates.
    where: dict[int, tuple[float, float]] = {}
    for r in city.roads:
        for vertex, coords in ((r.source, r.geom.coords[0]), (r.target, r.geom.coords[-1])):
            assert where.setdefault(vertex, coords) == coords, vertex

    # Strongly connected: every vertex reaches every other one driving legally.
    forward: dict[int, set[int]] = {v: set() for v in where}
    backward: dict[int, set[int]] = {v: set() for v in where}
    for r in city.roads:
        forward[r.source].add(r.target)
        backward[r.target].add(r.source)
        if not r.oneway:
            forward[r.target].add(r.source)
            backward[r.source].add(r.target)
    start = next(iter(where))
    assert _reach(forward, start) == set(where)
    assert _reach(backward, start) == set(where)


def _reach(adjacency: dict[int, set[int]], start: int) -> set[int]:
    seen = {start}
    todo = deque([start])
    while todo:
        for nxt in adjacency[todo.popleft()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_everything_is_inside_the_box(city: City) -> None:
    west, south, east, north = BBOX
    city_box = box(west, south, east, north).buffer(1e-9)
    geoms = (
        [r.geom for r in city.roads]
        + [u.home for u in city.units]
        + [s.geom for s in city.sites]
        + [h.geom for h in city.hazards]
    )
    assert all(city_box.contains(g) for g in geoms)


def test_alarm_vocabulary_matches_the_contract() -> None:
    assert set(ALARM_KINDS) == CONTRACT_ALARM_KINDS
    for kind in SENSOR_KINDS:
        kinds = sensor_alarm_kinds(kind)
        assert kinds and set(kinds) <= CONTRACT_ALARM_KINDS, kind
        assert len(set(kinds)) == len(kinds)
    assert sensor_alarm_kinds("no-such-kind") == ("other",)
    assert "fire" in sensor_alarm_kinds("smoke")
    assert "gas_leak" in sensor_alarm_kinds("gas")
    assert "earthquake" in sensor_alarm_kinds("seismic")


def test_domain_types_validate_themselves(city: City) -> None:
    from dataclasses import replace

    with pytest.raises(ValueError):
        replace(city.stock[0], quantity=-1)
    with pytest.raises(ValueError):
        replace(city.roads[0], length_m=0.0)
    with pytest.raises(ValueError):
        replace(city.units[0], capabilities=("teleport",))
    with pytest.raises(ValueError):
        replace(city.sensors[0], kind="thermometer")
    with pytest.raises(AttributeError):
        city.units[0].crew = 3  # type: ignore[misc]  # deliberately writes a frozen field
