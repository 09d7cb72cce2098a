"""Response-time KPIs: per-incident intervals, percentiles, SLA compliance, CSV.

Pure. The adapter (command/stats.py) reads each incident's timestamps into an
:class:`IncidentTimes`; this module only measures and summarises them, so the
same timestamps always give the same numbers.

Definitions (seconds; None when a timestamp it needs is missing):

- ``alarm_to_incident``: ``opened_at`` minus the incident's earliest alarm
  time. None for incidents without alarms (manual reports, CAP alerts).
- ``incident_to_dispatch``: the first dispatch's ``created_at`` minus
  ``opened_at``. Every dispatch counts here, declined and cancelled ones too:
  the centre did dispatch, whatever the unit then did.
- The remaining intervals are read from one dispatch, the incident's *lead
  dispatch*: of the dispatches neither declined nor cancelled, the one that
  arrived on scene first; when none arrived, the first created (ties by
  creation time, then unit id). First arrival is what the public experiences,
  and it is what NFPA 1710's travel objective is about ("first arriving
  engine"); a declined or cancelled dispatch never brought help.

  - ``dispatch_to_ack``: ``acknowledged_at - created_at``;
  - ``turnout``: ``en_route_at - acknowledged_at``;
  - ``travel``: ``on_scene_at - en_route_at``;
  - ``on_scene``: ``cleared_at - on_scene_at``;
  - ``total``: the lead dispatch's ``on_scene_at`` (the first arrival) minus
    the earliest alarm time, or minus ``opened_at`` when there is no alarm.

Intervals are reported as measured, never clipped: alarm times come from the
sensors' clocks, so a negative ``alarm_to_incident`` shows a sensor clock
running ahead instead of hiding it.

Targets (:class:`Targets`) default to NFPA 1221 (alarm processing: dispatch
within 60 s for 90 % of incidents) and NFPA 1710 (turnout: 60 s for EMS, 80 s
for fire, of which we take the 80 s since one target serves all kinds;
travel of the first arriving unit: 240 s), each to be met for 90 % of the
incidents that have the interval.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

#: Every interval, in the order of the response (and of the CSV columns).
METRICS: tuple[str, ...] = (
    "alarm_to_incident",
    "incident_to_dispatch",
    "dispatch_to_ack",
    "turnout",
    "travel",
    "on_scene",
    "total",
)

GroupBy = Literal["kind", "district", "period"]
GROUPS: tuple[GroupBy, ...] = ("kind", "district", "period")


def _check_aware(owner: str, name: str, value: datetime | None) -> None:
    # A naive time has no instant: subtracting it from an aware one raises,
    # and its UTC day (the period) would be a guess.
    if value is not None and value.utcoffset() is None:
        raise ValueError(f"{owner}: {name} must be timezone-aware, got {value!r}")


_DISPATCH_STAMPS = (
    "created_at",
    "acknowledged_at",
    "en_route_at",
    "on_scene_at",
    "cleared_at",
    "declined_at",
    "cancelled_at",
)


@dataclass(frozen=True, slots=True)
class DispatchTimes:
    """When one dispatch (one unit sent to the incident) reached each state."""

    unit_id: str
    created_at: datetime
    acknowledged_at: datetime | None = None
    en_route_at: datetime | None = None
    on_scene_at: datetime | None = None
    cleared_at: datetime | None = None
    declined_at: datetime | None = None
    cancelled_at: datetime | None = None

    def __post_init__(self) -> None:
        if not self.unit_id:
            raise ValueError("dispatch unit_id is empty")
        for name in _DISPATCH_STAMPS:
            _check_aware(f"dispatch of {self.unit_id}", name, getattr(self, name))

    @property
    def withdrawn(self) -> bool:
        """Declined by the unit or cancelled by the centre: it never brought help."""
        return self.declined_at is not None or self.cancelled_at is not None


@dataclass(frozen=True, slots=True)
class IncidentTimes:
    """An incident's facts and timestamps, as much as the KPIs need."""

    id: int
    kind: str
    district: str | None
    severity: str
    status: str
    opened_at: datetime
    first_alarm_at: datetime | None
    dispatches: tuple[DispatchTimes, ...] = ()

    def __post_init__(self) -> None:
        # Accept any iterable from the adapter, keep a tuple: the value stays hashable.
        object.__setattr__(self, "dispatches", tuple(self.dispatches))
        owner = f"incident {self.id}"
        _check_aware(owner, "opened_at", self.opened_at)
        _check_aware(owner, "first_alarm_at", self.first_alarm_at)

    @property
    def period(self) -> str:
        """The UTC day it opened on, ``YYYY-MM-DD``."""
        return self.opened_at.astimezone(UTC).date().isoformat()


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def lead_dispatch(incident: IncidentTimes) -> DispatchTimes | None:
    """The dispatch the per-unit intervals are read from (see the module docstring).

    Returns:
        Of the dispatches neither declined nor cancelled, the first to arrive on
        scene, else the first created; None when there is no such dispatch.
    """
    live = [d for d in incident.dispatches if not d.withdrawn]
    arrived = [d for d in live if d.on_scene_at is not None]
    if arrived:
        return min(arrived, key=lambda d: (d.on_scene_at, d.created_at, d.unit_id))
    if live:
        return min(live, key=lambda d: (d.created_at, d.unit_id))
    return None


def intervals(incident: IncidentTimes) -> dict[str, float | None]:
    """Every interval of :data:`METRICS` for one incident, in seconds (None: not measurable)."""
    first_created = min((d.created_at for d in incident.dispatches), default=None)
    lead = lead_dispatch(incident)
    start = incident.first_alarm_at if incident.first_alarm_at is not None else incident.opened_at
    return {
        "alarm_to_incident": _seconds(incident.first_alarm_at, incident.opened_at),
        "incident_to_dispatch": _seconds(incident.opened_at, first_created),
        "dispatch_to_ack": _seconds(lead.created_at, lead.acknowledged_at) if lead else None,
        "turnout": _seconds(lead.acknowledged_at, lead.en_route_at) if lead else None,
        "travel": _seconds(lead.en_route_at, lead.on_scene_at) if lead else None,
        "on_scene": _seconds(lead.on_scene_at, lead.cleared_at) if lead else None,
        "total": _seconds(start, lead.on_scene_at) if lead else None,
    }


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile of ``values`` by linear interpolation.

    The same as numpy's default (``numpy.percentile(values, q)``, method
    "linear"): sort the n values, take the rank ``r = (n - 1) * q / 100``, and
    interpolate between the values at ``floor(r)`` and ``ceil(r)``. So p50 of
    an even count is the mean of the middle two, p0 the minimum and p100 the
    maximum; the result need not be one of the values.

    Args:
        values: finite numbers, in any order.
        q: the percentile, 0 to 100.

    Raises:
        ValueError: no values, a value that is not finite, or q outside 0..100.
    """
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    if not all(math.isfinite(v) for v in ordered):
        raise ValueError("percentile of a value that is not finite")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be between 0 and 100, got {q!r}")
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True, slots=True)
class Targets:
    """SLA targets in seconds, and the fraction of incidents that must meet each.

    Defaults: NFPA 1221 (dispatch within 60 s), NFPA 1710 (turnout 80 s, the
    fire figure; EMS's is 60 s; travel 240 s), each for 90 % of incidents.
    """

    dispatch_s: float = 60.0
    turnout_s: float = 80.0
    travel_s: float = 240.0
    goal: float = 0.9

    def __post_init__(self) -> None:
        for name in ("dispatch_s", "turnout_s", "travel_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"SLA target {name} must be a number > 0, got {value!r}")
        if not 0 < self.goal <= 1:
            raise ValueError(f"SLA goal must be in (0, 1], got {self.goal!r}")

    def limits(self) -> dict[str, tuple[str, float]]:
        """Target name -> (the interval it judges, the limit in seconds)."""
        return {
            "dispatch": ("incident_to_dispatch", self.dispatch_s),
            "turnout": ("turnout", self.turnout_s),
            "travel": ("travel", self.travel_s),
        }


@dataclass(frozen=True, slots=True)
class MetricSummary:
    """One interval over a group: how many incidents have it, and its p50 and p90."""

    count: int
    p50: float | None
    p90: float | None


@dataclass(frozen=True, slots=True)
class GroupSummary:
    """The intervals of one group of incidents (one kind, district or day)."""

    key: str | None
    count: int
    metrics: Mapping[str, MetricSummary]


@dataclass(frozen=True, slots=True)
class Compliance:
    """How one target was met: an incident is within when its interval is <= the target.

    Only incidents that have the interval are judged (one never dispatched
    has no dispatch time to judge); ``fraction`` is None when none has it.
    """

    metric: str
    target_s: float
    goal: float
    measured: int
    within: int
    fraction: float | None
    met: bool | None
    breaches: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Summary:
    """Everything ``GET /api/stats`` reports about a set of incidents."""

    group_by: GroupBy | None
    count: int
    overall: GroupSummary
    groups: tuple[GroupSummary, ...]
    by_status: Mapping[str, int]
    by_severity: Mapping[str, int]
    sla: Mapping[str, Compliance]


def _metric(values: Sequence[float]) -> MetricSummary:
    if not values:
        return MetricSummary(0, None, None)
    return MetricSummary(len(values), percentile(values, 50), percentile(values, 90))


def _group(key: str | None, rows: Sequence[dict[str, float | None]]) -> GroupSummary:
    metrics = {name: _metric([v for row in rows if (v := row[name]) is not None]) for name in METRICS}
    return GroupSummary(key, len(rows), metrics)


_KEY_OF: dict[GroupBy, Callable[[IncidentTimes], str | None]] = {
    "kind": lambda i: i.kind,
    "district": lambda i: i.district,
    "period": lambda i: i.period,
}


def summarise(
    incidents: Iterable[IncidentTimes], targets: Targets, group_by: GroupBy | None = None
) -> Summary:
    """Percentiles per interval and group, counts, and SLA compliance.

    Args:
        incidents: the incidents to report on (e.g. those opened in a period).
        targets: the SLA targets to judge against.
        group_by: "kind", "district", "period" (the UTC day opened), or None
            for one group of all the incidents (key "all").

    Returns:
        Groups sorted by key, incidents without a district last (key None).

    Raises:
        ValueError: an unknown ``group_by``.
    """
    if group_by is not None and group_by not in _KEY_OF:
        raise ValueError(f"group_by must be one of {', '.join(GROUPS)} or None, got {group_by!r}")
    measured = [(incident, intervals(incident)) for incident in incidents]
    every = [row for _, row in measured]
    if group_by is None:
        groups: tuple[GroupSummary, ...] = (_group("all", every),)
    else:
        key_of = _KEY_OF[group_by]
        buckets: dict[str | None, list[dict[str, float | None]]] = {}
        for incident, row in measured:
            buckets.setdefault(key_of(incident), []).append(row)
        ordered = sorted(buckets, key=lambda k: (k is None, k or ""))
        groups = tuple(_group(k, buckets[k]) for k in ordered)
    sla: dict[str, Compliance] = {}
    for name, (metric, limit) in targets.limits().items():
        judged = [(i.id, v) for i, row in measured if (v := row[metric]) is not None]
        breaches = tuple(sorted(iid for iid, v in judged if v > limit))
        within = len(judged) - len(breaches)
        fraction = within / len(judged) if judged else None
        met = fraction >= targets.goal if fraction is not None else None
        sla[name] = Compliance(metric, limit, targets.goal, len(judged), within, fraction, met, breaches)
    return Summary(
        group_by=group_by,
        count=len(measured),
        overall=_group("all", every),
        groups=groups,
        by_status=dict(sorted(Counter(i.status for i, _ in measured).items())),
        by_severity=dict(sorted(Counter(i.severity for i, _ in measured).items())),
        sla=sla,
    )


def _round(value: float | None) -> float | None:
    # Milliseconds are finer than any of these processes needs, and keep the
    # JSON free of float noise such as 76.49999999999999.
    return round(value, 3) if value is not None else None


def _group_to_wire(group: GroupSummary) -> dict[str, object]:
    return {
        "key": group.key,
        "count": group.count,
        "metrics": {
            name: {"count": m.count, "p50": _round(m.p50), "p90": _round(m.p90)}
            for name, m in group.metrics.items()
        },
    }


def summary_to_wire(summary: Summary) -> dict[str, object]:
    """The JSON shape of :class:`Summary` (seconds rounded to milliseconds)."""
    return {
        "group_by": summary.group_by,
        "count": summary.count,
        "overall": _group_to_wire(summary.overall),
        "groups": [_group_to_wire(g) for g in summary.groups],
        "by_status": dict(summary.by_status),
        "by_severity": dict(summary.by_severity),
        "sla": {
            name: {
                "metric": c.metric,
                "target_s": c.target_s,
                "goal": c.goal,
                "measured": c.measured,
                "within": c.within,
                "fraction": None if c.fraction is None else round(c.fraction, 4),
                "met": c.met,
                "breaches": list(c.breaches),
            }
            for name, c in summary.sla.items()
        },
    }


#: The CSV columns, in order: the incident, its lead dispatch, every interval.
CSV_COLUMNS: tuple[str, ...] = (
    "incident_id",
    "kind",
    "district",
    "severity",
    "status",
    "opened_at",
    "first_alarm_at",
    "dispatches",
    "lead_unit",
    *(f"{name}_s" for name in METRICS),
)

# A spreadsheet runs a cell that starts with one of these as a formula
# (CSV injection, OWASP); district ids and kinds come from imported files.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _text(value: str | None) -> str:
    if value is None:
        return ""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _time(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat() if value is not None else ""


def _number(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else ""


def to_csv(incidents: Iterable[IncidentTimes]) -> str:
    """One row per incident with every interval in seconds, after a header row.

    Rows are in order of opening (then id); times are ISO 8601 in UTC; an
    interval that cannot be measured is an empty cell; lines end in CRLF
    (RFC 4180).
    """
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for incident in sorted(incidents, key=lambda i: (i.opened_at, i.id)):
        row = intervals(incident)
        lead = lead_dispatch(incident)
        writer.writerow(
            [
                str(incident.id),
                _text(incident.kind),
                _text(incident.district),
                _text(incident.severity),
                _text(incident.status),
                _time(incident.opened_at),
                _time(incident.first_alarm_at),
                str(len(incident.dispatches)),
                _text(lead.unit_id) if lead else "",
                *(_number(row[name]) for name in METRICS),
            ]
        )
    return out.getvalue()
