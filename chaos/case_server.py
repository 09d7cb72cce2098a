"""Case 1: SIGKILL the server at random moments, restarting it each time under the same name.

A supervisor's restart: the new process has the same ``EMERGENCY_INSTANCE``,
so it resumes the broker session that kept its unacknowledged and newly
arrived alarms. Some kills land while it is still draining the backlog of
the previous one (the delays start at 0.3 s after it is healthy).

Recovery of each kill, two figures: kill → the first alarm committed by the
new process (the alarm's ``stored_at``, written moments before its commit),
and kill → ``/healthz`` answers 200 (database and broker connected).
"""

from __future__ import annotations

import asyncio
import math
import random

from chaos.flood import flood, settle
from chaos.profile import Profile, first_between, progress
from chaos.report import Row, spread
from chaos.rig import Rig


async def run(rig: Rig, profile: Profile, rng: random.Random) -> Row:
    url = await rig.fresh_database("server-kill")
    async with rig.broker("server-kill") as broker, rig.server("kill", url, broker.url) as server:
        pub_url = await asyncio.to_thread(broker.simulator_url)
        kills: list[tuple[float, float]] = []
        async with flood(rig, "k", broker.port, pub_url, profile.rate, profile.publishers) as f:
            await asyncio.sleep(2)
            for i in range(profile.server_kills):
                await asyncio.sleep(rng.uniform(0.3, 4.0))
                killed = await server.kill()
                healthy = await server.start()  # at once, as a supervisor would
                kills.append((killed, healthy))
                progress(
                    f"server kill {i + 1}/{profile.server_kills}: healthy after {healthy - killed:.2f} s"
                )
            await asyncio.sleep(2)
            truth = await f.stop()
        verdict, stored_at = await settle(url, truth, timeout=120)
    stored = sorted(stored_at.values())
    ends = [k for k, _ in kills[1:]] + [math.inf]
    first_commit = [first_between(stored, k, end) - k for (k, _), end in zip(kills, ends, strict=True)]
    healthz = [h - k for k, h in kills]
    notes = [
        f"{profile.server_kills} SIGKILLs, each followed at once by `emergency serve` under the same "
        "EMERGENCY_INSTANCE.",
        f"{truth.published:,} published, {len(truth.acked):,} acknowledged by the broker, {verdict.stored:,} "
        f"stored; lost {len(verdict.lost)}, duplicate alarm rows {verdict.duplicate_alarms}, phantom alarms "
        f"{verdict.phantoms}.",
        f"Incidents per family: {verdict.incidents} (one per cluster expected); duplicate incidents "
        f"{verdict.duplicate_incidents}; incidents whose alarm_count disagrees with their alarms "
        f"{verdict.count_mismatches}.",
        f"Kill → /healthz 200: {spread(healthz)}.",
    ]
    if any(math.isnan(v) for v in first_commit):
        notes.append("A kill came before the previous restart committed anything: its recovery is left out.")
    return verdict.row(
        "server-kill",
        "SIGKILL the server",
        profile.server_kills,
        recovery_s=first_commit,
        recovery_meaning="from the SIGKILL to the first alarm committed by the restarted process "
        "(restart, migrations check, database pool, MQTT session resumed); "
        "the time to /healthz 200 is in the notes",
        notes=notes,
        details={
            "check": verdict.as_dict(),
            "kills": [{"killed": k, "healthy": h} for k, h in kills],
            "kill_to_first_commit_s": first_commit,
            "kill_to_healthz_s": healthz,
            "publisher": {"unacked": truth.unacked, "refused": truth.refused, "max_lag_ms": truth.max_lag_ms},
        },
    )
