"""Case 2: restart PostgreSQL in immediate mode (a crash) mid-flood, several times.

``pg_ctl stop -m immediate`` kills every backend without a checkpoint; the
restart recovers from the WAL. Meanwhile the server can commit nothing, so it
must acknowledge nothing: the broker keeps receiving from the sensors and
queues for the server. The server talks to the broker through an MQTT tap
(chaos/tap.py) that records every PUBACK it sends and the alarm it
acknowledges, which is how "no PUBACK while it is down" is checked, on the
wire: every PUBACK sent while PostgreSQL was down must be for an alarm
committed before the crash (a transaction that committed just before the
stop, its PUBACK still on its way), and every PUBACK of the whole run must be
for an alarm stored no later than the PUBACK.

Recovery: from ``pg_ctl start`` (it includes PostgreSQL's own WAL recovery)
to the first alarm committed after the outage; and the backlog drain: from
``pg_ctl start`` until every alarm the broker had acknowledged by the time
PostgreSQL was back is stored.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from typing import Any

from chaos.flood import flood, settle
from chaos.profile import Profile, first_between, progress
from chaos.report import Row, spread
from chaos.rig import Rig
from chaos.tap import MqttTap, url_via


async def run(rig: Rig, profile: Profile, rng: random.Random) -> Row:
    url = await rig.fresh_database("db-restart")
    outages: list[dict[str, float]] = []
    async with rig.broker("db-restart") as broker, MqttTap(broker.port) as tap:
        via_tap = url_via(broker.url, tap.port)  # the server's own account, through the tap
        pub_url = await asyncio.to_thread(broker.simulator_url)
        async with rig.server("db", url, via_tap):
            async with flood(rig, "d", broker.port, pub_url, profile.rate, profile.publishers) as f:
                await asyncio.sleep(2)
                for i in range(profile.db_restarts):
                    await asyncio.sleep(rng.uniform(1.0, 3.0))
                    crashed = time.time()
                    await asyncio.to_thread(rig.pg.crash)
                    down = time.time()
                    await asyncio.sleep(rng.uniform(2.0, 4.0))
                    starting = time.time()
                    await asyncio.to_thread(rig.pg.start)
                    up = time.time()
                    outages.append({"crashed": crashed, "down": down, "starting": starting, "up": up})
                    progress(f"database restart {i + 1}/{profile.db_restarts}: down {starting - down:.1f} s")
                await asyncio.sleep(2)
                truth = await f.stop()
            verdict, stored_at = await settle(url, truth, timeout=180)

    ordered = sorted(stored_at.values())
    per_outage: list[dict[str, Any]] = []
    for o in outages:
        window = [(t, a) for t, a in tap.pubacks if o["down"] <= t < o["starting"]]
        # Legitimate only for an alarm committed before the crash: its PUBACK was on its way.
        unjustified = [a for t, a in window if a is None or stored_at.get(a, math.inf) >= o["crashed"]]
        backlog = [
            a for a, t in truth.acked.items() if t < o["up"] and stored_at.get(a, math.inf) >= o["crashed"]
        ]
        drained = max((stored_at[a] for a in backlog if a in stored_at), default=math.nan)
        per_outage.append(
            {
                **o,
                "pubacks_while_down": len(window),
                "pubacks_while_down_unjustified": len(unjustified),
                "queued_at_broker_while_down": truth.acked_between(o["down"], o["starting"]),
                "delivered_to_server_while_down": sum(
                    1 for t, _ in tap.publishes if o["down"] <= t < o["starting"]
                ),
                "first_commit_s": first_between(ordered, o["down"], math.inf) - o["starting"],
                "backlog": len(backlog),
                "backlog_drained_s": drained - o["starting"],
            }
        )
    # Every PUBACK of the run: its alarm must have been written before it.
    early = [a for t, a in tap.pubacks if a is None or stored_at.get(a, math.inf) > t]
    unjustified_total = sum(o["pubacks_while_down_unjustified"] for o in per_outage)
    drains = [o["backlog_drained_s"] for o in per_outage]
    notes = [
        f"{profile.db_restarts} × `pg_ctl stop -m immediate`, 2–4 s down, `pg_ctl start` (WAL recovery).",
        f"{truth.published:,} published, {len(truth.acked):,} acknowledged by the broker, {verdict.stored:,} "
        f"stored; lost {len(verdict.lost)}; duplicate alarm rows {verdict.duplicate_alarms}; incidents per "
        f"family {verdict.incidents}; duplicate incidents {verdict.duplicate_incidents}; alarm_count "
        f"mismatches {verdict.count_mismatches}.",
        "PUBACKs the server sent while PostgreSQL was down (from `pg_ctl stop` returning to `pg_ctl "
        f"start`): {[o['pubacks_while_down'] for o in per_outage]}, of which for alarms not committed before "
        f"the crash: {unjustified_total}.",
        "Alarms the broker acknowledged to the sensors meanwhile, held for the server unacknowledged by it "
        f"(the broker's backlog grew by them): {[o['queued_at_broker_while_down'] for o in per_outage]}; of "
        f"those, delivered to the server: {[o['delivered_to_server_while_down'] for o in per_outage]} (at "
        "most its Receive Maximum, 1,000).",
        f"PUBACKs of the whole run: {len(tap.pubacks):,}; for an alarm not yet stored at that moment: "
        f"{len(early)}.",
        f"Backlog at each restart {[o['backlog'] for o in per_outage]}; drained after `pg_ctl start` in "
        f"{spread(drains)}; `pg_ctl start` itself (WAL recovery) took "
        f"{spread([o['up'] - o['starting'] for o in per_outage])}.",
    ]
    if tap.errors:
        notes.append(f"The tap could not parse the stream: {tap.errors[:3]}")
    return verdict.row(
        "db-restart",
        "Restart PostgreSQL (immediate)",
        profile.db_restarts,
        recovery_s=[o["first_commit_s"] for o in per_outage],
        recovery_meaning="from `pg_ctl start` (so including PostgreSQL's WAL recovery and the server's "
        "retry backoff, at most 5 s) to the first alarm committed after the outage; the backlog drain is in "
        "the notes",
        notes=notes,
        details={"check": verdict.as_dict(), "outages": per_outage, "pubacks": len(tap.pubacks)},
        also_ok=unjustified_total == 0 and not early,
    )
