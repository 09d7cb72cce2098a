"""Case 4: consoles dropping at random and resuming by seq, on two instances, during a flood.

The consoles live in a process of their own (chaos/consoles.py). Each drops
at random (a clean close or an aborted TCP connection), reconnects to either
instance at random and resumes with ``since``. At the end the orchestrator
waits for the flood to be stored and the outbox to be still, takes its last
seq N, and lets every console read up to N. Each console's received seqs must
then be exactly the ``events`` table's seqs after its first snapshot, up to N:
none missed, none twice, in increasing order (a commander sees every event).

Recovery: from a drop to the first frame on the new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
from typing import Any

import asyncpg

from bench.procs import child_env, python_module
from chaos.flood import check, flood, wait_stored
from chaos.procs import Child
from chaos.profile import Profile, progress
from chaos.report import Row, median, spread
from chaos.rig import Rig, console_token


async def _quiet_seq(conn: asyncpg.Connection, still: float = 2.0, timeout: float = 60.0) -> int:
    """The outbox's last seq once it has not moved for ``still`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM events")
    since = loop.time()
    while loop.time() - since < still and loop.time() < deadline:
        await asyncio.sleep(0.2)
        now = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM events")
        if now != last:
            last, since = now, loop.time()
    return int(last)


def _compare(record: dict[str, Any], table: list[int], target: int) -> dict[str, Any]:
    received = [s for s in record["seqs"] if s <= target]
    start = record["start_seq"]
    expected = [s for s in table if start < s <= target]
    seen = set(received)
    return {
        "received": len(received),
        "expected": len(expected),
        "missed": len(set(expected) - seen),
        "duplicated": len(received) - len(seen),
        "out_of_order": sum(1 for a, b in itertools.pairwise(received) if b <= a),
        "unknown": len(seen - set(expected)),  # a seq the table does not have after the snapshot
        "reached_target": (record["last"] or 0) >= target,
    }


async def run(rig: Rig, profile: Profile, rng: random.Random) -> Row:
    url = await rig.fresh_database("consoles")
    token = await console_token(url)
    async with rig.broker("consoles") as broker, contextlib.AsyncExitStack() as stack:
        servers = [
            await stack.enter_async_context(rig.server(f"console-{i}", url, broker.url))
            for i in range(profile.console_instances)
        ]
        pub_url = await asyncio.to_thread(broker.simulator_url)
        out = rig.directory / "consoles.json"
        fleet = Child(
            "consoles",
            python_module(
                "chaos.consoles",
                "--urls",
                ",".join(s.url.replace("http://", "ws://") + "/ws" for s in servers),
                "--count",
                profile.consoles,
                "--mean-up",
                profile.console_mean_up_s,
                "--seed",
                rng.randrange(2**31),
                "--out",
                out,
            ),
            log=rig.log_path("consoles"),
            env=child_env({"CHAOS_TOKEN": token}),
        )
        conn = await asyncpg.connect(url)
        try:
            await fleet.start()
            try:
                if (line := await fleet.readline(timeout=90)) != "ready":
                    raise fleet.failure(f"said {line!r} instead of ready")
                async with flood(rig, "w", broker.port, pub_url, profile.rate, profile.publishers) as f:
                    await asyncio.sleep(profile.console_seconds)
                    truth = await f.stop()
                await wait_stored(conn, set(truth.acked), timeout=120)
                target = await _quiet_seq(conn)
                progress(f"consoles: flood stored, outbox still at seq {target}; consoles catching up")
                await fleet.send(f"until {target}")
                await fleet.finish(timeout=120)
            finally:
                await fleet.stop()
            result = json.loads(out.read_text())
            table = [r["seq"] for r in await conn.fetch("SELECT seq FROM events ORDER BY seq")]
            verdict = await check(conn, truth)
        finally:
            await conn.close()

    compared = [_compare(record, table, target) for record in result["consoles"]]
    records = result["consoles"]
    missed = sum(c["missed"] for c in compared)
    duplicated = sum(c["duplicated"] + c["out_of_order"] + c["unknown"] for c in compared)
    resets = sum(r["resets"] for r in records)
    short = sum(1 for c in compared if not c["reached_target"])
    drops = sum(r["drops"] for r in records)
    resumes = [s for r in records for s in r["resume_s"]]
    closes: dict[str, int] = {}
    for r in records:
        for code, n in r["server_closes"].items():
            closes[code] = closes.get(code, 0) + n
    alarms_ok = not verdict.lost and verdict.duplicated == 0
    ok = missed == 0 and duplicated == 0 and resets == 0 and short == 0 and alarms_ok
    notes = [
        f"{profile.consoles} consoles on {profile.console_instances} instances for "
        f"{profile.console_seconds:g} s of flood, each connected for a random time (exponential, mean "
        f"{profile.console_mean_up_s:g} s), then dropped (half clean closes, half aborted TCP "
        "connections) and resumed with `since` on an instance picked at random.",
        f"{drops:,} drops, {sum(r['connections'] for r in records):,} connections; the outbox held "
        f"{len(table):,} events, each console expected {median([c['expected'] for c in compared]):,.0f} "
        "(p50) after its first snapshot.",
        f"Missed {missed}, received twice {sum(c['duplicated'] for c in compared)}, out of order "
        f"{sum(c['out_of_order'] for c in compared)}, unknown seqs {sum(c['unknown'] for c in compared)}, "
        f"reset snapshots instead of a replay {resets}, consoles short of the last seq {short}.",
        f"Closes by the server: {closes or 'none'}.",
        f"Drop → first frame on the new connection: {spread(resumes)} over {len(resumes):,} resumes.",
        f"The flood behind it: {len(truth.acked):,} alarms acknowledged by the broker, lost "
        f"{len(verdict.lost)}, duplicated {verdict.duplicated}.",
    ]
    errors = [e for r in records for e in r["errors"]]
    if errors:
        notes.append(f"Console connection errors ({len(errors)}), e.g. {errors[:3]}")
    return Row(
        case="consoles",
        title="Consoles drop and resume by seq",
        runs=drops,
        ok=ok,
        verdict="pass" if ok else "FAIL",
        acked=len(truth.acked),
        lost=missed,
        duplicated=duplicated,
        recovery_s=resumes,
        recovery_meaning="from a console's drop to the first frame on its new connection (reconnect, hello, "
        "replay); lost and duplicated count events (seqs), not alarms",
        notes=notes,
        details={
            "target_seq": target,
            "per_console": compared,
            "server_closes": closes,
            "flood": verdict.as_dict(),
            "servers": [s.name for s in servers],
        },
    )
