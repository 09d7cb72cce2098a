"""Dispatch against the real database and broker: the race, stock, progress,
deadlines across a restart, MQTT orders and reports, the lifecycle, the timeline."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import paho.mqtt.client as paho
import pytest
from aiohttp import web
from paho.mqtt.enums import CallbackAPIVersion

from command.settings import MqttTarget, Settings
from tests.integration.helpers import (
    Api,
    api_for,
    console,
    publisher,
    running_server,
    seed_city,
    settings_for,
    wait_for_value,
)

PLANS = Path(__file__).resolve().parents[2] / "dispatch" / "plans.toml"


@dataclass
class City:
    """seed_city with the server running on it, and an API client of it."""

    tokens: dict[str, str]
    settings: Settings
    app: web.Application
    api: Api


@pytest.fixture
async def city(database_url: str, mqtt_url: str) -> AsyncIterator[City]:
    tokens = await seed_city(database_url)
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings) as app, api_for(settings) as api:
        yield City(tokens, settings, app, api)


async def _phone_report(api: Api, token: str, severity: str = "Moderate") -> dict[str, Any]:
    status, incident = await api.call(
        "POST",
        "/api/incidents",
        token,
        {
            "kind": "fire",
            "severity": severity,
            "lat": 30.27,
            "lon": 120.15,
            "title": "Kitchen fire, No. 3 Lane",
        },
    )
    assert status == 201, incident
    assert (
        incident["source"] == "manual" and incident["district"] == "D-1" and incident["status"] == "confirmed"
    )
    return incident


async def test_dispatch_moves_units_stock_incident_and_tells_the_field_team(
    city: City, conn: asyncpg.Connection
) -> None:
    tokens, settings, api = city.tokens, city.settings, city.api
    incident = await _phone_report(api, tokens["commander"])
    async with (
        console(settings, tokens["field"]) as field,
        console(settings, tokens["commander"]) as boss,
    ):
        assert (await field.receive())["type"] == "snapshot"
        assert (await boss.receive())["type"] == "snapshot"
        status, body = await api.dispatch(
            tokens["commander"],
            incident["id"],
            ["U-1", {"id": "U-3", "capability": "medical"}],
            supplies=[{"depot_id": "DEP-1", "item": "blankets", "quantity": 40}],
        )
        assert status == 201, body
        assert body["incident"]["status"] == "responding"
        by_unit = {d["unit_id"]: d for d in body["dispatches"]}
        assert set(by_unit) == {"U-1", "U-3"}
        order = by_unit["U-1"]["order"]
        assert order["incident"]["id"] == incident["id"]
        assert order["destination"] == {"lat": 30.27, "lon": 120.15}
        assert order["supplies"][0]["item"] == "blankets" and order["supplies"][0]["quantity"] == 40
        assert by_unit["U-3"]["order"]["supplies"] == []  # the first unit collects by default
        # The plan's tasks: deliver the blankets, protect the school in the area.
        titles = {t["title"] for t in body["tasks"]}
        assert "Deliver 50 pcs of blankets" in titles and "Evacuate or shelter No. 1 School" in titles

        # The field team sees its own order, not the other unit's.
        created = await field.until("dispatch.created")
        assert created["data"]["unit_id"] == "U-1" and created["data"]["order"]["supplies"]
        seen: set[str] = set()
        while len(seen) < 2:
            seen |= {e["data"]["unit_id"] for e in await boss.events() if e["name"] == "dispatch.created"}
        assert seen == {"U-1", "U-3"}

    assert await conn.fetchval("SELECT quantity FROM stock WHERE item = 'blankets'") == 60
    statuses = dict(await conn.fetch("SELECT id, status FROM units WHERE id IN ('U-1', 'U-3')"))
    assert statuses == {"U-1": "dispatched", "U-3": "dispatched"}
    # The field account can now read the incident it was sent to, and only that.
    status, detail = await api.call("GET", f"/api/incidents/{incident['id']}", tokens["field"])
    assert status == 200 and [d["unit_id"] for d in detail["dispatches"]] == ["U-1", "U-3"]
    actions = [t["action"] for t in detail["timeline"]]
    assert actions[:4] == ["opened", "dispatch", "dispatch", "status"]


async def test_twenty_commanders_race_for_one_unit_and_one_wins(city: City, conn: asyncpg.Connection) -> None:
    tokens, api = city.tokens, city.api
    incidents = [await _phone_report(api, tokens["commander"]) for _ in range(4)]
    results = await asyncio.gather(
        *(api.dispatch(tokens["commander"], incidents[n % 4]["id"], ["U-2"]) for n in range(20))
    )
    codes = sorted(status for status, _ in results)
    assert codes == [201] + [409] * 19
    refusals = {body["error"]["message"] for status, body in results if status == 409}
    assert refusals == {"unit U-2 is not available: it is dispatched"}
    assert await conn.fetchval("SELECT count(*) FROM dispatches WHERE unit_id = 'U-2'") == 1


async def test_a_refused_dispatch_changes_nothing(city: City, conn: asyncpg.Connection) -> None:
    tokens, api = city.tokens, city.api
    incident = await _phone_report(api, tokens["commander"])
    status, body = await api.dispatch(
        tokens["commander"],
        incident["id"],
        ["U-1"],
        supplies=[{"depot_id": "DEP-1", "item": "blankets", "quantity": 101}],
    )
    assert status == 409 and body["error"] == {
        "code": "stock_short",
        "message": "depot DEP-1 has 100 pcs of blankets, 101 requested",
    }
    # All or nothing: the unit taken before the shortfall was found is free again.
    assert await conn.fetchval("SELECT status FROM units WHERE id = 'U-1'") == "available"
    assert await conn.fetchval("SELECT count(*) FROM dispatches") == 0

    status, body = await api.dispatch(tokens["viewer"], incident["id"], ["U-1"])
    assert status == 403
    status, body = await api.dispatch(tokens["commander"], incident["id"], ["U-1", "U-1"])
    assert status == 400 and "listed twice" in body["error"]["message"]
    status, body = await api.dispatch(tokens["commander"], incident["id"], ["NOPE"])
    assert status == 409 and body["error"]["code"] == "unknown_unit"
    status, body = await api.dispatch(tokens["commander"], 999999, ["U-1"])
    assert status == 404


async def test_field_progress_supplies_and_invalid_steps(city: City, conn: asyncpg.Connection) -> None:
    tokens, api = city.tokens, city.api
    incident = await _phone_report(api, tokens["commander"])
    _, body = await api.dispatch(
        tokens["commander"],
        incident["id"],
        ["U-1"],
        supplies=[{"depot_id": "DEP-1", "item": "blankets", "quantity": 30}],
    )
    dispatch_id = body["dispatches"][0]["id"]
    path = f"/api/dispatches/{dispatch_id}/status"

    status, body = await api.call("POST", path, tokens["field"], {"status": "cleared"})
    assert status == 409 and body["error"]["message"] == "a dispatch that is dispatched cannot become cleared"
    status, body = await api.call("POST", path, tokens["field"], {"status": "cancelled"})
    assert status == 403
    status, body = await api.call("POST", path, tokens["viewer"], {"status": "acknowledged"})
    assert status == 403

    for step, unit_status, supplies in (
        ("acknowledged", "dispatched", "committed"),
        ("en_route", "en_route", "committed"),
        ("on_scene", "on_scene", "delivered"),
        ("cleared", "available", "delivered"),
    ):
        status, body = await api.call("POST", path, tokens["field"], {"status": step})
        assert status == 200, body
        assert body["dispatch"]["status"] == step and body["dispatch"][f"{step}_at"] is not None
        assert body["dispatch"]["supplies"][0]["status"] == supplies
        assert await conn.fetchval("SELECT status FROM units WHERE id = 'U-1'") == unit_status
    status, body = await api.call("POST", path, tokens["field"], {"status": "en_route"})
    assert status == 409 and body["error"]["message"] == "the dispatch is already cleared"
    assert await conn.fetchval("SELECT quantity FROM stock") == 70  # delivered, not returned

    # Declining needs a reason, and gives the supplies back.
    _, body = await api.dispatch(
        tokens["commander"],
        incident["id"],
        ["U-1"],
        supplies=[{"depot_id": "DEP-1", "item": "blankets", "quantity": 20}],
    )
    path = f"/api/dispatches/{body['dispatches'][0]['id']}/status"
    assert await conn.fetchval("SELECT quantity FROM stock") == 50
    status, body = await api.call("POST", path, tokens["field"], {"status": "declined"})
    assert status == 409 and body["error"]["message"] == "declining needs a reason"
    status, body = await api.call(
        "POST", path, tokens["field"], {"status": "declined", "reason": "flat tyre"}
    )
    assert status == 200 and body["dispatch"]["reason"] == "flat tyre"
    assert body["dispatch"]["supplies"][0]["status"] == "released"
    assert await conn.fetchval("SELECT quantity FROM stock") == 70

    # Another unit's dispatch does not exist for this field account.
    _, body = await api.dispatch(tokens["commander"], incident["id"], ["U-3"])
    other = body["dispatches"][0]["id"]
    status, _ = await api.call(
        "POST", f"/api/dispatches/{other}/status", tokens["field"], {"status": "acknowledged"}
    )
    assert status == 404


def _fast_plans(tmp_path: Path, ack_deadline_s: int) -> Path:
    path = tmp_path / "plans.toml"
    path.write_text(re.sub(r"ack_deadline_s = \d+", f"ack_deadline_s = {ack_deadline_s}", PLANS.read_text()))
    return path


async def test_unacknowledged_dispatch_goes_overdue_once_with_an_offer_across_a_restart(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    tokens = await seed_city(database_url)
    plans = _fast_plans(tmp_path, 2)
    first = settings_for(database_url, mqtt_url, plans_path=plans)
    async with running_server(first), api_for(first) as api:
        incident = await _phone_report(api, tokens["commander"])
        status, body = await api.dispatch(tokens["commander"], incident["id"], ["U-1"])
        assert status == 201
        dispatch_id = body["dispatches"][0]["id"]
    # Down before the deadline; two instances come up after it.
    await asyncio.sleep(2.5)
    second = settings_for(database_url, mqtt_url, plans_path=plans)
    third = settings_for(database_url, mqtt_url, plans_path=plans)
    async with running_server(second), running_server(third):
        async with console(second, tokens["commander"], since=0) as boss:
            overdue = await boss.until("dispatch.overdue")
            assert overdue["data"]["id"] == dispatch_id
            # The next-best unit with the same capability (fire_suppression): U-2 is nearest.
            assert overdue["data"]["offer"]["unit_id"] == "U-2"
            assert overdue["data"]["offer"]["capability"] == "fire_suppression"
        await asyncio.sleep(1.5)  # both instances' sweeps have run again
    assert await conn.fetchval("SELECT count(*) FROM events WHERE name = 'dispatch.overdue'") == 1
    timeline = await conn.fetch(
        "SELECT actor, action FROM incident_timeline WHERE action = 'dispatch.overdue'"
    )
    assert [tuple(r) for r in timeline] == [("system", "dispatch.overdue")]


async def test_task_due_time_fires_task_overdue(city: City, conn: asyncpg.Connection) -> None:
    tokens, settings, api = city.tokens, city.settings, city.api
    incident = await _phone_report(api, tokens["commander"])
    async with console(settings, tokens["commander"]) as boss:
        await boss.receive()
        status, task = await api.call(
            "POST",
            f"/api/incidents/{incident['id']}/tasks",
            tokens["commander"],
            {"title": "Close Binjiang underpass", "due_in_s": 1, "owner_unit": "U-1"},
        )
        assert status == 201 and task["status"] == "open"
        overdue = await boss.until("task.overdue", timeout=10)
        assert overdue["data"]["id"] == task["id"] and overdue["data"]["overdue_at"]
    # The owning field team reports progress and the result.
    status, body = await api.call(
        "POST", f"/api/tasks/{task['id']}", tokens["field"], {"status": "done", "note": "barriers up"}
    )
    assert status == 409 and body["error"]["message"] == "a task that is done needs a result"
    status, body = await api.call(
        "POST",
        f"/api/tasks/{task['id']}",
        tokens["field"],
        {"status": "done", "result": "closed at both ends", "note": "barriers up"},
    )
    assert status == 200 and body["status"] == "done" and body["notes"][0]["note"] == "barriers up"
    status, _ = await api.call("POST", f"/api/tasks/{task['id']}", tokens["viewer"], {"note": "hi"})
    assert status == 403


def _unit_client(mqtt_url: str, unit_id: str) -> tuple[paho.Client, asyncio.Queue[dict[str, Any]]]:
    target = MqttTarget.from_url(mqtt_url)
    loop = asyncio.get_running_loop()
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"unit-{unit_id}-{id(received)}")
    client.username_pw_set(target.username, target.password)

    def on_message(_c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        loop.call_soon_threadsafe(received.put_nowait, json.loads(message.payload))

    subscribed = asyncio.Event()

    def on_subscribe(*_: object) -> None:
        loop.call_soon_threadsafe(subscribed.set)

    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.on_connect = lambda c, *_: c.subscribe(f"units/{unit_id}/dispatch", qos=1)
    client.connect(target.host, target.port)
    client.loop_start()
    return client, received


async def test_a_unit_gets_its_order_over_mqtt_and_acknowledges_over_mqtt(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection
) -> None:
    tokens = await seed_city(database_url)
    settings = settings_for(database_url, mqtt_url)
    client, received = _unit_client(mqtt_url, "U-1")
    try:
        await asyncio.sleep(0.3)  # let the subscription land
        async with running_server(settings), api_for(settings) as api, publisher(mqtt_url) as pub:
            incident = await _phone_report(api, tokens["commander"])
            async with console(settings, tokens["commander"]) as boss:
                await boss.receive()
                _, body = await api.dispatch(tokens["commander"], incident["id"], ["U-1"])
                dispatch_id = body["dispatches"][0]["id"]
                order = await asyncio.wait_for(received.get(), 10)
                assert order["type"] == "dispatch" and order["dispatch_id"] == dispatch_id
                assert order["incident"]["title"] == "Kitchen fire, No. 3 Lane"
                await wait_for_value(
                    conn,
                    f"SELECT sent_at IS NOT NULL FROM unit_outbox WHERE dispatch_id = {dispatch_id}",
                    True,
                )
                now = datetime.now(UTC).isoformat()
                await pub.publish(
                    "units/U-1/status", {"status": "acknowledged", "dispatch_id": dispatch_id, "time": now}
                )
                updated = await boss.until("dispatch.updated", id=dispatch_id)
                assert updated["data"]["status"] == "acknowledged"
                # An impossible step over MQTT is dead-lettered with the reason.
                await pub.publish(
                    "units/U-1/status", {"status": "declined", "dispatch_id": dispatch_id, "time": now}
                )
                await wait_for_value(
                    conn,
                    "SELECT reason FROM dead_letters ORDER BY id DESC LIMIT 1",
                    "a dispatch that is acknowledged cannot become declined",
                )
                # Another unit cannot report on this dispatch.
                await pub.publish(
                    "units/U-3/status", {"status": "en_route", "dispatch_id": dispatch_id, "time": now}
                )
                await wait_for_value(
                    conn,
                    "SELECT reason FROM dead_letters ORDER BY id DESC LIMIT 1",
                    f"dispatch {dispatch_id} is not a dispatch of unit U-3",
                )
    finally:
        client.disconnect()
        client.loop_stop()


async def test_lifecycle_false_alarm_calls_units_back_and_reopen(
    city: City, conn: asyncpg.Connection
) -> None:
    tokens, api = city.tokens, city.api
    incident = await _phone_report(api, tokens["commander"])
    path = f"/api/incidents/{incident['id']}/status"
    await api.dispatch(
        tokens["commander"],
        incident["id"],
        ["U-1"],
        supplies=[{"depot_id": "DEP-1", "item": "blankets", "quantity": 10}],
    )
    status, body = await api.call("POST", path, tokens["commander"], {"status": "resolved"})
    assert status == 409 and body["error"] == {
        "code": "dispatches_active",
        "message": "clear or cancel the dispatches of U-1 first",
    }
    status, body = await api.call("POST", path, tokens["commander"], {"status": "closed"})
    assert status == 409 and body["error"]["code"] == "invalid_transition"
    status, body = await api.call("POST", path, tokens["commander"], {"status": "false_alarm"})
    assert status == 409 and body["error"]["message"] == "false_alarm needs a reason"
    status, body = await api.call(
        "POST", path, tokens["commander"], {"status": "false_alarm", "reason": "burnt toast"}
    )
    assert status == 200 and body["status"] == "false_alarm"
    assert await conn.fetchval("SELECT status FROM dispatches") == "cancelled"
    assert await conn.fetchval("SELECT status FROM units WHERE id = 'U-1'") == "available"
    assert await conn.fetchval("SELECT quantity FROM stock") == 100
    # The unit is told it was called back.
    assert (
        await conn.fetchval("SELECT payload->>'type' FROM unit_outbox ORDER BY id DESC LIMIT 1") == "cancel"
    )

    status, body = await api.call("POST", path, tokens["viewer"], {"status": "reopen", "reason": "x"})
    assert status == 403
    status, body = await api.call(
        "POST", path, tokens["commander"], {"status": "reopen", "reason": "second call: real smoke"}
    )
    assert status == 200 and body["status"] == "confirmed", body
    rows = await conn.fetch("SELECT actor, action, from_status, to_status FROM incident_timeline ORDER BY id")
    assert [(r["action"], r["from_status"], r["to_status"]) for r in rows] == [
        ("opened", None, "confirmed"),
        ("dispatch", None, None),
        ("status", "confirmed", "responding"),
        ("dispatch.status", "dispatched", "cancelled"),
        ("status", "responding", "false_alarm"),
        ("reopen", "false_alarm", "confirmed"),
    ]
    assert {r["actor"] for r in rows} == {"commander"}


async def test_the_timeline_cannot_be_altered_with_the_servers_role(city: City) -> None:
    tokens, app, api = city.tokens, city.app, city.api
    await _phone_report(api, tokens["commander"])
    from command.keys import POOL

    async with app[POOL].acquire() as conn:
        for sql in (
            "UPDATE incident_timeline SET actor = 'someone else'",
            "DELETE FROM incident_timeline",
            "TRUNCATE incident_timeline",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(sql)
        assert await conn.fetchval("SELECT actor FROM incident_timeline") == "commander"


async def test_a_bare_status_report_cannot_free_a_unit_on_a_dispatch(
    city: City, mqtt_url: str, conn: asyncpg.Connection
) -> None:
    tokens, api = city.tokens, city.api
    async with publisher(mqtt_url) as pub:
        first, second = (
            await _phone_report(api, tokens["commander"]),
            await _phone_report(api, tokens["commander"]),
        )
        _, body = await api.dispatch(tokens["commander"], first["id"], ["U-2"])
        dispatch_id = body["dispatches"][0]["id"]
        await pub.publish("units/U-2/status", {"status": "available", "time": datetime.now(UTC).isoformat()})
        await wait_for_value(
            conn,
            "SELECT reason FROM dead_letters ORDER BY id DESC LIMIT 1",
            f"unit U-2 is on dispatch {dispatch_id}: report progress on it with its dispatch_id",
        )
        assert await conn.fetchval("SELECT status FROM units WHERE id = 'U-2'") == "dispatched"
        status, body = await api.dispatch(tokens["commander"], second["id"], ["U-2"])
        assert status == 409 and body["error"]["code"] == "unit_unavailable"
        # A report stamped before the dispatch was made is stamped no earlier than it.
        stale = "2020-01-01T00:00:00+00:00"
        await pub.publish(
            "units/U-2/status", {"status": "acknowledged", "dispatch_id": dispatch_id, "time": stale}
        )
        await wait_for_value(conn, f"SELECT status FROM dispatches WHERE id = {dispatch_id}", "acknowledged")
        assert await conn.fetchval(
            f"SELECT acknowledged_at >= created_at FROM dispatches WHERE id = {dispatch_id}"
        )
