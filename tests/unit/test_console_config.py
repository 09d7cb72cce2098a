"""GET /api/config's body: tile settings, SLA targets and the low-stock lines (no server)."""

from __future__ import annotations

import pytest

from command import settings as settings_mod
from command.console_api import console_config, stock_minimums
from dispatch.plans import DEFAULT_PLANS_PATH, parse_plans

PLANS = parse_plans(DEFAULT_PLANS_PATH.read_text())


def test_stock_minimums_are_the_largest_need_up_to_severe() -> None:
    lines = stock_minimums(PLANS)
    expected: dict[str, int] = {}
    for plan in PLANS.plans:
        if plan.min_severity == "Extreme":
            continue
        for need in plan.supplies:
            expected[need.item] = max(expected.get(need.item, 0), need.quantity)
    assert lines == expected
    assert list(lines) == sorted(lines)
    # The shipped plans: a Severe fire wants 200 blankets, a Severe flood 500.
    assert lines["blankets"] == 500
    # Extreme tiers are left out: they ask for more than a district holds on purpose.
    extreme = max(
        n.quantity
        for p in PLANS.plans
        if p.min_severity == "Extreme"
        for n in p.supplies
        if n.item == "blankets"
    )
    assert extreme > lines["blankets"]


def test_stock_minimums_follow_the_reference_tier() -> None:
    assert stock_minimums(PLANS, "Moderate")["blankets"] == 50
    assert stock_minimums(PLANS, "Unknown") == {"protective_suits": 10, "pumps": 1, "sandbags": 200}
    with pytest.raises(ValueError):
        stock_minimums(PLANS, "Catastrophic")


def test_config_carries_tiles_and_targets() -> None:
    settings = settings_mod.load(
        {
            "EMERGENCY_TILE_URL": " https://tiles.example.org/{z}/{x}/{y}.png ",
            "EMERGENCY_TILE_ATTRIBUTION": "© Example tiles",
            "EMERGENCY_SLA_DISPATCH_S": "45",
            "EMERGENCY_INSTANCE": "unit-test",
        }
    )
    body = console_config(settings, PLANS)
    assert body["tile_url"] == "https://tiles.example.org/{z}/{x}/{y}.png"
    assert body["tile_attribution"] == "© Example tiles"
    assert body["sla"] == {"dispatch_s": 45, "turnout_s": 80, "travel_s": 240, "goal": 0.9}
    assert body["position_max_age_s"] == 900
    assert body["stock_minimums"] == stock_minimums(PLANS)
    assert body["stock_reference_severity"] == "Severe"


def test_no_tile_url_means_the_offline_basemap() -> None:
    body = console_config(settings_mod.load({"EMERGENCY_INSTANCE": "unit-test"}), PLANS)
    assert body["tile_url"] is None and body["tile_attribution"] is None


@pytest.mark.parametrize(
    "url",
    [
        "tiles.example.org/{z}/{x}/{y}.png",  # no scheme: the browser would read it as a relative path
        "https://tiles.example.org/{z}/{x}.png",  # no {y}
        "javascript:alert(1)//{z}{x}{y}",
    ],
)
def test_a_malformed_tile_url_stops_the_server(url: str) -> None:
    with pytest.raises(ValueError, match="EMERGENCY_TILE_URL"):
        settings_mod.load({"EMERGENCY_TILE_URL": url, "EMERGENCY_INSTANCE": "unit-test"})


def test_a_path_on_this_server_is_a_tile_url() -> None:
    env = {"EMERGENCY_TILE_URL": "/tiles/{z}/{x}/{y}.png", "EMERGENCY_INSTANCE": "unit-test"}
    loaded = settings_mod.load(env)
    assert loaded.tile_url == "/tiles/{z}/{x}/{y}.png"
