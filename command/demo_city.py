"""A synthetic demo city, "H City", for demos, tests and benchmarks.

Everything in this module is made up. The city is placed around 30.27 N,
120.15 E so that a base map looks plausible and the place names are
Chinese-flavoured, but the districts, roads, stations, depots, hazards, sites
and sensors are generated from a seed, not surveyed: nothing here describes a
real place, and nothing here may be used for a real response.

Pure module: no I/O, no clock. ``build_city(seed)`` returns an equal ``City``
for an equal seed, so a demo, a test and a benchmark all see the same city.

Geometry is built in a local metric frame (x east, y north, metres from the
south-west corner of the city box) and converted to WGS 84 lon/lat at the end
with one affine transform. Over a 16 km box the equirectangular approximation
is good to well under a metre per kilometre, which is all a demo needs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from types import MappingProxyType
from typing import Any, TypeVar

from shapely import affinity
from shapely.geometry import LineString, MultiLineString, MultiPolygon, Point, Polygon, box
from shapely.geometry.base import BaseGeometry
from shapely.ops import split, unary_union

# Re-exported: the demo city's vocabulary is dispatch's (tests compare the two).
from dispatch.units import CAPABILITIES as CAPABILITIES
from dispatch.units import UNIT_TYPES as UNIT_TYPES
from sensors.alarms import KINDS

# --- The box the city lives in --------------------------------------------

CENTER_LAT = 30.27
CENTER_LON = 120.15
WIDTH_M = 16_000.0
HEIGHT_M = 12_000.0
EARTH_RADIUS_M = 6_371_008.8  # IUGG mean radius

_M_PER_DEG_LAT = EARTH_RADIUS_M * math.pi / 180.0
_M_PER_DEG_LON = _M_PER_DEG_LAT * math.cos(math.radians(CENTER_LAT))

WEST = CENTER_LON - WIDTH_M / 2.0 / _M_PER_DEG_LON
EAST = CENTER_LON + WIDTH_M / 2.0 / _M_PER_DEG_LON
SOUTH = CENTER_LAT - HEIGHT_M / 2.0 / _M_PER_DEG_LAT
NORTH = CENTER_LAT + HEIGHT_M / 2.0 / _M_PER_DEG_LAT
#: (west, south, east, north) in degrees, WGS 84.
BBOX: tuple[float, float, float, float] = (WEST, SOUTH, EAST, NORTH)

# Expiry dates are relative to this date rather than to the clock, so that
# the same seed always gives the same city (see build_city's ``today``).
REFERENCE_DATE = date(2026, 11, 1)

# --- Vocabularies -----------------------------------------------------------

#: Alarm kinds of the MQTT alarm contract (design section 3), in a fixed order.
ALARM_KINDS: tuple[str, ...] = tuple(sorted(KINDS))
SENSOR_KINDS: tuple[str, ...] = (
    "smoke",
    "gas",
    "water_level",
    "seismic",
    "structural",
    "air_quality",
)
HAZARD_KINDS: tuple[str, ...] = (
    "chemical_plant",
    "gas_station",
    "flood_underpass",
    "landslide_slope",
)
SITE_KINDS: tuple[str, ...] = ("school", "hospital", "care_home", "station")

# First entry is the kind the sensor reports most; the rest are what the same
# device also reports in a real event (a smoke detector in a fire reports
# both smoke and fire). Neighbours of an event are chosen by overlap with
# these tuples, so the overlaps are deliberate: air quality meets smoke and
# hazmat, structural meets seismic on landslide.
_SENSOR_ALARM_KINDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "smoke": ("smoke", "fire"),
        "gas": ("gas_leak", "hazmat"),
        "water_level": ("water_level", "flood"),
        "seismic": ("earthquake", "landslide"),
        "structural": ("structure_collapse", "landslide"),
        "air_quality": ("air_quality", "smoke", "hazmat"),
    }
)


def sensor_alarm_kinds(sensor_kind: str) -> tuple[str, ...]:
    """Return the alarm kinds a sensor of ``sensor_kind`` plausibly raises.

    Args:
        sensor_kind: one of ``SENSOR_KINDS``; anything else is accepted.

    Returns:
        A non-empty tuple of kinds from ``ALARM_KINDS``, most likely first.
        An unknown sensor kind gives ``("other",)``.
    """
    return _SENSOR_ALARM_KINDS.get(sensor_kind, ("other",))


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Equirectangular distance in metres between two WGS 84 points.

    Accurate to a fraction of a percent over city distances, which is all
    road lengths and neighbour searches need; not for long distances.
    """
    mean_lat = math.radians((lat1 + lat2) / 2.0)
    dx = math.radians(lon2 - lon1) * math.cos(mean_lat)
    dy = math.radians(lat2 - lat1)
    return EARTH_RADIUS_M * math.hypot(dx, dy)


# --- Domain types -----------------------------------------------------------


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True, slots=True)
class District:
    """A jurisdiction; the districts of a city tile its box without overlap."""

    id: str
    name: str
    name_zh: str
    geom: MultiPolygon

    def __post_init__(self) -> None:
        _require(bool(self.id), "district id is empty")
        _require(isinstance(self.geom, MultiPolygon), f"{self.id}: geom must be a MultiPolygon")
        _require(self.geom.is_valid and not self.geom.is_empty, f"{self.id}: invalid geometry")


@dataclass(frozen=True, slots=True)
class Road:
    """One edge of the road graph, shaped for pgRouting.

    ``source``/``target`` are vertex ids; a one-way edge may be driven only
    from source to target.
    """

    source: int
    target: int
    name: str
    length_m: float
    speed_kmh: float
    oneway: bool
    geom: LineString

    def __post_init__(self) -> None:
        _require(self.source != self.target, f"{self.name}: road loops on vertex {self.source}")
        _require(self.length_m > 0, f"{self.name}: length must be positive")
        _require(self.speed_kmh > 0, f"{self.name}: speed must be positive")
        _require(isinstance(self.geom, LineString), f"{self.name}: geom must be a LineString")


@dataclass(frozen=True, slots=True)
class Unit:
    """A response unit (team or vehicle) based at a station."""

    id: str
    callsign: str
    type: str
    capabilities: tuple[str, ...]
    crew: int
    station: str
    home: Point
    district_id: str

    def __post_init__(self) -> None:
        _require(bool(self.id), "unit id is empty")
        _require(self.type in UNIT_TYPES, f"{self.id}: unknown unit type {self.type!r}")
        _require(self.crew >= 0, f"{self.id}: negative crew")
        unknown = set(self.capabilities) - set(CAPABILITIES)
        _require(not unknown, f"{self.id}: unknown capabilities {sorted(unknown)}")
        _require(isinstance(self.home, Point), f"{self.id}: home must be a Point")


@dataclass(frozen=True, slots=True)
class Depot:
    """A supply depot."""

    id: str
    name: str
    location: Point
    district_id: str

    def __post_init__(self) -> None:
        _require(bool(self.id), "depot id is empty")
        _require(isinstance(self.location, Point), f"{self.id}: location must be a Point")


@dataclass(frozen=True, slots=True)
class StockItem:
    """How much of one item a depot holds."""

    depot_id: str
    item: str
    quantity: int
    unit: str
    expires_on: date | None

    def __post_init__(self) -> None:
        # Mirrors the CHECK on stock.quantity: stock never goes negative.
        _require(self.quantity >= 0, f"{self.depot_id}/{self.item}: negative quantity")


@dataclass(frozen=True, slots=True)
class Hazard:
    """A risk source: a point (gas station) or an area (chemical plant)."""

    id: str
    kind: str
    name: str
    geom: Point | Polygon
    # A read-only mapping (lists inside are tuples) so the hazard stays
    # immutable; excluded from the hash because mappings are unhashable.
    attrs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    def __post_init__(self) -> None:
        _require(self.kind in HAZARD_KINDS, f"{self.id}: unknown hazard kind {self.kind!r}")


@dataclass(frozen=True, slots=True)
class Site:
    """A protection target: school, hospital, care home or station."""

    id: str
    kind: str
    name: str
    geom: Point | Polygon
    capacity: int | None
    beds: int | None

    def __post_init__(self) -> None:
        _require(self.kind in SITE_KINDS, f"{self.id}: unknown site kind {self.kind!r}")
        _require(self.capacity is None or self.capacity >= 0, f"{self.id}: negative capacity")
        _require(self.beds is None or self.beds >= 0, f"{self.id}: negative beds")


@dataclass(frozen=True, slots=True)
class Sensor:
    """A registered IoT sensor with a known location."""

    id: str
    kind: str
    name: str
    district_id: str
    location: Point

    def __post_init__(self) -> None:
        _require(self.kind in SENSOR_KINDS, f"{self.id}: unknown sensor kind {self.kind!r}")
        _require(isinstance(self.location, Point), f"{self.id}: location must be a Point")


@dataclass(frozen=True, slots=True)
class City:
    """Everything the demo needs, as immutable tuples."""

    seed: int
    districts: tuple[District, ...]
    roads: tuple[Road, ...]
    units: tuple[Unit, ...]
    depots: tuple[Depot, ...]
    stock: tuple[StockItem, ...]
    hazards: tuple[Hazard, ...]
    sites: tuple[Site, ...]
    sensors: tuple[Sensor, ...]


# --- Names ------------------------------------------------------------------

# (id, English name, Chinese name), north row west to east, then south row.
_DISTRICT_NAMES: tuple[tuple[str, str, str], ...] = (
    ("D-YUHANG", "Yuhang", "余杭区"),
    ("D-GONGSHU", "Gongshu", "拱墅区"),
    ("D-LINPING", "Linping", "临平区"),
    ("D-XIHU", "Xihu", "西湖区"),
    ("D-SHANGCHENG", "Shangcheng", "上城区"),
    ("D-BINJIANG", "Binjiang", "滨江区"),
)

_ROWS = 11  # road grid rows, south to north
_COLS = 15  # road grid columns, west to east
_ROW_NAMES: tuple[str, ...] = (
    "South Ring Expressway",
    "Jiangnan Avenue",
    "Binsheng Road",
    "Jiefang Road",
    "Qingchun Road",
    "Fengqi Road",
    "Tiyuchang Road",
    "Wensan Road",
    "Wenyi Road",
    "Desheng Road",
    "North Ring Expressway",
)
_COL_NAMES: tuple[str, ...] = (
    "West Ring Expressway",
    "Zhijiang Road",
    "Gudun Road",
    "Xueyuan Road",
    "Jiaogong Road",
    "Hushu Road",
    "Yan'an Road",
    "Zhongshan Road",
    "Jianguo Road",
    "Qiutao Road",
    "Dongxin Road",
    "Shixiang Road",
    "Jiuhuan Road",
    "Genshan Road",
    "East Ring Expressway",
)
_ARTERIAL_ROWS = frozenset({3, 7})
_ARTERIAL_COLS = frozenset({4, 10})

_SENSOR_LABELS: Mapping[str, str] = MappingProxyType(
    {
        "smoke": "Smoke detector",
        "gas": "Gas detector",
        "water_level": "Water level gauge",
        "seismic": "Seismometer",
        "structural": "Structural monitor",
        "air_quality": "Air quality station",
    }
)

# How many sensors of each kind; the total is 500.
_SENSOR_COUNTS: tuple[tuple[str, int], ...] = (
    ("smoke", 150),
    ("gas", 90),
    ("water_level", 70),
    ("seismic", 30),
    ("structural", 60),
    ("air_quality", 100),
)

# (item, unit, min quantity, max quantity, shelf life in days or None)
_STOCK_CATALOGUE: tuple[tuple[str, str, int, int, int | None], ...] = (
    ("tents", "pcs", 50, 400, None),
    ("drinking_water", "L", 2_000, 20_000, 540),
    ("sandbags", "bags", 1_000, 10_000, None),
    ("pumps", "pcs", 4, 30, None),
    ("generators", "pcs", 2, 20, None),
    ("medical_kits", "kits", 50, 500, 720),
    ("protective_suits", "sets", 50, 600, 1_460),
    ("blankets", "pcs", 200, 3_000, None),
    ("life_jackets", "pcs", 50, 500, None),
    ("food_rations", "boxes", 200, 3_000, 365),
    ("disinfectant", "L", 100, 2_000, 730),
    ("n95_masks", "boxes", 100, 1_000, 1_095),
)

_T = TypeVar("_T")
_XY = tuple[float, float]


# --- Geometry helpers (local metric frame) ----------------------------------


def _to_geo(geom: BaseGeometry) -> Any:
    """Convert a geometry from the local metric frame to WGS 84 lon/lat."""
    return affinity.affine_transform(
        geom, [1.0 / _M_PER_DEG_LON, 0.0, 0.0, 1.0 / _M_PER_DEG_LAT, WEST, SOUTH]
    )


def _geo_point(xy: _XY) -> Point:
    lon = WEST + xy[0] / _M_PER_DEG_LON
    lat = SOUTH + xy[1] / _M_PER_DEG_LAT
    # Rounded to ~1 cm so that the WKB of a point is stable and readable.
    return Point(round(lon, 7), round(lat, 7))


class _Placer:
    """Finds points well inside districts, so containment is never marginal.

    Every placed point lies at least ``margin`` metres inside its district,
    which keeps "the point is in its district" true after the conversion to
    degrees, after rounding, and after small jitter of a few tens of metres.
    """

    def __init__(self, districts_xy: Sequence[tuple[str, Polygon]], margin: float) -> None:
        self._insets = [(did, poly.buffer(-margin)) for did, poly in districts_xy]

    def district_of(self, xy: _XY) -> str | None:
        p = Point(xy)
        for did, inset in self._insets:
            if inset.contains(p):
                return did
        return None

    def random_in(self, rng: random.Random, district_id: str | None = None) -> tuple[_XY, str]:
        candidates = [(d, g) for d, g in self._insets if district_id in (None, d)]
        _require(bool(candidates), f"unknown district {district_id!r}")
        # Rejection sampling in the bounding box; the districts are fat
        # enough that this converges in a handful of tries.
        minx, miny, maxx, maxy = unary_union([g for _, g in candidates]).bounds
        while True:
            xy = (rng.uniform(minx, maxx), rng.uniform(miny, maxy))
            did = self.district_of(xy)
            if did is not None and district_id in (None, did):
                return xy, did

    def near(self, rng: random.Random, centre: _XY, radius: float) -> tuple[_XY, str]:
        for _ in range(60):
            # Uniform in the disc, not clustered at its centre.
            r = radius * math.sqrt(rng.random())
            a = rng.uniform(0.0, 2.0 * math.pi)
            xy = (centre[0] + r * math.cos(a), centre[1] + r * math.sin(a))
            did = self.district_of(xy)
            if did is not None:
                return xy, did
        return self.random_in(rng)


def _wiggly(
    rng: random.Random, start: float, stop: float, base: float, step_jitter: float, limit: float
) -> list[float]:
    """Offsets of a gently wandering line: a clamped random walk."""
    n = int(abs(stop - start) // 1000.0) + 2
    offset = rng.uniform(-limit / 2, limit / 2)
    out = []
    for _ in range(n):
        out.append(base + offset)
        offset = max(-limit, min(limit, offset + rng.uniform(-step_jitter, step_jitter)))
    return out


def _build_districts(rng: random.Random) -> list[tuple[str, str, str, Polygon]]:
    """Six districts tiling the box: two rows of three with wandering borders."""
    city_box = box(0.0, 0.0, WIDTH_M, HEIGHT_M)

    # Each border is a random walk that overshoots what it cuts, so split()
    # always sees it cross. The east-west border is x-monotone and the
    # north-south ones y-monotone with slopes whose product stays below 1,
    # so each pair crosses exactly once and every cut yields two pieces.
    xs = [-500.0 + 1000.0 * i for i in range(int(WIDTH_M // 1000) + 2)]
    ys_h = _wiggly(rng, xs[0], xs[-1], HEIGHT_M / 2, 350.0, 1500.0)
    divider = LineString(list(zip(xs, ys_h[: len(xs)], strict=True)))

    def vertical(x0: float) -> LineString:
        ys = [-500.0 + 1000.0 * i for i in range(int(HEIGHT_M // 1000) + 2)]
        offsets = _wiggly(rng, ys[0], ys[-1], x0, 300.0, 1000.0)
        return LineString(list(zip(offsets[: len(ys)], ys, strict=True)))

    halves = _polygons(split(city_box, divider))
    _require(len(halves) == 2, f"expected 2 halves, got {len(halves)}")
    north_half, south_half = sorted(halves, key=lambda f: -f.centroid.y)
    # Borders are cut per half, so a north border can never meet a south
    # one; the south borders sit at other x than the north ones, as real
    # district borders rarely line up.
    north_borders = [vertical(WIDTH_M * f + rng.uniform(-700, 700)) for f in (1 / 3, 2 / 3)]
    south_borders = [vertical(WIDTH_M * f + rng.uniform(-700, 700)) for f in (0.36, 0.68)]
    north = _polygons(split(north_half, MultiLineString(north_borders)))
    south = _polygons(split(south_half, MultiLineString(south_borders)))
    _require(len(north) == 3 and len(south) == 3, "district faces are not two rows of three")
    north.sort(key=lambda f: f.centroid.x)
    south.sort(key=lambda f: f.centroid.x)
    return [
        (did, name, zh, face) for (did, name, zh), face in zip(_DISTRICT_NAMES, north + south, strict=True)
    ]


def _polygons(collection: BaseGeometry) -> list[Polygon]:
    return [g for g in getattr(collection, "geoms", [collection]) if isinstance(g, Polygon)]


# --- Roads ------------------------------------------------------------------


def _vertex(row: int, col: int) -> int:
    return row * _COLS + col + 1  # pgRouting vertex ids start at 1 by convention


def _road_class(row: int | None, col: int | None) -> tuple[float, str]:
    """Speed (km/h) and name of a grid line; row xor col is given."""
    if row is not None:
        if row in (0, _ROWS - 1):
            return 80.0, _ROW_NAMES[row]
        return (60.0 if row in _ARTERIAL_ROWS else 50.0), _ROW_NAMES[row]
    assert col is not None
    if col in (0, _COLS - 1):
        return 80.0, _COL_NAMES[col]
    return (60.0 if col in _ARTERIAL_COLS else 50.0), _COL_NAMES[col]


def _connected(vertices: set[int], edges: Sequence[tuple[int, int]]) -> bool:
    adjacency: dict[int, list[int]] = {v: [] for v in vertices}
    for a, b in edges:
        adjacency[a].append(b)
        adjacency[b].append(a)
    start = next(iter(vertices))
    seen = {start}
    todo = [start]
    while todo:
        for nxt in adjacency[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return len(seen) == len(vertices)


def _build_roads(rng: random.Random) -> tuple[list[Road], dict[int, _XY]]:
    margin = 400.0
    dx = (WIDTH_M - 2 * margin) / (_COLS - 1)
    dy = (HEIGHT_M - 2 * margin) / (_ROWS - 1)
    nodes: dict[int, _XY] = {}
    for r in range(_ROWS):
        for c in range(_COLS):
            nodes[_vertex(r, c)] = (
                margin + c * dx + rng.uniform(-150, 150),
                margin + r * dy + rng.uniform(-150, 150),
            )

    # (source, target, name, speed, oneway); a one-way edge runs source->target.
    specs: list[tuple[int, int, str, float, bool]] = []
    for r in range(_ROWS):
        speed, name = _road_class(r, None)
        for c in range(_COLS - 1):
            a, b = _vertex(r, c), _vertex(r, c + 1)
            # A one-way couplet through the centre, as old city cores have:
            # row 5 eastbound, row 4 westbound.
            if r == 5 and 3 <= c < 10:
                specs.append((a, b, name, 30.0, True))
            elif r == 4 and 3 <= c < 10:
                specs.append((b, a, name, 30.0, True))
            else:
                local = speed == 50.0 and rng.random() < 0.15
                specs.append((a, b, name, 30.0 if local else speed, False))
    for c in range(_COLS):
        speed, name = _road_class(None, c)
        for r in range(_ROWS - 1):
            local = speed == 50.0 and rng.random() < 0.15
            specs.append((_vertex(r, c), _vertex(r + 1, c), name, 30.0 if local else speed, False))
    # Two diagonal arterials crossing at vertex (6, 6).
    for i in range(1, 9):
        specs.append((_vertex(i, i), _vertex(i + 1, i + 1), "Tianmushan Road", 60.0, False))
    for i in range(1, 9):
        specs.append((_vertex(i, 12 - i), _vertex(i + 1, 11 - i), "Moganshan Road", 60.0, False))

    # Drop a few minor two-way streets so the grid looks less drawn, but only
    # while the two-way streets alone still connect every vertex: that keeps
    # the graph strongly connected whatever the one-way edges do.
    kept = list(specs)
    candidates = [s for s in specs if not s[4] and s[3] <= 50.0]
    rng.shuffle(candidates)
    for spec in candidates[: len(specs) // 25]:
        trial = [s for s in kept if s is not spec]
        if _connected(set(nodes), [(s[0], s[1]) for s in trial if not s[4]]):
            kept = trial

    roads: list[Road] = []
    for source, target, name, speed, oneway in kept:
        line = _to_geo(LineString([nodes[source], nodes[target]]))
        (lon1, lat1), (lon2, lat2) = line.coords
        roads.append(
            Road(
                source=source,
                target=target,
                name=name,
                length_m=round(distance_m(lon1, lat1, lon2, lat2), 1),
                speed_kmh=speed,
                oneway=oneway,
                geom=line,
            )
        )
    return roads, nodes


# --- Everything else --------------------------------------------------------


def _rect(centre: _XY, half_w: float, half_h: float) -> Polygon:
    x, y = centre
    return box(x - half_w, y - half_h, x + half_w, y + half_h)


def _blob(rng: random.Random, centre: _XY, radius: float) -> Polygon:
    """An irregular polygon (a slope, a plant) within ``radius`` of centre."""
    n = 9
    pts = []
    for i in range(n):
        a = 2 * math.pi * i / n
        r = radius * rng.uniform(0.6, 1.0)
        pts.append((centre[0] + r * math.cos(a), centre[1] + r * math.sin(a)))
    return Polygon(pts)


def _pick(rng: random.Random, items: Sequence[_T]) -> _T:
    return items[rng.randrange(len(items))]


def build_city(seed: int = 7, *, today: date = REFERENCE_DATE) -> City:
    """Build the synthetic H City.

    Args:
        seed: the same seed always gives an equal city.
        today: the date stock expiry dates are relative to (a few items
            expire within weeks of it, most within one to four years).

    Returns:
        A City with 6 districts, a few hundred road edges, about 60 units,
        10 depots with stock, hazards, sites and 500 sensors. Every point
        with a ``district_id`` lies inside that district's polygon.
    """
    rng = random.Random(seed)
    raw_districts = _build_districts(rng)
    districts = tuple(
        District(id=did, name=name, name_zh=zh, geom=MultiPolygon([_to_geo(face)]))
        for did, name, zh, face in raw_districts
    )
    names = {did: name for did, name, _, _ in raw_districts}
    # Stations sit 300 m inside a district so units parked around them with a
    # few tens of metres of jitter are still well inside; everything else
    # keeps 150 m.
    station_placer = _Placer([(d, f) for d, _, _, f in raw_districts], 300.0)
    placer = _Placer([(d, f) for d, _, _, f in raw_districts], 150.0)
    district_ids = [d for d, _, _, _ in raw_districts]

    roads, nodes = _build_roads(rng)

    # Sites first: ambulances live at hospitals, sensors cluster near sites.
    sites: list[Site] = []
    site_xy: list[_XY] = []
    hospital_homes: list[tuple[str, _XY, str]] = []
    hospital_names = (
        "H City First People's Hospital",
        "H City Second People's Hospital",
        "Xihu District Hospital",
        "H City Children's Hospital",
        "H City Hospital of Traditional Chinese Medicine",
        "Binjiang District People's Hospital",
        "Yuhang District First Hospital",
    )
    for i, hname in enumerate(hospital_names):
        # One hospital per district, the seventh anywhere.
        home_district = district_ids[i] if i < len(district_ids) else None
        xy, did = station_placer.random_in(rng, home_district)
        geom = _to_geo(_rect(xy, rng.uniform(80, 130), rng.uniform(70, 110)))
        beds = rng.randrange(300, 1_800, 50)
        sites.append(
            Site(id=f"HOS-{i + 1:02d}", kind="hospital", name=hname, geom=geom, capacity=None, beds=beds)
        )
        site_xy.append(xy)
        hospital_homes.append((hname, xy, did))
    school_kinds = ("Primary School", "Middle School", "High School")
    for i in range(18):
        xy, did = placer.random_in(rng, district_ids[i % len(district_ids)])
        level = school_kinds[i % 3]
        name = f"{names[did]} No. {i // 6 + 1} {level}"
        geom = _to_geo(_rect(xy, rng.uniform(60, 100), rng.uniform(50, 90)))
        sites.append(
            Site(
                id=f"SCH-{i + 1:02d}",
                kind="school",
                name=name,
                geom=geom,
                capacity=rng.randrange(600, 2_600, 50),
                beds=None,
            )
        )
        site_xy.append(xy)
    for i in range(9):
        xy, did = placer.random_in(rng, district_ids[i % len(district_ids)])
        residents = rng.randrange(60, 320, 10)
        beds = residents + rng.randrange(0, 40)
        sites.append(
            Site(
                id=f"CARE-{i + 1:02d}",
                kind="care_home",
                name=f"{names[did]} Elderly Care Home No. {i // 6 + 1}",
                geom=_geo_point(xy),
                capacity=residents,
                beds=beds,
            )
        )
        site_xy.append(xy)
    station_sites = (
        ("H City East Railway Station", 80_000),
        ("H City Railway Station", 50_000),
        ("Wulin Square Metro Station", 30_000),
        ("Qianjiang Road Metro Station", 25_000),
        ("Jiangling Road Metro Station", 20_000),
    )
    for i, (sname, cap) in enumerate(station_sites):
        xy, _ = placer.random_in(rng)
        sites.append(
            Site(
                id=f"STN-{i + 1:02d}",
                kind="station",
                name=sname,
                geom=_geo_point(xy),
                capacity=cap,
                beds=None,
            )
        )
        site_xy.append(xy)

    # Hazards.
    hazards: list[Hazard] = []
    chem_xy: list[_XY] = []
    plants = (
        ("Linping Fine Chemicals Co. plant", ("chlorine", "hydrochloric_acid")),
        ("Binjiang Coatings Works", ("toluene", "xylene")),
        ("Gongshu Gas Storage and Distribution Yard", ("lpg",)),
    )
    plant_districts = ("D-LINPING", "D-BINJIANG", "D-GONGSHU")
    for i, ((pname, substances), did) in enumerate(zip(plants, plant_districts, strict=True)):
        xy, _ = station_placer.random_in(rng, did)
        chem_xy.append(xy)
        hazards.append(
            Hazard(
                id=f"HZ-CHEM-{i + 1:02d}",
                kind="chemical_plant",
                name=pname,
                geom=_to_geo(_blob(rng, xy, rng.uniform(150, 250))),
                attrs=MappingProxyType(
                    {
                        "substances": substances,
                        "risk_level": "major",
                        "evacuation_radius_m": rng.choice((800, 1_000, 1_500)),
                    }
                ),
            )
        )
    gas_xy: list[_XY] = []
    node_ids = sorted(nodes)
    brands = ("Sinopec", "PetroChina", "CNOOC", "Shell")
    while len(gas_xy) < 12:
        v = _pick(rng, node_ids)
        # Beside the road, not on the crossing.
        xy = (nodes[v][0] + rng.uniform(-60, 60), nodes[v][1] + rng.uniform(-60, 60))
        did_or_none = placer.district_of(xy)
        if did_or_none is None:
            continue
        gas_xy.append(xy)
        brand = _pick(rng, brands)
        hazards.append(
            Hazard(
                id=f"HZ-GAS-{len(gas_xy):02d}",
                kind="gas_station",
                name=f"{brand} {names[did_or_none]} station {len(gas_xy)}",
                geom=_geo_point(xy),
                attrs=MappingProxyType({"brand": brand, "tank_capacity_m3": rng.choice((60, 90, 120))}),
            )
        )
    # Underpasses are where arterials or expressways cross: that is where
    # real cities' underpasses are, and where they flood.
    crossing_nodes = [
        _vertex(r, c)
        for r in range(1, _ROWS - 1)
        for c in range(1, _COLS - 1)
        if r in _ARTERIAL_ROWS or c in _ARTERIAL_COLS
    ]
    rng.shuffle(crossing_nodes)
    underpass_xy: list[_XY] = []
    for v in crossing_nodes:
        if len(underpass_xy) == 8:
            break
        xy = nodes[v]
        did_or_none = placer.district_of(xy)
        if did_or_none is None:
            continue
        underpass_xy.append(xy)
        hazards.append(
            Hazard(
                id=f"HZ-FLOOD-{len(underpass_xy):02d}",
                kind="flood_underpass",
                name=f"{names[did_or_none]} underpass {len(underpass_xy)}",
                geom=_geo_point(xy),
                attrs=MappingProxyType(
                    {
                        "max_depth_m": round(rng.uniform(1.2, 3.0), 1),
                        "pump_capacity_m3h": rng.choice((200, 400, 600)),
                    }
                ),
            )
        )
    slope_xy: list[_XY] = []
    for i in range(4):
        # The hills are in the west, as around a lake city's western shore.
        xy, _ = station_placer.random_in(rng, ("D-XIHU", "D-YUHANG")[i % 2])
        slope_xy.append(xy)
        hazards.append(
            Hazard(
                id=f"HZ-SLOPE-{i + 1:02d}",
                kind="landslide_slope",
                name=f"{('Xihu', 'Yuhang')[i % 2]} hillside slope {i // 2 + 1}",
                geom=_to_geo(_blob(rng, xy, rng.uniform(120, 220))),
                attrs=MappingProxyType(
                    {
                        "risk_level": rng.choice(("medium", "high")),
                        "households_at_risk": rng.randrange(10, 120),
                    }
                ),
            )
        )

    # Units, by station.
    units: list[Unit] = []
    counters: dict[str, int] = {}

    def add_unit(
        prefix: str, utype: str, label: str, caps: tuple[str, ...], crew: int, station: str, xy: _XY, did: str
    ) -> None:
        counters[prefix] = counters.get(prefix, 0) + 1
        n = counters[prefix]
        # Parked around the station rather than stacked on one spot, so the
        # map shows each of them.
        home = (xy[0] + rng.uniform(-30, 30), xy[1] + rng.uniform(-30, 30))
        units.append(
            Unit(
                id=f"{prefix}-{n:02d}",
                callsign=f"{names[did]} {label} {n}",
                type=utype,
                capabilities=caps,
                crew=crew,
                station=station,
                home=_geo_point(home),
                district_id=did,
            )
        )

    hazmat_districts = {"D-LINPING", "D-BINJIANG", "D-GONGSHU"}
    for did in district_ids:
        fire_xy, _ = station_placer.random_in(rng, did)
        fire_station = f"{names[did]} Fire Rescue Station"
        engines = 3 if did in ("D-SHANGCHENG", "D-GONGSHU") else 2
        for _ in range(engines):
            add_unit(
                "FE",
                "fire_engine",
                "Engine",
                ("fire_suppression", "rescue"),
                rng.choice((5, 6)),
                fire_station,
                fire_xy,
                did,
            )
        add_unit(
            "RS",
            "rescue_squad",
            "Rescue",
            ("rescue", "search", "water_rescue"),
            rng.choice((6, 7, 8)),
            fire_station,
            fire_xy,
            did,
        )
        if did in hazmat_districts:
            add_unit("HM", "hazmat_team", "Hazmat", ("hazmat", "rescue"), 6, fire_station, fire_xy, did)

        police_xy, _ = station_placer.random_in(rng, did)
        police_station = f"{names[did]} Public Security Sub-bureau"
        for _ in range(2):
            add_unit(
                "POL", "police", "Patrol", ("traffic_control", "search"), 2, police_station, police_xy, did
            )

        utility_xy, _ = station_placer.random_in(rng, did)
        add_unit(
            "UC",
            "utility_crew",
            "Power",
            ("power",),
            rng.choice((3, 4)),
            f"{names[did]} Power Supply Service Centre",
            utility_xy,
            did,
        )

        vol_xy, _ = station_placer.random_in(rng, did)
        add_unit(
            "VT",
            "volunteer_team",
            "Volunteers",
            ("search", "rescue"),
            rng.randrange(8, 16),
            f"{names[did]} Community Volunteer Centre",
            vol_xy,
            did,
        )

    # Two ambulances at most hospitals, one at the smaller ones: 12 in all.
    for i, (hname, xy, did) in enumerate(hospital_homes):
        for _ in range(1 if i >= 5 else 2):
            add_unit("AMB", "ambulance", "Ambulance", ("medical",), 3, hname, xy, did)

    cdc_xy, _ = station_placer.random_in(rng, "D-SHANGCHENG")
    for _ in range(2):
        add_unit(
            "PH",
            "public_health_team",
            "Health",
            ("epidemiology", "medical"),
            4,
            "H City Center for Disease Control",
            cdc_xy,
            "D-SHANGCHENG",
        )
    for did in ("D-YUHANG", "D-BINJIANG"):
        branch_xy, _ = station_placer.random_in(rng, did)
        add_unit(
            "PH",
            "public_health_team",
            "Health",
            ("epidemiology", "medical"),
            4,
            f"{names[did]} Disease Control Branch",
            branch_xy,
            did,
        )

    # Depots: one per district, plus four specialised ones.
    depot_specs = [(f"{names[d]} Emergency Supplies Depot", d) for d in district_ids] + [
        ("H City Municipal Reserve Depot", "D-GONGSHU"),
        ("Riverside Flood Control Depot", "D-BINJIANG"),
        ("Northern Logistics Depot", "D-LINPING"),
        ("Western Hills Depot", "D-XIHU"),
    ]
    depots: list[Depot] = []
    stock: list[StockItem] = []
    for i, (dname, did) in enumerate(depot_specs):
        xy, _ = placer.random_in(rng, did)
        depot_id = f"DEP-{i + 1:02d}"
        depots.append(Depot(id=depot_id, name=dname, location=_geo_point(xy), district_id=did))
        flood_depot = "Flood" in dname
        for item, unit, lo, hi, shelf_life in _STOCK_CATALOGUE:
            # Not every depot stocks everything; the flood depot always has
            # the flood kit, and more of it.
            flood_item = item in ("sandbags", "pumps", "life_jackets")
            if not (flood_depot and flood_item) and rng.random() < 0.2:
                continue
            quantity = rng.randint(lo, hi) * (3 if flood_depot and flood_item else 1)
            expires: date | None = None
            if shelf_life is not None:
                # A few batches expire within weeks so the console has
                # something to warn about.
                soon = rng.random() < 0.08
                days = rng.randint(10, 60) if soon else rng.randint(180, shelf_life + 365)
                expires = today + timedelta(days=days)
            stock.append(
                StockItem(depot_id=depot_id, item=item, quantity=quantity, unit=unit, expires_on=expires)
            )

    # Sensors, clustered where their kind matters.
    near_by_kind: dict[str, tuple[list[_XY], float, float]] = {
        # kind: (anchor points, radius m, share of sensors placed near one)
        "smoke": (site_xy, 150.0, 0.6),
        "gas": (gas_xy + chem_xy, 250.0, 0.5),
        "water_level": (underpass_xy, 150.0, 0.6),
        "seismic": ([], 0.0, 0.0),
        "structural": (slope_xy + site_xy, 200.0, 0.6),
        "air_quality": (chem_xy, 900.0, 0.3),
    }
    sensors: list[Sensor] = []
    per_district_kind: dict[tuple[str, str], int] = {}
    for kind, count in _SENSOR_COUNTS:
        anchors, radius, share = near_by_kind[kind]
        for _ in range(count):
            if anchors and rng.random() < share:
                xy, did = placer.near(rng, _pick(rng, anchors), radius)
            else:
                xy, did = placer.random_in(rng)
            key = (did, kind)
            per_district_kind[key] = per_district_kind.get(key, 0) + 1
            sensors.append(
                Sensor(
                    id=f"S-{len(sensors) + 1:04d}",
                    kind=kind,
                    name=f"{_SENSOR_LABELS[kind]} {names[did]} {per_district_kind[key]:03d}",
                    district_id=did,
                    location=_geo_point(xy),
                )
            )

    return City(
        seed=seed,
        districts=districts,
        roads=tuple(roads),
        units=tuple(units),
        depots=tuple(depots),
        stock=tuple(stock),
        hazards=tuple(hazards),
        sites=tuple(sites),
        sensors=tuple(sensors),
    )
