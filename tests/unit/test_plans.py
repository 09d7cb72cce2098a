"""Response plans: the shipped file, tier selection, escalation and validation."""

from __future__ import annotations

import itertools
import re

import pytest

from command import demo_city
from dispatch.plans import (
    DEFAULT_PLANS_PATH,
    SEVERITY_ORDER,
    Plan,
    PlanError,
    Plans,
    RoadClosure,
    SupplyNeed,
    UnitNeed,
    parse_plans,
)
from dispatch.units import CAPABILITIES, CAPABILITIES_OF_TYPE, CAPABILITY_NOUNS, SUPPLY_ITEMS, UNIT_TYPES
from sensors.alarms import CATEGORY_OF_KIND, KINDS, SEVERITIES

PLANS = parse_plans(DEFAULT_PLANS_PATH.read_text())
TENTS = '{ item = "tents", quantity = 1, unit = "pcs" }'


def entry(kind: str, severity: str = "Unknown", **fields: str) -> str:
    """One [plans.KIND.SEVERITY] table; ``fields`` replace the defaults (TOML values as text)."""
    body = {
        "units": "{ search = 1 }",
        "supplies": "[]",
        "radius_m": "100",
        "closes_roads": "false",
        "ack_deadline_s": "120",
        "max_eta_s": "900",
    }
    body.update(fields)
    lines = [f"[plans.{kind}.{severity}]"] + [f"{k} = {v}" for k, v in body.items() if v != "OMIT"]
    return "\n".join(lines) + "\n"


def minimal(*, skip: str = "", **fields: str) -> str:
    """A valid file: one Unknown tier per kind, except ``skip``; ``fields`` change fire's."""
    return "\n".join(entry(k, **(fields if k == "fire" else {})) for k in sorted(KINDS) if k != skip)


# --- The shipped plans ---------------------------------------------------------


def test_shipped_plans_cover_every_kind_with_an_unknown_tier() -> None:
    kinds = {p.kind for p in PLANS.plans}
    assert kinds == KINDS
    for kind in KINDS:
        assert PLANS.tiers(kind)[0].min_severity == "Unknown"


def test_shipped_plans_cover_all_four_classes() -> None:
    classes = {CATEGORY_OF_KIND[p.kind] for p in PLANS.plans}
    assert classes == {"natural_disaster", "accident", "public_health", "public_security"}


def test_every_kind_and_severity_has_a_plan() -> None:
    for kind in KINDS:
        for severity in SEVERITIES:
            plan = PLANS.plan_for(kind, severity)
            assert plan.kind == kind
            assert SEVERITY_ORDER.index(plan.min_severity) <= SEVERITY_ORDER.index(severity)


def test_shipped_plans_escalate() -> None:
    # Every tier needs at least what the one below needs; and each kind's
    # tiers grow strictly somewhere, otherwise escalation would be invisible.
    for kind in KINDS:
        tiers = PLANS.tiers(kind)
        assert len(tiers) >= 2, f"{kind} has a single tier"
        for lower, higher in itertools.pairwise(tiers):
            for need in lower.units:
                assert higher.unit_count(need.capability) >= need.count, (higher.name, need)
            for supply in lower.supplies:
                assert higher.supply_quantity(supply.item) >= supply.quantity, (higher.name, supply)
            assert higher.radius_m >= lower.radius_m
            assert higher.closes_roads or not lower.closes_roads
            assert sum(n.count for n in higher.units) + sum(s.quantity for s in higher.supplies) > sum(
                n.count for n in lower.units
            ) + sum(s.quantity for s in lower.supplies)
        lowest, highest = tiers[0], tiers[-1]
        assert sum(n.count for n in highest.units) > sum(n.count for n in lowest.units), kind


def test_shipped_plans_are_sane() -> None:
    for plan in PLANS.plans:
        assert 300 <= plan.max_eta_s <= 1800, plan.name
        assert 30 <= plan.ack_deadline_s <= 600, plan.name
        assert plan.radius_m <= 20_000, plan.name


def test_roads_close_for_the_kinds_that_block_them() -> None:
    for kind in ("flood", "structure_collapse", "hazmat", "landslide", "gas_leak"):
        assert all(p.closes_roads for p in PLANS.tiers(kind)), kind
    for kind in ("medical", "air_quality", "smoke"):
        assert not any(p.closes_roads for p in PLANS.tiers(kind)), kind


def test_road_closures_are_exactly_the_severities_whose_plan_closes_roads() -> None:
    closures = PLANS.road_closures()
    pairs = {(c.kind, c.severity) for c in closures}
    for kind in KINDS:
        for severity in SEVERITY_ORDER:
            plan = PLANS.plan_for(kind, severity)
            assert ((kind, severity) in pairs) is plan.closes_roads, (kind, severity)
    for closure in closures:
        assert closure.radius_m == PLANS.plan_for(closure.kind, closure.severity).radius_m
    assert len(pairs) == len(closures)
    assert list(closures) == sorted(closures, key=lambda c: (c.kind, c.severity))
    # The case that used to go wrong: a fire closes roads from Severe up, not below.
    assert ("fire", "Moderate") not in pairs and ("fire", "Severe") in pairs


def test_road_closures_follow_the_tiers_of_a_plans_file() -> None:
    text = minimal(radius_m="120") + entry(
        "fire", "Severe", units="{ search = 2 }", radius_m="400", closes_roads="true"
    )
    fire = [c for c in parse_plans(text).road_closures() if c.kind == "fire"]
    # Severe and Extreme (served by the Severe tier) close within 400 m; Unknown to Moderate close nothing.
    assert fire == [RoadClosure("fire", "Extreme", 400.0), RoadClosure("fire", "Severe", 400.0)]


def test_plans_use_the_demo_city_vocabulary() -> None:
    # dispatch may not import command; until demo_city imports dispatch.units,
    # this keeps the two copies of the vocabulary equal.
    assert demo_city.CAPABILITIES == CAPABILITIES
    assert demo_city.UNIT_TYPES == UNIT_TYPES
    assert set(CAPABILITY_NOUNS) == set(CAPABILITIES)
    city = demo_city.build_city()
    for unit in city.units:
        assert unit.capabilities == CAPABILITIES_OF_TYPE[unit.type], unit.id
    assert {(s.item, s.unit) for s in city.stock} == set(SUPPLY_ITEMS.items())
    # Every capability a plan asks for exists in the demo city.
    city_capabilities = {c for u in city.units for c in u.capabilities}
    for plan in PLANS.plans:
        for need in plan.units:
            assert need.capability in city_capabilities, (plan.name, need.capability)


# --- Tier selection --------------------------------------------------------------


def test_minor_uses_the_base_tier_and_extreme_the_top_one() -> None:
    minor = PLANS.plan_for("fire", "Minor")
    extreme = PLANS.plan_for("fire", "Extreme")
    assert minor.name == "fire/Unknown"
    assert extreme.name == "fire/Extreme"
    assert extreme.unit_count("fire_suppression") > minor.unit_count("fire_suppression")
    assert PLANS.plan_for("fire", "Unknown") is minor


def test_tier_is_the_highest_not_above_the_severity() -> None:
    plans = parse_plans(minimal() + entry("fire", "Severe", units="{ search = 3 }"))
    assert plans.plan_for("fire", "Unknown").name == "fire/Unknown"
    assert plans.plan_for("fire", "Minor").name == "fire/Unknown"
    assert plans.plan_for("fire", "Moderate").name == "fire/Unknown"
    assert plans.plan_for("fire", "Severe").name == "fire/Severe"
    assert plans.plan_for("fire", "Extreme").name == "fire/Severe"


def test_plan_for_rejects_unknown_kind_and_severity() -> None:
    with pytest.raises(ValueError, match="'volcano' is not an alarm kind"):
        PLANS.plan_for("volcano", "Severe")
    with pytest.raises(ValueError, match="'Critical' is not a CAP severity"):
        PLANS.plan_for("fire", "Critical")


def test_plan_name_and_lookups() -> None:
    plan = PLANS.plan_for("flood", "Severe")
    assert plan.name == "flood/Severe"
    assert plan.unit_count("water_rescue") == 3
    assert plan.unit_count("epidemiology") == 0
    assert plan.supply_quantity("sandbags") == 3000
    assert plan.supply_quantity("n95_masks") == 0
    assert plan.units[0].capability == "water_rescue"  # file order kept


def test_supplies_are_parsed() -> None:
    plans = parse_plans(
        minimal(supplies='[{ item = "sandbags", quantity = 200, unit = "bags" }]')
        + entry(
            "fire",
            "Severe",
            units="{ search = 1 }",
            supplies='[{ item = "sandbags", quantity = 300, unit = "bags" }]',
        )
    )
    assert plans.plan_for("fire", "Minor").supplies == (SupplyNeed("sandbags", 200, "bags"),)
    assert plans.plan_for("fire", "Extreme").supply_quantity("sandbags") == 300


def test_supplies_may_be_omitted() -> None:
    plans = parse_plans(minimal(supplies="OMIT"))
    assert plans.plan_for("fire", "Unknown").supplies == ()


# --- Validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (minimal(skip="flood"), "no plan with min_severity 'Unknown' for kinds: flood"),
        (
            minimal(units="{ fire_fighting = 1 }"),
            "plan fire/Unknown: units.fire_fighting: not a known capability",
        ),
        (
            minimal(units="{ search = 0 }"),
            "plan fire/Unknown: units.search: count must be a positive integer",
        ),
        (
            minimal(units="{ search = 1.5 }"),
            "plan fire/Unknown: units.search: count must be a positive integer",
        ),
        (
            minimal(units="{ search = true }"),
            "plan fire/Unknown: units.search: count must be a positive integer",
        ),
        (minimal(units="{}"), "plan fire/Unknown: units: needs at least one unit"),
        (minimal(units="[1]"), "plan fire/Unknown: units must be a table"),
        (
            minimal(supplies='[{ item = "sandbags", quantity = -5, unit = "bags" }]'),
            "plan fire/Unknown: supplies.sandbags: quantity must be a positive integer",
        ),
        (
            minimal(supplies='[{ item = "sandbags", quantity = 5, unit = "pcs" }]'),
            "plan fire/Unknown: supplies.sandbags: unit 'pcs', but sandbags is counted in 'bags'",
        ),
        (
            minimal(supplies='[{ item = "sand", quantity = 5, unit = "bags" }]'),
            "plan fire/Unknown: supplies.sand: not a known supply item",
        ),
        (
            minimal(supplies='[{ item = "sandbags", quantity = 5 }]'),
            "plan fire/Unknown: supplies[0]: missing or unknown field 'unit'",
        ),
        (
            minimal(supplies=f"[{TENTS}, {TENTS}]"),
            "plan fire/Unknown: supplies.tents: listed twice",
        ),
        (minimal(supplies='"tents"'), "plan fire/Unknown: supplies must be an array"),
        (minimal(radius_m="0"), "plan fire/Unknown: radius_m must be positive"),
        (minimal(radius_m="nan"), "plan fire/Unknown: radius_m must be a finite number"),
        (minimal(radius_m='"far"'), "plan fire/Unknown: radius_m must be a finite number"),
        (minimal(closes_roads='"yes"'), "plan fire/Unknown: closes_roads must be true or false"),
        (minimal(ack_deadline_s="0"), "plan fire/Unknown: ack_deadline_s must be a positive integer"),
        (minimal(max_eta_s="-60"), "plan fire/Unknown: max_eta_s must be a positive integer"),
        (minimal(max_eta_s="90.5"), "plan fire/Unknown: max_eta_s must be a positive integer"),
        (minimal(max_eta="900"), "plan fire/Unknown: unknown field 'max_eta'"),
        (minimal(radius_m="OMIT"), "plan fire/Unknown: missing field 'radius_m'"),
        (minimal() + entry("fire", "Critical"), "plan fire/Critical: min_severity 'Critical' is not one of"),
        (minimal() + entry("volcano"), "plans.volcano: 'volcano' is not an alarm kind"),
        (minimal() + "[fire]\nunits = 1\n", "plans file: unknown top-level key 'fire'"),
        # TOML itself refuses a table defined twice, naming it.
        (minimal() + entry("fire"), "plans file: Cannot declare ('plans', 'fire', 'Unknown') twice"),
        ("[plans.fire.Unknown\n", "plans file: "),
    ],
)
def test_invalid_plans_name_the_entry_and_field(text: str, message: str) -> None:
    with pytest.raises(PlanError, match=re.escape(message)):
        parse_plans(text)


@pytest.mark.parametrize(
    ("severe", "message"),
    [
        ({"units": "{ search = 2 }"}, "plan fire/Severe: needs no more units or supplies than fire/Unknown"),
        (
            {"units": "{ medical = 5 }"},
            "plan fire/Severe: units.search: needs 0, fewer than the 2 of fire/Unknown",
        ),
        ({"radius_m": "50"}, "plan fire/Severe: radius_m 50 is smaller than the 100 of fire/Unknown"),
        ({"supplies": "[]"}, "plan fire/Severe: supplies.tents: needs 0, less than the 5 of fire/Unknown"),
    ],
)
def test_a_higher_tier_must_not_need_less(severe: dict[str, str], message: str) -> None:
    base = minimal(units="{ search = 2 }", supplies='[{ item = "tents", quantity = 5, unit = "pcs" }]')
    fields = {"units": "{ search = 3 }", "supplies": '[{ item = "tents", quantity = 5, unit = "pcs" }]'}
    fields.update(severe)
    with pytest.raises(PlanError, match=re.escape(message)):
        parse_plans(base + entry("fire", "Severe", **fields))


def test_a_higher_tier_must_not_reopen_roads() -> None:
    text = minimal(closes_roads="true") + entry(
        "fire", "Severe", units="{ search = 2 }", closes_roads="false"
    )
    with pytest.raises(
        PlanError, match="plan fire/Severe: closes_roads is false but fire/Unknown closes roads"
    ):
        parse_plans(text)


def test_duplicate_plans_are_refused() -> None:
    base = PLANS.plan_for("fire", "Unknown")
    with pytest.raises(PlanError, match="plan fire/Unknown: defined twice"):
        Plans((*PLANS.plans, base))


def test_plan_validates_itself() -> None:
    need = (UnitNeed("search", 1),)
    with pytest.raises(PlanError, match="plan volcano/Unknown: 'volcano' is not an alarm kind"):
        Plan("volcano", "Unknown", need, (), 100.0, False, 60, 600)
    with pytest.raises(PlanError, match=re.escape("plan fire/Unknown: units.search: listed twice")):
        Plan("fire", "Unknown", need * 2, (), 100.0, False, 60, 600)
    with pytest.raises(PlanError, match=re.escape("units.search: count must be a positive integer")):
        UnitNeed("search", -1)


def test_capability_vocabulary_can_be_passed_in() -> None:
    text = minimal(units="{ drone = 1 }")
    with pytest.raises(PlanError, match=re.escape("units.drone: not a known capability")):
        parse_plans(text)
    plans = parse_plans(text, capabilities={*CAPABILITIES, "drone"})
    assert plans.plan_for("fire", "Severe").units == (UnitNeed("drone", 1),)


def test_plan_error_is_a_value_error() -> None:
    assert issubclass(PlanError, ValueError)
