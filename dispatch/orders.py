"""A dispatch request as the commander sends it, and the order as the unit receives it.

Pure. ``parse_request`` converts the JSON body of
``POST /api/incidents/{id}/dispatches`` at the boundary (every way it can be
wrong raises :class:`BadRequest` with a message naming the field);
``order_document`` is the one place that decides what a unit is sent on
``units/{id}/dispatch`` and over the field team's WebSocket.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_UNITS = 50
MAX_SUPPLIES = 50
MAX_QUANTITY = 1_000_000


class BadRequest(ValueError):
    """The request body is not a valid dispatch request; the message names the field."""


@dataclass(frozen=True, slots=True)
class UnitOrder:
    unit_id: str
    # The plan's need this unit fills (optional; the overdue offer uses it).
    capability: str | None = None


@dataclass(frozen=True, slots=True)
class SupplyOrder:
    depot_id: str
    item: str
    quantity: int
    # Which of the dispatched units collects it (default: the first).
    carrier: str


@dataclass(frozen=True, slots=True)
class DispatchRequest:
    units: tuple[UnitOrder, ...]
    supplies: tuple[SupplyOrder, ...]


def _identifier(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise BadRequest(f"{where} must be an identifier (letters, digits, _.:-, at most 64)")
    return value


def parse_request(body: Any) -> DispatchRequest:
    """``{"units": ["U-1", {"id": "U-2", "capability": "medical"}],
    "supplies": [{"depot_id", "item", "quantity", "unit_id"?}]}``.

    Raises:
        BadRequest: a missing, ill-typed or out-of-range field, a unit listed
            twice, or a supply carried by a unit that is not dispatched.
    """
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = sorted(set(body) - {"units", "supplies"})
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}")
    units_doc = body.get("units")
    if not isinstance(units_doc, list) or not 1 <= len(units_doc) <= MAX_UNITS:
        raise BadRequest(f"units must be a list of 1 to {MAX_UNITS} unit ids")
    units: list[UnitOrder] = []
    for index, entry in enumerate(units_doc):
        where = f"units[{index}]"
        if isinstance(entry, str):
            units.append(UnitOrder(_identifier(entry, where)))
        elif isinstance(entry, dict) and set(entry) <= {"id", "capability"}:
            capability = entry.get("capability")
            if capability is not None and (not isinstance(capability, str) or not 1 <= len(capability) <= 40):
                raise BadRequest(f"{where}.capability must be a capability name")
            units.append(UnitOrder(_identifier(entry.get("id"), f"{where}.id"), capability))
        else:
            raise BadRequest(f'{where} must be a unit id or {{"id", "capability"}}')
    ids = [u.unit_id for u in units]
    for unit_id in ids:
        if ids.count(unit_id) > 1:
            raise BadRequest(f"unit {unit_id} is listed twice")

    supplies_doc = body.get("supplies", [])
    if not isinstance(supplies_doc, list) or len(supplies_doc) > MAX_SUPPLIES:
        raise BadRequest(f"supplies must be a list of at most {MAX_SUPPLIES} requisitions")
    supplies: list[SupplyOrder] = []
    for index, entry in enumerate(supplies_doc):
        where = f"supplies[{index}]"
        if not isinstance(entry, dict) or not {"depot_id", "item", "quantity"} <= set(entry) <= {
            "depot_id",
            "item",
            "quantity",
            "unit_id",
        }:
            raise BadRequest(f'{where} must be {{"depot_id", "item", "quantity", "unit_id"?}}')
        quantity = entry["quantity"]
        if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= MAX_QUANTITY:
            raise BadRequest(f"{where}.quantity must be an integer from 1 to {MAX_QUANTITY}")
        carrier = entry.get("unit_id", ids[0])
        if carrier not in ids:
            raise BadRequest(f"{where}.unit_id {carrier!r} is not one of the units dispatched")
        supply = SupplyOrder(
            _identifier(entry["depot_id"], f"{where}.depot_id"),
            _identifier(entry["item"], f"{where}.item"),
            quantity,
            carrier,
        )
        if any((s.depot_id, s.item) == (supply.depot_id, supply.item) for s in supplies):
            raise BadRequest(f"{where}: {supply.item} from {supply.depot_id} is listed twice")
        supplies.append(supply)
    return DispatchRequest(tuple(units), tuple(supplies))


@dataclass(frozen=True, slots=True)
class Pickup:
    """Supplies a unit collects on its way: where, what, how much."""

    requisition_id: int
    depot_id: str
    depot_name: str
    lat: float
    lon: float
    item: str
    quantity: int
    unit: str


def order_document(
    *,
    dispatch_id: int,
    unit_id: str,
    incident: dict[str, Any],
    destination: tuple[float, float],
    eta_s: float | None,
    created_at: datetime,
    ack_deadline: datetime,
    hazards: list[dict[str, Any]],
    pickups: list[Pickup],
) -> dict[str, Any]:
    """What the unit is sent: the incident, where to go, how soon, what to
    beware of and what to collect. ``dispatch_id`` is the idempotency key:
    delivery is at-least-once, so a unit ignores an order it already has."""
    lat, lon = destination
    return {
        "type": "dispatch",
        "dispatch_id": dispatch_id,
        "unit_id": unit_id,
        "incident": {
            k: incident[k] for k in ("id", "kind", "category", "severity", "status", "title", "district")
        },
        "destination": {"lat": lat, "lon": lon},
        "eta_s": round(eta_s) if eta_s is not None else None,
        "created_at": created_at.isoformat(),
        "ack_deadline": ack_deadline.isoformat(),
        "hazards": hazards,
        "supplies": [
            {
                "requisition_id": p.requisition_id,
                "depot_id": p.depot_id,
                "depot_name": p.depot_name,
                "lat": p.lat,
                "lon": p.lon,
                "item": p.item,
                "quantity": p.quantity,
                "unit": p.unit,
            }
            for p in pickups
        ],
    }
