"""The pure rules of dispatch: progress steps, supplies, incident lifecycle, request parsing, plan tasks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from command.incidents import ENDED, STATUSES, InvalidStatusChange, next_status
from dispatch.orders import BadRequest, parse_request
from dispatch.plans import parse_plans
from dispatch.progress import (
    ACTIVE,
    DISPATCH_STATES,
    FIELD_REPORTS,
    FINAL,
    InvalidTransition,
    cancel_step,
    field_step,
    task_step,
)
from dispatch.tasks import Site, plan_tasks
from sensors.alarms import DISPATCH_REPORTS, UNIT_STATUSES

PLANS = parse_plans((Path(__file__).resolve().parents[2] / "dispatch" / "plans.toml").read_text())
NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def test_the_mqtt_contract_accepts_exactly_the_field_reports() -> None:
    assert set(DISPATCH_REPORTS) == FIELD_REPORTS
    assert set(DISPATCH_STATES) == ACTIVE | FINAL and not ACTIVE & FINAL


def test_the_happy_path_moves_unit_and_supplies() -> None:
    steps = [field_step("dispatched", "acknowledged")]
    steps.append(field_step("acknowledged", "en_route"))
    steps.append(field_step("en_route", "on_scene"))
    steps.append(field_step("on_scene", "cleared"))
    assert [(s.status, s.unit_status, s.requisitions_to) for s in steps] == [
        ("acknowledged", "dispatched", "committed"),
        ("en_route", "en_route", "committed"),
        ("on_scene", "on_scene", "delivered"),
        ("cleared", "available", "delivered"),
    ]
    assert all(s.unit_status in UNIT_STATUSES for s in steps)


@pytest.mark.parametrize(
    ("current", "requested", "message"),
    [
        ("dispatched", "cleared", "a dispatch that is dispatched cannot become cleared"),
        ("on_scene", "en_route", "a dispatch that is on_scene cannot become en_route"),
        ("acknowledged", "declined", "a dispatch that is acknowledged cannot become declined"),
        ("cleared", "on_scene", "the dispatch is already cleared"),
        ("dispatched", "parked", "unknown dispatch status 'parked'"),
        ("dispatched", "declined", "declining needs a reason"),
    ],
)
def test_invalid_steps_say_why(current: str, requested: str, message: str) -> None:
    with pytest.raises(InvalidTransition, match=message):
        field_step(current, requested)


def test_skipping_ahead_is_allowed_but_not_going_back() -> None:
    assert field_step("dispatched", "on_scene").requisitions_to == "delivered"
    assert field_step("dispatched", "declined", "engine fault").requisitions_to == "released"
    assert cancel_step("en_route").requisitions_from == {"requested", "committed"}
    with pytest.raises(InvalidTransition):
        cancel_step("declined")


def test_tasks() -> None:
    assert task_step("open", "in_progress", None) == "in_progress"
    assert task_step("in_progress", "done", "all out") == "done"
    with pytest.raises(InvalidTransition, match="needs a result"):
        task_step("open", "failed", " ")
    with pytest.raises(InvalidTransition, match="already done"):
        task_step("done", "cancelled", None)
    with pytest.raises(InvalidTransition, match="cannot go back"):
        task_step("in_progress", "open", None)


def test_incident_lifecycle() -> None:
    assert next_status("new", "confirmed", None) == "confirmed"
    assert next_status("responding", "false_alarm", "burnt toast") == "false_alarm"
    assert next_status("resolved", "closed", None) == "closed"
    assert next_status("closed", "reopen", "flare-up") == "confirmed"
    with pytest.raises(InvalidStatusChange, match="needs a reason"):
        next_status("new", "cancelled", None)
    with pytest.raises(InvalidStatusChange, match="only an ended incident"):
        next_status("responding", "reopen", "why")
    with pytest.raises(InvalidStatusChange, match="can become: nothing"):
        next_status("closed", "responding", None)
    # Every ended status can only be left by reopening.
    for status in ENDED - {"resolved"}:
        for target in STATUSES:
            with pytest.raises(InvalidStatusChange):
                next_status(status, target, "r")


def test_parse_request() -> None:
    request = parse_request(
        {
            "units": ["U-1", {"id": "U-2", "capability": "medical"}],
            "supplies": [{"depot_id": "D", "item": "blankets", "quantity": 5, "unit_id": "U-2"}],
        }
    )
    assert [u.unit_id for u in request.units] == ["U-1", "U-2"]
    assert request.units[1].capability == "medical"
    assert request.supplies[0].carrier == "U-2"
    assert (
        parse_request({"units": ["U-1"], "supplies": [{"depot_id": "D", "item": "x", "quantity": 1}]})
        .supplies[0]
        .carrier
        == "U-1"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "must be a JSON object"),
        ({"units": []}, "units must be a list of 1 to 50"),
        ({"units": ["U 1"]}, r"units\[0\] must be an identifier"),
        ({"units": ["U-1", "U-1"]}, "listed twice"),
        ({"units": ["U-1"], "extra": 1}, "unknown field 'extra'"),
        ({"units": ["U-1"], "supplies": [{"depot_id": "D", "item": "x", "quantity": 0}]}, "quantity must be"),
        (
            {"units": ["U-1"], "supplies": [{"depot_id": "D", "item": "x", "quantity": True}]},
            "quantity must be",
        ),
        (
            {"units": ["U-1"], "supplies": [{"depot_id": "D", "item": "x", "quantity": 1, "unit_id": "U-9"}]},
            "is not one of the units dispatched",
        ),
    ],
)
def test_bad_requests_name_the_field(body: object, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_request(body)


def test_plan_becomes_tasks() -> None:
    plan = PLANS.plan_for("flood", "Severe")
    sites = [Site("H-1", "hospital", "City Hospital"), Site("P-1", "park", "Riverside Park")]
    tasks = plan_tasks(plan, sites, NOW)
    keys = [t.key for t in tasks]
    assert keys == [f"supply:{s.item}" for s in plan.supplies] + ["roads", "site:H-1", "plan:0", "plan:1"]
    by_key = {t.key: t for t in tasks}
    assert by_key["site:H-1"].title == "Warn and protect City Hospital"
    assert by_key["plan:0"].title == "Close flooded underpasses"
    assert by_key["plan:0"].due_at == NOW + timedelta(seconds=600)
    # Same input, same keys: the database's UNIQUE (incident_id, plan_key) makes a retry a no-op.
    assert [t.key for t in plan_tasks(plan, sites, NOW + timedelta(hours=1))] == keys
