"""Ranking units and depots into a recommendation."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from command import demo_city
from dispatch.planner import (
    DepotStock,
    Recommendation,
    Shortfall,
    UnitCandidate,
    recommend,
    recommendation_to_wire,
)
from dispatch.plans import DEFAULT_PLANS_PATH, Plan, SupplyNeed, UnitNeed, parse_plans
from dispatch.units import CAPABILITIES

PLANS = parse_plans(DEFAULT_PLANS_PATH.read_text())


def unit(
    uid: str, *caps: str, eta: float | None = 100.0, distance: float | None = None, utype: str = "fire_engine"
) -> UnitCandidate:
    if distance is None:
        distance = (eta or 10_000.0) * 10.0
    return UnitCandidate(uid, f"Callsign {uid}", utype, frozenset(caps), distance, eta)


def depot(
    did: str,
    item: str,
    quantity: int,
    *,
    eta: float | None = 300.0,
    unit_: str = "bags",
    distance: float = 3000.0,
) -> DepotStock:
    return DepotStock(did, f"Depot {did}", item, quantity, unit_, distance, eta)


def plan(units: dict[str, int], supplies: tuple[SupplyNeed, ...] = (), *, max_eta_s: int = 1800) -> Plan:
    return Plan(
        kind="fire",
        min_severity="Unknown",
        units=tuple(UnitNeed(c, n) for c, n in units.items()),
        supplies=supplies,
        radius_m=200.0,
        closes_roads=False,
        ack_deadline_s=90,
        max_eta_s=max_eta_s,
    )


def chosen_ids(rec: Recommendation, capability: str) -> list[str]:
    return [u.id for a in rec.assignments if a.capability == capability for u in a.chosen]


def alternate_ids(rec: Recommendation, capability: str) -> list[str]:
    return [u.id for a in rec.assignments if a.capability == capability for u in a.alternates]


# --- Ranking ------------------------------------------------------------------------


def test_units_are_ranked_by_eta() -> None:
    units = [unit("C", "medical", eta=300), unit("A", "medical", eta=500), unit("B", "medical", eta=100)]
    rec = recommend(plan({"medical": 2}), units, [])
    assert chosen_ids(rec, "medical") == ["B", "C"]
    assert alternate_ids(rec, "medical") == ["A"]


def test_eta_ties_break_by_distance_then_id() -> None:
    units = [
        unit("Z", "medical", eta=200, distance=900),
        unit("Y", "medical", eta=200, distance=1500),
        unit("B", "medical", eta=200, distance=1500),
        unit("A", "medical", eta=250, distance=100),
    ]
    rec = recommend(plan({"medical": 2}), units, [])
    assert chosen_ids(rec, "medical") == ["Z", "B"]
    assert alternate_ids(rec, "medical") == ["Y", "A"]


def test_unreachable_units_are_never_chosen_nor_offered() -> None:
    units = [unit("CUT", "hazmat", eta=None, distance=50), unit("FAR", "hazmat", eta=1500)]
    rec = recommend(plan({"hazmat": 2}), units, [])
    assert chosen_ids(rec, "hazmat") == ["FAR"]
    assert alternate_ids(rec, "hazmat") == []
    assert rec.shortfalls[0].key == "hazmat"


def test_a_two_capability_unit_goes_to_the_scarce_capability() -> None:
    # X is nearest for both; rescue is listed first, so taking needs in plan
    # order would spend X on rescue and leave hazmat empty.
    units = [unit("X", "hazmat", "rescue", eta=100), unit("Y", "rescue", eta=200)]
    rec = recommend(plan({"rescue": 1, "hazmat": 1}), units, [])
    assert chosen_ids(rec, "hazmat") == ["X"]
    assert chosen_ids(rec, "rescue") == ["Y"]
    assert rec.complete


def test_a_multi_capable_unit_is_moved_when_that_fills_a_need() -> None:
    # Hazmat has fewer candidates, so it picks first and takes H1, the nearest;
    # then rescue would be one short. Moving H1 to rescue and H2 to hazmat
    # meets both needs.
    units = [
        unit("H1", "hazmat", "rescue", eta=100),
        unit("H2", "hazmat", eta=400),
        unit("H3", "hazmat", eta=500),
        unit("R1", "rescue", eta=150),
        unit("R2", "rescue", eta=160),
        unit("R3", "rescue", eta=170),
        unit("R4", "rescue", eta=None),  # reachable candidates of rescue: 4
    ]
    rec = recommend(plan({"hazmat": 1, "rescue": 4}), units, [])
    assert chosen_ids(rec, "hazmat") == ["H2"]
    assert chosen_ids(rec, "rescue") == ["H1", "R1", "R2", "R3"]
    assert rec.complete


def test_each_assignment_lists_the_plan_order_and_counts() -> None:
    units = [unit(f"E{i}", "fire_suppression", "rescue", eta=100 + i) for i in range(6)]
    rec = recommend(plan({"fire_suppression": 3, "rescue": 1}), units, [], alternates=1)
    assert [(a.capability, a.needed, len(a.chosen)) for a in rec.assignments] == [
        ("fire_suppression", 3, 3),
        ("rescue", 1, 1),
    ]
    # Alternates are never chosen elsewhere, and may be shared between capabilities.
    assert alternate_ids(rec, "fire_suppression") == alternate_ids(rec, "rescue") == ["E4"]
    assert rec.unit_ids == ("E0", "E1", "E2", "E3")


def test_alternates_can_be_turned_off() -> None:
    units = [unit(f"M{i}", "medical", eta=100 + i) for i in range(5)]
    rec = recommend(plan({"medical": 1}), units, [], alternates=0)
    assert alternate_ids(rec, "medical") == []
    with pytest.raises(ValueError, match="alternates"):
        recommend(plan({"medical": 1}), units, [], alternates=-1)


def test_a_unit_listed_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="'A' is listed twice"):
        recommend(plan({"medical": 1}), [unit("A", "medical"), unit("A", "medical", eta=5)], [])


def test_candidates_validate_themselves() -> None:
    with pytest.raises(ValueError, match="eta_s"):
        unit("A", "medical", eta=-1, distance=10)
    with pytest.raises(ValueError, match="distance_m"):
        UnitCandidate("A", "A", "ambulance", frozenset({"medical"}), float("nan"), 10.0)
    with pytest.raises(ValueError, match="quantity"):
        depot("D", "sandbags", -1)


# --- Shortfalls ---------------------------------------------------------------------


def test_unit_shortfall_when_too_few_can_be_found() -> None:
    units = [unit("H1", "hazmat", eta=600)]
    rec = recommend(plan({"hazmat": 2}), units, [])
    assert rec.shortfalls == (
        Shortfall(
            "units", "hazmat", 2, 1, "needs 2 hazmat teams, 1 available within 30 min; 1 cannot be found"
        ),
    )
    assert not rec.complete


def test_unit_shortfall_when_none_can_be_found() -> None:
    rec = recommend(plan({"water_rescue": 1}), [unit("X", "medical")], [])
    assert (
        rec.shortfalls[0].message
        == "needs 1 water rescue unit, none available within 30 min; none can be found"
    )
    assert rec.assignments[0].chosen == ()


def test_late_units_are_chosen_but_reported_short() -> None:
    # Better late than never: the 42-minute unit is recommended, and the
    # shortfall says it arrives after the plan's 30 minutes.
    units = [unit("H1", "hazmat", eta=600), unit("H2", "hazmat", eta=42 * 60 - 30)]
    rec = recommend(plan({"hazmat": 2}, max_eta_s=1800), units, [])
    assert chosen_ids(rec, "hazmat") == ["H1", "H2"]
    (shortfall,) = rec.shortfalls
    assert (shortfall.needed, shortfall.available) == (2, 1)
    assert (
        shortfall.message
        == "needs 2 hazmat teams, 1 available within 30 min; 1 more can arrive, the last in 42 min"
    )


def test_no_shortfall_when_every_need_arrives_in_time() -> None:
    units = [unit("H1", "hazmat", eta=1800)]  # exactly at max_eta_s counts
    rec = recommend(plan({"hazmat": 1}, max_eta_s=1800), units, [])
    assert rec.shortfalls == ()
    assert rec.complete


# --- Supplies -----------------------------------------------------------------------


def test_supplies_split_across_depots_nearest_first() -> None:
    need = (SupplyNeed("sandbags", 500, "bags"),)
    depots = [
        depot("FAR", "sandbags", 1000, eta=900),
        depot("NEAR", "sandbags", 200, eta=100),
        depot("MID", "sandbags", 250, eta=400),
        depot("OTHER", "tents", 99, eta=50, unit_="pcs"),
    ]
    rec = recommend(plan({"medical": 1}, need), [unit("A", "medical")], depots)
    (supply,) = rec.supplies
    assert [(s.depot_id, q) for s, q in supply.sources] == [("NEAR", 200), ("MID", 250), ("FAR", 50)]
    assert supply.filled == 500
    assert all(f.what != "supplies" for f in rec.shortfalls)


def test_supply_shortfall_counts_only_reachable_stock_in_the_right_unit() -> None:
    need = (SupplyNeed("sandbags", 200, "bags"),)
    depots = [
        depot("A", "sandbags", 70, eta=100),
        depot("B", "sandbags", 50, eta=200),
        depot("CUT", "sandbags", 900, eta=None),
        depot("ODD", "sandbags", 400, eta=50, unit_="kg"),  # another unit cannot be added
        depot("EMPTY", "sandbags", 0, eta=10),
    ]
    rec = recommend(plan({"medical": 1}, need), [unit("M", "medical")], depots)
    (supply,) = rec.supplies
    assert [(s.depot_id, q) for s, q in supply.sources] == [("A", 70), ("B", 50)]
    (shortfall,) = rec.shortfalls
    assert (shortfall.what, shortfall.key, shortfall.needed, shortfall.available) == (
        "supplies",
        "sandbags",
        200,
        120,
    )
    assert (
        shortfall.message
        == "needs 200 sandbags, 120 in stock within reach (900 more at depots no road reaches)"
    )


def test_supply_shortfall_message_for_a_measured_item() -> None:
    need = (SupplyNeed("drinking_water", 2000, "L"),)
    rec = recommend(plan({"medical": 1}, need), [unit("M", "medical")], [])
    assert rec.shortfalls[-1].message == "needs 2000 L of drinking water, 0 in stock within reach"
    assert rec.supplies[0].sources == ()


# --- Determinism and the wire ----------------------------------------------------------


def test_shuffled_input_gives_the_same_recommendation() -> None:
    rng = random.Random(4)
    units = [
        unit(
            f"U{i:02d}",
            *rng.sample(CAPABILITIES, rng.randint(1, 3)),
            eta=rng.choice([None, 60.0, 120.0, 600.0]),
        )
        for i in range(40)
    ]
    depots = [
        depot(f"D{i}", "sandbags", rng.randint(0, 300), eta=rng.choice([None, 100.0, 200.0]))
        for i in range(8)
    ]
    p = PLANS.plan_for("flood", "Extreme")
    p = Plan(p.kind, p.min_severity, p.units, (SupplyNeed("sandbags", 1000, "bags"),), 1.0, True, 60, 900)
    first = recommend(p, units, depots)
    for _ in range(10):
        rng.shuffle(units)
        rng.shuffle(depots)
        again = recommend(p, units, depots)
        assert again == first
        assert recommendation_to_wire(again) == recommendation_to_wire(first)


def test_wire_form_is_json_with_whole_seconds_and_metres() -> None:
    units = [
        unit("A", "medical", eta=100.6, distance=1234.4),
        unit("B", "medical", eta=2000.2, distance=9000.7),
    ]
    depots = [depot("D", "medical_kits", 3, eta=59.5, unit_="kits", distance=777.7)]
    p = plan({"medical": 1}, (SupplyNeed("medical_kits", 5, "kits"),))
    wire = recommendation_to_wire(recommend(p, units, depots))
    assert json.loads(json.dumps(wire)) == wire
    assert wire["plan"]["name"] == "fire/Unknown"
    chosen = wire["assignments"][0]["chosen"][0]
    assert chosen == {
        "id": "A",
        "callsign": "Callsign A",
        "type": "fire_engine",
        "capabilities": ["medical"],
        "distance_m": 1234,
        "eta_s": 101,
        "late": False,
    }
    assert wire["assignments"][0]["alternates"][0]["late"] is True
    assert wire["supplies"][0]["sources"] == [
        {"depot_id": "D", "name": "Depot D", "quantity": 3, "in_stock": 3, "distance_m": 778, "eta_s": 60}
    ]
    assert wire["supplies"][0]["filled"] == 3
    assert wire["shortfalls"] == [
        {
            "what": "supplies",
            "key": "medical_kits",
            "needed": 5,
            "available": 3,
            "message": "needs 5 medical kits, 3 in stock within reach",
        }
    ]
    assert wire["complete"] is False


def test_every_shipped_plan_runs_against_the_demo_city() -> None:
    # The demo city, routed as the crow flies at 10 m/s from its centre:
    # every plan gives a recommendation whose choices respect the rules.
    city = demo_city.build_city()
    here = (demo_city.CENTER_LON, demo_city.CENTER_LAT)
    units = []
    for u in city.units:
        d = demo_city.distance_m(here[0], here[1], u.home.x, u.home.y)
        units.append(UnitCandidate(u.id, u.callsign, u.type, frozenset(u.capabilities), d, d / 10.0))
    locations = {d.id: d for d in city.depots}
    depots = []
    for s in city.stock:
        loc = locations[s.depot_id].location
        d = demo_city.distance_m(here[0], here[1], loc.x, loc.y)
        depots.append(
            DepotStock(s.depot_id, locations[s.depot_id].name, s.item, s.quantity, s.unit, d, d / 10.0)
        )
    for p in PLANS.plans:
        rec = recommend(p, units, depots)
        ids = rec.unit_ids
        assert len(ids) == len(set(ids)), p.name
        for a in rec.assignments:
            assert all(a.capability in u.capabilities for u in a.chosen)
    # The base tier of a fire in the middle of town is covered in full.
    assert recommend(PLANS.plan_for("fire", "Minor"), units, depots).complete


# --- Properties -------------------------------------------------------------------------

_caps = st.sampled_from(CAPABILITIES[:5])


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Plan, list[UnitCandidate]]:
    needs = draw(st.dictionaries(_caps, st.integers(1, 4), min_size=1, max_size=5))
    n = draw(st.integers(0, 25))
    units = [
        unit(
            f"U{i:02d}",
            *draw(st.sets(_caps, min_size=1, max_size=3)),
            eta=draw(st.one_of(st.none(), st.floats(0, 3600))),
            distance=draw(st.floats(0, 20_000)),
        )
        for i in range(n)
    ]
    return plan(needs, max_eta_s=900), units


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.randoms(use_true_random=False))
def test_chosen_units_are_unique_capable_and_reachable(
    scenario: tuple[Plan, list[UnitCandidate]], rng: random.Random
) -> None:
    p, units = scenario
    rec = recommend(p, units, [])
    ids = [u.id for a in rec.assignments for u in a.chosen]
    assert len(ids) == len(set(ids))
    for a in rec.assignments:
        assert len(a.chosen) <= a.needed
        for u in (*a.chosen, *a.alternates):
            assert a.capability in u.capabilities
            assert u.eta_s is not None
        assert not {u.id for u in a.alternates} & set(ids)
        # An unfilled need leaves no free reachable unit that could fill it.
        if len(a.chosen) < a.needed:
            assert not a.alternates
    rng.shuffle(units)
    assert recommend(p, units, []) == rec


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_as_many_needs_are_filled_as_any_assignment_could(scenario: tuple[Plan, list[UnitCandidate]]) -> None:
    # Compare with a maximum matching found independently (slots x units).
    p, units = scenario
    slots = [n.capability for n in p.units for _ in range(n.count)]
    reachable = [u for u in units if u.eta_s is not None]
    match: dict[str, int] = {}

    def try_slot(s: int, seen: set[str]) -> bool:
        for u in reachable:
            if slots[s] in u.capabilities and u.id not in seen:
                seen.add(u.id)
                if u.id not in match or try_slot(match[u.id], seen):
                    match[u.id] = s
                    return True
        return False

    best = sum(try_slot(s, set()) for s in range(len(slots)))
    assert len(recommend(p, units, []).unit_ids) == best
