"""The CAP contract: parse a Common Alerting Protocol ``alert`` safely.

Pure. External feeds publish one CAP 1.2 (or 1.1, and older senders 1.0) XML
``alert`` on ``cap/{source}``; :func:`parse_cap` turns it into a frozen
:class:`CapAlert` and :func:`to_incident_fields` into what an incident needs.

The XML is the peer's, not ours, so it is parsed as hostile: a size bound
first, then defusedxml with DTDs, entity declarations and external references
all forbidden (no billion laughs, no ``file://`` reads, no network fetches;
the OASIS schemas are never loaded). Every way a document can be wrong raises
:class:`~sensors.alarms.Rejected` with a reason a person can act on; nothing
else escapes :func:`parse_cap`.

Geometry conventions that trip parsers: CAP points are ``lat,lon`` (latitude
first) while shapely and GeoJSON are ``(lon, lat)``; a ``circle`` is
``lat,lon radius_km``; ``references`` is a space-separated list of
``sender,identifier,sent`` triples.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import shapely
from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import fromstring
from shapely.errors import GEOSException
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from sensors.alarms import CATEGORY_OF_KIND, KINDS, SEVERITIES, Rejected

# 256 KiB would reject real IPAWS alerts: they embed the broadcast audio as
# base64 in <resource><derefUri>, and one of the archive samples is 449 KiB.
# Entity expansion is forbidden, so parsing cost stays linear in this bound.
MAX_CAP_PAYLOAD = 1024 * 1024

# Namespace -> CAP version. 1.0 is tolerated: older senders still emit it.
NAMESPACES: dict[str, str] = {
    "urn:oasis:names:tc:emergency:cap:1.2": "1.2",
    "urn:oasis:names:tc:emergency:cap:1.1": "1.1",
    "http://www.incident.com/cap/1.0": "1.0",
}

STATUSES: tuple[str, ...] = ("Actual", "Exercise", "System", "Test", "Draft")
MSG_TYPES: tuple[str, ...] = ("Alert", "Update", "Cancel", "Ack", "Error")
SCOPES: tuple[str, ...] = ("Public", "Restricted", "Private")
CATEGORIES: tuple[str, ...] = (
    "Geo",
    "Met",
    "Safety",
    "Security",
    "Rescue",
    "Fire",
    "Health",
    "Env",
    "Transport",
    "Infra",
    "CBRNE",
    "Other",
)
URGENCIES: tuple[str, ...] = ("Immediate", "Expected", "Future", "Past", "Unknown")
CERTAINTIES: tuple[str, ...] = ("Observed", "Likely", "Possible", "Unlikely", "Unknown")

# CAP 1.0 had "Very Likely"; 1.1 folded it into "Likely".
_CERTAINTY_ALIASES = {"very likely": "Likely"}

# The spec's default when an <info> has no <language>.
DEFAULT_LANGUAGE = "en-US"

# Circles become polygons so an area is always polygonal (one column type, and
# PostGIS containment works). Spherical approximation: a degree of latitude is
# ~111.32 km everywhere, a degree of longitude shrinks with cos(lat).
KM_PER_DEGREE = 111.32
CIRCLE_VERTICES = 64
# A radius of 0 means "this point" (the CAP 1.2 earthquake example uses it).
# A zero-area ring is invalid geometry, so a point becomes a 10 m circle: its
# centroid is still the point, and it stays a polygon like every other area.
MIN_CIRCLE_RADIUS_KM = 0.01
# Half the Earth's circumference; anything larger is not a place.
MAX_CIRCLE_RADIUS_KM = 20_000.0
# Near a pole cos(lat) -> 0 and dlon would explode; clamp it.
_MIN_COS_LAT = 0.01

# Geometry work is bounded per alert, because the payload bound alone does not
# bound it: repairing a self-intersecting ring costs roughly the square of its
# crossings, and 500 random points already take ~0.5 s (1000: ~2.6 s). Real
# alerts are far below these (IPAWS/WEA polygons have at most 100 points; the
# NWS and CAP appendix ones a dozen), so a document beyond them is rejected
# with the limit it broke rather than stalling the ingest.
MAX_SHAPES = 1000  # polygons + circles in one alert
MAX_POINTS = 100_000  # polygon vertices in one alert
MAX_REPAIR_POINTS = 1000  # vertices of the invalid rings one alert may ask us to repair
MAX_REPAIR_RING = 300  # vertices of one invalid ring we will try to repair

# CAP category -> the plan's four classes of events. "Other" is decided by the
# kind instead (see sensors.alarms.CATEGORY_OF_KIND).
CATEGORY_OF_CAP: dict[str, str] = {
    "Geo": "natural_disaster",
    "Met": "natural_disaster",
    "Env": "natural_disaster",
    "Fire": "accident",
    "Transport": "accident",
    "Infra": "accident",
    "CBRNE": "accident",
    "Rescue": "accident",
    "Safety": "accident",
    "Health": "public_health",
    "Security": "public_security",
}

INCIDENT_CATEGORIES: frozenset[str] = frozenset(CATEGORY_OF_CAP.values())

# Event text -> alarm kind. Ordered: the first rule with a matching word wins,
# so the specific comes before the general ("storm surge" is a flood before
# "storm" is weather; "smoke" before "fire" so a smoke advisory stays smoke).
# Each keyword matches at the start of a word, so "flood" matches "flooding"
# and "evacuat" matches "evacuation", but "ice" does not match "service".
_EVENT_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("earthquake", ("earthquake", "tsunami", "seismic", "aftershock")),
    ("flood", ("flood", "storm surge", "dam break", "dam failure", "levee", "inundation")),
    ("water_level", ("water level", "river stage", "hydrologic")),
    ("landslide", ("landslide", "mudslide", "debris flow", "rockslide", "rockfall", "avalanche")),
    ("smoke", ("smoke",)),
    ("fire", ("fire", "wildfire", "red flag", "burn")),
    ("gas_leak", ("gas leak", "natural gas", "gas explosion", "gas line", "gas pipeline")),
    (
        "hazmat",
        ("hazardous material", "hazmat", "chemical", "radiolog", "nuclear", "biological", "cbrne", "toxic"),
    ),
    ("air_quality", ("air quality", "air stagnation", "dust", "ozone", "pollution", "particulate")),
    ("structure_collapse", ("collapse", "structural failure")),
    ("power_outage", ("power outage", "power failure", "blackout", "outage")),
    ("traffic_accident", ("traffic", "crash", "collision", "derail")),
    ("medical", ("medical", "disease", "epidemic", "pandemic", "outbreak", "boil water", "contaminat")),
    ("crowd", ("evacuat", "civil", "crowd", "riot", "unrest", "stampede")),
    # Weather has no kind of its own: named so it never falls through to a
    # category default (a "Wind Advisory" filed under Fire is not a fire).
    (
        "other",
        (
            "tornado",
            "storm",
            "thunderstorm",
            "wind",
            "hurricane",
            "typhoon",
            "cyclone",
            "blizzard",
            "snow",
            "ice",
            "hail",
            "heat",
            "cold",
            "freeze",
            "frost",
            "fog",
        ),
    ),
)
_EVENT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(r"\b(?:" + "|".join(re.escape(word) for word in words) + ")"))
    for kind, words in _EVENT_RULES
)
# When no event word matches, the CAP category may still name the kind.
_KIND_OF_CAP: dict[str, str] = {
    "Fire": "fire",
    "Health": "medical",
    "CBRNE": "hazmat",
    "Transport": "traffic_accident",
}

_WHITESPACE = re.compile(r"\s+")
# "lat, lon" with stray spaces around the comma breaks the space-separated
# point list; senders do it, and gluing the pair back together is unambiguous.
_COMMA_SPACES = re.compile(r"\s*,\s*")
# CAP forbids whitespace and commas in identifier and sender: references are
# parsed by splitting on them, so one that contained them could never be found.
_FORBIDDEN_IN_ID = re.compile(r"[\s,]")


@dataclass(frozen=True, slots=True)
class CapReference:
    """One earlier message an Update, Cancel, Ack or Error refers to."""

    sender: str
    identifier: str
    sent: datetime | None = None

    def __post_init__(self) -> None:
        if not self.sender or not self.identifier:
            raise Rejected("reference has an empty sender or identifier")
        if self.sent is not None and self.sent.utcoffset() is None:
            raise Rejected("reference sent time has no UTC offset")


@dataclass(frozen=True, slots=True)
class CapArea:
    """One ``<area>``: polygons and circles in (lon, lat) degrees, WGS 84.

    Circles are already approximated as polygons (see :func:`circle_polygon`).
    Every polygon is valid and has area: invalid rings were repaired with
    ``shapely.make_valid`` and split into their polygonal parts.
    """

    description: str
    polygons: tuple[Polygon, ...] = ()
    circles: tuple[Polygon, ...] = ()
    geocodes: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.description:
            raise Rejected("area has no areaDesc")
        for shape in (*self.polygons, *self.circles):
            if not isinstance(shape, Polygon) or shape.is_empty or not shape.is_valid:
                raise Rejected("area geometry must be valid, non-empty polygons")

    @property
    def geometry(self) -> BaseGeometry | None:
        """The union of every polygon and circle, or None when there are none."""
        shapes = (*self.polygons, *self.circles)
        if not shapes:
            return None
        return shapely.union_all(shapes)


@dataclass(frozen=True, slots=True)
class CapInfo:
    """One ``<info>`` block: the event in one language."""

    language: str
    categories: tuple[str, ...]
    event: str
    urgency: str
    severity: str
    certainty: str
    headline: str | None = None
    description: str | None = None
    instruction: str | None = None
    effective: datetime | None = None
    onset: datetime | None = None
    expires: datetime | None = None
    areas: tuple[CapArea, ...] = ()
    parameters: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.categories:
            raise Rejected("info has no category")
        for category in self.categories:
            if category not in CATEGORIES:
                raise Rejected(f"unknown CAP category {category!r}")
        if not self.event:
            raise Rejected("info has no event")
        if self.urgency not in URGENCIES:
            raise Rejected(f"unknown CAP urgency {self.urgency!r}")
        if self.severity not in SEVERITIES:
            raise Rejected(f"unknown CAP severity {self.severity!r}")
        if self.certainty not in CERTAINTIES:
            raise Rejected(f"unknown CAP certainty {self.certainty!r}")
        for name in ("effective", "onset", "expires"):
            value = getattr(self, name)
            if value is not None and value.utcoffset() is None:
                raise Rejected(f"info {name} has no UTC offset")

    @property
    def is_english(self) -> bool:
        """``en`` or any ``en-XX`` tag, case-insensitively (RFC 3066)."""
        tag = self.language.lower()
        return tag == "en" or tag.startswith("en-")


@dataclass(frozen=True, slots=True)
class CapAlert:
    """One CAP ``alert`` message. ``infos`` may be empty (a Cancel need not
    carry one); ``references`` is empty unless the message refers back."""

    identifier: str
    sender: str
    sent: datetime
    status: str
    msg_type: str
    scope: str
    references: tuple[CapReference, ...] = ()
    infos: tuple[CapInfo, ...] = ()
    version: str = "1.2"

    def __post_init__(self) -> None:
        for name in ("identifier", "sender"):
            value = getattr(self, name)
            if not value:
                raise Rejected(f"alert has no {name}")
            if _FORBIDDEN_IN_ID.search(value):
                raise Rejected(f"alert {name} {value[:60]!r} contains whitespace or a comma")
        if self.sent.utcoffset() is None:
            raise Rejected("alert sent time has no UTC offset")
        if self.status not in STATUSES:
            raise Rejected(f"unknown CAP status {self.status!r}")
        if self.msg_type not in MSG_TYPES:
            raise Rejected(f"unknown CAP msgType {self.msg_type!r}")
        if self.scope not in SCOPES:
            raise Rejected(f"unknown CAP scope {self.scope!r}")
        if self.version not in NAMESPACES.values():
            raise Rejected(f"unknown CAP version {self.version!r}")


@dataclass(frozen=True, slots=True)
class CapIncident:
    """What an incident needs from an alert, in our vocabulary.

    ``area`` is the union of the chosen info's areas in (lon, lat); ``lat`` and
    ``lon`` are a point inside it, or None when the alert locates itself only
    by description or geocode (the store has to resolve those).
    """

    kind: str
    category: str
    severity: str
    title: str
    area: BaseGeometry | None
    lat: float | None
    lon: float | None
    urgency: str
    certainty: str
    language: str
    event: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise Rejected(f"unknown kind {self.kind!r}")
        if self.category not in INCIDENT_CATEGORIES:
            raise Rejected(f"unknown category {self.category!r}")
        if self.severity not in SEVERITIES:
            raise Rejected(f"unknown severity {self.severity!r}")
        if (self.lat is None) != (self.lon is None):
            raise Rejected("lat and lon must come together")


# ---------------------------------------------------------------- XML reading


def _parse_xml(payload: bytes) -> Element:
    """Parse the payload with every XML expansion feature forbidden.

    Raises:
        Rejected: too large, DTD/entity/external reference, or malformed.
    """
    if len(payload) > MAX_CAP_PAYLOAD:
        raise Rejected(f"CAP payload of {len(payload)} bytes exceeds {MAX_CAP_PAYLOAD}")
    try:
        root: Element = fromstring(payload, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DTDForbidden:
        raise Rejected("XML document type declarations (DTD) are not allowed in CAP") from None
    except EntitiesForbidden:
        raise Rejected("XML entity declarations are not allowed in CAP") from None
    except ExternalReferenceForbidden:
        raise Rejected("external XML references are not allowed in CAP") from None
    except DefusedXmlException as exc:
        raise Rejected(f"forbidden XML construct: {type(exc).__name__}") from None
    except ParseError as exc:
        raise Rejected(f"malformed XML: {exc}") from None
    except (LookupError, ValueError) as exc:
        # The XML declaration names the codec expat asks Python for: an unknown
        # one is a LookupError, a multi-byte or broken one a ValueError.
        raise Rejected(f"XML encoding not supported: {str(exc)[:120]}") from None
    return root


def _split_tag(tag: Any) -> tuple[str, str]:
    # Comments and processing instructions have a callable tag; they are not
    # elements of any namespace.
    if not isinstance(tag, str):
        return "", ""
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return "", tag


class _Reader:
    """Reads CAP children of one namespace; anything from another namespace
    (XML signatures, vendor extensions) is ignored, as CAP allows."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def children(self, parent: Element, name: str) -> list[Element]:
        return [child for child in parent if _split_tag(child.tag) == (self.namespace, name)]

    def text(self, parent: Element, name: str, where: str, *, required: bool = False) -> str | None:
        """The whitespace-collapsed text of the first ``name`` child."""
        found = self.children(parent, name)
        value = _WHITESPACE.sub(" ", found[0].text or "").strip() if found else ""
        if not value:
            if required:
                raise Rejected(f"{where} is missing required element <{name}>")
            return None
        return value

    def block(self, parent: Element, name: str) -> str | None:
        """Free text (description, instruction): line breaks kept, ends stripped."""
        found = self.children(parent, name)
        value = (found[0].text or "").strip() if found else ""
        return value or None

    def pairs(self, parent: Element, name: str, where: str) -> tuple[tuple[str, str], ...]:
        """``<name><valueName/><value/></name>`` (1.1, 1.2) or ``<name>k=v</name>`` (1.0)."""
        result: list[tuple[str, str]] = []
        for element in self.children(parent, name):
            key = self.text(element, "valueName", where)
            if key is not None:
                result.append((key, self.text(element, "value", where) or ""))
                continue
            text = (element.text or "").strip()
            if not text:
                continue
            key, _, value = text.partition("=")
            result.append((key.strip(), value.strip()))
        return tuple(result)


def _enum(value: str, allowed: tuple[str, ...], what: str, aliases: dict[str, str] | None = None) -> str:
    # Case is forgiven ("severe" is plainly "Severe"); anything else is not.
    lowered = value.lower()
    if aliases and lowered in aliases:
        return aliases[lowered]
    for candidate in allowed:
        if candidate.lower() == lowered:
            return candidate
    raise Rejected(f"unknown CAP {what} {value[:40]!r}; expected one of {', '.join(allowed)}")


def _time(value: str, what: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Rejected(f"{what} is not a CAP date-time: {value[:40]!r}") from None
    if parsed.utcoffset() is None:
        raise Rejected(f"{what} has no UTC offset: {value[:40]!r}")
    return parsed


def _optional_time(value: str | None, what: str) -> datetime | None:
    return None if value is None else _time(value, what)


# ---------------------------------------------------------------- geometry


def _point(text: str, what: str) -> tuple[float, float]:
    """A CAP ``lat,lon`` pair, returned as shapely's ``(lon, lat)``."""
    lat_text, comma, lon_text = text.partition(",")
    if not comma or "," in lon_text:
        raise Rejected(f"{what}: point {text[:40]!r} is not 'lat,lon'")
    try:
        lat, lon = float(lat_text), float(lon_text)
    except ValueError:
        raise Rejected(f"{what}: point {text[:40]!r} is not numeric") from None
    if not -90.0 <= lat <= 90.0:
        raise Rejected(f"{what}: latitude {lat} out of range [-90, 90] (CAP points are 'lat,lon')")
    if not -180.0 <= lon <= 180.0:
        raise Rejected(f"{what}: longitude {lon} out of range [-180, 180]")
    return lon, lat


class _Budget:
    """The geometry work one alert may cost (see MAX_SHAPES and friends)."""

    __slots__ = ("points", "repaired", "shapes")

    def __init__(self) -> None:
        self.shapes = 0
        self.points = 0
        self.repaired = 0

    def shape(self, what: str, points: int = 0) -> None:
        self.shapes += 1
        self.points += points
        if self.shapes > MAX_SHAPES:
            raise Rejected(f"{what}: more than {MAX_SHAPES} polygons and circles in one alert")
        if self.points > MAX_POINTS:
            raise Rejected(f"{what}: more than {MAX_POINTS} polygon points in one alert")

    def repair(self, what: str, points: int) -> None:
        self.repaired += points
        if points > MAX_REPAIR_RING:
            raise Rejected(
                f"{what}: self-intersecting ring of {points} points is too large to repair "
                f"(limit {MAX_REPAIR_RING})"
            )
        if self.repaired > MAX_REPAIR_POINTS:
            raise Rejected(f"{what}: more than {MAX_REPAIR_POINTS} points of invalid rings in one alert")


def _polygonal_parts(geometry: BaseGeometry) -> list[Polygon]:
    if isinstance(geometry, Polygon):
        return [] if geometry.is_empty else [geometry]
    parts: list[Polygon] = []
    for part in getattr(geometry, "geoms", ()):
        parts.extend(_polygonal_parts(part))
    return parts


def _valid_parts(polygon: Polygon, what: str, budget: _Budget) -> tuple[Polygon, ...]:
    """The polygon itself if valid, else its repaired polygonal parts.

    A bow-tie or a ring that doubles back is a sender's drawing mistake, not a
    reason to drop a warning. The "structure" repair keeps every area the ring
    encloses (the default "linework" one drops overlaps by even-odd, and is an
    order of magnitude slower on many crossings). Needs shapely >= 2.1.
    """
    if polygon.is_valid:
        return (polygon,)
    budget.repair(what, len(polygon.exterior.coords))
    try:
        repaired = shapely.make_valid(polygon, method="structure", keep_collapsed=False)
    except GEOSException as exc:
        raise Rejected(f"{what}: invalid geometry that cannot be repaired ({exc})") from None
    parts = _polygonal_parts(repaired)
    if not parts:
        raise Rejected(f"{what}: ring encloses no area")
    return tuple(parts)


def parse_polygon(text: str, what: str = "polygon", budget: _Budget | None = None) -> tuple[Polygon, ...]:
    """A CAP polygon (space-separated ``lat,lon`` pairs) as valid shapely polygons.

    An unclosed ring is closed rather than rejected: CAP requires first ==
    last, but the sender's intent is unambiguous and dropping a warning for it
    would be worse. A self-intersecting ring is repaired (see _valid_parts).

    Returns:
        one polygon, or several if repairing split the ring.
    Raises:
        Rejected: a malformed or out-of-range point, fewer than 3 corners, or
            more geometry than an alert may carry.
    """
    budget = budget or _Budget()
    tokens = _COMMA_SPACES.sub(",", text.strip()).split()
    # Charged before any point is built: the budget bounds the work, not the result.
    budget.shape(what, len(tokens))
    points = [_point(token, what) for token in tokens]
    if points and points[0] != points[-1]:
        points.append(points[0])
    if len(set(points)) < 3:
        raise Rejected(f"{what}: needs at least 3 distinct points, got {len(set(points))}")
    try:
        polygon = Polygon(points)
    except (GEOSException, ValueError) as exc:
        raise Rejected(f"{what}: not a polygon ({exc})") from None
    return _valid_parts(polygon, what, budget)


def circle_polygon(lat: float, lon: float, radius_km: float) -> Polygon:
    """A circle as a CIRCLE_VERTICES-gon in (lon, lat) degrees.

    Longitude degrees shrink with latitude: dlon = r / (111.32 km * cos(lat)).
    Good to well under 1 % for the radii alerts use (tens of km); it is a
    planar approximation, so it degrades for continent-sized circles and does
    not wrap at the antimeridian.
    """
    radius = max(radius_km, MIN_CIRCLE_RADIUS_KM)
    dlat = radius / KM_PER_DEGREE
    dlon = radius / (KM_PER_DEGREE * max(math.cos(math.radians(lat)), _MIN_COS_LAT))
    ring = []
    for step in range(CIRCLE_VERTICES):
        angle = 2.0 * math.pi * step / CIRCLE_VERTICES
        ring.append(
            (
                lon + dlon * math.cos(angle),
                min(90.0, max(-90.0, lat + dlat * math.sin(angle))),
            )
        )
    return Polygon(ring)


def parse_circle(text: str, what: str = "circle", budget: _Budget | None = None) -> Polygon:
    """A CAP circle ``lat,lon radius_km`` as a polygon (see :func:`circle_polygon`).

    Raises:
        Rejected: malformed, out of range, a negative/absurd radius, or more
            geometry than an alert may carry.
    """
    (budget or _Budget()).shape(what, CIRCLE_VERTICES)
    parts = _COMMA_SPACES.sub(",", text.strip()).split()
    if len(parts) != 2:
        raise Rejected(f"{what}: {text[:60]!r} is not 'lat,lon radius'")
    lon, lat = _point(parts[0], what)
    try:
        radius = float(parts[1])
    except ValueError:
        raise Rejected(f"{what}: radius {parts[1][:20]!r} is not a number") from None
    if not math.isfinite(radius) or not 0.0 <= radius <= MAX_CIRCLE_RADIUS_KM:
        raise Rejected(f"{what}: radius {radius} km out of range [0, {MAX_CIRCLE_RADIUS_KM:.0f}]")
    return circle_polygon(lat, lon, radius)


# ---------------------------------------------------------------- the document


def _references(text: str | None, own_sender: str) -> tuple[CapReference, ...]:
    if text is None:
        return ()
    result: list[CapReference] = []
    for token in text.split():
        parts = token.split(",")
        if len(parts) == 3:
            sender, identifier, sent = parts
            result.append(CapReference(sender, identifier, _time(sent, f"reference {token[:80]!r} sent")))
        elif len(parts) == 2:
            result.append(CapReference(parts[0], parts[1]))
        elif len(parts) == 1:
            # CAP 1.0 referred by identifier alone, implicitly to the same sender.
            result.append(CapReference(own_sender, parts[0]))
        else:
            raise Rejected(f"reference {token[:80]!r} is not 'sender,identifier,sent'")
    return tuple(result)


def _area(reader: _Reader, element: Element, where: str, budget: _Budget) -> CapArea:
    description = reader.text(element, "areaDesc", where, required=True)
    assert description is not None
    polygons: list[Polygon] = []
    for index, polygon in enumerate(reader.children(element, "polygon")):
        # An empty <polygon/> occurs in real NWS feeds; it says nothing.
        if (polygon.text or "").strip():
            polygons.extend(parse_polygon(polygon.text or "", f"{where} polygon {index + 1}", budget))
    circles = tuple(
        parse_circle(circle.text or "", f"{where} circle {index + 1}", budget)
        for index, circle in enumerate(reader.children(element, "circle"))
        if (circle.text or "").strip()
    )
    return CapArea(
        description=description,
        polygons=tuple(polygons),
        circles=circles,
        geocodes=reader.pairs(element, "geocode", where),
    )


def _info(reader: _Reader, element: Element, where: str, budget: _Budget) -> CapInfo:
    def required(name: str) -> str:
        value = reader.text(element, name, where, required=True)
        assert value is not None
        return value

    def optional(name: str) -> str | None:
        return reader.text(element, name, where)

    categories = tuple(
        _enum(_WHITESPACE.sub(" ", child.text or "").strip(), CATEGORIES, "category")
        for child in reader.children(element, "category")
    )
    if not categories:
        raise Rejected(f"{where} is missing required element <category>")
    return CapInfo(
        language=optional("language") or DEFAULT_LANGUAGE,
        categories=categories,
        event=required("event"),
        urgency=_enum(required("urgency"), URGENCIES, "urgency"),
        severity=_enum(required("severity"), SEVERITIES, "severity"),
        certainty=_enum(required("certainty"), CERTAINTIES, "certainty", _CERTAINTY_ALIASES),
        headline=optional("headline"),
        description=reader.block(element, "description"),
        instruction=reader.block(element, "instruction"),
        effective=_optional_time(optional("effective"), f"{where} effective"),
        onset=_optional_time(optional("onset"), f"{where} onset"),
        expires=_optional_time(optional("expires"), f"{where} expires"),
        areas=tuple(
            _area(reader, area, f"{where} area {index + 1}", budget)
            for index, area in enumerate(reader.children(element, "area"))
        ),
        parameters=reader.pairs(element, "parameter", where),
    )


def parse_cap(payload: bytes) -> CapAlert:
    """Parse one CAP ``alert`` document (1.2, 1.1 or 1.0).

    Nothing is fetched: no DTD, no entity, no schema, no network.

    Args:
        payload: the raw bytes as received (e.g. an MQTT ``cap/{source}`` payload).
    Returns:
        the validated alert, geometry in (lon, lat).
    Raises:
        Rejected: with the reason, for anything unsafe, malformed or off-spec;
            nothing else escapes.
    """
    root = _parse_xml(payload)
    namespace, local = _split_tag(root.tag)
    if local != "alert":
        raise Rejected(f"root element is <{local}>, not a CAP <alert>")
    version = NAMESPACES.get(namespace)
    if version is None:
        shown = namespace or "no namespace"
        raise Rejected(f"<alert> in {shown!r} is not CAP 1.2, 1.1 or 1.0 ({', '.join(NAMESPACES)})")
    reader = _Reader(namespace)
    # One budget for the whole alert, so splitting geometry across many info
    # and area blocks does not multiply the work.
    budget = _Budget()

    def required(name: str) -> str:
        value = reader.text(root, name, "alert", required=True)
        assert value is not None
        return value

    sender = required("sender")
    return CapAlert(
        identifier=required("identifier"),
        sender=sender,
        sent=_time(required("sent"), "alert sent"),
        status=_enum(required("status"), STATUSES, "status"),
        msg_type=_enum(required("msgType"), MSG_TYPES, "msgType"),
        scope=_enum(required("scope"), SCOPES, "scope"),
        references=_references(reader.text(root, "references", "alert"), sender),
        infos=tuple(
            _info(reader, info, f"info {index + 1}", budget)
            for index, info in enumerate(reader.children(root, "info"))
        ),
        version=version,
    )


# ---------------------------------------------------------------- our vocabulary


def kind_of(event: str, categories: tuple[str, ...] = ()) -> str:
    """Our alarm kind for a CAP event text, falling back to its categories.

    Returns:
        one of :data:`sensors.alarms.KINDS`; ``other`` when nothing fits.
    """
    lowered = event.lower()
    for kind, pattern in _EVENT_PATTERNS:
        if pattern.search(lowered):
            return kind
    for category in categories:
        if category in _KIND_OF_CAP:
            return _KIND_OF_CAP[category]
    return "other"


def category_of(categories: tuple[str, ...], kind: str) -> str:
    """The plan's class of event: the first CAP category that names one, else
    the kind's class (for ``Other``)."""
    for category in categories:
        if category in CATEGORY_OF_CAP:
            return CATEGORY_OF_CAP[category]
    return CATEGORY_OF_KIND[kind]


def choose_info(alert: CapAlert) -> CapInfo:
    """The info block an incident is built from: the first English one, else the first.

    English first because the event keywords are English and the console's
    operators read it; the order of the rest is the sender's.

    Raises:
        Rejected: the alert has no info block (e.g. a bare Cancel).
    """
    if not alert.infos:
        raise Rejected(
            f"CAP {alert.msg_type} {alert.identifier!r} has no info block to build an incident from"
        )
    for info in alert.infos:
        if info.is_english:
            return info
    return alert.infos[0]


def _location(area: BaseGeometry) -> tuple[float, float]:
    # The centroid, unless the area is concave or in pieces and the centroid
    # falls outside it; then a point guaranteed inside, so the incident's pin
    # is never in a place the alert does not cover.
    point = area.centroid
    if not area.covers(point):
        point = area.representative_point()
    return float(point.y), float(point.x)


def to_incident_fields(alert: CapAlert) -> CapIncident:
    """What an incident needs from an alert, in our vocabulary.

    The info block comes from :func:`choose_info`; the severity is the most
    severe across every info block (a translation is not a different threat,
    but a sender may grade blocks differently and we keep the worst).

    Args:
        alert: a parsed alert.
    Returns:
        kind, category, severity, title (headline, else event), the union of
        the chosen info's areas and a point inside it (None without geometry).
    Raises:
        Rejected: the alert has no info block.
    """
    info = choose_info(alert)
    severity = min((i.severity for i in alert.infos), key=SEVERITIES.index)
    kind = kind_of(info.event, info.categories)
    shapes = [shape for area in info.areas for shape in (*area.polygons, *area.circles)]
    geometry: BaseGeometry | None = shapely.union_all(shapes) if shapes else None
    if geometry is not None and geometry.is_empty:
        geometry = None
    lat: float | None = None
    lon: float | None = None
    if geometry is not None:
        lat, lon = _location(geometry)
    return CapIncident(
        kind=kind,
        category=category_of(info.categories, kind),
        severity=severity,
        title=info.headline or info.event,
        area=geometry,
        lat=lat,
        lon=lon,
        urgency=info.urgency,
        certainty=info.certainty,
        language=info.language,
        event=info.event,
    )


def correlation_key_for(alert: CapAlert) -> str:
    """The key an incident opened by this alert is found by: ``cap:{sender}:{identifier}``."""
    return f"cap:{alert.sender}:{alert.identifier}"


def referenced_keys(alert: CapAlert) -> tuple[str, ...]:
    """The correlation keys of the messages this one refers to, in order, so an
    Update or Cancel finds the incident the original Alert opened."""
    return tuple(f"cap:{ref.sender}:{ref.identifier}" for ref in alert.references)
