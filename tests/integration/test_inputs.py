"""Inputs from the outside, against the real services.

- A flood of 1,000 malformed messages, generated with hypothesis, is
  dead-lettered one row each, changes nothing else, and the server keeps serving.
- Sensor liveness: silence beyond the heartbeat makes a sensor offline once;
  a state report or an MQTT last will moves it.
- Unit status reports update the unit, except an older one; bad ones are
  dead-lettered.

The flood is generated once, not as a ``@given`` test (that would start a
server per example): a ``@given`` collector with ``max_examples=1000``,
``derandomize=True`` and only the generate phase is called like a function,
and appends each drawn case to a list. Same corpus on every run.

Bugs found while writing these tests are fixed; each has a regression test at
the end, with the exact input that showed it (the flood does not generate those).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aiohttp
import asyncpg
import paho.mqtt.client as paho
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families

import command.app
from command.settings import MqttTarget, Settings
from command.store import Raw, mark_silent_sensors, store_batch
from sensors.alarms import KINDS, SEVERITIES, UNIT_STATUSES, Position, StatusReport
from tests.integration.helpers import (
    Console,
    alarm,
    base_url,
    console,
    publisher,
    running_server,
    seed_minimal,
    settings_for,
    wait_for_value,
)

# ------------------------------------------------------------------ helpers


async def _collect_until(
    ws: Console, name: str, timeout: float = 10.0, **match: Any
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Read events until one named ``name`` matching ``match``: (the events before it, it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen: list[dict[str, Any]] = []
    while True:
        for event in await ws.events(max(0.01, deadline - loop.time())):
            if event["name"] == name and all(event["data"].get(k) == v for k, v in match.items()):
                return seen, event
            seen.append(event)


async def _metric_until(
    settings: Settings, name: str, ok: Callable[[dict[str, float]], bool], timeout: float = 10.0
) -> dict[str, float]:
    """Poll /metrics until ``ok`` holds: the ingest counts a batch just after its commit,
    so the rows can be seen a moment before the counters."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not ok(value := await _metric_samples(settings, name)):
        assert loop.time() < deadline, f"{name} is {value!r}"
        await asyncio.sleep(0.05)
    return value


async def _metric_samples(settings: Settings, name: str) -> dict[str, float]:
    """Sample values of one metric from /metrics, keyed by the ``source`` label ('' when none)."""
    async with aiohttp.ClientSession() as http, http.get(f"{base_url(settings)}/metrics") as r:
        assert r.status == 200
        text = await r.text()
    return {
        sample.labels.get("source", ""): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def _retained(mqtt_url: str, topic: str, payload: bytes) -> None:
    """Publish a retained message (an empty payload deletes the retained one)."""
    target = MqttTarget.from_url(mqtt_url)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"retain-{uuid.uuid4().hex[:8]}")
    client.username_pw_set(target.username, target.password)
    client.connect(target.host, target.port)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1, retain=True)
        info.wait_for_publish(10)
        assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def _connect_with_will(mqtt_url: str, topic: str, payload: bytes) -> paho.Client:
    """A client with a retained last will, connected, driven by hand (no network thread)."""
    target = MqttTarget.from_url(mqtt_url)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"will-{uuid.uuid4().hex[:8]}")
    client.username_pw_set(target.username, target.password)
    client.will_set(topic, payload, qos=1, retain=True)
    connected: list[bool] = []
    client.on_connect = lambda *_: connected.append(True)
    client.connect(target.host, target.port, keepalive=60)
    for _ in range(100):
        client.loop(timeout=0.1)
        if connected:
            return client
    raise AssertionError("the will client never got its CONNACK")


# ------------------------------------------------------------ the flood corpus

ALARM_TOPIC = "sensors/S-1/alarm"
STATE_TOPIC = "sensors/S-1/state"
POSITION_TOPIC = "units/U-1/position"
STATUS_TOPIC = "units/U-1/status"
CAP_TOPIC = "cap/x"
FLOOD_SIZE = 1000
KIB = 1024

# Published too, but on topics the server does not subscribe to: they never
# reach it, so they must leave no trace (and are not among the 1,000).
UNSUBSCRIBED = (
    "sensors/S-1/other",
    "sensors/S-1/alarm/extra",
    "sensors/S-1",
    "units/U-1/dispatch",
    "cap/x/y",
    "other/S-1/alarm",
)

# A well-formed CAP 1.2 alert (sensors.cap.parse_cap accepts it); the CAP cases break it.
CAP_ALERT = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>T-1</identifier>'
    b"<sender>test@example.org</sender><sent>2026-01-01T00:00:00+00:00</sent>"
    b"<status>Actual</status><msgType>Alert</msgType><scope>Public</scope>"
    b"<info><category>Fire</category><event>Fire</event><urgency>Immediate</urgency>"
    b"<severity>Severe</severity><certainty>Observed</certainty>"
    b"<area><areaDesc>Somewhere</areaDesc><circle>30.27,120.15 1</circle></area></info></alert>"
)
CAP_REQUIRED = (b"identifier", b"sender", b"sent", b"status", b"msgType", b"scope")

GENERAL = ("not UTF-8", "invalid JSON", "must be a JSON object", "missing required field", "JSON allows")
BAD_UTF8 = (
    b"\xff",
    b"\xfe\xff",
    b"\x80",
    b"\xc0\xaf",  # overlong '/'
    b"\xc3\x28",
    b"\xed\xa0\x80",  # an encoded surrogate
    b"\xe2\x82",  # truncated sequence
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
)
# Topic levels must be valid MQTT (printable UTF-8, no wildcards or '/').
TOPIC_LEVEL = st.text(
    alphabet=st.characters(categories=["L", "N", "P", "S", "Zs"], exclude_characters="/+#"),
    max_size=80,
).filter(lambda s: re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", s) is None)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
NON_STRINGS = JSON_VALUES.filter(lambda v: v is not None and not isinstance(v, str))
NON_NUMBERS = JSON_VALUES.filter(
    lambda v: v is not None and (isinstance(v, bool) or not isinstance(v, int | float))
)


@dataclass(frozen=True, slots=True)
class Case:
    category: str
    topic: str
    payload: bytes
    reasons: tuple[str, ...]  # the dead letter's reason contains one of these
    source: str = "mqtt"
    numbered: bool = False  # topic holds "{n}": one unknown id per message


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def _corpus(now: datetime) -> list[Case]:
    """The 1,000 malformed messages, drawn by hypothesis (deterministically)."""
    when = (now - timedelta(minutes=1)).isoformat()
    docs: dict[str, dict[str, Any]] = {
        ALARM_TOPIC: {
            "id": "bad-1",
            "kind": "fire",
            "severity": "Severe",
            "time": when,
            "lat": 30.27,
            "lon": 120.15,
        },
        POSITION_TOPIC: {"lat": 30.3, "lon": 120.2, "time": when, "speed": 3.0},
        STATUS_TOPIC: {"status": "on_scene", "time": when},
    }
    alarm_doc = docs[ALARM_TOPIC]

    def with_field(doc: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
        return doc | {name: value}

    json_topics = st.sampled_from([ALARM_TOPIC, POSITION_TOPIC, STATUS_TOPIC])

    @st.composite
    def random_bytes(draw: st.DrawFn) -> Case:
        topic = draw(st.sampled_from([ALARM_TOPIC, POSITION_TOPIC, STATUS_TOPIC, STATE_TOPIC]))
        payload = draw(st.binary(max_size=300))
        if topic == STATE_TOPIC:
            # 'online', 'offline' and any JSON object are valid states.
            stripped = payload.strip()
            if stripped in (b"online", b"offline") or stripped.startswith(b"{"):
                payload = b"\x00" + payload
        return Case("random bytes", topic, payload, GENERAL)

    @st.composite
    def invalid_utf8(draw: st.DrawFn) -> Case:
        topic = draw(st.sampled_from([ALARM_TOPIC, POSITION_TOPIC, STATUS_TOPIC, STATE_TOPIC]))
        body = b"online" if topic == STATE_TOPIC else _dumps(docs[topic])
        at = draw(st.integers(0, len(body)))
        return Case(
            "invalid UTF-8", topic, body[:at] + draw(st.sampled_from(BAD_UTF8)) + body[at:], ("not UTF-8",)
        )

    @st.composite
    def truncated(draw: st.DrawFn) -> Case:
        topic = draw(json_topics)
        body = _dumps(docs[topic])
        return Case("truncated JSON", topic, body[: draw(st.integers(0, len(body) - 1))], ("invalid JSON",))

    @st.composite
    def non_object(draw: st.DrawFn) -> Case:
        topic = draw(st.sampled_from([ALARM_TOPIC, POSITION_TOPIC, STATUS_TOPIC, STATE_TOPIC]))
        value = draw(JSON_VALUES.filter(lambda v: not isinstance(v, dict)))
        return Case("JSON non-object", topic, _dumps(value), ("must be a JSON object",))

    @st.composite
    def missing(draw: st.DrawFn) -> Case:
        topic = draw(json_topics)
        required = {ALARM_TOPIC: ["id", "kind", "severity", "time"], POSITION_TOPIC: ["lat", "lon", "time"]}
        names = draw(st.sets(st.sampled_from(required.get(topic, ["status", "time"])), min_size=1))
        null = draw(st.booleans())
        doc = {
            k: (None if null and k in names else v) for k, v in docs[topic].items() if null or k not in names
        }
        return Case("missing field", topic, _dumps(doc), ("missing required field",))

    @st.composite
    def ill_typed(draw: st.DrawFn) -> Case:
        how = draw(st.sampled_from(["string", "number", "empty", "long", "dispatch_id"]))
        if how == "string":
            name = draw(st.sampled_from(["id", "kind", "severity", "time", "unit", "message"]))
            doc = with_field(alarm_doc, name, draw(NON_STRINGS))
            return Case("ill-typed field", ALARM_TOPIC, _dumps(doc), ("must be a string",))
        if how == "number":
            topic = draw(st.sampled_from([ALARM_TOPIC, POSITION_TOPIC]))
            fields = ["lat", "lon", "value"] if topic == ALARM_TOPIC else ["lat", "lon", "speed", "heading"]
            doc = with_field(docs[topic], draw(st.sampled_from(fields)), draw(NON_NUMBERS))
            return Case("ill-typed field", topic, _dumps(doc), ("must be a number",))
        if how == "empty":
            name = draw(st.sampled_from(["id", "kind", "severity", "time"]))
            doc = with_field(alarm_doc, name, draw(st.text(alphabet=" \t\r\n", max_size=4)))
            return Case("ill-typed field", ALARM_TOPIC, _dumps(doc), ("is empty",))
        if how == "long":
            name, limit = draw(st.sampled_from([("id", 128), ("unit", 32), ("message", 2000), ("time", 64)]))
            doc = with_field(alarm_doc, name, "x" * draw(st.integers(limit + 1, limit + 100)))
            return Case("ill-typed field", ALARM_TOPIC, _dumps(doc), ("longer than",))
        value = draw(NON_STRINGS.filter(lambda v: isinstance(v, bool | float | list | dict)))
        doc = with_field(docs[STATUS_TOPIC], "dispatch_id", value)
        return Case("ill-typed field", STATUS_TOPIC, _dumps(doc), ("'dispatch_id' must be",))

    @st.composite
    def unknown_vocabulary(draw: st.DrawFn) -> Case:
        which = draw(st.sampled_from(["kind", "severity", "status"]))
        if which == "kind":
            word = draw(
                st.sampled_from(["Fire", "FIRE", " fire", "fire ", "gas", "volcano"])
                | st.text(min_size=1, max_size=64).filter(lambda s: bool(s.strip()) and s not in KINDS)
            )
            return Case(
                "unknown kind", ALARM_TOPIC, _dumps(with_field(alarm_doc, "kind", word)), ("unknown kind",)
            )
        if which == "severity":
            word = draw(
                st.sampled_from(["severe", "EXTREME", "Critical", "High", "Severe "])
                | st.text(min_size=1, max_size=32).filter(lambda s: bool(s.strip()) and s not in SEVERITIES)
            )
            doc = with_field(alarm_doc, "severity", word)
            return Case("unknown severity", ALARM_TOPIC, _dumps(doc), ("unknown severity",))
        word = draw(
            st.sampled_from(["busy", "EN_ROUTE", "en route", "offline"])
            | st.text(min_size=1, max_size=32).filter(lambda s: bool(s.strip()))
        )
        if word in UNIT_STATUSES:
            word += "?"
        doc = with_field(docs[STATUS_TOPIC], "status", word)
        return Case("unknown status", STATUS_TOPIC, _dumps(doc), ("unknown unit status",))

    beyond_lat = st.floats(min_value=90, max_value=1e308, exclude_min=True)
    beyond_lon = st.floats(min_value=180, max_value=1e308, exclude_min=True)
    sign = st.sampled_from([1.0, -1.0])

    @st.composite
    def out_of_range(draw: st.DrawFn) -> Case:
        topic = draw(st.sampled_from([ALARM_TOPIC, POSITION_TOPIC]))
        how = draw(
            st.sampled_from(["lat", "lon", "alone"] if topic == ALARM_TOPIC else ["lat", "lon", "speed"])
        )
        doc = dict(docs[topic])
        if how == "lat":
            doc["lat"] = draw(sign) * draw(beyond_lat)
        elif how == "lon":
            doc["lon"] = draw(sign) * draw(beyond_lon)
        elif how == "speed":
            doc["speed"] = -draw(st.floats(min_value=0, max_value=1e6, exclude_min=True))
            return Case("out of range", topic, _dumps(doc), ("speed is negative",))
        else:
            del doc[draw(st.sampled_from(["lat", "lon"]))]
            return Case("out of range", topic, _dumps(doc), ("must come together",))
        return Case("out of range", topic, _dumps(doc), ("out of range",))

    @st.composite
    def not_finite(draw: st.DrawFn) -> Case:
        topic = draw(st.sampled_from([ALARM_TOPIC, POSITION_TOPIC]))
        fields = ["lat", "lon", "value"] if topic == ALARM_TOPIC else ["lat", "lon", "speed", "heading"]
        token = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999"]))
        body = json.dumps(with_field(docs[topic], draw(st.sampled_from(fields)), "@@")).replace('"@@"', token)
        reason = "is not finite" if "e999" in token else "is not a number JSON allows"
        return Case("NaN/Infinity", topic, body.encode(), (reason,))

    latest = datetime(9999, 12, 1, tzinfo=UTC) - now

    @st.composite
    def bad_time(draw: st.DrawFn) -> Case:
        topic = draw(json_topics)
        how = draw(st.sampled_from(["naive", "date", "garbage", "future"]))
        if how == "naive":
            value = draw(st.datetimes(max_value=datetime(2100, 1, 1))).isoformat()
            reasons: tuple[str, ...] = ("has no UTC offset",)
        elif how == "date":
            value = draw(st.dates()).isoformat()
            reasons = ("has no UTC offset",)
        elif how == "garbage":
            value = draw(st.text(max_size=40).filter(_not_aware_timestamp))
            reasons = ("is not an RFC 3339 timestamp", "has no UTC offset", "is empty")
        else:
            ahead = draw(st.timedeltas(min_value=timedelta(hours=3), max_value=latest))
            offset = timezone(timedelta(hours=draw(st.integers(-12, 14))))
            value = (now + ahead).astimezone(offset).isoformat()
            reasons = ("in the future",)
        return Case("bad time", topic, _dumps(with_field(docs[topic], "time", value)), reasons)

    @st.composite
    def oversized(draw: st.DrawFn) -> Case:
        topic = draw(st.sampled_from([ALARM_TOPIC, POSITION_TOPIC, STATUS_TOPIC, STATE_TOPIC]))
        size = draw(st.integers(64 * KIB + 1, 160 * KIB))
        if topic == STATE_TOPIC or draw(st.booleans()):
            payload = draw(st.sampled_from([b"x", b"{", b"\xff"])) * size
        else:
            body = _dumps(with_field(docs[topic], "message", ""))
            payload = body.replace(b'"message": ""', b'"message": "' + b"m" * (size - len(body)) + b'"')
        return Case("oversized", topic, payload, ("exceeds 65536",))

    plain_ids = st.text(alphabet="abcdefghij0123456789-", min_size=1, max_size=20)
    recent = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=1)).map(
        lambda d: (now - d).isoformat()
    )

    @st.composite
    def unknown_ids(draw: st.DrawFn) -> Case:
        how = draw(
            st.sampled_from(["sensor alarm", "no location", "sensor state", "unit position", "unit status"])
        )
        doc: dict[str, Any] = {
            "id": draw(plain_ids),
            "kind": draw(st.sampled_from(sorted(KINDS))),
            "severity": draw(st.sampled_from(SEVERITIES)),
            "time": draw(recent),
        }
        if how == "sensor alarm":
            doc |= {"lat": draw(st.floats(-90, 90)), "lon": draw(st.floats(-180, 180))}
            return Case(
                "unknown sensor",
                "sensors/GHOST-{n}/alarm",
                _dumps(doc),
                ("unregistered sensor",),
                numbered=True,
            )
        if how == "no location":
            return Case("unknown sensor", "sensors/S-2/alarm", _dumps(doc), ("no registered location",))
        if how == "sensor state":
            payload = draw(
                st.sampled_from([b"online", b"offline", b" online\n"])
                | st.dictionaries(st.text(max_size=8), JSON_SCALARS, max_size=3).map(_dumps)
            )
            return Case(
                "unknown sensor", "sensors/GHOST-{n}/state", payload, ("unregistered sensor",), numbered=True
            )
        if how == "unit position":
            doc = {"lat": draw(st.floats(-90, 90)), "lon": draw(st.floats(-180, 180)), "time": draw(recent)}
            return Case(
                "unknown unit", "units/GHOST-{n}/position", _dumps(doc), ("unknown unit",), numbered=True
            )
        doc = {"status": draw(st.sampled_from(UNIT_STATUSES)), "time": draw(recent)}
        return Case("unknown unit", "units/GHOST-{n}/status", _dumps(doc), ("unknown unit",), numbered=True)

    @st.composite
    def bad_topic(draw: st.DrawFn) -> Case:
        pattern = draw(
            st.sampled_from(
                ["sensors/{}/alarm", "sensors/{}/state", "units/{}/position", "units/{}/status", "cap/{}"]
            )
        )
        return Case("bad topic", pattern.format(draw(TOPIC_LEVEL)), _dumps(alarm_doc), ("topic is not one",))

    @st.composite
    def broken_cap(draw: st.DrawFn) -> Case:
        how = draw(st.sampled_from(["truncated", "junk", "not CAP", "missing element", "random"]))
        if how == "truncated":
            payload = CAP_ALERT[: draw(st.integers(0, len(CAP_ALERT) - 1))]
        elif how == "junk":
            at = draw(st.integers(0, len(CAP_ALERT)))
            junk = draw(st.sampled_from([b"<", b"&", b"</x>", b"\x00", b"\xff", b"<!--"]))
            payload = CAP_ALERT[:at] + junk + CAP_ALERT[at:]
        elif how == "not CAP":
            payload = draw(
                st.sampled_from(
                    [
                        b"<alert/>",
                        b'<alert xmlns="urn:example:not-cap"/>',
                        b"<?xml version='1.0'?><feed/>",
                        b'<!DOCTYPE alert [<!ENTITY a "aaaa">]><alert>&a;&a;</alert>',
                        b'<!DOCTYPE alert SYSTEM "file:///etc/passwd"><alert/>',
                        _dumps(alarm_doc),
                        b"",
                    ]
                )
            )
        elif how == "missing element":
            name = draw(st.sampled_from(CAP_REQUIRED))
            payload = re.sub(rb"<%s>[^<]*</%s>" % (name, name), b"", CAP_ALERT, count=1)
        else:
            payload = draw(st.binary(max_size=300))
        return Case("broken CAP", CAP_TOPIC, payload, ("CAP: ",), source="cap")

    @st.composite
    def unstorable(draw: st.DrawFn) -> Case:
        # Valid JSON the database cannot take: a NUL or a lone surrogate in text.
        name = draw(st.sampled_from(["id", "unit", "message"]))
        text = draw(plain_ids) + "@@" + draw(st.text(alphabet="xyz", max_size=5))
        escape = draw(st.sampled_from(["\\u0000", "\\ud800", "\\udfff"]))
        body = json.dumps(with_field(alarm_doc, name, text)).replace("@@", escape)
        return Case("unstorable text", ALARM_TOPIC, body.encode(), ("database rejected it",))

    strategy = st.one_of(
        random_bytes(),
        invalid_utf8(),
        truncated(),
        non_object(),
        missing(),
        ill_typed(),
        unknown_vocabulary(),
        out_of_range(),
        not_finite(),
        bad_time(),
        oversized(),
        unknown_ids(),
        bad_topic(),
        broken_cap(),
        unstorable(),
    )
    cases: list[Case] = []

    @settings(
        max_examples=FLOOD_SIZE,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(case: Case) -> None:
        cases.append(case)

    collect()
    return cases


def _not_aware_timestamp(text: str) -> bool:
    try:
        return datetime.fromisoformat(text).tzinfo is None
    except ValueError:
        return True


def _numbered(cases: Iterable[Case]) -> list[tuple[str, bytes, Case]]:
    return [
        (case.topic.replace("{n}", str(n)) if case.numbered else case.topic, case.payload, case)
        for n, case in enumerate(cases)
    ]


# ------------------------------------------------------------------- tests


async def test_thousand_malformed_messages_each_become_one_dead_letter(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection
) -> None:
    corpus = _corpus(datetime.now(UTC))
    assert len(corpus) == FLOOD_SIZE
    categories = Counter(c.category for c in corpus)
    # The corpus covers every way the brief lists (deterministic: derandomized).
    assert all(
        categories[name] >= 10
        for name in (
            "random bytes",
            "invalid UTF-8",
            "truncated JSON",
            "JSON non-object",
            "missing field",
            "ill-typed field",
            "out of range",
            "NaN/Infinity",
            "bad time",
            "oversized",
            "unknown sensor",
            "unknown unit",
            "bad topic",
            "broken CAP",
        )
    ), categories
    assert categories["unknown kind"] + categories["unknown severity"] >= 10, categories
    messages = _numbered(corpus)

    tokens = await seed_minimal(database_url)
    unit_before = await conn.fetchrow(
        "SELECT status, status_at, position, position_at FROM units WHERE id = 'U-1'"
    )
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings), console(settings, tokens["commander"]) as ws:
        assert (await ws.receive())["type"] == "snapshot"
        async with publisher(mqtt_url) as pub:
            infos = [pub.publish_nowait(topic, payload) for topic, payload, _ in messages]
            infos += [pub.publish_nowait(topic, _dumps(alarm("unsubscribed"))) for topic in UNSUBSCRIBED]
            await pub.wait_all(infos, timeout=60)
            await pub.publish(ALARM_TOPIC, alarm("the-good-one"))
            opened = await ws.until("incident.opened", timeout=30)
        assert opened["data"]["last_alarm"]["id"] == "the-good-one"
        await wait_for_value(conn, "SELECT count(*) FROM dead_letters", FLOOD_SIZE, timeout=10)

        async with aiohttp.ClientSession() as http, http.get(f"{base_url(settings)}/healthz") as r:
            assert r.status == 200
            assert (await r.json())["status"] == "ok"
        # Counted under each message's source: broken CAP under "cap", the rest under "mqtt".
        by_source = {k: float(n) for k, n in Counter(case.source for _, _, case in messages).items()}
        assert set(by_source) == {"cap", "mqtt"} and sum(by_source.values()) == FLOOD_SIZE
        await _metric_until(settings, "emergency_dead_letters_total", lambda v: v == by_source)
        await _metric_until(settings, "emergency_alarms_stored_total", lambda v: v == {"": 1.0})

    rows = await conn.fetch(
        "SELECT source, topic, payload, payload_size, reason FROM dead_letters ORDER BY id"
    )
    assert len(rows) == FLOOD_SIZE
    expected: dict[tuple[str, bytes, int], list[Case]] = {}
    for topic, payload, case in messages:
        expected.setdefault((topic, payload[:4096], len(payload)), []).append(case)
    for row in rows:
        assert row["reason"].strip(), row
        candidates = expected.get((row["topic"], bytes(row["payload"]), row["payload_size"]), [])
        found = next((c for c in candidates if any(r in row["reason"] for r in c.reasons)), None)
        assert found is not None, f"unexpected dead letter {row['topic']!r} {row['reason']!r} {candidates}"
        assert row["source"] == found.source, (row["source"], found)
        candidates.remove(found)
    assert not set(UNSUBSCRIBED) & {r["topic"] for r in rows}

    # Nothing but the good alarm changed anything.
    assert await conn.fetchval("SELECT count(*) FROM incidents") == 1
    assert await conn.fetchval("SELECT array_agg(alarm_id) FROM alarms") == ["the-good-one"]
    assert await conn.fetchval("SELECT count(*) FROM cap_messages") == 0
    assert [r["name"] for r in await conn.fetch("SELECT name FROM events ORDER BY seq")] == [
        "sensor.online",
        "incident.opened",
    ]
    assert (
        await conn.fetchrow("SELECT status, status_at, position, position_at FROM units WHERE id = 'U-1'")
        == unit_before
    )
    assert await conn.fetchval("SELECT count(*) FROM sensors WHERE id LIKE 'GHOST%'") == 0


async def test_silent_sensor_goes_offline_once_and_comes_back(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(command.app, "LIVENESS_INTERVAL_S", 0.5)
    sweeps = 0

    async def counting_sweep(sweep_conn: asyncpg.Connection, now: datetime) -> int:
        nonlocal sweeps
        went = await mark_silent_sensors(sweep_conn, now)
        sweeps += 1
        return went

    monkeypatch.setattr(command.app, "mark_silent_sensors", counting_sweep)
    tokens = await seed_minimal(database_url)
    await conn.execute("UPDATE sensors SET heartbeat_s = 1 WHERE id = 'S-1'")
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings), console(settings, tokens["commander"]) as ws:
        await ws.receive()
        async with publisher(mqtt_url) as pub:
            await pub.publish(ALARM_TOPIC, alarm("wake-up"))
            online = await ws.until("sensor.online", id="S-1")

            _, offline = await _collect_until(ws, "sensor.offline", timeout=20, id="S-1")
            silent = datetime.fromisoformat(offline["data"]["time"]) - datetime.fromisoformat(
                offline["data"]["last_seen"]
            )
            # Not before one heartbeat plus grace (1 s * 1.5); the sweeper runs every 0.5 s.
            assert timedelta(seconds=1.5) <= silent < timedelta(seconds=10), silent
            assert offline["data"]["reason"] == "silent" and offline["seq"] > online["seq"]

            # Several more sweeps of a still-silent sensor say nothing more.
            loop = asyncio.get_running_loop()
            after, deadline = sweeps, loop.time() + 10
            while sweeps < after + 3:
                assert loop.time() < deadline, f"the sweeper ran {sweeps - after} times in 10 s"
                await asyncio.sleep(0.05)
            await pub.publish(STATE_TOPIC, b"online")
            between, back = await _collect_until(ws, "sensor.online", id="S-1")

        assert [e["name"] for e in between if e["name"].startswith("sensor.")] == []
        assert back["seq"] > offline["seq"]
        # Before it came back (it goes silent again 1.5 s later, which is right).
        offline_events = await conn.fetchval(
            "SELECT count(*) FROM events WHERE name = 'sensor.offline' AND data->>'id' = 'S-1' AND seq < $1",
            back["seq"],
        )
        assert offline_events == 1


async def test_last_will_offline_marks_sensor_offline(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection
) -> None:
    tokens = await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    try:
        async with running_server(settings), console(settings, tokens["commander"]) as ws:
            await ws.receive()
            async with publisher(mqtt_url) as pub:
                await pub.publish(STATE_TOPIC, b"online")
                await ws.until("sensor.online", id="S-1")
            client = await asyncio.to_thread(_connect_with_will, mqtt_url, STATE_TOPIC, b"offline")
            # Gone without a DISCONNECT: the broker publishes the will.
            sock = client.socket()
            assert isinstance(sock, socket.socket)
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()
            offline = await ws.until("sensor.offline", id="S-1")
            assert offline["data"]["state"] == "offline"
            assert await conn.fetchval("SELECT state FROM sensors WHERE id = 'S-1'") == "offline"
    finally:
        # The retained will would reach every later test's server.
        await asyncio.to_thread(_retained, mqtt_url, STATE_TOPIC, b"")


async def test_unit_status_reports(database_url: str, mqtt_url: str, conn: asyncpg.Connection) -> None:
    tokens = await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    reported = datetime.now(UTC).replace(microsecond=0)
    async with running_server(settings), console(settings, tokens["commander"]) as ws:
        await ws.receive()
        async with publisher(mqtt_url) as pub:
            await pub.publish(STATUS_TOPIC, {"status": "en_route", "time": reported.isoformat()})
            event = await ws.until("unit.status", id="U-1")
            assert event["data"]["status"] == "en_route"
            row = await conn.fetchrow("SELECT status, status_at FROM units WHERE id = 'U-1'")
            assert (row["status"], row["status_at"]) == ("en_route", reported)

            older = (reported - timedelta(minutes=1)).isoformat()
            await pub.publish(STATUS_TOPIC, {"status": "available", "time": older})
            # Published after it, so stored after it: once these are dead letters, it was handled.
            await pub.publish(STATUS_TOPIC, {"status": "teleporting", "time": reported.isoformat()})
            await pub.publish("units/U-404/status", {"status": "available", "time": reported.isoformat()})
            await wait_for_value(conn, "SELECT count(*) FROM dead_letters", 2)

    row = await conn.fetchrow("SELECT status, status_at FROM units WHERE id = 'U-1'")
    assert (row["status"], row["status_at"]) == ("en_route", reported)
    assert await conn.fetchval("SELECT count(*) FROM events WHERE name = 'unit.status'") == 1
    letters = [tuple(r) for r in await conn.fetch("SELECT topic, reason FROM dead_letters ORDER BY id")]
    assert letters == [
        (STATUS_TOPIC, "unknown unit status 'teleporting'"),
        ("units/U-404/status", "unknown unit 'U-404'"),
    ]


# ------------------------------------------ regressions: bugs these tests found


async def test_cap_dead_letters_are_counted_under_source_cap(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection
) -> None:
    await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings), publisher(mqtt_url) as pub:
        await pub.publish(CAP_TOPIC, b"<alert")
        await pub.publish(ALARM_TOPIC, b"{")
        await wait_for_value(conn, "SELECT count(*) FROM dead_letters", 2)
        # Both may land in one batch, where CAP documents are parsed last.
        assert await conn.fetchval("SELECT array_agg(source ORDER BY source) FROM dead_letters") == [
            "cap",
            "mqtt",
        ]
        split = {"cap": 1.0, "mqtt": 1.0}
        await _metric_until(settings, "emergency_dead_letters_total", lambda v: v == split, timeout=3)


async def test_every_report_for_an_unknown_unit_or_sensor_is_dead_lettered(conn: asyncpg.Connection) -> None:
    # Straight to store_batch, so all six are in one batch, as they are under load.
    now = datetime.now(UTC)
    ages = (timedelta(seconds=2), timedelta(seconds=1))
    result = await store_batch(
        conn,
        positions=[
            (Position("GHOST", 30.0, 120.0, now - age), Raw("units/GHOST/position", b"%d" % i))
            for i, age in enumerate(ages)
        ],
        statuses=[
            (StatusReport("GHOST", "available", now - age), Raw("units/GHOST/status", b"%d" % i))
            for i, age in enumerate(ages)
        ],
        states=[
            ("GHOST", state, Raw("sensors/GHOST/state", state.encode())) for state in ("online", "offline")
        ],
        now=now,
    )
    assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 6
    assert result.dead_letters == 6


def _huge(field: str, digits: str) -> bytes:
    doc = json.dumps(alarm("huge", lat=30.27, lon=120.15) | {field: "@@"})
    return doc.replace('"@@"', digits).encode()


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        pytest.param(ALARM_TOPIC, _huge("lat", "1" + "0" * 400), id="integer-beyond-float"),
        pytest.param(ALARM_TOPIC, _huge("value", "1" * 5000), id="integer-over-4300-digits"),
        pytest.param(STATE_TOPIC, b"online" + b" " * (70 * KIB), id="oversized-online-state"),
    ],
)
async def test_contract_gaps_are_dead_lettered(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection, topic: str, payload: bytes
) -> None:
    await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings), publisher(mqtt_url) as pub:
        await pub.publish(topic, payload)
        await pub.publish(ALARM_TOPIC, alarm("after-it"))
        await wait_for_value(conn, "SELECT count(*) FROM alarms WHERE alarm_id = 'after-it'", 1, timeout=4)
    assert [r["topic"] for r in await conn.fetch("SELECT topic FROM dead_letters")] == [topic]
