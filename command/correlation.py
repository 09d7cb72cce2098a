"""Correlation: which incident does each new alarm belong to?

Pure. The rules are data (``command/rules/correlation.toml``); see that file
for their meaning. The store locks the spatial cells the batch touches
(:func:`lock_keys`), reads the open incidents near the batch, and gets back
one :class:`Group` per incident to open or to extend.

Distances are computed in a local equirectangular projection around each
alarm: at city scale (tens of kilometres) its error is far below a sensor's
own position error, and it keeps this module free of a projection library.
"""

from __future__ import annotations

import functools
import math
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import shapely
from shapely.geometry import MultiPoint, Point
from shapely.geometry.base import BaseGeometry

from command.incidents import category_of, more_severe
from sensors.alarms import KINDS, Alarm

KIND_TITLES: dict[str, str] = {
    "fire": "Fire",
    "smoke": "Smoke",
    "gas_leak": "Gas leak",
    "flood": "Flood",
    "water_level": "High water",
    "earthquake": "Earthquake",
    "landslide": "Landslide",
    "traffic_accident": "Traffic accident",
    "structure_collapse": "Structure collapse",
    "hazmat": "Hazardous materials",
    "power_outage": "Power outage",
    "air_quality": "Air quality",
    "medical": "Medical emergency",
    "crowd": "Crowd",
    "other": "Alarm",
}

_M_PER_DEG_LAT = 110_574.0
_M_PER_DEG_LON_EQUATOR = 111_320.0
# Lock cells are squares in degrees whose side is at least the family radius
# in metres everywhere up to this latitude (cos 60° = 0.5); beyond it two
# alarms within the radius could fall in non-adjacent cells.
MAX_LOCK_LATITUDE = 60.0


class RulesError(ValueError):
    """The correlation rules file is invalid; the message says where."""


@dataclass(frozen=True, slots=True)
class FamilyRule:
    name: str
    kinds: frozenset[str]
    radius_m: float
    window: timedelta

    def __post_init__(self) -> None:
        if not self.kinds:
            raise RulesError(f"family {self.name!r} has no kinds")
        if self.radius_m <= 0:
            raise RulesError(f"family {self.name!r}: radius_m must be positive")
        if self.window <= timedelta(0):
            raise RulesError(f"family {self.name!r}: window_s must be positive")

    @property
    def cell_deg(self) -> float:
        """Lock-cell side in degrees (see MAX_LOCK_LATITUDE)."""
        return self.radius_m / (_M_PER_DEG_LON_EQUATOR * math.cos(math.radians(MAX_LOCK_LATITUDE)))


@dataclass(frozen=True, slots=True)
class Rules:
    families: tuple[FamilyRule, ...]
    _by_kind: Mapping[str, FamilyRule] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_kind: dict[str, FamilyRule] = {}
        for family in self.families:
            for kind in family.kinds:
                if kind not in KINDS:
                    raise RulesError(f"family {family.name!r}: {kind!r} is not an alarm kind")
                if kind in by_kind:
                    raise RulesError(
                        f"kind {kind!r} is in families {by_kind[kind].name!r} and {family.name!r}"
                    )
                by_kind[kind] = family
        missing = KINDS - by_kind.keys()
        if missing:
            raise RulesError(f"no family for kinds: {', '.join(sorted(missing))}")
        object.__setattr__(self, "_by_kind", by_kind)

    def family_of(self, kind: str) -> FamilyRule:
        return self._by_kind[kind]

    def family(self, name: str) -> FamilyRule | None:
        return next((f for f in self.families if f.name == name), None)


def parse_rules(text: str) -> Rules:
    """Rules from the TOML text of a rules file.

    Raises:
        RulesError: malformed TOML, missing fields, or kinds not covered exactly once.
    """
    try:
        doc: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"rules file: {exc}") from None
    families = []
    for name, body in sorted(doc.get("families", {}).items()):
        try:
            families.append(
                FamilyRule(
                    name=name,
                    kinds=frozenset(body["kinds"]),
                    radius_m=float(body["radius_m"]),
                    window=timedelta(seconds=float(body["window_s"])),
                )
            )
        except RulesError:
            raise  # already names the family and the field
        except (KeyError, TypeError, ValueError) as exc:
            raise RulesError(f"family {name!r}: missing or invalid {exc}") from None
    return Rules(tuple(families))


@dataclass(frozen=True, slots=True)
class Located:
    """A stored alarm with the position it is placed at (its own, or its sensor's)."""

    alarm: Alarm
    lat: float
    lon: float
    sensor_name: str | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    """An open sensor incident near the batch, as read under the cell locks."""

    id: int
    family: str
    extent: BaseGeometry  # lon/lat
    last_alarm_at: datetime


@dataclass(frozen=True, slots=True)
class Group:
    """Alarms that go to one incident.

    ``incident_id`` is None when a new incident must be opened; ``kind``,
    ``category``, ``lat``/``lon`` and ``title`` then describe it (from its
    first alarm). ``severity`` is the highest among these alarms; the store
    combines it with the incident's own.
    """

    incident_id: int | None
    family: str
    kind: str
    category: str
    severity: str
    lat: float
    lon: float
    title: str
    alarms: tuple[Located, ...]

    @property
    def last(self) -> Located:
        return max(self.alarms, key=lambda located: located.alarm.time)

    @property
    def points(self) -> MultiPoint:
        return MultiPoint([(a.lon, a.lat) for a in self.alarms])


def distance_m(lat: float, lon: float, geometry: BaseGeometry) -> float:
    """Metres from a point to a lon/lat geometry (0 inside it)."""
    scale = np.array([_M_PER_DEG_LON_EQUATOR * math.cos(math.radians(lat)), _M_PER_DEG_LAT])
    origin = np.array([lon, lat])
    # Vectorised over the geometry's coordinates: cheap enough to run for
    # every alarm against every nearby incident in a batch of hundreds.
    local = shapely.transform(geometry, lambda coords: (coords - origin) * scale)
    return float(shapely.distance(local, _ORIGIN))


_ORIGIN = Point(0.0, 0.0)


def lock_keys(alarms: Iterable[Located], rules: Rules) -> list[str]:
    """The spatial cells a batch must lock before deciding, sorted.

    Each alarm locks its cell and the eight around it. A cell's side is at
    least the family radius, so any two alarms within the radius of each
    other share a locked cell: their decisions are serialised, across
    transactions and instances, and cannot open two incidents for one cluster.
    """
    keys: set[str] = set()
    for located in alarms:
        family = rules.family_of(located.alarm.kind)
        size = family.cell_deg
        cx, cy = math.floor(located.lon / size), math.floor(located.lat / size)
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                keys.add(f"{family.name}:{cx + dx}:{cy + dy}")
    return sorted(keys)


def title_for(located: Located) -> str:
    where = located.sensor_name or located.alarm.sensor_id
    return f"{KIND_TITLES.get(located.alarm.kind, 'Alarm')} near {where}"


@dataclass(slots=True)
class _Cluster:
    incident_id: int | None
    family: str
    extent: BaseGeometry
    last: datetime
    members: list[Located]


def correlate(alarms: Sequence[Located], candidates: Sequence[Candidate], rules: Rules) -> list[Group]:
    """Assign each alarm to an open incident or a new one.

    Args:
        alarms: newly stored alarms (duplicates already removed by the store).
        candidates: open incidents near the batch, read under its cell locks.
        rules: the correlation rules.
    Returns:
        one group per incident touched, existing incidents first, then new ones
        in the order they were opened.
    """
    clusters = [_Cluster(c.id, c.family, c.extent, c.last_alarm_at, []) for c in candidates]
    for located in sorted(alarms, key=lambda a: a.alarm.time):
        family = rules.family_of(located.alarm.kind)
        best: _Cluster | None = None
        best_distance = math.inf
        for cluster in clusters:
            if cluster.family != family.name:
                continue
            if abs(located.alarm.time - cluster.last) > family.window:
                continue
            d = distance_m(located.lat, located.lon, cluster.extent)
            if d <= family.radius_m and d < best_distance:
                best, best_distance = cluster, d
        point = Point(located.lon, located.lat)
        if best is None:
            clusters.append(_Cluster(None, family.name, point, located.alarm.time, [located]))
        else:
            best.members.append(located)
            if best_distance > 0:  # inside the hull already: nothing to extend
                best.extent = best.extent.union(point).convex_hull
            best.last = max(best.last, located.alarm.time)

    groups = []
    for cluster in clusters:
        if not cluster.members:
            continue
        first = cluster.members[0]
        groups.append(
            Group(
                incident_id=cluster.incident_id,
                family=cluster.family,
                kind=first.alarm.kind,
                category=category_of(first.alarm.kind),
                severity=functools.reduce(more_severe, (m.alarm.severity for m in cluster.members)),
                lat=first.lat,
                lon=first.lon,
                title=title_for(first),
                alarms=tuple(cluster.members),
            )
        )
    return groups
