"""Case 3: restart Mosquitto mid-flood: the shipped configuration, an opt-in share group, the default
configuration, and a SIGKILL.

Each restart goes the same way, so the rows compare like with like:

1. the server is paused (SIGSTOP) for 6 s, so a backlog sits in the broker
   at the moment it stops: up to the server's Receive Maximum (1,000)
   delivered and unacknowledged, the rest (at 200 alarms/s, a few hundred)
   queued in its session, never delivered;
2. the broker is stopped (SIGTERM, a clean stop that saves its persistence;
   or SIGKILL), the server resumed, and after 0.5 s the broker started again
   on the same port and folder;
3. the server reconnects by itself (paho, 1 to 10 s backoff), resumes its
   session and stores the backlog; the publishers reconnect and re-send
   what was in flight.

The server reaches the broker through the MQTT tap (chaos/tap.py), which
tells the two parts of each backlog apart: an alarm the broker had delivered
to the server before it stopped, and one it still held in its queue. The
first the paused server stores itself when it resumes; only the second
proves the broker's queue survived the restart.

Rows:

- the shipped configuration: ``emergency up``'s broker configuration
  (persistence saved on every change) and the server's defaults (plain
  subscriptions: ``EMERGENCY_MQTT_SHARE_GROUP`` unset), SIGTERM: must lose
  nothing;
- † an opt-in share group (``EMERGENCY_MQTT_SHARE_GROUP=emergency``, as for
  several instances, docs/scaling.md), SIGTERM: Mosquitto 2.0.11 restores a
  persistent session's plain subscriptions from its persistence file but not
  its shared ones (``$share/...``), so until the server has reconnected and
  subscribed again, a sensor's alarm matches no subscription and is
  acknowledged with reason 0x10 and dropped. A known, documented limitation of
  the broker, measured here and reported apart; a loss it does not explain
  (an alarm not acknowledged with 0x10) or a duplicate still fails the row;
- † the control: Mosquitto's default configuration (no persistence), SIGTERM:
  the session, its subscriptions and its queue live in memory only, so the
  backlog is expected to be lost, which shows what the shipped settings buy;
- † the shipped configuration, SIGKILL: docs/operations.md bounds the loss by
  the server's Receive Maximum per crash (what was handed to the server and
  not yet acknowledged is not a "change" Mosquitto 2.0 saves). Reported
  against that bound, apart from the clean cases.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from chaos.flood import Check, Truth, flood, settle
from chaos.profile import Profile, progress
from chaos.report import Row, spread
from chaos.rig import Rig
from chaos.tap import MqttTap, url_via
from sensors.mqtt import RECEIVE_MAXIMUM

# How long the server is paused before each restart: longer than its Receive Maximum
# lasts at the flood's rate, so part of the backlog stays queued in the broker.
HOLD_S = 6.0
DOWN_S = 0.5  # how long the broker stays down
# The share group of the opt-in row, as an operator running several instances would set it.
SHARE_GROUP = "emergency"


@dataclass(slots=True)
class Outcome:
    truth: Truth
    verdict: Check
    restarts: list[dict[str, float]]
    stored_at: dict[str, float]
    delivered_at: dict[str, float]  # alarm id -> when the broker first delivered it to the server

    @property
    def lost(self) -> list[str]:
        return self.verdict.lost

    @property
    def duplicated(self) -> int:
        return self.verdict.duplicated

    @property
    def details(self) -> dict[str, object]:
        return {"check": self.verdict.as_dict(), "restarts": self.restarts}

    @property
    def lost_unrouted(self) -> int:
        """Lost alarms the restarted broker acknowledged with 0x10 (no matching subscribers)."""
        return len(set(self.lost) & self.truth.no_subscribers)


@dataclass(frozen=True, slots=True)
class _Broker:
    """How to reach, stop and start the broker of one row."""

    port: int
    server_url: str
    pub_url: str
    stop: Callable[[bool], None]  # SIGKILL when True, else SIGTERM
    start: Callable[[], None]  # on the same port and folder


async def _restarts(
    rig: Rig,
    profile: Profile,
    name: str,
    *,
    default: bool,
    kill: bool,
    count: int,
    share_group: str | None = None,
) -> Outcome:
    url = await rig.fresh_database(name)
    if default:
        async with rig.default_broker(name) as plain:
            reach = _Broker(plain.port, plain.url, plain.url, plain.stop, plain.start)
            return await _flood_through(
                rig, profile, name, url, reach, kill=kill, count=count, share_group=None
            )
    async with rig.broker(name) as broker:
        # The publishers play every sensor: the demo simulator's account may.
        pub_url = await asyncio.to_thread(broker.simulator_url)

        def start() -> None:
            broker.start(broker.port)  # same port and folder: its persistence file

        reach = _Broker(broker.port, broker.url, pub_url, broker.stop, start)
        return await _flood_through(
            rig, profile, name, url, reach, kill=kill, count=count, share_group=share_group
        )


async def _flood_through(
    rig: Rig,
    profile: Profile,
    name: str,
    url: str,
    broker: _Broker,
    *,
    kill: bool,
    count: int,
    share_group: str | None,
) -> Outcome:
    restarts: list[dict[str, float]] = []
    async with MqttTap(broker.port) as tap:
        via_tap = url_via(broker.server_url, tap.port)
        async with rig.server(name, url, via_tap, share_group=share_group) as server:
            prefix = name.replace("-", "")
            async with flood(rig, prefix, broker.port, broker.pub_url, profile.rate, profile.publishers) as f:
                await asyncio.sleep(2)
                for i in range(count):
                    await asyncio.sleep(1.5)
                    paused = time.time()
                    server.pause()
                    await asyncio.sleep(HOLD_S)
                    stopping = time.time()
                    await asyncio.to_thread(broker.stop, kill)
                    down = time.time()
                    server.resume()
                    await asyncio.sleep(DOWN_S)
                    starting = time.time()
                    await asyncio.to_thread(broker.start)
                    up = time.time()
                    restarts.append(
                        {"paused": paused, "stopping": stopping, "down": down, "starting": starting, "up": up}
                    )
                    progress(
                        f"{name} {i + 1}/{count}: broker {'killed' if kill else 'stopped'} and restarted"
                    )
                await asyncio.sleep(3)
                truth = await f.stop()
            verdict, stored_at = await settle(url, truth, timeout=90)
    return Outcome(
        truth=truth,
        verdict=verdict,
        restarts=restarts,
        stored_at=stored_at,
        delivered_at=_first_deliveries(tap),
    )


def _first_deliveries(tap: MqttTap) -> dict[str, float]:
    first: dict[str, float] = {}
    for when, alarm in tap.publishes:
        if alarm is not None and alarm not in first:
            first[alarm] = when
    return first


def _recovery(outcome: Outcome) -> list[float]:
    """Per restart: broker start → the first alarm it acknowledged after restarting is stored."""
    recovery = []
    for r in outcome.restarts:
        after = [
            outcome.stored_at[a]
            for a, t in outcome.truth.acked.items()
            if t >= r["up"] and a in outcome.stored_at
        ]
        recovery.append(min(after, default=math.nan) - r["starting"])
    return recovery


@dataclass(frozen=True, slots=True)
class Backlog:
    """What the broker was responsible for and had not seen stored when it stopped, per restart."""

    delivered: list[int]  # handed to the (paused) server, unacknowledged
    queued: list[int]  # still in the broker's queue, never delivered
    queued_lost: list[int]  # of those, never stored
    drained: list[float]  # broker start → every queued alarm stored (NaN if some were lost)


def _backlogs(outcome: Outcome) -> Backlog:
    delivered, queued, queued_lost, drained = [], [], [], []
    since = 0.0
    for r in outcome.restarts:
        # Acknowledged to a sensor since the previous restart, before this stop, not stored before the pause.
        backlog = [
            a
            for a, t in outcome.truth.acked.items()
            if since <= t < r["stopping"]
            and outcome.stored_at.get(a, math.inf) >= r["paused"]
            and a not in outcome.truth.no_subscribers  # dropped on arrival: never in the broker's care
        ]
        held = [a for a in backlog if outcome.delivered_at.get(a, math.inf) >= r["stopping"]]
        times = [outcome.stored_at[a] for a in held if a in outcome.stored_at]
        delivered.append(len(backlog) - len(held))
        queued.append(len(held))
        queued_lost.append(len(held) - len(times))
        # Only when all of it was stored: the drain of a lost backlog means nothing.
        complete = len(times) == len(held)
        drained.append(max(0.0, max(times, default=r["starting"]) - r["starting"]) if complete else math.nan)
        since = r["up"]
    return Backlog(delivered, queued, queued_lost, drained)


def _restart_of(outcome: Outcome, alarm: str) -> int:
    """The restart a lost alarm belongs to: the last one whose pause began before its acknowledgement
    (the first restart for anything earlier)."""
    acked = outcome.truth.acked[alarm]
    return max((i for i, r in enumerate(outcome.restarts) if r["paused"] <= acked), default=0)


def _lost_per_restart(outcome: Outcome) -> list[int]:
    counts = [0] * len(outcome.restarts)
    for alarm in outcome.lost:
        counts[_restart_of(outcome, alarm)] += 1
    return counts


def _lost_by_where(outcome: Outcome) -> dict[str, int]:
    """Where each lost alarm was when the broker went: the loss, explained."""
    where: dict[str, int] = {}
    for alarm in outcome.lost:
        stopping = outcome.restarts[_restart_of(outcome, alarm)]["stopping"]
        if alarm in outcome.truth.no_subscribers:
            key = "acknowledged with 0x10 (no matching subscribers) after the restart"
        elif outcome.delivered_at.get(alarm, math.inf) < stopping:
            key = "delivered to the server, unacknowledged"
        elif outcome.truth.acked[alarm] < stopping:
            key = "queued in the broker"
        else:
            key = "acknowledged while the broker was going down"
        where[key] = where.get(key, 0) + 1
    return where


def _notes(outcome: Outcome, what: str) -> list[str]:
    backlog = _backlogs(outcome)
    t = outcome.truth
    notes = [
        what,
        f"{t.published:,} published, {len(t.acked):,} acknowledged by the broker, "
        f"{outcome.verdict.stored:,} stored; lost {len(outcome.lost):,} (per restart "
        f"{_lost_per_restart(outcome)}; where they were when the broker stopped: "
        f"{_lost_by_where(outcome) or 'none'}); duplicated {outcome.duplicated}; incidents per family "
        f"{outcome.verdict.incidents}.",
        "At each restart, alarms acknowledged to a sensor and not yet stored: delivered to the paused "
        f"server, unacknowledged, {backlog.delivered}; queued in the broker, never delivered, "
        f"{backlog.queued}, of which never stored {backlog.queued_lost}; broker start → the queued ones "
        f"stored: {spread(backlog.drained)} (– when some were lost).",
        f"Publisher reconnects: {t.reconnects}; messages never acknowledged (not counted as sent): "
        f"{t.unacked}.",
    ]
    if outcome.lost:
        notes.append(f"Lost, e.g.: {sorted(outcome.lost)[:5]}")
    return notes


MEANING = (
    "from the broker's start to the first alarm it acknowledged after restarting being stored (the "
    "server reconnects with a 1 to 10 s backoff)"
)


async def run(rig: Rig, profile: Profile) -> list[Row]:
    procedure = f"server paused {HOLD_S:g} s, broker down {DOWN_S:g} s"
    restarts = profile.broker_restarts
    rows = []

    shipped = await _restarts(rig, profile, "mq-restart", default=False, kill=False, count=restarts)
    rows.append(
        shipped.verdict.row(
            "broker-restart",
            "Restart Mosquitto (shipped config, SIGTERM)",
            restarts,
            recovery_s=_recovery(shipped),
            recovery_meaning=MEANING,
            notes=_notes(
                shipped,
                f"{restarts} clean restarts ({procedure}) of the broker `emergency up` configures; the "
                "server with its defaults: plain subscriptions (EMERGENCY_MQTT_SHARE_GROUP unset), which "
                "Mosquitto restores from its persistence file with the session.",
            ),
            details=shipped.details,
        )
    )

    shared = await _restarts(
        rig, profile, "mq-shared", default=False, kill=False, count=restarts, share_group=SHARE_GROUP
    )
    rows.append(_share_group_row(shared, restarts, procedure))

    control = await _restarts(
        rig, profile, "mq-default", default=True, kill=False, count=profile.control_restarts
    )
    lost = len(control.lost)
    rows.append(
        Row(
            case="broker-default-control",
            title="Control: Mosquitto default config (no persistence), SIGTERM",
            runs=profile.control_restarts,
            # The control shows what persistence buys: it passes by losing.
            ok=lost > 0 and control.duplicated == 0,
            verdict=f"lost {lost:,}, as expected"
            if lost
            else "lost nothing: the control did not show the risk",
            acked=len(control.truth.acked),
            lost=lost,
            duplicated=control.duplicated,
            recovery_s=_recovery(control),
            recovery_meaning=MEANING,
            apart="the control shows what the shipped broker settings buy",
            notes=_notes(
                control,
                f"{profile.control_restarts} clean restarts ({procedure}) of a Mosquitto whose config sets "
                "only the listener and anonymous access: the server's session, its subscriptions, its queue "
                "and its unacknowledged in-flight alarms are in memory only and go with the process (the "
                "alarms sent to the paused server that it had not yet read went with the connection, and "
                "no persisted copy is redelivered); after the restart, alarms that arrive before the "
                "server has subscribed again match nothing.",
            ),
            details=control.details,
        )
    )

    killed = await _restarts(rig, profile, "mq-kill", default=False, kill=True, count=profile.broker_kills)
    per_kill = _lost_per_restart(killed)
    within = all(n <= RECEIVE_MAXIMUM for n in per_kill) and killed.duplicated == 0
    rows.append(
        Row(
            case="broker-kill",
            title="SIGKILL Mosquitto (shipped config)",
            runs=profile.broker_kills,
            ok=within,
            verdict=(
                f"lost {len(killed.lost):,}; bound {RECEIVE_MAXIMUM:,} a kill: within"
                if within
                else f"lost {len(killed.lost):,}; bound {RECEIVE_MAXIMUM:,} a kill: EXCEEDED"
            ),
            acked=len(killed.truth.acked),
            lost=len(killed.lost),
            duplicated=killed.duplicated,
            recovery_s=_recovery(killed),
            recovery_meaning=MEANING,
            apart="a broker SIGKILL is held to its documented bound (docs/operations.md)",
            notes=[
                "Documented bound (docs/operations.md): at most the server's Receive Maximum, "
                f"{RECEIVE_MAXIMUM:,}, broker-acknowledged alarms per broker crash; lost per kill {per_kill} "
                f"({killed.lost_unrouted:,} of them acknowledged with 0x10, no matching subscribers, after "
                "the restart).",
                *_notes(
                    killed,
                    f"{profile.broker_kills} SIGKILLs ({procedure}); the server with its defaults (plain "
                    "subscriptions).",
                ),
            ],
            details=killed.details | {"lost_per_kill": per_kill},
        )
    )
    return rows


def _share_group_row(outcome: Outcome, runs: int, procedure: str) -> Row:
    """The opt-in share group: a loss the known Mosquitto limitation explains is reported, not failed."""
    lost = len(outcome.lost)
    unexplained = lost - outcome.lost_unrouted
    ok = unexplained == 0 and outcome.duplicated == 0 and outcome.verdict.phantoms == 0
    if not ok:
        verdict = f"FAIL: lost {unexplained:,} the known limitation does not explain"
    elif lost:
        verdict = f"lost {lost:,}: known Mosquitto 2.0.11 limitation, documented"
    else:
        verdict = "lost nothing: the known Mosquitto 2.0.11 window did not show"
    return Row(
        case="broker-restart-share-group",
        title="Opt-in share group (several instances), Mosquitto restart",
        runs=runs,
        ok=ok,
        verdict=verdict,
        acked=len(outcome.truth.acked),
        lost=lost,
        duplicated=outcome.duplicated,
        recovery_s=_recovery(outcome),
        recovery_meaning=MEANING,
        apart="an opt-in share group loses what sensors publish between a broker restart and the server's "
        "resubscription, a known Mosquitto 2.0.11 limitation (docs/scaling.md)",
        notes=[
            "Known Mosquitto 2.0.11 limitation, documented in docs/scaling.md (why share groups are opt-in, "
            "for several instances only): the broker restores a persistent session's plain subscriptions "
            "from its persistence file but not its shared ones (`$share/...`), so from its restart until the "
            "server has reconnected and subscribed again (1 to 10 s of reconnect backoff), every alarm a "
            "sensor publishes matches no subscription, is acknowledged with reason 0x10 (no matching "
            "subscribers) and dropped. Reported apart: it fails only on a loss the limitation does not "
            f"explain (lost and not acknowledged with 0x10: {unexplained:,}) or a duplicate.",
            *_notes(
                outcome,
                f"{runs} clean restarts ({procedure}); the server with EMERGENCY_MQTT_SHARE_GROUP="
                f"{SHARE_GROUP} (shared subscriptions `$share/{SHARE_GROUP}/...`), alone in its group.",
            ),
        ],
        details=outcome.details | {"lost_unrouted": outcome.lost_unrouted},
    )
