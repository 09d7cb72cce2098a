"""The dispatch benchmark: ``POST /api/incidents/{id}/dispatches``, beside a raw asyncpg transaction.

``python -m bench --only dispatch``. A private, durable PostgreSQL
(bench/rig.py) with the demo city (63 units, depots, roads) and
``emergency serve`` in its own process; the benchmark is the HTTP client.

1. One commander dispatching: ``dispatches`` times, one unit each (units in
   turn), the request's latency as the client sees it (p50/p99); each
   dispatch is then cancelled (not timed) so the unit is free again. Ours
   does everything a dispatch does: parse, authorise, lock the incident,
   take the unit, road ETA, hazards and sites around, the order document,
   the unit's outbox, the timeline, the plan's tasks, the events.
2. Commanders racing: ``racers`` commanders (an account and a session
   each) send at the same instant a dispatch of the same unit, for
   ``rounds`` rounds; then as many rounds where each asks for two of four
   units, overlapping its neighbours'. Every answer must be 201 or 409
   (never a 500), exactly one 201 per contested unit, and no unit may ever
   hold two active dispatches (checked in the database after each round).
3. Raw, with the server stopped, on the same database: one asyncpg
   transaction doing the same row changes as a dispatch of one unit (lock
   the incident, the conditional ``UPDATE units``, insert the dispatch with
   an order document of the same size, the unit's outbox row, a timeline
   row, two outbox events under the events lock and the NOTIFY), the same
   number of times, then the same race.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench import charts
from bench.ingest import attempt, server
from bench.live import commander_tokens
from bench.procs import BenchError
from bench.rig import Rig, rig
from bench.runner import errors_section, get, header, main_for
from bench.stats import fmt_ms_fine, fmt_ratio, ratio, summary
from command import db
from command.demo_city import CENTER_LAT, CENTER_LON, build_city
from command.outbox import EVENTS_LOCK
from command.seed import seed_demo

ACTIVE = ("dispatched", "acknowledged", "en_route", "on_scene")


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    dispatches: int
    racers: int
    rounds: int


PROFILES: dict[str, Profile] = {
    "quick": Profile("quick", dispatches=30, racers=4, rounds=5),
    "default": Profile("default", dispatches=300, racers=8, rounds=40),
}


class Api:
    """The commanders' HTTP client: one session (keep-alive) per token, as a browser has."""

    def __init__(self, port: int, tokens: list[str]) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.tokens = tokens
        self.sessions = [
            aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {t}"}, timeout=aiohttp.ClientTimeout(total=60)
            )
            for t in tokens
        ]

    async def close(self) -> None:
        for s in self.sessions:
            await s.close()

    async def call(self, who: int, method: str, path: str, body: Any = None) -> tuple[int, Any, float]:
        """(status, JSON body, milliseconds) of one request."""
        started = time.perf_counter()
        async with self.sessions[who].request(method, self.base + path, json=body) as response:
            doc = await response.json(content_type=None)
            return response.status, doc, (time.perf_counter() - started) * 1000


async def _city(r: Rig, racers: int) -> tuple[str, list[str]]:
    url = await r.fresh_database("dispatch")
    conn = await asyncpg.connect(url)
    try:
        await db.register_codecs(conn)
        await seed_demo(conn, build_city())
    finally:
        await conn.close()
    return url, await commander_tokens(url, racers)


async def _units(api: Api) -> list[str]:
    status, doc, _ = await api.call(0, "GET", "/api/units")
    if status != 200:
        raise BenchError(f"GET /api/units answered {status}: {doc}")
    units = [u for u in doc["units"] if u["status"] == "available" and u.get("lat") is not None]
    if len(units) < 4:
        raise BenchError(f"only {len(units)} available units with a position in the demo city")
    return [u["id"] for u in units]


async def _cancel(api: Api, dispatch_ids: list[int]) -> None:
    for dispatch_id in dispatch_ids:
        status, doc, _ = await api.call(
            0, "POST", f"/api/dispatches/{dispatch_id}/status", {"status": "cancelled", "reason": "benchmark"}
        )
        if status != 200:
            raise BenchError(f"cancelling dispatch {dispatch_id} answered {status}: {doc}")


async def _double_booked(conn: asyncpg.Connection) -> int:
    """Units holding more than one active dispatch (the unique index forbids it; we check anyway)."""
    return int(
        await conn.fetchval(
            """
            SELECT count(*) FROM (
                SELECT unit_id FROM dispatches WHERE status = ANY($1::text[])
                GROUP BY unit_id HAVING count(*) > 1) AS twice
            """,
            list(ACTIVE),
        )
    )


def _race_sets(kind: str, racers: int, units: list[str], round_no: int) -> list[list[str]]:
    """Who asks for what in one round: the same unit, or two of four overlapping."""
    if kind == "same unit":
        return [[units[round_no % len(units)]] for _ in range(racers)]
    base = (round_no * 4) % (len(units) - 3)
    four = units[base : base + 4]
    return [[four[i % 4], four[(i + 1) % 4]] for i in range(racers)]


async def ours(r: Rig, url: str, tokens: list[str], profile: Profile) -> dict[str, Any]:
    async with (
        r.broker("dispatch", save_every_change=True) as broker,
        server(r, "dispatch", url, broker.url) as (_srv, port),
    ):
        api = Api(port, tokens)
        conn = await asyncpg.connect(url)
        try:
            status, incident, _ = await api.call(
                0,
                "POST",
                "/api/incidents",
                {
                    "kind": "fire",
                    "severity": "Severe",
                    "lat": CENTER_LAT,
                    "lon": CENTER_LON,
                    "title": "benchmark",
                },
            )
            if status != 201:
                raise BenchError(f"POST /api/incidents answered {status}: {incident}")
            incident_id = int(incident["id"])
            units = await _units(api)
            path = f"/api/incidents/{incident_id}/dispatches"
            # Warm-up: the first requests pay for prepared statements and plans.
            for unit in units[:5]:
                status, doc, _ = await api.call(0, "POST", path, {"units": [unit]})
                if status != 201:
                    raise BenchError(f"dispatching {unit} answered {status}: {doc}")
                await _cancel(api, [d["id"] for d in doc["dispatches"]])
            single: list[float] = []
            for n in range(profile.dispatches):
                status, doc, ms = await api.call(0, "POST", path, {"units": [units[n % len(units)]]})
                if status != 201:
                    raise BenchError(f"dispatch {n} answered {status}: {doc}")
                single.append(ms)
                await _cancel(api, [d["id"] for d in doc["dispatches"]])
            races = {}
            for kind in ("same unit", "two of four"):
                codes: Counter[int] = Counter()
                race_ms: list[float] = []
                wrong_winners = 0
                double_booked = 0
                for round_no in range(profile.rounds):
                    sets = _race_sets(kind, profile.racers, units, round_no)
                    answers = await asyncio.gather(
                        *(api.call(i, "POST", path, {"units": wanted}) for i, wanted in enumerate(sets))
                    )
                    won: list[int] = []
                    taken: Counter[str] = Counter()
                    for status, doc, ms in answers:
                        codes[status] += 1
                        race_ms.append(ms)
                        if status == 201:
                            won += [d["id"] for d in doc["dispatches"]]
                            taken.update(d["unit_id"] for d in doc["dispatches"])
                    contested = {u for wanted in sets for u in wanted}
                    # Same unit: exactly one winner. Overlapping pairs: no unit twice, and
                    # at least one request wins (the first to lock its units).
                    if any(n > 1 for n in taken.values()) or not won or set(taken) - contested:
                        wrong_winners += 1
                    double_booked += await _double_booked(conn)
                    await _cancel(api, won)
                races[kind] = {
                    "rounds": profile.rounds,
                    "racers": profile.racers,
                    "answers": {str(k): v for k, v in sorted(codes.items())},
                    "latency_ms": summary(race_ms),
                    "rounds_with_a_wrong_outcome": wrong_winners,
                    "double_booked": double_booked,
                }
            order_doc = await conn.fetchval("SELECT order_doc::text FROM dispatches ORDER BY id DESC LIMIT 1")
        finally:
            await conn.close()
            await api.close()
    return {
        "incident_id": incident_id,
        "units": units,
        "single_ms": summary(single),
        "races": races,
        "order_doc": order_doc,
    }


async def raw_dispatch(conn: asyncpg.Connection, incident_id: int, unit: str, order_doc: str) -> int | None:
    """The row changes of a one-unit dispatch in one transaction. Returns the dispatch id, None if taken."""
    now = datetime.now(UTC)
    async with conn.transaction():
        await conn.fetchrow("SELECT id FROM incidents WHERE id = $1 FOR UPDATE", incident_id)
        taken = await conn.fetchval(
            """
            UPDATE units SET status = 'dispatched', status_at = $2, updated_at = $2
            WHERE id = $1 AND status = 'available' RETURNING id
            """,
            unit,
            now,
        )
        if taken is None:
            return None
        dispatch_id: int = await conn.fetchval(
            """
            INSERT INTO dispatches
                (incident_id, unit_id, created_by, created_at, ack_deadline, order_doc, updated_at)
            VALUES ($1, $2, 'raw', $3, $4, $5::jsonb, $3) RETURNING id
            """,
            incident_id,
            unit,
            now,
            now + timedelta(minutes=2),
            order_doc,
        )
        await conn.execute(
            """
            INSERT INTO unit_outbox (unit_id, dispatch_id, payload, created_at)
            VALUES ($1, $2, $3::jsonb, $4)
            """,
            unit,
            dispatch_id,
            order_doc,
            now,
        )
        await conn.execute(
            """
            INSERT INTO incident_timeline (incident_id, at, actor, action, detail)
            VALUES ($1, $2, 'raw', 'dispatch', $3::jsonb)
            """,
            incident_id,
            now,
            json.dumps({"dispatch_id": dispatch_id, "unit_id": unit}),
        )
        await conn.execute("SELECT pg_advisory_xact_lock($1)", EVENTS_LOCK)
        seq = await conn.fetchval(
            """
            INSERT INTO events (name, data, incident_id, unit_id)
            VALUES ('dispatch.created', $1::jsonb, $2, $3), ('unit.status', $1::jsonb, $2, $3)
            RETURNING seq
            """,
            order_doc,
            incident_id,
            unit,
        )
        await conn.execute("SELECT pg_notify('events', $1)", str(seq))
    return dispatch_id


async def _raw_release(conn: asyncpg.Connection, dispatch_ids: list[int]) -> None:
    await conn.execute(
        """
        WITH d AS (
            UPDATE dispatches SET status = 'cancelled', cancelled_at = now(), updated_at = now()
            WHERE id = ANY($1::bigint[]) RETURNING unit_id)
        UPDATE units SET status = 'available' WHERE id IN (SELECT unit_id FROM d)
        """,
        dispatch_ids,
    )


async def _timed(call: Awaitable[int | None]) -> tuple[int | None, float]:
    started = time.perf_counter()
    result = await call
    return result, (time.perf_counter() - started) * 1000


async def raw(url: str, found: dict[str, Any], profile: Profile) -> dict[str, Any]:
    incident_id, units, order_doc = found["incident_id"], found["units"], found["order_doc"]
    conns = [await asyncpg.connect(url) for _ in range(profile.racers)]
    try:
        conn = conns[0]
        for unit in units[:5]:
            await _raw_release(
                conn, [d for d in [await raw_dispatch(conn, incident_id, unit, order_doc)] if d]
            )
        single: list[float] = []
        for n in range(profile.dispatches):
            dispatch_id, ms = await _timed(raw_dispatch(conn, incident_id, units[n % len(units)], order_doc))
            if dispatch_id is None:
                raise BenchError(f"raw dispatch {n}: unit {units[n % len(units)]} was not available")
            single.append(ms)
            await _raw_release(conn, [dispatch_id])
        race_ms: list[float] = []
        winners: Counter[int] = Counter()
        for round_no in range(profile.rounds):
            unit = units[round_no % len(units)]
            answers = await asyncio.gather(
                *(_timed(raw_dispatch(c, incident_id, unit, order_doc)) for c in conns)
            )
            won = [d for d, _ in answers if d is not None]
            winners[len(won)] += 1
            race_ms += [ms for _, ms in answers]
            await _raw_release(conn, won)
    finally:
        for c in conns:
            await c.close()
    return {
        "single_ms": summary(single),
        "race": {
            "latency_ms": summary(race_ms),
            "winners_per_round": {str(k): v for k, v in winners.items()},
        },
    }


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    profile: Profile = args.profile
    errors: list[str] = []
    async with rig(keep=args.keep, fleet=False) as r:
        if args.keep:
            print(f"run folder (kept): {r.directory}", file=sys.stderr)
        url, tokens = await _city(r, profile.racers)
        found = await attempt(errors, "[dispatch] ours", ours(r, url, tokens, profile), _describe)
        result = {"ours": found, "raw": {}}
        if "order_doc" in found:
            result["raw"] = await attempt(
                errors, "[dispatch] raw asyncpg", raw(url, found, profile), _describe
            )
    for kind, race in found.get("races", {}).items():
        bad = {k: v for k, v in race["answers"].items() if k not in ("201", "409")}
        if bad:
            errors.append(f"[dispatch] racing ({kind}): answers other than 201/409: {bad}")
        if race["rounds_with_a_wrong_outcome"] or race["double_booked"]:
            errors.append(
                f"[dispatch] racing ({kind}): {race['rounds_with_a_wrong_outcome']} rounds with a wrong "
                "outcome, "
                f"{race['double_booked']} double bookings"
            )
    return result | {"errors": errors}


def _describe(result: dict[str, Any]) -> str:
    lat = result.get("single_ms")
    return f": p50 {fmt_ms_fine(lat['p50'])} ms, p99 {fmt_ms_fine(lat['p99'])} ms" if lat else ""


def render(report: dict[str, Any]) -> str:
    profile = report["profile"]
    o, w = report["ours"], report["raw"]
    lines = header("Dispatch benchmark", report)
    lines += [
        "The demo city (63 units, depots, roads) on a private durable PostgreSQL; `emergency serve` in its "
        "own process, the benchmark its HTTP client (keep-alive, one session per commander). Milliseconds.",
        "",
        f"## One commander: {profile['dispatches']} dispatches of one unit each",
        "",
        "| path | p50 | p90 | p99 | max |",
        "|---|--:|--:|--:|--:|",
        "| ours: `POST /api/incidents/{id}/dispatches` → 201 | "
        + " | ".join(fmt_ms_fine(get(o, "single_ms", k)) for k in ("p50", "p90", "p99", "max"))
        + " |",
        "| raw: one asyncpg transaction, the same row changes | "
        + " | ".join(fmt_ms_fine(get(w, "single_ms", k)) for k in ("p50", "p90", "p99", "max"))
        + " |",
        "| ours ÷ raw | "
        + " | ".join(
            fmt_ratio(ratio(get(o, "single_ms", k), get(w, "single_ms", k)))
            for k in ("p50", "p90", "p99", "max")
        )
        + " |",
        "",
        "Ours does everything a dispatch does (auth, the incident's lock, the unit, the road ETA, hazards "
        "and "
        "sites around, the order, the unit's outbox, the timeline, the plan's tasks, the events); raw only "
        "the row changes (incident lock, conditional unit update, dispatch with an order of the same size, "
        "unit outbox row, timeline row, two events under the events lock, NOTIFY), with the server stopped. "
        "Each dispatch is cancelled (untimed) before the next.",
        "",
        f"## Commanders racing: {profile['racers']} at once, {profile['rounds']} rounds of each kind",
        "",
        "| race | answers | rounds with a wrong outcome | units double-booked | p50 | p99 | max |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    for kind, race in o.get("races", {}).items():
        answers = ", ".join(f"{n} × {code}" for code, n in race["answers"].items())
        lines.append(
            f"| ours, {kind} | {answers} | {race['rounds_with_a_wrong_outcome']} | {race['double_booked']} | "
            + " | ".join(fmt_ms_fine(get(race, "latency_ms", k)) for k in ("p50", "p99", "max"))
            + " |"
        )
    if "race" in w:
        winners = ", ".join(
            f"{n} rounds with {k} winner(s)" for k, n in sorted(w["race"]["winners_per_round"].items())
        )
        lines.append(
            f"| raw, same unit | {winners} | | | "
            + " | ".join(fmt_ms_fine(get(w, "race", "latency_ms", k)) for k in ("p50", "p99", "max"))
            + " |"
        )
    lines += [
        "",
        "Same unit: every commander asks for the same available unit; exactly one 201, the others 409 "
        "(`unit_unavailable`). Two of four: commander i asks for units i and i+1 of four, so every request "
        "overlaps two others; no unit may be given twice, and at least one request must win. After each "
        "round the database is checked for a unit with two active dispatches, then the winners are "
        "cancelled. "
        "A 500 would be listed among the answers.",
    ]
    return "\n".join(lines + errors_section(report)) + "\n"


def chart(report: dict[str, Any], path: Path) -> None:
    o, w = report["ours"], report["raw"]
    fig, (single, race) = charts.figure(columns=2, width=5.0, height=3.8)
    keys = ["p50", "p90", "p99", "max"]
    charts.bars(
        single,
        keys,
        {
            "ours (HTTP)": [get(o, "single_ms", k) for k in keys],
            "raw asyncpg": [get(w, "single_ms", k) for k in keys],
        },
        {"ours (HTTP)": charts.OURS, "raw asyncpg": charts.RAW},
    )
    single.set_title("one commander, ms", fontsize=9)
    single.legend(fontsize=7)
    races = o.get("races", {})
    labels = list(races)
    codes = sorted({c for r in races.values() for c in r["answers"]})
    charts.bars(
        race,
        labels,
        {f"{c}": [float(races[k]["answers"].get(c, 0)) for k in labels] for c in codes},
        {"201": charts.GOAL, "409": "#f39c12", "500": "#c0392b"},
    )
    race.set_title(f"{report['profile']['racers']} commanders racing: answers", fontsize=9)
    race.legend(fontsize=7)
    charts.save(fig, path, "Dispatch: POST /api/incidents/{id}/dispatches", charts.machine_note(report))


def main(argv: list[str] | None = None, *, prog: str = "python -m bench --only dispatch") -> int:
    return main_for(
        "dispatch",
        argv,
        prog=prog,
        description="Dispatch latency and racing commanders, beside a raw asyncpg transaction.",
        profiles=PROFILES,
        measure=measure,
        render=render,
        chart=chart,
    )


if __name__ == "__main__":
    sys.exit(main(prog="python -m bench.dispatches"))
