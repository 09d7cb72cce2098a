"""The fuzz corpus: malformed alarms, states and CAP documents, each with the reason it must get.

Every payload goes to a topic of its own (``sensors/FZ-{n}/alarm`` and so on),
so the dead letter it produces names it. The sensors ``FZ-{n}`` are
registered with a location: a payload the server wrongly accepted would be
stored and open an incident, which the case would see.

Two sources, mixed:

- hypothesis draws alarm documents whose fields each come from a mix of valid
  and invalid values (wrong types, unknown words, bad times, out-of-range or
  non-finite numbers, overlong strings, extra keys), collected with a
  ``@given`` function called once (``derandomize``: the same corpus each run);
- random mutations (seeded) of valid alarms, states and CAP alerts: bit
  flips, inserted, deleted and duplicated bytes, truncation, splices of
  hostile JSON (deep nesting, huge numbers, NaN, lone surrogates, NUL),
  other encodings, oversized payloads, and field-level damage.

The oracle is the pure parser the server itself runs (sensors/alarms.py,
sensors/cap.py), called here at generation time: a candidate it accepts is a
valid message after all and is left out (counted), since it would rightly
be stored; every other one is kept with the parser's reason. The parser is
evaluated at ``now`` and at ``now + 30 min`` and a candidate is kept only
when both reject it, so a time just over the one-hour limit cannot turn
valid while the run lasts. Two kinds of accepted candidates are kept on
purpose, with the database's refusal as their expected fate: text with a NUL
or a lone surrogate in a stored field (``id``, ``unit``, ``message``).

Anything the parser raises other than ``Rejected`` is a parser bug (the
contract says it raises only ``Rejected``): it is recorded, and fails the case.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from sensors.alarms import KINDS, MAX_PAYLOAD, SEVERITIES, Rejected, parse_alarm, parse_state
from sensors.cap import parse_cap

DATABASE_REFUSES = "database rejected it"
BAD_TOPIC = "topic is not one this server understands"
SKEW = timedelta(minutes=30)  # the run's length, and then some

CAP_ALERT = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>FZ-{n}</identifier>'
    "<sender>chaos@example.org</sender><sent>{sent}</sent>"
    "<status>Actual</status><msgType>Alert</msgType><scope>Public</scope>"
    "<info><category>Fire</category><event>Fire</event><urgency>Immediate</urgency>"
    "<severity>Severe</severity><certainty>Observed</certainty>"
    "<area><areaDesc>Somewhere</areaDesc><circle>30.27,120.15 1</circle></area></info></alert>"
)


@dataclass(frozen=True, slots=True)
class Payload:
    topic: str
    payload: bytes
    reason: str  # the dead letter's reason must be this (or start so, see matches)
    family: str  # what made it: for the report's breakdown


@dataclass(slots=True)
class Corpus:
    payloads: list[Payload] = field(default_factory=list)
    valid_left_out: int = 0
    parser_bugs: list[str] = field(default_factory=list)
    families: Counter[str] = field(default_factory=Counter)


def matches(expected: str, actual: str) -> bool:
    """Whether a dead letter's reason is the expected one.

    A time too far ahead is reported with the distance, which depends on the
    moment the server parsed it; the rest must be equal.
    """
    if expected.endswith("in the future") or " in the future" in expected:
        return actual.startswith(expected.split(" is ")[0]) and "in the future" in actual
    if expected == DATABASE_REFUSES:
        return actual.startswith(DATABASE_REFUSES)
    return actual == expected


def _valid_alarm(rng: random.Random, n: int, now: datetime) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": f"fz-{n}",
        "kind": rng.choice(sorted(KINDS)),
        "severity": rng.choice(SEVERITIES),
        "time": (now - timedelta(seconds=rng.uniform(0, 3600))).isoformat(),
    }
    if rng.random() < 0.5:
        doc["lat"], doc["lon"] = rng.uniform(-90, 90), rng.uniform(-180, 180)
    if rng.random() < 0.5:
        doc["value"] = rng.uniform(-1e6, 1e6)
    if rng.random() < 0.3:
        doc["unit"] = rng.choice(["ppm", "m", "%", "°C"])
    if rng.random() < 0.3:
        doc["message"] = "smoke in the stairwell"
    return doc


# Hostile JSON fragments spliced into a document or used as a field value.
HOSTILE_VALUES: tuple[str, ...] = (
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "-1e999",
    "1" * 5000,  # beyond Python's int-to-str digit limit
    "[" * 5000 + "]" * 5000,  # deeper than the recursion limit
    '"\\u0000"',
    '"\\ud800"',
    '"\\udfff x"',
    "null",
    "true",
    "[]",
    "{}",
    '""',
    '"   "',
    "-0",
    "1e308",
    '"\\u202e"',
)
WRONG_WORDS = ("Fire", "FIRE", " fire", "smoke ", "volcano", "", "severe", "EXTREME", "High", "ñ", "火灾")
BAD_TIMES = (
    "2026-01-01T00:00:00",  # no offset
    "2026-01-01",
    "yesterday",
    "2026-13-01T00:00:00Z",
    "2026-01-01T25:00:00+00:00",
    "9999-12-31T23:59:59+14:00",
    "",
    "0",
    "2026-01-01T00:00:00+25:00",
)


def _field_damage(rng: random.Random, doc: dict[str, Any], now: datetime) -> bytes:
    """Break one or two fields of a valid document and serialise it."""
    doc = dict(doc)
    for _ in range(rng.randint(1, 2)):
        name = rng.choice(
            ["id", "kind", "severity", "time", "lat", "lon", "value", "unit", "message", "extra"]
        )
        how = rng.random()
        if how < 0.2:
            doc.pop(name, None)
        elif how < 0.4:
            doc[name] = rng.choice([None, True, 0, 1.5, [], {}, ["x"], {"a": 1}, "x"])
        elif how < 0.55 and name in ("kind", "severity"):
            doc[name] = rng.choice(WRONG_WORDS)
        elif how < 0.7 and name == "time":
            ahead = timedelta(hours=rng.uniform(1.6, 1e5))
            doc[name] = rng.choice([*BAD_TIMES, (now + ahead).isoformat()])
        elif how < 0.8 and name in ("lat", "lon"):
            doc[name] = rng.choice([91.0, -90.5, 180.01, -1e300, 1e308])
        elif how < 0.9:
            limit = {"id": 128, "unit": 32, "message": 2000, "time": 64, "kind": 64, "severity": 32}.get(
                name, 2000
            )
            doc[name] = "x" * (limit + rng.randint(1, 50))
        else:
            token = rng.choice(HOSTILE_VALUES)
            text = json.dumps(doc | {name: "@@HOSTILE@@"}).replace('"@@HOSTILE@@"', token)
            return text.encode()
    return json.dumps(doc, allow_nan=True).encode()


def _byte_damage(rng: random.Random, body: bytes) -> bytes:
    """Random damage to serialised bytes."""
    data = bytearray(body)
    for _ in range(rng.randint(1, 4)):
        how = rng.randrange(8)
        at = rng.randrange(len(data) + 1) if data else 0
        if how == 0 and data:
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        elif how == 1:
            data[at:at] = rng.randbytes(rng.randint(1, 8))
        elif how == 2 and data:
            del data[at : at + rng.randint(1, 16)]
        elif how == 3:
            del data[at:]
        elif how == 4 and data:
            end = min(len(data), at + rng.randint(1, 32))
            data[at:at] = data[at:end]
        elif how == 5:
            data[at:at] = rng.choice(
                [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\x00", b"\xf4\x90\x80\x80"]
            )
        elif how == 6:
            data[at:at] = rng.choice(HOSTILE_VALUES).encode()[:200]
        else:
            data[at:at] = rng.choice([b"{", b"}", b"[", b"]", b",", b":", b'"', b"\\", b"\\u", b"//", b"/*"])
    return bytes(data)


def _whole_damage(rng: random.Random, doc: dict[str, Any]) -> bytes:
    """Damage to the payload as a whole: encoding, framing, size."""
    text = json.dumps(doc)
    how = rng.randrange(7)
    if how == 0:
        return text.encode(rng.choice(["utf-16", "utf-32", "utf-16-le"]))
    if how == 1:
        return b"\xef\xbb\xbf" + text.encode()  # a byte order mark
    if how == 2:
        return json.dumps([doc]).encode()  # not an object
    if how == 3:
        return (text + rng.choice([",", "}", " x", "\x00", "{}"])).encode()
    if how == 4 and rng.random() < 0.1:
        # Rare on purpose: Mosquitto rewrites its whole persistence file (queued
        # payloads included) on every change, and a few suffice to check the limit.
        return json.dumps(doc | {"message": "m" * (MAX_PAYLOAD + rng.randint(1, 4096))}).encode()
    if how == 5:
        return rng.randbytes(rng.randint(0, 300))
    return b""


def _unstorable(rng: random.Random, doc: dict[str, Any]) -> bytes:
    """Valid to the parser, refused by the database: NUL or a lone surrogate in stored text."""
    name = rng.choice(["id", "unit", "message"])
    escape = rng.choice(["\\u0000", "\\ud800", "\\udfff"])
    value = f"fz@@{rng.randrange(1000)}"
    return json.dumps(doc | {name: value}).replace("@@", escape).encode()


def _state_damage(rng: random.Random) -> bytes:
    base = rng.choice([b"online", b"offline", b'{"battery": 0.9}'])
    damaged = _byte_damage(rng, base)
    return damaged


def _cap_damage(rng: random.Random, n: int, now: datetime) -> bytes:
    alert = CAP_ALERT.format(n=n, sent=now.isoformat(timespec="seconds")).encode()
    how = rng.random()
    if how < 0.6:
        return _byte_damage(rng, alert)
    if how < 0.8:
        element = rng.choice(
            ["identifier", "sender", "sent", "status", "msgType", "scope", "severity", "circle"]
        )
        start, end = alert.find(f"<{element}>".encode()), alert.find(f"</{element}>".encode())
        replacement = rng.choice([b"", b"???", b"&undefined;", b"<x/>", b"-999,999 -1"])
        return alert[: start + len(element) + 2] + replacement + alert[end:]
    return rng.choice(
        [
            b'<!DOCTYPE alert [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><alert>&b;</alert>',
            b'<!DOCTYPE alert SYSTEM "file:///etc/passwd"><alert/>',
            b"<alert/>",
            b'<alert xmlns="urn:example:not-cap"/>',
            b"<" * 1000,
        ]
    )


def _hypothesis_docs(count: int) -> list[dict[str, Any]]:
    """``count`` alarm-shaped documents drawn by hypothesis (the same ones every run)."""
    junk = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=40),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    )
    word = st.sampled_from(sorted(KINDS)) | st.sampled_from(WRONG_WORDS) | st.text(max_size=70)
    severity = st.sampled_from(SEVERITIES) | st.sampled_from(WRONG_WORDS) | st.text(max_size=40)
    when = st.sampled_from(BAD_TIMES) | st.datetimes(timezones=st.none() | st.timezones()).map(
        lambda d: d.isoformat()
    )
    number = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**1100), 2**1100)
    text = st.text(max_size=3000)
    shape = st.fixed_dictionaries(
        {},
        optional={
            "id": text | junk,
            "kind": word | junk,
            "severity": severity | junk,
            "time": when | junk,
            "lat": number | junk,
            "lon": number | junk,
            "value": number | junk,
            "unit": text | junk,
            "message": text | junk,
            "extra": junk,
        },
    )
    docs: list[dict[str, Any]] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(shape)
    def collect(doc: dict[str, Any]) -> None:
        docs.append(doc)

    collect()
    return docs


def _oracle(parse: Callable[[datetime], object], now: datetime, corpus: Corpus, label: str) -> str | None:
    """The parser's reason, when it rejects at both ``now`` and ``now + SKEW``; None when it accepts."""
    reasons = []
    for moment in (now, now + SKEW):
        try:
            parse(moment)
        except Rejected as exc:
            reasons.append(exc.reason)
        except Exception as exc:  # the contract says only Rejected escapes
            corpus.parser_bugs.append(f"{label}: {exc!r}"[:300])
            return None
    return reasons[0] if len(reasons) == 2 else None


def _stored_text_is_poison(payload: bytes) -> bool:
    """The document parses, and a field the database stores as text holds a NUL or a lone surrogate."""
    try:
        doc = json.loads(payload)
    except ValueError:
        return False
    for name in ("id", "unit", "message"):
        value = doc.get(name) if isinstance(doc, dict) else None
        if isinstance(value, str) and ("\x00" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value)):
            return True
    return False


def build(count: int, hypothesis_count: int, seed: int, now: datetime | None = None) -> Corpus:
    """``count`` payloads the server must dead-letter, ``hypothesis_count`` of them from hypothesis."""
    now = now or datetime.now(UTC)
    rng = random.Random(seed)
    corpus = Corpus()
    drawn = iter(_hypothesis_docs(hypothesis_count)) if hypothesis_count else iter(())
    n = 0
    while len(corpus.payloads) < count:
        n += 1
        sensor = f"FZ-{len(corpus.payloads)}"
        pick = rng.random()
        family: str
        if len(corpus.payloads) < hypothesis_count:
            doc = next(drawn, None)
            if doc is None:
                break
            family, topic = "hypothesis", f"sensors/{sensor}/alarm"
            payload = json.dumps(doc, allow_nan=True).encode()
        elif pick < 0.03:
            family, topic, payload = "state", f"sensors/{sensor}/state", _state_damage(rng)
        elif pick < 0.08:
            family, topic, payload = "cap", f"cap/{sensor.lower()}", _cap_damage(rng, n, now)
        elif pick < 0.09:
            family, topic = "bad topic", f"sensors/{sensor} !/alarm"
            payload = json.dumps(_valid_alarm(rng, n, now)).encode()
        elif pick < 0.092:
            family, topic, payload = (
                "unstorable",
                f"sensors/{sensor}/alarm",
                _unstorable(rng, _valid_alarm(rng, n, now)),
            )
        else:
            doc = _valid_alarm(rng, n, now)
            which = rng.random()
            if which < 0.45:
                family, payload = "field damage", _field_damage(rng, doc, now)
            elif which < 0.85:
                family, payload = "byte damage", _byte_damage(rng, json.dumps(doc).encode())
            else:
                family, payload = "whole payload", _whole_damage(rng, doc)
            topic = f"sensors/{sensor}/alarm"
        reason = _expected(topic, payload, now, corpus, family)
        if reason is None:
            corpus.valid_left_out += 1
            continue
        corpus.payloads.append(Payload(topic, payload, reason, family))
        corpus.families[family] += 1
    return corpus


def _expected(topic: str, payload: bytes, now: datetime, corpus: Corpus, family: str) -> str | None:
    """The dead letter's reason ``payload`` on ``topic`` must get; None for a valid message."""
    if family == "bad topic":
        return BAD_TOPIC
    if topic.startswith("cap/"):
        reason = _oracle(lambda _: parse_cap(payload), now, corpus, topic)
        return None if reason is None else f"CAP: {reason}"
    if topic.endswith("/state"):
        return _oracle(lambda _: parse_state(payload), now, corpus, topic)
    sensor = topic.split("/")[1]
    reason = _oracle(lambda moment: parse_alarm(sensor, payload, moment), now, corpus, topic)
    if reason is None and _stored_text_is_poison(payload):
        return DATABASE_REFUSES
    return reason
