"""Case 5: fuzzed payloads through the broker to the server, and malformed MQTT at the broker.

The corpus (chaos/fuzz.py) goes out from a publisher process on the
all-topics account, with QoS 1, while raw TCP connections send broken MQTT
at the same broker (chaos/garbage.py). Then:

- no crash: the server process is the one that started (same pid), has
  logged no parser error, and ``/healthz`` is 200; the broker is the same
  process and still accepts a login;
- every payload is dead-lettered once, under its own topic, with a non-empty
  reason, and the reason is the one the pure parser gives (or the
  database's refusal for the poison text it lets through);
- nothing else happened: no alarm from a fuzz sensor, no incident, no CAP
  message recorded; then one valid alarm from a registered sensor is stored
  and opens the only incident (the pipeline is alive, not just the process).
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import asyncpg
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bench.procs import python_module
from chaos import fuzz, garbage
from chaos.fleet import build_fleet
from chaos.procs import Child
from chaos.profile import Profile, progress
from chaos.publisher import write_corpus
from chaos.report import Row
from chaos.rig import Rig, mqtt_login_env
from command.settings import MqttTarget


async def _register(url: str, count: int) -> None:
    """The fuzz sensors ``FZ-0`` …, each with a location, so a payload wrongly accepted would be stored."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            """INSERT INTO sensors (id, kind, location)
               SELECT 'FZ-' || g, 'smoke', ST_SetSRID(ST_MakePoint(120.0 + g * 1e-6, 30.0), 4326)
               FROM generate_series(0, $1 - 1) AS g""",
            count,
        )
    finally:
        await conn.close()


def _publish_once(url: str, topic: str, payload: bytes) -> bool:
    """Publish one QoS 1 message and wait for the broker's PUBACK (a fresh client)."""
    target = MqttTarget.from_url(url)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"chaos-check-{uuid.uuid4().hex[:8]}")
    client.username_pw_set(target.username, target.password)
    client.connect(target.host, target.port)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        return info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def _login_accepted(url: str) -> bool:
    """Whether the broker answers a login with a successful CONNACK (MQTT 5)."""
    target = MqttTarget.from_url(url)
    answered = threading.Event()
    accepted: list[bool] = []
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=f"chaos-login-{uuid.uuid4().hex[:8]}", protocol=paho.MQTTv5
    )
    client.username_pw_set(target.username, target.password)

    def on_connect(_c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        accepted.append(not reason.is_failure)
        answered.set()

    client.on_connect = on_connect
    try:
        client.connect(target.host, target.port)
    except OSError:
        return False
    client.loop_start()
    try:
        return answered.wait(10) and accepted[0]
    finally:
        client.disconnect()
        client.loop_stop()


async def _wait_dead_letters(conn: asyncpg.Connection, expected: int, timeout: float) -> int:
    """Poll until ``expected`` dead letters exist, or the count has not moved for 20 s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last, since = -1, loop.time()
    while True:
        count = int(await conn.fetchval("SELECT count(*) FROM dead_letters"))
        if count >= expected or loop.time() > deadline or loop.time() - since > 20:
            return count
        if count != last:
            last, since = count, loop.time()
        await asyncio.sleep(0.5)


async def run(rig: Rig, profile: Profile, rng: random.Random) -> Row:
    seed = rng.randrange(2**31)
    progress(
        f"fuzz: building {profile.fuzz_payloads:,} payloads ({profile.fuzz_hypothesis:,} from hypothesis)"
    )
    started = time.monotonic()
    corpus = await asyncio.to_thread(fuzz.build, profile.fuzz_payloads, profile.fuzz_hypothesis, seed)
    built_s = time.monotonic() - started
    path = rig.directory / "fuzz.corpus"
    await asyncio.to_thread(write_corpus, path, [(p.topic, p.payload) for p in corpus.payloads])

    url = await rig.fresh_database("fuzz")
    await _register(url, len(corpus.payloads))
    async with rig.broker("fuzz") as broker, rig.server("fuzz", url, broker.url) as server:
        server_pid, broker_pid = server.pid, broker.pid
        admin = MqttTarget.from_url(broker.admin_url)
        assert admin.username is not None and admin.password is not None
        out = rig.directory / "fuzz.acks.json"
        publisher = Child(
            "fuzz publisher",
            python_module("chaos.publisher", "--port", broker.port, "--corpus", path, "--out", out),
            log=rig.log_path("fuzz-publisher"),
            env=mqtt_login_env(broker.admin_url),
        )
        conn = await asyncpg.connect(url)
        try:
            sending = time.monotonic()
            await publisher.start()
            if (line := await publisher.readline(timeout=60)) != "ready":
                raise publisher.failure(f"said {line!r} instead of ready")
            # Broken MQTT at the same broker while the corpus flows.
            attacked = await garbage.attack(
                "127.0.0.1", broker.port, profile.malformed_packets, admin.username, admin.password, seed
            )
            progress(f"fuzz: {attacked.sent:,} malformed MQTT sequences sent; waiting for the corpus")
            await publisher.finish(timeout=1800)
            acks = json.loads(out.read_text())
            letters = await _wait_dead_letters(conn, len(corpus.payloads), timeout=900)
            drained_s = time.monotonic() - sending
            health = await server.health()
            login_ok = await asyncio.to_thread(_login_accepted, broker.admin_url)
            # Alive, not just running: one good alarm is stored and opens an incident.
            sensor = build_fleet()[0]
            good = {"id": "after-fuzz", "kind": sensor.cluster.kind, "severity": "Severe"}
            good["time"] = datetime.now(UTC).isoformat()
            published = await asyncio.to_thread(
                _publish_once, broker.admin_url, f"sensors/{sensor.id}/alarm", json.dumps(good).encode()
            )
            stored_good = False
            for _ in range(100):
                if await conn.fetchval("SELECT count(*) FROM alarms WHERE alarm_id = 'after-fuzz'"):
                    stored_good = True
                    break
                await asyncio.sleep(0.1)
            rows = await conn.fetch("SELECT topic, reason FROM dead_letters")
            fuzz_alarms = await conn.fetchval("SELECT count(*) FROM alarms WHERE sensor_id LIKE 'FZ-%'")
            incidents = await conn.fetchval("SELECT count(*) FROM incidents")
            cap_messages = await conn.fetchval("SELECT count(*) FROM cap_messages")
            forwarded = await conn.fetchval(
                "SELECT count(*) FROM dead_letters WHERE topic LIKE 'sensors/MQ-%'"
            )
        finally:
            await conn.close()
            await publisher.stop()
        same_server = server.pid == server_pid and server.child is not None and server.child.running
        same_broker = broker.pid == broker_pid
        log = server.log_text()

    by_topic: dict[str, list[str]] = {}
    for r in rows:
        by_topic.setdefault(r["topic"], []).append(r["reason"])
    missing, twice, empty, mismatched = 0, 0, 0, Counter[str]()
    examples: list[str] = []
    for p in corpus.payloads:
        reasons = by_topic.get(p.topic, [])
        if not reasons:
            missing += 1
            continue
        twice += len(reasons) - 1
        if not reasons[0].strip():
            empty += 1
        elif not fuzz.matches(p.reason, reasons[0]):
            mismatched[p.family] += 1
            if len(examples) < 5:
                examples.append(f"{p.topic}: expected {p.reason!r}, got {reasons[0]!r}")
    parser_errors = sum(1 for r in rows if "parser error" in r["reason"]) + log.count("parser failed")
    acked = sum(1 for _, _, code in acks["acks"] if code < 0x80)
    alive = bool(health and health.get("http_status") == 200) and login_ok and stored_good and published
    ok = (
        not corpus.parser_bugs
        and parser_errors == 0
        and missing == 0
        and twice == 0
        and empty == 0
        and not mismatched
        and fuzz_alarms == 0
        and incidents == 1
        and cap_messages == 0
        and same_server
        and same_broker
        and alive
    )
    notes = [
        f"{len(corpus.payloads):,} payloads ({profile.fuzz_hypothesis:,} drawn by hypothesis, the rest "
        f"random mutations; by family {dict(corpus.families.most_common())}), built in {built_s:.0f} s; "
        f"{corpus.valid_left_out:,} candidates the parser accepted (valid after mutation) were left out.",
        f"Published with QoS 1 on the all-topics account: {acked:,} acknowledged by the broker; "
        f"{letters:,} dead letters after {drained_s:.0f} s.",
        f"Per payload: without a dead letter {missing}, with more than one {twice}, with an empty reason "
        f"{empty}, with a reason other than the parser's {sum(mismatched.values())}"
        + (f" ({dict(mismatched)}, e.g. {examples})" if mismatched else "")
        + ".",
        f"Parser bugs (an exception other than Rejected, at generation or in the server): "
        f"{len(corpus.parser_bugs) + parser_errors}"
        + (f", e.g. {corpus.parser_bugs[:3]}" if corpus.parser_bugs else "")
        + ".",
        f"Alarms stored from fuzz sensors {fuzz_alarms}, CAP messages recorded {cap_messages}, incidents "
        f"{incidents} (1 expected: the valid alarm sent afterwards, stored: {stored_good}).",
        f"{attacked.sent:,} malformed MQTT sequences on raw TCP connections ({len(attacked.by_attack)} "
        f"kinds, {attacked.login_failures} logins refused); how they ended: "
        f"{dict(attacked.endings.most_common())}; forwarded to the server anyway: {forwarded}.",
        f"Afterwards: server pid unchanged {same_server}, /healthz {health}, broker pid unchanged "
        f"{same_broker}, broker accepts a login {login_ok}.",
    ]
    return Row(
        case="fuzz",
        title="Fuzzed payloads and malformed MQTT",
        runs=len(corpus.payloads),
        ok=ok,
        verdict="pass" if ok else "FAIL",
        acked=acked,
        notes=notes,
        apart="the fuzz case sends nothing that should be stored",
        details={
            "families": dict(corpus.families),
            "valid_left_out": corpus.valid_left_out,
            "parser_bugs": corpus.parser_bugs[:20],
            "missing": missing,
            "twice": twice,
            "mismatched": dict(mismatched),
            "mismatch_examples": examples,
            "malformed_mqtt": {
                "sent": attacked.sent,
                "by_attack": dict(attacked.by_attack),
                "endings": dict(attacked.endings),
                "forwarded": forwarded,
            },
            "health": health,
            "seconds_to_dead_letter_all": drained_s,
        },
    )
