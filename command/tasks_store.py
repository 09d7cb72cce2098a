"""Supervision tasks (督查督办): add, progress, finish, and flag the overdue.

Plan tasks are set by the first dispatch (command/dispatch_store.py); a
commander adds others. Every change is one transaction with its timeline
entry and its ``task.*`` event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from command.errors import ApiError
from command.outbox import NewEvent, append_events
from command.timeline import record
from dispatch.progress import InvalidTransition, task_step

TASK_COLUMNS = """
    t.id, t.incident_id, t.title, t.source, t.owner_unit, t.owner_name, t.due_at, t.status,
    t.result, t.overdue_at, t.created_by, t.created_at, t.updated_at
"""


def _note_wire(row: asyncpg.Record) -> dict[str, Any]:
    return {"time": row["at"].isoformat(), "author": row["author"], "note": row["note"]}


def task_wire(row: asyncpg.Record, notes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "id": row["id"],
        "incident_id": row["incident_id"],
        "title": row["title"],
        "source": row["source"],
        "owner_unit": row["owner_unit"],
        "owner_name": row["owner_name"],
        "due_at": row["due_at"].isoformat(),
        "status": row["status"],
        "result": row["result"],
        "overdue_at": row["overdue_at"].isoformat() if row["overdue_at"] else None,
        "created_by": row["created_by"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }
    if notes is not None:
        wire["notes"] = notes
    return wire


async def list_tasks(conn: asyncpg.Connection, incident_id: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"SELECT {TASK_COLUMNS} FROM tasks t WHERE t.incident_id = $1 ORDER BY t.due_at, t.id", incident_id
    )
    notes = await conn.fetch(
        """
        SELECT n.task_id, n.at, n.author, n.note FROM task_notes n
        JOIN tasks t ON t.id = n.task_id WHERE t.incident_id = $1 ORDER BY n.id
        """,
        incident_id,
    )
    by_task: dict[int, list[dict[str, Any]]] = {r["id"]: [] for r in rows}
    for n in notes:
        by_task[n["task_id"]].append(_note_wire(n))
    return [task_wire(r, by_task[r["id"]]) for r in rows]


async def add_task(
    conn: asyncpg.Connection,
    incident_id: int,
    *,
    title: str,
    due_at: datetime,
    owner_unit: str | None,
    owner_name: str | None,
    actor: str,
    now: datetime,
) -> dict[str, Any]:
    """A commander's own task for an incident.

    Raises:
        ApiError: 404 unknown incident; 409 unknown owner unit.
    """
    async with conn.transaction():
        district = await conn.fetchrow(
            "SELECT district_id FROM incidents WHERE id = $1 FOR UPDATE", incident_id
        )
        if district is None:
            raise ApiError(404, "not_found", "no such incident")
        if owner_unit is not None and not await conn.fetchval(
            "SELECT true FROM units WHERE id = $1", owner_unit
        ):
            raise ApiError(409, "unknown_unit", f"there is no unit {owner_unit}")
        row = await conn.fetchrow(
            f"""
            INSERT INTO tasks AS t (incident_id, title, source, owner_unit, owner_name, due_at,
                                    created_by, created_at, updated_at)
            VALUES ($1, $2, 'manual', $3, $4, $5, $6, $7, $7)
            RETURNING {TASK_COLUMNS}
            """,
            incident_id,
            title,
            owner_unit,
            owner_name,
            due_at,
            actor,
            now,
        )
        wire = task_wire(row, [])
        await record(
            conn, incident_id, now, actor, "task", None, "open", {"task_id": row["id"], "title": title}
        )
        await append_events(
            conn, [NewEvent("task.created", wire, incident_id, owner_unit, district["district_id"])]
        )
    return wire


async def update_task(
    conn: asyncpg.Connection,
    task_id: int,
    *,
    status: str | None,
    result: str | None,
    note: str | None,
    owner_unit: str | None,
    owner_name: str | None,
    actor: str,
    now: datetime,
    only_unit: str | None = None,
) -> dict[str, Any]:
    """Progress on a task: a note, a new owner, a status (with a result when it ends).

    Args:
        only_unit: for a field account, its unit: only tasks it owns are visible.
    Raises:
        ApiError: 404 unknown or not yours; 409 a step the task cannot take.
    """
    async with conn.transaction():
        row = await conn.fetchrow(
            f"""
            SELECT {TASK_COLUMNS}, i.district_id FROM tasks t JOIN incidents i ON i.id = t.incident_id
            WHERE t.id = $1 FOR UPDATE OF t
            """,
            task_id,
        )
        if row is None or (only_unit is not None and row["owner_unit"] != only_unit):
            raise ApiError(404, "not_found", "no such task")
        new_status = row["status"]
        if status is not None:
            try:
                new_status = task_step(row["status"], status, result)
            except InvalidTransition as exc:
                raise ApiError(409, "invalid_transition", str(exc)) from None
        if owner_unit is not None and not await conn.fetchval(
            "SELECT true FROM units WHERE id = $1", owner_unit
        ):
            raise ApiError(409, "unknown_unit", f"there is no unit {owner_unit}")
        updated = await conn.fetchrow(
            f"""
            UPDATE tasks AS t SET status = $2, result = COALESCE($3, t.result),
                   owner_unit = COALESCE($4, t.owner_unit), owner_name = COALESCE($5, t.owner_name),
                   updated_at = $6
            WHERE t.id = $1 RETURNING {TASK_COLUMNS}
            """,
            task_id,
            new_status,
            result if status is not None else None,
            owner_unit,
            owner_name,
            now,
        )
        if note:
            await conn.execute(
                "INSERT INTO task_notes (task_id, at, author, note) VALUES ($1, $2, $3, $4)",
                task_id,
                now,
                actor,
                note,
            )
        if new_status != row["status"]:
            await record(
                conn,
                row["incident_id"],
                now,
                actor,
                "task",
                row["status"],
                new_status,
                {"task_id": task_id, "title": row["title"]} | ({"result": result} if result else {}),
            )
        notes = await conn.fetch(
            "SELECT at, author, note FROM task_notes WHERE task_id = $1 ORDER BY id", task_id
        )
        wire = task_wire(updated, [_note_wire(n) for n in notes])
        await append_events(
            conn,
            [NewEvent("task.updated", wire, row["incident_id"], updated["owner_unit"], row["district_id"])],
        )
    return wire


async def fire_overdue_tasks(conn: asyncpg.Connection, now: datetime) -> int:
    """Flag open tasks past their due time, once across instances (see
    command/dispatch_store.fire_overdue_dispatches for why one UPDATE suffices)."""
    async with conn.transaction():
        rows = await conn.fetch(
            f"""
            UPDATE tasks AS t SET overdue_at = $1
            FROM incidents i
            WHERE i.id = t.incident_id AND t.status IN ('open', 'in_progress') AND t.due_at <= $1
              AND t.overdue_at IS NULL
            RETURNING {TASK_COLUMNS}, i.district_id
            """,
            now,
        )
        events = []
        for row in sorted(rows, key=lambda r: r["id"]):
            await record(
                conn, row["incident_id"], now, "system", "task.overdue", detail={"task_id": row["id"]}
            )
            events.append(
                NewEvent(
                    "task.overdue", task_wire(row), row["incident_id"], row["owner_unit"], row["district_id"]
                )
            )
        await append_events(conn, events)
    return len(rows)
